"""Scoring the serving model on published inference runs (``validation/inference.yaml`` and its siblings).

Each case is a static batch on one replica, or an in-flight batching benchmark replayed in the simulator
(``serve.inflight``); each of its targets (output tokens/s, per device or for the replica, TTFT, TPOT) becomes
one scored row. Weight-only int8 (Neuron's ``weights stored int8`` in the notes) is read from the notes as
validation/README.md convention 7 says. The fit of the efficiencies on these cases is ``serve.fitting``.

A case whose ``system``, ``serving`` or ``targets`` fields are missing, of the wrong type or out of range
(``serve.limits``), or that the model cannot express (a precision the chip has no matmuls for, a decode-only
server under in-flight load), is skipped with a reason naming the field, as training's validation skips its cases.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rainier.calibrate.cases import Case, CaseFile, InferenceCase, SkippedCase, load_cases
from rainier.calibrate.plan_block import Assumption
from rainier.calibrate.score import CaseResult, ValidationReport, error_pct, select_group
from rainier.calibrate.summary import summarize
from rainier.errors import InputError, field_error
from rainier.hardware import Vendor, cluster_of, get_accelerator
from rainier.precision import Precision
from rainier.serve.bench_load import (
    BenchLoad,
    attention_layout,
    disaggregated_phase,
    engine_settings_from_words,
    mlperf_lengths,
    read_bench_load,
)
from rainier.serve.buckets import Buckets
from rainier.serve.cost import AttentionKernels, ReplicaCost, WeightFormat, parse_kv_precision, replica_cost
from rainier.serve.efficiency import (
    ServeEfficiency,
    ServeEfficiencyTable,
    committed_serve_efficiency,
    load_serve_efficiency,
)
from rainier.serve.estimate import ServeConfig, StaticBatchTimes, config_buckets, draft_cost, static_batch_times
from rainier.serve.inflight import (
    TRTLLM_VERSION,
    BenchModel,
    InFlight,
    Load,
    in_flight_of,
    is_trtllm_bench,
    simulate_case,
    trtllm_bench_limits,
    vllm_large_gpu,
)
from rainier.serve.limits import MAX_BATCH, MAX_DEGREE, MAX_DEVICES, MAX_TOKENS, check_int, check_share
from rainier.serve.speculative import SpecMethod, Speculation, SpeculativeCost, speculation_from_case
from rainier.units import GIB
from rainier.workload import shape_from_validation_model
from rainier.workload.params import count_params
from rainier.workload.registry import get_model, has_model
from rainier.workload.shape import TransformerShape

INT8_NOTE = "weights stored int8"
METRICS = (
    "output_tokens_per_s_per_device",
    "output_tokens_per_s",
    "total_tokens_per_s",
    "requests_per_s",
    "ttft_ms",
    "tpot_ms",
    "e2e_latency_ms",
    "ttft_p99_ms",
    "tpot_p99_ms",
    "e2e_latency_p99_ms",
)
LINEARISED_LOADS = frozenset({Load.OFFLINE, Load.CONCURRENCY})  # in-flight loads the fit uses (Prepared.linearised)
DEGREE_UNITS = ("device", "neuroncore")
# A case's ``phase`` (one side of a disaggregated prefill/decode deployment, measured alone): a prefill server's
# run is a prompt with one output token (output_len 1); a decode server's is scored on its decode iterations only
# (its prompts arrive prefilled), so it predicts these metrics.
PHASES = ("prefill", "decode")
DECODE_METRICS = ("output_tokens_per_s", "output_tokens_per_s_per_device", "tpot_ms", "tpot_p99_ms")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A case ready to predict: its replica cost (efficiency swapped in cheaply) and its targets."""

    case: InferenceCase
    config: ServeConfig
    cost: ReplicaCost
    targets: tuple[tuple[str, float], ...]
    accelerator: str
    family: str
    drafter: ReplicaCost | None = None  # one speculative drafter pass, when the case speculates
    in_flight: InFlight | None = None  # the load of an in-flight batching case (simulated, not fitted)
    decode_only: bool = False  # phase: decode, a decode server scored on its decode iterations
    buckets: Buckets | None = None  # the runtime's compiled lengths (Neuron), static cases
    counted_share: float = 1.0  # output tokens as the benchmark counted them, per token generated (_counted_share)
    assumptions: tuple[Assumption, ...] = ()  # what rainier supplied that the case left open (its load, read from text)
    consistent: bool = True  # its published rate and latencies describe one run (_self_consistency); else not fitted

    @property
    def generation(self) -> str:
        """The accelerator's efficiency family (its generation: nvidia-hopper, nvidia-blackwell, ...)."""
        return str(get_accelerator(self.accelerator).efficiency_family)

    @property
    def fitted(self) -> bool:
        """Whether the case steers the fit by its own predictions: static cases do. Data-parallel attention cases
        are scored and enter leave-one-group-out, not the fit: their cost path is coarser than the static cases'
        (two-batch overlap without the SMs the communication kernels take, no latency floor of DeepEP's kernels),
        so fitting them would bend the accelerator's efficiencies to stand in for that (a refit on them drove
        H200's compute share to 0.06)."""
        return self.in_flight is None and self.config.dp_attention == 1

    @property
    def linearised(self) -> bool:
        """Whether the case steers the fit through its simulated response (``serve.response``): in-flight cases
        under an offline or closed-loop load, whose engines stay full, so their metrics follow the iteration times
        smoothly. Open-loop (``rate``, ``max_rate``) cases are scored, not fitted: their latencies are queueing
        delays that turn sharply near saturation, where no expansion holds (and a ``max_rate`` point is a search
        of a dozen simulations). Speculating in-flight cases are scored too: their response would need the
        drafter's efficiencies as well, and none of the public cases is one."""
        load = self.in_flight
        plain = self.config.dp_attention == 1 and self.config.speculative is None
        return load is not None and load.load in LINEARISED_LOADS and plain


