"""Compute cost of one micro-batch on one rank: GEMMs, fused attention and memory-bound kernels.

Every GEMM is timed by a roofline (Williams et al. 2009): the larger of its FLOPs at an achieved fraction of
peak and its operand traffic at an achieved fraction of HBM bandwidth. The achieved fraction falls for small
GEMMs: ``gemm * d / (d + knee)`` with ``d`` the smallest of M, N, K (tile quantisation and too few waves of
thread blocks make thin GEMMs slow; the single ``knee`` is fitted). Attention runs as one fused
FlashAttention-style kernel (Dao 2023): forward at the ``attention`` fraction of 16-bit peak, backward doing
2.5x the forward's matmul FLOPs (five matmuls instead of two). Memory-bound kernels (norms, activation
functions, residual adds, rotary embeddings, FP8 casts, the loss) move the bytes listed in
:func:`elementwise_bytes` at the ``memory`` fraction of HBM bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass

from rainier.perf.efficiency import Efficiency
from rainier.precision import Precision
from rainier.workload.flops import Gemm, GemmKind
from rainier.workload.shape import TransformerShape

ATTENTION_KINDS = frozenset({GemmKind.ATTENTION_SCORE, GemmKind.ATTENTION_VALUE})
UP_KINDS = frozenset({GemmKind.MLP_UP, GemmKind.EXPERT_UP, GemmKind.SHARED_EXPERT_UP})
FLASH_BACKWARD_FACTOR = 2.5  # FlashAttention-2 backward: 5 matmuls vs 2 in forward (Dao 2023, sec. 3.1)
ACTIVATION_BYTES = 2.0  # 16-bit activations and gradients between kernels
LOSS_BYTES_PER_LOGIT = 12.0  # fp32 logits written, read for softmax, read for the loss (3 x 4 bytes)
FP8_CAST_BYTES = 3.0  # an FP8 GEMM operand is read in 16 bits and written in 8 (Micikevicius et al. 2022)


@dataclass(frozen=True, slots=True)
class Rank:
    """The compute resources of one rank: a device, or one logical core of it (its share)."""

    peak_16bit_flop_per_s: float
    peak_matmul_flop_per_s: float  # at the plan's matmul precision
    hbm_bw_bytes_per_s: float
    fp8: bool


@dataclass(frozen=True, slots=True)
class PassTimes:
    """Forward-pass times of one layer (or the head) for one micro-batch, split for the step model."""

    gemm_s: float
    attention_s: float
    elementwise_s: float
    weight_gradients: bool = True  # False when the weights are frozen (LoRA): no weight-gradient GEMMs

    @property
    def forward_s(self) -> float:
        return self.gemm_s + self.attention_s + self.elementwise_s

    @property
    def backward_s(self) -> float:
        # Input- and weight-gradient GEMMs (2x; 1x with frozen weights), flash backward (2.5x), elementwise (2x).
        gemm_factor = 2.0 if self.weight_gradients else 1.0
        return gemm_factor * self.gemm_s + FLASH_BACKWARD_FACTOR * self.attention_s + 2.0 * self.elementwise_s


def gemm_efficiency(gemm: Gemm, eff: Efficiency, fp8: bool) -> float:
    """Achieved fraction of peak for one GEMM: the large-GEMM fraction scaled down for thin shapes."""
    smallest = min(gemm.m, gemm.n, gemm.k)
    return (eff.gemm_fp8 if fp8 else eff.gemm) * smallest / (smallest + eff.gemm_size_knee)


def gemm_time_s(gemm: Gemm, rank: Rank, eff: Efficiency) -> float:
    """Roofline time of one (batched) weight GEMM at the plan's precision."""
    compute = gemm.flop / (rank.peak_matmul_flop_per_s * gemm_efficiency(gemm, eff, rank.fp8))
    operand_bytes = 1.0 if rank.fp8 else ACTIVATION_BYTES
    traffic = operand_bytes * (gemm.m * gemm.k + gemm.k * gemm.n) + ACTIVATION_BYTES * gemm.m * gemm.n
    memory = traffic * gemm.batch / (rank.hbm_bw_bytes_per_s * eff.memory)
    return max(compute, memory)


