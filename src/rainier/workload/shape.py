"""The shape of a decoder-only transformer: every dimension a cost model needs, validated on construction.

A :class:`TransformerShape` is the workload input of every estimate (STYLE.md point 4). It says what the model
*is* (layers, widths, heads, MLP kind, embeddings, norms, biases, optional multi-head latent attention and
mixture of experts), not how it is run: batch, parallelism and precision belong to the plan. ``seq_len`` is
the model's native context or default training length; estimates take the length actually run.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace
from typing import Any

from rainier.errors import field_error

# Largest accepted dimension or count: the int32 limit that frameworks use for tensor shapes. It keeps every
# derived product (FLOPs, bytes) finite as a float and rejects typos such as a 10^12-token context.
MAX_INT = 2**31 - 1


class MlpActivation(enum.StrEnum):
    """The MLP's non-linearity. Gated variants (SwiGLU, GeGLU) use three weight matrices, plain ones two."""

    SWIGLU = "swiglu"
    GEGLU = "geglu"
    GELU = "gelu"
    RELU = "relu"  # also squared ReLU (Nemotron): same matrices, same FLOPs

    @property
    def gated(self) -> bool:
        """True for gated linear units (Shazeer 2020, "GLU Variants Improve Transformer")."""
        return self in (MlpActivation.SWIGLU, MlpActivation.GEGLU)

    @property
    def num_matrices(self) -> int:
        """Weight matrices per MLP: gate, up, down for gated units; up, down otherwise."""
        return 3 if self.gated else 2


class PositionEmbedding(enum.StrEnum):
    """Rotary embeddings have no parameters; learned absolute positions (GPT-2/3, Megatron GPT) are a table."""

    ROPE = "rope"
    LEARNED = "learned"


class Norm(enum.StrEnum):
    """Layer normalisation kind: LayerNorm has a weight and a bias per channel, RMSNorm only a weight."""

    LAYERNORM = "layernorm"
    RMSNORM = "rmsnorm"

    def params(self, dim: int) -> int:
        """Parameters of one norm over ``dim`` channels."""
        return 2 * dim if self is Norm.LAYERNORM else dim


class AttentionKind(enum.StrEnum):
    """Derived from the head counts: multi-head, grouped-query, multi-query, or multi-head latent attention."""

    MHA = "mha"
    GQA = "gqa"
    MQA = "mqa"
    MLA = "mla"


class Router(enum.StrEnum):
    """MoE gate: softmax top-k (Mixtral, Qwen MoE) or sigmoid with a per-expert bias (DeepSeek-V3, sec. 2.1.2)."""

    SOFTMAX = "softmax"
    SIGMOID_BIAS = "sigmoid_bias"