def _whole(block: str, fields: Any, key: str, high: int, unit: str, *, default: int | None = None) -> int:
    """``fields[key]`` as a whole number in ``[1, high]`` (``default`` when absent or null, if given)."""
    value = fields.get(key) if isinstance(fields, Mapping) else None
    if value is None and default is not None:
        return default
    if value is None:
        raise field_error(f"{block}.{key}", value, f"a whole number of {unit} (required)")
    return check_int(f"{block}.{key}", value, 1, high, unit)


def _text(block: str, fields: Any, key: str, allowed: str, *, default: str | None = None) -> str:
    value = fields.get(key) if isinstance(fields, Mapping) else None
    if value is None and default is not None:
        return default
    if not isinstance(value, str) or not value.strip():
        raise field_error(f"{block}.{key}", value, allowed)
    return value


def _weight_format(stated: str) -> WeightFormat:
    """The format a case's precision names, as written or by its first word ("fp8 weights, fp8 KV" is fp8)."""
    try:
        return WeightFormat.parse(stated)
    except InputError:
        first = re.split(r"[\s,;/+]+", stated.strip(), maxsplit=1)[0]
        if not first or first == stated.strip():
            raise
        if re.search(r"weight[- ]only", stated, re.IGNORECASE) and first.lower() in ("int8", "int4"):
            return WeightFormat.parse(f"{first}-weights")  # W8A16 / W4A16, multiplied in 16 bits
        return WeightFormat.parse(first)


