"""Training-step simulator benchmarks (issue 16): one simulated step of the big cases, and peak memory.

Targets: Llama 3 405B on 16,384 H100 in under 10 s; a frontier MoE step on the ~500k-Trainium2 Rainier cluster
in under 60 s; peak memory under 4 GiB. The simulator runs one rank class per pipeline rank (symmetry), so its
cost grows with pipeline ranks x micro-batches x chunks, not with the device count.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import pytest

from rainier.api import run_simulate

pytestmark = pytest.mark.bench

CASES = {
    # Llama 3 405B's pre-training layout (Dubey et al. 2024, Table 4: tp 8, cp 1, pp 16, dp 128, 16k GPUs).
    "llama-3-405b-16k-h100": (
        {"model": "llama-3-405b", "accelerator": "h100-sxm", "count": 16384},
        "tp=8,pp=16,dp=128,mbs=1,gbs=2048,zero=1,sp=true,schedule=interleaved,vpp=2",
        10.0,
    ),
    # The demo's frontier MoE on every Trn2 of rainier-trn2-500k, 16 micro-batches per pipeline.
    "frontier-moe-500k-trn2": (
        {"model": "frontier-2t-moe", "cluster": "rainier-trn2-500k"},
        "tp=4,pp=8,ep=8,etp=1,mbs=1,gbs=249984,sp=true,recompute=full,zero=1",
        60.0,
    ),
}
MEMORY_GIB = 4.0


@pytest.mark.parametrize("name", list(CASES))
def test_simulated_step_time_and_memory(benchmark: Any, name: str) -> None:
    where, plan, budget_s = CASES[name]
    start = time.perf_counter()
    result = benchmark.pedantic(lambda: run_simulate(plan=plan, **where), rounds=1, iterations=1)
    elapsed = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"{name}: {result.num_operations:,} operations in {elapsed:.2f} s, step {result.step_time_s:.3f} s "
        f"(estimate {result.estimate.step_time_s:.3f} s), peak RSS {peak_gib:.2f} GiB"
    )
    assert elapsed < budget_s
    assert peak_gib < MEMORY_GIB
