"""Compute cost of one micro-batch on one rank: GEMMs by shape, attention, memory-bound kernels.

Every GEMM is timed by a roofline (Williams et al. 2009): the larger of its FLOPs at an achieved fraction of
peak and its operand traffic at an achieved fraction of HBM bandwidth. The achieved fraction is the family's
large-GEMM efficiency times two shape factors from the GEMM's dimensions (NVIDIA, "Matrix Multiplication
Background User's Guide", sec. 3): *tile quantisation* (the output is computed in whole ``tile`` blocks, so
``M x N`` is padded up to them) and *wave quantisation* (blocks are spread over ``matmul_units`` SMs or matrix
units in whole waves; when there are fewer blocks than units, libraries split K to fill them, as cuBLAS does).
Thin GEMMs at high tensor parallelism, small MoE expert batches and odd widths lose speed this way, and skinny
ones turn memory-bound through the roofline; no fitted "size knee" stands in for either.

Backward GEMMs are timed by their own shapes: the input gradient ``dX = dY W^T`` and the weight gradient
``dW = X^T dY`` (Kaplan et al. 2020 sec. 2.1: each has the forward's FLOPs), kept apart so that zero-bubble
schedules can move the weight-gradient pass (Qi et al. 2023).

Attention runs fused (FlashAttention, Dao 2023) at the ``attention`` fraction of peak: the forward takes the
longer of its matmuls (16-bit, or 8-bit with FP8 dot-product attention) and its softmax exponentials on the
special-function units (``Accelerator.exp_per_s``), the backward the longer of 2.5x the matmuls and one
exponential per score (:func:`flash_seconds`), both times the kernel's tiling overhead
(:func:`flash_tile_overhead`). Without fused attention (Megatron-LM before 2023) the scores are
batched GEMMs over the full ``s x s`` matrix at GEMM efficiency, and the softmax, mask and dropout move
``UNFUSED_SCORE_BYTES`` per score through HBM.

Memory-bound kernels (norms, activation functions, residual adds, rotary embeddings, 8-bit casts, the loss)
move the bytes listed in :func:`elementwise_bytes` at the ``memory`` fraction of HBM bandwidth.

MoE expert GEMMs are grouped GEMMs of ``m = tokens * top_k * ep / E`` rows per local expert, times the load of
the busiest expert group (``routing_imbalance``, dropless) or the capacity factor (every expert padded to it).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from rainier.perf.efficiency import Efficiency
from rainier.precision import Precision
from rainier.workload.flops import Gemm, GemmKind
from rainier.workload.shape import PositionEmbedding, TransformerShape

ATTENTION_KINDS = frozenset({GemmKind.ATTENTION_SCORE, GemmKind.ATTENTION_VALUE})
UP_KINDS = frozenset({GemmKind.MLP_UP, GemmKind.EXPERT_UP, GemmKind.SHARED_EXPERT_UP})
EXPERT_KINDS = frozenset({GemmKind.EXPERT_UP, GemmKind.EXPERT_DOWN})
MLP_KINDS = frozenset({GemmKind.MLP_UP, GemmKind.MLP_DOWN, GemmKind.SHARED_EXPERT_UP, GemmKind.SHARED_EXPERT_DOWN})
# The forward pass is a third of a training step's compute, the backward two thirds: 2N and 4N FLOPs per token,
# the input and the weight gradients each costing the forward's FLOPs (Kaplan et al. 2020, sec. 2.1; Narayanan
# et al. 2021, eq. 2's 6N split).
FORWARD_SHARE = 1.0 / 3.0
LORA_FLOP_FRACTION = 2.0 / 3.0  # forward (2N) + input gradients (2N) of full training's 6N (Hu et al. 2021)
FLASH_BACKWARD_FACTOR = 2.5  # FlashAttention-2 backward: 5 matmuls vs 2 in forward (Dao 2023, sec. 3.1)
FLASH_TILE = 128  # keys per FlashAttention tile (FlashAttention-2/3 block sizes)
FLASH_FIXED_TILES = 2.0  # per query tile: load Q, finalise the softmax and write O, ~2 key-tile iterations
ACTIVATION_BYTES = 2.0  # 16-bit activations and gradients between kernels
LOSS_BYTES_PER_LOGIT = 12.0  # fp32 logits written, read for softmax, read for the loss (3 x 4 bytes)
# Unfused attention core (Megatron-LM before FlashAttention): besides the score GEMMs, whose operand traffic the
# GEMM roofline already counts (QK^T writes the scores, PV reads the probabilities), the softmax reads and
# writes every score (2 + 2 bytes) and dropout reads them, writes its output and a 1-byte mask (2 + 2 + 1): 9 bytes
# per score and layer forward (Korthikanti et al. 2022 sec. 4.1 lists the 2-byte softmax output, the 1-byte
# mask and the 2-byte dropout output an unfused core keeps). Backward: dropout's backward reads the gradient and
# the mask and writes (2 + 1 + 2), the softmax backward reads the probabilities and the gradient and writes dS
# (2 + 2 + 2): 11 bytes.
UNFUSED_SCORE_BYTES = 9.0
UNFUSED_SCORE_BACKWARD_BYTES = 11.0
UNFUSED_GEMM_BACKWARD_FACTOR = 2.0  # dQ, dK from dS and dP, dV from P: twice the forward's two GEMMs
# Bytes moved per element of an 8-bit GEMM input to make it (read 16-bit, write 8-bit, plus what the recipe
# adds): current per-tensor scaling reads the tensor once more for its amax; delayed scaling takes the amax
# from history; blockwise (1x128 / 128x128) and MXFP8 (32-element blocks) write a row-wise and a column-wise
# quantised copy for the backward GEMMs (Transformer Engine 2 on Blackwell; DeepSeek-style block scaling).
CAST_BYTES = {"tensorwise": 5.0, "delayed": 3.0, "blockwise": 4.0, "mxfp8": 4.0, "int8": 5.0}
ROUTER_LOGIT_BYTES = 12.0  # fp32 router logits: written, read for softmax/top-k, probabilities read (3 x 4 bytes)
MIN_SPLIT_K = 256  # a split-K slice keeps at least this many elements of K (cuBLAS heuristics keep slices long)

# Compute times are linear forms over the inverse efficiencies, so that a fit can re-time every case for new
# efficiencies without rebuilding it: seconds = form @ (1/gemm, 1/gemm_8bit, 1/attention, 1/memory).
FORM_FIELDS = ("gemm", "gemm_8bit", "attention", "memory")
GEMM16, GEMM8, ATTENTION, MEMORY = range(4)
Form = NDArray[np.float64]


def zero_form() -> Form:
    return np.zeros(len(FORM_FIELDS))


def form_seconds(form: Form, eff: Efficiency) -> float:
    """A form's seconds under ``eff``."""
    return float(form @ inverse_efficiencies(eff))


