"""Collectives of one parallel group on its placed topology levels (alpha-beta, ``perf.collectives``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rainier.parallel.placement import LinkLevel
from rainier.perf.collectives import (
    Level,
    hierarchical_all_reduce_s,
    hierarchical_reduce_scatter_s,
    send_recv_s,
)
from rainier.perf.efficiency import Efficiency


def effective_levels(levels: Sequence[LinkLevel], eff: Efficiency) -> list[Level]:
    """Placed levels with achieved bus bandwidth (scale-up or scale-out efficiency applied)."""
    return [
        Level(
            size=level.size,
            bw_bytes_per_s=level.bw_bytes_per_s * (eff.scale_out if level.scale_out else eff.scale_up),
            alpha_s=level.latency_s,
            bidirectional_ring=level.bidirectional_ring,
        )
        for level in levels
    ]


def all_reduce_s(size_bytes: float, levels: Sequence[Level]) -> float:
    """Hierarchical all-reduce over the group's levels (0 for a group of one)."""
    return hierarchical_all_reduce_s(size_bytes, levels) if levels else 0.0


def reduce_scatter_s(size_bytes: float, levels: Sequence[Level]) -> float:
    """Hierarchical reduce-scatter (an all-gather costs the same)."""
    return hierarchical_reduce_scatter_s(size_bytes, levels) if levels else 0.0


def all_to_all_hier_s(size_bytes: float, levels: Sequence[Level]) -> float:
    """All-to-all over nested levels: the share of each rank's data that must cross each level, at its rate.

    Of the ``(n-1)/n`` of its buffer a rank sends away, the part going to peers outside level ``i`` but inside
    level ``i+1`` crosses level ``i+1``'s links; latency is one step per peer at the outermost level's alpha.
    """
    if not levels:
        return 0.0
    n = math.prod(level.size for level in levels)
    total = 0.0
    inside = 1
    for level in levels:
        outside = inside * level.size
        share = (outside - inside) / n
        total += size_bytes * share / level.bw_bytes_per_s  # pairwise exchange (Thakur et al. 2005, sec. 4.4)
        inside = outside
    return total + (n - 1) * levels[-1].alpha_s


def p2p_s(size_bytes: float, levels: Sequence[Level]) -> float:
    """Send/receive between neighbouring ranks of a group (pipeline stages): the innermost level it spans."""
    if not levels:
        return 0.0
    level = levels[0]
    return float(send_recv_s(size_bytes, level.bw_bytes_per_s, level.alpha_s))
