"""MaxText config YAML: the mesh axes, per-device batch, rematerialisation, quantisation and model dimensions.

Keys and defaults are MaxText's ``src/maxtext/configs/base.yml`` (AI-Hypercomputer/maxtext, commit e591f30c), whose
values a config file overrides: ``ici_fsdp_parallelism: -1`` and ``dcn_data_parallelism: -1`` (the one ``-1`` axis
of each network takes the devices left over), every other axis 1, ``per_device_batch_size: 12.0``,
``gradient_accumulation_steps: 1``, ``remat_policy: full``, ``quantization: ""`` (bf16), ``capacity_factor: -1``
(dropless), ``attention: autoselected``, ``model_name: default``.

Mapping to a rainier plan: tp = tensor axes, cp = context, ep = expert, dp = data x fsdp x expert axes (ICI x DCN:
MaxText shards the batch over the expert axis too, as rainier carves ep out of dp), ZeRO-3
when the fsdp axes shard (``fsdp`` > 1), else ZeRO-0 (MaxText's data axis replicates the optimizer state);
gbs = per_device_batch_size x devices x gradient_accumulation_steps, mbs = gbs / (dp x accumulation steps). MaxText
has no sequence-parallel switch and its pipeline axis runs its own circular schedule, which rainier does not map.
``remat_policy``: ``full`` is full recompute; ``minimal`` and ``minimal_with_context`` keep every matmul output
(read as no recompute); the ``save_*`` policies recompute part of the layer (read as selective; approximate).
"""

from __future__ import annotations

from typing import Any

import yaml

from rainier.errors import InputError
from rainier.launch.config import (
    Framework,
    LaunchConfig,
    StatedCluster,
    catalog_model_for,
    not_expressible,
    refuse_options,
)
from rainier.launch.tree import Tree, tree_config
from rainier.parallel.plan import DegreeUnit, Plan, Recompute, Schedule
from rainier.precision import Precision
from rainier.workload.shape import MlpActivation, MoeConfig, Norm, PositionEmbedding, TransformerShape

FW = Framework.MAXTEXT
FILL = -1  # an axis that takes the devices left over
DEFAULT_PER_DEVICE_BATCH = 12.0
_AXES = (
    "data",
    "fsdp",
    "fsdp_transpose",
    "sequence",
    "context",
    "tensor",
    "tensor_transpose",
    "tensor_sequence",
    "expert",
    "autoregressive",
    "pipeline",
)
_DEFAULT_FILL = {"ici": "fsdp", "dcn": "data"}
_NO_RECOMPUTE = {"minimal", "minimal_with_context"}
_EXPORT_REMAT = {Recompute.FULL: "full", Recompute.NONE: "minimal_with_context", Recompute.SELECTIVE: "save_qkv_proj"}
_PRECISION = {"": Precision.BF16, "int8": Precision.INT8, "fp8": Precision.FP8}


def _axes(t: Tree, net: str, num: int) -> dict[str, int]:
    """Each axis of one network (``ici`` within a slice, ``dcn`` across slices), the fill axis resolved over ``num``."""
    sizes = {}
    for axis in _AXES:
        value = t.integer(f"{net}_{axis}_parallelism", fill=FILL)
        sizes[axis] = (FILL if axis == _DEFAULT_FILL[net] else 1) if value is None else value
    fills = [a for a, v in sizes.items() if v == FILL]
    if len(fills) > 1:
        raise InputError(f"{t.where}: {net}_*_parallelism has {len(fills)} axes at -1; at most one fills")
    known = 1
    for v in sizes.values():
        known *= v if v != FILL else 1
    if fills:
        if num % known:
            raise InputError(f"{t.where}: {net} axes of product {known} do not divide {num} devices")
        sizes[fills[0]] = num // known
    elif known != num:
        raise InputError(f"{t.where}: {net}_*_parallelism multiply to {known}, not the {num} devices")
    return sizes