def inverse_efficiencies(eff: Efficiency) -> NDArray[np.float64]:
    return np.array([1.0 / eff.gemm, 1.0 / eff.gemm_8bit, 1.0 / eff.attention, 1.0 / eff.memory])


@dataclass(frozen=True, slots=True)
class Rank:
    """The compute resources of one rank: a device, or one logical core of it (its share)."""

    peak_16bit_flop_per_s: float
    peak_matmul_flop_per_s: float  # at the plan's matmul precision
    hbm_bw_bytes_per_s: float
    bits8: bool  # FP8 or INT8 matmuls
    tile: tuple[int, int] = (128, 128)
    units: float = 1.0  # matrix units (SMs, systolic arrays) of this rank
    cast_bytes: float = CAST_BYTES["tensorwise"]
    exp_per_s: float | None = None  # softmax exponentials per second (special-function units); None: no limit
    # FlashAttention-2's kernels' speed relative to the vendor's fused attention on this chip (flash2_speed)
    flash2_speed: float = 1.0


@dataclass(frozen=True, slots=True)
class PassForms:
    """One layer's (or the head's) times for one micro-batch as forms: forward, input-gradient, weight-gradient.

    ``gemm`` is the forward weight-GEMM time (what tensor-parallel communication can overlap with) and
    ``attention`` the forward attention core (what context-parallel exchange overlaps with and selective
    recompute repeats). For MoE layers the routed experts' share is kept apart (``expert_*``), scaled later by
    the load of the busiest expert group.
    """

    forward: Form
    input_grad: Form
    weight_grad: Form
    gemm: Form
    attention: Form
    expert_forward: Form
    expert_input_grad: Form
    expert_weight_grad: Form
    expert_gemm: Form
    elementwise: Form  # forward memory-bound kernels (what light selective recompute repeats)
    mlp_gemm: Form  # forward dense-MLP and shared-expert GEMMs (recompute_modules mlp / shared_experts)

    def seconds(self, eff: Efficiency, expert_load: float = 1.0) -> dict[str, float]:
        """The pass times under ``eff`` (for tests and reports)."""
        x = inverse_efficiencies(eff)
        return {
            "forward_s": float((self.forward + expert_load * self.expert_forward) @ x),
            "input_grad_s": float((self.input_grad + expert_load * self.expert_input_grad) @ x),
            "weight_grad_s": float((self.weight_grad + expert_load * self.expert_weight_grad) @ x),
        }


