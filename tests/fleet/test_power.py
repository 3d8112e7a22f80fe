"""Footprint and power of clusters: hand-computed values and the fallbacks for ad-hoc clusters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rainier.fleet.power import (
    DEFAULT_PUE,
    HOST_NETWORK_OVERHEAD,
    devices_for_power,
    fleet_cluster,
    footprint,
    power_basis,
    usable_systems,
)
from rainier.hardware import cluster_of, get_cluster, get_system


def test_rainier_footprint_by_hand() -> None:
    fp = footprint(get_cluster("rainier-trn2-500k"))
    assert fp.devices == 7812 * 64 == 499_968
    assert fp.servers == 7812 * 4
    assert fp.scale_up_domains == 7812 and fp.scale_up_domain_name == "trn2-ultraserver"
    assert fp.racks == 7812 * 2  # an UltraServer spans two racks (GK-trn2)
    assert fp.it_power_w == pytest.approx(499_968 * 800.0)
    assert fp.facility_power_w == pytest.approx(499_968 * 800.0 * 1.14)
    assert fp.facility_power_mw == pytest.approx(455.97, abs=0.01)


def test_power_fallbacks_for_ad_hoc_clusters() -> None:
    nvl72 = cluster_of("gb200", 144, system=get_system("gb200-nvl72"))
    assert power_basis(nvl72).watts_per_device == pytest.approx(120_000 / 72)
    # a chip in an 8-GPU server takes the H100 P5 cluster's all-in ratio (1,340 W / 700 W), not a flat 1.6x
    b200 = cluster_of("b200", 8)
    basis = power_basis(b200)
    assert basis.watts_per_device == pytest.approx(1000 * 1340 / 700)
    assert basis.pue == DEFAULT_PUE and "estimate" in basis.basis and "h100-p5-equal-power" in basis.basis
    tpu_v4 = cluster_of("tpu-v4", 4096)  # no catalog cluster on its kind of system: the flat overhead
    assert power_basis(tpu_v4).watts_per_device == pytest.approx(192 * HOST_NETWORK_OVERHEAD)


def test_same_chassis_never_gets_less_power() -> None:
    """H200 in a P5en draws at least H100's all-in power in a P5 (the issue's H200 < H100 inversion)."""
    h100 = power_basis(fleet_cluster("h100-sxm", 8)).watts_per_device
    h200 = power_basis(fleet_cluster("h200-sxm", 8)).watts_per_device
    assert h100 is not None and h200 is not None and h200 >= h100
    tpu = cluster_of("tpu-v5e", 256)
    assert power_basis(tpu).watts_per_device is None
    assert footprint(tpu).facility_power_w is None and footprint(tpu).racks is None


def test_fleet_cluster_takes_catalog_power_and_whole_systems() -> None:
    trn2 = fleet_cluster("trn2", 1000)
    assert trn2.system.id == "trn2-ultraserver" and trn2.num_devices == 960
    assert trn2.power_w_per_device_all_in == 800 and trn2.pue == 1.14
    assert fleet_cluster("trn2", 5).num_devices == 64  # at least one system


def test_devices_for_power_fills_whole_systems() -> None:
    base = get_cluster("rainier-trn2-500k")
    assert base.facility_power_w is not None
    probe = fleet_cluster("trn3", 1)
    # 499,968 x 800 W x 1.14 / (144 x 1,400 W x 1.14) = 1,984.0 UltraServers
    assert devices_for_power(probe, base.facility_power_w) == 1984 * 144
    assert devices_for_power(probe, base.facility_power_w) == get_cluster("rainier-trn3-144").num_devices


def test_usable_systems_example() -> None:
    assert usable_systems(37_311) == 36_864  # 9 x 4096, 1.2% idle
    assert usable_systems(4096) == 4096
    assert usable_systems(1) == 1


@given(st.integers(min_value=1, max_value=10_000_000))
def test_usable_systems_bounds(n: int) -> None:
    m = usable_systems(n)
    assert 0.98 * n <= m <= n
