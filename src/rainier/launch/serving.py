"""Serving launch configurations: ``vllm serve`` arguments, TensorRT-LLM's LLM API options (or trtllm-serve flags)
and ``python -m sglang.launch_server`` arguments.

A rainier serving layout (``ServeConfig``: tp, pp, ep, batch, weight and KV formats) is one replica; request
lengths are the benchmark's, not the server's, so they are neither written nor read.

vLLM (``vllm serve MODEL``; engine arguments of vllm-project/vllm ``vllm/engine/arg_utils.py``):
``--tensor-parallel-size``/``-tp``, ``--pipeline-parallel-size``/``-pp``, ``--enable-expert-parallel`` (the MoE
layers then use expert parallelism over the tp x dp ranks instead of tensor parallelism, so one replica's ep = tp),
``--enable-eplb`` (experts placed by their load, ``serve.expert_load``), ``--max-num-seqs`` (the batch cap),
``--quantization fp8`` (weights quantised to fp8 at load), ``--dtype``,
``--kv-cache-dtype``. TensorRT-LLM (``tensorrt_llm/llmapi/llm_args.py``; the YAML given to
``trtllm-serve --extra_llm_api_options``): ``tensor_parallel_size``, ``pipeline_parallel_size``,
``moe_expert_parallel_size``, ``max_batch_size`` (default 2048), ``kv_cache_config.dtype``; the trtllm-serve flags
``--tp_size``, ``--pp_size``, ``--ep_size``, ``--max_batch_size`` say the same. Neither file states the weight format
of a pre-quantised checkpoint: it is read from a checkpoint name ending in FP8/FP4 (NVIDIA's and Meta's naming),
with a note, else bf16.

SGLang (``python -m sglang.launch_server``; sgl-project/sglang ``docs/advanced_features/server_arguments.md``):
``--tp-size`` (``--tp``, ``--tensor-parallel-size``) is every rank of the server, ``--dp-size`` with
``--enable-dp-attention`` splits them into data-parallel attention groups of ``tp-size / dp-size`` ranks whose MoE
layers share ``--ep-size`` (``--ep``, ``--expert-parallel-size``) expert ranks; ``--moe-a2a-backend deepep`` sends
the tokens to the experts across nodes, ``--enable-two-batch-overlap`` overlaps that exchange with the other
micro-batch, ``--enable-eplb`` places the experts by their load, ``--max-running-requests`` caps the batch,
``--quantization fp8`` quantises the weights at load and ``--kv-cache-dtype`` stores the cache (``fp8_e4m3``,
``fp8_e5m2``, ``bf16``). rainier's layout ``tp x dp_attention`` with ``ep = tp x dp_attention`` is SGLang's
``--tp-size tp x dp_attention --dp-size dp_attention --enable-dp-attention --ep-size tp x dp_attention``; a replica
wider than a node adds ``--nnodes``, ``--node-rank`` and ``--dist-init-addr``, the same command run on every node
with its rank.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

from rainier.errors import InputError
from rainier.launch.argv import Flags, format_command
from rainier.launch.config import Framework, LaunchConfig, StatedCluster, catalog_model_for, not_expressible
from rainier.launch.tree import Tree
from rainier.precision import Precision
from rainier.serve.cost import AttentionKernels, WeightFormat
from rainier.serve.estimate import ServeConfig
from rainier.serve.inflight import SGLANG_MAX_REQUESTS

VLLM_ASSUMED_MAX_NUM_SEQS = 256  # vLLM's default when --max-num-seqs is absent (1024 on some GPUs and versions)
# SGLang sizes its request pool from the KV cache when --max-running-requests is absent (serve.inflight's
# SGLANG_MAX_REQUESTS, from model_runner.py init_memory_pool): without a KV size its floor is taken
SGLANG_ASSUMED_MAX_RUNNING = SGLANG_MAX_REQUESTS[0]
SGLANG_DIST_ADDR = "HEAD_NODE_ADDR:5000"  # --dist-init-addr placeholder: the first node's address and a free port
TRTLLM_DEFAULT_MAX_BATCH = 2048  # TensorRT-LLM BaseLlmArgs.max_batch_size default
_CHECKPOINT_FORMAT = re.compile(r"[-_](fp8|nvfp4|fp4)(?:[-_].*)?$", re.IGNORECASE)
_KV = {
    "auto": None,
    "fp8": Precision.FP8,
    "fp8_e4m3": Precision.FP8,
    "fp8_e5m2": Precision.FP8,
    "bfloat16": Precision.BF16,
    "float16": Precision.FP16,
}
_VLLM_QUANT = {"fp8": WeightFormat.FP8, "awq": WeightFormat.INT4_WEIGHTS, "gptq": WeightFormat.INT4_WEIGHTS}


def _checkpoint_weights(model: str | None, notes: list[str]) -> WeightFormat:
    match = _CHECKPOINT_FORMAT.search(model or "")
    if match is None:
        return WeightFormat.BF16
    weights = WeightFormat.FP8 if match.group(1).lower() == "fp8" else WeightFormat.FP4
    notes.append(f"weights {weights.value}: the checkpoint name {model} says so (a pre-quantised checkpoint)")
    return weights


def _int(where: str, flag: str, values: tuple[str, ...] | None, default: int) -> int:
    if values is None:
        return default
    if len(values) != 1 or not values[0].isdigit() or int(values[0]) < 1:
        raise InputError(f"{where}: {flag} {' '.join(values) or '(no value)'!r} is not a positive integer")
    return int(values[0])


def _config(where: str, **values: Any) -> ServeConfig:
    try:
        return ServeConfig(**values)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def _model(name: str | None) -> Any:
    return catalog_model_for(name) if name else None


def _served(
    framework: Framework,
    where: str,
    model: str | None,
    serve: ServeConfig,
    notes: list[str],
    ignored: Iterable[str],
    cluster: StatedCluster | None = None,
) -> LaunchConfig:
    """A serving engine's imported configuration: its model looked up in the catalog once (missing when unknown)."""
    shape = _model(model)
    return LaunchConfig(
        framework=framework,
        source=where,
        model=shape,
        model_name=model,
        model_missing=() if shape is not None else ("model",),
        serve=serve,
        cluster=cluster,
        notes=tuple(notes),
        ignored=tuple(ignored),
    )


