"""Scalar pieces of the fused pass (``perf.fused``): one pipeline row's memory, one plan's offload, and numpy's
own summation order and minimum and maximum, so that the compiled loop gives numpy's bits.

Each takes and returns plain floats (no arrays), so numba inlines it into the loop at no cost. The arithmetic is
that of ``perf.memory.memory_per_rank`` (as its compiled loop, ``perf.memory_loop._memory``, runs it) and of
``perf.offload.prepare_offload`` and ``offload_time``, in the same order.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from rainier.perf.compute import FORWARD_SHARE
from rainier.perf.kernel import DUALPIPE, GPIPE, INTERLEAVED
from rainier.perf.offload import ACTIVATIONS, OPTIMIZER, WEIGHTS

FloatArray = NDArray[np.float64]

PAIRWISE_BLOCK = 128  # numpy's pairwise summation block: longer rows are not reproduced (perf.fused.fits)


def pairwise_sum(values: FloatArray, n: int) -> float:
    """``values[:n].sum()`` in numpy's order (pairwise summation, eight accumulators; n <= PAIRWISE_BLOCK)."""
    if n < 8:
        res = 0.0
        for k in range(n):
            res += values[k]
        return res
    r0, r1, r2, r3 = values[0], values[1], values[2], values[3]
    r4, r5, r6, r7 = values[4], values[5], values[6], values[7]
    k = 8
    while k < n - n % 8:
        r0 += values[k]
        r1 += values[k + 1]
        r2 += values[k + 2]
        r3 += values[k + 3]
        r4 += values[k + 4]
        r5 += values[k + 5]
        r6 += values[k + 6]
        r7 += values[k + 7]
        k += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while k < n:
        res += values[k]
        k += 1
    return float(res)


def minimum(a: float, b: float) -> float:
    """``np.minimum`` of two floats (the first where equal or NaN)."""
    return a if (a <= b or a != a) else b


def maximum(a: float, b: float) -> float:
    """``np.maximum`` of two floats (the first where equal or NaN)."""
    return a if (a >= b or a != a) else b


_maximum_c = maximum  # replaced by its compiled version by perf.fused_loop's loader


def held_micro_batches(schedule: int, chunks: float, pp: float, rank: float, m: float) -> float:
    """Micro-batches whose activations a pipeline row holds at once (``perf.memory.memory_per_rank``): the
    schedule's in-flight count at the row's first rank."""
    if schedule == INTERLEAVED:
        c = max(chunks, 1.0)
        return max(min((2.0 * (pp - rank - 1.0) + (chunks - 1.0) * pp + 1.0) / c, m), 1.0)
    if schedule == DUALPIPE:
        return min(pp + 1.0, m)
    if schedule == GPIPE:
        return m
    return max(min(pp - rank, m), 1.0)


def row_memory(
    weights: float,  # the row's weight, gradient and optimizer bytes under the plan's ZeRO stage (and LoRA)
    gradients: float,
    optimizer: float,
    held: float,  # held_micro_batches of the row
    share: float,  # of the row's layers under the plan's recompute (full recompute of N layers)
    dense_layer: float,  # a layer's activation bytes under the plan's recompute, and without it
    moe_layer: float,
    dense_kept: float,
    moe_kept: float,
    num_dense: float,
    num_moe: float,
    logits: float,  # the row's logits bytes (the head's count times one head's)
    reserve_bytes: float,
    reserve_fraction: float,
) -> tuple[float, float, float]:
    """(activations, buffers, total) bytes of one pipeline rank row whose weight, gradient and optimizer bytes
    are known (``perf.fused_shared`` finds them once per run of plans, for each ZeRO stage)."""
    dense_row = share * dense_layer + (1.0 - share) * dense_kept
    moe_row = share * moe_layer + (1.0 - share) * moe_kept
    a = (num_dense * dense_row + num_moe * moe_row) * held + logits
    subtotal = weights + gradients + optimizer + a
    buffers = reserve_bytes + reserve_fraction * subtotal
    return a, buffers, subtotal + buffers


def offload(
    mask: int,  # perf.offload bit mask, > 0
    weights: float,  # the plan's memory without offload
    gradients: float,
    optimizer: float,
    activations: float,
    keep: float,  # the share of offloaded weights and activations kept on the device
    m: float,
    per_micro_batch: float,  # the fullest row's activation bytes of one micro-batch
    compute_s: float,
    recompute_s: float,
    rate: float,  # host-link bytes per second (inf: none)
    reserve_bytes: float,
    reserve_fraction: float,
) -> tuple[float, float, float, float, float, float]:
    """(device weights, optimizer, activations, buffers; host bytes; exposed host-link seconds) of a plan that
    offloads."""
    on_weights = (mask & WEIGHTS) > 0
    on_optimizer = (mask & OPTIMIZER) > 0
    on_activations = (mask & ACTIVATIONS) > 0
    forward_in = m * weights if on_weights else 0.0
    forward_out = m * per_micro_batch if on_activations else 0.0
    backward_in = forward_in + forward_out
    step_bytes = optimizer if on_optimizer else 0.0
    device_weights = weights * keep if on_weights else weights
    device_optimizer = 0.0 if on_optimizer else optimizer
    device_activations = activations * keep if on_activations else activations
    subtotal = device_weights + gradients + device_optimizer + device_activations
    buffers = reserve_bytes + reserve_fraction * subtotal
    host = (weights - device_weights) + (optimizer - device_optimizer) + (activations - device_activations)
    forward = _maximum_c(forward_in, forward_out) / rate - FORWARD_SHARE * compute_s
    backward = backward_in / rate - (1.0 - FORWARD_SHARE) * compute_s - recompute_s
    exposed = _maximum_c(forward, 0.0) + _maximum_c(backward, 0.0) + step_bytes / rate
    return device_weights, device_optimizer, device_activations, buffers, host, exposed
