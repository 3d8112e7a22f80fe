"""Megatron-Bridge (NeMo 2's training library) ``ConfigContainer`` YAML: the run config a recipe resolves to.

A Megatron-Bridge run is one ``ConfigContainer`` (``megatron.bridge.training.config``), dumped as YAML with
``_target_`` keys (NVIDIA-NeMo/Megatron-Bridge ``scripts/performance/dryrun_configs/``, commit a9497c6b). Its
sections, read here:

- ``model``: a ``GPTModelProvider``, i.e. Megatron-Core's ``TransformerConfig``: the parallel sizes
  (``{tensor,pipeline,virtual_pipeline,context,expert}_model_parallel_size``, ``expert_tensor_parallel_size``,
  ``sequence_parallel``, ``num_layers_in_{first,last}_pipeline_stage``), recomputation (``recompute_granularity``,
  ``recompute_method``, ``recompute_num_layers``, ``recompute_modules``), overlap switches (``tp_comm_overlap``,
  ``overlap_moe_expert_parallel_comm``, ``moe_enable_deepep``), ``attention_backend`` and the whole shape
  (``num_layers``, ``hidden_size``, ``ffn_hidden_size``, ``num_attention_heads``, ``num_query_groups``,
  ``kv_channels``, ``vocab_size``, ``seq_length``, ``gated_linear_unit`` with ``activation_func._target_``,
  ``normalization``, ``position_embedding_type``, ``share_embeddings_and_output_weights``, ``add_bias_linear``,
  ``add_qkv_bias``, ``qk_layernorm``, ``num_moe_experts``, ``moe_router_topk``, ``moe_ffn_hidden_size``,
  ``moe_expert_capacity_factor``);
- ``train``: ``global_batch_size``, ``micro_batch_size``; ``dataset.seq_length``: the sequences trained on (it
  wins over ``model.seq_length``, which also sizes the position table);
- ``mixed_precision``: ``bf16`` / ``fp16`` / ``fp8`` (a format: e4m3 or hybrid) with ``fp8_recipe`` and
  ``fp8_dot_product_attention`` (the ``model`` keys of the same names where the section is absent);
- ``ddp``: ``use_distributed_optimizer`` (ZeRO-1), ``use_megatron_fsdp`` with ``data_parallel_sharding_strategy``.

A ConfigContainer does not say how many GPUs run it (the launcher does): ``--devices N`` gives the world size.
Every other key is listed as ignored.
"""

from __future__ import annotations

from typing import Any

import yaml

from rainier.errors import InputError, clip
from rainier.launch.config import (
    Framework,
    LaunchConfig,
    catalog_model_for,
    not_expressible,
    refuse_options,
)
from rainier.launch.tree import Tree, block_recompute, tree_config
from rainier.parallel.plan import RECOMPUTE_MODULES, DegreeUnit, Fp8Recipe, Plan, Recompute, Schedule
from rainier.precision import Precision
from rainier.workload.shape import MlpActivation, MoeConfig, Norm, PositionEmbedding, TransformerShape

FW = Framework.BRIDGE
CONTAINER = "megatron.bridge.training.config.ConfigContainer"
PROVIDER = "megatron.bridge.models.gpt_provider.GPTModelProvider"
_PARALLEL = {
    "tp": "tensor_model_parallel_size",
    "pp": "pipeline_model_parallel_size",
    "vpp": "virtual_pipeline_model_parallel_size",
    "cp": "context_parallel_size",
    "ep": "expert_model_parallel_size",
}
_SHARDING = {"no_shard": 0, "optim": 1, "optim_grads": 2, "optim_grads_params": 3}
# activation_func._target_ (torch / Megatron functions) -> the MLP, gated (gated_linear_unit) or not
_ACTIVATIONS = {
    ("torch.nn.functional.silu", True): MlpActivation.SWIGLU,
    ("torch.nn.functional.gelu", True): MlpActivation.GEGLU,
    ("torch.nn.functional.gelu", False): MlpActivation.GELU,
    ("megatron.core.activations.squared_relu", False): MlpActivation.RELU,
    ("torch.nn.functional.relu", False): MlpActivation.RELU,
}
_UNFUSED_BACKENDS = ("unfused", "AttnBackend.unfused")
_NAME_FIELDS = ("num_layers", "hidden_dim", "num_heads", "num_kv_heads", "ffn_hidden_dim", "vocab_size")


