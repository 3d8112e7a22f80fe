"""The workload layer: what is being trained or served, independent of the plan and the hardware.

- :mod:`~rainier.workload.shape`: :class:`TransformerShape` and its enums (MLP kind, norms, MLA, MoE).
- :mod:`~rainier.workload.params`: exact parameter counts (total, active, by group, per layer).
- :mod:`~rainier.workload.flops`: FLOPs per token, published closed forms, per-GEMM shapes for the roofline.
- :mod:`~rainier.workload.memory`: model state by precision and ZeRO stage, activations, KV cache.
- :mod:`~rainier.workload.hf_import`: shapes from Hugging Face ``config.json`` files.
- :mod:`~rainier.workload.registry`: named models from ``catalog/models.yaml``, name-or-path resolution,
  validation-case model blocks.
- :mod:`~rainier.workload.summary`: one JSON-ready summary per model.
"""

from rainier.workload.flops import (
    FlopsPerToken,
    Gemm,
    GemmKind,
    ModelGemms,
    flops_per_token,
    hardware_flops_per_token,
    head_gemms,
    layer_gemms,
    megatron_hardware_flops,
    megatron_model_flops,
    model_flops_per_token,
    model_gemms,
    palm_model_flops_per_token,
    tp_divisibility_problem,
)
from rainier.workload.hf_import import SUPPORTED_MODEL_TYPES, load_hf_config, shape_from_hf_config
from rainier.workload.memory import (
    ActivationBytes,
    ModelStateBytes,
    Recompute,
    StateBytesPerParam,
    kv_cache_bytes_per_token,
    layer_activation_bytes,
    model_state_bytes,
)
from rainier.workload.params import LayerParams, ParamCounts, count_params, layer_params
from rainier.workload.registry import (
    ModelEntry,
    get_entry,
    get_model,
    load_model_file,
    model_entries,
    models,
    resolve_model,
    shape_from_validation_model,
)
from rainier.workload.shape import (
    AttentionKind,
    MlaConfig,
    MlpActivation,
    MoeConfig,
    Norm,
    PositionEmbedding,
    Router,
    TransformerShape,
)
from rainier.workload.summary import ModelSummary, catalog_model_rows, summarize

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "ActivationBytes",
    "AttentionKind",
    "FlopsPerToken",
    "Gemm",
    "GemmKind",
    "LayerParams",
    "MlaConfig",
    "MlpActivation",
    "ModelEntry",
    "ModelGemms",
    "ModelStateBytes",
    "ModelSummary",
    "MoeConfig",
    "Norm",
    "ParamCounts",
    "PositionEmbedding",
    "Recompute",
    "Router",
    "StateBytesPerParam",
    "TransformerShape",
    "catalog_model_rows",
    "count_params",
    "flops_per_token",
    "get_entry",
    "get_model",
    "hardware_flops_per_token",
    "head_gemms",
    "kv_cache_bytes_per_token",
    "layer_activation_bytes",
    "layer_gemms",
    "layer_params",
    "load_hf_config",
    "load_model_file",
    "megatron_hardware_flops",
    "megatron_model_flops",
    "model_entries",
    "model_flops_per_token",
    "model_gemms",
    "model_state_bytes",
    "models",
    "palm_model_flops_per_token",
    "resolve_model",
    "shape_from_hf_config",
    "shape_from_validation_model",
    "summarize",
    "tp_divisibility_problem",
]
