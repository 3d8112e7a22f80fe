"""Checkpoint size, write/restore times and the Young/Daly intervals, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from rainier.fleet.checkpoint import (
    CHECKPOINT_BYTES_PER_PARAM,
    StorageBandwidth,
    checkpoint_bytes,
    checkpoint_bytes_for_params,
    checkpoint_plan,
    daly_interval_s,
    default_checkpoint_bytes,
    default_checkpoint_bytes_per_device,
    default_storage,
    restore_time_s,
    write_time_s,
    young_interval_s,
)
from rainier.workload import count_params, get_model


def test_fourteen_bytes_per_parameter() -> None:
    # bf16 weights 2 + fp32 master weights 4 + Adam momentum 4 + variance 4 (Rajbhandari et al. 2020)
    assert CHECKPOINT_BYTES_PER_PARAM == 2 + 4 + 4 + 4
    assert checkpoint_bytes_for_params(1e9) == 14e9


def test_llama3_405b_checkpoint_is_about_5_7_tb() -> None:
    shape = get_model("llama-3-405b")
    size = checkpoint_bytes(shape)
    assert size == count_params(shape).total * 14
    assert size == pytest.approx(405.85e9 * 14, rel=1e-3)  # 5.68 TB


def test_default_size_is_llama3_state_per_gpu() -> None:
    # 405e9 params x 14 B / 16,384 GPUs = 346,069,335.9375 B (inside the paper's 1 MB - 4 GB per GPU)
    assert default_checkpoint_bytes_per_device() == pytest.approx(346_069_335.9375)
    assert default_checkpoint_bytes(16384) == pytest.approx(405e9 * 14)
    assert default_checkpoint_bytes(8) == pytest.approx(8 * 346_069_335.9375)


def test_default_storage_is_the_devices_share_of_tectonic() -> None:
    full = default_storage(16384)
    assert (full.write_bytes_per_s, full.read_bytes_per_s) == (2e12, 7e12)
    assert full.estimated
    small = default_storage(8)  # 8 / 16,384 of 2 TB/s and 7 TB/s
    assert small.write_bytes_per_s == pytest.approx(976_562_500.0)
    assert small.read_bytes_per_s == pytest.approx(3_417_968_750.0)


def test_write_and_restore_times() -> None:
    assert write_time_s(5.67e12, 2e12) == pytest.approx(2.835)
    assert restore_time_s(5.67e12, 7e12) == pytest.approx(0.81)
    # the default checkpoint on default storage takes the same time at any scale until the site's ceiling binds
    for devices in (8, 16384, 65536):
        storage = default_storage(devices)
        assert write_time_s(default_checkpoint_bytes(devices), storage.write_bytes_per_s) == pytest.approx(2.835)
    huge = default_storage(1_000_000)
    assert write_time_s(default_checkpoint_bytes(1_000_000), huge.write_bytes_per_s) > 2.835


def test_young_and_daly_intervals() -> None:
    assert young_interval_s(2.0, 100.0) == 20.0  # sqrt(2 * 2 * 100)
    assert daly_interval_s(2.0, 100.0) == 18.0  # sqrt(2 * 2 * 100) - 2
    assert daly_interval_s(50.0, 100.0) == 100.0  # delta >= M/2: checkpoint every M
    assert daly_interval_s(49.0, 100.0) == pytest.approx(math.sqrt(9800) - 49)
    # Llama 3: delta 2.835 s, M = 54 x 24 x 3600 / 419 s
    mtbf = 54 * 24 * 3600 / 419
    assert young_interval_s(2.835, mtbf) == pytest.approx(251.27, abs=0.01)


def test_checkpoint_plan_defaults_to_daly() -> None:
    storage = StorageBandwidth(write_bytes_per_s=1e9, read_bytes_per_s=4e9)
    plan = checkpoint_plan(size_bytes=2e9, storage=storage, job_mtbf_s=100.0)
    assert (plan.write_s, plan.restore_s) == (2.0, 0.5)
    assert (plan.young_interval_s, plan.daly_interval_s, plan.interval_s) == (20.0, 18.0, 18.0)
    assert plan.overhead == pytest.approx(2 / 20)
    chosen = checkpoint_plan(size_bytes=2e9, storage=storage, job_mtbf_s=100.0, interval_s=30.0)
    assert chosen.interval_s == 30.0
    assert chosen.to_dict()["daly_interval_s"] == 18.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: checkpoint_bytes_for_params(-1), "num_params=-1 is invalid"),
        (lambda: default_checkpoint_bytes(0), "num_devices=0 is invalid"),
        (lambda: default_storage(0), "num_devices=0 is invalid"),
        (lambda: write_time_s(0, 1e9), "checkpoint_bytes=0 is invalid"),
        (lambda: write_time_s(1e9, float("inf")), "write_bytes_per_s=inf is invalid"),
        (lambda: restore_time_s(1e9, -1), "read_bytes_per_s=-1 is invalid"),
        (lambda: young_interval_s(-1, 10), "write_s=-1 is invalid"),
        (lambda: daly_interval_s(1, 0), "mtbf_s=0 is invalid"),
        (lambda: StorageBandwidth(write_bytes_per_s=0, read_bytes_per_s=1), "write_bytes_per_s=0 is invalid"),
        (
            lambda: checkpoint_plan(
                size_bytes=1e9,
                storage=StorageBandwidth(write_bytes_per_s=1e9, read_bytes_per_s=1e9),
                job_mtbf_s=10,
                interval_s=0,
            ),
            "checkpoint_interval_s=0 is invalid",
        ),
    ],
)
def test_bad_inputs_name_the_field(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]