def is_bridge(data: dict[str, Any]) -> bool:
    """Whether a parsed YAML mapping is a dumped ConfigContainer (its ``_target_``, or its model and train blocks)."""
    if str(data.get("_target_", "")).endswith("ConfigContainer"):
        return True
    model = data.get("model")
    return isinstance(model, dict) and isinstance(data.get("train"), dict) and "tensor_model_parallel_size" in model


def read_bridge(data: dict[str, Any], where: str, *, num_devices: int | None = None) -> LaunchConfig:
    """A ConfigContainer's model and plan (module docstring); the world size comes from ``num_devices``."""
    t = Tree(data, where)
    t.raw("_target_")
    t.raw("model._target_")
    notes: list[str] = []
    degrees = {short: t.integer(f"model.{key}") or 1 for short, key in _PARALLEL.items()}
    per_replica = degrees["tp"] * degrees["pp"] * degrees["cp"]
    if num_devices is None:
        raise InputError(
            f"{where}: a Megatron-Bridge ConfigContainer does not state its GPU count; give it (--devices N, a "
            f"multiple of tp*pp*cp = {per_replica})"
        )
    if num_devices % per_replica:
        raise InputError(f"{where}: devices={num_devices} is not a multiple of tp*pp*cp = {per_replica}")
    precision, recipe = _precision(t, notes)
    granularity = (t.text("model.recompute_granularity") or "none").lower()
    if granularity not in ("none", "selective", "full"):
        raise t.error("model.recompute_granularity", granularity, "null, selective or full")
    values: dict[str, Any] = {
        "tp_degree": degrees["tp"],
        "pp_degree": degrees["pp"],
        "dp_degree": num_devices // per_replica,
        "cp_degree": degrees["cp"],
        "ep_degree": degrees["ep"],
        "vpp_degree": degrees["vpp"],
        "schedule": Schedule.INTERLEAVED if degrees["vpp"] > 1 else Schedule.ONE_F_ONE_B,
        "sequence_parallel": _sequence_parallel(t, degrees["tp"], notes),
        "zero_stage": _zero(t),
        "mbs": t.integer("train.micro_batch_size") or 1,
        "gbs": _global_batch(t, where),
        "recompute": Recompute(granularity),
        "recompute_layers": _block_recompute(t, granularity, notes),
        "precision": precision,
        "fp8_recipe": recipe,
        "first_stage_layers": t.integer("model.num_layers_in_first_pipeline_stage", minimum=0),
        "last_stage_layers": t.integer("model.num_layers_in_last_pipeline_stage", minimum=0),
        "expert_tp_degree": t.integer("model.expert_tensor_parallel_size"),
        "tp_comm_overlap": bool(t.boolean("model.tp_comm_overlap")),
        "moe_a2a_overlap": bool(t.boolean("model.overlap_moe_expert_parallel_comm")),
        "capacity_factor": t.number("model.moe_expert_capacity_factor"),
        "flash_attention": (t.text("model.attention_backend") or "auto") not in _UNFUSED_BACKENDS,
        "fp8_attention": bool(t.boolean(_section(t, "fp8_dot_product_attention"))),
        "ep_dedup": bool(t.boolean("model.moe_enable_deepep")),
    }
    modules = t.raw("model.recompute_modules")
    if granularity == "selective" and isinstance(modules, list) and modules:
        unknown = [m for m in modules if str(m).lower() not in RECOMPUTE_MODULES]
        if unknown:
            raise t.error("model.recompute_modules", unknown[0], ", ".join(RECOMPUTE_MODULES))
        values["recompute_modules"] = tuple(str(m).lower() for m in modules)
    try:
        plan = Plan(**values)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    shape, missing = _shape(t, notes)
    return tree_config(
        t,
        FW,
        plan=plan,
        shape=shape,
        missing=missing,
        model_name=t.text("model.hf_model_id") or (shape.name if shape is not None else None),
        notes=notes,
    )


