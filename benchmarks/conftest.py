"""Benchmarks run by ``make bench`` (deselected from ``make test``): speed and memory targets live here."""

from __future__ import annotations

import pytest

from rainier.hardware import cluster_of
from rainier.search.engine import search
from rainier.workload import get_model


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels() -> None:
    """Compile the step model's numba kernels (or load them from numba's on-disk cache) before anything is timed.

    A fresh install compiles them once, on its first large search (about 10 s on a 2-core machine), and keeps
    them on disk; the targets are for every run after that one.
    """
    search(get_model("llama-3-70b"), cluster_of("h100-sxm", 4096), gbs=1024, top_k=1)