def serve_config(case: InferenceCase) -> ServeConfig:
    """A case's ``serving`` block as a :class:`ServeConfig`; a bad field is an ``InputError`` naming it."""
    s = dict(case.serving)
    if s.get("batch", 0) is None:
        s["batch"] = 1  # in-flight batching: the load, not a batch, sets the work (serve.inflight)
    unit = _text("serving", s, "degrees_unit", " or ".join(DEGREE_UNITS), default="device")
    if unit not in DEGREE_UNITS:
        raise field_error("serving.degrees_unit", unit, " or ".join(DEGREE_UNITS))
    precision = _text("serving", s, "precision", ", ".join(w.value for w in WeightFormat), default="bf16")
    stated = precision.split(" (", 1)[0].strip()  # "bf16 (FP8 checkpoint dequantized at load)": the format, a remark
    try:
        weights = WeightFormat.INT8_WEIGHTS if INT8_NOTE in case.notes else _weight_format(stated)
    except InputError:
        raise field_error("serving.precision", precision, ", ".join(w.value for w in WeightFormat)) from None
    tp = _whole("serving", s, "tp", MAX_DEGREE, "ranks", default=1)
    ep = _whole("serving", s, "ep", MAX_DEGREE, "ranks", default=1)
    # Data-parallel attention is read where the case's ep exceeds its tp (tp is then each attention group's own:
    # SGLang --enable-dp-attention with DeepEP), and from TensorRT-LLM's ``attention_dp: true`` with ep = tp
    # (enable_attention_dp: every one of the tp ranks runs its own attention and scheduler, the experts spread
    # over all of them), which is rainier's tp=1 x dp_attention=tp. A case whose dp_attention sits inside tp
    # with ep <= tp (SGLang v0.4.1: MoE tensor-parallel across the attention groups) is costed as tp, as
    # before: that layout is not modelled yet.
    dp_attention = 1
    if ep > tp:
        dp_attention = _whole("serving", s, "dp_attention", MAX_DEGREE, "ranks", default=1)
    elif _flag("serving", s, "attention_dp") and ep == tp > 1:
        tp, dp_attention = 1, ep
    return ServeConfig(
        speculative=_launched(case, speculation_from_case(s.get("speculative"), known_model=has_model)),
        attention=attention_kernels(case),
        tp=tp,
        pp=_whole("serving", s, "pp", MAX_DEGREE, "stages", default=1),
        ep=ep,
        dp_attention=dp_attention,
        batch=_whole("serving", s, "batch", MAX_BATCH, "sequences"),
        input_len=_whole("serving", s, "input_len", MAX_TOKENS, "tokens"),
        output_len=_whole("serving", s, "output_len", MAX_TOKENS, "tokens"),
        weights=weights,
        unit_core=unit == "neuroncore",
        kv_precision=_kv_precision(s),
        prefix_hit=check_share("serving.prefix_hit", s.get("prefix_hit") or 0.0),
        two_batch_overlap=_flag("serving", s, "two_batch_overlap"),
        eplb=_flag("serving", s, "eplb"),
        prefill_chunk=_whole("serving", s, "prefill_chunk", MAX_TOKENS, "tokens", default=0),
        bucketing=_bucketing(case),
    )


def _bucketing(case: InferenceCase) -> bool:
    """Whether the case's Neuron runtime buckets its lengths (``serve.buckets``): ``serving.bucketing`` when given,
    else automatic buckets unless the framework says bucketing was disabled."""
    given = case.serving.get("bucketing")
    if given is not None:
        return _flag("serving", case.serving, "bucketing")
    return "bucketing disabled" not in str(case.serving.get("framework") or "").lower()


def _flag(block: str, fields: Mapping[str, Any], key: str) -> bool:
    """``fields[key]`` as true or false (absent or null: false)."""
    value = fields.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise field_error(f"{block}.{key}", value, "true or false")
    return value


_NXDI = re.compile(r"nxd[- ]?inference|nxdi|neuronx[-_]distributed[-_]inference|fused[-_ ]speculation|"
                   r"speculation[-_ ]length", re.IGNORECASE)  # fmt: skip


def _on_neuron(case: InferenceCase) -> bool:
    """Whether the case's chips run AWS's Neuron runtime (Trainium, Inferentia)."""
    try:
        return get_accelerator(str(case.system.get("accelerator") or "")).vendor is Vendor.AWS
    except InputError:
        return False


def _launched(case: InferenceCase, spec: Speculation | None) -> Speculation | None:
    """The case's speculation with where its drafter runs, from its engine: the vLLM Neuron plugin compiles an
    EAGLE drafter as its own program, launched after the target's (``serve.speculative``); NxD Inference's fused
    speculation runs one launch per step, its ``k`` counting the tokens verified (``counts_pending``), as do the
    GPU engines with ``k`` proposals."""
    if spec is None:
        return None
    framework = str(case.serving.get("framework") or "").lower()
    if "vllm neuron" in framework and spec.method in (SpecMethod.EAGLE, SpecMethod.EAGLE3):
        return replace(spec, separate_launch=True)
    words = f"{framework} {case.serving.get('speculative') or ''}"
    if _on_neuron(case) and spec.method is not SpecMethod.NGRAM and _NXDI.search(words):
        return replace(spec, counts_pending=True)
    return spec


# Engines whose ``--kv-cache-dtype auto`` (their default) stores the cache in the model's activation dtype, 16-bit,
# whatever the weights' format: SGLang ("auto will use model data type", server arguments) and vLLM ("auto: the
# model's default activation data type", engine arguments); TensorRT-LLM keeps an fp8 cache with fp8 checkpoints.
AUTO_KV_16BIT_ENGINES = ("sglang", "vllm")