def _section(t: Tree, key: str) -> str:
    """``mixed_precision.KEY`` where the file has that section, else ``model.KEY``."""
    return f"mixed_precision.{key}" if isinstance(t.data.get("mixed_precision"), dict) else f"model.{key}"


def _precision(t: Tree, notes: list[str]) -> tuple[Precision, Fp8Recipe | None]:
    fp8 = t.text(_section(t, "fp8"))
    if fp8 is not None:
        if fp8.lower() not in ("e4m3", "hybrid"):
            raise t.error(_section(t, "fp8"), fp8, "null, e4m3 or hybrid")
        recipe_text = t.text(_section(t, "fp8_recipe"))
        if recipe_text is None:
            notes.append("fp8 without fp8_recipe: Megatron-Core's default, delayed scaling")
            return Precision.FP8, Fp8Recipe.DELAYED
        if recipe_text.lower() not in set(Fp8Recipe):
            raise t.error(_section(t, "fp8_recipe"), recipe_text, ", ".join(Fp8Recipe))
        return Precision.FP8, Fp8Recipe(recipe_text.lower())
    if t.boolean(_section(t, "bf16")):
        return Precision.BF16, None
    if t.boolean(_section(t, "fp16")):
        return Precision.FP16, None
    return Precision.FP32, None


def _sequence_parallel(t: Tree, tp: int, notes: list[str]) -> bool:
    sp = bool(t.boolean("model.sequence_parallel"))
    if sp and tp == 1:
        notes.append("sequence_parallel with tp=1: Megatron switches it off (sp=false)")
        return False
    return sp


def _zero(t: Tree) -> int:
    """ZeRO stage: Megatron FSDP's sharding strategy, else 1 for the distributed optimizer."""
    if t.boolean("ddp.use_megatron_fsdp"):
        strategy = t.text("ddp.data_parallel_sharding_strategy") or "optim_grads_params"
        if strategy not in _SHARDING:
            raise t.error("ddp.data_parallel_sharding_strategy", strategy, ", ".join(_SHARDING))
        return _SHARDING[strategy]
    t.raw("ddp.data_parallel_sharding_strategy")  # no_shard outside FSDP: read, says nothing more
    return 1 if t.boolean("ddp.use_distributed_optimizer") else 0


def _global_batch(t: Tree, where: str) -> int:
    gbs = t.integer("train.global_batch_size")
    if gbs is None:
        raise InputError(f"{where}: no global batch (train.global_batch_size)")
    return gbs


def _block_recompute(t: Tree, granularity: str, notes: list[str]) -> int | None:
    return block_recompute(
        t, granularity, notes, method_key="model.recompute_method", layers_key="model.recompute_num_layers"
    )


