"""Goodput benchmark (issue 5): a 1,000,000-chip, 90-day discrete-event run of a whole training job.

Target: <= 10 s. Failures are one superposed Poisson process (no per-device simulation) and the compute /
checkpoint timeline between interruptions is arithmetic, so only ~43,000 failures, their restarts and ~33,000
repairs go through the event heap; the run takes a fraction of a second.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from rainier.fleet.goodput import build_scenario, simulate_goodput

pytestmark = pytest.mark.bench
TARGET_S = 10.0


def test_million_trn2_ninety_days(benchmark: Any) -> None:
    scenario = build_scenario(num_devices=1_000_000, devices_per_server=16, accelerator="trn2", days=90, seed=0)
    start = time.perf_counter()
    result = simulate_goodput(scenario)
    elapsed = time.perf_counter() - start
    print(
        f"\n1,000,000 trn2, 90 days: {elapsed:.2f} s for {result.interruptions_unexpected:,} interruptions "
        f"(expected {result.expected_interruptions:,.0f}), ETTR {result.effective_training_time_ratio:.3f} "
        f"(analytic {result.analytic_effective_training_time_ratio:.3f})"
    )
    assert elapsed <= TARGET_S
    assert result.interruptions_unexpected > 40_000
    benchmark.pedantic(simulate_goodput, args=(scenario,), rounds=3, iterations=1)
