"""Megatron-LM ``pretrain_gpt.py`` arguments: written from a model and plan, read back from a launch script.

Flag names and defaults are Megatron-LM's (NVIDIA/Megatron-LM ``megatron/training/arguments.py`` and
``megatron/core/transformer/transformer_config.py``, read at commit d98e8a64): the MLP is GeLU with
``ffn = 4h`` unless ``--swiglu`` / ``--squared-relu`` and ``--ffn-hidden-size``; LayerNorm unless
``--normalization RMSNorm``; learned absolute positions unless ``--position-embedding-type rope``; embeddings tied
unless ``--untie-embeddings-and-output-weights``; linear biases on unless ``--disable-bias-linear``, and the QKV
bias follows them unless ``--add-qkv-bias``; ``--moe-router-topk`` 2; ``--fp8-recipe`` delayed; sequence
parallelism is switched off when tp = 1 ("Disabling sequence parallelism because tensor model parallelism is
disabled"). The data-parallel degree is not a flag: it is the world size (``torchrun --nproc_per_node x
--nnodes``) over tp x pp x cp.
"""

from __future__ import annotations

import math
import re
from typing import Any

from rainier.errors import InputError, clip
from rainier.launch.argv import Flags, format_command
from rainier.launch.config import Framework, LaunchConfig, StatedCluster, check_stated, match_catalog, not_expressible
from rainier.parallel.plan import DegreeUnit, Fp8Recipe, Plan, Recompute, Schedule
from rainier.precision import Precision
from rainier.workload.shape import (
    MlaConfig,
    MlpActivation,
    MoeConfig,
    Norm,
    PositionEmbedding,
    Router,
    TransformerShape,
)

FW = Framework.MEGATRON
PROGRAM = "pretrain_gpt.py"
DEFAULT_TOPK = 2  # Megatron-Core TransformerConfig.moe_router_topk
DEFAULT_FP8_RECIPE = Fp8Recipe.DELAYED  # TransformerConfig.fp8_recipe
DEFAULT_DEVICES_PER_NODE = 8  # an HGX/DGX server; used only when the export is given no accelerator
_FREQ_PATTERN = re.compile(r"^\(?\[0\]\*(\d+)\+\[1\]\*(\d+)\)?$")

# Flags read into the model, the plan or the cluster; every other flag is listed as ignored.
_MODEL_FLAGS = {
    "--num-layers",
    "--hidden-size",
    "--ffn-hidden-size",
    "--num-attention-heads",
    "--group-query-attention",
    "--num-query-groups",
    "--kv-channels",
    "--seq-length",
    "--vocab-size",
    "--padded-vocab-size",
    "--swiglu",
    "--squared-relu",
    "--normalization",
    "--position-embedding-type",
    "--untie-embeddings-and-output-weights",
    "--disable-bias-linear",
    "--add-qkv-bias",
    "--qk-layernorm",
    "--num-experts",
    "--moe-router-topk",
    "--moe-ffn-hidden-size",
    "--moe-shared-expert-intermediate-size",
    "--moe-layer-freq",
    "--moe-router-score-function",
    "--moe-router-enable-expert-bias",
    "--multi-latent-attention",
    "--q-lora-rank",
    "--kv-lora-rank",
    "--qk-head-dim",
    "--qk-pos-emb-head-dim",
    "--v-head-dim",
}
_PLAN_FLAGS = {
    "--tensor-model-parallel-size",
    "--pipeline-model-parallel-size",
    "--context-parallel-size",
    "--expert-model-parallel-size",
    "--expert-tensor-parallel-size",
    "--num-layers-per-virtual-pipeline-stage",
    "--num-virtual-stages-per-pipeline-rank",
    "--sequence-parallel",
    "--use-distributed-optimizer",
    "--use-megatron-fsdp",
    "--data-parallel-sharding-strategy",
    "--micro-batch-size",
    "--global-batch-size",
    "--recompute-granularity",
    "--recompute-modules",
    "--recompute-method",
    "--recompute-num-layers",
    "--bf16",
    "--fp16",
    "--fp8-format",
    "--fp8-recipe",
    "--decoder-first-pipeline-num-layers",
    "--decoder-last-pipeline-num-layers",
    "--tp-comm-overlap",
    "--overlap-moe-expert-parallel-comm",
    "--moe-expert-capacity-factor",
    "--attention-backend",
    "--fp8-dot-product-attention",
    "--moe-enable-deepep",
    "--nproc_per_node",
    "--nnodes",
}


