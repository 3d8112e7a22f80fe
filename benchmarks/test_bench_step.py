"""Step-model benchmarks: scalar estimates per second, and cost independent of the device count.

Targets (issue 3): >= 2,000 scalar estimates per second on one core; an estimate for 1,000,000 devices costs
the same as for 8 (the model works per rank and per topology level, never per device).
"""

from __future__ import annotations

from typing import Any

import pytest

from rainier.hardware import cluster_of
from rainier.parallel import Plan
from rainier.perf.step import estimate
from rainier.workload import Recompute, get_model

pytestmark = pytest.mark.bench

SHAPE = get_model("llama-3-70b")


@pytest.mark.parametrize("devices", [8, 1024, 1_048_576])
def test_estimate_cost_vs_device_count(benchmark: Any, devices: int) -> None:
    tp, pp = 8, (1 if devices == 8 else 8)
    dp = devices // (tp * pp)
    plan = Plan(
        tp_degree=tp,
        pp_degree=pp,
        dp_degree=dp,
        mbs=1,
        gbs=dp * 16,
        recompute=Recompute.SELECTIVE,
        sequence_parallel=True,
    )
    cluster = cluster_of("trn2", devices)
    result = benchmark(estimate, SHAPE, plan, cluster)
    assert result.step_time_s > 0  # type: ignore[union-attr]


def test_frontier_moe_on_rainier(benchmark: Any) -> None:
    from rainier.hardware import get_cluster

    cluster = get_cluster("rainier-trn2-500k")
    shape = get_model("frontier-2t-moe")
    plan = Plan(
        tp_degree=4,
        pp_degree=8,
        dp_degree=cluster.num_devices // 32,
        ep_degree=8,
        mbs=1,
        gbs=cluster.num_devices // 32,
        recompute=Recompute.FULL,
        sequence_parallel=True,
    )
    result = benchmark(estimate, shape, plan, cluster)
    assert result.step_time_s > 0  # type: ignore[union-attr]
