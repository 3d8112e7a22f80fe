"""One serving configuration, analytically: TTFT, TPOT as the cache grows, end-to-end latency, throughput, memory.

A batch of ``batch`` requests, each ``input_len`` prompt tokens and ``output_len`` generated tokens, runs as a
static batch (TensorRT-LLM's gptSessionBenchmark and Neuron's benchmarks do): one prefill pass over all
prompts, then ``output_len - 1`` decode iterations whose KV cache grows by one token per sequence each time.
TTFT = the prefill pass; TPOT = the mean decode iteration (integrated over the growing cache by Simpson's rule);
end-to-end = TTFT + (output_len - 1) x TPOT; throughput counts output tokens over the end-to-end time, prefill
included (validation/README.md convention 11).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from rainier.errors import field_error
from rainier.frame import frame
from rainier.hardware import Accelerator, Cluster
from rainier.precision import Precision
from rainier.serve.buckets import Buckets, runtime_buckets
from rainier.serve.cost import (
    ACTIVATION_BYTES,
    AttentionKernels,
    ReplicaCost,
    WeightFormat,
    check_dp_attention,
    replica_cost,
    usable_memory_bytes,
)
from rainier.serve.efficiency import ServeEfficiency, ServeEfficiencyTable, committed_serve_efficiency
from rainier.serve.limits import MAX_BATCH, MAX_DEGREE, MAX_TOKENS, check_int, check_share
from rainier.serve.speculative import SpecMethod, Speculation, drafter_prefill_s, speculative_step_s
from rainier.units import GIB
from rainier.workload.shape import TransformerShape

if TYPE_CHECKING:
    import pandas as pd

SIMPSON_POINTS = 9  # odd number of points over the decode phase


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeConfig:
    """How one replica serves: parallel degrees (devices, or NeuronCores with ``unit_core``), batch, lengths.

    ``dp_attention`` > 1 is data-parallel attention for a MoE model (``serve.cost``): the replica is ``tp x
    dp_attention x pp`` ranks, ``ep = tp x dp_attention``, and ``batch`` is the whole replica's batch, each
    attention group serving ``batch / dp_attention`` of it.
    """

    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp_attention: int = 1
    batch: int = 1
    input_len: int = 128
    output_len: int = 128
    weights: WeightFormat = WeightFormat.BF16
    unit_core: bool = False
    speculative: Speculation | None = None
    attention: AttentionKernels = AttentionKernels.FUSED
    kv_precision: Precision | None = None  # None: the weight format's default (WeightFormat.kv)
    prefix_hit: float = 0.0  # share of each prompt's tokens found in the prefix cache
    two_batch_overlap: bool = False  # expert all-to-all hidden behind the other micro-batch's compute (serve.cost)
    eplb: bool = False  # experts placed and replicated by measured load (serve.expert_load); engines' default: off
    prefill_chunk: int = 0  # prompt tokens per prefill iteration (chunked prefill; 0: each prompt in one pass)
    # Neuron runtimes' compiled lengths (serve.buckets): automatic buckets (powers of two up to the model's context
    # length); False: bucketing disabled, one compiled length of input + output. GPU and TPU engines pad nothing.
    bucketing: bool = True

    def __post_init__(self) -> None:
        ranges = {"tp": (MAX_DEGREE, "ranks"), "pp": (MAX_DEGREE, "stages"), "ep": (MAX_DEGREE, "ranks"),
                  "dp_attention": (MAX_DEGREE, "ranks"), "batch": (MAX_BATCH, "sequences"),
                  "input_len": (MAX_TOKENS, "tokens"), "output_len": (MAX_TOKENS, "tokens")}  # fmt: skip
        for name, (high, unit) in ranges.items():
            check_int(name.replace("_", "-") if name != "dp_attention" else name, getattr(self, name), 1, high, unit)
        if not isinstance(self.weights, WeightFormat):
            raise field_error("precision", self.weights, f"one of {', '.join(w.value for w in WeightFormat)}")
        if not isinstance(self.unit_core, bool):
            raise field_error("unit", self.unit_core, "device or core")
        check_dp_attention(None, tp=self.tp, ep=self.ep, dp_attention=self.dp_attention)
        check_share("prefix-hit", self.prefix_hit)
        if not isinstance(self.two_batch_overlap, bool):
            raise field_error("two-batch-overlap", self.two_batch_overlap, "true or false")
        if self.prefill_chunk != 0:
            check_int("prefill-chunk", self.prefill_chunk, 1, MAX_TOKENS, "tokens (0: no chunking)")
        if self.two_batch_overlap and self.ep == 1:
            raise field_error("two-batch-overlap", True, "with ep > 1 (it overlaps the expert all-to-all)")
        if not isinstance(self.eplb, bool):
            raise field_error("eplb", self.eplb, "true or false")
        if self.eplb and self.ep == 1:
            raise field_error("eplb", True, "with ep > 1 (it balances the experts over the ep ranks)")
        if not isinstance(self.bucketing, bool):
            raise field_error("bucketing", self.bucketing, "true or false")

    @property
    def kv(self) -> Precision:
        """The KV-cache format: the one given, else the weight format's default."""
        return self.weights.kv if self.kv_precision is None else self.kv_precision

    def cached_tokens(self) -> int:
        """Prompt tokens per request found in the prefix cache (at least one token is always computed)."""
        return min(math.floor(self.prefix_hit * self.input_len), self.input_len - 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "pp": self.pp,
            "ep": self.ep,
            "dp_attention": self.dp_attention,
            "batch": self.batch,
            "input_len": self.input_len,
            "output_len": self.output_len,
            "precision": self.weights.value,
            "unit": "core" if self.unit_core else "device",
            "speculative": self.speculative.to_dict() if self.speculative is not None else None,
            "attention": self.attention.value,
            "kv_precision": self.kv.value,
            "prefix_hit": self.prefix_hit,
            "two_batch_overlap": self.two_batch_overlap,
            "eplb": self.eplb,
            "prefill_chunk": self.prefill_chunk,
            "bucketing": self.bucketing,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeEstimate:
    """Latency, throughput and memory of one configuration."""

    model: str
    cluster: str
    accelerator: str
    config: ServeConfig
    replica_devices: int
    replicas: int
    ttft_s: float
    tpot_s: float  # mean over the decode phase
    tpot_first_s: float
    tpot_last_s: float
    e2e_s: float
    weight_bytes_per_device: float
    kv_bytes_per_device: float
    activation_bytes_per_device: float  # transient, one layer of the batch's prefill at a time
    capacity_bytes_per_device: float
    usable_bytes_per_device: float  # what weights and KV cache may fill (serve.cost.usable_memory_bytes)
    max_batch: int  # largest batch whose KV cache fits with these lengths
    prefill_parts: dict[str, float]
    decode_parts: dict[str, float]
    efficiency_key: str
    # Neuron's compiled lengths this configuration runs at (serve.buckets): the prompt's bucket, and the decode
    # steps' buckets at the first and the last token; None off Neuron
    buckets: tuple[int, int, int] | None = None
    # each iteration's tensor-parallel all-reduce, prefill and mid-output decode: bytes per call and the algorithm
    # the engine runs for them (serve.allreduce); None without tensor parallelism
    tp_all_reduce: dict[str, dict[str, Any]] | None = None
    intervals: dict[str, float] = field(default_factory=dict)
    """``<quantity>_low`` / ``_high`` from the serving model's held-out errors (``serve.residuals``), if added."""

    @property
    def fits(self) -> bool:
        """The batch's KV cache fits beside the weights, and the prefill's activations fit the reserve (the memory
        beyond what weights and KV cache may fill)."""
        reserve = self.capacity_bytes_per_device - self.usable_bytes_per_device
        return self.config.batch <= self.max_batch and self.activation_bytes_per_device <= reserve

    @property
    def output_tokens_per_s(self) -> float:
        """Output tokens per second of all replicas (static batches back to back)."""
        return self.replicas * self.config.batch * self.config.output_len / self.e2e_s

    @property
    def total_tokens_per_s(self) -> float:
        c = self.config
        return self.replicas * c.batch * (c.input_len + c.output_len) / self.e2e_s

    @property
    def devices(self) -> int:
        return self.replicas * self.replica_devices

    def to_frame(self) -> pd.DataFrame:
        """This result as a pandas DataFrame (``rainier.frame``)."""
        return frame(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "cluster": self.cluster,
            "accelerator": self.accelerator,
            "config": self.config.to_dict(),
            "replica_devices": self.replica_devices,
            "replicas": self.replicas,
            "ttft_ms": self.ttft_s * 1e3,
            "tpot_ms": self.tpot_s * 1e3,
            "tpot_first_ms": self.tpot_first_s * 1e3,
            "tpot_last_ms": self.tpot_last_s * 1e3,
            "e2e_ms": self.e2e_s * 1e3,
            "output_tokens_per_s": self.output_tokens_per_s,
            "output_tokens_per_s_per_device": self.output_tokens_per_s / self.devices,
            "total_tokens_per_s": self.total_tokens_per_s,
            "total_tokens_per_s_per_device": self.total_tokens_per_s / self.devices,
            "memory_per_device_gib": {
                "weights": self.weight_bytes_per_device / GIB,
                "kv_cache": self.kv_bytes_per_device / GIB,
                "activations": self.activation_bytes_per_device / GIB,
                "capacity": self.capacity_bytes_per_device / GIB,
                "usable": self.usable_bytes_per_device / GIB,
            },
            "fits": self.fits,
            "max_batch": self.max_batch,
            "prefill_parts_ms": {k: v * 1e3 for k, v in self.prefill_parts.items()},
            "decode_parts_ms": {k: v * 1e3 for k, v in self.decode_parts.items()},
            "efficiency": self.efficiency_key,
            "buckets": (
                None
                if self.buckets is None
                else dict(zip(("prompt", "decode_first", "decode_last"), self.buckets, strict=True))
            ),
            "tp_all_reduce": self.tp_all_reduce,
            **self.intervals,
        }


def resolve_serve_efficiency(
    cluster: Cluster, efficiency: ServeEfficiency | ServeEfficiencyTable | None
) -> tuple[ServeEfficiency, str]:
    if isinstance(efficiency, ServeEfficiency):
        return efficiency, "given"
    table = efficiency if efficiency is not None else committed_serve_efficiency()
    return table.for_accelerator(cluster.accelerator), table.key_for(cluster.accelerator)


def estimate_serving(
    shape: TransformerShape,
    cluster: Cluster,
    config: ServeConfig,
    *,
    efficiency: ServeEfficiency | ServeEfficiencyTable | None = None,
    draft: TransformerShape | None = None,
) -> ServeEstimate:
    """TTFT, TPOT, end-to-end latency, throughput and memory of ``config`` on every replica of ``cluster``."""
    eff, key = resolve_serve_efficiency(cluster, efficiency)
    cost = replica_cost(
        shape,
        cluster,
        tp=config.tp,
        pp=config.pp,
        ep=config.ep,
        dp_attention=config.dp_attention,
        unit_core=config.unit_core,
        weights=config.weights,
        eff=eff,
        attention=config.attention,
        kv_precision=config.kv_precision,
        two_batch_overlap=config.two_batch_overlap,
        eplb=config.eplb,
    )
    b, i, o = config.batch, config.input_len, config.output_len
    cached = config.cached_tokens()
    drafter = draft_cost(shape, cluster, config, eff, draft)
    buckets = config_buckets(cluster.accelerator, shape, config)
    times = static_batch_times(
        cost, b, i, o, speculative=config.speculative, drafter=drafter, cached=cached, chunk=config.prefill_chunk,
        buckets=buckets,
    )  # fmt: skip
    prompt = buckets.pad(i) if buckets is not None else i
    mid = i + 1 + max(o - 1, 1) // 2
    mid = buckets.pad(mid) if buckets is not None else mid
    kv_per_device = b * (i + o) * cost.kv_bytes_per_token_replica / cost.replica_devices
    activations = prefill_activation_bytes(shape, b * (prompt - cached), cost.tp_devices * cost.dp_attention)
    capacity = cluster.accelerator.hbm_bytes
    max_batch = cost.kv_capacity // (i + o)
    return ServeEstimate(
        model=shape.name,
        cluster=cluster.id,
        accelerator=cluster.accelerator.id,
        config=config,
        replica_devices=cost.replica_devices,
        replicas=max(1, cluster.num_devices // cost.replica_devices),
        ttft_s=times.ttft_s,
        tpot_s=times.tpot_s,
        tpot_first_s=times.decode_s[0] if o > 1 else 0.0,
        tpot_last_s=times.decode_s[-1] if o > 1 else 0.0,
        e2e_s=times.e2e_s(o),
        weight_bytes_per_device=cost.weight_bytes_per_device,
        kv_bytes_per_device=kv_per_device,
        activation_bytes_per_device=activations,
        capacity_bytes_per_device=capacity,
        usable_bytes_per_device=usable_memory_bytes(cluster.accelerator),
        max_batch=max_batch,
        prefill_parts=cost.parts(b * (prompt - cached), 0, 0, prefill_seqs=b, cached_tokens=b * cached),
        decode_parts=cost.parts(0, b, b * mid),
        efficiency_key=key,
        buckets=None if buckets is None else (prompt, buckets.pad(i + 1), buckets.pad(i + max(o - 1, 1))),
        tp_all_reduce=_all_reduces(cost, b * (prompt - cached), b),
    )


def _all_reduces(cost: ReplicaCost, prefill_tokens: int, batch: int) -> dict[str, dict[str, Any]] | None:
    """The prefill's and a decode step's tensor-parallel all-reduce (``ReplicaCost.tp_all_reduce``)."""
    prefill = cost.tp_all_reduce(prefill_tokens, 0, prefill_seqs=batch)
    decode = cost.tp_all_reduce(0, batch)
    return None if prefill is None or decode is None else {"prefill": prefill, "decode": decode}


def config_buckets(accelerator: Accelerator, shape: TransformerShape, config: ServeConfig) -> Buckets | None:
    """The compiled lengths ``config`` runs at on ``accelerator``'s runtime (``serve.buckets``): automatic buckets
    up to the model's context length, or with bucketing disabled one bucket of ``input_len + output_len`` (the
    shortest sequence length that serves the requests); None off Neuron."""
    max_len = shape.seq_len if config.bucketing else config.input_len + config.output_len
    return runtime_buckets(accelerator, max_len, enabled=config.bucketing)


def prefill_activation_bytes(shape: TransformerShape, tokens: int, tp_devices: float) -> float:
    """Peak transient activations of a prefill pass on one device: one layer's tensors for every prompt token.

    Per token a layer holds its input and output (``2h``), the query/key/value and attention output (``2h`` for
    MHA, less with GQA: counted as ``2h``) and the MLP's intermediate (``ffn`` x matrices - 1 for gated), in 16
    bits, split over the tensor-parallel devices (inference keeps no activations across layers).
    """
    width = 4 * shape.hidden_dim + (shape.mlp_activation.num_matrices - 1) * shape.ffn_hidden_dim
    return tokens * width * ACTIVATION_BYTES / tp_devices


@dataclass(frozen=True, slots=True)
class StaticBatchTimes:
    """A static batch's prefill time, decode iteration times across its output, and their mean (the TPOT)."""

    ttft_s: float
    decode_s: tuple[float, ...]  # at SIMPSON_POINTS evenly spaced points of the decode phase
    tpot_s: float  # mean decode iteration (0 when only one token is generated)

    def e2e_s(self, output_len: int) -> float:
        return self.ttft_s + (output_len - 1) * self.tpot_s


def static_batch_times(
    cost: ReplicaCost,
    batch: int,
    input_len: int,
    output_len: int,
    *,
    speculative: Speculation | None = None,
    drafter: ReplicaCost | None = None,
    cached: int = 0,
    chunk: int = 0,
    buckets: Buckets | None = None,
) -> StaticBatchTimes:
    """One prefill of ``batch`` prompts, then decode iterations whose caches hold ``input_len + t`` tokens each.
    Each prompt finds ``cached`` of its tokens in the prefix cache: its prefill computes the rest, attending to them.

    The decode times are sampled at evenly spaced points of the decode phase and averaged by composite Simpson's
    rule. With ``speculative``, a decode step is the drafter's passes (``drafter``) plus one verification of
    ``k + 1`` tokens per sequence, and yields ``tokens_per_step`` tokens: the TPOT is the step over that
    (``serve.speculative``); the drafter's pass over the prompts is part of the TTFT. ``serve estimate`` and the
    validation (``serve.validate``) both use this, so what is validated is what users see. A ``chunk`` prefills
    the prompts ``chunk`` tokens at a time (``prefill_s``).

    On a runtime with compiled ``buckets`` (Neuron, ``serve.buckets``) the prompts are prefilled padded to their
    bucket, and each decode step reads the cache over its bucket: the TPOT is then the exact mean over the
    buckets the cache passes through (the decode time is constant within one), and ``decode_s`` samples it.
    """
    padded = buckets.pad(input_len) if buckets is not None else input_len
    ttft = prefill_s(cost, batch, padded - cached, cached, chunk)
    if speculative is not None:  # the drafter builds its own KV cache over the prompts before the first token
        ttft += drafter_prefill_s(drafter, speculative, batch * (padded - cached), batch, batch * cached)
    steps = max(output_len - 1, 1)
    points = [input_len + 1 + round(k * (steps - 1) / (SIMPSON_POINTS - 1)) for k in range(SIMPSON_POINTS)]

    def step_s(context: int) -> float:
        if speculative is None:
            return cost.iteration_s(0, batch, batch * context)
        per_token = 1.0 / speculative.tokens_per_step
        return per_token * speculative_step_s(cost, drafter, speculative, batch, batch * context)

    if buckets is None:
        decode = tuple(step_s(context) for context in points)
        return StaticBatchTimes(ttft_s=ttft, decode_s=decode, tpot_s=_simpson(decode) if output_len > 1 else 0.0)
    decode = tuple(step_s(buckets.pad(context)) for context in points)
    segments = buckets.segments(input_len + 1, input_len + steps)
    tpot = sum(count * step_s(length) for length, count in segments) / steps
    return StaticBatchTimes(ttft_s=ttft, decode_s=decode, tpot_s=tpot if output_len > 1 else 0.0)


def prefill_s(cost: ReplicaCost, batch: int, new: int, cached: int, chunk: int = 0) -> float:
    """Time to prefill ``batch`` prompts of ``new`` uncached tokens after ``cached`` cached ones.

    Chunked (``chunk`` > 0), each iteration computes ``chunk`` tokens of every prompt, attending to the chunks
    before it. Under pipeline parallelism the chunks flow through the ``pp`` stages one behind the other (SGLang's
    chunked pipeline-parallel prefill; Megatron-style micro-batches): each stage does ``1/pp`` of a chunk's work,
    and the last chunk leaves the last stage ``sum(chunks) / pp + (pp - 1) x slowest chunk / pp`` after the first
    entered -- a 1F pipeline's fill and drain (Huang et al. 2019, GPipe sec. 2.2). Unchunked, the one pass crosses
    the stages one after another.
    """
    if chunk <= 0 or new <= chunk:
        return cost.iteration_s(batch * new, 0, 0, prefill_seqs=batch, cached_tokens=batch * cached)
    times = [
        cost.iteration_s(batch * min(chunk, new - at), 0, 0, prefill_seqs=batch, cached_tokens=batch * (cached + at))
        for at in range(0, new, chunk)
    ]
    stages = cost.pipeline_stages
    return sum(times) / stages + (stages - 1) * max(times) / stages


def draft_cost(
    target: TransformerShape,
    cluster: Cluster,
    config: ServeConfig,
    eff: ServeEfficiency,
    draft: TransformerShape | None = None,
) -> ReplicaCost | None:
    """The cost of one drafter pass of ``config.speculative`` on the target's devices (None: no drafter)."""
    spec = config.speculative
    if spec is None:
        return None
    shape = spec.draft_shape(target, draft)
    if shape is None:
        if spec.method is SpecMethod.DRAFT:
            raise field_error("speculative.model", spec.draft_model, "a catalog model or config.json to draft with")
        return None
    weights = config.weights
    if weights is WeightFormat.MXFP4_EXPERTS and shape.moe is None:
        weights = WeightFormat.BF16  # a dense drafter of a gpt-oss target keeps its 16-bit weights
    # Under data-parallel attention the drafter runs in every group on its share of the batch: a MoE head (MTP)
    # spreads its experts over the same ep ranks; a dense one runs per group, which 1/dp of the tokens measures.
    dp = config.dp_attention
    moe_dp = dp > 1 and shape.moe is not None
    cost = replica_cost(
        shape, cluster, tp=config.tp, pp=1, unit_core=config.unit_core, weights=weights, eff=eff,
        attention=config.attention, kv_precision=config.kv_precision, ep=config.ep if moe_dp else 1,
        dp_attention=dp if moe_dp else 1, eplb=config.eplb,
    )  # fmt: skip
    return cost if dp == 1 or moe_dp else replace(cost, dp_attention=dp)


def _simpson(values: tuple[float, ...]) -> float:
    """Mean of a function sampled at an odd number of equally spaced points (composite Simpson's rule)."""
    n = len(values) - 1
    weights = [1.0 if k in (0, n) else (4.0 if k % 2 else 2.0) for k in range(n + 1)]
    return sum(w * v for w, v in zip(weights, values, strict=True)) / (3.0 * n)
