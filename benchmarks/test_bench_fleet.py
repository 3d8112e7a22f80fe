"""Fleet benchmarks (issue 5): whole-run plans at hyperscale and the headline scenario.

Targets (2-core machine): a run plan of the 2T-parameter MoE on the 1,000,000-chip Rainier cluster (plan search,
the WAN analysis of the fastest few plans, the largest site alone, analytic goodput) in <= 10 s; the headline
scenario of `make demo` (the run, its seeded failure simulation, four comparison runs and the Trn3/Trn2 ratio
runs) in <= 30 s; a deadline search over cluster sizes in <= 30 s.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from rainier.api.fleet import run_fleet_plan, run_fleet_scenario

pytestmark = pytest.mark.bench
SCENARIO = Path(__file__).resolve().parents[1] / "examples" / "rainier-frontier.yaml"


def _timed(label: str, target_s: float, func: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    result = func(**kwargs)
    elapsed = time.perf_counter() - start
    print(f"\n{label}: {elapsed:.2f} s (target <= {target_s:g} s)")
    assert elapsed <= target_s
    return result


def test_frontier_moe_on_a_million_trn2(benchmark: Any) -> None:
    kwargs = {"model": "frontier-2t-moe", "tokens": 15e12, "cluster": "rainier-trn2-1m"}
    run = _timed("fleet plan, 2T MoE on 1M Trn2", 10.0, run_fleet_plan, **kwargs)
    assert run.wall_clock_days > 0
    benchmark.pedantic(run_fleet_plan, kwargs=kwargs, rounds=2, iterations=1)


def test_headline_scenario(benchmark: Any) -> None:
    result = _timed("fleet scenario (make demo)", 30.0, run_fleet_scenario, path=str(SCENARIO))
    assert result.comparison is not None
    benchmark.pedantic(run_fleet_scenario, args=(str(SCENARIO),), rounds=1, iterations=1)


def test_deadline_search(benchmark: Any) -> None:
    kwargs = {"model": "llama-3-405b", "tokens": 15.6e12, "accelerator": "trn2", "deadline_days": 20.0}
    run = _timed("fleet plan --deadline-days, 405B on trn2", 30.0, run_fleet_plan, **kwargs)
    assert run.wall_clock_days <= 20.0
    benchmark.pedantic(run_fleet_plan, kwargs=kwargs, rounds=1, iterations=1)