def _activation(weights: WeightFormat) -> Precision:
    """The activations' dtype of a server given these weights (its "auto" KV cache): fp16 with fp16 weights, else
    bf16, whatever the weights are quantised to."""
    return Precision.FP16 if weights is WeightFormat.FP16 else Precision.BF16


def _read_formats(
    flags: Flags,
    where: str,
    model: str | None,
    notes: list[str],
    quantizations: dict[str, WeightFormat],
    kv_dtypes: dict[str, Precision | None],
    quant_flags: tuple[str, ...] = ("--quantization",),
) -> tuple[WeightFormat, Precision]:
    """Weights and KV cache from ``--quantization`` (or ``--dtype``, else the checkpoint's name) and
    ``--kv-cache-dtype`` ("auto": the activations' dtype), as vLLM and SGLang spell them."""
    quant = next((v for f in quant_flags if (v := flags.get(f, where)) is not None), None)
    if quant is not None:
        if len(quant) != 1 or quant[0].lower() not in quantizations:
            raise InputError(f"{where}: --quantization {' '.join(quant)!r}: rainier reads {', '.join(quantizations)}")
        weights = quantizations[quant[0].lower()]
    else:
        dtype = (flags.get("--dtype", where) or ("auto",))[0].lower()
        weights = WeightFormat.FP16 if dtype in ("float16", "half") else _checkpoint_weights(model, notes)
    kv_text = (flags.get("--kv-cache-dtype", where) or ("auto",))[0].lower()
    if kv_text not in kv_dtypes:
        raise InputError(f"{where}: --kv-cache-dtype {kv_text!r}: one of {', '.join(kv_dtypes)}")
    return weights, kv_dtypes[kv_text] or _activation(weights)


