"""Named models: the cited catalog (``catalog/models.yaml``), Hugging Face configs, and validation blocks.

``models.yaml`` is read through the strict catalog reader: unknown keys and duplicate ids are rejected and
every number must be covered by a source id from ``sources*.yaml`` (model citations live in
``sources-models.yaml``). Each entry may list ``aliases``, e.g. the ``model.name`` strings of the validation
cases, so a case's model block resolves to the cited catalog shape.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rainier.catalog.loader import CatalogError, Fields, Registry, catalog_file, load_entries
from rainier.errors import InputError, UnknownNameError, field_error, quote
from rainier.workload.hf_import import CONFIG_FILE, load_hf_config
from rainier.workload.params import count_params
from rainier.workload.shape import (
    MlaConfig,
    MlpActivation,
    MoeConfig,
    Norm,
    PositionEmbedding,
    Router,
    TransformerShape,
)

MODELS_FILE = "models.yaml"
BILLION = 1e9
# Width of a SwiGLU MLP with the parameters of a 4h plain MLP (Shazeer 2020; Llama rounds it to 256).
SWIGLU_FFN_RATIO = 8 / 3
SWIGLU_FFN_MULTIPLE = 256
PLAIN_FFN_RATIO = 4  # GPT: ffn = 4h (Vaswani et al. 2017; Brown et al. 2020 Table 2.1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelEntry:
    """A catalog model: its shape, display title, aliases, published sizes and citations."""

    id: str
    title: str
    shape: TransformerShape
    aliases: tuple[str, ...]
    published_params: float | None
    published_active_params: float | None
    sources: Mapping[str, str]
    notes: str


_ABSENT = -1  # sentinel for an absent optional integer (present values are checked >= 0)


def _optional_int(fields: Fields, key: str, *, minimum: int = 1) -> int | None:
    """An integer field that may be absent or null (consumed either way, so ``finish`` does not flag it)."""
    value = fields.integer(key, required=False, default=_ABSENT, minimum=minimum)
    return None if value == _ABSENT else value


def _enum_choice(fields: Fields, key: str, kind: type[Any], default: str = "") -> Any:
    allowed = tuple(m.value for m in kind)
    return kind(fields.choice(key, allowed, required=not default, default=default))


def _build_entry(fields: Fields) -> ModelEntry:
    model_id = fields.string("id").strip().lower()
    hidden = fields.integer("hidden_dim")
    heads = fields.integer("num_heads")
    head_dim = _optional_int(fields, "head_dim")
    if head_dim is None:
        if hidden % heads:
            raise fields.error(f"num_heads={heads} must divide hidden_dim={hidden} when head_dim is absent")
        head_dim = hidden // heads
    kv_heads = _optional_int(fields, "num_kv_heads") or heads
    try:
        mla = _mla(fields.sub("mla", required=False))
        moe = _moe(fields.sub("moe", required=False))
        shape = TransformerShape(
            name=model_id,
            num_layers=fields.integer("num_layers"),
            hidden_dim=hidden,
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            ffn_hidden_dim=fields.integer("ffn_hidden_dim"),
            vocab_size=fields.integer("vocab_size"),
            seq_len=fields.integer("seq_len"),
            mlp_activation=_enum_choice(fields, "mlp_activation", MlpActivation),
            tied_embeddings=fields.boolean("tied_embeddings"),
            position_embedding=_enum_choice(fields, "position_embedding", PositionEmbedding),
            norm=_enum_choice(fields, "norm", Norm),
            qkv_bias=fields.boolean("qkv_bias", required=False),
            linear_bias=fields.boolean("linear_bias", required=False),
            qk_norm=fields.boolean("qk_norm", required=False),
            mla=mla,
            moe=moe,
            sliding_window=_optional_int(fields, "sliding_window"),
            sliding_window_layers=_optional_int(fields, "sliding_window_layers") or 0,
        )
    except CatalogError:
        raise
    except InputError as exc:
        raise fields.error(str(exc)) from None
    published = fields.optional_number("published_params_b")
    active = fields.optional_number("published_active_params_b")
    aliases = tuple(str(a).strip().lower() for a in fields.items("aliases", required=False))
    if not all(aliases):
        raise fields.error("aliases must be non-empty names")
    return ModelEntry(
        id=model_id,
        title=fields.string("title"),
        shape=shape,
        aliases=aliases,
        published_params=published * BILLION if published is not None else None,
        published_active_params=active * BILLION if active is not None else None,
        sources=dict(fields.source_map),
        notes=fields.string("notes", required=False),
    )


def _mla(fields: Fields | None) -> MlaConfig | None:
    if fields is None:
        return None
    config = MlaConfig(
        q_lora_rank=_optional_int(fields, "q_lora_rank"),
        kv_lora_rank=fields.integer("kv_lora_rank"),
        qk_nope_head_dim=fields.integer("qk_nope_head_dim"),
        qk_rope_head_dim=fields.integer("qk_rope_head_dim"),
        v_head_dim=fields.integer("v_head_dim"),
    )
    fields.finish()
    return config


def _moe(fields: Fields | None) -> MoeConfig | None:
    if fields is None:
        return None
    config = MoeConfig(
        num_experts=fields.integer("num_experts"),
        top_k=fields.integer("top_k"),
        expert_ffn_hidden_dim=fields.integer("expert_ffn_hidden_dim"),
        num_shared_experts=fields.integer("num_shared_experts", required=False, default=0, minimum=0),
        shared_expert_ffn_hidden_dim=_optional_int(fields, "shared_expert_ffn_hidden_dim"),
        first_k_dense_layers=fields.integer("first_k_dense_layers", required=False, default=0, minimum=0),
        moe_layer_interval=fields.integer("moe_layer_interval", required=False, default=1),
        router=_enum_choice(fields, "router", Router, default=Router.SOFTMAX.value),
    )
    fields.finish()
    return config


def load_model_file(path: Path | str) -> dict[str, ModelEntry]:
    """Read a models file (``{models: [entry, ...]}``, the format of ``catalog/models.yaml``) strictly.

    Unknown keys, duplicate ids, unsourced numbers and aliases that clash with another id or alias are
    a :class:`CatalogError` naming the file and the entry.
    """
    entries = load_entries(Path(path), "models", _build_entry, id_of=lambda e: e.id)
    seen: dict[str, str] = {}
    for entry in entries.values():
        for alias in entry.aliases:
            owner = seen.get(alias) or (alias if alias in entries and alias != entry.id else None)
            if owner:
                raise CatalogError(f"{path}: alias {alias!r} of {entry.id!r} is already used by {owner!r}")
            seen[alias] = entry.id
    return entries


@functools.cache
def model_entries() -> Registry[ModelEntry]:
    """Every catalog model with its metadata, by id (loaded once)."""
    return Registry("model", load_model_file(catalog_file(MODELS_FILE)))


@functools.cache
def _alias_index() -> dict[str, str]:
    return {alias: entry.id for entry in model_entries() for alias in entry.aliases}


@functools.cache
def models() -> Registry[TransformerShape]:
    """Every catalog model's shape, by id."""
    return Registry("model", {entry.id: entry.shape for entry in model_entries()})


