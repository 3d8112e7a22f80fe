"""The shipped hardware catalog: every entry loads, spot values match shared/reference/hardware.md."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from rainier import units
from rainier.catalog import source_index
from rainier.hardware import (
    Direction,
    Topology,
    accelerators,
    clusters,
    fabrics,
    get_accelerator,
    get_cluster,
    get_fabric,
    get_system,
    system_for_accelerator,
    systems,
)
from rainier.precision import Precision

REQUIRED_ACCELERATORS = [
    "a100-80gb",
    "h100-sxm",
    "h200-sxm",
    "h800",
    "b200",
    "gb200",
    "trn1",
    "trn2",
    "trn3",
    "inf2",
    "tpu-v4",
    "tpu-v5p",
]
REQUIRED_FABRICS = [
    "nvlink3",
    "nvlink4",
    "nvlink5",
    "neuronlink-v2",
    "neuronlink-v3",
    "neuronlink-v4",
    "ib-hdr",
    "ib-ndr",
    "efa-v1",
    "efa-v2",
    "efa-v3",
    "efa-v4",
    "tpu-ici-v4",
    "tpu-ici-v5p",
    "tpu-dcn",
]
REQUIRED_SYSTEMS = [
    "dgx-a100",
    "p5.48xlarge",
    "dgx-h100",
    "p5en.48xlarge",
    "dgx-b200",
    "gb200-nvl72",
    "trn1.32xlarge",
    "trn2.48xlarge",
    "trn2-ultraserver",
    "trn3-ultraserver-gen1",
    "trn3-ultraserver-gen2",
    "inf2.48xlarge",
    "tpu-v4-pod",
    "tpu-v5p-pod",
]
REQUIRED_CLUSTERS = ["rainier-trn2-500k", "rainier-trn2-1m", "rainier-trn3-144"]
# Accelerator ids used by shared/validation (README, "Accelerator IDs").
VALIDATION_ACCELERATORS = [
    "a100-80gb",
    "h100-sxm",
    "h200-sxm",
    "h800",
    "b200",
    "gb200",
    "trn1",
    "trn2",
    "inf2",
    "tpu-v4",
    "tpu-v5p",
]
ALL_REGISTRIES = (accelerators, fabrics, systems, clusters)


def _all_objects() -> list[Any]:
    return [obj for registry in ALL_REGISTRIES for obj in registry()]


@pytest.mark.parametrize("name", REQUIRED_ACCELERATORS + VALIDATION_ACCELERATORS)
def test_required_accelerators_exist(name: str) -> None:
    assert get_accelerator(name).id == name


@pytest.mark.parametrize(
    ("getter", "names"),
    [
        (get_fabric, REQUIRED_FABRICS),
        (get_system, REQUIRED_SYSTEMS),
        (get_cluster, REQUIRED_CLUSTERS),
    ],
)
def test_required_entries_exist(getter: Callable[[str], Any], names: list[str]) -> None:
    for name in names:
        assert getter(name).id == name


def test_every_object_serialises_to_json_with_its_id() -> None:
    for obj in _all_objects():
        document = obj.to_dict()
        assert document["id"] == obj.id
        json.dumps(document)


def test_every_cited_source_is_listed() -> None:
    index = source_index()
    for obj in _all_objects():
        nested = [*getattr(obj, "axes", ()), *getattr(obj, "network_tiers", ()), *getattr(obj, "sites", ())]
        for holder in (obj, *nested):
            for field, source in holder.sources.items():
                assert index.is_known(source), f"{obj.id}: {field} cites unknown {source}"


def test_rainier_estimates_are_flagged() -> None:
    """A value cited to rainier-est (our own arithmetic or assumption) must be in the entry's `estimated` list."""
    for obj in _all_objects():
        nested = [*getattr(obj, "axes", ()), *getattr(obj, "network_tiers", ()), *getattr(obj, "sites", ())]
        for holder in (obj, *nested):
            for field, source in holder.sources.items():
                if source == "rainier-est" and field != "default":
                    flagged = holder.estimated | obj.estimated
                    assert field in flagged or any(e.startswith(field + ".") for e in flagged), (
                        f"{obj.id}: {field} is cited to rainier-est but not listed as estimated"
                    )


def test_trn2_matches_neuron_docs() -> None:
    trn2 = get_accelerator("trn2")
    assert trn2.peak_flop_per_s(Precision.BF16) == pytest.approx(667e12)
    assert trn2.peak_flop_per_s(Precision.FP8) == pytest.approx(1299e12)
    assert trn2.peak_flop_per_s(Precision.FP32) == pytest.approx(181e12)
    assert trn2.hbm_bytes == 96 * 2**30
    assert trn2.hbm_bw_bytes_per_s == pytest.approx(2.9e12)
    assert trn2.sram_bytes == 224 * 2**20
    assert (trn2.num_cores, trn2.num_logical_cores, trn2.cores_per_logical_core) == (8, 4, 2)
    assert "power_w" in trn2.estimated


def test_gpu_spot_values() -> None:
    assert get_accelerator("h100-sxm").peak_flop_per_s(Precision.BF16) == pytest.approx(989e12)
    assert get_accelerator("h100-sxm").hbm_bytes == 80e9  # GB as NVIDIA writes it, not GiB
    assert get_accelerator("a100-80gb").peak_flop_per_s(Precision.FP16) == pytest.approx(312e12)
    assert get_accelerator("a100-80gb").hbm_bw_bytes_per_s == pytest.approx(2039e9)
    assert get_accelerator("gb200").peak_flop_per_s(Precision.FP4) == pytest.approx(10_000e12)
    assert get_accelerator("tpu-v4").hbm_bytes == 32 * 2**30


