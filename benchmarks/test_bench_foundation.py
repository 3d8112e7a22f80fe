"""Foundation benchmarks: catalog loading and model summaries.

Targets (reported, not asserted as timings in tests): the whole catalog loads in well under a second; a model
summary (parameters, FLOPs, state bytes, KV cache) takes well under a millisecond, so later layers can call it
freely.
"""

from __future__ import annotations

from typing import Any

import pytest

from rainier import hardware
from rainier.catalog.loader import source_index
from rainier.workload import get_model, models, summarize
from rainier.workload.registry import model_entries

pytestmark = pytest.mark.bench


def _cold_catalog() -> int:
    for cached in (
        source_index,
        hardware.accelerators,
        hardware.fabrics,
        hardware.systems,
        hardware.clusters,
        model_entries,
    ):
        cached.cache_clear()  # type: ignore[attr-defined]
    return len(hardware.clusters()) + len(models())


def test_catalog_cold_load(benchmark: Any) -> None:
    assert benchmark(_cold_catalog) > 0


@pytest.mark.parametrize("name", ["llama-3-405b", "deepseek-v3", "frontier-2t-moe"])
def test_model_summary(benchmark: Any, name: str) -> None:
    shape = get_model(name)
    result = benchmark(summarize, shape)
    assert result.params_total > 0