def _format_args(fw: Framework, config: ServeConfig, fp8_cache: str, engine: str) -> list[tuple[str, tuple[str, ...]]]:
    """``--quantization fp8`` or ``--dtype``, and ``--kv-cache-dtype`` when the cache is not the activations'
    dtype, as vLLM and SGLang take them (``engine`` quantises to fp8 at load; other formats are checkpoints')."""
    weights = config.weights
    args: list[tuple[str, tuple[str, ...]]]
    if weights is WeightFormat.FP8:
        args = [("--quantization", ("fp8",))]
    elif weights in (WeightFormat.BF16, WeightFormat.FP16):
        args = [("--dtype", ("bfloat16" if weights is WeightFormat.BF16 else "float16",))]
    else:
        raise not_expressible(fw, "precision", weights.value, f"{engine} quantises to fp8 at load; serve others "
                              "pre-quantised")  # fmt: skip
    activation = _activation(weights)
    if config.kv is Precision.FP8:
        args.append(("--kv-cache-dtype", (fp8_cache,)))
    elif config.kv is not activation:
        raise not_expressible(fw, "kv_precision", config.kv.value, f"fp8 or the activations' {activation.value}")
    return args


# ----------------------------------------------------------------------------------------------------------- vLLM
def read_vllm(flags: Flags, where: str) -> LaunchConfig:
    """``vllm serve MODEL ...`` as one replica's layout."""
    notes: list[str] = []
    words = list(flags.words)
    model = words[words.index("serve") + 1] if "serve" in words and words.index("serve") + 1 < len(words) else None
    model = model or (flags.get("--model", where) or (None,))[0]
    tp = _int(where, "--tensor-parallel-size", flags.get("--tensor-parallel-size", where) or flags.get("-tp", where), 1)
    pp = _int(
        where, "--pipeline-parallel-size", flags.get("--pipeline-parallel-size", where) or flags.get("-pp", where), 1
    )
    seqs = flags.get("--max-num-seqs", where)
    if seqs is None:
        notes.append(f"--max-num-seqs not given: vLLM's default, taken as {VLLM_ASSUMED_MAX_NUM_SEQS}")
    batch = _int(where, "--max-num-seqs", seqs, VLLM_ASSUMED_MAX_NUM_SEQS)
    weights, kv = _read_formats(flags, where, model, notes, _VLLM_QUANT, _KV, ("--quantization", "-q"))
    data_parallel = flags.get("--data-parallel-size", where) or flags.get("-dp", where)
    if data_parallel is not None:
        notes.append(f"--data-parallel-size {data_parallel[0]}: that many replicas of this layout")
    ep = tp if flags.has("--enable-expert-parallel") else 1
    serve = _config(
        where,
        tp=tp,
        pp=pp,
        ep=ep,
        batch=batch,
        weights=weights,
        kv_precision=kv,
        eplb=flags.has("--enable-eplb") and ep > 1,
    )
    used = {
        "--tensor-parallel-size",
        "-tp",
        "--pipeline-parallel-size",
        "-pp",
        "--max-num-seqs",
        "--quantization",
        "-q",
        "--dtype",
        "--kv-cache-dtype",
        "--enable-expert-parallel",
        "--enable-eplb",
        "--model",
        "--data-parallel-size",
        "-dp",
    }
    return _served(Framework.VLLM, where, model, serve, notes, sorted(flags.names() - used))


def _refuse_serving(framework: Framework, config: ServeConfig) -> None:
    checks = [
        ("unit", "core" if config.unit_core else "device", "device", "GPU servers count devices"),
        ("speculative", config.speculative, None, "speculative decoding is not written by rainier yet"),
        ("attention", config.attention, AttentionKernels.FUSED, "today's engines run fused attention"),
        ("prefix_hit", config.prefix_hit, 0.0, "a prefix-cache hit rate is the workload's, not a server setting"),
    ]
    if framework is not Framework.SGLANG:
        why = "written for sglang (--to sglang)"
        checks += [
            ("dp_attention", config.dp_attention, 1, f"data-parallel attention is {why}"),
            ("two_batch_overlap", config.two_batch_overlap, False, why),
        ]
    if framework is Framework.TRTLLM:
        why = "TensorRT-LLM's load balancer takes a moe_config.load_balancer file of measured expert statistics"
        checks.append(("eplb", config.eplb, False, why))
    for field, value, default, why in checks:
        if value != default:
            raise not_expressible(framework, field, getattr(value, "value", value), why)


