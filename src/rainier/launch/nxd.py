"""AWS neuronx-distributed-training (NxD) config YAML: distributed strategy, batch, NeuronCores, model keys.

Keys are those of aws-neuron/neuronx-distributed-training ``examples/conf/*.yaml`` (commit 9169aa03):
``trainer.devices`` counts NeuronCores per node (32 on a trn1.32xlarge) and ``trainer.num_nodes`` the nodes, so the
degrees count cores (a rainier plan with ``unit=core``); ``distributed_strategy.{tensor,pipeline,
virtual_pipeline,context,expert}_model_parallel_size``, ``zero1`` (ZeRO-1), ``sequence_parallel``;
``data.micro_batch_size`` / ``global_batch_size``; ``model.activations_checkpoint_granularity`` and
``activations_checkpoint_recompute`` (module classes: ``CoreAttention`` is Megatron's ``core_attn``, an MLP class
``mlp``); ``model.fusions.flash_attention``; ``precision.type`` (``mixed_precision``, ``bf16SR`` and their kin are
bf16 matmuls, ``fp32`` fp32). ``model_source: hf`` configs take the shape from ``model.model_config`` (a
``config.json`` path on the training host), so only the layers and width are in the file; ``megatron`` configs
state the shape but, like NeMo, take the vocabulary from the tokenizer.
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
from rainier.launch.tree import Tree, tree_config
from rainier.parallel.plan import DEFAULT_RECOMPUTE_MODULES, DegreeUnit, Plan, Recompute, Schedule
from rainier.precision import Precision
from rainier.workload.shape import MlpActivation, Norm, PositionEmbedding, TransformerShape

FW = Framework.NXD
CORES_PER_TRN1_NODE = 32  # trn1.32xlarge: 16 Trainium chips x 2 NeuronCores (NxD's example trainer.devices)
_STRATEGY = "distributed_strategy"
_MODULES = {
    "CoreAttention": "core_attn",
    "LlamaMLP": "mlp",
    "MLP": "mlp",
    "MixtralMLP": "moe",
    "LayerNorm": "layernorm",
}
_EXPORT_MODULES = {"core_attn": "CoreAttention", "mlp": "LlamaMLP", "moe": "MixtralMLP", "layernorm": "LayerNorm"}
_BF16_TYPES = {"mixed_precision", "mixed_precisionsr", "bf16sr", "autocast", "manual"}


def read_nxd(data: dict[str, Any], where: str, *, num_devices: int | None = None) -> LaunchConfig:
    """An NxD config's model, plan (NeuronCore degrees) and cores."""
    t = Tree(data, where)
    notes: list[str] = []
    keys = {
        "tensor": "tensor_model_parallel_size",
        "pipeline": "pipeline_model_parallel_size",
        "virtual_pipeline": "virtual_pipeline_model_parallel_size",
        "context": "context_parallel_size",
        "expert": "expert_model_parallel_size",
    }
    degree = {k: t.integer(f"{_STRATEGY}.{key}") or 1 for k, key in keys.items()}
    cores, nodes = t.integer("trainer.devices"), t.integer("trainer.num_nodes") or 1
    cluster = StatedCluster(num_nodes=nodes, devices_per_node=cores, unit="core") if cores is not None else None
    total = num_devices or (cluster.num_devices if cluster is not None else None)
    per_replica = degree["tensor"] * degree["pipeline"] * degree["context"]
    if total is None or total % per_replica:
        raise InputError(
            f"{where}: trainer.devices x trainer.num_nodes = {total} NeuronCores is not a multiple of tp*pp*cp = "
            f"{per_replica}; give the core count (--devices N)"
        )
    granularity = (t.text("model.activations_checkpoint_granularity") or "none").lower()
    if granularity not in ("none", "selective", "full"):
        raise t.error("model.activations_checkpoint_granularity", granularity, "null, selective or full")
    modules: list[str] = []
    listed = t.raw("model.activations_checkpoint_recompute")
    for name in listed if isinstance(listed, list) else []:
        if str(name) in _MODULES:
            modules.append(_MODULES[str(name)])
        else:
            notes.append(f"activations_checkpoint_recompute {name}: no rainier module; left out")
    kind = (t.text("precision.type") or "mixed_precision").lower()
    if kind != "fp32" and kind not in _BF16_TYPES:
        raise t.error("precision.type", kind, "mixed_precision, bf16SR, autocast, manual or fp32")
    flash = t.boolean("model.fusions.flash_attention")
    gbs = t.integer("data.global_batch_size")
    if gbs is None:
        raise InputError(f"{where}: no data.global_batch_size")
    try:
        plan = Plan(
            tp_degree=degree["tensor"],
            pp_degree=degree["pipeline"],
            dp_degree=total // per_replica,
            cp_degree=degree["context"],
            ep_degree=degree["expert"],
            vpp_degree=degree["virtual_pipeline"],
            schedule=Schedule.INTERLEAVED if degree["virtual_pipeline"] > 1 else Schedule.ONE_F_ONE_B,
            sequence_parallel=bool(t.boolean(f"{_STRATEGY}.sequence_parallel")),
            zero_stage=1 if t.boolean(f"{_STRATEGY}.zero1") else 0,
            mbs=t.integer("data.micro_batch_size") or 1,
            gbs=gbs,
            recompute=Recompute(granularity),
            recompute_modules=tuple(modules) or DEFAULT_RECOMPUTE_MODULES,
            precision=Precision.FP32 if kind == "fp32" else Precision.BF16,
            degrees_unit=DegreeUnit.CORE,
            flash_attention=flash is not False,
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
        model_name=t.text("model.model_config") or (shape.name if shape else t.text("name")),
        notes=notes,
        cluster=cluster,
    )