# A Hugging Face repository id's organisation ("meta-llama/"), and the tuning suffixes of its model names, which
# name the same network: "meta-llama/Llama-3.1-8B-Instruct" is the catalog's llama-3.1-8b.
_HF_ORG = re.compile(r"^[\w.-]+/")
_TUNING_SUFFIX = re.compile(r"(?:-(?:instruct|chat|hf|base|it))+$")


def _catalog_id(name: str) -> str | None:
    """The catalog id ``name`` is (case-insensitive): an id or alias, as written or without a Hugging Face
    organisation, a leading ``meta-`` or a tuning suffix (``-Instruct``, ``-chat``, ``-hf``, ``-base``, ``-it``)."""
    key = name.strip().lower()
    bare = _HF_ORG.sub("", key)
    for candidate in dict.fromkeys(
        (key, bare, _TUNING_SUFFIX.sub("", bare), _TUNING_SUFFIX.sub("", bare).removeprefix("meta-"))
    ):
        if candidate in model_entries():
            return candidate
        if candidate in _alias_index():
            return _alias_index()[candidate]
    return None


def get_entry(name: str) -> ModelEntry:
    """A catalog entry by id or alias (case-insensitive, also as a Hugging Face repository id: ``_catalog_id``),
    else :class:`UnknownNameError` with suggestions."""
    if not isinstance(name, str):
        raise InputError(f"model name must be text, got {type(name).__name__}")
    found = _catalog_id(name)
    if found is None:
        raise UnknownNameError("model", name, model_entries().ids())
    return model_entries().get(found)


def has_model(name: str) -> bool:
    """Whether the catalog holds ``name`` (``_catalog_id``)."""
    return _catalog_id(name) is not None


def get_model(name: str) -> TransformerShape:
    """A catalog model's shape by id or alias."""
    return get_entry(name).shape


# Set by catalog_names_only(): model names are catalog names, never paths (the web app reads no server files).
_NAMES_ONLY: ContextVar[bool] = ContextVar("rainier_model_names_only", default=False)


