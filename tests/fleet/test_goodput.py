"""The goodput simulation: the Llama 3 record, determinism, the analytic check, invariants, input errors."""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from rainier.fleet.failures import failure_model
from rainier.fleet.goodput import (
    GoodputScenario,
    analytic_goodput,
    build_scenario,
    expected_ettr_for_run,
    simulate_goodput,
)
from rainier.hardware import cluster_of
from rainier.report.goodput_view import goodput_tables
from rainier.workload import get_model

LLAMA3_405B = get_model("llama-3-405b")
LLAMA3_SEED = 0


def llama3_scenario(**changes: Any) -> GoodputScenario:
    """Meta's run: 16,384 H100 in 8-GPU servers, Llama 3 405B's checkpoint, a 54-day window."""
    base: dict[str, Any] = dict(
        num_devices=16384,
        devices_per_server=8,
        accelerator="h100-sxm",
        shape=LLAMA3_405B,
        days=54,
        seed=LLAMA3_SEED,
    )
    base.update(changes)
    return build_scenario(**base)


def _budget_hours(result: dict[str, Any]) -> float:
    return (
        result["productive_days"] * 24
        + result["lost_work_hours"]
        + result["checkpoint_hours"]
        + result["restart_hours"]
        + result["waiting_for_spares_hours"]
    )


# ---------------------------------------------------------------------------------------------------------------
# Validation against the published record
# ---------------------------------------------------------------------------------------------------------------


def test_llama3_scenario_reproduces_419_interruptions_and_90_percent_ettr() -> None:
    result = simulate_goodput(llama3_scenario())
    assert result.expected_interruptions == pytest.approx(419)
    assert abs(result.interruptions_unexpected - 419) <= 0.10 * 419
    assert result.effective_training_time_ratio > 0.90  # Meta: "more than 90% effective training time"
    assert result.wall_clock_days == 54
    assert result.job_mtbf_hours == pytest.approx(3.09, abs=0.01)
    assert sum(result.interruptions_by_cause.values()) == result.interruptions_unexpected
    assert result.waiting_for_spares_hours == 0  # 5% spares cover 48 h repairs at this scale


def test_long_window_rate_matches_the_record_closely() -> None:
    result = simulate_goodput(llama3_scenario(days=540))  # ten times the snapshot: ~4,190 expected
    assert result.interruptions_unexpected == pytest.approx(4190, rel=0.03)
    shares = {k: v / result.interruptions_unexpected for k, v in result.interruptions_by_cause.items()}
    assert shares["accelerator"] == pytest.approx(196 / 419, abs=0.03)
    assert shares["hbm"] == pytest.approx(72 / 419, abs=0.03)


def test_default_checkpoint_without_a_model_is_close_to_the_405b_one() -> None:
    scenario = build_scenario(num_devices=16384, devices_per_server=8, days=54)
    assert scenario.checkpoint_bytes == pytest.approx(405e9 * 14)
    assert scenario.spare_servers == math.ceil(0.05 * 2048)
    assert scenario.restart_time_s == pytest.approx(300, abs=1)  # a cold restart at 16,384 ranks
    assert scenario.checkpoint.write_s == pytest.approx(2.835)


# ---------------------------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_json() -> None:
    first = json.dumps(simulate_goodput(llama3_scenario(seed=11)).to_dict())
    second = json.dumps(simulate_goodput(llama3_scenario(seed=11)).to_dict())
    assert first == second


def test_different_seeds_differ() -> None:
    one = simulate_goodput(llama3_scenario(seed=1)).to_dict()
    two = simulate_goodput(llama3_scenario(seed=2)).to_dict()
    assert one["seed"] != two["seed"]
    assert one["interruptions_by_cause"] != two["interruptions_by_cause"]
    assert one["effective_training_time_ratio"] != two["effective_training_time_ratio"]


# ---------------------------------------------------------------------------------------------------------------
# Analytic cross-check
# ---------------------------------------------------------------------------------------------------------------


def test_simulation_agrees_with_daly_on_a_long_run() -> None:
    scenario = llama3_scenario(days=None, work_hours=2 * 365 * 24, seed=3)
    result = simulate_goodput(scenario)
    analytic = analytic_goodput(scenario)
    assert result.productive_days * 24 == pytest.approx(2 * 365 * 24)
    assert result.effective_training_time_ratio == pytest.approx(analytic.effective_training_time_ratio, rel=0.01)
    assert analytic.first_order_effective_training_time_ratio == pytest.approx(
        analytic.effective_training_time_ratio, rel=0.01
    )
    assert result.wall_clock_days * 86400 == pytest.approx(analytic.expected_wall_clock_s, rel=0.01)
    assert result.interruptions_unexpected == pytest.approx(analytic.expected_interruptions, rel=0.05)


