"""Placement of the parallel axes of a plan onto the levels of a cluster's topology.

Ranks are numbered with tensor parallelism fastest, then context, then data (expert parallelism carved out of
the data ranks next to context), then pipeline slowest: Megatron-LM's default order ``tp-cp-ep-dp-pp``. Ranks
fill the levels of the machine innermost first: the logical cores of one chip (``unit=core`` plans), the
scale-up domain (its torus axes in order, or one switched level), then the scale-out network. A parallel group
whose members are ``stride`` ranks apart therefore spans, at each level, the digits of that level between
``stride`` and ``stride * degree``; each spanned level becomes one ring of a hierarchical collective.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from rainier.hardware import Cluster, Topology
from rainier.parallel.plan import DegreeUnit, Plan

# Cores of one chip talk through the chip's own memory system; this latency is a typical on-device DMA
# synchronisation cost (Neuron's intra-node per-hop latency is 1-2 us, shared/reference/hardware.md N-intranode).
ON_CHIP_LATENCY_S = 1e-6


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkLevel:
    """One level of the topology a parallel group spans: ranks at that level, bandwidth, latency."""

    name: str
    size: int
    bw_bytes_per_s: float  # per rank, per direction, before efficiency
    latency_s: float
    bidirectional_ring: bool = False
    scale_out: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        covered = 1
        for axis in system.axes:
            if covered >= domain:
                break
            size = min(axis.size, math.ceil(domain / covered))
            levels.append(
                _Capacity(
                    f"{system.scale_up.id}:{axis.name}",
                    size,
                    axis.link_bw_bytes_per_s_per_direction / cores,
                    axis.latency_s,
                    axis.wraparound and size > 2,
                    False,
                )
            )
            covered *= size
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


def _tier_penalty(cluster: Cluster, span_devices: int) -> tuple[float, float, str]:
    """Oversubscription and latency of the highest network tier a group of ``span_devices`` crosses."""
    oversubscription, latency, name = 1.0, 0.0, ""
    for tier in cluster.network_tiers:
        if span_devices > 1 and tier.devices_per_group >= 1:
            crossed = span_devices > _previous_group(cluster, tier)
            if crossed:
                oversubscription = max(oversubscription, tier.oversubscription)
                latency = max(latency, tier.latency_s)
                name = tier.name
    return oversubscription, latency, name


def _previous_group(cluster: Cluster, tier: Any) -> int:
    tiers = list(cluster.network_tiers)
    index = tiers.index(tier)
    return tiers[index - 1].devices_per_group if index > 0 else cluster.scale_up_domain_devices


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
            if level.scale_out:
                over, tier_latency, tier = _tier_penalty(cluster, span * below // cores)
                bw /= over
                latency = max(latency, tier_latency)
                name = f"{name}/{tier}" if tier else name
            spans.append(
                LinkLevel(
                    name=name,
                    size=span,
                    bw_bytes_per_s=bw,
                    latency_s=latency,
                    bidirectional_ring=level.bidirectional_ring and span == level.size,
                    scale_out=level.scale_out,
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
    """Placement of tp, cp, ep, dp and pp (in that order, innermost first) on ``cluster``."""
    cores = ranks_per_device(plan, cluster)
    levels = _machine_levels(cluster, cores)
    tp, cp, dp, pp = plan.tp_degree, plan.cp_degree, plan.dp_degree, plan.pp_degree
    return (
        place_axis("tp", tp, 1, levels, cluster, cores),
        place_axis("cp", cp, tp, levels, cluster, cores),
        place_axis("ep", plan.ep_degree, tp * cp, levels, cluster, cores),
        place_axis("dp", dp, tp * cp, levels, cluster, cores),
        place_axis("pp", pp, tp * cp * dp, levels, cluster, cores),
    )