def _kv_precision(s: Mapping[str, Any]) -> Precision | None:
    """The KV-cache format a case states (``kv_cache_precision`` or vLLM's ``kv_cache_dtype``); None: the weight
    format's default. An ``auto`` or absent value keeps the engine's default: 16-bit for SGLang and vLLM
    (``AUTO_KV_16BIT_ENGINES``), the weight format's otherwise."""
    for key in ("kv_cache_precision", "kv_cache_dtype"):
        text = s.get(key)
        if text is None:
            continue
        if not isinstance(text, str):
            raise field_error(f"serving.{key}", text, "auto, bf16, fp16 or fp8")
        try:
            stated = parse_kv_precision(text)
        except InputError:
            raise field_error(f"serving.{key}", text, "auto, bf16, fp16 or fp8") from None
        if stated is not None:
            return stated
    framework = str(s.get("framework") or "").lower()
    return Precision.BF16 if any(engine in framework for engine in AUTO_KV_16BIT_ENGINES) else None


_P99_OF = {"ttft_ms": "ttft_p99_ms", "tpot_ms": "tpot_p99_ms", "e2e_latency_ms": "e2e_latency_p99_ms"}
_STATISTIC = re.compile(r"\b(p50|median|mean|average|avg|50th|p9[059]|9[059]th)\b", re.IGNORECASE)


def _stated_statistic(note: object) -> str | None:
    """The statistic a target's note names first (``p99``, ``99th`` -> "p99"; medians and means -> "p50")."""
    found = _STATISTIC.search(str(note or ""))
    if found is None:
        return None
    word = found[1].lower()
    return "p99" if word in ("p99", "99th") else "p50" if word in ("p50", "median", "50th") else word


def case_targets(case: InferenceCase) -> tuple[tuple[str, float], ...]:
    """The case's targets the serving model predicts, as (metric, value); a malformed one is an ``InputError``.
    An in-flight case's latency whose note says it is a p99 (the shared schema keeps medians in ``ttft_ms``,
    ``tpot_ms`` and ``e2e_latency_ms`` "unless the target note says otherwise") is scored as that p99."""
    out: list[tuple[str, float]] = []
    in_flight = case.serving.get("batch", 0) is None
    for index, target in enumerate(case.targets):
        where = f"targets[{index}]"
        metric = _text(where, target, "metric", "a metric name, e.g. " + ", ".join(METRICS))
        if metric not in METRICS:
            continue  # published beside the ones modelled (validation/README.md: all published metrics)
        value = target.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
            raise field_error(f"{where}.value", value, f"a positive finite measurement of {metric}")
        if in_flight and metric in _P99_OF and _stated_statistic(target.get("note")) == "p99":
            metric = _P99_OF[metric]  # the schema's latencies are medians "unless the target note says otherwise"
        out.append((metric, float(value)))
    if not out:
        raise field_error("targets", [t.get("metric") for t in case.targets], f"at least one of {', '.join(METRICS)}")
    return tuple(out)


XQA_VERSION = (0, 7)  # TensorRT-LLM release that brought the XQA decode kernel for MQA/GQA (release notes, v0.7.0)
# First TensorRT-LLM release timed here with the batch manager rather than gptSession (per-kernel host launches, a
# static batch sampled on the device; the gptSession cases in validation/inference.yaml are v0.5-0.6).
GRAPH_REPLAY_VERSION = (0, 7)


def _trtllm_version(case: InferenceCase) -> tuple[int, int] | None:
    """The TensorRT-LLM (major, minor) a case's ``framework`` names, if any."""
    found = TRTLLM_VERSION.search(str(case.serving.get("framework") or ""))
    return (int(found[1]), int(found[2])) if found is not None else None


def attention_kernels(case: InferenceCase) -> AttentionKernels:
    """The attention kernels a case's engine ran: ``serving.attention`` when given, else from ``framework``.

    TensorRT-LLM before 0.7 decoded with masked multi-head attention (one query head per block); transformers-
    neuronx (Trn1/Inf2 benchmarks of SDK 2.18) wrote prefill scores to HBM; other engines run fused kernels.
    """
    given = case.serving.get("attention")
    if isinstance(given, str):
        return AttentionKernels.parse(given)
    version = _trtllm_version(case)
    if version is not None and version < XQA_VERSION:
        return AttentionKernels.PER_HEAD_DECODE
    if "transformers-neuronx" in str(case.serving.get("framework") or "").lower():
        return AttentionKernels.UNFUSED
    return AttentionKernels.FUSED


