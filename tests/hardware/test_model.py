"""The hardware dataclasses: validation on construction, derived quantities, the direction rule, lookups."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rainier.errors import InputError, UnknownNameError
from rainier.hardware import (
    Accelerator,
    Direction,
    NetworkTier,
    System,
    Topology,
    TopologyAxis,
    cluster_of,
    get_accelerator,
    get_cluster,
    get_system,
    per_direction,
    system_for_accelerator,
)
from rainier.precision import Precision


def _chip(**overrides: object) -> Accelerator:
    fields: dict[str, object] = {
        "id": "chip",
        "name": "Chip",
        "vendor": "aws",
        "family": "trainium",
        "peak_dense_flop_per_s": {Precision.BF16: 1e15},
        "hbm_bytes": 2**30,
        "hbm_bw_bytes_per_s": 1e12,
    }
    fields.update(overrides)
    return Accelerator(**fields)  # type: ignore[arg-type]


def test_enum_values_are_accepted_as_text() -> None:
    chip = _chip()
    assert chip.vendor.value == "aws" and chip.family.value == "trainium"
    assert chip.precisions == (Precision.BF16,)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hbm_bytes": -1}, r"hbm_bytes=-1 is invalid: expected a finite number > 0"),
        ({"hbm_bw_bytes_per_s": math.inf}, r"hbm_bw_bytes_per_s=inf is invalid"),
        ({"vendor": "intel"}, r"vendor='intel' is invalid: allowed: aws, nvidia, google"),
        ({"id": "Trn 2"}, r"id='Trn 2' is invalid: expected a lower-case id"),
        ({"peak_dense_flop_per_s": {}}, r"peak_dense_flop_per_s=\{\} is invalid"),
        ({"peak_dense_flop_per_s": {"fp6": 1e15}}, r"peak_dense_flop_per_s='fp6' is invalid: allowed: fp32"),
        ({"num_cores": 0}, r"num_cores=0 is invalid: expected an integer >= 1"),
        ({"num_cores": True}, r"num_cores=True is invalid"),
    ],
)
def test_invalid_accelerator_names_the_field(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _chip(**overrides)


def test_objects_are_frozen_and_hashable() -> None:
    trn2 = get_accelerator("trn2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        trn2.hbm_bytes = 1.0  # type: ignore[misc]
    assert len({trn2, get_system("trn2-ultraserver"), get_cluster("rainier-trn2-500k")}) == 3


def test_unsupported_precision_is_a_clear_error() -> None:
    with pytest.raises(InputError, match=r"precision='fp4' is invalid: trn2 supports fp32, tf32, bf16, fp16, fp8"):
        get_accelerator("trn2").peak_flop_per_s(Precision.FP4)
    assert not get_accelerator("a100-80gb").supports(Precision.FP8)


def test_unknown_names_suggest_close_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown accelerator 'trn-2'; did you mean .*'trn2'"):
        get_accelerator("trn-2")
    with pytest.raises(UnknownNameError, match="did you mean 'rainier-trn2-500k'"):
        get_cluster("rainier-trn2-50k")
    assert get_accelerator(" TRN2 ").id == "trn2"


@given(st.floats(min_value=1.0, max_value=1e15, allow_nan=False))
def test_direction_rule(stated: float) -> None:
    assert per_direction(stated, Direction.UNIDIRECTIONAL) == stated
    assert per_direction(stated, Direction.BIDIRECTIONAL) == pytest.approx(stated / 2)
    # an unstated figure is read as a bidirectional aggregate [ML-net]
    assert per_direction(stated, Direction.UNSTATED) == per_direction(stated, Direction.BIDIRECTIONAL)


def _axis(name: str, size: int, link: float = 100e9) -> TopologyAxis:
    return TopologyAxis(
        name=name,
        size=size,
        link_bw_bytes_per_s_per_direction=link,
        links_per_device=2,
        latency_s=1e-6,
        wraparound=True,
    )


@given(st.lists(st.tuples(st.integers(2, 8), st.floats(1e9, 1e12)), min_size=1, max_size=3))
def test_scale_up_bandwidth_is_the_sum_over_axes(shape: list[tuple[int, float]]) -> None:
    base = get_system("trn2-ultraserver")
    axes = tuple(_axis(f"a{i}", size, link) for i, (size, link) in enumerate(shape))
    num_devices = math.prod(size for size, _ in shape)
    system = dataclasses.replace(base, axes=axes, num_devices=num_devices, devices_per_server=num_devices)
    assert system.scale_up_bw_bytes_per_s == pytest.approx(sum(2 * link for _, link in shape))
    assert system.max_hops == sum(size // 2 for size, _ in shape)


def test_switched_system_has_exactly_one_axis() -> None:
    base = get_system("dgx-h100")
    with pytest.raises(ValueError, match=r"axes=\['a', 'b'\] is invalid: a switched system has exactly one axis"):
        dataclasses.replace(base, topology=Topology.SWITCHED, axes=(_axis("a", 2), _axis("b", 4)))


def test_system_needs_nic_and_scale_out_together() -> None:
    base = get_system("dgx-h100")
    with pytest.raises(ValueError, match="give both a scale-out fabric and a NIC bandwidth, or neither"):
        dataclasses.replace(base, scale_out=None)


def test_network_tiers_must_grow() -> None:
    base = get_cluster("rainier-trn2-500k")
    tiers = (
        NetworkTier(name="a", devices_per_group=64, oversubscription=1, latency_s=1e-5),
        NetworkTier(name="b", devices_per_group=64, oversubscription=2, latency_s=2e-5),
    )
    with pytest.raises(ValueError, match="devices_per_group must grow"):
        dataclasses.replace(base, network_tiers=tiers)
    with pytest.raises(ValueError, match=r"oversubscription=0.5 is invalid: must be >= 1"):
        NetworkTier(name="c", devices_per_group=8, oversubscription=0.5, latency_s=1e-5)


@given(st.sampled_from(["trn2", "trn1", "h100-sxm", "gb200", "tpu-v5p", "inf2"]), st.integers(1, 100_000))
def test_cluster_of_holds_exactly_count_devices(accelerator: str, count: int) -> None:
    cluster = cluster_of(accelerator, count)
    system = system_for_accelerator(accelerator)
    assert cluster.num_devices == count
    assert cluster.num_systems == math.ceil(count / system.num_devices)
    assert cluster.scale_up_domain_devices == min(count, system.num_devices)
    assert cluster.num_servers == math.ceil(count / system.devices_per_server)
    per_device = system.accelerator.peak_flop_per_s(Precision.BF16)
    assert cluster.peak_flop_per_s(Precision.BF16) == pytest.approx(count * per_device)
    assert cluster.to_dict()["id"] == cluster.id


@pytest.mark.parametrize("count", [0, -8, 2.5, True, 2**24 + 1, 10**20])
def test_cluster_of_rejects_bad_counts(count: object) -> None:
    with pytest.raises(InputError, match=r"count=.* is invalid: a whole number of devices from 1 to 16,777,216"):
        cluster_of("trn2", count)  # type: ignore[arg-type]


def test_cluster_of_unknown_accelerator() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'h100-sxm'"):
        cluster_of("h100-smx", 8)


def test_trn2_default_is_the_instance() -> None:
    cluster = cluster_of("trn2", 128)
    assert isinstance(cluster.system, System)
    assert (cluster.system.id, cluster.num_systems) == ("trn2.48xlarge", 8)