class _Reader:
    """Typed reads of Megatron flags; every error names the file and the flag."""

    def __init__(self, flags: Flags, where: str) -> None:
        self.flags = flags
        self.where = where

    def text(self, name: str) -> str | None:
        values = self.flags.get(name, self.where)
        if values is None:
            return None
        if len(values) != 1:
            raise InputError(f"{self.where}: {name} takes one value, got {clip(' '.join(values)) or 'none'}")
        return values[0]

    def integer(self, name: str, *, minimum: int = 1) -> int | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise InputError(f"{self.where}: {name} {clip(raw)!r} is not an integer") from None
        if value < minimum:
            raise InputError(f"{self.where}: {name} {value} is below {minimum}")
        return value

    def number(self, name: str) -> float | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise InputError(f"{self.where}: {name} {clip(raw)!r} is not a number") from None
        if not math.isfinite(value):
            raise InputError(f"{self.where}: {name} {clip(raw)!r} is not finite")
        return value

    def switch(self, name: str) -> bool:
        values = self.flags.get(name, self.where)
        if values is None:
            return False
        return not (values and values[0].lower() in ("false", "0"))


# ----------------------------------------------------------------------------------------------------- import
def read_megatron(flags: Flags, where: str, *, num_devices: int | None = None) -> LaunchConfig:
    """A Megatron-LM argument list (a launch script's flags) as model + plan + cluster."""
    r = _Reader(flags, where)
    notes: list[str] = []
    shape, missing = _shape(r, notes)
    nodes, per_node = r.integer("--nnodes"), r.integer("--nproc_per_node")
    cluster = StatedCluster(num_nodes=nodes or 1, devices_per_node=per_node) if per_node is not None else None
    plan = _plan(r, shape, cluster, num_devices, notes)
    check_stated(plan, shape, notes)
    ignored = sorted(flags.names() - _MODEL_FLAGS - _PLAN_FLAGS - {"--master_addr", "--master_port", "--node_rank"})
    name = shape.name if shape is not None else None
    return LaunchConfig(
        framework=FW,
        source=where,
        model=shape,
        model_name=name,
        model_missing=missing,
        plan=plan,
        cluster=cluster,
        notes=tuple(notes),
        ignored=tuple(ignored),
    )