def shape_efficiency(m: int, n: int, k: int, batch: int, tile: tuple[int, int], units: float) -> float:
    """Tile x wave quantisation of an ``m x n x k`` GEMM (repeated ``batch`` times); 1 for a perfect fit.

    Both tile orientations are tried (libraries pick the better one); with fewer tiles than units K is split
    into slices of at least ``MIN_SPLIT_K`` to fill the units (split-K).
    """
    best = 0.0
    for tm, tn in (tile, (tile[1], tile[0])):
        tiles_m, tiles_n = math.ceil(m / tm), math.ceil(n / tn)
        padded = tiles_m * tm * tiles_n * tn
        tiles = tiles_m * tiles_n * batch
        split = 1
        if tiles < units:
            split = max(1, min(int(units // tiles), k // MIN_SPLIT_K))
        work = tiles * split
        waves = math.ceil(work / units)
        efficiency = (m * n / padded) * (work / (waves * units))
        best = max(best, efficiency)
    return best


# A GEMM's side of the roofline as decided: (8-bit operands, compute seconds, memory seconds, compute side). While
# a thread has a list on its ``_RECORDING.lists`` every decision it makes is appended to the innermost one
# (``perf.context`` records each context's), so :func:`same_sides` can tell whether other efficiencies would
# decide every one of them alike. Per thread: the web app's workers form passes side by side.
Side = tuple[bool, float, float, bool]
_RECORDING = threading.local()


def _recorders() -> list[list[Side]]:
    lists: list[list[Side]] | None = getattr(_RECORDING, "lists", None)
    if lists is None:
        lists = _RECORDING.lists = []
    return lists


@contextlib.contextmanager
def recording_sides(into: list[Side]) -> Iterator[None]:
    """Append every GEMM side :func:`gemm_form` decides inside the block, in this thread, to ``into``."""
    recorders = _recorders()
    recorders.append(into)
    try:
        yield
    finally:
        recorders.pop()


def same_sides(sides: Sequence[Side], classify: Efficiency) -> bool:
    """Whether ``classify`` puts every recorded GEMM on the side it was put on (the same test as :func:`gemm_form`)."""
    return all(
        (compute / (classify.gemm_8bit if bits8 else classify.gemm) >= memory / classify.memory) == side
        for bits8, compute, memory, side in sides
    )


def gemm_form(gemm: Gemm, rank: Rank, classify: Efficiency, *, output_bytes: float = ACTIVATION_BYTES) -> Form:
    """Roofline of one (batched) GEMM as a form: its compute term, or its memory term when that is larger at the
    ``classify`` efficiencies (GEMMs rarely sit near the ridge, so the side is stable under a fit)."""
    column = GEMM8 if rank.bits8 else GEMM16
    shape_eff = shape_efficiency(gemm.m, gemm.n, gemm.k, gemm.batch, rank.tile, rank.units)
    compute = gemm.flop / (rank.peak_matmul_flop_per_s * shape_eff)
    operand_bytes = 1.0 if rank.bits8 else ACTIVATION_BYTES
    traffic = operand_bytes * (gemm.m * gemm.k + gemm.k * gemm.n) + output_bytes * gemm.m * gemm.n
    memory = traffic * gemm.batch / rank.hbm_bw_bytes_per_s
    base = classify.gemm_8bit if rank.bits8 else classify.gemm
    form = zero_form()
    side = compute / base >= memory / classify.memory
    if side:
        form[column] = compute
    else:
        form[MEMORY] = memory
    recorders = _recorders()
    if recorders:
        recorders[-1].append((rank.bits8, compute, memory, side))
    return form


def gemm_time_s(gemm: Gemm, rank: Rank, eff: Efficiency) -> float:
    """Roofline time of one (batched) GEMM at the plan's precision (the larger of compute and memory)."""
    return form_seconds(gemm_form(gemm, rank, eff), eff)


def backward_gemms(gemm: Gemm) -> tuple[Gemm, Gemm]:
    """The input-gradient and weight-gradient GEMMs of a forward weight GEMM."""
    return gemm.backward()


def elementwise_bytes(
    shape: TransformerShape, gemms: tuple[Gemm, ...], tokens: int, norm_tokens: float, tp_degree: int, rank: Rank
) -> float:
    """HBM bytes moved by one layer's memory-bound forward kernels on one rank.

    Per token: two norms (read + write ``h``), two fused bias-dropout-residual adds (read ``2h``, write ``h``),
    rotary embedding of queries and keys (read + write; RoPE models only), the activation function on the
    up-projection's output (gated: read ``2f``, write ``f``; plain: read and write ``f``), and for 8-bit matmuls the
    cast of every
    weight GEMM's input (``Rank.cast_bytes`` per element). MoE layers add the token permutation around the
    expert all-to-all and the router's logits. Norm, residual and permutation work is split over the TP group
    only with sequence parallelism (``norm_tokens``).
    """
    h = shape.hidden_dim
    total = ACTIVATION_BYTES * norm_tokens * h * (2 * 2 + 2 * 3)
    heads_local = shape.num_heads // tp_degree
    kv_local = max(shape.num_kv_heads // tp_degree, 1)
    if shape.position_embedding is PositionEmbedding.ROPE:
        total += ACTIVATION_BYTES * 2 * tokens * (heads_local + kv_local) * shape.head_dim
    gated = shape.mlp_activation.gated
    moe = shape.moe
    if moe is not None and any(g.kind is GemmKind.ROUTER for g in gemms):
        # Token permutation around the expert all-to-all (Megatron's permute/unpermute): read each token and
        # write its top_k copies before dispatch, read the top_k expert outputs and write their weighted sum
        # after combine; the router's fp32 logits are written, read for the softmax/top-k and for the probs.
        total += ACTIVATION_BYTES * norm_tokens * h * 2 * (moe.top_k + 1)
        total += ROUTER_LOGIT_BYTES * norm_tokens * moe.num_experts
    for gemm in gemms:
        if gemm.kind in UP_KINDS:
            elements = gemm.m * gemm.n * gemm.batch
            total += ACTIVATION_BYTES * elements * (1.5 if gated else 2.0)
        if rank.bits8 and gemm.has_weight:
            total += rank.cast_bytes * gemm.m * gemm.k * gemm.batch
    return total


def expert_load_factor(capacity_factor: float | None, imbalance: float) -> float:
    """Rows of the busiest expert group over the balanced mean: the capacity (padded) or the imbalance."""
    return capacity_factor if capacity_factor is not None else imbalance


def layer_forms(
    shape: TransformerShape,
    gemms: tuple[Gemm, ...],
    *,
    rank: Rank,
    classify: Efficiency,
    tokens: int,
    norm_tokens: float,
    tp_degree: int,
    cp_degree: int,
    weight_gradients: bool = True,
    flash_attention: bool = True,
    fp8_attention: bool = False,
    flash2_attention: bool = False,
) -> PassForms:
    """One layer's forms for one micro-batch: weight GEMMs, attention, elementwise kernels; F, B and W.

    With context parallelism each rank holds ``s/cp`` queries but attends to all ``s`` keys (ring attention),
    so the attention core built for ``s/cp`` tokens is scaled by ``cp``. Routed-expert GEMMs (balanced, one mean
    load) go to the ``expert_*`` forms and their elementwise traffic stays with the layer. ``flash2_attention``:
    the fused attention runs FlashAttention-2's kernels, at ``rank.flash2_speed`` of the vendor kernel's speed.
    """
    fwd, dgrad, wgrad = zero_form(), zero_form(), zero_form()
    efwd, edgrad, ewgrad = zero_form(), zero_form(), zero_form()
    mlp = zero_form()
    attention_flop = 0.0
    scores = 0.0
    exponentials = 0.0
    unfused: list[Gemm] = []
    for gemm in gemms:
        if gemm.kind in ATTENTION_KINDS:
            attention_flop += gemm.flop * cp_degree
            if gemm.kind is GemmKind.ATTENTION_SCORE:
                scores = float(gemm.batch) * gemm.m * gemm.n * cp_degree
                exponentials = scores * gemm.flop_fraction
            unfused.append(replace(gemm, batch=gemm.batch * cp_degree, flop_fraction=1.0))
            continue
        expert = gemm.kind in EXPERT_KINDS
        d, w = backward_gemms(gemm)
        f_form, d_form = gemm_form(gemm, rank, classify), gemm_form(d, rank, classify)
        w_form = gemm_form(w, rank, classify) if weight_gradients else zero_form()
        if expert:
            efwd, edgrad, ewgrad = efwd + f_form, edgrad + d_form, ewgrad + w_form
        else:
            fwd, dgrad, wgrad = fwd + f_form, dgrad + d_form, wgrad + w_form
            if gemm.kind in MLP_KINDS:
                mlp = mlp + f_form
    attention = zero_form()
    if flash_attention:
        overhead = flash_tile_overhead(gemms_seq(gemms) * cp_degree, cp_degree)
        if flash2_attention:  # FlashAttention-2's kernels where the chip has faster ones (flash2_speed)
            overhead /= rank.flash2_speed
        fwd_s, bwd_s = flash_seconds(attention_flop, exponentials, rank, fp8=fp8_attention)
        attention[ATTENTION] = overhead * fwd_s
        attention_bwd = zero_form()
        attention_bwd[ATTENTION] = overhead * bwd_s
    else:
        bf16 = replace(rank, bits8=False, peak_matmul_flop_per_s=rank.peak_16bit_flop_per_s)
        for g in unfused:
            attention = attention + gemm_form(g, bf16, classify)
        attention_bwd = UNFUSED_GEMM_BACKWARD_FACTOR * attention
        attention[MEMORY] += UNFUSED_SCORE_BYTES * scores / rank.hbm_bw_bytes_per_s
        attention_bwd[MEMORY] += UNFUSED_SCORE_BACKWARD_BYTES * scores / rank.hbm_bw_bytes_per_s
    elementwise = zero_form()
    elementwise[MEMORY] = (
        elementwise_bytes(shape, gemms, tokens, norm_tokens, tp_degree, rank) / rank.hbm_bw_bytes_per_s
    )
    return PassForms(
        forward=fwd + attention + elementwise,
        input_grad=dgrad + attention_bwd + 2.0 * elementwise,
        weight_grad=wgrad,
        gemm=fwd,
        attention=attention,
        expert_forward=efwd,
        expert_input_grad=edgrad,
        expert_weight_grad=ewgrad,
        expert_gemm=efwd,
        elementwise=elementwise,
        mlp_gemm=mlp,
    )


def flash_seconds(flop: float, exponentials: float, rank: Rank, *, fp8: bool = False) -> tuple[float, float]:
    """Forward and backward times of a fused attention core at peak: matmuls or exponentials, whichever binds.

    The kernel's matmuls run on the tensor cores (FP8 with Transformer Engine's FP8 dot-product attention) and
    its softmax exponentials on the special-function units, which are ~250x slower per operation (H100: 989
    TFLOP/s against 3.9 T exponentials/s, FlashAttention-3 sec. 3). FlashAttention-3/4 and cuDNN overlap the
    two (ping-pong scheduling), so a pass takes the longer of the two: the forward evaluates one exponential
    per score, the backward recomputes it once (Dao 2023, Algorithm 2) beside 2.5x the forward's matmuls.
    Hopper at head dim 128 stays matmul-bound; Blackwell runs near the balance, FP8 attention past it, and
    Blackwell Ultra doubles the exponential rate (NVIDIA 2025).
    """
    peak = rank.peak_matmul_flop_per_s if fp8 and rank.bits8 else rank.peak_16bit_flop_per_s
    matmul = flop / peak
    exp = exponentials / rank.exp_per_s if rank.exp_per_s else 0.0
    return max(matmul, exp), max(FLASH_BACKWARD_FACTOR * matmul, exp)


def gemms_seq(gemms: tuple[Gemm, ...]) -> int:
    """Keys per query of a layer's attention core on this rank (the score GEMM's N), 1 without attention.

    The local sequence length, or a packed document's local share (``workload.flops.layer_gemms``).
    """
    return next((g.n for g in gemms if g.kind is GemmKind.ATTENTION_SCORE), 1)


def flash_tile_overhead(seq_len: int, cp_degree: int) -> float:
    """Work of a causal FlashAttention kernel over its useful FLOPs (>= 1), from its tiling.

    FlashAttention walks each query tile over the key tiles it attends to (Dao 2023, Algorithm 1; 128-key tiles
    in FlashAttention-2/3). Per query tile and kernel launch it also loads the tile, finalises the softmax and
    writes the output (about ``FLASH_FIXED_TILES`` key-tile iterations of time), and it computes the masked
    diagonal tile in full (half a tile wasted). A causal query attends on average to ``seq/2`` keys, and context
    parallelism launches the kernel once per ring step, so the overhead is ``(fixed * cp + 1/2) / (seq/2/tile)``:
    15% at 4K tokens, 0.2% at 128K without CP.
    """
    key_tiles = max(seq_len / 2 / FLASH_TILE, 1.0)
    return 1.0 + (FLASH_FIXED_TILES * cp_degree + 0.5) / key_tiles


def head_forms(
    gemms: tuple[Gemm, ...], *, rank: Rank, classify: Efficiency, weight_gradients: bool = True
) -> PassForms:
    """Forms of the LM head and the loss (softmax cross-entropy over the local vocabulary shard)."""
    forward, dgrad, wgrad = zero_form(), zero_form(), zero_form()
    for gemm in gemms:
        forward = forward + gemm_form(gemm, rank, classify)
        d, w = backward_gemms(gemm)
        dgrad = dgrad + gemm_form(d, rank, classify)
        if weight_gradients:
            wgrad = wgrad + gemm_form(w, rank, classify)
    logits = sum(g.m * g.n for g in gemms)
    loss = zero_form()
    loss[MEMORY] = LOSS_BYTES_PER_LOGIT * logits / rank.hbm_bw_bytes_per_s
    empty = zero_form()
    return PassForms(
        forward=forward + loss,
        input_grad=dgrad + loss,
        weight_grad=wgrad,
        gemm=forward,
        attention=empty,
        expert_forward=empty,
        expert_input_grad=empty,
        expert_weight_grad=empty,
        expert_gemm=empty,
        elementwise=loss,
        mlp_gemm=empty,
    )


def is_8bit(precision: Precision) -> bool:
    """Whether matmuls run on 8-bit operands (FP8 or INT8)."""
    return precision in (Precision.FP8, Precision.INT8)