def elementwise_bytes(
    shape: TransformerShape, gemms: tuple[Gemm, ...], tokens: int, norm_tokens: float, tp_degree: int, fp8: bool
) -> float:
    """HBM bytes moved by one layer's memory-bound forward kernels on one rank.

    Per token: two norms (read + write ``h``), two fused bias-dropout-residual adds (read ``2h``, write ``h``),
    rotary embedding of queries and keys (read + write), the activation function on the up-projection's output
    (gated: read ``2f``, write ``f``; plain: read and write ``f``), and for FP8 a cast of every weight GEMM's
    input. Norm and residual work is split over the TP group only with sequence parallelism (``norm_tokens``).
    """
    h = shape.hidden_dim
    total = ACTIVATION_BYTES * norm_tokens * h * (2 * 2 + 2 * 3)
    heads_local = shape.num_heads // tp_degree
    kv_local = max(shape.num_kv_heads // tp_degree, 1)
    total += ACTIVATION_BYTES * 2 * tokens * (heads_local + kv_local) * shape.head_dim
    gated = shape.mlp_activation.gated
    for gemm in gemms:
        if gemm.kind in UP_KINDS:
            elements = gemm.m * gemm.n * gemm.batch
            total += ACTIVATION_BYTES * elements * (1.5 if gated else 2.0)
        if fp8 and gemm.has_weight:
            total += FP8_CAST_BYTES * gemm.m * gemm.k * gemm.batch
    return total


def layer_pass(
    shape: TransformerShape,
    gemms: tuple[Gemm, ...],
    *,
    rank: Rank,
    eff: Efficiency,
    tokens: int,
    norm_tokens: float,
    tp_degree: int,
    cp_degree: int,
    weight_gradients: bool = True,
) -> PassTimes:
    """Forward times of one layer for one micro-batch: weight GEMMs, fused attention, elementwise kernels.

    With context parallelism each rank holds ``s/cp`` queries but attends to all ``s`` keys (ring attention),
    so the attention core built for ``s/cp`` tokens is scaled by ``cp``.
    """
    gemm_s = 0.0
    attention_flop = 0.0
    scores = 0.0
    for gemm in gemms:
        if gemm.kind in ATTENTION_KINDS:
            attention_flop += gemm.flop * cp_degree
            if gemm.kind is GemmKind.ATTENTION_SCORE:
                scores = float(gemm.batch) * gemm.m * gemm.n * cp_degree  # the whole s x s matrix, masked or not
        else:
            gemm_s += gemm_time_s(gemm, rank, eff)
    score_traffic_s = eff.attention_score_bytes * scores / (rank.hbm_bw_bytes_per_s * eff.memory)
    attention_s = attention_flop / (rank.peak_16bit_flop_per_s * eff.attention) + score_traffic_s
    moved = elementwise_bytes(shape, gemms, tokens, norm_tokens, tp_degree, rank.fp8)
    return PassTimes(
        gemm_s=gemm_s, attention_s=attention_s, elementwise_s=moved / (rank.hbm_bw_bytes_per_s * eff.memory)
    )


def head_pass(gemms: tuple[Gemm, ...], *, rank: Rank, eff: Efficiency, weight_gradients: bool = True) -> PassTimes:
    """Forward times of the LM head and the loss (softmax cross-entropy over the local vocabulary shard)."""
    gemm_s = sum(gemm_time_s(g, rank, eff) for g in gemms)
    logits = sum(g.m * g.n for g in gemms)
    return PassTimes(
        gemm_s=gemm_s,
        attention_s=0.0,
        elementwise_s=LOSS_BYTES_PER_LOGIT * logits / (rank.hbm_bw_bytes_per_s * eff.memory),
        weight_gradients=weight_gradients,
    )


def matmul_precision_is_fp8(precision: Precision) -> bool:
    return precision is Precision.FP8
