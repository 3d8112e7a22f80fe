"""Collectives of one placed group: their duration alone, and the load they put on each link class.

A placed group (``parallel.placement``) spans levels of the machine, innermost first; each level is a link class
of the device (chip memory, a torus axis or the scale-up switch port, the NIC) and the scale-out level may also
cross network tiers, whose uplinks are link classes of their own. For every collective this module gives

- its duration when it runs alone: the alpha-beta cost of the hierarchical algorithm (``perf.collectives``:
  reduce-scatter inside each level in turn, ring or tree across the outermost, all-gather back; Thakur et al.
  2005), with each level's ring running at its slowest edge (a ring crossing an oversubscribed tier with ``q``
  members per lower group runs at ``min(1, q/oversubscription)`` of the NIC rate);
- its *load*: seconds of each link class per byte of message. Transfers that run at the same time add their
  loads on a shared link class, so a window of the step can never be shorter than its busiest link's load
  (``perf.batch``). A ring sends ``(n-1)/n`` of its buffer per level through that level's links; an all-to-all
  sends the share of its peers outside each level, times the mean hop count on a torus axis; a tier's uplinks
  carry the crossing share (``1/q`` of a ring's or pipeline's sends, ``(n - q)/n`` of an all-to-all's) at the
  tier's per-rank rate (NIC rate over the oversubscriptions up to it).

Everything is linear in the message size once the group is placed, so each collective is a slope and intercept
(duration) plus a vector of slopes (loads): the vectorised step model evaluates millions of plans from them.
Slopes are kept at full link rate, split into the scale-up and the scale-out part, so that the collective
efficiencies (``Efficiency.scale_up`` / ``scale_out``) divide them only when a step is assembled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from rainier.parallel.placement import LinkLevel

FloatArray = NDArray[np.float64]
KINDS = ("all_reduce", "reduce_scatter", "all_to_all", "p2p", "ring_step")


@dataclass(frozen=True, slots=True)
class Collective:
    """One collective over a placed group at full link rate.

    ``duration = slope_up / scale_up + slope_out / scale_out) * bytes + intercept`` and ``load = loads * bytes``
    (each column divided by its class's efficiency), with ``slope_up`` spent on scale-up (and on-chip) levels and
    ``slope_out`` at the scale-out level.
    """

    slope_up: float = 0.0
    slope_out: float = 0.0
    intercept: float = 0.0
    loads: FloatArray = field(default_factory=lambda: np.zeros(0))


@dataclass(frozen=True, slots=True)
class GroupLinks:
    """Every collective kind of one placed group (see :data:`KINDS`)."""

    all_reduce: Collective
    reduce_scatter: Collective  # also all-gather: same traffic
    all_to_all: Collective
    p2p: Collective  # one send to the next member (pipeline stages)
    ring_step: Collective  # one step of a ring exchange over the whole group (context-parallel KV rotation)


def _split(slope: float, level: LinkLevel) -> tuple[float, float]:
    return (0.0, slope) if level.scale_out else (slope, 0.0)


def group_links(levels: Sequence[LinkLevel], index: Mapping[str, int]) -> GroupLinks:
    """The collectives of a group placed on ``levels`` (innermost first); ``index`` maps link class -> column."""
    width = len(index)

    def zeros() -> FloatArray:
        return np.zeros(width)

    if not levels:
        empty = Collective(loads=zeros())
        return GroupLinks(empty, empty, empty, empty, empty)

    rs_up = rs_out = rs_icpt = ar_icpt = 0.0
    rs_loads, a2a_loads = zeros(), zeros()
    a2a_up = a2a_out = 0.0
    inside = 1.0
    n_total = float(math.prod(level.size for level in levels))
    for position, level in enumerate(levels):
        n = float(level.size)
        ring_factor = 2.0 if level.bidirectional_ring else 1.0
        ring_bw = level.bw_bytes_per_s * ring_factor
        class_bw = (level.link_bw_bytes_per_s or level.bw_bytes_per_s) * ring_factor
        share = (n - 1) / n / inside  # bytes per message byte a rank sends at this level (reduce-scatter)
        slope = share / ring_bw
        up, out = _split(slope, level)
        rs_up, rs_out = rs_up + up, rs_out + out
        rs_icpt += (n - 1) * level.latency_s
        column = index[level.link or level.name]
        rs_loads[column] += share / class_bw
        for tier in level.tiers:
            rs_loads[index[tier.link]] += share / class_bw * tier.oversubscription / tier.members_per_group
        if position < len(levels) - 1:
            ar_icpt += 2.0 * (n - 1) * level.latency_s
        else:
            ar_icpt += min(2.0 * (n - 1) * level.latency_s, 2.0 * math.log2(n) * level.latency_s)
        # All-to-all: the share of peers outside this level's inner groups, over the hops it travels.
        outside = inside * n
        crossing = (outside - inside) / n_total
        a2a_bw = level.bw_bytes_per_s * (2.0 if level.torus_hops > 1.0 else 1.0)
        a2a_class = (level.link_bw_bytes_per_s or level.bw_bytes_per_s) * (2.0 if level.torus_hops > 1.0 else 1.0)
        part = crossing * level.torus_hops / a2a_bw
        a2a_loads[column] += crossing * level.torus_hops / a2a_class
        tier_parts = []
        for tier in level.tiers:
            remote = max(0.0, (n_total - tier.members_per_group * inside) / n_total)
            tier_load = remote * tier.oversubscription / a2a_class
            a2a_loads[index[tier.link]] += tier_load
            tier_parts.append(tier_load)
        part = max(part, *tier_parts) if tier_parts else part
        up, out = _split(part, level)
        a2a_up, a2a_out = a2a_up + up, a2a_out + out
        inside = outside
    a2a_icpt = (n_total - 1) * levels[-1].latency_s

    def point_to_point(level: LinkLevel) -> Collective:
        loads = zeros()
        class_bw = level.link_bw_bytes_per_s or level.bw_bytes_per_s
        loads[index[level.link or level.name]] += 1.0 / class_bw
        for tier in level.tiers:
            loads[index[tier.link]] += tier.oversubscription / tier.members_per_group / class_bw
        up, out = _split(1.0 / level.bw_bytes_per_s, level)
        return Collective(up, out, level.latency_s, loads)

    return GroupLinks(
        all_reduce=Collective(2.0 * rs_up, 2.0 * rs_out, ar_icpt, 2.0 * rs_loads),
        reduce_scatter=Collective(rs_up, rs_out, rs_icpt, rs_loads),
        all_to_all=Collective(a2a_up, a2a_out, a2a_icpt, a2a_loads),
        p2p=point_to_point(levels[0]),
        ring_step=point_to_point(levels[-1]),
    )
