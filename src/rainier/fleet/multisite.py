"""Training across sites joined by WAN links: which parallel axis crosses the WAN, at what cost.

The step model (``perf``) sees a multi-site cluster as one network. This module adds the WAN explicitly for the
two ways a synchronous job can span sites (each site then holds whole pipeline stages or whole replicas):

- ``dp-across-sites``: every site holds complete model replicas; gradients are reduced inside each site first,
  then across sites (hierarchical all-reduce: reduce-scatter inside, all-reduce across, all-gather inside;
  shared/reference/formulas.md "Hierarchical all-reduce"). All data-parallel groups cross at once, so the
  sites exchange ``2 (S-1)/S`` times the whole gradient per step over a ring of WAN links (Thakur et al. 2005),
  exposed at the end of the step.
- ``pp-across-sites``: sites hold consecutive pipeline stages (needs ``pp >= S``); every token's activations
  cross each site boundary forward and its gradients backward (``vpp`` times when interleaved). The transfer
  overlaps compute but bounds throughput, and each WAN hop's latency lengthens pipeline fill and drain.

It reports the slowdown against the same devices on one site, the WAN bandwidth needed for a target slowdown,
and the best split, including running on the largest site alone.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rainier.errors import InputError, field_error
from rainier.fleet.limits import MAX_SLOWDOWN
from rainier.hardware import Cluster, resize_cluster
from rainier.parallel.placement import ranks_per_device
from rainier.parallel.plan import Infeasible, Plan
from rainier.perf.result import StepEstimate
from rainier.workload import count_params
from rainier.workload.shape import TransformerShape

GRAD_BYTES_PER_PARAM = 2.0  # gradients reduced in 16 bits, as in the step model (perf.batch.GRAD_BYTES)
ACTIVATION_BYTES = 2.0  # bf16 activations and activation gradients sent between pipeline stages
DEFAULT_TARGET_SLOWDOWN = 1.05
MAX_RING_SEARCH_SITES = 8  # exhaustive ring search over site orders up to 8! / 8 = 5,040 cycles


@dataclass(frozen=True, slots=True, kw_only=True)
class WanRing:
    """The best cycle through all sites: bottleneck bandwidth per direction, the worst hop latency, the order."""

    order: tuple[str, ...]
    bw_bytes_per_s: float
    latency_s: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "order": list(self.order),
            "bw_bytes_per_s": self.bw_bytes_per_s,
            "latency_s": self.latency_s,
            "note": self.note,
        }


def wan_ring(cluster: Cluster) -> WanRing:
    """The ring over the cluster's sites with the widest bottleneck link.

    Sites are few, so every order is tried. A ring needs a link between consecutive sites and from the last back
    to the first; when the graph has no such cycle (a chain, a star), the ring's traffic is routed over a
    spanning path or tree whose links each carry it in both directions, halving their bandwidth.
    """
    names = [s.name for s in cluster.sites]
    if len(names) < 2 or not cluster.wan_links:
        raise InputError(f"cluster {cluster.id} has no WAN links between sites: nothing to place across sites")
    if len(names) > MAX_RING_SEARCH_SITES:
        raise field_error("sites", len(names), f"at most {MAX_RING_SEARCH_SITES} sites for the WAN ring search")
    links = {link.pair: link for link in cluster.wan_links}
    best: tuple[float, float, tuple[str, ...], bool] | None = None
    first, rest = names[0], names[1:]
    for tail in itertools.permutations(rest):
        order = (first, *tail)
        hops = list(itertools.pairwise(order))
        closing = (order[-1], order[0])
        path = [links.get(frozenset(h)) for h in hops]
        if any(link is None for link in path):
            continue
        assert all(link is not None for link in path)
        ring_link = links.get(frozenset(closing)) if len(order) > 2 else path[0]
        used = [link for link in path if link is not None]
        if ring_link is not None:
            used.append(ring_link)
            bw, closed = min(link.bw_bytes_per_s for link in used), True
        else:
            bw, closed = min(link.bw_bytes_per_s for link in used) / 2, False
        latency = max(link.latency_s for link in used)
        candidate = (bw, -latency, order, closed)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    if best is None:  # connected but no Hamiltonian path: a tree with each link used both ways
        bw = min(link.bw_bytes_per_s for link in cluster.wan_links) / 2
        latency = sum(link.latency_s for link in cluster.wan_links)
        return WanRing(order=tuple(names), bw_bytes_per_s=bw, latency_s=latency, note="routed over a spanning tree")
    bw, neg_latency, order, closed = best
    note = "" if closed else "no closing link: the ring doubles back over the path"
    return WanRing(order=order, bw_bytes_per_s=bw, latency_s=-neg_latency, note=note)


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteSplit:
    """One way of running the job on the sites: its step, throughput and cost of the WAN.

    A split that cannot run (:func:`infeasible_split`) has ``feasible`` false, a ``reason``, and no step time,
    throughput, WAN time or slowdown (``None``): it has no step to time, rather than an infinitely long one.
    """

    name: str
    devices: int
    step_time_s: float | None
    tokens_per_s: float | None
    wan_time_s: float | None
    slowdown: float | None  # one-site tokens/s over this split's tokens/s
    feasible: bool = True
    reason: str = ""  # why the split cannot run (infeasible splits only)
    note: str = ""
    estimate: StepEstimate | None = None  # the plan run on fewer devices (largest-site-only), if any

    def __post_init__(self) -> None:
        timed = (self.step_time_s, self.tokens_per_s, self.wan_time_s, self.slowdown)
        if self.feasible:
            assert all(v is not None and math.isfinite(v) for v in timed), (self.name, timed)
        else:
            assert self.reason and all(v is None for v in timed), (self.name, self.reason, timed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.name,
            "devices": self.devices,
            "feasible": self.feasible,
            "reason": self.reason or None,
            "step_time_s": self.step_time_s,
            "tokens_per_s": self.tokens_per_s,
            "wan_time_s": self.wan_time_s,
            "slowdown": self.slowdown,
            "note": self.note,
        }


def infeasible_split(name: str, devices: int, reason: str) -> SiteSplit:
    """A split that cannot run, and why: no step time, throughput, WAN time or slowdown."""
    return SiteSplit(
        name=name,
        devices=devices,
        step_time_s=None,
        tokens_per_s=None,
        wan_time_s=None,
        slowdown=None,
        feasible=False,
        reason=reason,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteAnalysis:
    """A plan on a multi-site cluster: one-site baseline, each split, the best, and the WAN bandwidth needed."""

    cluster: str
    sites: tuple[tuple[str, int], ...]  # (name, devices)
    ring: WanRing
    one_site: StepEstimate
    splits: tuple[SiteSplit, ...]
    target_slowdown: float
    min_wan_bw_bytes_per_s: float | None  # ring bottleneck needed by dp-across-sites for the target slowdown
    notes: tuple[str, ...] = ()  # one line each, e.g. the batch rule and the batch the plan used

    @property
    def best(self) -> SiteSplit | None:
        """The feasible split with the most tokens/s; ``None`` when no split can run."""
        feasible = [s for s in self.splits if s.feasible]
        return max(feasible, key=lambda s: s.tokens_per_s or 0.0) if feasible else None

    @property
    def best_spanning(self) -> SiteSplit | None:
        """The best feasible split that uses every site (what a run on the whole cluster gets); ``None`` if none."""
        spanning = [s for s in self.splits if s.feasible and s.devices == self.one_site.num_devices]
        return max(spanning, key=lambda s: s.tokens_per_s or 0.0) if spanning else None

    @property
    def spanning_tokens_per_s(self) -> float:
        """Tokens/s of :attr:`best_spanning`, 0 when no split spans the sites (to rank plans; not a result)."""
        spanning = self.best_spanning
        return 0.0 if spanning is None or spanning.tokens_per_s is None else spanning.tokens_per_s

    def to_dict(self) -> dict[str, Any]:
        best, spanning = self.best, self.best_spanning
        return {
            "cluster": self.cluster,
            "notes": list(self.notes),
            "sites": [{"name": n, "devices": d} for n, d in self.sites],
            "wan_ring": self.ring.to_dict(),
            "plan": self.one_site.plan.to_dict(),
            "one_site_step_time_s": self.one_site.step_time_s,
            "one_site_tokens_per_s": self.one_site.tokens_per_s,
            "splits": [s.to_dict() for s in self.splits],
            "feasible": best is not None,
            "reason": None if best is not None else "; ".join(f"{s.name}: {s.reason}" for s in self.splits),
            "best_split": None if best is None else best.name,
            "slowdown": None if spanning is None else spanning.slowdown,
            "slowdown_note": (
                "" if spanning is not None else "no split across all sites is feasible: see each split's reason"
            ),
            "target_slowdown": self.target_slowdown,
            "min_wan_bw_bytes_per_s": self.min_wan_bw_bytes_per_s,
            "min_wan_tbit_per_s": None
            if self.min_wan_bw_bytes_per_s is None
            else self.min_wan_bw_bytes_per_s * 8 / 1e12,
        }


def dp_across_sites_time(grad_bytes: float, num_sites: int, ring: WanRing) -> float:
    """All-reduce of the whole gradient across ``num_sites`` on the WAN ring (Thakur et al. 2005, ring)."""
    s = num_sites
    return 2 * (s - 1) / s * grad_bytes / ring.bw_bytes_per_s + 2 * (s - 1) * ring.latency_s


def min_wan_bandwidth(grad_bytes: float, num_sites: int, latency_s: float, budget_s: float) -> float | None:
    """Ring bandwidth at which the cross-site all-reduce takes ``budget_s``; ``None`` if latency alone exceeds it."""
    s = num_sites
    room = budget_s - 2 * (s - 1) * latency_s
    if room <= 0:
        return None
    return 2 * (s - 1) / s * grad_bytes / room


def analyse_sites(
    shape: TransformerShape,
    cluster: Cluster,
    plan: Plan,
    *,
    step: Callable[[Plan, Cluster], StepEstimate],
    best_on: Callable[[Cluster], StepEstimate | Infeasible | None],
    target_slowdown: float = DEFAULT_TARGET_SLOWDOWN,
) -> SiteAnalysis:
    """Each way of spanning ``cluster``'s sites with ``plan``, against the same devices on one site.

    ``step(plan, cluster)`` estimates one step on a cluster seen as one network; ``best_on(cluster)`` finds the
    best plan for a smaller cluster (the largest site alone), or ``Infeasible`` (or ``None``) when nothing fits.
    """
    if isinstance(target_slowdown, bool) or not 1.0 < target_slowdown <= MAX_SLOWDOWN:
        raise field_error(
            "slowdown", target_slowdown, f"a target step-time ratio above 1 and at most {MAX_SLOWDOWN:g} (e.g. 1.05)"
        )
    ring = wan_ring(cluster)
    per_site = [(s.name, s.num_systems * cluster.system.num_devices) for s in cluster.sites]
    num_sites = len(per_site)
    one_site = step(plan, cluster)
    tokens = plan.gbs * one_site.seq_len
    base_rate = one_site.tokens_per_s
    grad_bytes = GRAD_BYTES_PER_PARAM * count_params(shape).total

    dp_wan = dp_across_sites_time(grad_bytes, num_sites, ring)
    dp_step = one_site.step_time_s + dp_wan
    replica = plan.tp_degree * plan.cp_degree * plan.pp_degree // ranks_per_device(plan, cluster)
    idle = sum(devices % replica for _, devices in per_site)
    if plan.dp_degree < num_sites:
        dp_split = infeasible_split(
            "dp-across-sites",
            cluster.num_devices,
            f"dp={plan.dp_degree} < {num_sites} sites: a replica would span the WAN",
        )
    else:
        dp_split = SiteSplit(
            name="dp-across-sites",
            devices=cluster.num_devices,
            step_time_s=dp_step,
            tokens_per_s=tokens / dp_step,
            wan_time_s=dp_wan,
            slowdown=dp_step / one_site.step_time_s,
            note=f"site sizes are not whole replicas of {replica} devices: ~{idle} idle" if idle else "",
        )
    splits = [dp_split, _pp_split(shape, plan, one_site, ring, per_site, tokens)]
    largest = max(per_site, key=lambda item: item[1])
    alone = best_on(resize_cluster(cluster, largest[1] // cluster.system.num_devices))
    if not isinstance(alone, StepEstimate):
        why = (
            f"{largest[0]} alone: {alone.reason}"
            if isinstance(alone, Infeasible)
            else f"no plan fits {largest[0]} alone"
        )
        splits.append(infeasible_split("largest-site-only", largest[1], why))
    else:
        splits.append(
            SiteSplit(
                name="largest-site-only",
                devices=largest[1],
                step_time_s=alone.step_time_s,
                tokens_per_s=alone.tokens_per_s,
                wan_time_s=0.0,
                slowdown=base_rate / alone.tokens_per_s,
                note=f"{largest[0]} alone",
                estimate=alone,
            )
        )
    return SiteAnalysis(
        cluster=cluster.id,
        sites=tuple(per_site),
        ring=ring,
        one_site=one_site,
        splits=tuple(splits),
        target_slowdown=target_slowdown,
        min_wan_bw_bytes_per_s=min_wan_bandwidth(
            grad_bytes, num_sites, ring.latency_s, (target_slowdown - 1.0) * one_site.step_time_s
        ),
    )


def _pp_split(
    shape: TransformerShape,
    plan: Plan,
    one_site: StepEstimate,
    ring: WanRing,
    per_site: list[tuple[str, int]],
    tokens: int,
) -> SiteSplit:
    """Consecutive pipeline stages per site: bandwidth bound on activation traffic plus latency in fill/drain."""
    num_sites = len(per_site)
    stage_devices = one_site.num_devices // plan.pp_degree
    if plan.pp_degree < num_sites:
        return infeasible_split(
            "pp-across-sites", one_site.num_devices, f"pp={plan.pp_degree} < {num_sites} sites: a site without a stage"
        )
    if any(devices % stage_devices for _, devices in per_site):
        return infeasible_split(
            "pp-across-sites",
            one_site.num_devices,
            f"pp={plan.pp_degree} stages of {stage_devices:,} devices do not tile the sites",
        )
    crossings = plan.vpp_degree  # each token passes every stage boundary once per model chunk
    # Forward activations and backward gradients of every token cross each boundary (all pipelines at once).
    boundary_bytes = 2 * crossings * tokens * shape.hidden_dim * ACTIVATION_BYTES
    transfer_s = boundary_bytes / ring.bw_bytes_per_s
    fill_drain_s = 2 * crossings * (num_sites - 1) * ring.latency_s
    step_s = max(one_site.step_time_s + fill_drain_s, transfer_s)
    return SiteSplit(
        name="pp-across-sites",
        devices=one_site.num_devices,
        step_time_s=step_s,
        tokens_per_s=tokens / step_s,
        wan_time_s=step_s - one_site.step_time_s,
        slowdown=step_s / one_site.step_time_s,
        note=f"{boundary_bytes / 1e12:.2f} TB per site boundary per step",
    )