def write_vllm(model: str, config: ServeConfig) -> str:
    """``vllm serve MODEL`` with the layout's flags."""
    fw = Framework.VLLM
    _refuse_serving(fw, config)
    if config.ep not in (1, config.tp):
        raise not_expressible(fw, "ep", config.ep, f"--enable-expert-parallel makes ep = tp = {config.tp}")
    args: list[tuple[str, tuple[str, ...]]] = [
        ("--tensor-parallel-size", (str(config.tp),)),
        ("--pipeline-parallel-size", (str(config.pp),)),
    ]
    if config.ep > 1:
        args.append(("--enable-expert-parallel", ()))
    if config.eplb:
        args.append(("--enable-eplb", ()))
    args.append(("--max-num-seqs", (str(config.batch),)))
    args += _format_args(fw, config, "fp8", "vLLM")
    return format_command(["vllm", "serve", model], args)


# --------------------------------------------------------------------------------------------------- TensorRT-LLM
_TRT_FLAGS = {
    "--tp_size": "tensor_parallel_size",
    "--pp_size": "pipeline_parallel_size",
    "--ep_size": "moe_expert_parallel_size",
    "--max_batch_size": "max_batch_size",
}


def read_trtllm_options(data: dict[str, Any], where: str, *, model: str | None = None) -> LaunchConfig:
    """TensorRT-LLM LLM API options (the ``--extra_llm_api_options`` YAML) as one replica's layout."""
    t = Tree(data, where)
    notes: list[str] = []
    model = model or t.text("model")
    batch = t.integer("max_batch_size")
    if batch is None:
        notes.append(f"max_batch_size not given: TensorRT-LLM's default {TRTLLM_DEFAULT_MAX_BATCH}")
    kv_text = (t.text("kv_cache_config.dtype") or "auto").lower()
    if kv_text not in _KV:
        raise t.error("kv_cache_config.dtype", kv_text, ", ".join(_KV))
    dtype = (t.text("dtype") or "auto").lower()
    weights = WeightFormat.FP16 if dtype == "float16" else _checkpoint_weights(model, notes)
    serve = _config(
        where,
        tp=t.integer("tensor_parallel_size") or 1,
        pp=t.integer("pipeline_parallel_size") or 1,
        ep=t.integer("moe_expert_parallel_size") or 1,
        batch=batch or TRTLLM_DEFAULT_MAX_BATCH,
        weights=weights,
        kv_precision=_KV[kv_text],
    )
    return _served(Framework.TRTLLM, where, model, serve, notes, t.unread())


def read_trtllm_command(flags: Flags, where: str) -> LaunchConfig:
    """``trtllm-serve MODEL --tp_size ...`` (options files it names are not followed: import them apart)."""
    words = list(flags.words)
    model = words[words.index("trtllm-serve") + 1] if "trtllm-serve" in words[:-1] else None
    options: dict[str, Any] = {}
    for flag, key in _TRT_FLAGS.items():
        values = flags.get(flag, where)
        if values is not None:
            options[key] = _int(where, flag, values, 1)
    config = read_trtllm_options(options, where, model=model)
    extra = flags.get("--extra_llm_api_options", where)
    notes = list(config.notes)
    if extra is not None:
        notes.append(f"--extra_llm_api_options {extra[0]} not followed: import that file for its settings")
    ignored = sorted(flags.names() - set(_TRT_FLAGS))
    return LaunchConfig(
        framework=Framework.TRTLLM,
        source=where,
        model=config.model,
        model_name=model,
        model_missing=config.model_missing,
        serve=config.serve,
        notes=tuple(notes),
        ignored=tuple(ignored),
    )


