"""NeMo recipe YAML (the Megatron GPT config of NeMo 1, also read from NeMo 2 / Megatron-Bridge key places).

Keys are NeMo's ``examples/nlp/language_modeling/conf/megatron_gpt_config.yaml`` (NVIDIA/NeMo, commit 8cfedd72):
``trainer.devices`` x ``trainer.num_nodes`` GPUs, ``trainer.precision`` (32, 16, bf16 and their ``-mixed`` forms),
``model.{tensor,pipeline,virtual_pipeline,context,expert}_model_parallel_size``, ``model.sequence_parallel``,
``model.micro_batch_size`` / ``global_batch_size``, ``model.activations_checkpoint_granularity``,
``model.fp8`` (+ ``fp8_hybrid``), ``model.optim.name`` (``distributed_fused_adam`` shards the optimizer state:
ZeRO-1), ``model.fsdp``, ``model.ub_tp_comm_overlap``, and the shape keys (``num_layers``, ``hidden_size``,
``ffn_hidden_size``, ``num_attention_heads``, ``num_query_groups``, ``kv_channels``, ``encoder_seq_length``,
``activation``, ``normalization``, ``position_embedding_type``, ``share_embeddings_and_output_weights``, ``bias``,
``num_moe_experts``, ``moe_router_topk``). The vocabulary comes from the tokenizer, so it is not in the file.
NeMo 2 and Megatron-Bridge put the parallel sizes under ``trainer.strategy`` (or ``model``) and the batch under
``data`` (or ``train``); those places are read too.
"""

from __future__ import annotations

from typing import Any

import yaml

from rainier.errors import InputError
from rainier.launch.config import (
    Framework,
    LaunchConfig,
    StatedCluster,
    match_catalog,
    not_expressible,
    refuse_options,
)
from rainier.launch.tree import Tree, block_recompute, tree_config
from rainier.parallel.plan import DegreeUnit, Fp8Recipe, Plan, Recompute, Schedule
from rainier.precision import Precision
from rainier.workload.shape import MlpActivation, MoeConfig, Norm, PositionEmbedding, TransformerShape

FW = Framework.NEMO
_PARALLEL = {
    "tp": "tensor_model_parallel_size",
    "pp": "pipeline_model_parallel_size",
    "vpp": "virtual_pipeline_model_parallel_size",
    "cp": "context_parallel_size",
    "ep": "expert_model_parallel_size",
}
_ACTIVATIONS = {
    "gelu": MlpActivation.GELU,
    "swiglu": MlpActivation.SWIGLU,
    "fast-swiglu": MlpActivation.SWIGLU,
    "geglu": MlpActivation.GEGLU,
    "fast-geglu": MlpActivation.GEGLU,
    "squared-relu": MlpActivation.RELU,
}
_PRECISIONS = {
    "32": Precision.FP32,
    "16": Precision.FP16,
    "16-mixed": Precision.FP16,
    "bf16": Precision.BF16,
    "bf16-mixed": Precision.BF16,
    "bf16-true": Precision.BF16,
}


def _first(tree: Tree, keys: tuple[str, ...]) -> str:
    return next((k for k in keys if tree.has(k)), keys[0])