def _shape(t: Tree, notes: list[str]) -> tuple[TransformerShape | None, tuple[str, ...]]:
    keys = {
        "num_layers": "model.num_layers",
        "hidden_dim": "model.hidden_size",
        "num_heads": "model.num_attention_heads",
        "ffn_hidden_dim": "model.ffn_hidden_size",
        "seq_len": "model.encoder_seq_length",
    }
    stated = {f: t.integer(k) for f, k in keys.items()}
    missing = tuple(keys[f] for f, v in stated.items() if v is None)
    if missing:
        if t.has("model.model_config"):
            notes.append(f"the shape is in {t.text('model.model_config')} (a config.json): give --model")
        return None, missing
    values: dict[str, Any] = {f: int(v or 0) for f, v in stated.items()}
    heads = values["num_heads"]
    values["num_kv_heads"] = t.integer("model.num_kv_heads") or heads
    activation = (t.text("model.activation") or "swiglu").lower()
    if activation not in ("swiglu", "gelu"):
        raise t.error("model.activation", activation, "swiglu or gelu")
    bias = bool(t.boolean("model.has_bias"))
    match, note = match_catalog(
        {k: values[k] for k in ("num_layers", "hidden_dim", "num_heads", "num_kv_heads", "ffn_hidden_dim")}
    )
    notes.append(note)
    if match is None:
        return None, ("vocab_size",)
    shape = TransformerShape(
        name=match.name,
        head_dim=t.integer("model.kv_channels") or values["hidden_dim"] // heads,
        vocab_size=match.vocab_size,
        mlp_activation=MlpActivation(activation),
        tied_embeddings=bool(t.boolean("model.share_embeddings_and_output_weights")),
        position_embedding=PositionEmbedding.ROPE
        if (t.text("model.position_embedding_type") or "rope") == "rope"
        else PositionEmbedding.LEARNED,
        norm=Norm.RMSNORM if (t.text("model.normalization") or "rmsnorm") == "rmsnorm" else Norm.LAYERNORM,
        qkv_bias=bias,
        linear_bias=bias,
        **values,
    )
    return shape, ()