def write_trtllm(model: str, config: ServeConfig) -> str:
    """The LLM API options YAML for ``trtllm-serve MODEL --extra_llm_api_options FILE``."""
    fw = Framework.TRTLLM
    _refuse_serving(fw, config)
    if config.weights not in (WeightFormat.BF16, WeightFormat.FP16):
        raise not_expressible(
            fw, "precision", config.weights.value, "the weight format is the checkpoint's: serve a quantised checkpoint"
        )
    document: dict[str, Any] = {
        "tensor_parallel_size": config.tp,
        "pipeline_parallel_size": config.pp,
        "moe_expert_parallel_size": config.ep,
        "max_batch_size": config.batch,
        "dtype": "float16" if config.weights is WeightFormat.FP16 else "bfloat16",
        "kv_cache_config": {"dtype": "fp8" if config.kv is Precision.FP8 else "auto"},
    }
    if config.kv is not Precision.FP8 and config.kv is not config.weights.kv:
        raise not_expressible(fw, "kv_precision", config.kv.value, "auto (the weights' format) or fp8")
    header = f"# trtllm-serve {model} --extra_llm_api_options THIS_FILE\n"
    return header + yaml.safe_dump(document, sort_keys=False)


# ------------------------------------------------------------------------------------------------------------ SGLang
_SGL_TP = ("--tp-size", "--tp", "--tensor-parallel-size")
_SGL_DP = ("--dp-size", "--dp", "--data-parallel-size")
_SGL_EP = ("--ep-size", "--ep", "--expert-parallel-size")
_SGL_PP = ("--pp-size", "--pp", "--pipeline-parallel-size")
_SGL_QUANT = {
    "fp8": WeightFormat.FP8,
    "w8a8_fp8": WeightFormat.FP8,
    "modelopt_fp8": WeightFormat.FP8,
    "modelopt_fp4": WeightFormat.FP4,
    "awq": WeightFormat.INT4_WEIGHTS,
    "gptq": WeightFormat.INT4_WEIGHTS,
    "mxfp4": WeightFormat.MXFP4_EXPERTS,
}
_SGL_KV = {"auto": None, "fp8_e4m3": Precision.FP8, "fp8_e5m2": Precision.FP8, "bf16": Precision.BF16,
           "bfloat16": Precision.BF16}  # fmt: skip


def _first(flags: Flags, names: tuple[str, ...], where: str) -> tuple[str | None, tuple[str, ...] | None]:
    for name in names:
        values = flags.get(name, where)
        if values is not None:
            return name, values
    return None, None


