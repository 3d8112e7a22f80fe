"""Training across sites: the WAN ring, hand-computed cross-site costs, splits, the site graph check."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rainier.api.fleet import run_fleet_sites
from rainier.fleet.multisite import WanRing, dp_across_sites_time, min_wan_bandwidth, wan_ring
from rainier.hardware import Site, WanLink, get_cluster
from rainier.units import TERA


def test_rainier_wan_ring_bottleneck() -> None:
    ring = wan_ring(get_cluster("rainier-trn2-500k"))
    assert set(ring.order) == {"new-carlisle-indiana", "pennsylvania", "mississippi"}
    assert ring.bw_bytes_per_s == pytest.approx(50 * TERA / 8)  # Pennsylvania-Mississippi, 50 Tb/s
    assert ring.latency_s == pytest.approx(0.008)
    assert ring.note == ""


def _three_sites(links: tuple[WanLink, ...]):  # type: ignore[no-untyped-def]
    base = get_cluster("rainier-trn2-500k")
    return dataclasses.replace(base, wan_links=links)


def test_chain_of_sites_halves_the_ring() -> None:
    chain = (
        WanLink(site_a="new-carlisle-indiana", site_b="pennsylvania", bw_bytes_per_s=10e12, latency_s=0.005),
        WanLink(site_a="pennsylvania", site_b="mississippi", bw_bytes_per_s=8e12, latency_s=0.004),
    )
    ring = wan_ring(_three_sites(chain))
    assert ring.bw_bytes_per_s == pytest.approx(4e12) and "doubles back" in ring.note


def test_disconnected_site_graph_is_rejected() -> None:
    lonely = (WanLink(site_a="new-carlisle-indiana", site_b="pennsylvania", bw_bytes_per_s=1e12, latency_s=0.005),)
    with pytest.raises(ValueError, match=r"wan_links.*connected"):
        _three_sites(lonely)
    with pytest.raises(ValueError, match=r"wan_links\.sites"):
        _three_sites((WanLink(site_a="new-carlisle-indiana", site_b="ohio", bw_bytes_per_s=1e12, latency_s=0.005),))
    with pytest.raises(ValueError, match="two different sites"):
        WanLink(site_a="a", site_b="a", bw_bytes_per_s=1e12, latency_s=0.001)
    assert Site(name="x", num_systems=1).num_systems == 1


def test_dp_across_sites_by_hand() -> None:
    ring = WanRing(order=("a", "b", "c"), bw_bytes_per_s=6.25e12, latency_s=0.008)
    # 2 (S-1)/S G / B + 2 (S-1) alpha with G = 4 TB (2T params in bf16), S = 3
    assert dp_across_sites_time(4e12, 3, ring) == pytest.approx(2 * 2 / 3 * 4e12 / 6.25e12 + 4 * 0.008)


@given(
    grad=st.floats(min_value=1e9, max_value=1e14),
    sites=st.integers(min_value=2, max_value=8),
    latency=st.floats(min_value=1e-4, max_value=0.02),
    budget=st.floats(min_value=0.5, max_value=100.0),
)
def test_min_wan_bandwidth_inverts_the_cost(grad: float, sites: int, latency: float, budget: float) -> None:
    need = min_wan_bandwidth(grad, sites, latency, budget)
    if need is None:
        assert 2 * (sites - 1) * latency >= budget
        return
    ring = WanRing(order=tuple("abcdefgh"[:sites]), bw_bytes_per_s=need, latency_s=latency)
    assert dp_across_sites_time(grad, sites, ring) == pytest.approx(budget, rel=1e-9)
    faster = dataclasses.replace(ring, bw_bytes_per_s=need * 2)
    assert dp_across_sites_time(grad, sites, faster) < budget


def test_sites_analysis_on_rainier() -> None:
    analysis = run_fleet_sites(model="llama-3-70b", cluster="rainier-trn2-500k", batch_tokens=512e6)
    names = [s.name for s in analysis.splits]
    assert names == ["dp-across-sites", "pp-across-sites", "largest-site-only"]
    dp = analysis.splits[0]
    assert dp.step_time_s == pytest.approx(analysis.one_site.step_time_s + dp.wan_time_s)
    assert dp.slowdown > 1.0
    doc = analysis.to_dict()
    assert doc["best_split"] in names
    assert doc["min_wan_tbit_per_s"] is None or doc["min_wan_tbit_per_s"] > 0


def test_sites_says_which_batch_its_plan_used() -> None:
    analysis = run_fleet_sites(model="llama-3-70b", cluster="rainier-trn2-500k", batch_tokens=512e6)
    used = analysis.one_site.plan.gbs
    (note,) = analysis.notes
    assert note.startswith("batch: ") and f"used {used:,}" in note
    assert analysis.to_dict()["notes"] == [note]


def test_sites_needs_wan_links() -> None:
    with pytest.raises(ValueError, match="no WAN links"):
        run_fleet_sites(model="llama-3-8b", cluster="h100-p5-equal-power")
