"""Collectives of one parallel group on its placed topology levels (alpha-beta, ``perf.collectives``), for the
serving model; the training step model uses ``perf.links``, which adds each collective's link loads."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rainier.perf.collectives import Level


@dataclass(frozen=True, slots=True)
class GroupCost:
    """Collectives over one placed group as linear functions of the message size: ``slope * bytes + intercept``."""

    all_reduce: tuple[float, float] = (0.0, 0.0)
    reduce_scatter: tuple[float, float] = (0.0, 0.0)
    all_to_all: tuple[float, float] = (0.0, 0.0)
    p2p: tuple[float, float] = (0.0, 0.0)


def group_cost(levels: Sequence[Level]) -> GroupCost:
    """Coefficients of ``perf.comm``'s collectives over ``levels`` (innermost first).

    Reduce-scatter: ring on each level in turn, the buffer shrinking by each level's size (Thakur et al. 2005).
    All-reduce: reduce-scatter inside, ring or tree across the outermost level, all-gather back; ring and tree
    share the bandwidth term, so the faster one is the one with less latency. All-to-all: the share of the
    buffer leaving each level at that level's rate, one latency per peer. Send/receive: the innermost level.
    """
    if not levels:
        return GroupCost()
    rs_slope = rs_icpt = 0.0
    ar_slope = ar_icpt = 0.0
    a2a_slope = 0.0
    inside = 1.0
    n_total = float(math.prod(level.size for level in levels))
    for position, level in enumerate(levels):
        n = float(level.size)
        bw = level.ring_bw_bytes_per_s
        slope = (n - 1) / n / inside / bw
        rs_slope += slope
        rs_icpt += (n - 1) * level.alpha_s
        if position < len(levels) - 1:
            ar_slope += 2.0 * slope
            ar_icpt += 2.0 * (n - 1) * level.alpha_s
        else:
            ar_slope += 2.0 * slope
            ar_icpt += min(2.0 * (n - 1) * level.alpha_s, 2.0 * math.log2(n) * level.alpha_s)
        outside = inside * n
        a2a_slope += (outside - inside) / n_total / level.bw_bytes_per_s
        inside = outside
    a2a_icpt = (n_total - 1) * levels[-1].alpha_s
    first = levels[0]
    return GroupCost(
        all_reduce=(ar_slope, ar_icpt),
        reduce_scatter=(rs_slope, rs_icpt),
        all_to_all=(a2a_slope, a2a_icpt),
        p2p=(1.0 / first.bw_bytes_per_s, first.alpha_s),
    )