def write_nxd(shape: TransformerShape, plan: Plan, *, devices_per_node: int | None = None) -> str:
    """An NxD (megatron model source) config for ``shape`` trained with the NeuronCore ``plan``."""
    if plan.degrees_unit is not DegreeUnit.CORE:
        raise not_expressible(FW, "unit", plan.degrees_unit.value, "NxD degrees count NeuronCores: write unit=core")
    if plan.schedule not in (Schedule.ONE_F_ONE_B, Schedule.INTERLEAVED):
        raise not_expressible(FW, "schedule", plan.schedule.value, "NxD runs 1f1b and interleaved 1f1b")
    if plan.zero_stage > 1:
        raise not_expressible(FW, "zero", plan.zero_stage, "NxD offers zero1 (ZeRO-1) or none")
    if plan.precision not in (Precision.BF16, Precision.FP32):
        raise not_expressible(FW, "precision", plan.precision.value, "NxD's precision types are bf16 or fp32 here")
    refuse_options(FW, plan, {"flash", "recompute_modules"}, "no NxD key sets it")
    if shape.moe is not None or shape.mla is not None:
        raise not_expressible(FW, "model", shape.name, "the megatron model source here is dense, without MLA")
    if shape.mlp_activation not in (MlpActivation.SWIGLU, MlpActivation.GELU) or shape.qkv_bias != shape.linear_bias:
        raise not_expressible(FW, "model", shape.name, "swiglu or gelu, and one has_bias for all projections")
    cores = plan.num_ranks
    per_node = devices_per_node or CORES_PER_TRN1_NODE
    if cores % per_node:
        per_node = cores
    document: dict[str, Any] = {
        "name": f"megatron_{shape.name}",
        "model_source": "megatron",
        "trainer": {"devices": per_node, "num_nodes": cores // per_node},
        _STRATEGY: {
            "tensor_model_parallel_size": plan.tp_degree,
            "pipeline_model_parallel_size": plan.pp_degree,
            "virtual_pipeline_model_parallel_size": plan.vpp_degree,
            "context_parallel_size": plan.cp_degree,
            "expert_model_parallel_size": plan.ep_degree,
            "zero1": plan.zero_stage == 1,
            "sequence_parallel": plan.sequence_parallel,
        },
        "data": {"micro_batch_size": plan.mbs, "global_batch_size": plan.gbs},
        "model": {
            "encoder_seq_length": shape.seq_len,
            "max_position_embeddings": shape.seq_len,
            "num_layers": shape.num_layers,
            "hidden_size": shape.hidden_dim,
            "ffn_hidden_size": shape.ffn_hidden_dim,
            "num_attention_heads": shape.num_heads,
            "num_kv_heads": shape.num_kv_heads,
            "kv_channels": shape.head_dim,
            "normalization": shape.norm.value,
            "share_embeddings_and_output_weights": shape.tied_embeddings,
            "position_embedding_type": "rope"
            if shape.position_embedding is PositionEmbedding.ROPE
            else "learned_absolute",
            "activation": shape.mlp_activation.value,
            "has_bias": shape.linear_bias,
            "activations_checkpoint_granularity": None if plan.recompute is Recompute.NONE else plan.recompute.value,
            "activations_checkpoint_recompute": [_EXPORT_MODULES.get(m, m) for m in plan.recompute_modules],
            "fusions": {"flash_attention": plan.flash_attention},
        },
        "precision": {"type": "fp32" if plan.precision is Precision.FP32 else "mixed_precision"},
    }
    unknown = [m for m in plan.recompute_modules if m not in _EXPORT_MODULES]
    if unknown:
        raise not_expressible(FW, "recompute_modules", "+".join(unknown), f"NxD modules: {', '.join(_EXPORT_MODULES)}")
    header = (
        f"# {shape.name}: rainier plan {plan.describe()}\n"
        f"# The vocabulary ({shape.vocab_size}) comes from model.tokenizer, which this file leaves to you.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)
