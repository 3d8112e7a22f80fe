"""Pipeline schedules over arrays of plans: the bubble, and the activations each rank keeps in flight.

Times are per pipeline rank and micro-batch, split into forward ``F``, input-gradient ``B`` (recompute
included) and weight-gradient ``W`` passes. With uneven ranks the pipeline's steady state runs at the slowest
rank, ``m * t_max``, and filling and draining costs the other ranks' passes once; for identical ranks this is
the familiar ``(p - 1)`` pass times. The schedules differ in what fills the fill/drain:

=================  =========================================================  ==============================
schedule           bubble (identical ranks)                                   source
=================  =========================================================  ==============================
1F1B, GPipe        ``(p-1) (F + B + W)``                                      Narayanan et al. 2021, sec. 2.2
interleaved        ``(p-1) (F + B + W) / v``                                  Narayanan et al. 2021, sec. 2.2.2
ZB-H1 (ZB1P)       ``(p-1) (F + B - W)``                                      Qi et al. 2023; DualPipe README
ZB-V               ``(p-1) (F + B - 2W) / 2`` (two half-size chunks)          Qi et al. 2024 (ZB-V, V-shape)
DualPipe           ``(p/2-1) (F&B + B_full - 3W)`` = ``(p/2-1)(F + 2B - W)``  github.com/deepseek-ai/DualPipe
=================  =========================================================  ==============================

(negative brackets are clipped at zero). Activations in flight on rank ``i`` (0-based): 1F1B, ZB-H1 and ZB-V
hold ``min(p - i, m)`` micro-batches' worth (ZB-V: "1x of 1F1B"); interleaved 1F1B warms up
``2(p - i - 1) + (v - 1) p`` chunks plus the one running (Megatron-LM ``schedules.py``), i.e.
``(2(p-i-1) + (v-1)p + 1) / v`` rank-loads; DualPipe ``p + 1`` (two chunks per rank, one per direction;
README); GPipe all ``m``. DualPipe also keeps two copies of the rank's stage parameters (one per direction).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from rainier.parallel.plan import Schedule
from rainier.perf.columns import SCHEDULE_CODES

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

ONE_F_ONE_B = SCHEDULE_CODES[Schedule.ONE_F_ONE_B]
INTERLEAVED = SCHEDULE_CODES[Schedule.INTERLEAVED]
ZERO_BUBBLE = SCHEDULE_CODES[Schedule.ZERO_BUBBLE]
GPIPE = SCHEDULE_CODES[Schedule.GPIPE]
ZB_V = SCHEDULE_CODES[Schedule.ZB_V]
DUALPIPE = SCHEDULE_CODES[Schedule.DUALPIPE]


def _fill_drain(per_rank: FloatArray, count: FloatArray, slowest: IntArray) -> FloatArray:
    """Sum of a per-rank quantity over every rank but one copy of the slowest rank's (rows x counts)."""
    total = (np.maximum(per_rank, 0.0) * count).sum(axis=1)
    own = np.take_along_axis(np.maximum(per_rank, 0.0), slowest[:, None], axis=1)[:, 0]
    out: FloatArray = np.maximum(total - own, 0.0)
    return out


def pipeline_time(
    schedule: IntArray,
    pp: FloatArray,
    chunks: FloatArray,
    m: FloatArray,
    forward: FloatArray,
    input_grad: FloatArray,
    weight_grad: FloatArray,
    count: FloatArray,
) -> tuple[FloatArray, FloatArray, IntArray]:
    """(steady time ``m * t_max``, bubble, slowest row) of the pipeline part of a step.

    ``forward``, ``input_grad`` and ``weight_grad`` are (plans x rows) times of one micro-batch per rank row,
    ``count`` how many ranks each row stands for (0 for padding rows).
    """
    per_mb = forward + input_grad + weight_grad
    masked = np.where(count > 0, per_mb, -np.inf)
    slowest = np.argmax(masked, axis=1)
    t_max = np.take_along_axis(per_mb, slowest[:, None], axis=1)[:, 0]
    steady = m * t_max
    plain = _fill_drain(per_mb, count, slowest)
    zb1 = _fill_drain(forward + input_grad - weight_grad, count, slowest)
    zbv = 0.5 * _fill_drain(forward + input_grad - 2.0 * weight_grad, count, slowest)
    dual_share = np.where(pp > 1, np.maximum(pp / 2.0 - 1.0, 0.0) / np.maximum(pp - 1.0, 1.0), 0.0)
    dual = dual_share * _fill_drain(forward + 2.0 * input_grad - weight_grad, count, slowest)
    bubble = np.select(
        [schedule == INTERLEAVED, schedule == ZERO_BUBBLE, schedule == ZB_V, schedule == DUALPIPE],
        [plain / np.maximum(chunks, 1.0), np.minimum(zb1, plain), np.minimum(zbv, plain), np.minimum(dual, plain)],
        plain,
    )
    return steady, np.where(pp > 1, bubble, 0.0), slowest


def in_flight(schedule: IntArray, pp: FloatArray, chunks: FloatArray, m: FloatArray, rank: FloatArray) -> FloatArray:
    """Micro-batches' worth of a rank's activations held at its peak (rank index ``rank``, 0-based)."""
    plain = np.minimum(pp - rank, m)
    interleaved = np.minimum((2.0 * (pp - rank - 1.0) + (chunks - 1.0) * pp + 1.0) / np.maximum(chunks, 1.0), m)
    return np.select(
        [schedule == INTERLEAVED, schedule == DUALPIPE, schedule == GPIPE],
        [np.maximum(interleaved, 1.0), np.minimum(pp + 1.0, m), m],
        np.maximum(plain, 1.0),
    )


def parameter_copies(schedule: IntArray) -> FloatArray:
    """Copies of its stage's parameters a rank holds: 2 for DualPipe (one per direction), else 1."""
    return np.where(schedule == DUALPIPE, 2.0, 1.0)
