"""Scaling curves and Pareto fronts across cluster sizes."""

from __future__ import annotations

import pytest

from rainier.errors import InputError
from rainier.search.result import RankedPlan
from rainier.search.scaling import SizePoint, pareto_front, parse_counts, parse_pareto, scale
from rainier.workload import get_model


def test_parse_counts() -> None:
    assert parse_counts("1024..8192") == [1024, 2048, 4096, 8192]
    assert parse_counts("1k,4K,1m,1M") == [1000, 4096, 1_000_000, 1_048_576]
    for bad in ("", "0", "12..4", "1.5", "lots", "1..1e9999"):
        with pytest.raises(InputError, match="counts="):
            parse_counts(bad)


def test_parse_pareto() -> None:
    assert parse_pareto("time,cost") == ("time", "cost")
    with pytest.raises(InputError, match="time,cost or time,energy"):
        parse_pareto("cost,time")


def test_strong_scaling_is_faster_but_less_efficient_with_more_devices() -> None:
    points = scale(get_model("llama-3-70b"), "h100-sxm", [256, 1024, 4096], gbs=2048)
    steps = [p.best.estimate.step_time_s for p in points if p.best]
    mfus = [p.best.estimate.mfu for p in points if p.best]
    assert len(steps) == 3 and steps == sorted(steps, reverse=True)
    assert mfus == sorted(mfus, reverse=True)
    assert pareto_front(points, ("time", "cost")) == [2, 1, 0]


def test_weak_scaling_keeps_batch_per_device_and_reports_infeasible_sizes() -> None:
    points = scale(get_model("llama-3-405b"), "h100-sxm", [8, 1024], gbs_per_device=0.25)
    assert points[0].best is None and "memory" in points[0].error
    assert points[1].best is not None and points[1].gbs == 256
    assert "error" in points[0].to_dict() and "mfu" in points[1].to_dict()


def test_scale_needs_exactly_one_batch_rule() -> None:
    with pytest.raises(InputError, match="exactly one of --gbs"):
        scale(get_model("llama-3-8b"), "h100-sxm", [8], gbs=8, gbs_per_device=1.0)


def test_pareto_keeps_only_non_dominated_points() -> None:
    def point(devices: int, seconds: float, dollars: float) -> SizePoint:
        ranked = RankedPlan.__new__(RankedPlan)
        object.__setattr__(ranked, "seconds_per_token", seconds)
        object.__setattr__(ranked, "dollars_per_token", dollars)
        object.__setattr__(ranked, "joules_per_token", None)
        return SizePoint(num_devices=devices, gbs=1, best=ranked)

    points = [point(1, 4.0, 1.0), point(2, 2.0, 1.5), point(3, 3.0, 2.0), point(4, 1.0, 3.0)]
    assert pareto_front(points, ("time", "cost")) == [3, 1, 0]  # (3.0, 2.0) is beaten by (2.0, 1.5)
