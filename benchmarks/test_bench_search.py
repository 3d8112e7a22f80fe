"""Search benchmarks (issue 4): vectorised evaluations per second, full searches, peak memory.

Targets: >= 5,000,000 plan evaluations per second on one core (issue 17; issue 4 asked for 1,000,000), a large
batch through the same cost model with the per-key pieces already cached as they are after the first chunk of a
search; a full search for a 1T dense model on 1,000,000 Trn2 in < 2 s (issue 17) and for DeepSeek-V3 on 16,384
H100 in <= 10 s on a 2-core machine; <= 2 GiB. On a shared VM the first figure moves by ~25% with the host's load
(4.8M-6.5M plans/s on one day's runs of the same code); the three rounds of one run agree within 2%.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import numpy as np
import pytest

from rainier.hardware import cluster_of
from rainier.parallel.plan import DegreeUnit
from rainier.perf.batch import evaluate
from rainier.perf.step import flops_per_token_table, resolve_efficiency, step_context
from rainier.search.engine import search
from rainier.search.space import SearchSpace, enumerate_plans
from rainier.workload import get_model

pytestmark = pytest.mark.bench
PLANS = 1_000_000


def test_vectorised_evaluations_per_second(benchmark: Any) -> None:
    shape, cluster = get_model("llama-3-70b"), cluster_of("h100-sxm", 4096)
    cols = enumerate_plans(shape, cluster, 4096, SearchSpace()).valid
    big = cols.take(np.resize(np.arange(len(cols)), PLANS))
    eff, _ = resolve_efficiency(cluster, None)
    ctx = step_context(shape, cluster, eff, DegreeUnit.DEVICE)
    model_flops, hardware_flops = flops_per_token_table(shape)

    def run() -> None:
        evaluate(ctx, big, model_flops_per_token=model_flops, hardware_flops_per_token=hardware_flops)

    run()  # warm the per-key caches, as the first chunk of a search does
    benchmark.pedantic(run, rounds=3, iterations=1)
    per_second = PLANS / benchmark.stats.stats.mean
    benchmark.extra_info["plan_evaluations_per_s"] = per_second
    print(f"\nvectorised: {per_second:,.0f} plan evaluations/s over {PLANS:,} plans")


@pytest.mark.parametrize(
    ("model", "accelerator", "devices", "gbs"),
    [("megatron-1t", "trn2", 1_000_000, 62_500), ("deepseek-v3", "h100-sxm", 16_384, 8_192)],
)
def test_full_search(benchmark: Any, model: str, accelerator: str, devices: int, gbs: int) -> None:
    shape, cluster = get_model(model), cluster_of(accelerator, devices)
    started = time.perf_counter()
    result = benchmark.pedantic(search, args=(shape, cluster), kwargs={"gbs": gbs, "top_k": 10}, rounds=1, iterations=1)
    elapsed = time.perf_counter() - started
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    benchmark.extra_info.update({"elapsed_s": elapsed, "evaluated": result.evaluated, "peak_rss_gib": peak_gib})
    print(
        f"\n{model} on {devices:,} {accelerator}: {result.candidates:,} candidates, {result.evaluated:,} evaluated "
        f"in {elapsed:.2f} s; best {result.top[0].estimate.plan.describe()}; peak RSS {peak_gib:.2f} GiB"
    )