def latent_precision(case: InferenceCase) -> Precision | None:
    """What an fp4 MLA case keeps its latent attention projections in: fp8 where its framework or notes say "FP8
    attention" (SGLang's GB200 and GB300 runs: FP8 attention weights, NVFP4 experts), else None (16 bits, as
    NVIDIA's NVFP4 checkpoints keep them; ``serve.cost.replica_cost``)."""
    text = f"{case.serving.get('framework') or ''} {case.notes}".lower()
    return Precision.FP8 if "fp8 attention" in text else None


def replays_cuda_graphs(case: InferenceCase) -> bool:
    """Whether a case's engine replays a captured graph per iteration: not TensorRT-LLM's gptSession before 0.7,
    which launched each kernel from the host (its CUDA-graph option came later); Neuron runs compiled graphs."""
    return not _gpt_session(case)


def serves_requests(case: InferenceCase) -> bool:
    """Whether a case's engine does host work per running request each step (a serving runtime's scheduling,
    sampling and streaming: ``sequence_overhead_s``): not TensorRT-LLM's gptSession before 0.7, whose benchmark
    runs a static batch as one tensor and samples it on the device (gptSessionBenchmark)."""
    return not _gpt_session(case)


def _gpt_session(case: InferenceCase) -> bool:
    """Whether a case ran TensorRT-LLM's gptSession (releases before ``GRAPH_REPLAY_VERSION``)."""
    version = _trtllm_version(case)
    return version is not None and version < GRAPH_REPLAY_VERSION


def _scheduler_limits(serving: Mapping[str, Any], groups: int) -> dict[str, Any]:
    """The case's ``serving`` block with TensorRT-LLM's per-rank limits made the replica's: under
    ``attention_dp: true`` every attention rank runs its own executor, so ``max_batch`` (max_batch_size) and
    ``max_num_tokens`` bound each of the ``groups`` ranks (TensorRT-LLM PyTorch backend, one PyExecutor per
    rank under enable_attention_dp)."""
    fields = dict(serving)
    if groups > 1 and fields.get("attention_dp") is True:
        for key, most in (("max_batch", MAX_BATCH), ("max_num_tokens", MAX_TOKENS)):
            if isinstance(fields.get(key), int) and not isinstance(fields[key], bool):
                fields[key] = min(fields[key] * groups, most)
    return fields


def _bench_limits(
    serving: Mapping[str, Any], shape: TransformerShape, config: ServeConfig, device_bytes: float
) -> dict[str, Any]:
    """The case's ``serving`` block with trtllm-bench's own ``max_batch`` and ``max_num_tokens`` where its command
    stated neither (``serve.inflight.trtllm_bench_limits``). Left as they are for MLA and data-parallel attention
    models, whose PyTorch-backend scenarios size their engines otherwise."""
    fields = dict(serving)
    stated = fields.get("max_batch") is not None or fields.get("max_num_tokens") is not None
    if stated or not is_trtllm_bench(str(fields.get("framework") or "")):
        return fields
    if shape.mla is not None or config.dp_attention > 1:
        return fields
    kv = config.kv_precision if config.kv_precision is not None else config.weights.kv
    model = BenchModel(
        params=count_params(shape).total, weights=config.weights.value, kv=kv.value, layers=shape.num_layers,
        kv_heads=shape.num_kv_heads, head_dim=shape.head_dim, tp=config.tp, pp=config.pp, device_bytes=device_bytes,
    )  # fmt: skip
    fields["max_batch"], fields["max_num_tokens"] = trtllm_bench_limits(model, config.input_len, config.output_len)
    return fields


