"""Parameter counts of a :class:`TransformerShape`: total, active per token, embeddings, and per-layer parts.

Counts are exact sums over the weight matrices, biases and norms a standard implementation allocates
(Hugging Face / Megatron layouts), so they can be checked against published totals. "Active" parameters are
those a token touches: attention, norms, the router, its ``top_k`` routed experts and the shared experts, and
the embeddings (Mixtral's 12.9B-active convention; DeepSeek's 37B omits the input embedding, see
:attr:`ParamCounts.active_without_input_embedding`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rainier.workload.shape import MlpActivation, PositionEmbedding, Router, TransformerShape


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerParams:
    """Parameters of one transformer layer, by part.

    ``mlp`` is the dense MLP, or all routed experts of a MoE layer; ``active_mlp`` is what one token uses of it
    (the whole dense MLP, or ``top_k`` experts).
    """

    attention: int
    mlp: int
    active_mlp: int
    shared_experts: int
    router: int
    norms: int

    @property
    def total(self) -> int:
        return self.attention + self.mlp + self.shared_experts + self.router + self.norms

    @property
    def active(self) -> int:
        return self.attention + self.active_mlp + self.shared_experts + self.router + self.norms


@dataclass(frozen=True, slots=True, kw_only=True)
class ParamCounts:
    """Parameter counts of a whole model: embeddings, the two layer kinds (dense / MoE) and the output head."""

    embedding: int
    position_embedding: int
    output_head: int  # 0 when tied to the input embedding
    final_norm: int
    dense_layer: LayerParams
    num_dense_layers: int
    moe_layer: LayerParams | None
    num_moe_layers: int

    @property
    def layers_total(self) -> int:
        moe = self.moe_layer.total * self.num_moe_layers if self.moe_layer is not None else 0
        return self.dense_layer.total * self.num_dense_layers + moe

    @property
    def layers_active(self) -> int:
        moe = self.moe_layer.active * self.num_moe_layers if self.moe_layer is not None else 0
        return self.dense_layer.active * self.num_dense_layers + moe

    @property
    def router(self) -> int:
        """The MoE layers' routers (gate weights, and the bias of a sigmoid router), all layers; 0 for a dense model."""
        return self.moe_layer.router * self.num_moe_layers if self.moe_layer is not None else 0

    @property
    def embeddings_total(self) -> int:
        """Token and position tables plus an untied output head."""
        return self.embedding + self.position_embedding + self.output_head

    @property
    def total(self) -> int:
        return self.layers_total + self.embeddings_total + self.final_norm

    @property
    def active(self) -> int:
        """Parameters touched per token, embeddings included."""
        return self.layers_active + self.embeddings_total + self.final_norm

    @property
    def active_without_input_embedding(self) -> int:
        """Active parameters less the input lookup tables (DeepSeek-V3 README_WEIGHTS: 36.6B activated)."""
        return self.active - self.embedding - self.position_embedding

    @property
    def non_embedding(self) -> int:
        """Parameters outside the embedding tables and output head (Kaplan et al. 2020's N)."""
        return self.total - self.embeddings_total

    def by_group(self) -> dict[str, int]:
        """Total parameters per group, summing to :attr:`total` (for memory by group and JSON)."""
        moe = self.moe_layer
        n_moe = self.num_moe_layers
        n_dense = self.num_dense_layers
        dense = self.dense_layer
        return {
            "embedding": self.embedding + self.position_embedding,
            "attention": dense.attention * n_dense + (moe.attention * n_moe if moe else 0),
            "mlp": dense.mlp * n_dense,
            "routed_experts": moe.mlp * n_moe if moe else 0,
            "shared_experts": moe.shared_experts * n_moe if moe else 0,
            "router": self.router,
            "norms": dense.norms * n_dense + (moe.norms * n_moe if moe else 0) + self.final_norm,
            "output_head": self.output_head,
        }


def mlp_params(hidden_dim: int, ffn_dim: int, activation: MlpActivation, *, bias: bool) -> int:
    """One MLP: gated units have gate, up and down matrices (Shazeer 2020), plain ones up and down."""
    weights = activation.num_matrices * hidden_dim * ffn_dim
    biases = ((activation.num_matrices - 1) * ffn_dim + hidden_dim) if bias else 0
    return weights + biases


def mla_latent_params(shape: TransformerShape) -> int:
    """One MLA layer's latent projections, weights only: the query's down- and up-projection (or its full projection
    without a query latent), the joint key-value down-projection with the rotary key, and the key-value
    up-projection -- every attention weight but the output projection (0 without MLA). DeepSeek-V2 sec. 2.1.2-2.1.3:
    q = W_UQ·norm(W_DQ·x); [c_KV, k_R] = W_DKV·x; [k_C, v] = W_UKV·norm(c_KV)."""
    mla = shape.mla
    if mla is None:
        return 0
    h, heads = shape.hidden_dim, shape.num_heads
    query_in = mla.q_lora_rank if mla.q_lora_rank is not None else h  # W_UQ's input, or the full projection's
    query_up = query_in * heads * mla.qk_head_dim
    kv_up = mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim)
    return mla_down_params(shape) + query_up + kv_up