@contextmanager
def catalog_names_only() -> Iterator[None]:
    """Within this block (this thread or task), :func:`resolve_model` reads no file: a path is an unknown name.

    The web app runs fleet and serving questions in it, so that a model named ``/etc/...`` in a request (or a
    draft model of speculative decoding) never makes the server open one of its own files.
    """
    token = _NAMES_ONLY.set(True)
    try:
        yield
    finally:
        _NAMES_ONLY.reset(token)


def resolve_model(name_or_path: str | Path) -> TransformerShape:
    """A shape from a ``config.json`` path (or a directory holding one), else from the catalog by name."""
    text = str(name_or_path).strip()
    path = Path(text).expanduser()
    try:
        is_file, is_dir = (False, False) if _NAMES_ONLY.get() else (path.is_file(), path.is_dir())
    except (OSError, ValueError):  # e.g. an embedded NUL byte or an over-long name
        is_file = is_dir = False
    if is_file:
        return load_hf_config(path)
    if is_dir:
        if (path / CONFIG_FILE).is_file():
            return load_hf_config(path)
        raise InputError(f"{path}: directory has no {CONFIG_FILE}")
    lowered = text.lower()
    if lowered in model_entries() or lowered in _alias_index():
        return get_model(text)
    if lowered.endswith(".json") or text.startswith((".", "/", "~")):
        if _NAMES_ONLY.get():
            raise InputError(f"unknown model {quote(text)}: a catalog model name (files are not read here)")
        raise InputError(f"{text}: no such file (expected a config.json or a catalog model name)")
    return get_model(text)


# ----------------------------------------------------------------------------------------------------------------
# Validation cases (shared/validation/*.yaml, model: block)
# ----------------------------------------------------------------------------------------------------------------

_VALIDATION_INTS = (
    "layers",
    "hidden",
    "ffn_hidden",
    "heads",
    "kv_heads",
    "head_dim",
    "vocab",
    "seq_len",
    "num_experts",
    "top_k",
    "expert_ffn_hidden",
)


def shape_from_validation_model(block: Mapping[str, Any], *, source: str = "validation case") -> TransformerShape:
    """The shape of a validation case's ``model:`` block (fields in shared/validation/README.md).

    When ``name`` is a catalog id or alias (every public case's is), the catalog entry supplies what the block
    leaves out (null ``ffn_hidden`` or ``activation``, norm kind, biases, tied embeddings) and the block's own
    numbers override it, ``seq_len`` included. Otherwise the shape is built from the block with family
    defaults keyed on ``activation``: gelu (or null) -> Megatron GPT (learned positions, LayerNorm, biases,
    tied embeddings, ffn = 4h); swiglu/geglu -> Llama (RoPE, RMSNorm, no biases, untied, ffn = 8h/3 rounded
    up to 256 when absent); relu -> Nemotron (RoPE, LayerNorm, no biases, untied, ffn = 4h). Missing
    required sizes raise a one-line :class:`InputError`.
    """
    fields = Fields(block, path=source, where="model", sources=None)
    name = fields.string("name").strip()
    arch = fields.choice("arch", ("dense", "moe"), required=False, default="dense")
    values = {key: _optional_int(fields, key) for key in _VALIDATION_INTS}
    shared = _optional_int(fields, "shared_experts", minimum=0)
    activation_text = fields.choice("activation", tuple(m.value for m in MlpActivation), required=False)
    params_b = fields.optional_number("params_b", sourced=False)
    mla = _mla(fields.sub("mla", required=False))
    first_dense = _optional_int(fields, "first_k_dense_layers", minimum=0)
    moe_interval = _optional_int(fields, "moe_layer_freq")
    document_len = _optional_int(fields, "document_len")
    window = _optional_int(fields, "sliding_window")
    window_fraction = fields.optional_number("sliding_window_fraction", sourced=False)
    fields.finish()
    activation = MlpActivation(activation_text) if activation_text else None
    base = get_entry(name).shape if name.lower() in model_entries() or name.lower() in _alias_index() else None
    try:
        shape = _override(base, values, activation) if base is not None else _from_block(name, values, activation)
        if mla is not None:
            shape = replace(shape, mla=mla, num_kv_heads=shape.num_heads)
        if arch == "moe" or values["num_experts"] is not None:
            moe = _validation_moe(shape, values, shared)
            if first_dense is not None:
                moe = replace(moe, first_k_dense_layers=first_dense)
            if moe_interval is not None:
                moe = replace(moe, moe_layer_interval=moe_interval)
            shape = replace(shape, moe=moe)
        if window_fraction is not None and not 0 < window_fraction <= 1:
            raise field_error("sliding_window_fraction", window_fraction, "a share of the layers in (0, 1]")
        if window_fraction is not None and window is None:
            raise field_error("sliding_window_fraction", window_fraction, "only with a sliding_window")
        if base is None and params_b:
            shape = _tied_if_published(shape, params_b * 1e9)
        if window is not None:
            share = 1.0 if window_fraction is None else window_fraction
            shape = replace(shape, sliding_window=window, sliding_window_layers=max(1, round(share * shape.num_layers)))
        return shape.with_documents(document_len) if document_len is not None else shape
    except CatalogError:
        raise
    except InputError as exc:
        raise InputError(f"{source}: model {name!r}: {exc}") from None


