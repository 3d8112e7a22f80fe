"""The expert all-to-all of a MoE layer on its placed ep ranks: coefficients, and the network traffic saved when
each token crosses to a node once.

Expert-parallel kernels write to every peer at once (GPU-initiated RDMA, DeepEP; NCCL's grouped sends), so the
exchange pays ``perf.comm``'s all-to-all bandwidth term and one latency per level crossed rather than one per peer:
DeepEP's 128-token low-latency dispatch takes 173 us at EP64 and 194 us at EP256 on the same NICs (DeepEP README,
"Low-latency kernels with pure RDMA"), where 255 sequential peers would add hundreds of microseconds.

DeepEP's normal (high-throughput) kernels, which engines run for prefill batches (SGLang ``--deepep-mode auto``,
vLLM's ``deepep_high_throughput``), send a token once to each node holding one of its experts and forward it over
NVLink inside the node (DeepSeek-V3 report sec. 3.2.2; DeepEP README, "Normal kernels with NVLink and RDMA
forwarding"); the low-latency decode kernels send every copy straight to its expert's GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rainier.hardware import Cluster
from rainier.parallel.placement import _machine_levels, place_axis
from rainier.perf.collectives import Level
from rainier.perf.comm import group_cost


@dataclass(frozen=True, slots=True)
class ExpertExchange:
    """Dispatch/combine coefficients: seconds = ``slope`` x bytes each rank sends + ``intercept``."""

    slope: float
    intercept: float
    network_slope: float = 0.0  # the part of ``slope`` spent between nodes (0 inside one scale-up domain)
    nodes: int = 1  # nodes the ep ranks span (1: one scale-up domain)


def placed_levels(cluster: Cluster, cores: int, axis: str, degree: int, comm: float) -> list[Level]:
    """The topology levels a group of ``degree`` consecutive ranks spans, links at ``comm`` of their bandwidth."""
    placed = place_axis(axis, degree, 1, _machine_levels(cluster, cores), cluster, cores)
    return [
        Level(
            size=level.size,
            bw_bytes_per_s=level.bw_bytes_per_s * comm,
            alpha_s=level.latency_s,
            bidirectional_ring=level.bidirectional_ring,
        )
        for level in placed.levels
    ]


def concurrent_torus_axes(levels: list[Level]) -> list[Level]:
    """``levels`` with each run of whole torus axes of the same links (bidirectional rings at one rate and latency)
    joined into one level.

    A group that spans whole axes of a torus runs its all-reduce as flat rings over all of them at once, not axis
    after axis: Neuron's intra-node collectives lay rings on "mutually exclusive wires in parallel for full wire
    bandwidth", two disjoint Hamiltonian cycles over a Trainium instance's 16-chip 2D torus, each chip a hop
    (Ring, KangaRing), and for smaller buffers Mesh (O(1) hops) or recursive halving-doubling over the torus as a
    hypercube (O(log N); aws-neuron-sdk, neuron-runtime/explore/intranode-collective-comm.rst). One axis at a time
    leaves the other axes' links idle, so an axis-by-axis all-reduce pays twice the bandwidth term on a 2D torus.
    The joined level has the axes' ranks and the sum of their per-rank bandwidths; ``perf.comm.group_cost`` takes
    its latency as the lesser of a ring's and a tree's, which covers the smaller-buffer algorithms. Axes of other
    links (a Trn2 UltraServer's slower Z ring between instances) stay levels of their own: a flat ring through
    them would run at their rate."""
    joined: list[Level] = []
    for level in levels:
        last = joined[-1] if joined else None
        same_links = last is not None and (last.bw_bytes_per_s, last.alpha_s) == (level.bw_bytes_per_s, level.alpha_s)
        if last is not None and same_links and last.bidirectional_ring and level.bidirectional_ring:
            joined[-1] = Level(
                size=last.size * level.size,
                bw_bytes_per_s=last.bw_bytes_per_s + level.bw_bytes_per_s,
                alpha_s=level.alpha_s,
                bidirectional_ring=True,
            )
        else:
            joined.append(level)
    return joined


def expert_all_to_all(cluster: Cluster, cores: int, ep: int, comm: float) -> ExpertExchange:
    """The exchange on the ``ep`` ranks, with the share of its bandwidth term that crosses the outermost level
    (the buffer's ``(n_total - inside) / n_total`` leaving it, at that level's rate) when that level joins nodes."""
    levels = placed_levels(cluster, cores, "ep", ep, comm)
    slope, _ = group_cost(levels).all_to_all
    intercept = sum(level.alpha_s for level in levels)
    if len(levels) < 2:
        return ExpertExchange(slope, intercept)
    inside = math.prod(level.size for level in levels[:-1])
    total = inside * levels[-1].size
    network = (total - inside) / total / levels[-1].bw_bytes_per_s
    return ExpertExchange(slope, intercept, network_slope=network, nodes=levels[-1].size)


def node_copies_share(nodes: int, top_k: int) -> float:
    """Network copies per remote expert copy when a token crosses once to each node holding one of its ``top_k``
    experts, experts spread evenly over ``nodes``: ``N (1 - (1 - 1/N)^k) / k`` (distinct nodes over copies; 0.45 for
    top-8 over 4 nodes, 1 for top-1)."""
    if nodes <= 1 or top_k <= 1:
        return 1.0
    return min(1.0, nodes * (1.0 - (1.0 - 1.0 / nodes) ** top_k) / top_k)
