"""Malformed catalogs are rejected with a CatalogError naming the file, the entry and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rainier.catalog import CatalogError, load_entries
from rainier.hardware import (
    accelerators,
    fabrics,
    load_accelerators,
    load_clusters,
    load_fabrics,
    load_systems,
    systems,
)
from rainier.hardware.build import build_accelerator, system_builder

TRN2_LIKE = """\
accelerators:
  - id: chip-a
    name: Chip A
    vendor: aws
    family: trainium
    peak_dense_tflop_per_s: {bf16: 667, fp8: 1299}
    hbm_gib: 96
    hbm_tb_per_s: 2.9
    sources: {default: N-trainium2}
"""

SYSTEM = """\
systems:
  - id: box
    name: Box
    accelerator: trn2
    num_devices: 16
    devices_per_server: 16
    topology: torus
    scale_up: neuronlink-v3
    axes:
      - {name: x, size: 4, wraparound: true, link_gb_per_s: 256, direction: unstated}
      - {name: y, size: 4, wraparound: true, link_gb_per_s: 256, direction: unstated}
    nic_gbit_per_s_per_device: 200
    scale_out: efa-v3
    sources: {default: N-trn2}
"""


def _write(tmp_path: Path, text: str, name: str = "catalog.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _systems(tmp_path: Path, text: str) -> None:
    load_systems(_write(tmp_path, text, "systems.yaml"), accelerators(), fabrics())


def test_a_valid_temporary_catalog_loads(tmp_path: Path) -> None:
    chips = load_entries(_write(tmp_path, TRN2_LIKE), "accelerators", build_accelerator, id_of=lambda a: a.id)
    assert chips["chip-a"].hbm_bytes == 96 * 2**30
    _systems(tmp_path, SYSTEM)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, TRN2_LIKE + "    hbm_stacks: 4\n")
    expected = r"catalog\.yaml: accelerators\[0\] \(chip-a\): unknown field\(s\): hbm_stacks"
    with pytest.raises(CatalogError, match=expected):
        load_accelerators(path)


def test_unknown_key_inside_an_axis_is_named(tmp_path: Path) -> None:
    text = SYSTEM.replace("direction: unstated}", "direction: unstated, colour: blue}", 1)
    with pytest.raises(CatalogError, match=r"systems\[0\] \(box\)\.axes\[0\]: unknown field\(s\): colour"):
        _systems(tmp_path, text)


def test_duplicate_id_is_rejected(tmp_path: Path) -> None:
    body = TRN2_LIKE.split("\n", 1)[1]
    with pytest.raises(CatalogError, match=r"accelerators\[1\]: duplicate id 'chip-a'"):
        load_accelerators(_write(tmp_path, TRN2_LIKE + body))


def test_number_without_source_is_rejected(tmp_path: Path) -> None:
    text = TRN2_LIKE.replace("sources: {default: N-trainium2}", "sources: {hbm_gib: N-trainium2}")
    with pytest.raises(CatalogError, match=r"\(chip-a\): no source for peak_dense_tflop_per_s\.bf16"):
        load_accelerators(_write(tmp_path, text))


def test_axis_number_without_source_is_rejected(tmp_path: Path) -> None:
    entry_only = "{num_devices: N-trn2, devices_per_server: N-trn2, nic_gbit_per_s_per_device: N-coll}"
    text = SYSTEM.replace("sources: {default: N-trn2}", f"sources: {entry_only}")
    with pytest.raises(CatalogError, match=r"\(box\)\.axes\[0\]: no source for size, link_gb_per_s"):
        _systems(tmp_path, text)


def test_unknown_source_id_is_rejected(tmp_path: Path) -> None:
    text = TRN2_LIKE.replace("N-trainium2", "N-trainium99")
    with pytest.raises(CatalogError, match=r"sources\.default='N-trainium99' is not a known source id"):
        load_accelerators(_write(tmp_path, text))


def test_two_spellings_of_one_quantity_are_rejected(tmp_path: Path) -> None:
    text = TRN2_LIKE.replace("hbm_gib: 96", "hbm_gib: 96\n    hbm_gb: 103")
    with pytest.raises(CatalogError, match="give only one of hbm_gib, hbm_gb"):
        load_accelerators(_write(tmp_path, text))


def test_unknown_precision_is_rejected(tmp_path: Path) -> None:
    text = TRN2_LIKE.replace("fp8: 1299", "fp6: 1299")
    with pytest.raises(CatalogError, match=r"peak_dense_tflop_per_s\.fp6=1299 is invalid: unknown key"):
        load_accelerators(_write(tmp_path, text))


def test_dataclass_validation_is_reported_with_file_and_entry(tmp_path: Path) -> None:
    text = TRN2_LIKE.replace("sources:", "num_cores: 8\n    num_logical_cores: 3\n    sources:")
    with pytest.raises(CatalogError, match=r"\(chip-a\): num_logical_cores=3 is invalid: must divide num_cores=8"):
        load_accelerators(_write(tmp_path, text))


def test_bad_accelerator_reference_suggests_a_name(tmp_path: Path) -> None:
    text = SYSTEM.replace("accelerator: trn2", "accelerator: trn-2")
    expected = r"systems\.yaml: systems\[0\] \(box\): accelerator='trn-2' is invalid: .*did you mean 'trn2'"
    with pytest.raises(CatalogError, match=expected):
        _systems(tmp_path, text)


def test_bad_fabric_reference_is_named(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"\(box\): scale_out='efa-v9' is invalid: unknown fabric"):
        _systems(tmp_path, SYSTEM.replace("scale_out: efa-v3", "scale_out: efa-v9"))


def test_fabric_of_the_wrong_kind_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"\(box\): scale_up='efa-v3' is invalid: expected a scale-up Fabric"):
        _systems(tmp_path, SYSTEM.replace("scale_up: neuronlink-v3", "scale_up: efa-v3"))


def test_axes_must_multiply_to_the_device_count(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"axes='4x4' is invalid: axis sizes must multiply to num_devices=32"):
        _systems(tmp_path, SYSTEM.replace("num_devices: 16", "num_devices: 32"))


def test_torus_axis_needs_a_bandwidth(tmp_path: Path) -> None:
    text = SYSTEM.replace(", link_gb_per_s: 256, direction: unstated}", "}", 1)
    with pytest.raises(CatalogError, match=r"\.axes\[0\]: missing link bandwidth"):
        _systems(tmp_path, text)


def test_two_default_systems_for_one_accelerator_are_rejected(tmp_path: Path) -> None:
    first = SYSTEM.replace("    sources:", "    default_for_accelerator: true\n    sources:")
    second = first.split("\n", 1)[1].replace("id: box", "id: box2")
    with pytest.raises(CatalogError, match=r"systems\[1\] \(box2\): default_for_accelerator=true is invalid: 'box'"):
        _systems(tmp_path, first + second)


def test_estimated_must_name_a_present_field(tmp_path: Path) -> None:
    text = SYSTEM.replace("sources: {default: N-trn2}", "sources: {default: N-trn2}\n    estimated: [axes.latency_us]")
    with pytest.raises(CatalogError, match=r"'estimated' names axes\.latency_us, but no item of 'axes' has that field"):
        _systems(tmp_path, text)


CLUSTERS = """\
clusters:
  - id: small
    name: Small
    system: trn2-ultraserver
    num_systems: 4
    pue: 1.14
    power_w_per_device_all_in: 800
    sources: {default: rainier-est, pue: AMZ-sus}
    estimated: [num_systems, power_w_per_device_all_in]