def _override(
    base: TransformerShape, values: Mapping[str, int | None], activation: MlpActivation | None
) -> TransformerShape:
    mapping = {
        "layers": "num_layers",
        "hidden": "hidden_dim",
        "ffn_hidden": "ffn_hidden_dim",
        "heads": "num_heads",
        "kv_heads": "num_kv_heads",
        "head_dim": "head_dim",
        "vocab": "vocab_size",
        "seq_len": "seq_len",
    }
    changes: dict[str, Any] = {field: values[key] for key, field in mapping.items() if values[key] is not None}
    if base.mla is not None:  # MLA head widths live in MlaConfig; the block's head_dim/kv_heads describe the same
        changes.pop("head_dim", None)
        changes.pop("num_kv_heads", None)
    if activation is not None:
        changes["mlp_activation"] = activation
    return replace(base, **changes)


def _from_block(name: str, values: Mapping[str, int | None], activation: MlpActivation | None) -> TransformerShape:
    missing = [key for key in ("layers", "hidden", "heads", "vocab", "seq_len") if values[key] is None]
    if missing:
        raise InputError(f"missing {', '.join(missing)} and no catalog model of that name")
    hidden, heads = int(values["hidden"] or 0), int(values["heads"] or 0)
    head_dim = values["head_dim"]
    if head_dim is None:
        if hidden % heads:
            raise InputError(f"heads={heads} must divide hidden={hidden} when head_dim is null")
        head_dim = hidden // heads
    act = activation or MlpActivation.GELU
    ffn = values["ffn_hidden"]
    if ffn is None:
        if act.gated:
            ffn = -(-int(SWIGLU_FFN_RATIO * hidden) // SWIGLU_FFN_MULTIPLE) * SWIGLU_FFN_MULTIPLE
        else:
            ffn = PLAIN_FFN_RATIO * hidden
    gpt_style = act is MlpActivation.GELU
    return TransformerShape(
        name=name,
        num_layers=int(values["layers"] or 0),
        hidden_dim=hidden,
        num_heads=heads,
        num_kv_heads=values["kv_heads"] or heads,
        head_dim=head_dim,
        ffn_hidden_dim=ffn,
        vocab_size=int(values["vocab"] or 0),
        seq_len=int(values["seq_len"] or 0),
        mlp_activation=act,
        tied_embeddings=gpt_style,
        position_embedding=PositionEmbedding.LEARNED if gpt_style else PositionEmbedding.ROPE,
        norm=Norm.RMSNORM if act.gated else Norm.LAYERNORM,
        qkv_bias=gpt_style,
        linear_bias=gpt_style,
    )


# A published size this far below the untied count, where one shared vocabulary matrix explains the gap, says the
# embeddings are tied (a nominal size is rounded by a few percent at most; the head of a large model is less).
TIED_SIZE_GAP = 0.03


def _tied_if_published(shape: TransformerShape, published: float) -> TransformerShape:
    """A block names no embedding tying, but its published size tells: tied when the untied count is more than
    ``TIED_SIZE_GAP`` above it and the count with one shared vocabulary matrix is within that of it (Gemma's
    output head is its input embedding)."""
    if shape.tied_embeddings:
        return shape
    untied = count_params(shape).total
    tied = replace(shape, tied_embeddings=True)
    if untied > published * (1 + TIED_SIZE_GAP) and abs(count_params(tied).total / published - 1) < TIED_SIZE_GAP:
        return tied
    return shape


def _validation_moe(shape: TransformerShape, values: Mapping[str, int | None], shared: int | None) -> MoeConfig:
    base = shape.moe
    experts = values["num_experts"] or (base.num_experts if base else None)
    top_k = values["top_k"] or (base.top_k if base else None)
    if experts is None or top_k is None:
        raise InputError("arch=moe needs num_experts and top_k")
    expert_ffn = values["expert_ffn_hidden"] or (base.expert_ffn_hidden_dim if base else shape.ffn_hidden_dim)
    if base is not None:
        return replace(
            base,
            num_experts=experts,
            top_k=top_k,
            expert_ffn_hidden_dim=expert_ffn,
            num_shared_experts=base.num_shared_experts if shared is None else shared,
        )
    return MoeConfig(num_experts=experts, top_k=top_k, expert_ffn_hidden_dim=expert_ffn, num_shared_experts=shared or 0)