def test_simulation_agrees_with_daly_when_failures_are_frequent() -> None:
    # 131,072 devices: one interruption every ~23 min, restart 5 min; Daly's model still holds
    scenario = build_scenario(num_devices=131072, devices_per_server=16, days=120, seed=2)
    result = simulate_goodput(scenario)
    assert result.effective_training_time_ratio == pytest.approx(
        result.analytic_effective_training_time_ratio, rel=0.02
    )
    assert result.effective_training_time_ratio < 0.8


def test_analytic_values_by_hand() -> None:
    scenario = llama3_scenario()
    analytic = analytic_goodput(scenario)
    mtbf = 54 * 24 * 3600 / 419
    tau, delta = scenario.checkpoint.interval_s, scenario.checkpoint.write_s
    recovery = scenario.restart_time_s + scenario.checkpoint.restore_s
    assert analytic.job_mtbf_s == pytest.approx(mtbf)
    assert tau == pytest.approx(math.sqrt(2 * delta * mtbf) - delta)
    expected = tau / (mtbf * math.exp(recovery / mtbf) * (math.exp((tau + delta) / mtbf) - 1))
    assert analytic.effective_training_time_ratio == pytest.approx(expected)
    first_order = (1 - (tau / 2 + recovery) / mtbf) * tau / (tau + delta)
    assert analytic.first_order_effective_training_time_ratio == pytest.approx(first_order)
    assert analytic.expected_interruptions == pytest.approx(419)


def test_expected_ettr_for_run_fits_the_plan_hook() -> None:
    ratio = expected_ettr_for_run(cluster_of("h100-sxm", 16384), LLAMA3_405B, 1000.0)
    assert ratio == pytest.approx(analytic_goodput(llama3_scenario()).effective_training_time_ratio, rel=1e-3)
    assert 0.9 < ratio < 1


# ---------------------------------------------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_more_failures_lower_ettr(seed: int) -> None:
    base = llama3_scenario(seed=seed)
    worse = replace(base, failure_model=base.failure_model.scaled(2.0))
    assert simulate_goodput(worse).effective_training_time_ratio < simulate_goodput(base).effective_training_time_ratio


@settings(max_examples=60, deadline=None)
@given(
    factor=st.floats(min_value=1.0, max_value=50.0),
    devices=st.integers(min_value=8, max_value=2_000_000),
    interval=st.one_of(st.none(), st.floats(min_value=1.0, max_value=1e5)),
    restart=st.floats(min_value=0.0, max_value=3600.0),
)
def test_analytic_ettr_never_rises_with_more_failures(
    factor: float, devices: int, interval: float | None, restart: float
) -> None:
    base = build_scenario(
        num_devices=devices, devices_per_server=8, days=30, checkpoint_interval_s=interval, restart_time_s=restart
    )
    worse = replace(base, failure_model=base.failure_model.scaled(factor))
    if interval is None:  # each keeps its own Daly optimum
        worse = replace(worse, checkpoint_interval_s=None)
    low, high = analytic_goodput(base), analytic_goodput(worse)
    assert 0 <= high.effective_training_time_ratio <= low.effective_training_time_ratio + 1e-12
    assert low.effective_training_time_ratio <= 1