def _check_int(field: str, value: Any, *, minimum: int = 1) -> None:
    """A plain ``int`` (not bool) in ``[minimum, MAX_INT]``, else a one-line ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise field_error(field, value, "expected an integer")
    if not minimum <= value <= MAX_INT:
        raise field_error(field, value, f"must be between {minimum} and {MAX_INT}")


def _check_enum(field: str, value: Any, kind: type[enum.StrEnum]) -> None:
    if not isinstance(value, kind):
        raise field_error(field, value, f"allowed: {', '.join(m.value for m in kind)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class MlaConfig:
    """Multi-head latent attention (DeepSeek-V2 technical report, sec. 2.1): K/V are cached as a low-rank latent.

    ``q_lora_rank`` is ``None`` when queries are not compressed (DeepSeek-V2-Lite). Each head's query/key is
    ``qk_nope_head_dim`` plain channels plus ``qk_rope_head_dim`` rotary channels; values are ``v_head_dim``.
    """

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    def __post_init__(self) -> None:
        if self.q_lora_rank is not None:
            _check_int("mla.q_lora_rank", self.q_lora_rank)
        _check_int("mla.kv_lora_rank", self.kv_lora_rank)
        _check_int("mla.qk_nope_head_dim", self.qk_nope_head_dim, minimum=0)
        _check_int("mla.qk_rope_head_dim", self.qk_rope_head_dim, minimum=0)
        _check_int("mla.v_head_dim", self.v_head_dim)
        if self.qk_nope_head_dim + self.qk_rope_head_dim < 1:
            raise field_error("mla.qk_nope_head_dim", self.qk_nope_head_dim, "nope + rope head dims must be >= 1")

    @property
    def qk_head_dim(self) -> int:
        """Query/key width per head (plain + rotary channels)."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def to_dict(self) -> dict[str, Any]:
        return {
            "q_lora_rank": self.q_lora_rank,
            "kv_lora_rank": self.kv_lora_rank,
            "qk_nope_head_dim": self.qk_nope_head_dim,
            "qk_rope_head_dim": self.qk_rope_head_dim,
            "v_head_dim": self.v_head_dim,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class MoeConfig:
    """Mixture of experts replacing the MLP of some layers.

    Each token is routed to ``top_k`` of ``num_experts`` experts and also passes through ``num_shared_experts``
    always-on experts (DeepSeekMoE). The first ``first_k_dense_layers`` layers keep a dense MLP; after them a
    layer ``i`` is MoE when ``(i - first_k_dense_layers) % moe_layer_interval == 0`` (DeepSeek's
    ``moe_layer_freq`` convention; 1 = every layer).
    """

    num_experts: int
    top_k: int
    expert_ffn_hidden_dim: int
    num_shared_experts: int = 0
    shared_expert_ffn_hidden_dim: int | None = None
    first_k_dense_layers: int = 0
    moe_layer_interval: int = 1
    router: Router = Router.SOFTMAX

    def __post_init__(self) -> None:
        _check_int("moe.num_experts", self.num_experts)
        _check_int("moe.top_k", self.top_k)
        if self.top_k > self.num_experts:
            raise field_error("moe.top_k", self.top_k, f"must be <= num_experts={self.num_experts}")
        _check_int("moe.expert_ffn_hidden_dim", self.expert_ffn_hidden_dim)
        _check_int("moe.num_shared_experts", self.num_shared_experts, minimum=0)
        if self.shared_expert_ffn_hidden_dim is not None:
            _check_int("moe.shared_expert_ffn_hidden_dim", self.shared_expert_ffn_hidden_dim)
        _check_int("moe.first_k_dense_layers", self.first_k_dense_layers, minimum=0)
        _check_int("moe.moe_layer_interval", self.moe_layer_interval)
        _check_enum("moe.router", self.router, Router)

    @property
    def shared_ffn_dim(self) -> int:
        """Hidden width of one shared expert (defaults to the routed experts' width)."""
        return self.shared_expert_ffn_hidden_dim or self.expert_ffn_hidden_dim

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_experts": self.num_experts,
            "top_k": self.top_k,
            "expert_ffn_hidden_dim": self.expert_ffn_hidden_dim,
            "num_shared_experts": self.num_shared_experts,
            "shared_expert_ffn_hidden_dim": self.shared_ffn_dim,
            "first_k_dense_layers": self.first_k_dense_layers,
            "moe_layer_interval": self.moe_layer_interval,
            "router": self.router.value,
        }


def window_keys(start: float, length: float, window: float) -> float:
    """Keys that ``length`` consecutive queries after ``start`` cached tokens attend to under a causal sliding
    window: the integral of ``min(position, window)`` over the queries' positions."""
    end = start + length
    if end <= window:
        return (end * end - start * start) / 2
    if start >= window:
        return length * window
    return (window * window - start * start) / 2 + (end - window) * window


