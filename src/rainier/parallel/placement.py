"""Placement of the parallel axes of a plan onto the levels of a cluster's topology.

Ranks are numbered with tensor parallelism fastest, then context, then data (expert parallelism carved out of
the data ranks next to context), then pipeline slowest: Megatron-LM's default order ``tp-cp-ep-dp-pp``. Ranks
fill the levels of the machine innermost first: the logical cores of one chip (``unit=core`` plans), the
scale-up domain (its torus axes in order, or one switched level), then the scale-out network. A parallel group
whose members are ``stride`` ranks apart therefore spans, at each level, the digits of that level between
``stride`` and ``stride * degree``; each spanned level becomes one ring of a hierarchical collective.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

from rainier.hardware import Cluster, Topology
from rainier.parallel.plan import DegreeUnit, Plan

# Cores of one chip talk through the chip's own memory system; this latency is a typical on-device DMA
# synchronisation cost (Neuron's intra-node per-hop latency is 1-2 us, shared/reference/hardware.md N-intranode).
ON_CHIP_LATENCY_S = 1e-6


@dataclass(frozen=True, slots=True, kw_only=True)
class TierCrossing:
    """A scale-out tier a group's traffic crosses: its link class, members per lower group, oversubscription."""

    link: str
    members_per_group: int  # q: group members inside one group below this tier
    oversubscription: float  # product of the oversubscriptions up to and including this tier

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkLevel:
    """One level of the topology a parallel group spans: ranks at that level, bandwidth, latency.

    ``bw_bytes_per_s`` is what a ring at this level gets per rank and direction before efficiency: the link
    rate, reduced at the scale-out level by the tightest tier it crosses (``tiers``). ``link`` names the link
    class the level's traffic loads and ``link_bw_bytes_per_s`` that class's per-rank rate.
    """

    name: str
    size: int
    bw_bytes_per_s: float  # per rank, per direction, before efficiency (slowest edge of the ring)
    latency_s: float
    bidirectional_ring: bool = False
    scale_out: bool = False
    link: str = ""
    link_bw_bytes_per_s: float = 0.0
    torus_hops: float = 1.0  # mean hops between two members (torus axes; 1 on a switch or NIC)
    tiers: tuple[TierCrossing, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tiers"] = [t.to_dict() for t in self.tiers]
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class AxisPlacement:
    """Where one parallel axis (tp, cp, ep, dp, pp) lands on the topology, innermost level first."""

    axis: str
    degree: int
    stride: int
    levels: tuple[LinkLevel, ...]
    warning: str = ""

    @property
    def slowest(self) -> str:
        return self.levels[-1].name if self.levels else "none"

    @property
    def crosses_scale_out(self) -> bool:
        return any(level.scale_out for level in self.levels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "axis": self.axis,
            "degree": self.degree,
            "levels": [level.to_dict() for level in self.levels],
            "slowest_level": self.slowest,
            "warning": self.warning,
        }


@dataclass(frozen=True, slots=True)
class _Capacity:
    """A topology level before it is cut to a group: how many positions, at what per-rank bandwidth."""

    name: str
    size: int
    bw_bytes_per_s: float
    latency_s: float
    bidirectional_ring: bool
    scale_out: bool
    wraparound: bool = False
    torus: bool = False


@dataclass(frozen=True, slots=True)
class LinkClass:
    """A kind of link every device has (or a share of one): its name, per-rank rate, and whether it is scale-out.

    Tier classes carry the per-rank share of a tier's uplinks (the NIC rate over the oversubscriptions up to
    that tier); ``group_ranks`` is the size in ranks of the groups joined *below* the tier.
    """

    name: str
    bw_bytes_per_s: float
    scale_out: bool
    group_ranks: int = 0
    oversubscription: float = 1.0


def ranks_per_device(plan: Plan, cluster: Cluster) -> int:
    """Ranks per device: 1, or the accelerator's logical cores for NeuronCore-unit plans."""
    return cluster.accelerator.num_logical_cores if plan.degrees_unit is DegreeUnit.CORE else 1


def _machine_levels(cluster: Cluster, cores: int) -> list[_Capacity]:
    """The machine's levels, innermost first, with per-rank bandwidth (devices' links shared by their cores)."""
    accelerator = cluster.accelerator
    system = cluster.system
    levels: list[_Capacity] = []
    if cores > 1:
        # Cores of one chip exchange data through its HBM (read + write), each core with its share.
        levels.append(
            _Capacity("chip", cores, accelerator.hbm_bw_bytes_per_s / (2 * cores), ON_CHIP_LATENCY_S, False, False)
        )
    domain = cluster.scale_up_domain_devices
    if system.topology is Topology.TORUS:
        sizes = torus_slice(domain, tuple(axis.size for axis in system.axes))
        multiple = system.slice_wraparound_multiple
        # A sliced torus's axes, shortest first: XLA's mesh builder gives the innermost (fastest-varying) mesh
        # axes the shortest physical axes, so a tensor-parallel group fills a whole ring where it can.
        order = sorted(range(len(sizes)), key=lambda i: sizes[i]) if domain < system.num_devices else range(len(sizes))
        for i in order:
            axis, size = system.axes[i], sizes[i]
            if size < 2:
                continue
            wraps = axis.wraparound and (size == axis.size or (multiple is not None and size % multiple == 0))
            levels.append(
                _Capacity(
                    f"{system.scale_up.id}:{axis.name}",
                    size,
                    axis.link_bw_bytes_per_s_per_direction / cores,
                    axis.latency_s,
                    size > 2,
                    False,
                    wraps,
                    True,
                )
            )
    elif domain > 1:
        levels.append(
            _Capacity(
                system.scale_up.id,
                domain,
                system.scale_up_bw_bytes_per_s / cores,
                system.scale_up.latency_s,
                False,
                False,
            )
        )
    num_domains = math.ceil(cluster.num_devices / max(domain, 1))
    if num_domains > 1:
        levels.append(_scale_out_level(cluster, cores, num_domains))
    return levels


@functools.lru_cache(maxsize=256)
def torus_slice(devices: int, axis_sizes: tuple[int, ...]) -> tuple[int, ...]:
    """The per-axis lengths of a ``devices``-chip slice of a torus with ``axis_sizes``: the most compact exact
    factorisation (smallest sum of lengths, as TPU slice shapes are), else the axes filled in order."""
    best: tuple[int, ...] | None = None

    def walk(i: int, left: int, chosen: tuple[int, ...]) -> None:
        nonlocal best
        if i == len(axis_sizes) - 1:
            if left <= axis_sizes[i]:
                found = (*chosen, left)
                if best is None or sum(found) < sum(best):
                    best = found
            return
        for size in range(1, min(left, axis_sizes[i]) + 1):
            if left % size == 0:
                walk(i + 1, left // size, (*chosen, size))

    if devices >= math.prod(axis_sizes):
        return axis_sizes
    walk(0, devices, ())
    if best is not None:
        return best
    out, covered = [], 1
    for size in axis_sizes:
        length = max(1, min(size, math.ceil(devices / covered)))
        out.append(length)
        covered *= length
    return tuple(out)


def _scale_out_level(cluster: Cluster, cores: int, num_domains: int) -> _Capacity:
    system = cluster.system
    nic = system.nic_bw_bytes_per_s_per_device
    fabric = system.scale_out
    name = fabric.id if fabric is not None else "scale-out"
    # A system without published NICs still has a network; without data we use its scale-up fabric's latency and
    # one-tenth of its scale-up bandwidth, flagged by the name.
    bw = nic if nic is not None else system.scale_up_bw_bytes_per_s / 10
    latency = fabric.latency_s if fabric is not None else system.scale_up.latency_s
    return _Capacity(name if nic is not None else f"{name} (assumed)", num_domains, bw / cores, latency, False, True)


def tier_link(name: str) -> str:
    """The link-class name of a scale-out tier's uplinks."""
    return f"tier:{name}"


def link_classes(cluster: Cluster, cores: int) -> tuple[LinkClass, ...]:
    """Every link class of a device of ``cluster``, per rank (``cores`` ranks per device), innermost first."""
    out = [LinkClass(level.name, level.bw_bytes_per_s, level.scale_out) for level in _machine_levels(cluster, cores)]
    if any(c.scale_out for c in out):
        nic = next(c for c in out if c.scale_out)
        below = cluster.scale_up_domain_devices
        cumulative = 1.0
        for tier in cluster.network_tiers:
            cumulative *= tier.oversubscription
            out.append(
                LinkClass(
                    tier_link(tier.name),
                    nic.bw_bytes_per_s / cumulative,
                    True,
                    group_ranks=below * cores,
                    oversubscription=cumulative,
                )
            )
            below = tier.devices_per_group
    return tuple(out)


def _tier_crossings(
    cluster: Cluster, cores: int, spacing: int, extent: int, degree: int
) -> tuple[tuple[TierCrossing, ...], float]:
    """Tiers crossed by a scale-out group of ``degree`` members ``spacing`` ranks apart (``extent`` ranks wide).

    Returns the crossings and the worst latency of a crossed tier (0 when none).
    """
    crossings: list[TierCrossing] = []
    latency = 0.0
    below = cluster.scale_up_domain_devices * cores
    cumulative = 1.0
    for tier in cluster.network_tiers:
        cumulative *= tier.oversubscription
        if extent > below:
            members = max(1, min(degree, below // max(spacing, 1)))
            crossings.append(
                TierCrossing(link=tier_link(tier.name), members_per_group=members, oversubscription=cumulative)
            )
            latency = max(latency, tier.latency_s)
        below = tier.devices_per_group * cores
    return tuple(crossings), latency


def _mean_ring_hops(span: int, wraparound: bool) -> float:
    """Mean hop count between two distinct members of a ring (wraparound) or line of ``span`` positions."""
    if span < 2:
        return 1.0
    if wraparound:
        return sum(min(d, span - d) for d in range(1, span)) / (span - 1)
    return (span + 1) / 3.0


def place_axis(
    axis: str, degree: int, stride: int, levels: list[_Capacity], cluster: Cluster, cores: int
) -> AxisPlacement:
    """Cut the machine's levels to the part a group of ``degree`` ranks, ``stride`` apart, spans."""
    spans: list[LinkLevel] = []
    below = 1  # ranks in all levels inside the current one
    lo, hi = stride, stride * degree
    for level in levels:
        above = below * level.size
        span = math.ceil(min(above, hi) / max(below, lo)) if min(above, hi) > max(below, lo) else 1
        span = min(span, level.size)
        if span > 1:
            bw, latency, name = level.bw_bytes_per_s, level.latency_s, level.name
            tiers: tuple[TierCrossing, ...] = ()
            if level.scale_out:
                # The group's real extent: members ``spacing`` ranks apart (the inner levels' ranks, or the
                # stride when that is wider), ``span`` of them at this level.
                spacing = max(below, lo)
                tiers, tier_latency = _tier_crossings(cluster, cores, spacing, span * spacing, span)
                slowest = max((t.oversubscription / t.members_per_group for t in tiers), default=1.0)
                bw /= max(1.0, slowest)
                latency = max(latency, tier_latency)
                if tiers:
                    name = f"{name}/{tiers[-1].link.removeprefix('tier:')}"
            spans.append(
                LinkLevel(
                    name=name,
                    size=span,
                    bw_bytes_per_s=bw,
                    latency_s=latency,
                    # Both link directions carry a torus group's collective, ring or line alike: on a line of
                    # n the middle link carries n/2 shards each way, as a ring's links carry (n-1)/2.
                    bidirectional_ring=level.bidirectional_ring and span > 2 and (level.torus or span == level.size),
                    scale_out=level.scale_out,
                    link=level.name,
                    link_bw_bytes_per_s=level.bw_bytes_per_s,
                    torus_hops=_mean_ring_hops(span, level.wraparound and span == level.size) if level.torus else 1.0,
                    tiers=tiers,
                )
            )
        below = above
    warning = ""
    if axis in ("tp", "cp", "ep") and any(s.scale_out for s in spans):
        warning = (
            f"{axis}={degree} crosses the scale-out network ({spans[-1].name}); keep it inside the scale-up domain"
        )
    elif axis == "tp" and len(spans) > 1 and cores == 1:
        warning = f"tp={degree} spans {len(spans)} topology levels"
    return AxisPlacement(axis=axis, degree=degree, stride=stride, levels=tuple(spans), warning=warning)


def place(plan: Plan, cluster: Cluster) -> tuple[AxisPlacement, ...]:
    """Placement of tp, cp, ep, dp and pp (in that order, innermost first) on ``cluster``.

    An HSDP plan (``shard_degree`` s below dp) adds its two parts of the dp axis: ``dp_shard``, the innermost s
    data-parallel ranks (ZeRO's gathers and reduce-scatters), and ``dp_replica``, the dp/s shard groups a shard
    group apart (the gradient shard's all-reduce).
    """
    cores = ranks_per_device(plan, cluster)
    levels = _machine_levels(cluster, cores)
    tp, cp, dp, pp = plan.tp_degree, plan.cp_degree, plan.dp_degree, plan.pp_degree
    axes = (
        place_axis("tp", tp, 1, levels, cluster, cores),
        place_axis("cp", cp, tp, levels, cluster, cores),
        place_axis("ep", plan.ep_degree, tp * cp, levels, cluster, cores),
        place_axis("dp", dp, tp * cp, levels, cluster, cores),
        place_axis("pp", pp, tp * cp * dp, levels, cluster, cores),
    )
    s = plan.shard_degree
    if s is None or s >= dp:
        return axes
    return (
        *axes,
        place_axis("dp_shard", s, tp * cp, levels, cluster, cores),
        place_axis("dp_replica", dp // s, tp * cp * s, levels, cluster, cores),
    )
