"""Capacity growth: the power schedule grammar, devices per quarter by hand, runs per quarter."""

from __future__ import annotations

import math

import pytest

from rainier.api.fleet import run_fleet_grow
from rainier.fleet.grow import grow, parse_mix, parse_power_schedule


def test_schedule_and_devices_by_hand() -> None:
    steps = parse_power_schedule("2025Q4:1GW,2026Q4:+1GW@trn3", "trn2")
    assert [s.label for s in steps] == ["2025Q4", "2026Q4"]
    assert [s.added_w for s in steps] == [1e9, 1e9]
    plan = grow(steps)
    first, second = plan.quarters
    assert first.devices == {"trn2": math.floor(1e9 / (800 * 1.14))}
    assert second.devices["trn3"] == math.floor(1e9 / (1400 * 1.14))
    assert second.devices["trn2"] == first.devices["trn2"]  # nothing retired
    assert second.facility_power_w == pytest.approx(2e9)


def test_mix_shares() -> None:
    assert parse_mix("trn2,trn3") == (("trn2", 0.5), ("trn3", 0.5))
    assert parse_mix("trn2:1,trn3:3") == (("trn2", 0.25), ("trn3", 0.75))
    steps = parse_power_schedule("2025Q4:500MW", "trn2:1,trn3:3")
    devices = grow(steps).quarters[0].devices
    assert devices["trn3"] == math.floor(0.375e9 / (1400 * 1.14))


@pytest.mark.parametrize(
    ("schedule", "mix", "message"),
    [
        ("2025Q5:1GW", "trn2", "power-schedule"),
        ("2026Q1:1GW,2025Q4:+1GW", "trn2", "increasing"),
        ("2025Q4:1GW,2026Q1:0.5GW", "trn2", "already installed"),
        ("2025Q4:1GW", "trn2:-1", "positive share"),
        ("2025Q4:1GW", "tpu-v5e", "power figure"),
        ("", "trn2", "power-schedule"),
    ],
)
def test_bad_schedules(schedule: str, mix: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        grow(parse_power_schedule(schedule, mix))


def test_runs_per_quarter_grow_with_power() -> None:
    plan = run_fleet_grow(power_schedule="2025Q4:100MW,2026Q4:200MW", mix="trn2", model="llama-3-8b", tokens=15e12)
    runs = [q.runs_per_quarter for q in plan.quarters]
    assert runs[0] is not None and runs[1] is not None
    assert runs[1] == pytest.approx(2 * runs[0], rel=0.01)