"""


def _clusters(tmp_path: Path, text: str) -> None:
    load_clusters(_write(tmp_path, text, "clusters.yaml"), systems())


def test_bad_system_reference_is_named(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"clusters\[0\] \(small\): system='trn2-ultra' is invalid: .*did you mean"):
        _clusters(tmp_path, CLUSTERS.replace("system: trn2-ultraserver", "system: trn2-ultra"))


def test_sites_must_add_up(tmp_path: Path) -> None:
    text = CLUSTERS.replace("    sources:", "    sites: [{name: a, num_systems: 3}]\n    sources:")
    expected = r"\(small\): sites=\{'a': 3\} is invalid: site sizes must add up to num_systems=4"
    with pytest.raises(CatalogError, match=expected):
        _clusters(tmp_path, text)


def test_disconnected_site_graph_is_rejected(tmp_path: Path) -> None:
    sites = (
        "    sites: [{name: a, num_systems: 2}, {name: b, num_systems: 1}, {name: c, num_systems: 1}]\n"
        "    wan_links: [{sites: [a, b], tbit_per_s: 10, latency_ms: 2}]\n"
    )
    text = CLUSTERS.replace("    sources:", sites + "    sources:")
    with pytest.raises(CatalogError, match=r"\(small\): wan_links='c' is invalid: a connected site graph"):
        _clusters(tmp_path, text)
    joined = text.replace("latency_ms: 2}]", "latency_ms: 2}, {sites: [b, c], tbit_per_s: 5, latency_ms: 3}]")
    _clusters(tmp_path, joined)


def test_equal_power_must_refer_to_an_earlier_cluster(tmp_path: Path) -> None:
    later = (
        CLUSTERS.split("\n", 1)[1]
        .replace("id: small", "id: big")
        .replace("num_systems: 4", "equal_power_to: nope")
        .replace("estimated: [num_systems, ", "estimated: [")
    )
    expected = r"\(big\): equal_power_to='nope' is invalid: must name a cluster defined earlier"
    with pytest.raises(CatalogError, match=expected):
        _clusters(tmp_path, CLUSTERS + later)


def test_equal_power_sizes_by_facility_power(tmp_path: Path) -> None:
    later = (
        CLUSTERS.split("\n", 1)[1]
        .replace("id: small", "id: twice")
        .replace("num_systems: 4", "equal_power_to: small")
        .replace("power_w_per_device_all_in: 800", "power_w_per_device_all_in: 400")
        .replace("estimated: [num_systems, ", "estimated: [")
    )
    registry = load_clusters(_write(tmp_path, CLUSTERS + later), systems())
    assert registry.get("twice").num_systems == 8


def test_fabric_direction_must_be_known(tmp_path: Path) -> None:
    text = """\
    fabrics:
      - id: link
        name: Link
        kind: scale-up
        bw_gb_per_s: 100
        bw_per: device
        direction: sideways
        latency_us: 1
        sources: {default: ML-net}
    """
    expected = r"direction='sideways' is invalid: allowed: unidirectional, bidirectional, unstated"
    with pytest.raises(CatalogError, match=expected):
        load_fabrics(_write(tmp_path, text))


def test_system_builder_can_be_used_directly_with_load_entries(tmp_path: Path) -> None:
    build = system_builder(accelerators(), fabrics())
    loaded = load_entries(_write(tmp_path, SYSTEM), "systems", build, id_of=lambda s: s.id)
    assert loaded["box"].scale_up_bw_bytes_per_s == pytest.approx(512e9)
