"""Memory of training and serving: model state by precision and ZeRO stage, activations, KV cache.

Activation bytes generalise Korthikanti et al. 2022 (eqs. 1-5, Table 2), whose GPT derivation (sec. 4.1)
counts, per layer, with 16-bit activations and 1-byte dropout masks:

- replicated over tensor-parallel ranks (sharded only by sequence parallelism), ``10·s·b·h`` for GPT:
  two norm inputs ``4·sbh``, the QKV input ``2·sbh``, the attention-output dropout mask ``sbh``, the MLP
  input ``2·sbh`` and its dropout mask ``sbh``;
- sharded over ``t``, ``24·s·b·h`` for GPT: Q and K ``4·sbh``, V ``2·sbh``, the output-projection input
  ``2·sbh``, the MLP's activation input ``8·sbh`` and down-projection input ``8·sbh``;
- the attention core, sharded over ``t``: softmax output ``2·a·s²·b``, its dropout mask ``a·s²·b`` and the
  dropout output ``2·a·s²·b`` (``5·a·s²·b``), dropped by selective recompute or FlashAttention.

Generalisation (exact for GPT: MHA, ``ffn = 4h``, GeLU): Q/K/V and the output-projection input are counted
at their true widths ``a·d_qk``, ``n_kv·d_qk``, ``n_kv·d_v``, ``a·d_v`` (GQA stores fewer K/V; KV heads are
replicated when ``t > n_kv``); the MLP stores ``2·sb·f`` per ``f``-wide tensor it keeps: a plain MLP keeps the
activation input and the down-projection input (``4·sbf``, = ``16·sbh`` at ``f = 4h``), a gated MLP the gate and
up outputs and the down-projection input (``6·sbf``). MLA additionally keeps its two latents and their norm
inputs (``4·sb·(q_lora_rank + kv_lora_rank)``, replicated). A MoE layer keeps, per token, ``top_k`` copies
of the expert input (``2·sbh`` each) and expert intermediates, the shared experts' intermediates, and fp32
router probabilities (``4·sb·E``), assuming balanced routing. Dropout masks are kept, as in the paper, even
though modern recipes set dropout to zero: the estimate errs by at most ``2·sbh`` per layer on the high side.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from rainier.errors import field_error
from rainier.precision import Precision
from rainier.workload.shape import TransformerShape

ACTIVATION_BYTES = 2.0  # 16-bit activations (Korthikanti et al. 2022, sec. 4.1)
MASK_BYTES = 1.0  # dropout masks, one byte per element (same section)
ROUTER_PROB_BYTES = 4.0  # router softmax/sigmoid kept in fp32
ADAM_OPTIMIZER_BYTES_PER_PARAM = 12.0  # fp32 master weights, momentum, variance (Rajbhandari et al. 2020, sec. 3)
MAX_ZERO_STAGE = 3


class Recompute(enum.StrEnum):
    """Activation recomputation: none, the attention core only (selective), or the whole layer (full)."""

    NONE = "none"
    SELECTIVE = "selective"
    FULL = "full"


# ----------------------------------------------------------------------------------------------------------------
# Model state: weights, gradients, optimizer
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StateBytesPerParam:
    """Bytes each parameter costs in training: weight copy, gradient, optimizer state."""

    weight: float
    gradient: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.weight + self.gradient + self.optimizer

    @classmethod
    def mixed_precision_adam(
        cls, weight_precision: Precision = Precision.BF16, grad_precision: Precision = Precision.BF16
    ) -> StateBytesPerParam:
        """2 + 2 + 12 = 16 bytes for bf16 weights and gradients (Rajbhandari et al. 2020, sec. 3, K = 12)."""
        return cls(
            weight=weight_precision.bytes_per_element,
            gradient=grad_precision.bytes_per_element,
            optimizer=ADAM_OPTIMIZER_BYTES_PER_PARAM,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelStateBytes:
    """Weight, gradient and optimizer bytes held by one data-parallel rank."""

    weight_bytes: float
    gradient_bytes: float
    optimizer_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weight_bytes + self.gradient_bytes + self.optimizer_bytes

    def to_dict(self) -> dict[str, float]:
        return {
            "weight_bytes": self.weight_bytes,
            "gradient_bytes": self.gradient_bytes,
            "optimizer_bytes": self.optimizer_bytes,
            "total_bytes": self.total_bytes,
        }


def model_state_bytes(
    num_params: int | float,
    *,
    dp_degree: int = 1,
    zero_stage: int = 0,
    shard_degree: int | None = None,
    per_param: StateBytesPerParam | None = None,
) -> ModelStateBytes:
    """Model-state bytes per rank for ``num_params`` parameters (those the rank holds after TP/PP/EP splits).

    ZeRO shards over the ``dp_degree`` data-parallel ranks: stage 1 the optimizer state, stage 2 also the
    gradients, stage 3 also the weights (Rajbhandari et al. 2020, sec. 5.1-5.3 and Figure 1). HSDP
    (``shard_degree`` s) shards over groups of s of them instead and replicates across the dp/s groups (PyTorch
    FSDP ``HYBRID_SHARD``, Zhao et al. 2023 sec. 3.2.2; ZeRO++ hpZ, Wang et al. 2023).
    """
    if isinstance(dp_degree, bool) or not isinstance(dp_degree, int) or dp_degree < 1:
        raise field_error("dp_degree", dp_degree, "a positive integer")
    if shard_degree is not None and (
        isinstance(shard_degree, bool)
        or not isinstance(shard_degree, int)
        or shard_degree < 1
        or dp_degree % shard_degree
    ):
        raise field_error("shard_degree", shard_degree, f"a divisor of dp_degree={dp_degree} or null")
    group = dp_degree if shard_degree is None else shard_degree
    if isinstance(zero_stage, bool) or not isinstance(zero_stage, int) or not 0 <= zero_stage <= MAX_ZERO_STAGE:
        raise field_error("zero_stage", zero_stage, "0, 1, 2 or 3")
    if not num_params >= 0:
        raise field_error("num_params", num_params, "a non-negative number")
    state = per_param or StateBytesPerParam.mixed_precision_adam()
    n = float(num_params)
    return ModelStateBytes(
        weight_bytes=n * state.weight / (group if zero_stage >= 3 else 1),
        gradient_bytes=n * state.gradient / (group if zero_stage >= 2 else 1),
        optimizer_bytes=n * state.optimizer / (group if zero_stage >= 1 else 1),
    )


# ----------------------------------------------------------------------------------------------------------------
# Activations
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivationBytes:
    """Activation bytes one layer keeps for its backward pass, per micro-batch, on one tensor-parallel rank."""

    norm_bytes: float
    attention_bytes: float
    attention_core_bytes: float
    mlp_bytes: float
    layer_input_bytes: float  # full recompute keeps only this

    @property
    def total_bytes(self) -> float:
        return (
            self.norm_bytes + self.attention_bytes + self.attention_core_bytes + self.mlp_bytes + self.layer_input_bytes
        )

    def to_dict(self) -> dict[str, float]:
        return {
            "norm_bytes": self.norm_bytes,
            "attention_bytes": self.attention_bytes,
            "attention_core_bytes": self.attention_core_bytes,
            "mlp_bytes": self.mlp_bytes,
            "layer_input_bytes": self.layer_input_bytes,
            "total_bytes": self.total_bytes,
        }


def _positive(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise field_error(field, value, "a positive integer")
    return value


def _mlp_inner_bytes(sb: float, ffn_dim: float, gated: bool) -> float:
    """Sharded MLP tensors kept for backward: 4·sbf plain (act and down inputs), 6·sbf gated (gate, up, down input)."""
    return ACTIVATION_BYTES * sb * ffn_dim * (3 if gated else 2)


def layer_activation_bytes(
    shape: TransformerShape,
    *,
    micro_batch: int,
    seq_len: int | None = None,
    tp_degree: int = 1,
    sequence_parallel: bool = False,
    recompute: Recompute = Recompute.NONE,
    flash_attention: bool = False,
    moe_layer: bool = False,
) -> ActivationBytes:
    """Activation bytes of one layer (Korthikanti et al. 2022, eqs. 1-5 / Table 2, generalised as above).

    GPT shapes reproduce the paper: ``sbh·(34 + 5as/h)`` at ``t = 1``; ``sbh·(10 + 24/t + 5as/(ht))`` with
    tensor parallelism; ``sbh/t·(34 + 5as/h)`` with sequence parallelism; selective recompute drops the
    ``5as/h`` term; full recompute keeps ``2·sbh`` (``/t`` with sequence parallelism). FlashAttention drops the
    ``5as/h`` term by itself.
    """
    b = _positive("micro_batch", micro_batch)
    s = _positive("seq_len", shape.seq_len if seq_len is None else seq_len)
    t = _positive("tp_degree", tp_degree)
    h = shape.hidden_dim
    sb = float(s * b)
    seq_shard = t if sequence_parallel else 1  # divides the tensors that tensor parallelism replicates
    if recompute is Recompute.FULL:
        # Full recompute: only the layer input survives (Korthikanti et al. 2022, Table 2, last rows).
        return ActivationBytes(
            norm_bytes=0.0,
            attention_bytes=0.0,
            attention_core_bytes=0.0,
            mlp_bytes=0.0,
            layer_input_bytes=ACTIVATION_BYTES * sb * h / seq_shard,
        )
    heads = shape.num_heads / t
    kv_heads = max(shape.num_kv_heads / t, 1.0) if shape.mla is None else heads
    d_qk, d_v = shape.qk_head_dim, shape.v_head_dim
    # Replicated parts (sec. 4.1): QKV input 2sbh + attention dropout mask sbh; norm inputs 2 x 2sbh.
    attention_replicated = ACTIVATION_BYTES * sb * h + MASK_BYTES * sb * h
    if shape.mla is not None:
        latents = shape.mla.kv_lora_rank + (shape.mla.q_lora_rank or 0)
        attention_replicated += 2 * ACTIVATION_BYTES * sb * latents  # up-projection inputs + latent-norm inputs
    norms = 2 * ACTIVATION_BYTES * sb * h / seq_shard
    # Sharded parts: Q and K (for QK^T), V (for AV), output-projection input.
    attention_sharded = ACTIVATION_BYTES * sb * (heads * d_qk + kv_heads * d_qk + kv_heads * d_v + heads * d_v)
    attention = attention_replicated / seq_shard + attention_sharded
    core = 0.0
    if recompute is Recompute.NONE and not flash_attention:
        # Softmax output 2as²b + dropout mask as²b + dropout output 2as²b (sec. 4.1), per rank a/t heads.
        core = (2 * ACTIVATION_BYTES + MASK_BYTES) * heads * s * s * b
    gated = shape.mlp_activation.gated
    mlp_replicated = ACTIVATION_BYTES * sb * h + MASK_BYTES * sb * h  # MLP input + dropout mask
    moe = shape.moe
    if moe_layer and moe is not None:
        etp_ffn = moe.expert_ffn_hidden_dim / t
        routed = moe.top_k * (ACTIVATION_BYTES * sb * h / seq_shard + _mlp_inner_bytes(sb, etp_ffn, gated))
        shared = _mlp_inner_bytes(sb, moe.num_shared_experts * moe.shared_ffn_dim / t, gated)
        router = ROUTER_PROB_BYTES * sb * moe.num_experts / seq_shard
        mlp = mlp_replicated / seq_shard + routed + shared + router
    else:
        mlp = mlp_replicated / seq_shard + _mlp_inner_bytes(sb, shape.ffn_hidden_dim / t, gated)
    return ActivationBytes(
        norm_bytes=norms, attention_bytes=attention, attention_core_bytes=core, mlp_bytes=mlp, layer_input_bytes=0.0
    )


# ----------------------------------------------------------------------------------------------------------------
# Serving: weights and KV cache
# ----------------------------------------------------------------------------------------------------------------


def kv_cache_bytes_per_token(
    shape: TransformerShape, *, precision: Precision = Precision.BF16, tp_degree: int = 1
) -> float:
    """KV-cache bytes per token of context, over all layers, on one of ``tp_degree`` ranks.

    Standard attention: ``2·l·n_kv·d_head·bytes`` (formulas.md, "Memory"); each rank holds ``n_kv/t`` heads, at
    least one (KV heads are replicated when ``t > n_kv``). MLA caches the compressed latent and the rotary key,
    ``l·(kv_lora_rank + qk_rope_head_dim)·bytes`` (DeepSeek-V2 technical report, sec. 2.1), on every rank.
    """
    t = _positive("tp_degree", tp_degree)
    if not isinstance(precision, Precision):
        raise field_error("precision", precision, f"allowed: {', '.join(p.value for p in Precision)}")
    width = precision.bytes_per_element
    if shape.mla is not None:
        return shape.num_layers * (shape.mla.kv_lora_rank + shape.mla.qk_rope_head_dim) * width
    kv_heads = max(shape.num_kv_heads / t, 1.0)
    return 2.0 * shape.num_layers * kv_heads * shape.head_dim * width
