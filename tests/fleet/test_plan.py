"""Whole runs: batch law, run arithmetic (days, energy, cost), deadline sizing, bad input."""

from __future__ import annotations

import math

import pytest

from rainier.api.fleet import StepFinder, run_fleet_plan
from rainier.fleet.plan import (
    Price,
    critical_batch_tokens,
    deadline_sizes,
    default_batch_sequences,
    peak_floor_days,
    plan_run,
    smallest_for_deadline,
)
from rainier.fleet.power import fleet_cluster
from rainier.hardware import Cluster
from rainier.parallel.plan import Infeasible
from rainier.perf.result import StepEstimate
from rainier.units import JOULES_PER_MWH, SECONDS_PER_DAY
from rainier.workload import get_model
from rainier.workload.flops import model_flops_per_token


def test_critical_batch_law_by_hand() -> None:
    # DeepSeek LLM eq. 1: B = 0.2920 C^0.3271; C = 1e25 -> 10^(25 x 0.3271) = 10^8.1775
    assert critical_batch_tokens(1e25) == pytest.approx(0.2920 * 10**8.1775, rel=1e-9)
    shape = get_model("llama-3-405b")
    compute = model_flops_per_token(shape) * 15.6e12
    assert default_batch_sequences(shape, 15.6e12) == round(critical_batch_tokens(compute) / shape.seq_len)
    with pytest.raises(ValueError, match="compute"):
        critical_batch_tokens(0.0)


def test_run_arithmetic_is_consistent() -> None:
    shape = get_model("llama-3-8b")
    cluster = fleet_cluster("h100-sxm", 64)
    finder = StepFinder(shape, 1e12, gbs=512)
    run = plan_run(shape, cluster, 1e12, step_on=finder, price=Price(usd_per_device_hour=2.0, source="test"))
    tokens_per_step = 512 * shape.seq_len
    assert run.num_steps == math.ceil(1e12 / tokens_per_step)
    assert run.compute_days == pytest.approx(run.num_steps * run.step_time_s / SECONDS_PER_DAY)
    assert run.wall_clock_days == pytest.approx(run.compute_days)  # no failure model given
    assert run.device_hours == pytest.approx(64 * run.wall_clock_days * 24)
    assert run.cost_usd == pytest.approx(2.0 * run.device_hours)
    assert run.footprint.facility_power_w is not None and run.energy_mwh is not None
    energy_j = run.footprint.facility_power_w * run.wall_clock_days * SECONDS_PER_DAY
    assert run.energy_mwh == pytest.approx(energy_j / JOULES_PER_MWH)
    assert run.tokens_per_joule == pytest.approx(run.trained_tokens / energy_j)
    assert run.usd_per_million_tokens == pytest.approx(run.cost_usd / run.trained_tokens * 1e6)


def test_goodput_stretches_wall_clock_energy_and_cost() -> None:
    shape = get_model("llama-3-8b")
    cluster = fleet_cluster("h100-sxm", 64)
    finder = StepFinder(shape, 1e12, gbs=512)
    price = Price(usd_per_device_hour=2.0, source="test")
    ideal = plan_run(shape, cluster, 1e12, step_on=finder, price=price)
    lossy = plan_run(shape, cluster, 1e12, step_on=finder, price=price, goodput=lambda c, s, h: 0.8)
    assert lossy.wall_clock_days == pytest.approx(ideal.wall_clock_days / 0.8)
    assert lossy.energy_mwh == pytest.approx((ideal.energy_mwh or 0) / 0.8)
    assert lossy.cost_usd == pytest.approx((ideal.cost_usd or 0) / 0.8)


def test_deadline_sizes_series() -> None:
    assert deadline_sizes(8, 8 * 16) == [8 * n for n in (1, 2, 3, 4, 6, 8, 12, 16)]


def test_smallest_cluster_meets_the_deadline_and_the_next_smaller_does_not() -> None:
    shape = get_model("llama-3-8b")
    base = fleet_cluster("h100-sxm", 8)
    finder = StepFinder(shape, 2e12)
    price = Price(usd_per_device_hour=None, source="none")
    run = smallest_for_deadline(shape, base, 2e12, 10.0, step_on=finder, price=price)
    assert run.wall_clock_days <= 10.0
    sizes = deadline_sizes(8, 10_000_000)
    smaller = sizes[sizes.index(run.footprint.devices) - 1]
    slower = plan_run(shape, fleet_cluster("h100-sxm", smaller), 2e12, step_on=finder, price=price)
    assert slower.wall_clock_days > 10.0
    assert run.notes[0] == (  # the output says which deadline the size was chosen for
        f"deadline 10 days: {run.footprint.devices:,} devices is the smallest size tried that meets it "
        f"({run.wall_clock_days:.1f} days; {smaller:,} devices take {slower.wall_clock_days:.1f})"
    )


def test_impossible_deadline_names_the_field() -> None:
    with pytest.raises(ValueError, match="deadline-days"):
        run_fleet_plan(
            model="llama-3-8b", tokens=2e12, accelerator="h100-sxm", count=64, deadline_days=0.01, failures=False
        )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tokens": 0.0}, "tokens"),
        ({"tokens": -1e12}, "tokens"),
        ({"count": -8}, "count"),
        ({"price": "-2"}, "price"),
        ({"price": "trn2=abc"}, "price"),
        ({"gbs": 0}, "gbs"),
        ({"batch_tokens": 10.0}, "batch-tokens"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"model": "llama-3-8b", "tokens": 1e12, "accelerator": "h100-sxm", "count": 64}
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        run_fleet_plan(**args, failures=False)  # type: ignore[arg-type]


def test_multi_site_run_counts_the_wan_or_uses_one_site() -> None:
    run = run_fleet_plan(model="llama-3-70b", tokens=15e12, cluster="rainier-trn2-500k", failures=False)
    assert run.sites is not None
    best = run.sites.best
    if best.name == "largest-site-only":
        assert run.footprint.devices == best.devices < 499_968
    else:
        assert run.step_time_s == pytest.approx(best.step_time_s)


def test_sizes_that_cannot_meet_the_deadline_at_peak_are_not_searched() -> None:
    """The peak-FLOP/s bound skips the small sizes, and the answer is the one the size-by-size search gives."""
    shape = get_model("llama-3-8b")
    base = fleet_cluster("h100-sxm", 8)
    finder = StepFinder(shape, 2e12)
    price = Price(usd_per_device_hour=None, source="none")
    searched: list[int] = []

    def counting(cluster: Cluster) -> StepEstimate | Infeasible | None:
        searched.append(cluster.num_devices)
        return finder(cluster)

    floor = peak_floor_days(shape, 2e12, finder.precisions)
    plain = smallest_for_deadline(shape, base, 2e12, 10.0, step_on=finder, price=price)
    bounded = smallest_for_deadline(shape, base, 2e12, 10.0, step_on=counting, price=price, floor_days=floor)
    assert bounded.footprint.devices == plain.footprint.devices
    assert bounded.wall_clock_days == plain.wall_clock_days
    sizes = deadline_sizes(8, 10_000_000)
    assert searched[0] > sizes[0] and searched[-1] == plain.footprint.devices  # some sizes skipped, none after
    for devices in sizes[: sizes.index(plain.footprint.devices) + 1]:
        cluster = fleet_cluster("h100-sxm", devices)
        found = plan_run(shape, cluster, 2e12, step_on=finder, price=price)
        assert floor(cluster) <= found.wall_clock_days  # a bound: no plan the search finds beats it