def mla_down_params(shape: TransformerShape) -> int:
    """One MLA layer's down-projections, weights only: the query's ``W_DQ`` (none without a query latent) and the
    joint key-value ``W_DKV`` with the rotary key's ``W_KR`` (DeepSeek-V2 sec. 2.1.2-2.1.3): the part of
    ``mla_latent_params`` that maps the hidden state to the latents, before any head is split off (0 without MLA)."""
    mla = shape.mla
    if mla is None:
        return 0
    query = shape.hidden_dim * mla.q_lora_rank if mla.q_lora_rank is not None else 0
    return query + shape.hidden_dim * (mla.kv_lora_rank + mla.qk_rope_head_dim)


def attention_params(shape: TransformerShape) -> int:
    """Attention projections of one layer, with their biases and any attention-internal norms."""
    h = shape.hidden_dim
    heads = shape.num_heads
    if shape.mla is not None:
        mla = shape.mla
        norms = shape.norm.params(mla.kv_lora_rank)
        if mla.q_lora_rank is not None:
            norms += shape.norm.params(mla.q_lora_rank)
        out = heads * mla.v_head_dim * h + (h if shape.linear_bias else 0)
        return mla_latent_params(shape) + norms + out
    q_dim = heads * shape.head_dim
    kv_dim = shape.num_kv_heads * shape.head_dim
    qkv = h * (q_dim + 2 * kv_dim) + ((q_dim + 2 * kv_dim) if shape.qkv_bias else 0)
    out = q_dim * h + (h if shape.linear_bias else 0)
    qk_norm = 2 * shape.norm.params(shape.head_dim) if shape.qk_norm else 0  # Qwen3: RMSNorm on q and k per head
    return qkv + out + qk_norm


def layer_params(shape: TransformerShape, index: int) -> LayerParams:
    """Parameters of layer ``index`` (0-based): dense or MoE depending on the shape's MoE layout."""
    moe = shape.moe
    if moe is None or not shape.is_moe_layer(index):
        return _dense_layer(shape)
    h = shape.hidden_dim
    expert = mlp_params(h, moe.expert_ffn_hidden_dim, shape.mlp_activation, bias=shape.linear_bias)
    shared = moe.num_shared_experts * mlp_params(h, moe.shared_ffn_dim, shape.mlp_activation, bias=shape.linear_bias)
    # Router: one h x E projection; DeepSeek-V3's aux-loss-free balancing adds a bias per expert (sec. 2.1.2).
    router = h * moe.num_experts + (moe.num_experts if moe.router is Router.SIGMOID_BIAS else 0)
    return LayerParams(
        attention=attention_params(shape),
        mlp=moe.num_experts * expert,
        active_mlp=moe.top_k * expert,
        shared_experts=shared,
        router=router,
        norms=2 * shape.norm.params(h),
    )


def count_params(shape: TransformerShape) -> ParamCounts:
    """Exact parameter counts of ``shape``.

    Learned position tables are counted at ``shape.seq_len`` rows (GPT-3: 2048 x 12288). MTP modules
    (DeepSeek-V3) and vision towers are not part of a :class:`TransformerShape` and are not counted.
    """
    h = shape.hidden_dim
    moe_layer = layer_params(shape, shape.moe.first_k_dense_layers) if shape.moe is not None else None
    return ParamCounts(
        embedding=shape.vocab_size * h,
        position_embedding=shape.seq_len * h if shape.position_embedding is PositionEmbedding.LEARNED else 0,
        output_head=0 if shape.tied_embeddings else shape.vocab_size * h,
        final_norm=shape.norm.params(h),
        dense_layer=_dense_layer(shape),
        num_dense_layers=shape.num_dense_layers,
        moe_layer=moe_layer,
        num_moe_layers=shape.num_moe_layers,
    )


def _dense_layer(shape: TransformerShape) -> LayerParams:
    """A dense layer's parameters (all dense layers are alike; for a MoE shape, whether or not one exists)."""
    h = shape.hidden_dim
    dense = mlp_params(h, shape.ffn_hidden_dim, shape.mlp_activation, bias=shape.linear_bias)
    return LayerParams(
        attention=attention_params(shape),
        mlp=dense,
        active_mlp=dense,
        shared_experts=0,
        router=0,
        norms=2 * shape.norm.params(h),
    )
