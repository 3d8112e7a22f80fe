"""Recovery at scale: restart parts by job size, hot spares, in-memory checkpoints, the storage ceiling per site."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rainier.errors import InputError
from rainier.fleet.checkpoint import checkpoint_plan, default_storage, peer_memory_storage
from rainier.fleet.failures import committed_failures
from rainier.fleet.goodput import analytic_goodput, build_scenario
from rainier.workload import get_model

RECOVERY = committed_failures().recovery
NIC = 50e9  # 400 Gb/s per device (H100 SXM with one CX-7 per GPU)


@given(st.integers(min_value=1, max_value=2_000_000), st.integers(min_value=1, max_value=2_000_000))
def test_restart_grows_with_the_rank_count_and_hot_spares_are_shorter(a: int, b: int) -> None:
    small, large = sorted((a, b))
    assert RECOVERY.restart_s(small) <= RECOVERY.restart_s(large)
    for ranks in (small, large):
        cold, hot = RECOVERY.restart_parts(ranks), RECOVERY.restart_parts(ranks, hot_spares=True)
        assert hot.total_s < cold.total_s
        assert cold.total_s == pytest.approx(sum(v for k, v in cold.to_dict().items() if k != "total_s"))
        assert hot.reschedule_s == hot.process_start_s == 0.0 and cold.swap_in_s == 0.0


def test_restart_parts_by_hand() -> None:
    parts = RECOVERY.restart_parts(1 << 20)
    assert parts.communicator_init_s == pytest.approx(20 * RECOVERY.init_s_per_doubling)
    expected = RECOVERY.detection_s + RECOVERY.reschedule_s + RECOVERY.process_start_s + parts.communicator_init_s
    assert parts.total_s == pytest.approx(expected)
    with pytest.raises(InputError, match="num_devices"):
        RECOVERY.restart_parts(0)


def test_storage_scales_with_the_job_up_to_a_ceiling_per_site() -> None:
    small = default_storage(16384)
    assert small.write_bytes_per_s == pytest.approx(2e12)  # Llama 3's Tectonic, sustained write
    huge = default_storage(10_000_000)
    assert huge.write_bytes_per_s == pytest.approx(RECOVERY.storage_ceiling_write_bytes_per_s)
    assert huge.read_bytes_per_s == pytest.approx(RECOVERY.storage_ceiling_read_bytes_per_s)
    three = default_storage(10_000_000, sites=3)
    assert three.write_bytes_per_s == pytest.approx(3 * RECOVERY.storage_ceiling_write_bytes_per_s)


def test_in_memory_checkpoints_move_each_shard_over_its_nic() -> None:
    shape = get_model("llama-3-405b")
    scenario = build_scenario(
        num_devices=16384,
        devices_per_server=8,
        shape=shape,
        days=10,
        in_memory_checkpoint=True,
        nic_bytes_per_s_per_device=NIC,
    )
    shard = scenario.checkpoint_bytes / 16384
    assert scenario.checkpoint.write_s == pytest.approx(shard / NIC)
    assert scenario.checkpoint.restore_s == pytest.approx(shard / NIC)
    assert scenario.checkpoint_tier == "peer-memory"
    with pytest.raises(InputError, match="NIC bandwidth"):
        build_scenario(num_devices=64, devices_per_server=8, days=1, in_memory_checkpoint=True)


def test_a_checkpoint_interval_is_never_shorter_than_a_step() -> None:
    storage = peer_memory_storage(1024, NIC)
    plan = checkpoint_plan(size_bytes=1e12, storage=storage, job_mtbf_s=600.0, min_interval_s=7.5)
    assert plan.daly_interval_s < 7.5
    assert plan.interval_s == 7.5
    free = checkpoint_plan(size_bytes=1e12, storage=storage, job_mtbf_s=600.0)
    assert free.interval_s == pytest.approx(free.daly_interval_s)


def test_recovery_options_raise_goodput_at_a_million_devices() -> None:
    shape = get_model("llama-3-405b")
    common = dict(num_devices=1_000_000, devices_per_server=16, shape=shape, days=30, step_time_s=5.0)
    cold = analytic_goodput(build_scenario(**common))  # type: ignore[arg-type]
    hot = analytic_goodput(build_scenario(hot_spares=True, **common))  # type: ignore[arg-type]
    both = analytic_goodput(
        build_scenario(hot_spares=True, in_memory_checkpoint=True, nic_bytes_per_s_per_device=NIC, **common)  # type: ignore[arg-type]
    )
    cold_ettr, hot_ettr, both_ettr = (r.effective_training_time_ratio for r in (cold, hot, both))
    assert cold_ettr < hot_ettr <= both_ettr < 1.0
    # one interruption every ~3 minutes at Llama 3's per-device rates: restarts, not checkpoints, decide
    assert cold.job_mtbf_s == pytest.approx(54 * 24 * 3600 / 419 * 16384 / 1_000_000, rel=1e-6)
    assert math.isfinite(cold_ettr) and cold_ettr < 0.5
