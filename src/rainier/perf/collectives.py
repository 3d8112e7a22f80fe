"""Alpha-beta cost of collective operations.

Every function takes the per-rank message size ``size_bytes`` (the buffer each rank holds before the
operation, as in NCCL's tests), the number of ranks ``n``, the per-rank bandwidth ``bw_bytes_per_s`` in one
direction, and the per-step latency ``alpha_s``. They use arithmetic only, so the same code runs on Python
floats (the scalar estimator) and on numpy arrays of plans (the vectorised search); ``n == 1`` costs nothing
because every term carries a factor ``(n - 1)``.

Formulas: Thakur, Rabenseifner and Gropp 2005, "Optimization of Collective Communication Operations in
MPICH" (ring and recursive-halving/doubling); hierarchical and torus compositions as in
shared/reference/formulas.md ("Collectives").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# A float or a numpy array of floats: each formula is written once for the scalar and vectorised paths.
Num = Any


def ring_all_reduce_s(size_bytes: Num, n: Num, bw_bytes_per_s: Num, alpha_s: Num) -> Num:
    """Ring all-reduce: ``2(n-1)/n * S/beta + 2(n-1) * alpha`` (Thakur et al. 2005, sec. 4.5)."""
    return 2.0 * (n - 1) / n * size_bytes / bw_bytes_per_s + 2.0 * (n - 1) * alpha_s


def ring_reduce_scatter_s(size_bytes: Num, n: Num, bw_bytes_per_s: Num, alpha_s: Num) -> Num:
    """Ring reduce-scatter of an ``S``-byte buffer: ``(n-1)/n * S/beta + (n-1) * alpha`` (Thakur et al. 2005)."""
    return (n - 1) / n * size_bytes / bw_bytes_per_s + (n - 1) * alpha_s


def ring_all_gather_s(size_bytes: Num, n: Num, bw_bytes_per_s: Num, alpha_s: Num) -> Num:
    """Ring all-gather producing an ``S``-byte buffer: same cost as the reduce-scatter (Thakur et al. 2005)."""
    return (n - 1) / n * size_bytes / bw_bytes_per_s + (n - 1) * alpha_s


def tree_all_reduce_s(size_bytes: Num, n: Num, bw_bytes_per_s: Num, alpha_s: Num) -> Num:
    """Recursive halving-doubling all-reduce: ring's bandwidth term, ``2*log2(n)`` latency steps.

    Thakur et al. 2005, sec. 4.5 (Rabenseifner's algorithm); NCCL's double binary tree has the same
    logarithmic latency and, pipelined, approaches the same bandwidth term for large messages.
    """
    return 2.0 * (n - 1) / n * size_bytes / bw_bytes_per_s + 2.0 * np.log2(n) * alpha_s


def all_reduce_s(size_bytes: Num, n: Num, bw_bytes_per_s: Num, alpha_s: Num) -> Num:
    """All-reduce with the faster of ring and tree, as collective libraries choose by message size."""
    return np.minimum(
        ring_all_reduce_s(size_bytes, n, bw_bytes_per_s, alpha_s),
        tree_all_reduce_s(size_bytes, n, bw_bytes_per_s, alpha_s),
    )


def all_to_all_s(size_bytes: Num, n: Num, bw_bytes_per_s: Num, alpha_s: Num) -> Num:
    """All-to-all (MoE dispatch/combine): each rank sends ``(n-1)/n * S`` and pays one latency per peer.

    Pairwise exchange (Thakur et al. 2005, sec. 4.4); ``bw_bytes_per_s`` should already be the lesser of the
    rank's injection bandwidth and its share of the crossed level's bisection.
    """
    return (n - 1) / n * size_bytes / bw_bytes_per_s + (n - 1) * alpha_s


def send_recv_s(size_bytes: Num, bw_bytes_per_s: Num, alpha_s: Num) -> Num:
    """Point-to-point transfer (pipeline activations): ``alpha + S/beta``."""
    return alpha_s + size_bytes / bw_bytes_per_s


@dataclass(frozen=True, slots=True)
class Level:
    """One level of a hierarchy a collective crosses: ``size`` ranks joined at a per-rank bandwidth.

    ``bw_bytes_per_s`` is per rank and per direction; ``bidirectional_ring`` says the level's links are used in
    both directions by a pair of counter-rotating rings (a torus axis), doubling the usable bandwidth.
    """

    size: int
    bw_bytes_per_s: float
    alpha_s: float
    bidirectional_ring: bool = False

    @property
    def ring_bw_bytes_per_s(self) -> float:
        return self.bw_bytes_per_s * (2.0 if self.bidirectional_ring else 1.0)


def hierarchical_all_reduce_s(size_bytes: float, levels: Sequence[Level]) -> float:
    """All-reduce over nested levels, innermost first.

    Reduce-scatter inside each level in turn (the buffer shrinks by each level's size), all-reduce of what is
    left across the outermost level, then all-gather back out (formulas.md, "Hierarchical all-reduce"). For a
    torus the levels are its axes, each a bidirectional ring: the multi-dimensional ring algorithm.
    """
    if not levels:
        return 0.0
    total = 0.0
    remaining = size_bytes
    for level in levels[:-1]:
        total += 2.0 * ring_reduce_scatter_s(remaining, level.size, level.ring_bw_bytes_per_s, level.alpha_s)
        remaining /= level.size
    outer = levels[-1]
    total += float(all_reduce_s(remaining, float(outer.size), outer.ring_bw_bytes_per_s, outer.alpha_s))
    return total


def hierarchical_reduce_scatter_s(size_bytes: float, levels: Sequence[Level]) -> float:
    """Reduce-scatter over nested levels, innermost first (the buffer shrinks by each level's size)."""
    total = 0.0
    remaining = size_bytes
    for level in levels:
        total += ring_reduce_scatter_s(remaining, level.size, level.ring_bw_bytes_per_s, level.alpha_s)
        remaining /= level.size
    return total