def prepare(case: InferenceCase) -> Prepared:
    """A case ready to predict; a field that is missing, mistyped, out of range or inexpressible raises an
    ``InputError`` (a ``ValueError``) naming it, and :func:`_prepared` skips the case with that reason."""
    case, assumed = _schema_readings(case)
    shape = shape_from_validation_model(case.model, source=case.id)
    system = dict(case.system)
    accelerator = get_accelerator(_text("system", system, "accelerator", "an accelerator id"))
    cluster = cluster_of(accelerator.id, _whole("system", system, "count", MAX_DEVICES, "devices"))
    config = serve_config(case)
    targets = case_targets(case)
    cost = replica_cost(
        shape, cluster, tp=config.tp, pp=config.pp, ep=config.ep, dp_attention=config.dp_attention,
        unit_core=config.unit_core, weights=config.weights, per_request_host_work=serves_requests(case),
        eff=ServeEfficiency(), attention=config.attention, cuda_graphs=replays_cuda_graphs(case),
        kv_precision=config.kv_precision, two_batch_overlap=config.two_batch_overlap,
        latent_precision=latent_precision(case), eplb=config.eplb,
    )  # fmt: skip
    spec = config.speculative
    draft = get_model(spec.draft_model) if spec is not None and spec.draft_model is not None else None
    drafter = draft_cost(shape, cluster, config, ServeEfficiency(), draft)
    decode_only = _phase(case, config, targets) == "decode"
    load = None
    if case.serving.get("batch", 0) is None:
        serving, assumed_load = _stated_load(case)
        assumed += assumed_load
        load = in_flight_of(
            _bench_limits(_scheduler_limits(serving, config.dp_attention), shape, config, accelerator.hbm_bytes),
            cluster.num_devices, cost.replica_devices,
            kv_tokens=cost.kv_capacity, context_len=shape.seq_len,
            large_gpu=vllm_large_gpu(accelerator.hbm_bytes, accelerator.id),
        )  # fmt: skip
        if cost.kv_capacity < config.input_len + config.output_len:  # the simulator could admit no request
            raise field_error(
                "system.count", cluster.num_devices, f"devices whose memory holds the weights "
                f"({cost.weight_bytes_per_device / GIB:.0f} GiB per device) and one request's KV cache",
            )  # fmt: skip
    buckets = config_buckets(accelerator, shape, config)
    counted = _counted_share(case, config.output_len)
    disagreement = (
        None if load is not None else _self_consistency(case.id, targets, config, counted, cost.replica_devices)
    )
    if disagreement is not None:
        assumed += (disagreement,)
    return Prepared(
        case, config, cost, targets, accelerator.id, accelerator.family.value, drafter, load, decode_only, buckets,
        counted, assumed, disagreement is None,
    )  # fmt: skip


# How far a static case's published output rate may sit from the one its own latencies give before the row is taken
# to describe more than one run. The p50 TPOT stands in for the mean over a decode whose cache grows, and a rate may
# count host work between the timed calls: on the public cases that puts the two within 0.86-1.02 of each other,
# except three Trainium1 rows of Neuron SDK 2.18.0 at 1.65-2.33 (validation/inference.yaml).
CONSISTENCY_BOUND = 1.25


def _self_consistency(
    case_id: str, targets: Sequence[tuple[str, float]], config: ServeConfig, counted_share: float, replica_devices: int
) -> Assumption | None:
    """A static batch's published output rate against the run its own TTFT and p50 TPOT describe, ``batch x
    output tokens`` over ``TTFT + (output - 1) x TPOT``: outside :data:`CONSISTENCY_BOUND` of each other, one of the
    row's numbers is not from the run the others are (which one, the row does not say), so the case is scored and
    does not steer the fit, and the assumption says why. None when they agree or the row lacks one of them."""
    found = dict(targets)
    rate = found.get("output_tokens_per_s")
    if rate is None and "output_tokens_per_s_per_device" in found:
        rate = found["output_tokens_per_s_per_device"] * replica_devices
    if rate is None or "ttft_ms" not in found or "tpot_ms" not in found:
        return None
    run_s = StaticBatchTimes(found["ttft_ms"] / 1e3, (), found["tpot_ms"] / 1e3).e2e_s(config.output_len)
    implied = config.batch * config.output_len * counted_share / run_s
    ratio = implied / rate
    if 1 / CONSISTENCY_BOUND <= ratio <= CONSISTENCY_BOUND:
        return None
    return Assumption(
        field="targets",
        text=f"{case_id}: the row's TTFT and TPOT give {implied:.4g} output tokens/s for {config.batch} x "
        f"{config.output_len} tokens, {ratio:.2f}x its published rate of {rate:.4g}: its numbers disagree by more "
        f"than {CONSISTENCY_BOUND}x, so the case is scored and does not steer the fit",
    )