@dataclass(frozen=True, slots=True, kw_only=True)
class TransformerShape:
    """A decoder-only transformer's architecture, independent of how it is run.

    Widths: ``hidden_dim`` (model width h), ``head_dim`` per attention head, ``ffn_hidden_dim`` the dense MLP's
    inner width. For MoE models ``ffn_hidden_dim`` is the width of the dense layers (DeepSeek's first layers);
    the experts' width is in :class:`MoeConfig`. ``qkv_bias`` adds biases to the Q/K/V projections (GPT,
    Qwen2); ``linear_bias`` to the attention output and MLP projections (GPT/Megatron). ``qk_norm`` is the
    per-head RMSNorm on queries and keys (Qwen3). ``seq_len`` is the native context or default training length.
    ``sliding_window`` (tokens) is the local attention window of ``sliding_window_layers`` of the layers (all of
    them when only the window is given: Mistral 7B v0.1; every other layer: gpt-oss, Gemma 2): a query in such a
    layer attends to the last ``sliding_window`` keys only (Beltagy et al. 2020, "Longformer"; Jiang et al. 2023,
    "Mistral 7B" sec. 2), so it reads at most that many cached keys and values. ``document_len`` describes the
    data rather than the model: with sequence packing (several documents
    concatenated into one ``seq_len`` sequence, each attending only to itself through per-document masks, as in
    NeMo's packed SFT and FlashAttention's variable-length kernels) every query attends within its document, so
    the attention core costs ``document_len`` keys per query instead of ``seq_len``. ``None``: one document per
    sequence. It is the length-weighted mean ``E[L^2]/E[L]`` of the documents, which is what the causal
    attention work ``sum L^2 / 2`` divided by the tokens ``sum L`` depends on.
    """

    name: str
    num_layers: int
    hidden_dim: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_hidden_dim: int
    vocab_size: int
    seq_len: int
    mlp_activation: MlpActivation
    tied_embeddings: bool
    position_embedding: PositionEmbedding
    norm: Norm
    qkv_bias: bool = False
    linear_bias: bool = False
    qk_norm: bool = False
    mla: MlaConfig | None = None
    moe: MoeConfig | None = None
    document_len: int | None = None
    sliding_window: int | None = None
    sliding_window_layers: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise field_error("name", self.name, "a non-empty name")
        for field in (
            "num_layers",
            "hidden_dim",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "ffn_hidden_dim",
            "vocab_size",
            "seq_len",
        ):
            _check_int(field, getattr(self, field))
        if self.document_len is not None:
            _check_int("document_len", self.document_len)
        if self.sliding_window is None:
            if self.sliding_window_layers != 0:
                raise field_error("sliding_window_layers", self.sliding_window_layers, "0 without a sliding_window")
        else:
            _check_int("sliding_window", self.sliding_window)
            if self.sliding_window_layers == 0:
                object.__setattr__(self, "sliding_window_layers", self.num_layers)
            layers = self.sliding_window_layers
            if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= self.num_layers:
                raise field_error(
                    "sliding_window_layers",
                    layers,
                    f"the layers with a sliding window, 1 to num_layers={self.num_layers}",
                )
        if self.num_kv_heads > self.num_heads or self.num_heads % self.num_kv_heads:
            raise field_error(
                "num_kv_heads",
                self.num_kv_heads,
                f"must divide num_heads={self.num_heads} (one query group per KV head)",
            )
        _check_enum("mlp_activation", self.mlp_activation, MlpActivation)
        _check_enum("position_embedding", self.position_embedding, PositionEmbedding)
        _check_enum("norm", self.norm, Norm)
        for flag in ("tied_embeddings", "qkv_bias", "linear_bias", "qk_norm"):
            if not isinstance(getattr(self, flag), bool):
                raise field_error(flag, getattr(self, flag), "expected true or false")
        if self.mla is not None:
            if not isinstance(self.mla, MlaConfig):
                raise field_error("mla", self.mla, "an MlaConfig or None")
            if self.num_kv_heads != self.num_heads:
                raise field_error(
                    "num_kv_heads",
                    self.num_kv_heads,
                    f"must equal num_heads={self.num_heads} with MLA (keys/values per head)",
                )
        if self.moe is not None:
            if not isinstance(self.moe, MoeConfig):
                raise field_error("moe", self.moe, "a MoeConfig or None")
            if self.moe.first_k_dense_layers >= self.num_layers:
                raise field_error(
                    "moe.first_k_dense_layers",
                    self.moe.first_k_dense_layers,
                    f"must be < num_layers={self.num_layers} (at least one MoE layer)",
                )

    # -- derived quantities (computed here, once: STYLE.md point 10) ---------------------------------------------
    @property
    def attention_kind(self) -> AttentionKind:
        """MLA when latent attention is configured, else MHA / GQA / MQA from the KV head count."""
        if self.mla is not None:
            return AttentionKind.MLA
        if self.num_kv_heads == self.num_heads:
            return AttentionKind.MHA
        if self.num_kv_heads == 1:
            return AttentionKind.MQA
        return AttentionKind.GQA

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def qk_head_dim(self) -> int:
        """Query/key width per head (MLA: plain + rotary channels)."""
        return self.mla.qk_head_dim if self.mla is not None else self.head_dim

    @property
    def v_head_dim(self) -> int:
        """Value width per head."""
        return self.mla.v_head_dim if self.mla is not None else self.head_dim

    @property
    def query_groups(self) -> int:
        """Query heads per KV head (1 for MHA and MLA)."""
        return self.num_heads // self.num_kv_heads

    def is_moe_layer(self, index: int) -> bool:
        """Whether layer ``index`` (0-based) has experts instead of a dense MLP."""
        if self.moe is None:
            return False
        offset = index - self.moe.first_k_dense_layers
        return offset >= 0 and offset % self.moe.moe_layer_interval == 0

    @property
    def num_moe_layers(self) -> int:
        if self.moe is None:
            return 0
        remaining = self.num_layers - self.moe.first_k_dense_layers
        return -(-remaining // self.moe.moe_layer_interval)

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    def with_seq_len(self, seq_len: int) -> TransformerShape:
        """The same model at another sequence length (validated like any other field)."""
        return replace(self, seq_len=seq_len)

    def with_documents(self, document_len: int | None) -> TransformerShape:
        """The same model trained on packed documents of ``document_len`` tokens (None: unpacked)."""
        return replace(self, document_len=document_len)

    @property
    def sliding_window_share(self) -> float:
        """The share of the layers that attend within ``sliding_window`` (0 without one)."""
        return self.sliding_window_layers / self.num_layers

    @property
    def attention_len(self) -> int:
        """Keys a query can attend to at most: the packed document's length, else the sequence's."""
        return self.seq_len if self.document_len is None else min(self.document_len, self.seq_len)

    def causal_keys(self, seq_len: int) -> float:
        """Keys a query attends to on average over a causal sequence of ``seq_len`` tokens, over the layers:
        ``seq_len / 2`` in full-attention layers, ``window_keys(0, seq_len, W) / seq_len`` (``W - W^2 / 2L``) in
        layers whose sliding window ``W`` is shorter."""
        window = self.sliding_window
        if window is None or window >= seq_len:
            return seq_len / 2
        share = self.sliding_window_share
        return (1.0 - share) * seq_len / 2 + share * window_keys(0, seq_len, window) / seq_len

    @property
    def causal_attention_span(self) -> int:
        """The keys per query that, halved by causality, give the layers' mean attention work over a sequence:
        ``attention_len``, or twice ``causal_keys`` of it where sliding windows are shorter."""
        keys = self.attention_len
        window = self.sliding_window
        if window is None or window >= keys:
            return keys
        return max(1, math.ceil(2 * self.causal_keys(keys)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description of the shape."""
        return {
            "name": self.name,
            "num_layers": self.num_layers,
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "ffn_hidden_dim": self.ffn_hidden_dim,
            "vocab_size": self.vocab_size,
            "seq_len": self.seq_len,
            "document_len": self.document_len,
            "sliding_window": self.sliding_window,
            "sliding_window_layers": self.sliding_window_layers,
            "mlp_activation": self.mlp_activation.value,
            "tied_embeddings": self.tied_embeddings,
            "position_embedding": self.position_embedding.value,
            "norm": self.norm.value,
            "qkv_bias": self.qkv_bias,
            "linear_bias": self.linear_bias,
            "qk_norm": self.qk_norm,
            "attention_kind": self.attention_kind.value,
            "mla": self.mla.to_dict() if self.mla is not None else None,
            "moe": self.moe.to_dict() if self.moe is not None else None,
        }
