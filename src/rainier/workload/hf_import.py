"""Build a :class:`TransformerShape` from a Hugging Face ``config.json``.

Supported ``model_type`` values: llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, deepseek_v3, gpt_oss, gemma2,
gemma3_text. The field names and defaults follow the ``transformers`` configuration classes of those models.
Anything malformed (not JSON, not an object, a missing, negative, wrong-typed or absurdly large field) raises a one-line
:class:`~rainier.errors.InputError` naming the file and the field; nothing else escapes.

Sliding windows are read where the config turns them on: Mistral's ``sliding_window`` (every layer; Mistral 7B
v0.1), Qwen2/Qwen3's ``use_sliding_window`` with ``sliding_window`` for the layers from ``max_window_layers`` on (the
``transformers`` attention classes' rule). Ignored on purpose: RoPE scaling; DeepSeek-V3's multi-token-prediction module
(``num_nextn_predict_layers``, not part of the 671B main model); quantisation metadata.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rainier.errors import InputError, quote
from rainier.workload.shape import (
    MAX_INT,
    MlaConfig,
    MlpActivation,
    MoeConfig,
    Norm,
    PositionEmbedding,
    Router,
    TransformerShape,
)

CONFIG_FILE = "config.json"
MAX_CONFIG_BYTES = 16 * 2**20  # a config.json is a few KiB; refuse to parse anything huge

# hidden_act spellings of transformers' ACT2FN that the gated MLPs of these models use
_GATED_ACTIVATIONS = {
    "silu": MlpActivation.SWIGLU,
    "swish": MlpActivation.SWIGLU,
    "gelu": MlpActivation.GEGLU,
    "gelu_new": MlpActivation.GEGLU,
    "gelu_pytorch_tanh": MlpActivation.GEGLU,
    "gelu_fast": MlpActivation.GEGLU,
}


class _Config:
    """Typed, bounded reads of one config mapping; every error names the source and the field."""

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def error(self, key: str, value: Any, allowed: str) -> InputError:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return InputError(f"{self.source}: {key}={shown} is invalid: {allowed}")

    def integer(self, key: str, default: int | None = None, *, minimum: int = 1) -> int:
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise InputError(f"{self.source}: missing required field '{key}'")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, value, "expected an integer")
        if not minimum <= value <= MAX_INT:
            raise self.error(key, value, f"must be between {minimum} and {MAX_INT}")
        return value

    def optional_integer(self, key: str, *, minimum: int = 1) -> int | None:
        return None if self.data.get(key) is None else self.integer(key, minimum=minimum)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, value, "expected true or false")
        return value

    def text(self, key: str, default: str) -> str:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(key, value, "expected text")
        return value

    def int_list(self, key: str) -> list[int]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_INT for v in value
        ):
            raise self.error(key, value, "expected a list of layer indices")
        return list(value)


def _gated_activation(cfg: _Config) -> MlpActivation:
    act = cfg.text("hidden_act", "silu")
    if act not in _GATED_ACTIVATIONS:
        raise cfg.error("hidden_act", act, f"allowed: {', '.join(sorted(_GATED_ACTIVATIONS))}")
    return _GATED_ACTIVATIONS[act]


def _common(cfg: _Config, name: str) -> dict[str, Any]:
    """Fields shared by the Llama-family configs."""
    hidden = cfg.integer("hidden_size")
    heads = cfg.integer("num_attention_heads")
    if "head_dim" in cfg.data and cfg.data["head_dim"] is not None:
        head_dim = cfg.integer("head_dim")
    elif hidden % heads:
        raise cfg.error("num_attention_heads", heads, f"must divide hidden_size={hidden} when head_dim is absent")
    else:
        head_dim = hidden // heads
    return {
        "name": name,
        "num_layers": cfg.integer("num_hidden_layers"),
        "hidden_dim": hidden,
        "num_heads": heads,
        "num_kv_heads": cfg.integer("num_key_value_heads", heads),
        "head_dim": head_dim,
        "ffn_hidden_dim": cfg.integer("intermediate_size"),
        "vocab_size": cfg.integer("vocab_size"),
        "seq_len": cfg.integer("max_position_embeddings"),
        "mlp_activation": _gated_activation(cfg),
        "tied_embeddings": cfg.boolean("tie_word_embeddings", False),
        "position_embedding": PositionEmbedding.ROPE,
        "norm": Norm.RMSNORM,
    }


def _llama(cfg: _Config, name: str) -> dict[str, Any]:
    fields = _common(cfg, name)
    bias = cfg.boolean("attention_bias", False)
    fields.update(qkv_bias=bias, linear_bias=cfg.boolean("mlp_bias", False))
    if bias and not fields["linear_bias"]:
        # Llama's attention_bias also biases o_proj; the MLP has its own flag. Both are off in Meta's releases.
        fields["linear_bias"] = True
    return fields


def _set_window(fields: dict[str, Any], window: int | None, layers: int) -> None:
    """A sliding ``window`` on ``layers`` of the layers, unless there is none (or it is as long as the context,
    which changes nothing)."""
    if window is not None and layers and window < fields["seq_len"]:
        fields.update(sliding_window=window, sliding_window_layers=layers)


def _mistral(cfg: _Config, name: str) -> dict[str, Any]:
    fields = _common(cfg, name)
    _set_window(fields, cfg.optional_integer("sliding_window"), fields["num_layers"])
    return fields


def _qwen_window(cfg: _Config, fields: dict[str, Any]) -> None:
    """Qwen2/Qwen3: with ``use_sliding_window`` the layers from ``max_window_layers`` on attend within
    ``sliding_window`` (off in the released checkpoints)."""
    if not cfg.boolean("use_sliding_window", False):
        return
    window = cfg.integer("sliding_window")
    first = cfg.integer("max_window_layers", fields["num_layers"], minimum=0)
    _set_window(fields, window, max(0, fields["num_layers"] - first))


def _mixtral(cfg: _Config, name: str) -> dict[str, Any]:
    fields = _mistral(cfg, name)
    experts = cfg.integer("num_local_experts", 8)
    fields["moe"] = MoeConfig(
        num_experts=experts,
        top_k=_top_k(cfg, experts, 2),
        expert_ffn_hidden_dim=fields["ffn_hidden_dim"],
    )
    return fields


def _qwen2(cfg: _Config, name: str) -> dict[str, Any]:
    fields = _common(cfg, name)
    _qwen_window(cfg, fields)
    fields["qkv_bias"] = True  # Qwen2Attention: q/k/v projections always carry a bias, o_proj none
    return fields


def _qwen3(cfg: _Config, name: str) -> dict[str, Any]:
    fields = _common(cfg, name)
    _qwen_window(cfg, fields)
    bias = cfg.boolean("attention_bias", False)
    fields.update(qkv_bias=bias, linear_bias=False, qk_norm=True)  # Qwen3Attention: q_norm, k_norm per head
    return fields


def _qwen3_moe(cfg: _Config, name: str) -> dict[str, Any]:
    fields = _qwen3(cfg, name)
    experts = cfg.integer("num_experts")
    interval = cfg.integer("decoder_sparse_step", 1)
    dense_only = cfg.int_list("mlp_only_layers")
    if dense_only != list(range(len(dense_only))):
        raise cfg.error("mlp_only_layers", dense_only, "only a leading run of dense layers [0, 1, ..] is supported")
    if interval != 1 and dense_only:
        raise cfg.error("decoder_sparse_step", interval, "1 when mlp_only_layers is set")
    fields["moe"] = MoeConfig(
        num_experts=experts,
        top_k=_top_k(cfg, experts, None),
        expert_ffn_hidden_dim=cfg.integer("moe_intermediate_size"),
        first_k_dense_layers=len(dense_only),
        moe_layer_interval=interval,
    )
    return fields


def _deepseek_v3(cfg: _Config, name: str) -> dict[str, Any]:
    fields = _common(cfg, name)
    heads = fields["num_heads"]
    fields["num_kv_heads"] = heads  # MLA: keys and values per head, decompressed from the latent
    fields["qkv_bias"] = cfg.boolean("attention_bias", False)
    q_lora_rank = cfg.optional_integer("q_lora_rank")
    mla = MlaConfig(
        q_lora_rank=q_lora_rank,
        kv_lora_rank=cfg.integer("kv_lora_rank"),
        qk_nope_head_dim=cfg.integer("qk_nope_head_dim"),
        qk_rope_head_dim=cfg.integer("qk_rope_head_dim"),
        v_head_dim=cfg.integer("v_head_dim"),
    )
    fields["mla"] = mla
    fields["head_dim"] = mla.qk_head_dim  # head_dim is not used by MLA; keep it meaningful
    experts = cfg.integer("n_routed_experts")
    first_dense = cfg.integer("first_k_dense_replace", 0, minimum=0)
    if first_dense >= fields["num_layers"]:
        raise cfg.error("first_k_dense_replace", first_dense, f"must be < num_hidden_layers={fields['num_layers']}")
    fields["moe"] = MoeConfig(
        num_experts=experts,
        top_k=_top_k(cfg, experts, None),
        expert_ffn_hidden_dim=cfg.integer("moe_intermediate_size"),
        num_shared_experts=cfg.integer("n_shared_experts", 0, minimum=0),
        first_k_dense_layers=first_dense,
        moe_layer_interval=cfg.integer("moe_layer_freq", 1),
        router=Router.SIGMOID_BIAS if cfg.text("topk_method", "noaux_tc") == "noaux_tc" else Router.SOFTMAX,
    )
    return fields


def _gpt_oss(cfg: _Config, name: str) -> dict[str, Any]:
    """gpt-oss: every layer a MoE of ``num_local_experts`` (top ``num_experts_per_tok``, or the original
    ``experts_per_token``), biased projections, and ``sliding_window`` on the layers ``layer_types`` marks
    ``sliding_attention`` (every other one in the released models)."""
    fields = _common(cfg, name)
    bias = cfg.boolean("attention_bias", True)
    fields.update(qkv_bias=bias, linear_bias=bias)
    experts = cfg.integer("num_local_experts")
    top_k = cfg.integer("num_experts_per_tok", cfg.integer("experts_per_token", 4))
    if top_k > experts:
        raise cfg.error("num_experts_per_tok", top_k, f"must be <= the number of experts ({experts})")
    fields["moe"] = MoeConfig(num_experts=experts, top_k=top_k, expert_ffn_hidden_dim=fields["ffn_hidden_dim"])
    windowed = _layer_kinds(cfg, fields["num_layers"])
    _set_window(
        fields, cfg.optional_integer("sliding_window"), fields["num_layers"] // 2 if windowed is None else windowed
    )
    return fields


def _layer_kinds(cfg: _Config, layers: int) -> int | None:
    """How many layers ``layer_types`` marks ``sliding_attention`` (None when the config has no such list)."""
    kinds = cfg.data.get("layer_types")
    if kinds is None:
        return None
    if (
        not isinstance(kinds, list)
        or len(kinds) != layers
        or not all(kind in ("sliding_attention", "full_attention") for kind in kinds)
    ):
        raise cfg.error("layer_types", kinds, "one of sliding_attention / full_attention per layer")
    return int(sum(kind == "sliding_attention" for kind in kinds))


def _gemma(cfg: _Config, name: str, local_per_global: int) -> dict[str, Any]:
    """Gemma 2 / Gemma 3 text models: GeGLU (``hidden_activation``), embeddings tied by default, and a sliding
    window on the local layers: ``layer_types`` where given, else every layer but each ``local_per_global + 1``-th
    (Gemma 2 alternates, 1 local per global; Gemma 3 ``sliding_window_pattern`` 6, five local per global)."""
    if "hidden_act" not in cfg.data and "hidden_activation" in cfg.data:
        cfg = _Config({**cfg.data, "hidden_act": cfg.data["hidden_activation"]}, cfg.source)
    fields = _common(cfg, name)
    fields["tied_embeddings"] = cfg.boolean("tie_word_embeddings", True)
    fields["qkv_bias"] = cfg.boolean("attention_bias", False)
    layers = fields["num_layers"]
    windowed = _layer_kinds(cfg, layers)
    if windowed is None:
        pattern = cfg.integer("sliding_window_pattern", local_per_global + 1)
        windowed = layers - layers // pattern
    _set_window(fields, cfg.optional_integer("sliding_window"), windowed)
    return fields


def _gemma2(cfg: _Config, name: str) -> dict[str, Any]:
    return _gemma(cfg, name, 1)


def _gemma3(cfg: _Config, name: str) -> dict[str, Any]:
    fields = _gemma(cfg, name, 5)
    fields["qk_norm"] = True  # Gemma3Attention: q_norm, k_norm
    return fields


def _top_k(cfg: _Config, experts: int, default: int | None) -> int:
    top_k = cfg.integer("num_experts_per_tok", default)
    if top_k > experts:
        raise cfg.error("num_experts_per_tok", top_k, f"must be <= the number of experts ({experts})")
    return top_k


_BUILDERS: dict[str, Callable[[_Config, str], dict[str, Any]]] = {
    "llama": _llama,
    "mistral": _mistral,
    "mixtral": _mixtral,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "qwen3_moe": _qwen3_moe,
    "deepseek_v3": _deepseek_v3,
    "gpt_oss": _gpt_oss,
    "gemma2": _gemma2,
    "gemma3_text": _gemma3,
}
SUPPORTED_MODEL_TYPES = tuple(_BUILDERS)


def shape_from_hf_config(data: Mapping[str, Any], name: str, *, source: str | None = None) -> TransformerShape:
    """The shape described by a parsed ``config.json`` mapping; ``source`` (default ``name``) labels errors."""
    label = source or name
    if not isinstance(data, Mapping):
        raise InputError(f"{label}: expected a JSON object, got {type(data).__name__}")
    cfg = _Config(data, label)
    model_type = cfg.text("model_type", "")
    if model_type not in _BUILDERS:
        raise InputError(
            f"{label}: model_type={quote(model_type)} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    try:
        return TransformerShape(**_BUILDERS[model_type](cfg, name))
    except InputError as exc:  # cross-field checks of the shape (heads vs KV heads, top_k vs experts ...)
        if str(exc).startswith(f"{label}: "):
            raise
        raise InputError(f"{label}: {exc}") from None


def load_hf_config(path: Path | str) -> TransformerShape:
    """Read a ``config.json`` (or a directory holding one, or any ``*.json`` config file)."""
    target = Path(path)
    if target.is_dir():
        target = target / CONFIG_FILE
    try:
        if target.stat().st_size > MAX_CONFIG_BYTES:
            raise InputError(f"{target}: file too large for a config.json ({target.stat().st_size} bytes)")
        text = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"{target}: cannot read file ({reason})") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, oversized integer literals, deep nesting
        raise InputError(f"{target}: not valid JSON ({str(exc).splitlines()[0][:120]})") from None
    # Hub snapshots are folders holding config.json: name the model after the folder, else after the file.
    name = target.parent.name if target.name == CONFIG_FILE and target.parent.name else target.stem
    return shape_from_hf_config(data, name, source=str(target))


def _reject_constant(token: str) -> Any:
    """JSON has no NaN or Infinity; Python's parser accepts them unless told otherwise."""
    raise ValueError(f"{token} is not a JSON number")