def _schema_readings(case: InferenceCase) -> tuple[InferenceCase, tuple[Assumption, ...]]:
    """The case with what the shared schema cannot state read from its words (``serve.bench_load``): an MLPerf
    run's dataset lengths, data-parallel attention, a disaggregated side's phase and the engine settings of a
    launch command, each on the case as the readings before left it, and the assumptions they record."""
    readers: tuple[Callable[[Mapping[str, Any]], tuple[BenchLoad, ...]], ...] = (
        lambda s: mlperf_lengths(
            s, case_id=case.id, group=case.group, model_name=str(case.model.get("name") or ""), source=case.source
        ),
        lambda s: _some(attention_layout(s, notes=case.notes)),
        lambda s: _some(disaggregated_phase(s, case_id=case.id)),
        lambda s: _some(engine_settings_from_words(s)),
    )
    assumed: list[Assumption] = []
    for read in readers:
        for found in read(case.serving):
            case = replace(case, serving={**case.serving, **found.fields})
            assumed.append(Assumption(field=found.field, text=found.text))
    return case, tuple(assumed)


def _some(reading: BenchLoad | None) -> tuple[BenchLoad, ...]:
    return () if reading is None else (reading,)


def _stated_load(case: InferenceCase) -> tuple[dict[str, Any], tuple[Assumption, ...]]:
    """The case's ``serving`` block with its in-flight load: as stated, or where ``serving.load`` is left out (the
    shared schema has no such field) as its words describe it (``serve.bench_load``), recorded as an assumption."""
    serving = dict(case.serving)
    if serving.get("load") is not None:
        return serving, ()
    read = read_bench_load(
        serving, case_id=case.id, group=case.group, model_name=str(case.model.get("name") or ""), notes=case.notes,
        target_notes=[str(t.get("note") or "") for t in case.targets], source=case.source,
    )  # fmt: skip
    return {**serving, **read.fields}, (Assumption(field=read.field, text=read.text),)


def _counted_share(case: InferenceCase, output_len: int) -> float:
    """The case's ``serving.counted_output_len`` over the tokens generated: a client that counts output tokens by
    re-tokenising the returned text with a tokenizer of its own (LLMPerf counts with a Llama-2 tokenizer,
    ray-project/llmperf ``token_benchmark_ray.py``) reports its rates in those tokens; 1 when not stated."""
    if case.serving.get("counted_output_len") is None:
        return 1.0
    return _whole("serving", case.serving, "counted_output_len", MAX_TOKENS, "tokens") / output_len


def _phase(case: InferenceCase, config: ServeConfig, targets: Sequence[tuple[str, float]]) -> str | None:
    """The case's ``serving.phase`` (None: both phases on one replica), checked against what it can be scored on."""
    phase = case.serving.get("phase")
    if phase is None:
        return None
    if phase not in PHASES:
        raise field_error("serving.phase", phase, " or ".join(PHASES))
    if phase == "prefill" and config.output_len != 1:
        raise field_error("serving.output_len", config.output_len, "1 with phase: prefill (a prefill server's run)")
    if phase == "decode":
        if case.serving.get("batch", 0) is None:
            raise field_error(
                "serving.batch", None, "a stated batch with phase: decode (a decode-only server under in-flight load "
                "is not simulated: the simulator prefills every request it admits)",
            )  # fmt: skip
        for metric, _ in targets:
            if metric not in DECODE_METRICS:
                raise field_error("targets.metric", metric, f"with phase: decode, one of {', '.join(DECODE_METRICS)}")
    return str(phase)


def predict_metrics(item: Prepared, eff: ServeEfficiency) -> dict[str, float]:
    """The case's metrics under ``eff`` (static batch on one replica, see ``serve.estimate``), output rates in
    the tokens the benchmark counted (``_counted_share``)."""
    metrics = _predicted(item, eff)
    if item.counted_share != 1.0:
        for key in ("output_tokens_per_s", "output_tokens_per_s_per_device"):
            if key in metrics:
                metrics[key] *= item.counted_share
    return metrics


