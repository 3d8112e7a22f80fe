"""Serving-simulation benchmark: 1,000,000 Poisson requests on 200 replicas of an 8B-class model.

Target: >= 1,000,000 simulated requests per minute of wall time on one core. Only engine iterations, arrivals and
KV transfers are events (an iteration advances every running sequence by one token), so the run is about
1M arrivals plus ~4M iterations through the kernel's heap. The first test times the simulator with a stand-in
roofline cost; the second with the real one (``rainier.serve.cost``, Llama 3 8B on H100s), whose ~1.3 us per
call is paid once per iteration. Fewer requests per replica mean smaller batches, more iterations per request and
fewer requests per minute.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from rainier.hardware import cluster_of
from rainier.serve.cost import replica_cost
from rainier.serve.estimate import resolve_serve_efficiency
from rainier.serve.limits import MAX_ITERATIONS
from rainier.serve.simulate import IterationCost, LengthDistribution, ServeResult, ServeScenario, simulate_serving
from rainier.workload import get_model

pytestmark = pytest.mark.bench
TARGET_REQUESTS_PER_MIN = 1_000_000
NUM_REQUESTS = 1_000_000
NUM_REPLICAS = 200
RATE_PER_REPLICA_PER_S = 20.0  # a loaded but stable fleet: mean batch ~60, TTFT p99 ~150 ms
REAL_RATE_PER_REPLICA_PER_S = 8.0  # the same for the real cost (a slower replica): mean batch ~40


@dataclass(frozen=True)
class EightBOnH100:
    """Roofline of a dense 8B model on one H100: 2 x 8e9 FLOP per token at 800 TFLOP/s, or 16 GB of weights and
    128 KiB of KV per cached token read at 3 TB/s, whichever is longer, plus 0.5 ms of launch overhead."""

    kv_capacity_tokens: int = 440_000
    kv_bytes_per_token: float = 131_072.0
    max_batch: int = 256

    def iteration_s(self, prefill_tokens: int, decode_seqs: int, kv_tokens: int) -> float:
        compute = (prefill_tokens + decode_seqs) * 16e9 / 8e14
        memory = (16e9 + kv_tokens * 131_072.0) / 3e12
        return 5e-4 + (compute if compute > memory else memory)


def _run(benchmark: Any, label: str, cost: IterationCost, rate_per_replica_per_s: float) -> ServeResult:
    rate = NUM_REPLICAS * rate_per_replica_per_s
    scenario = ServeScenario(
        cost=cost,
        replicas=NUM_REPLICAS,
        rate_per_s=rate,
        duration_s=NUM_REQUESTS / rate,
        input_len=1024,
        output_len=250,
        length_distribution=LengthDistribution.GEOMETRIC,
        seed=0,
        max_requests=2 * NUM_REQUESTS,  # the benchmark measures speed: the CLI's default budgets do not apply
        max_iterations=MAX_ITERATIONS,
    )
    start = time.perf_counter()
    result: ServeResult = benchmark.pedantic(simulate_serving, args=(scenario,), rounds=1, iterations=1)
    elapsed = time.perf_counter() - start
    per_min = result.requests_submitted / elapsed * 60
    assert result.ttft_ms is not None and result.tpot_ms is not None
    print(
        f"\n{label}: {result.requests_submitted:,} requests on {NUM_REPLICAS} replicas: {elapsed:.1f} s wall, "
        f"{per_min:,.0f} requests/min (target >= {TARGET_REQUESTS_PER_MIN:,}); {result.iterations:,} iterations, "
        f"mean batch {result.mean_batch:.0f}, TTFT p99 {result.ttft_ms.p99:.0f} ms, "
        f"TPOT p50 {result.tpot_ms.p50:.1f} ms"
    )
    assert result.requests_submitted > 0.99 * NUM_REQUESTS
    assert result.requests_completed + result.rejected == result.requests_submitted
    assert not any("overloaded" in w for w in result.warnings)
    assert per_min >= TARGET_REQUESTS_PER_MIN
    return result


def test_million_requests_per_minute(benchmark: Any) -> None:
    _run(benchmark, "stand-in roofline", EightBOnH100(), RATE_PER_REPLICA_PER_S)


def test_million_requests_per_minute_real_cost(benchmark: Any) -> None:
    cluster = cluster_of("h100-sxm", 8)
    efficiency, _ = resolve_serve_efficiency(cluster, None)
    cost = replica_cost(get_model("llama-3-8b"), cluster, tp=1, eff=efficiency, max_batch=256)
    _run(benchmark, "serve.cost, llama-3-8b on h100-sxm", cost, REAL_RATE_PER_REPLICA_PER_S)


SIZE_TARGET_S = 30.0  # a fleet for a frontier MoE on three chip kinds, layouts and simulation checks included


def test_sizing_a_two_trillion_parameter_moe_fleet(benchmark: Any) -> None:
    """``serve size`` of a 2T-parameter MoE (200 requests/s) on Trainium2, H100 and GB200: every tensor- and
    expert-parallel layout (wide EP across nodes included) costed, each kind's fleet checked by simulation."""
    from rainier.api.serve import run_serve_size

    start = time.perf_counter()
    result = benchmark.pedantic(
        run_serve_size,
        kwargs={
            "models": "frontier-2t-moe:200",
            "slo": "ttft_p99_ms=2000,tpot_p99_ms=50",
            "accelerators": "trn2,h100-sxm,gb200",
        },
        rounds=1,
        iterations=1,
    )
    elapsed = time.perf_counter() - start
    fleets = {option["fleet"]: option["devices"] for option in result.to_dict()["options"]}
    print(f"\nserve size, frontier-2t-moe on three kinds: {elapsed:.1f} s (target {SIZE_TARGET_S:.0f} s); {fleets}")
    assert {"trn2", "h100-sxm", "gb200"} <= set(fleets)
    assert elapsed <= SIZE_TARGET_S