def read_nemo(data: dict[str, Any], where: str, *, num_devices: int | None = None) -> LaunchConfig:
    """A NeMo recipe's model, plan and cluster."""
    t = Tree(data, where)
    notes: list[str] = []
    degrees = {}
    for short, key in _PARALLEL.items():
        place = _first(t, (f"model.{key}", f"trainer.strategy.{key}"))
        degrees[short] = t.integer(place) or 1
    devices, nodes = t.integer("trainer.devices"), t.integer("trainer.num_nodes") or 1
    cluster = StatedCluster(num_nodes=nodes, devices_per_node=devices) if devices is not None else None
    world = num_devices or (cluster.num_devices if cluster is not None else None)
    per_replica = degrees["tp"] * degrees["pp"] * degrees["cp"]
    if world is None or world % per_replica:
        raise InputError(
            f"{where}: trainer.devices x trainer.num_nodes = {world} is not a multiple of tp*pp*cp = {per_replica}; "
            "give the device count (--devices N)"
        )
    precision_text = str(t.raw("trainer.precision")) if t.has("trainer.precision") else "32"
    if precision_text not in _PRECISIONS:
        raise t.error("trainer.precision", precision_text, f"one of {', '.join(_PRECISIONS)}")
    precision, recipe = _PRECISIONS[precision_text], None
    if t.boolean("model.fp8"):
        precision = Precision.FP8
        t.raw("model.fp8_hybrid")
        recipe_text = t.text("model.fp8_recipe")
        if recipe_text is None:
            recipe = Fp8Recipe.DELAYED
            notes.append("model.fp8 without model.fp8_recipe: NeMo's delayed scaling (amax history)")
        else:
            recipe = Fp8Recipe(recipe_text.lower()) if recipe_text.lower() in set(Fp8Recipe) else None
            if recipe is None:
                raise t.error("model.fp8_recipe", recipe_text, ", ".join(Fp8Recipe))
    granularity = (t.text("model.activations_checkpoint_granularity") or "none").lower()
    if granularity not in ("none", "selective", "full"):
        raise t.error("model.activations_checkpoint_granularity", granularity, "null, selective or full")
    block = _block_recompute(t, granularity, notes)
    zero = 1 if (t.text(_first(t, ("model.optim.name", "optim.name"))) or "") == "distributed_fused_adam" else 0
    if t.boolean("model.fsdp"):
        zero = 3
    mbs_key = _first(t, ("model.micro_batch_size", "data.micro_batch_size", "train.micro_batch_size"))
    gbs_key = _first(t, ("model.global_batch_size", "data.global_batch_size", "train.global_batch_size"))
    mbs, gbs = t.integer(mbs_key) or 1, t.integer(gbs_key)
    if gbs is None:
        raise InputError(f"{where}: no global batch ({gbs_key})")
    tp = degrees["tp"]
    sp = bool(t.boolean(_first(t, ("model.sequence_parallel", "trainer.strategy.sequence_parallel"))))
    if sp and tp == 1:
        notes.append("sequence_parallel with tp=1: Megatron switches it off (sp=false)")
        sp = False
    try:
        plan = Plan(
            tp_degree=tp,
            pp_degree=degrees["pp"],
            dp_degree=world // per_replica,
            cp_degree=degrees["cp"],
            ep_degree=degrees["ep"],
            vpp_degree=degrees["vpp"],
            schedule=Schedule.INTERLEAVED if degrees["vpp"] > 1 else Schedule.ONE_F_ONE_B,
            sequence_parallel=sp,
            zero_stage=zero,
            mbs=mbs,
            gbs=gbs,
            recompute=Recompute(granularity),
            recompute_layers=block,
            precision=precision,
            fp8_recipe=recipe,
            tp_comm_overlap=bool(t.boolean("model.ub_tp_comm_overlap")),
        )
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    shape, missing = _shape(t, notes)
    return tree_config(
        t,
        FW,
        plan=plan,
        shape=shape,
        missing=missing,
        model_name=shape.name if shape is not None else t.text("name"),
        notes=notes,
        cluster=cluster,
    )


def _shape(t: Tree, notes: list[str]) -> tuple[TransformerShape | None, tuple[str, ...]]:
    keys = {
        "num_layers": "model.num_layers",
        "hidden_dim": "model.hidden_size",
        "num_heads": "model.num_attention_heads",
        "seq_len": "model.encoder_seq_length",
    }
    stated = {field: t.integer(key) for field, key in keys.items()}
    missing = tuple(keys[f] for f, v in stated.items() if v is None)
    if missing:
        return None, (*missing, "vocab_size")
    hidden, heads = int(stated["hidden_dim"] or 0), int(stated["num_heads"] or 0)
    activation_text = (t.text("model.activation") or "gelu").lower()
    if activation_text not in _ACTIVATIONS:
        raise t.error("model.activation", activation_text, ", ".join(_ACTIVATIONS))
    values: dict[str, Any] = {
        **{f: int(v or 0) for f, v in stated.items()},
        "num_kv_heads": t.integer("model.num_query_groups") or heads,
        "head_dim": t.integer("model.kv_channels") or hidden // heads,
        "ffn_hidden_dim": t.integer("model.ffn_hidden_size") or 4 * hidden,
        "mlp_activation": _ACTIVATIONS[activation_text],
        "norm": Norm.RMSNORM if (t.text("model.normalization") or "").lower() == "rmsnorm" else Norm.LAYERNORM,
        "position_embedding": PositionEmbedding.ROPE
        if (t.text("model.position_embedding_type") or "learned_absolute") == "rope"
        else PositionEmbedding.LEARNED,
        "tied_embeddings": t.boolean("model.share_embeddings_and_output_weights") is not False,
    }
    bias = t.boolean("model.bias") is not False
    values.update(qkv_bias=bias, linear_bias=bias, qk_norm=bool(t.boolean("model.qk_layernorm")))
    experts = t.integer("model.num_moe_experts")
    moe = None
    if experts is not None and experts > 1:
        moe = MoeConfig(
            num_experts=experts,
            top_k=t.integer("model.moe_router_topk") or 2,
            expert_ffn_hidden_dim=values["ffn_hidden_dim"],
        )
    match, note = match_catalog(
        {k: values[k] for k in ("num_layers", "hidden_dim", "num_heads", "num_kv_heads", "ffn_hidden_dim")}
    )
    notes.append(note)
    if match is None:
        return None, ("vocab_size",)
    return TransformerShape(name=match.name, vocab_size=match.vocab_size, moe=moe, **values), ()


def _block_recompute(t: Tree, granularity: str, notes: list[str]) -> int | None:
    return block_recompute(
        t,
        granularity,
        notes,
        method_key="model.activations_checkpoint_method",
        layers_key="model.activations_checkpoint_num_layers",
    )