def _shape(r: _Reader, notes: list[str]) -> tuple[TransformerShape | None, tuple[str, ...]]:
    layers, hidden, heads = r.integer("--num-layers"), r.integer("--hidden-size"), r.integer("--num-attention-heads")
    seq = r.integer("--seq-length")
    vocab = r.integer("--vocab-size") or r.integer("--padded-vocab-size")
    needed = {
        "--num-layers": layers,
        "--hidden-size": hidden,
        "--num-attention-heads": heads,
        "--seq-length": seq,
        "--vocab-size": vocab,
    }
    missing = tuple(k for k, v in needed.items() if v is None)
    if missing == ("--vocab-size",) and layers is not None and hidden is not None and heads is not None:
        # a tokenizer file sets the vocabulary: a catalog model with the same dimensions supplies it
        groups = r.integer("--num-query-groups") if r.switch("--group-query-attention") else None
        stated = {
            "num_layers": layers,
            "hidden_dim": hidden,
            "num_heads": heads,
            "num_kv_heads": groups or heads,
            "ffn_hidden_dim": r.integer("--ffn-hidden-size") or 4 * hidden,
            "num_experts": r.integer("--num-experts") or 0,
        }
        match, note = match_catalog(stated)
        notes.append(note)
        if match is not None:
            return match.with_seq_len(seq or match.seq_len), ()
    if missing or layers is None or hidden is None or heads is None or seq is None or vocab is None:
        return None, missing
    if r.switch("--swiglu"):
        activation = MlpActivation.SWIGLU
    elif r.switch("--squared-relu"):
        activation = MlpActivation.RELU
    else:
        activation = MlpActivation.GELU
    groups = r.integer("--num-query-groups") if r.switch("--group-query-attention") else None
    if hidden % heads and r.integer("--kv-channels") is None:
        raise InputError(f"{r.where}: --num-attention-heads {heads} does not divide --hidden-size {hidden}")
    norm_text = (r.text("--normalization") or "LayerNorm").lower()
    if norm_text not in ("layernorm", "rmsnorm"):
        raise InputError(f"{r.where}: --normalization {norm_text!r}: rainier models LayerNorm and RMSNorm")
    position = (r.text("--position-embedding-type") or "learned_absolute").lower()
    if position not in ("learned_absolute", "rope"):
        raise InputError(f"{r.where}: --position-embedding-type {position!r}: rainier models learned_absolute, rope")
    bias = not r.switch("--disable-bias-linear")
    mla = None
    if r.switch("--multi-latent-attention"):
        mla = MlaConfig(
            q_lora_rank=r.integer("--q-lora-rank"),
            kv_lora_rank=r.integer("--kv-lora-rank") or 32,  # Megatron's default
            qk_nope_head_dim=r.integer("--qk-head-dim", minimum=0) or 128,
            qk_rope_head_dim=r.integer("--qk-pos-emb-head-dim", minimum=0) or 64,
            v_head_dim=r.integer("--v-head-dim") or 128,
        )
    ffn = r.integer("--ffn-hidden-size") or 4 * hidden
    catalog, _ = match_catalog(
        {
            "num_layers": layers,
            "hidden_dim": hidden,
            "num_heads": heads,
            "num_kv_heads": groups or heads,
            "ffn_hidden_dim": r.integer("--ffn-hidden-size") or 4 * hidden,
            "num_experts": r.integer("--num-experts") or 0,
        }
    )
    shape = TransformerShape(
        name=catalog.name if catalog is not None and catalog.vocab_size == vocab else "megatron-import",
        num_layers=layers,
        hidden_dim=hidden,
        num_heads=heads,
        num_kv_heads=heads if mla is not None else (groups or heads),
        head_dim=r.integer("--kv-channels") or hidden // heads,
        ffn_hidden_dim=ffn,
        vocab_size=vocab,
        seq_len=seq,
        mlp_activation=activation,
        tied_embeddings=not r.switch("--untie-embeddings-and-output-weights"),
        position_embedding=PositionEmbedding.ROPE if position == "rope" else PositionEmbedding.LEARNED,
        norm=Norm.RMSNORM if norm_text == "rmsnorm" else Norm.LAYERNORM,
        qkv_bias=bias or r.switch("--add-qkv-bias"),
        linear_bias=bias,
        qk_norm=r.switch("--qk-layernorm"),
        mla=mla,
        moe=_moe(r, layers, ffn),
    )
    return shape, ()


def _moe(r: _Reader, layers: int, ffn: int) -> MoeConfig | None:
    experts = r.integer("--num-experts")
    if experts is None:
        return None
    first_dense, interval = 0, 1
    freq = r.text("--moe-layer-freq")
    if freq is not None:
        compact = freq.replace(" ", "")
        match = _FREQ_PATTERN.match(compact)
        if match and int(match.group(1)) + int(match.group(2)) == layers:
            first_dense = int(match.group(1))
        elif compact.isdigit() and int(compact) >= 1:
            interval = int(compact)
        else:
            raise InputError(
                f"{r.where}: --moe-layer-freq {clip(freq)!r}: rainier reads an integer or ([0]*K+[1]*N) with K+N layers"
            )
    expert_ffn = r.integer("--moe-ffn-hidden-size") or ffn
    shared = r.integer("--moe-shared-expert-intermediate-size")
    sigmoid = (r.text("--moe-router-score-function") or "softmax").lower() == "sigmoid"
    return MoeConfig(
        num_experts=experts,
        top_k=r.integer("--moe-router-topk") or DEFAULT_TOPK,
        expert_ffn_hidden_dim=expert_ffn,
        num_shared_experts=1 if shared else 0,
        shared_expert_ffn_hidden_dim=shared,
        first_k_dense_layers=first_dense,
        moe_layer_interval=interval,
        router=Router.SIGMOID_BIAS if sigmoid and r.switch("--moe-router-enable-expert-bias") else Router.SOFTMAX,
    )