def _predicted(item: Prepared, eff: ServeEfficiency) -> dict[str, float]:
    cost = item.cost.with_efficiency(eff)
    c = item.config
    drafter = item.drafter.with_efficiency(eff) if item.drafter is not None else None
    if item.in_flight is not None:
        engine: ReplicaCost | SpeculativeCost = cost
        if c.speculative is not None:  # each engine iteration drafts and verifies (serve.speculative)
            engine = SpeculativeCost(cost=cost, drafter=drafter, spec=c.speculative)
        return simulate_case(item.in_flight, engine, c.input_len, c.output_len, prefix_hit=c.prefix_hit)
    times = static_batch_times(
        cost, c.batch, c.input_len, c.output_len, speculative=c.speculative, drafter=drafter,
        cached=c.cached_tokens(), chunk=c.prefill_chunk, buckets=item.buckets,
    )  # fmt: skip
    e2e = times.e2e_s(c.output_len)
    if item.decode_only:  # a decode server: every running sequence gains a token per TPOT, prompts come prefilled
        rate = c.batch / times.tpot_s
        return {
            "output_tokens_per_s": rate,
            "output_tokens_per_s_per_device": rate / cost.replica_devices,
            "tpot_ms": times.tpot_s * 1e3,
            "tpot_p99_ms": times.tpot_s * 1e3,
        }
    throughput = c.batch * c.output_len / e2e
    latencies = {"ttft": times.ttft_s * 1e3, "tpot": times.tpot_s * 1e3, "e2e_latency": e2e * 1e3}
    return {  # a static batch: every request sees the same latencies, so each percentile is the same number
        "output_tokens_per_s": throughput,
        "output_tokens_per_s_per_device": throughput / cost.replica_devices,
        "total_tokens_per_s": c.batch * (c.input_len + c.output_len) / e2e,
        "requests_per_s": c.batch / e2e,
        **{f"{name}_ms": value for name, value in latencies.items()},
        **{f"{name}_p99_ms": value for name, value in latencies.items()},
    }


def _prepared(cases: Sequence[Case]) -> tuple[list[Prepared], list[CaseResult]]:
    ready: list[Prepared] = []
    skipped: list[CaseResult] = []
    for case in cases:
        if isinstance(case, SkippedCase):
            skipped.append(CaseResult(id=case.id, group=case.group, trust=case.trust.value, skipped=case.reason))
        elif isinstance(case, InferenceCase):
            try:
                ready.append(prepare(case))
            except ValueError as exc:
                skipped.append(CaseResult(id=case.id, group=case.group, trust=case.trust.value, skipped=str(exc)))
        else:
            skipped.append(CaseResult(id=case.id, group=case.group, trust=case.trust.value, skipped="a training case"))
    return ready, skipped


def score(
    items: Sequence[Prepared], efficiency: Callable[[Prepared], ServeEfficiency], skipped: Sequence[CaseResult] = ()
) -> ValidationReport:
    rows: list[CaseResult] = list(skipped)
    for item in items:
        predicted = predict_metrics(item, efficiency(item))
        for metric, measured in item.targets:
            rows.append(
                CaseResult(
                    id=f"{item.case.id}:{metric}",
                    group=item.case.group,
                    trust=item.case.trust.value,
                    metric=metric,
                    measured=measured,
                    predicted=predicted[metric],
                    error_pct=error_pct(predicted[metric], measured),
                    assumptions=item.assumptions,
                )
            )
    return ValidationReport(rows=tuple(rows), summary=summarize([r.scored() for r in rows]))


def _lookup(table: ServeEfficiencyTable) -> Callable[[Prepared], ServeEfficiency]:
    def of(item: Prepared) -> ServeEfficiency:
        return table.for_accelerator(get_accelerator(item.accelerator))

    return of


Paths = Path | str | Sequence[Path | str]


def load_inference_cases(paths: Paths) -> list[Case]:
    """The cases of one or more inference files (``validation/inference.yaml`` and its siblings), in order."""
    out: list[Case] = []
    for path in [paths] if isinstance(paths, Path | str) else paths:
        cases = load_cases(path)
        out.extend(cases.cases if isinstance(cases, CaseFile) else cases)
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise InputError(f"case ids repeated across the files: {', '.join(repeated[:5])}")
    return out


def validate_inference_file(
    path: Paths, *, group: str | None = None, efficiency_path: Path | str | None = None
) -> ValidationReport:
    """``rainier validate inference.yaml [more.yaml ...]``: every case predicted with the committed (or given) fit."""
    table = load_serve_efficiency(efficiency_path) if efficiency_path else committed_serve_efficiency()
    ready, skipped = _prepared(select_group(load_inference_cases(path), group))
    return score(ready, _lookup(table), skipped)