def _shape(t: Tree, notes: list[str]) -> tuple[TransformerShape | None, tuple[str, ...]]:
    keys = {
        "num_layers": "model.num_layers",
        "hidden_dim": "model.hidden_size",
        "num_heads": "model.num_attention_heads",
        "vocab_size": "model.vocab_size",
    }
    stated = {field: t.integer(key) for field, key in keys.items()}
    seq_key = "dataset.seq_length" if t.has("dataset.seq_length") else "model.seq_length"
    seq_len = t.integer(seq_key)
    model_seq = t.integer("model.seq_length")
    if seq_key == "dataset.seq_length" and model_seq is not None and model_seq != seq_len:
        notes.append(f"dataset.seq_length {seq_len} trained on (model.seq_length {model_seq} sizes positions only)")
    missing = tuple(keys[f] for f, v in stated.items() if v is None) + (() if seq_len else (seq_key,))
    if missing:
        return None, missing
    hidden, heads = int(stated["hidden_dim"] or 0), int(stated["num_heads"] or 0)
    gated = bool(t.boolean("model.gated_linear_unit"))
    function = t.text("model.activation_func._target_") or "torch.nn.functional.gelu"
    t.raw("model.activation_func")
    if (function, gated) not in _ACTIVATIONS:
        allowed = ", ".join(f"{f} (gated_linear_unit {g})" for f, g in _ACTIVATIONS)
        raise InputError(f"{t.where}: model.activation_func {clip(function)!r} is not modelled: {allowed}")
    ffn = t.integer("model.ffn_hidden_size") or 4 * hidden
    values: dict[str, Any] = {
        **{f: int(v or 0) for f, v in stated.items()},
        "seq_len": int(seq_len or 0),
        "num_kv_heads": t.integer("model.num_query_groups") or heads,
        "head_dim": t.integer("model.kv_channels") or hidden // heads,
        "ffn_hidden_dim": ffn,
        "mlp_activation": _ACTIVATIONS[(function, gated)],
        "norm": Norm.RMSNORM if (t.text("model.normalization") or "").lower() == "rmsnorm" else Norm.LAYERNORM,
        "position_embedding": PositionEmbedding.ROPE
        if (t.text("model.position_embedding_type") or "learned_absolute") == "rope"
        else PositionEmbedding.LEARNED,
        "tied_embeddings": t.boolean("model.share_embeddings_and_output_weights") is not False,
        "linear_bias": t.boolean("model.add_bias_linear") is not False,
        "qkv_bias": bool(t.boolean("model.add_qkv_bias")) or t.boolean("model.add_bias_linear") is not False,
        "qk_norm": bool(t.boolean("model.qk_layernorm")),
    }
    experts = t.integer("model.num_moe_experts")
    if experts is not None and experts > 1:
        values["moe"] = MoeConfig(
            num_experts=experts,
            top_k=t.integer("model.moe_router_topk") or 2,
            expert_ffn_hidden_dim=t.integer("model.moe_ffn_hidden_size") or ffn,
        )
    hf_id = t.text("model.hf_model_id") or "bridge-import"
    name = hf_id.rsplit("/", 1)[-1]
    known = catalog_model_for(hf_id)
    if known is not None and all(getattr(known, f) == values[f] for f in _NAME_FIELDS):
        name = known.name  # the catalog's id for the model the file names (its dimensions checked)
    return TransformerShape(name=name, **values), ()