def read_maxtext(data: dict[str, Any], where: str, *, num_devices: int | None = None) -> LaunchConfig:
    """A MaxText config's model, plan and (when its axes fix it) device count."""
    t = Tree(data, where)
    notes: list[str] = []
    slices = t.integer("num_slices", fill=FILL)
    slices = 1 if slices in (None, FILL) else slices
    stated = _stated_devices(t)
    devices = num_devices or stated
    if devices is None:
        raise InputError(f"{where}: the mesh has a -1 (fill) axis, so the file fixes no device count; give --devices N")
    if devices % slices:
        raise InputError(f"{where}: num_slices {slices} does not divide {devices} devices")
    ici, dcn = _axes(t, "ici", devices // slices), _axes(t, "dcn", slices)
    size = {a: ici[a] * dcn[a] for a in _AXES}
    for axis in ("pipeline", "sequence", "tensor_transpose", "tensor_sequence", "autoregressive", "fsdp_transpose"):
        if size[axis] > 1:
            raise InputError(f"{where}: the {axis} axis ({size[axis]}) is not mapped to a rainier plan")
    dp = size["data"] * size["fsdp"] * size["expert"]  # MaxText shards the batch over the expert axis too
    pdbs = t.number("per_device_batch_size")
    pdbs = DEFAULT_PER_DEVICE_BATCH if pdbs is None else pdbs
    accumulation = t.integer("gradient_accumulation_steps") or 1
    gbs_float = pdbs * devices * accumulation
    if abs(gbs_float - round(gbs_float)) > 1e-6 or gbs_float < 1 or round(gbs_float) % (dp * accumulation):
        raise InputError(
            f"{where}: per_device_batch_size {pdbs} x {devices} devices x {accumulation} steps gives no whole "
            f"micro-batch per data-parallel rank ({dp})"
        )
    gbs = round(gbs_float)
    remat = t.text("remat_policy") or "full"
    if remat == "full":
        recompute = Recompute.FULL
    elif remat in _NO_RECOMPUTE:
        recompute = Recompute.NONE
        notes.append(f"remat_policy {remat} keeps every matmul output: read as recompute=none")
    else:
        recompute = Recompute.SELECTIVE
        notes.append(f"remat_policy {remat} recomputes part of each layer: read as recompute=selective (approximate)")
    quant = (t.text("quantization") or "").lower()
    if quant not in _PRECISION:
        raise t.error("quantization", quant, '"" (bf16), int8 or fp8')
    capacity = t.number("capacity_factor")
    attention = (t.text("attention") or "autoselected").lower()
    try:
        plan = Plan(
            tp_degree=size["tensor"],
            cp_degree=size["context"],
            ep_degree=size["expert"],
            dp_degree=dp,
            zero_stage=3 if size["fsdp"] > 1 else 0,
            mbs=gbs // (dp * accumulation),
            gbs=gbs,
            recompute=recompute,
            precision=_PRECISION[quant],
            capacity_factor=None if capacity is None or capacity <= 0 else capacity,
            flash_attention=attention != "dot_product",
        )
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    shape, name, missing = _shape(t, notes)
    return tree_config(
        t,
        FW,
        plan=plan,
        shape=shape,
        missing=missing,
        model_name=name,
        notes=notes,
        cluster=StatedCluster(num_nodes=slices, devices_per_node=devices // slices) if stated else None,
    )


def _stated_devices(t: Tree) -> int | None:
    """The device count a config fixes: every axis of both networks given and none at -1."""
    total = 1
    for net in ("ici", "dcn"):
        for axis in _AXES:
            value = t.integer(f"{net}_{axis}_parallelism", fill=FILL)
            if (value is None and axis == _DEFAULT_FILL[net]) or value == FILL:
                return None
            total *= value or 1
    return total


def _shape(t: Tree, notes: list[str]) -> tuple[TransformerShape | None, str | None, tuple[str, ...]]:
    name = t.text("model_name")
    seq = t.integer("max_target_length")
    base = {
        "num_layers": "base_num_decoder_layers",
        "hidden_dim": "base_emb_dim",
        "num_heads": "base_num_query_heads",
        "ffn_hidden_dim": "base_mlp_dim",
        "vocab_size": "vocab_size",
    }
    values = {field: t.integer(key) for field, key in base.items()}
    if name not in (None, "default") and all(v is None for v in values.values()):
        shape = catalog_model_for(name)
        if shape is None:
            notes.append(f"model_name {name} is not a catalog model: give --model")
            return None, name, ("model",)
        notes.append(f"model_name {name}: catalog model {shape.name}")
        return (shape.with_seq_len(seq) if seq is not None else shape), name, ()
    missing = tuple(base[f] for f, v in values.items() if v is None) + (("max_target_length",) if seq is None else ())
    if missing:
        return None, name, missing
    heads = int(values["num_heads"] or 0)
    activations = t.raw("mlp_activations")
    gated = isinstance(activations, list) and len(activations) == 2
    act = (activations[0] if isinstance(activations, list) and activations else "silu").lower()
    activation = {"silu": MlpActivation.SWIGLU, "gelu": MlpActivation.GEGLU}.get(act) if gated else MlpActivation.GELU
    if activation is None:
        raise t.error("mlp_activations", activations, '["silu","linear"], ["gelu","linear"] or ["gelu"]')
    experts = t.integer("num_experts")
    moe = None
    if experts is not None and experts > 1:
        moe = MoeConfig(
            num_experts=experts,
            top_k=t.integer("num_experts_per_tok") or 1,
            expert_ffn_hidden_dim=t.integer("base_moe_mlp_dim", fill=FILL) or int(values["ffn_hidden_dim"] or 0),
        )
    shape = TransformerShape(
        name=name if name not in (None, "default") else "maxtext-import",
        num_layers=int(values["num_layers"] or 0),
        hidden_dim=int(values["hidden_dim"] or 0),
        num_heads=heads,
        num_kv_heads=t.integer("base_num_kv_heads") or heads,
        head_dim=t.integer("head_dim") or 128,
        ffn_hidden_dim=int(values["ffn_hidden_dim"] or 0),
        vocab_size=int(values["vocab_size"] or 0),
        seq_len=int(seq or 0),
        mlp_activation=activation,
        tied_embeddings=bool(t.boolean("logits_via_embedding")),
        position_embedding=PositionEmbedding.ROPE,
        norm=Norm.RMSNORM,
        qk_norm=bool(t.boolean("use_qk_norm")),
        moe=moe,
    )
    return shape, name, ()


def write_maxtext(shape: TransformerShape, plan: Plan, *, devices_per_node: int | None = None) -> str:
    """A MaxText config overriding base.yml for ``shape`` trained with ``plan`` on one slice of plan.num_ranks chips."""
    del devices_per_node  # one slice: MaxText's ICI axes; moving a factor to dcn_* is the user's choice
    if plan.degrees_unit is not DegreeUnit.DEVICE:
        raise not_expressible(FW, "unit", plan.degrees_unit.value, "MaxText meshes count chips (unit=device)")
    if plan.pp_degree > 1:
        raise not_expressible(FW, "pp", plan.pp_degree, "rainier does not map MaxText's circular pipeline")
    if plan.sequence_parallel:
        raise not_expressible(FW, "sp", True, "MaxText has no sequence-parallel switch")
    if plan.zero_stage in (1, 2):
        raise not_expressible(FW, "zero", plan.zero_stage, "MaxText shards all state (fsdp, zero=3) or none (zero=0)")
    if plan.precision not in (Precision.BF16, Precision.INT8, Precision.FP8):
        raise not_expressible(FW, "precision", plan.precision.value, "MaxText trains in bf16, int8 or fp8")
    if plan.schedule is not Schedule.ONE_F_ONE_B:
        raise not_expressible(FW, "schedule", plan.schedule.value, "no pipeline in a MaxText export")
    refuse_options(FW, plan, {"capacity", "flash"}, "no MaxText key sets it")
    if plan.recompute_modules != ("core_attn",):
        raise not_expressible(FW, "recompute_modules", "+".join(plan.recompute_modules), "remat_policy names presets")
    if shape.mla is not None or shape.linear_bias or shape.qkv_bias:
        raise not_expressible(FW, "model", shape.name, "MLA and biases are not written to a MaxText config")
    if shape.position_embedding is not PositionEmbedding.ROPE or shape.norm is not Norm.RMSNORM:
        raise not_expressible(FW, "model", shape.name, "MaxText's decoders use RoPE and RMSNorm")
    if shape.mlp_activation is MlpActivation.RELU:
        raise not_expressible(FW, "model", shape.name, "no squared-ReLU MLP key")
    fsdp = plan.zero_stage == 3
    document: dict[str, Any] = {
        "base_config": "base.yml",
        "base_emb_dim": shape.hidden_dim,
        "base_num_query_heads": shape.num_heads,
        "base_num_kv_heads": shape.num_kv_heads,
        "base_mlp_dim": shape.ffn_hidden_dim,
        "base_num_decoder_layers": shape.num_layers,
        "head_dim": shape.head_dim,
        "mlp_activations": {MlpActivation.SWIGLU: ["silu", "linear"], MlpActivation.GEGLU: ["gelu", "linear"]}.get(
            shape.mlp_activation, ["gelu"]
        ),
        "vocab_size": shape.vocab_size,
        "logits_via_embedding": shape.tied_embeddings,
        "use_qk_norm": shape.qk_norm,
        "max_target_length": shape.seq_len,
    }
    if shape.moe is not None:
        if shape.moe.num_shared_experts or shape.moe.first_k_dense_layers or shape.moe.moe_layer_interval != 1:
            raise not_expressible(FW, "model", shape.name, "shared experts and dense layers are not base_* keys")
        document.update(
            num_experts=shape.moe.num_experts,
            num_experts_per_tok=shape.moe.top_k,
            base_moe_mlp_dim=shape.moe.expert_ffn_hidden_dim,
        )
    ranks_per_chip = plan.tp_degree * plan.cp_degree
    if plan.dp_degree % plan.ep_degree:
        raise not_expressible(FW, "ep", plan.ep_degree, f"MaxText's expert axis must divide dp={plan.dp_degree}")
    replicas = plan.dp_degree // plan.ep_degree  # the data or fsdp axis beside the expert axis
    if fsdp and replicas == 1:
        raise not_expressible(FW, "zero", 3, "with dp/ep = 1 there is no fsdp axis to shard over (write zero=0)")
    document.update(
        {f"ici_{axis}_parallelism": 1 for axis in _AXES}
        | {f"dcn_{axis}_parallelism": 1 for axis in _AXES}
        | {
            "ici_fsdp_parallelism": replicas if fsdp else 1,
            "ici_data_parallelism": 1 if fsdp else replicas,
            "ici_tensor_parallelism": plan.tp_degree,
            "ici_context_parallelism": plan.cp_degree,
            "ici_expert_parallelism": plan.ep_degree,
            "num_slices": 1,
        }
    )
    document["per_device_batch_size"] = plan.mbs / ranks_per_chip
    document["gradient_accumulation_steps"] = plan.num_microbatches
    document["remat_policy"] = _EXPORT_REMAT[plan.recompute]
    document["quantization"] = {Precision.BF16: ""}.get(plan.precision, plan.precision.value)
    document["attention"] = "flash" if plan.flash_attention else "dot_product"
    document["capacity_factor"] = plan.capacity_factor if plan.capacity_factor is not None else -1.0
    header = f"# {shape.name}: rainier plan {plan.describe()}\n# One slice of {plan.num_ranks} chips.\n"
    return header + yaml.safe_dump(document, sort_keys=False)
