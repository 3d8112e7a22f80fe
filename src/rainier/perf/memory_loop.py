"""``perf.memory.memory_per_rank`` as one compiled loop (numba): the fullest pipeline row of each plan.

The same arithmetic as the numpy path of ``perf.memory`` (``tests/perf/test_kernel.py`` checks that both
agree); kept apart from the assembly loop of ``perf.kernel``, whose schedule codes it shares. numba is imported on
the first call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rainier.perf.kernel import DUALPIPE, GPIPE, INTERLEAVED

FloatArray = NDArray[np.float64]


def _memory(
    rows: Any,  # ROW_FIELDS: plans x row slots each
    dense_dp: FloatArray,
    expert_dp: FloatArray,
    zero: FloatArray,
    lora: FloatArray,
    copies: FloatArray,
    dense_layer: FloatArray,
    moe_layer: FloatArray,
    dense_kept: FloatArray,  # a layer's bytes without recompute (the layers full recompute of N layers skips)
    moe_kept: FloatArray,
    schedule: FloatArray,
    pp: FloatArray,
    chunks: FloatArray,
    m: FloatArray,
    logits: FloatArray,
    state: FloatArray,  # bytes per parameter: weight, gradient, optimizer
    reserve: FloatArray,  # fixed bytes, fraction
    out: FloatArray,  # plans x (weights, gradients, optimizer, activations, buffers)
) -> None:
    """``perf.memory.memory_per_rank`` (see there) as one loop: the fullest pipeline row of each plan."""
    n = dense_dp.shape[0]
    width = rows[0].shape[1]
    for i in range(n):
        best = -np.inf
        z = zero[i]
        for r in range(width):
            if rows[3][i, r] <= 0:
                continue
            nd, nm, head, rank = rows[0][i, r], rows[1][i, r], rows[2][i, r], rows[4][i, r]
            pd, pe = rows[5][i, r], rows[6][i, r]
            copy = copies[i]
            w = copy * state[0] * ((pd / dense_dp[i] if z >= 3 else pd) + (pe / expert_dp[i] if z >= 3 else pe))
            if lora[i] > 0:
                g = 0.0
                o = 0.0
            else:
                g = copy * state[1] * ((pd / dense_dp[i] if z >= 2 else pd) + (pe / expert_dp[i] if z >= 2 else pe))
                o = copy * state[2] * ((pd / dense_dp[i] if z >= 1 else pd) + (pe / expert_dp[i] if z >= 1 else pe))
            code = int(schedule[i])
            if code == INTERLEAVED:
                c = max(chunks[i], 1.0)
                held = max(min((2.0 * (pp[i] - rank - 1.0) + (chunks[i] - 1.0) * pp[i] + 1.0) / c, m[i]), 1.0)
            elif code == DUALPIPE:
                held = min(pp[i] + 1.0, m[i])
            elif code == GPIPE:
                held = m[i]
            else:
                held = max(min(pp[i] - rank, m[i]), 1.0)
            share = rows[7][i, r]
            dense_row = share * dense_layer[i] + (1.0 - share) * dense_kept[i]
            moe_row = share * moe_layer[i] + (1.0 - share) * moe_kept[i]
            a = (nd * dense_row + nm * moe_row) * held + head * logits[i]
            subtotal = w + g + o + a
            buffers = reserve[0] + reserve[1] * subtotal
            total = subtotal + buffers
            if total > best:
                best = total
                out[i, 0], out[i, 1], out[i, 2], out[i, 3], out[i, 4] = w, g, o, a, buffers


_COMPILED: dict[str, Callable[..., None]] = {}


def memory_kernel(*args: Any) -> None:
    """The compiled :func:`_memory` (numba must be installed: ``perf.kernel.AVAILABLE``)."""
    if not _COMPILED:
        import numba

        _COMPILED["memory"] = numba.njit(cache=True, nogil=True)(_memory)
    _COMPILED["memory"](*args)