def write_bridge(shape: TransformerShape, plan: Plan, *, devices_per_node: int | None = None) -> str:
    """A ConfigContainer YAML (the keys :func:`read_bridge` reads) for ``shape`` trained with ``plan``."""
    if plan.degrees_unit is not DegreeUnit.DEVICE:
        raise not_expressible(FW, "unit", plan.degrees_unit.value, "Megatron-Bridge degrees count GPUs (unit=device)")
    if plan.schedule not in (Schedule.ONE_F_ONE_B, Schedule.INTERLEAVED):
        raise not_expressible(FW, "schedule", plan.schedule.value, "Megatron-Core runs 1f1b and interleaved 1f1b")
    if plan.precision not in (Precision.BF16, Precision.FP16, Precision.FP8, Precision.FP32):
        raise not_expressible(FW, "precision", plan.precision.value, "Megatron-Bridge trains in fp32, fp16, bf16, fp8")
    supported = {
        "recompute_layers", "recompute_modules", "fp8_recipe", "pp_first", "pp_last", "etp", "tp_overlap",
        "a2a_overlap", "capacity", "flash", "fp8_attention", "ep_dedup",
    }  # fmt: skip
    refuse_options(FW, plan, supported, "no key of a Megatron-Bridge ConfigContainer sets it")
    if shape.mla is not None:
        raise not_expressible(FW, "model", shape.name, "multi-head latent attention needs an MLA provider")
    if shape.moe is not None and (
        shape.moe.num_shared_experts or shape.moe.first_k_dense_layers or shape.moe.moe_layer_interval != 1
    ):
        raise not_expressible(FW, "model", shape.name, "shared experts and dense layers are not GPT provider keys")
    activation = {v: k for k, v in _ACTIVATIONS.items() if not k[0].startswith("torch.nn.functional.relu")}
    function, gated = activation[shape.mlp_activation]
    full = plan.recompute is Recompute.FULL
    model: dict[str, Any] = {
        "_target_": PROVIDER,
        **{key: getattr(plan, f"{short}_degree") for short, key in _PARALLEL.items()},
        "virtual_pipeline_model_parallel_size": plan.vpp_degree if plan.vpp_degree > 1 else None,
        "expert_tensor_parallel_size": plan.expert_tp_degree,
        "sequence_parallel": plan.sequence_parallel,
        "num_layers_in_first_pipeline_stage": plan.first_stage_layers,
        "num_layers_in_last_pipeline_stage": plan.last_stage_layers,
        "recompute_granularity": None if plan.recompute is Recompute.NONE else plan.recompute.value,
        "recompute_method": ("uniform" if plan.recompute_layers is None else "block") if full else None,
        "recompute_num_layers": (plan.recompute_layers or 1) if full else None,
        "recompute_modules": list(plan.recompute_modules) if plan.recompute is Recompute.SELECTIVE else None,
        "tp_comm_overlap": plan.tp_comm_overlap,
        "overlap_moe_expert_parallel_comm": plan.moe_a2a_overlap,
        "moe_enable_deepep": plan.ep_dedup,
        "moe_expert_capacity_factor": plan.capacity_factor,
        "attention_backend": None if plan.flash_attention else "unfused",
        "hf_model_id": shape.name,
        "num_layers": shape.num_layers,
        "hidden_size": shape.hidden_dim,
        "ffn_hidden_size": shape.ffn_hidden_dim,
        "num_attention_heads": shape.num_heads,
        "num_query_groups": shape.num_kv_heads,
        "kv_channels": shape.head_dim,
        "vocab_size": shape.vocab_size,
        "seq_length": shape.seq_len,
        "gated_linear_unit": gated,
        "activation_func": {"_call_": False, "_target_": function},
        "normalization": "RMSNorm" if shape.norm is Norm.RMSNORM else "LayerNorm",
        "position_embedding_type": "rope" if shape.position_embedding is PositionEmbedding.ROPE else "learned_absolute",
        "share_embeddings_and_output_weights": shape.tied_embeddings,
        "add_bias_linear": shape.linear_bias,
        "add_qkv_bias": shape.qkv_bias,
        "qk_layernorm": shape.qk_norm,
    }
    if shape.linear_bias and not shape.qkv_bias:
        raise not_expressible(FW, "qkv_bias", False, "add_bias_linear puts biases on the QKV projection too")
    if shape.moe is not None:
        model.update(
            num_moe_experts=shape.moe.num_experts,
            moe_router_topk=shape.moe.top_k,
            moe_ffn_hidden_size=shape.moe.expert_ffn_hidden_dim,
        )
    fsdp = plan.zero_stage in (2, 3)
    ddp: dict[str, Any] = {"use_distributed_optimizer": plan.zero_stage >= 1, "use_megatron_fsdp": fsdp}
    if fsdp:
        ddp["data_parallel_sharding_strategy"] = "optim_grads" if plan.zero_stage == 2 else "optim_grads_params"
    document = {
        "_target_": CONTAINER,
        "model": model,
        "train": {"global_batch_size": plan.gbs, "micro_batch_size": plan.mbs},
        "dataset": {"seq_length": shape.seq_len},
        "mixed_precision": {
            "bf16": plan.precision in (Precision.BF16, Precision.FP8),
            "fp16": plan.precision is Precision.FP16,
            "fp8": "e4m3" if plan.precision is Precision.FP8 else None,
            "fp8_recipe": plan.fp8_recipe.value if plan.fp8_recipe is not None else None,
            "fp8_dot_product_attention": plan.fp8_attention,
        },
        "ddp": ddp,
    }
    per_node = devices_per_node or 8
    nodes = max(1, plan.num_ranks // per_node)
    header = (
        f"# {shape.name}: rainier plan {plan.describe()}\n"
        f"# Launch on {plan.num_ranks} GPUs ({nodes} node(s)); a ConfigContainer does not state its GPU count:\n"
        f"# rainier import FILE --devices {plan.num_ranks}\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)