def _plan(
    r: _Reader, shape: TransformerShape | None, cluster: StatedCluster | None, num_devices: int | None, notes: list[str]
) -> Plan:
    tp = r.integer("--tensor-model-parallel-size") or 1
    pp = r.integer("--pipeline-model-parallel-size") or 1
    cp = r.integer("--context-parallel-size") or 1
    world = num_devices or (cluster.num_devices if cluster is not None else None)
    if world is None:
        raise InputError(
            f"{r.where}: no world size (torchrun --nproc_per_node and --nnodes); give the device count (--devices N)"
        )
    if world % (tp * pp * cp):
        raise InputError(
            f"{r.where}: tp*pp*cp = {tp * pp * cp} does not divide the {world} devices; "
            "give the device count (--devices N)"
        )
    vpp = r.integer("--num-virtual-stages-per-pipeline-rank")
    per_stage = r.integer("--num-layers-per-virtual-pipeline-stage")
    if vpp is None and per_stage is not None:
        if shape is None or shape.num_layers % (pp * per_stage):
            raise InputError(
                f"{r.where}: --num-layers-per-virtual-pipeline-stage {per_stage} needs --num-layers divisible by "
                f"pp x {per_stage}"
            )
        vpp = shape.num_layers // (pp * per_stage)
    sp = r.switch("--sequence-parallel")
    if sp and tp == 1:
        notes.append("--sequence-parallel with tp=1: Megatron-LM switches it off (sp=false)")
        sp = False
    zero = 0
    if r.switch("--use-megatron-fsdp"):
        strategy = r.text("--data-parallel-sharding-strategy") or "optim_grads_params"
        zero = {"no_shard": 0, "optim": 1, "optim_grads": 2, "optim_grads_params": 3}.get(strategy, -1)
        if zero < 0:
            raise InputError(f"{r.where}: --data-parallel-sharding-strategy {clip(strategy)!r} is not known")
    elif r.switch("--use-distributed-optimizer"):
        zero = 1
    precision = Precision.FP32
    recipe = None
    if r.text("--fp8-format") is not None:
        precision = Precision.FP8
        recipe_text = r.text("--fp8-recipe")
        if recipe_text is None:
            notes.append("--fp8-recipe not given: Megatron-LM's default, delayed scaling")
            recipe = DEFAULT_FP8_RECIPE
        else:
            try:
                recipe = Fp8Recipe(recipe_text.lower())
            except ValueError:
                raise InputError(f"{r.where}: --fp8-recipe {clip(recipe_text)!r} is not modelled") from None
    elif r.switch("--bf16"):
        precision = Precision.BF16
    elif r.switch("--fp16"):
        precision = Precision.FP16
    granularity = (r.text("--recompute-granularity") or "none").lower()
    if granularity not in ("none", "selective", "full"):
        raise InputError(f"{r.where}: --recompute-granularity {clip(granularity)!r}: selective or full")
    modules = r.flags.get("--recompute-modules", r.where)
    block = _block_recompute(r, granularity, notes)
    backend = (r.text("--attention-backend") or "auto").lower()
    gbs = r.integer("--global-batch-size")
    mbs = r.integer("--micro-batch-size") or 1
    dp = world // (tp * pp * cp)
    if gbs is None:
        gbs = mbs * dp
        notes.append("--global-batch-size not given: Megatron-LM's default, micro-batch x data-parallel size")
    values: dict[str, Any] = {
        "tp_degree": tp,
        "pp_degree": pp,
        "dp_degree": dp,
        "cp_degree": cp,
        "ep_degree": r.integer("--expert-model-parallel-size") or 1,
        "vpp_degree": vpp or 1,
        "schedule": Schedule.INTERLEAVED if (vpp or 1) > 1 else Schedule.ONE_F_ONE_B,
        "sequence_parallel": sp,
        "zero_stage": zero,
        "mbs": mbs,
        "gbs": gbs,
        "recompute": Recompute(granularity),
        "recompute_layers": block,
        "precision": precision,
        "fp8_recipe": recipe,
        "first_stage_layers": r.integer("--decoder-first-pipeline-num-layers", minimum=0),
        "last_stage_layers": r.integer("--decoder-last-pipeline-num-layers", minimum=0),
        "expert_tp_degree": r.integer("--expert-tensor-parallel-size"),
        "tp_comm_overlap": r.switch("--tp-comm-overlap"),
        "moe_a2a_overlap": r.switch("--overlap-moe-expert-parallel-comm"),
        "capacity_factor": r.number("--moe-expert-capacity-factor"),
        "flash_attention": backend != "unfused",
        "fp8_attention": r.switch("--fp8-dot-product-attention"),
        "ep_dedup": r.switch("--moe-enable-deepep"),
    }
    if modules:
        values["recompute_modules"] = tuple(m.lower() for m in modules)
    try:
        return Plan(**values)
    except InputError as exc:
        raise InputError(f"{r.where}: {exc}") from None


