"""Collective costs against hand-computed values and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rainier.perf.collectives import (
    Level,
    all_reduce_s,
    all_to_all_s,
    hierarchical_all_reduce_s,
    ring_all_gather_s,
    ring_all_reduce_s,
    ring_reduce_scatter_s,
    send_recv_s,
    tree_all_reduce_s,
)

GB = 1e9


def test_ring_all_reduce_by_hand() -> None:
    # 1 GB over 8 ranks at 100 GB/s, 10 us per step: 2*7/8*1/100 s + 14*10 us = 17.5 ms + 0.14 ms.
    assert ring_all_reduce_s(1 * GB, 8, 100 * GB, 10e-6) == pytest.approx(0.0175 + 0.00014)


def test_reduce_scatter_plus_all_gather_is_all_reduce() -> None:
    args = (3.0e8, 16, 50 * GB, 5e-6)
    assert ring_reduce_scatter_s(*args) + ring_all_gather_s(*args) == pytest.approx(ring_all_reduce_s(*args))


def test_single_rank_costs_nothing() -> None:
    assert ring_all_reduce_s(1e9, 1, 1e9, 1e-5) == 0.0
    assert all_to_all_s(1e9, 1, 1e9, 1e-5) == 0.0
    assert float(tree_all_reduce_s(1e9, 1, 1e9, 1e-5)) == 0.0


def test_tree_wins_for_small_messages_ring_never_loses_bandwidth() -> None:
    small = all_reduce_s(1024.0, 1024.0, 50 * GB, 10e-6)
    assert small == pytest.approx(tree_all_reduce_s(1024.0, 1024.0, 50 * GB, 10e-6))
    assert small < ring_all_reduce_s(1024.0, 1024.0, 50 * GB, 10e-6)


def test_send_recv_by_hand() -> None:
    assert send_recv_s(2e8, 25 * GB, 15e-6) == pytest.approx(15e-6 + 0.008)


def test_hierarchical_matches_flat_ring_for_one_level() -> None:
    level = Level(size=8, bw_bytes_per_s=100 * GB, alpha_s=0.0)
    assert hierarchical_all_reduce_s(1e9, [level]) == pytest.approx(ring_all_reduce_s(1e9, 8, 100 * GB, 0.0))


def test_hierarchical_by_hand() -> None:
    # 8 ranks per node at 200 GB/s, 4 nodes at 25 GB/s, no latency:
    # RS+AG inside: 2 * 7/8 * 1 GB / 200 GB/s = 8.75 ms; AR across nodes of 1/8 GB: 2 * 3/4 * 0.125/25 = 7.5 ms.
    levels = [Level(8, 200 * GB, 0.0), Level(4, 25 * GB, 0.0)]
    assert hierarchical_all_reduce_s(1 * GB, levels) == pytest.approx(0.00875 + 0.0075)


def test_bidirectional_torus_axis_doubles_bandwidth() -> None:
    one_way = hierarchical_all_reduce_s(1 * GB, [Level(4, 100 * GB, 0.0)])
    both = hierarchical_all_reduce_s(1 * GB, [Level(4, 100 * GB, 0.0, bidirectional_ring=True)])
    assert both == pytest.approx(one_way / 2)


def test_vectorised_equals_scalar() -> None:
    sizes = np.array([1e3, 1e6, 1e9])
    ranks = np.array([2.0, 64.0, 4096.0])
    vec = all_reduce_s(sizes, ranks, 50 * GB, 8e-6)
    for i in range(3):
        assert vec[i] == pytest.approx(float(all_reduce_s(float(sizes[i]), float(ranks[i]), 50 * GB, 8e-6)), rel=1e-12)


@given(
    size=st.floats(1.0, 1e11),
    n=st.integers(2, 1 << 20),
    bw=st.floats(1e8, 1e13),
    alpha=st.floats(0.0, 1e-4),
    factor=st.floats(1.0, 100.0),
)
def test_more_bandwidth_never_slower(size: float, n: int, bw: float, alpha: float, factor: float) -> None:
    for func in (ring_all_reduce_s, all_reduce_s, all_to_all_s, ring_reduce_scatter_s):
        assert float(func(size, n, bw * factor, alpha)) <= float(func(size, n, bw, alpha)) * (1 + 1e-12)
    assert math.isfinite(hierarchical_all_reduce_s(size, [Level(8, bw, alpha), Level(max(n // 8, 1), bw / 8, alpha)]))