def _checkpoint_method(plan: Plan) -> str | None:
    """NeMo's ``activations_checkpoint_method`` for a plan: block for N layers per chunk, else uniform."""
    if plan.recompute is not Recompute.FULL:
        return None
    return "uniform" if plan.recompute_layers is None else "block"


def write_nemo(shape: TransformerShape, plan: Plan, *, devices_per_node: int | None = None) -> str:
    """The recipe YAML (NeMo's megatron_gpt_config keys) for ``shape`` trained with ``plan``."""
    if plan.degrees_unit is not DegreeUnit.DEVICE:
        raise not_expressible(FW, "unit", plan.degrees_unit.value, "NeMo degrees count GPUs (unit=device)")
    if plan.schedule not in (Schedule.ONE_F_ONE_B, Schedule.INTERLEAVED):
        raise not_expressible(FW, "schedule", plan.schedule.value, "NeMo runs Megatron's 1f1b and interleaved 1f1b")
    if plan.zero_stage == 2:
        raise not_expressible(FW, "zero", 2, "NeMo shards the optimizer (distributed_fused_adam) or everything (fsdp)")
    if plan.precision not in (Precision.BF16, Precision.FP16, Precision.FP8, Precision.FP32):
        raise not_expressible(FW, "precision", plan.precision.value, "NeMo trains in 32, 16, bf16 or fp8")
    refuse_options(FW, plan, {"tp_overlap", "fp8_recipe", "recompute_layers"}, "no key of NeMo's GPT recipe sets it")
    if shape.mla is not None:
        raise not_expressible(FW, "model", shape.name, "multi-head latent attention is not a key of this recipe")
    if shape.moe is not None and (shape.moe.num_shared_experts or shape.moe.first_k_dense_layers):
        raise not_expressible(FW, "model", shape.name, "shared experts and dense first layers are not recipe keys")
    world = plan.num_ranks
    per_node = devices_per_node or 8
    if world % per_node:
        per_node = world
    activation = {v: k for k, v in _ACTIVATIONS.items() if not k.startswith("fast")}[shape.mlp_activation]
    model: dict[str, Any] = {
        "micro_batch_size": plan.mbs,
        "global_batch_size": plan.gbs,
        "tensor_model_parallel_size": plan.tp_degree,
        "pipeline_model_parallel_size": plan.pp_degree,
        "virtual_pipeline_model_parallel_size": plan.vpp_degree if plan.vpp_degree > 1 else None,
        "context_parallel_size": plan.cp_degree,
        "expert_model_parallel_size": plan.ep_degree,
        "sequence_parallel": plan.sequence_parallel,
        "encoder_seq_length": shape.seq_len,
        "max_position_embeddings": shape.seq_len,
        "num_layers": shape.num_layers,
        "hidden_size": shape.hidden_dim,
        "ffn_hidden_size": shape.ffn_hidden_dim,
        "num_attention_heads": shape.num_heads,
        "num_query_groups": shape.num_kv_heads,
        "kv_channels": shape.head_dim,
        "activation": activation,
        "normalization": shape.norm.value,
        "position_embedding_type": "rope" if shape.position_embedding is PositionEmbedding.ROPE else "learned_absolute",
        "share_embeddings_and_output_weights": shape.tied_embeddings,
        "bias": shape.linear_bias,
        "qk_layernorm": shape.qk_norm,
        "activations_checkpoint_granularity": None if plan.recompute is Recompute.NONE else plan.recompute.value,
        "activations_checkpoint_method": _checkpoint_method(plan),
        "activations_checkpoint_num_layers": (plan.recompute_layers or 1) if plan.recompute is Recompute.FULL else None,
        "fp8": plan.precision is Precision.FP8,
        "fp8_hybrid": plan.precision is Precision.FP8,
        "ub_tp_comm_overlap": plan.tp_comm_overlap,
        "fsdp": plan.zero_stage == 3,
        "optim": {"name": "distributed_fused_adam" if plan.zero_stage == 1 else "fused_adam"},
    }
    if plan.fp8_recipe is not None:
        model["fp8_recipe"] = plan.fp8_recipe.value
    if shape.linear_bias != shape.qkv_bias:
        raise not_expressible(FW, "qkv_bias", shape.qkv_bias, "NeMo's model.bias sets all biases together")
    if shape.moe is not None:
        if shape.moe.expert_ffn_hidden_dim != shape.ffn_hidden_dim or shape.moe.moe_layer_interval != 1:
            raise not_expressible(FW, "model", shape.name, "experts as wide as the dense MLP in every layer only")
        model.update(num_moe_experts=shape.moe.num_experts, moe_router_topk=shape.moe.top_k)
    precision = {Precision.FP32: 32, Precision.FP16: "16-mixed"}.get(plan.precision, "bf16-mixed")
    document = {
        "name": f"megatron_gpt_{shape.name}",
        "trainer": {"devices": per_node, "num_nodes": world // per_node, "accelerator": "gpu", "precision": precision},
        "model": model,
    }
    header = (
        f"# {shape.name}: rainier plan {plan.describe()}\n"
        f"# The vocabulary ({shape.vocab_size}) comes from model.tokenizer, which this file leaves to you.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)