def read_sglang(flags: Flags, where: str) -> LaunchConfig:
    """``python -m sglang.launch_server --model-path M ...`` as one replica's layout."""
    notes: list[str] = []
    model = (flags.get("--model-path", where) or flags.get("--model", where) or (None,))[0]
    degrees = {}
    for key, names in (("tp", _SGL_TP), ("dp", _SGL_DP), ("ep", _SGL_EP), ("pp", _SGL_PP)):
        name, values = _first(flags, names, where)
        degrees[key] = _int(where, name or names[0], values, 1)
    world, dp, ep, pp = degrees["tp"], degrees["dp"], degrees["ep"], degrees["pp"]
    if flags.has("--enable-ep-moe"):  # SGLang before --ep-size: the MoE layers' experts over every tp rank
        ep = world
    tp, dp_attention = world, 1
    if flags.has("--enable-dp-attention"):
        if dp == 1:
            dp = world
            notes.append(f"--enable-dp-attention without --dp-size: SGLang 0.4 set dp to tp ({world})")
        if world % dp:
            raise InputError(f"{where}: --dp-size {dp} does not divide --tp-size {world}")
        if ep == world:
            tp, dp_attention = world // dp, dp
        else:
            notes.append(
                f"--enable-dp-attention with the experts tensor-parallel (--ep-size {ep}, not {world}): read as "
                f"tp={world}; rainier models data-parallel attention with the experts over every rank"
            )
    elif dp > 1:
        notes.append(f"--dp-size {dp}: that many replicas of this layout")
    running = flags.get("--max-running-requests", where)
    if running is None:
        notes.append(f"--max-running-requests not given: SGLang sizes it from the KV cache, taken as its floor "
                     f"{SGLANG_ASSUMED_MAX_RUNNING}")  # fmt: skip
    batch = _int(where, "--max-running-requests", running, SGLANG_ASSUMED_MAX_RUNNING)
    weights, kv = _read_formats(flags, where, model, notes, _SGL_QUANT, _SGL_KV)
    algorithm = flags.get("--speculative-algorithm", where)
    if algorithm is not None:
        notes.append(f"--speculative-algorithm {algorithm[0]} not read: give serve estimate --speculative with the "
                     "acceptance the workload reaches")  # fmt: skip
    serve = _config(
        where,
        tp=tp,
        pp=pp,
        ep=ep,
        dp_attention=dp_attention,
        batch=batch,
        weights=weights,
        kv_precision=kv,
        two_batch_overlap=flags.has("--enable-two-batch-overlap") and ep > 1,
        eplb=flags.has("--enable-eplb") and ep > 1,
    )
    cluster = None
    nodes = flags.get("--nnodes", where)
    if nodes is not None:
        count = _int(where, "--nnodes", nodes, 1)
        if (world * pp) % count:
            raise InputError(f"{where}: --nnodes {count} does not divide the {world * pp} ranks of tp-size x pp-size")
        cluster = StatedCluster(num_nodes=count, devices_per_node=world * pp // count)
    # the expert exchange rainier costs is DeepEP's whatever --moe-a2a-backend says (serve.dispatch); where the
    # nodes meet and this node's rank do not change the layout
    used = {*_SGL_TP, *_SGL_DP, *_SGL_EP, *_SGL_PP, "--model-path", "--model", "--enable-ep-moe",
            "--enable-dp-attention", "--max-running-requests", "--quantization", "--dtype", "--kv-cache-dtype",
            "--enable-two-batch-overlap", "--enable-eplb", "--speculative-algorithm", "--moe-a2a-backend",
            "--enable-deepep-moe", "--nnodes", "--node-rank", "--dist-init-addr"}  # fmt: skip
    return _served(Framework.SGLANG, where, model, serve, notes, sorted(flags.names() - used), cluster)


def write_sglang(model: str, config: ServeConfig, devices_per_node: int | None = None) -> str:
    """``python -m sglang.launch_server`` with the layout's flags (module docstring); a replica wider than
    ``devices_per_node`` gets the multi-node flags, to run on every node with its ``--node-rank``."""
    fw = Framework.SGLANG
    _refuse_serving(fw, config)
    world = config.tp * config.dp_attention
    args: list[tuple[str, tuple[str, ...]]] = [("--model-path", (model,)), ("--tp-size", (str(world),))]
    if config.pp > 1:
        args.append(("--pp-size", (str(config.pp),)))
    if config.dp_attention > 1:
        args += [("--dp-size", (str(config.dp_attention),)), ("--enable-dp-attention", ())]
    if config.ep > 1:
        args.append(("--ep-size", (str(config.ep),)))
    if config.dp_attention > 1:
        args.append(("--moe-a2a-backend", ("deepep",)))  # the token exchange rainier costs (serve.dispatch)
    if config.two_batch_overlap:
        args.append(("--enable-two-batch-overlap", ()))
    if config.eplb:
        args.append(("--enable-eplb", ()))
    args.append(("--max-running-requests", (str(config.batch),)))
    args += _format_args(fw, config, "fp8_e4m3", "SGLang")
    devices = world * config.pp
    header = ""
    if devices_per_node is not None and devices > devices_per_node:
        nodes = -(-devices // devices_per_node)
        args += [("--nnodes", (str(nodes),)), ("--node-rank", ("0",)), ("--dist-init-addr", (SGLANG_DIST_ADDR,))]
        head = SGLANG_DIST_ADDR.split(":")[0]
        header = (
            f"# one replica on {nodes} nodes of {devices_per_node} devices: run this on each node with its "
            f"--node-rank (0 to {nodes - 1}), {head} the first node's address\n"
        )
    return header + format_command(["python3", "-m", "sglang.launch_server"], args)