def test_trainium1_hbm_bandwidth_is_in_gib_per_s() -> None:
    assert get_accelerator("trn1").hbm_bw_bytes_per_s == pytest.approx(820 * 2**30)


def test_direction_convention_on_shipped_fabrics() -> None:
    nvlink4 = get_fabric("nvlink4")
    assert nvlink4.direction is Direction.BIDIRECTIONAL
    assert nvlink4.bw_bytes_per_s_per_direction == pytest.approx(450e9)
    neuronlink = get_fabric("neuronlink-v3")
    assert neuronlink.direction is Direction.UNSTATED
    assert neuronlink.bw_bytes_per_s_per_direction == pytest.approx(640e9)  # ml-engineering's reading
    assert get_fabric("efa-v3").bw_bytes_per_s_per_direction == pytest.approx(units.gbit_per_s(200))
    assert get_fabric("efa-v3").latency_s == pytest.approx(15e-6)


def test_trn2_ultraserver_is_a_4x4x4_torus() -> None:
    system = get_system("trn2-ultraserver")
    assert system.num_devices == 64
    assert system.num_servers == 4
    assert system.topology is Topology.TORUS
    assert [(a.name, a.size, a.wraparound, a.links_per_device) for a in system.axes] == [
        ("x", 4, True, 2),
        ("y", 4, True, 2),
        ("z", 4, True, 2),
    ]
    # 256 GB/s per X/Y link and 128 GB/s per Z link, direction unstated -> halved, two links per axis.
    assert [a.bw_bytes_per_s_per_direction for a in system.axes] == pytest.approx([256e9, 256e9, 128e9])
    assert system.scale_up_bw_bytes_per_s == pytest.approx(get_fabric("neuronlink-v3").bw_bytes_per_s_per_direction)
    assert system.nic_bw_bytes_per_s_per_device == pytest.approx(units.gbit_per_s(200))
    assert system.max_hops == 6


def test_switched_systems_take_the_fabric_rate_unless_overridden() -> None:
    assert get_system("dgx-h100").scale_up_bw_bytes_per_s == pytest.approx(450e9)
    assert get_system("hgx-h800").scale_up_bw_bytes_per_s == pytest.approx(200e9)  # 400 GB/s bidirectional
    assert get_system("gb200-nvl72").scale_up_bw_bytes_per_s == pytest.approx(900e9)
    assert get_system("p5.48xlarge").nic_bw_bytes_per_s_per_device == pytest.approx(units.gbit_per_s(400))
    assert get_system("gb200-nvl72").max_hops == 1


def test_scale_up_axes_never_exceed_the_fabric_per_device_rate() -> None:
    for system in systems():
        fabric = system.scale_up
        assert system.scale_up_bw_bytes_per_s <= fabric.bw_bytes_per_s_per_direction * (1 + 1e-9), system.id


def test_every_accelerator_has_one_default_system() -> None:
    for accelerator in accelerators():
        assert system_for_accelerator(accelerator.id).accelerator is accelerator
    assert system_for_accelerator("trn2").id == "trn2.48xlarge"
    assert system_for_accelerator("h100-sxm").id == "dgx-h100"


def test_rainier_500k() -> None:
    rainier = get_cluster("rainier-trn2-500k")
    assert rainier.system.id == "trn2-ultraserver"
    assert rainier.num_systems == 7812
    assert rainier.num_devices == 499_968
    assert rainier.num_servers == 7812 * 4
    assert sum(site.num_systems for site in rainier.sites) == 7812
    assert rainier.pue == pytest.approx(1.14)
    # the network tiers describe one site; the sites are joined by WAN links forming a connected graph
    assert rainier.network_tiers[-1].devices_per_group == 3906 * 64
    assert {frozenset((w.site_a, w.site_b)) for w in rainier.wan_links} == {
        frozenset(pair) for pair in itertools.combinations([s.name for s in rainier.sites], 2)
    }
    assert get_cluster("rainier-trn2-1m").num_devices == 1_000_000


@pytest.mark.parametrize("name", ["rainier-trn3-144", "h100-p5-equal-power", "gb200-p6e-equal-power"])
def test_equal_power_clusters_match_rainier_within_one_system(name: str) -> None:
    cluster = get_cluster(name)
    reference = get_cluster("rainier-trn2-500k")
    assert cluster.equal_power_to == reference.id
    assert "num_systems" in cluster.estimated
    assert cluster.facility_power_w is not None and reference.facility_power_w is not None
    one_system_w = cluster.facility_power_w / cluster.num_systems
    assert reference.facility_power_w - one_system_w < cluster.facility_power_w <= reference.facility_power_w


def test_cluster_price_falls_back_to_the_system_price() -> None:
    cluster = get_cluster("h100-p5-equal-power")
    assert cluster.device_price_usd_per_hour == pytest.approx(39.33 / 8)
    assert "Capacity Block" in cluster.to_dict()["price_note"]
    assert get_cluster("rainier-trn2-500k").device_price_usd_per_hour is None


def test_exponential_rates_are_a_few_hundred_matmul_flops_apart() -> None:
    """Every chip that states its special-function rate runs 100-1,000 dense 16-bit matmul FLOPs per softmax
    exponential (H100: 989 TF over 3.9 T/s = 254; a NeuronCore's Scalar Engine, 92 TF over 0.18 T/s = 514): a
    rate entered in the wrong unit would be off by 1,000. Trainium states one for every generation."""
    rated = [a for a in accelerators() if a.exp_per_s is not None]
    assert {"trn1", "trn2", "trn3", "h100-sxm", "b200"} <= {a.id for a in rated}
    for accelerator in rated:
        assert 100 <= accelerator.peak_flop_per_s(Precision.BF16) / accelerator.exp_per_s <= 1_000, accelerator.id