# ----------------------------------------------------------------------------------------------------- export
def _block_recompute(r: _Reader, granularity: str, notes: list[str]) -> int | None:
    """``Plan.recompute_layers`` from ``--recompute-method`` / ``--recompute-num-layers``.

    ``block`` recomputes the first N layers of each pipeline chunk fully (``recompute_layers=N``); ``uniform``
    recomputes every layer (its N only sets how many layers share one checkpoint), as without the flags.
    """
    method = r.text("--recompute-method")
    if method is None:
        return None
    if granularity != "full":
        notes.append(f"--recompute-method {method} ignored: it applies to --recompute-granularity full only")
        return None
    method = method.lower()
    if method == "uniform":
        return None
    if method != "block":
        raise InputError(f"{r.where}: --recompute-method {clip(method)!r}: uniform or block")
    layers = r.integer("--recompute-num-layers")
    if layers is None:
        raise InputError(f"{r.where}: --recompute-method block needs --recompute-num-layers N (layers per chunk)")
    return layers


def write_megatron(shape: TransformerShape, plan: Plan, *, devices_per_node: int | None = None) -> str:
    """The ``torchrun ... pretrain_gpt.py`` command for ``shape`` trained with ``plan``; refuses what it cannot say."""
    _refuse(plan)
    world = plan.num_ranks
    per_node = devices_per_node or DEFAULT_DEVICES_PER_NODE
    if world % per_node:
        per_node = world if devices_per_node is None else per_node
        if world % per_node:
            raise InputError(f"plan: {world} ranks do not fill whole nodes of {devices_per_node} devices")
    args: list[tuple[str, tuple[str, ...]]] = [
        ("--nproc_per_node", (str(per_node),)),
        ("--nnodes", (str(world // per_node),)),
    ]
    program = ["torchrun"]
    model_args = _shape_args(shape)
    plan_args = _plan_args(plan)
    head = (
        f"# {shape.name}: rainier plan {plan.describe()}\n"
        "# Mock data and a null tokenizer, as Megatron-LM's own benchmark scripts use; set your data and tokenizer.\n"
    )
    body = format_command(program, [*args]).rstrip("\n")
    rest = format_command(
        [PROGRAM], [*model_args, *plan_args, ("--mock-data", ()), ("--tokenizer-type", ("NullTokenizer",))]
    )
    return head + body + " \\\n    " + rest


def _refuse(plan: Plan) -> None:
    if plan.degrees_unit is not DegreeUnit.DEVICE:
        raise not_expressible(FW, "unit", plan.degrees_unit.value, "Megatron-LM degrees count GPUs (unit=device)")
    if plan.schedule not in (Schedule.ONE_F_ONE_B, Schedule.INTERLEAVED):
        raise not_expressible(FW, "schedule", plan.schedule.value, "Megatron-LM runs 1f1b and interleaved 1f1b")
    if plan.precision not in (Precision.BF16, Precision.FP16, Precision.FP8, Precision.FP32):
        raise not_expressible(FW, "precision", plan.precision.value, "Megatron-LM trains in fp32, fp16, bf16 or fp8")
    for field, value, why in (
        ("lora", plan.lora, "pretrain_gpt.py has no LoRA (fine-tune with NeMo or Megatron-Bridge)"),
        ("imbalance", plan.routing_imbalance, "routing imbalance is rainier's estimate, not a launch setting"),
        ("ep_domains", plan.ep_domain_limit, "group-limited routing needs the number of groups per node"),
        (
            "offload",
            "+".join(plan.offload) or None,
            "rainier does not write Megatron-Core's offload flags yet (--optimizer-cpu-offload, --cpu-offloading)",
        ),
        (
            "shard",
            plan.shard_degree if plan.shard_degree not in (None, plan.dp_degree) else None,
            "rainier does not write Megatron-Core's partial sharding flags yet (--num-distributed-optimizer-instances)",
        ),
    ):
        if value not in (None, False):
            raise not_expressible(FW, field, value, why)


def _shape_args(shape: TransformerShape) -> list[tuple[str, tuple[str, ...]]]:
    out: list[tuple[str, tuple[str, ...]]] = [
        ("--num-layers", (str(shape.num_layers),)),
        ("--hidden-size", (str(shape.hidden_dim),)),
        ("--ffn-hidden-size", (str(shape.ffn_hidden_dim),)),
        ("--num-attention-heads", (str(shape.num_heads),)),
    ]
    if shape.mla is None:
        if shape.num_kv_heads != shape.num_heads:
            out += [("--group-query-attention", ()), ("--num-query-groups", (str(shape.num_kv_heads),))]
        out.append(("--kv-channels", (str(shape.head_dim),)))
    out += [("--seq-length", (str(shape.seq_len),)), ("--max-position-embeddings", (str(shape.seq_len),))]
    out.append(("--vocab-size", (str(shape.vocab_size),)))
    if shape.mlp_activation is MlpActivation.SWIGLU:
        out.append(("--swiglu", ()))
    elif shape.mlp_activation is MlpActivation.RELU:
        out.append(("--squared-relu", ()))
    elif shape.mlp_activation is MlpActivation.GEGLU:
        raise not_expressible(FW, "mlp_activation", "geglu", "Megatron-LM's flags offer gelu, swiglu, squared-relu")
    if shape.norm is Norm.RMSNORM:
        out.append(("--normalization", ("RMSNorm",)))
    if shape.position_embedding is PositionEmbedding.ROPE:
        out.append(("--position-embedding-type", ("rope",)))
    if not shape.tied_embeddings:
        out.append(("--untie-embeddings-and-output-weights", ()))
    if not shape.linear_bias:
        out.append(("--disable-bias-linear", ()))
        if shape.qkv_bias:
            out.append(("--add-qkv-bias", ()))
    elif not shape.qkv_bias:
        raise not_expressible(FW, "qkv_bias", False, "Megatron-LM adds the QKV bias whenever linear biases are on")
    if shape.qk_norm:
        out.append(("--qk-layernorm", ()))
    if shape.mla is not None:
        mla = shape.mla
        out.append(("--multi-latent-attention", ()))
        if mla.q_lora_rank is not None:
            out.append(("--q-lora-rank", (str(mla.q_lora_rank),)))
        out += [
            ("--kv-lora-rank", (str(mla.kv_lora_rank),)),
            ("--qk-head-dim", (str(mla.qk_nope_head_dim),)),
            ("--qk-pos-emb-head-dim", (str(mla.qk_rope_head_dim),)),
            ("--v-head-dim", (str(mla.v_head_dim),)),
        ]
    if shape.moe is not None:
        moe = shape.moe
        out += [
            ("--num-experts", (str(moe.num_experts),)),
            ("--moe-router-topk", (str(moe.top_k),)),
            ("--moe-ffn-hidden-size", (str(moe.expert_ffn_hidden_dim),)),
        ]
        if moe.num_shared_experts:
            # Megatron sizes all shared experts as one MLP of this width
            out.append(("--moe-shared-expert-intermediate-size", (str(moe.num_shared_experts * moe.shared_ffn_dim),)))
        if moe.first_k_dense_layers and moe.moe_layer_interval != 1:
            raise not_expressible(FW, "moe", "first-k dense and an interval", "one of the two, not both, is written")
        if moe.first_k_dense_layers:
            k = moe.first_k_dense_layers
            out.append(("--moe-layer-freq", (f"([0]*{k}+[1]*{shape.num_layers - k})",)))
        elif moe.moe_layer_interval != 1:
            out.append(("--moe-layer-freq", (str(moe.moe_layer_interval),)))
        if moe.router is Router.SIGMOID_BIAS:
            out += [("--moe-router-score-function", ("sigmoid",)), ("--moe-router-enable-expert-bias", ())]
    return out


def _plan_args(plan: Plan) -> list[tuple[str, tuple[str, ...]]]:
    out: list[tuple[str, tuple[str, ...]]] = [
        ("--tensor-model-parallel-size", (str(plan.tp_degree),)),
        ("--pipeline-model-parallel-size", (str(plan.pp_degree),)),
        ("--context-parallel-size", (str(plan.cp_degree),)),
    ]
    if plan.ep_degree > 1:
        out.append(("--expert-model-parallel-size", (str(plan.ep_degree),)))
    if plan.expert_tp_degree is not None:
        out.append(("--expert-tensor-parallel-size", (str(plan.expert_tp_degree),)))
    if plan.vpp_degree > 1:
        out.append(("--num-virtual-stages-per-pipeline-rank", (str(plan.vpp_degree),)))
    for flag, value in (
        ("--decoder-first-pipeline-num-layers", plan.first_stage_layers),
        ("--decoder-last-pipeline-num-layers", plan.last_stage_layers),
    ):
        if value is not None:
            out.append((flag, (str(value),)))
    if plan.sequence_parallel:
        out.append(("--sequence-parallel", ()))
    if plan.zero_stage == 1:
        out.append(("--use-distributed-optimizer", ()))
    elif plan.zero_stage in (2, 3):
        strategy = "optim_grads" if plan.zero_stage == 2 else "optim_grads_params"
        out += [("--use-megatron-fsdp", ()), ("--data-parallel-sharding-strategy", (strategy,))]
    out += [("--micro-batch-size", (str(plan.mbs),)), ("--global-batch-size", (str(plan.gbs),))]
    if plan.recompute is not Recompute.NONE:
        out.append(("--recompute-granularity", (plan.recompute.value,)))
        if plan.recompute is Recompute.FULL:
            if plan.recompute_layers is None:
                out += [("--recompute-method", ("uniform",)), ("--recompute-num-layers", ("1",))]
            else:
                out += [("--recompute-method", ("block",)), ("--recompute-num-layers", (str(plan.recompute_layers),))]
    if plan.recompute_modules != ("core_attn",):
        out.append(("--recompute-modules", tuple(plan.recompute_modules)))
    if plan.precision is Precision.FP8:
        out += [("--bf16", ()), ("--fp8-format", ("hybrid",))]
        if plan.fp8_recipe is not None:
            out.append(("--fp8-recipe", (plan.fp8_recipe.value,)))
        if plan.fp8_attention:
            out.append(("--fp8-dot-product-attention", ()))
    elif plan.precision in (Precision.BF16, Precision.FP16):
        out.append((f"--{plan.precision.value}", ()))
    if plan.tp_comm_overlap:
        out.append(("--tp-comm-overlap", ()))
    if plan.moe_a2a_overlap:
        out.append(("--overlap-moe-expert-parallel-comm", ()))
    if plan.capacity_factor is not None:
        out.append(("--moe-expert-capacity-factor", (repr(float(plan.capacity_factor)),)))
    if not plan.flash_attention:
        out.append(("--attention-backend", ("unfused",)))
    if plan.ep_dedup:
        out += [("--moe-token-dispatcher-type", ("flex",)), ("--moe-enable-deepep", ())]
    return out