@settings(max_examples=40, deadline=None)
@given(
    devices=st.integers(min_value=1, max_value=200_000),
    per_server=st.sampled_from([1, 4, 8, 16, 64]),
    days=st.floats(min_value=0.5, max_value=40.0),
    factor=st.floats(min_value=0.1, max_value=5.0),
    spare_fraction=st.sampled_from([0.0, 0.01, 0.05]),
    repair_hours=st.one_of(st.none(), st.floats(min_value=0.0, max_value=96.0)),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_time_budget_adds_up_and_ettr_is_a_fraction(
    devices: int,
    per_server: int,
    days: float,
    factor: float,
    spare_fraction: float,
    repair_hours: float | None,
    seed: int,
) -> None:
    servers = -(-devices // per_server)
    scenario = build_scenario(
        num_devices=devices,
        devices_per_server=per_server,
        days=days,
        seed=seed,
        failure_model=failure_model().scaled(factor),
        spare_servers=math.ceil(spare_fraction * servers),
        repair_time_s=None if repair_hours is None else repair_hours * 3600,
    )
    result = simulate_goodput(scenario).to_dict()
    wall_hours = result["wall_clock_days"] * 24
    assert _budget_hours(result) == pytest.approx(wall_hours, rel=1e-9)
    assert 0 <= result["effective_training_time_ratio"] <= 1
    assert sum(result["interruptions_by_cause"].values()) == result["interruptions_unexpected"]
    assert result["interruptions_hardware"] <= result["interruptions_unexpected"]
    assert min(result[k] for k in ("lost_work_hours", "checkpoint_hours", "restart_hours")) >= 0
    if scenario.recovery_s < 0.1 * scenario.job_mtbf_s and result["waiting_for_spares_hours"] == 0:
        assert result["effective_training_time_ratio"] > 0


def test_work_mode_finishes_the_work_and_budget_adds_up() -> None:
    result = simulate_goodput(llama3_scenario(days=None, work_hours=500.0, seed=5)).to_dict()
    assert result["productive_days"] * 24 == pytest.approx(500.0)
    assert result["work_hours"] == 500.0 and result["days"] is None
    assert _budget_hours(result) == pytest.approx(result["wall_clock_days"] * 24, rel=1e-9)
    assert result["effective_training_time_ratio"] == pytest.approx(500.0 / (result["wall_clock_days"] * 24))


def test_without_spares_the_job_waits_for_repairs() -> None:
    scenario = llama3_scenario(spare_servers=0, repair_time_s=6 * 3600, days=10, seed=4)
    result = simulate_goodput(scenario)
    assert result.waiting_for_spares_hours > 0
    assert (
        result.effective_training_time_ratio
        < simulate_goodput(replace(scenario, spare_servers=103)).effective_training_time_ratio
    )
    instant = simulate_goodput(replace(scenario, repair_time_s=0.0))
    assert instant.waiting_for_spares_hours == 0


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"num_devices": 0}, "num_devices=0 is invalid: must be an integer >= 1"),
        ({"devices_per_server": 2.5}, "devices_per_server=2.5 is invalid"),
        ({"failure_model": "default"}, "failure_model='default' is invalid: expected a FailureModel"),
        ({"checkpoint_bytes": -1.0}, "checkpoint_bytes=-1.0 is invalid: must be a finite number > 0"),
        ({"storage_write_bytes_per_s": 0.0}, "storage_write_bytes_per_s=0.0 is invalid"),
        ({"storage_read_bytes_per_s": math.nan}, "storage_read_bytes_per_s=nan is invalid"),
        ({"restart_time_s": -5.0}, "restart_time_s=-5.0 is invalid: must be a finite number >= 0"),
        ({"spare_servers": -1}, "spare_servers=-1 is invalid: must be an integer >= 0"),
        ({"checkpoint_interval_s": 0.0}, "checkpoint_interval_s=0.0 is invalid"),
        ({"repair_time_s": math.inf}, "repair_time_s=inf is invalid"),
        ({"days": -1.0}, "days=-1.0 is invalid"),
        ({"work_hours": 10.0}, "give exactly one horizon"),
        ({"days": None}, "give exactly one horizon"),
        ({"seed": -1}, "seed=-1 is invalid"),
        ({"seed": True}, "seed=True is invalid"),
    ],
)
def test_bad_scenarios_raise_value_error_naming_the_field(changes: dict[str, Any], match: str) -> None:
    base = llama3_scenario()
    values = {name: getattr(base, name) for name in base.__dataclass_fields__ if name != "checkpoint"}
    values.update(changes)
    with pytest.raises(ValueError, match=match):
        GoodputScenario(**values)


def test_runs_too_long_to_simulate_are_refused() -> None:
    scenario = build_scenario(num_devices=1_000_000, devices_per_server=16, days=20_000)
    with pytest.raises(ValueError, match=r"days=20000 is invalid: about [\d,]+ interruptions expected"):
        simulate_goodput(scenario)


def test_a_job_starved_of_spares_stops_with_an_explanation() -> None:
    scenario = llama3_scenario(days=None, work_hours=2000.0, spare_servers=1, repair_time_s=3 * 86400)
    with pytest.raises(ValueError, match="spare_servers=1 is invalid: the job did not finish"):
        simulate_goodput(scenario)


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------


def test_goodput_tables_render() -> None:
    result = simulate_goodput(llama3_scenario()).to_dict()
    console = Console(file=io.StringIO(), width=140, record=True)
    for table in goodput_tables(result):
        console.print(table)
    text = console.export_text()
    for expected in ("interruptions by cause", "where the wall clock goes", "HBM", "Daly 2006", "waiting for spare"):
        assert expected in text
    assert f"{result['interruptions_unexpected']:,}" in text
