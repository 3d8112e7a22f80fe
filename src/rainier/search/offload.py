"""Offload in the plan search: which plans are tried with host offload, and the search's running results.

By default (a space without ``offload``) a plan is tried with offload only when it does not fit without it and
could, with offload, rank among the best ``top_k`` (offload only adds time, so a plan already slower than the
``top_k``-th fitting plan cannot), and then only with each *smallest* set of kinds that makes it fit (no subset of
the set fits; more kinds never make a step faster in ``perf.offload``'s model, so larger sets cannot win). The
sets are chosen with the step model's own memory rule (``perf.offload.offloaded_memory``) on the plan's memory
without offload, so the retried plans are exactly the ones that fit; they are then evaluated like any other. A
space file's ``offload: [optimizer, ...]`` tries every plan with each listed set instead, and ``offload: none``
never offloads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from numpy.typing import NDArray

from rainier.hardware import Accelerator
from rainier.perf.batch import BatchResult
from rainier.perf.columns import PlanColumns
from rainier.perf.memory import MEMORY_FIELDS, RESERVE_BYTES, RESERVE_FRACTION
from rainier.perf.offload import ALL, offloaded_memory

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
# Every non-empty set of kinds, smaller sets first (a set is tried only where none of its subsets fits).
MASKS = tuple(sorted(range(1, ALL + 1), key=lambda m: (bin(m).count("1"), m)))


def can_offload(accelerator: Accelerator) -> bool:
    """Whether the catalog gives the chip both figures offload needs (host link bandwidth, host memory)."""
    return accelerator.host_link_bw_bytes_per_s is not None and accelerator.host_memory_bytes is not None


def with_offload(cols: PlanColumns, masks: tuple[int, ...]) -> PlanColumns:
    """Every plan as it is and once with each offload set of ``masks`` (a space file's explicit list)."""
    copies = [cols]
    for mask in masks:
        if mask:
            copy = cols.take(np.arange(len(cols)))
            copy.offload[:] = mask
            copies.append(copy)
    return PlanColumns.concat(copies)


def offload_retries(
    cols: PlanColumns, memory: dict[str, FloatArray], capacity: FloatArray, host_capacity: FloatArray
) -> PlanColumns:
    """Plans that do not fit (``cols``, with their memory without offload), once with each smallest offload set
    that makes them fit."""
    n = len(cols)
    fitting: dict[int, NDArray[np.bool_]] = {}
    picks = []
    for mask in MASKS:
        after = offloaded_memory(
            memory, np.full(n, mask), reserve_bytes=RESERVE_BYTES, reserve_fraction=RESERVE_FRACTION
        )
        total = sum((after[k] for k in MEMORY_FIELDS), start=np.zeros(n))
        fits = (total <= capacity) & (after["host"] <= host_capacity)
        fitting[mask] = fits
        smallest = fits.copy()
        for size in range(1, bin(mask).count("1")):
            for subset in combinations([b for b in (1, 2, 4) if mask & b], size):
                smallest &= ~fitting[sum(subset)]
        take = np.flatnonzero(smallest)
        if len(take):
            copy = cols.take(take)
            copy.offload[:] = mask
            picks.append(copy)
    return PlanColumns.concat(picks) if picks else cols.take(np.arange(0))


@dataclass(slots=True)
class Evaluated:
    """The search's per-plan results so far: step time, device memory, offloaded host bytes, the capacities, and
    (``keep_failing``) the memory by kind of the plans that do not fit, for :meth:`retry`."""

    steps: FloatArray
    memory: FloatArray
    host: FloatArray
    host_capacity: FloatArray
    capacity: float = 0.0
    keep_failing: bool = False
    failing: list[tuple[IntArray, dict[str, FloatArray]]] = field(default_factory=list)
    best: FloatArray = field(default_factory=lambda: np.zeros(0))  # the best top_k fitting scores so far
    score: FloatArray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def empty(cls, n: int, *, keep_failing: bool = False) -> Evaluated:
        return cls(
            steps=np.empty(n),
            memory=np.empty(n),
            host=np.zeros(n),
            host_capacity=np.zeros(n),
            keep_failing=keep_failing,
            score=np.empty(n),
        )

    def fill(self, start: int, batch: BatchResult, score: FloatArray, top_k: int) -> None:
        """Record a chunk's results (``score``: its plans' objective, lower is better)."""
        end = start + len(batch.step_time_s)
        self.steps[start:end] = batch.step_time_s
        self.memory[start:end] = batch.memory_total
        self.host[start:end] = batch.host_offloaded
        self.host_capacity[start:end] = batch.host_capacity
        self.score[start:end] = score
        if end > start:
            self.capacity = float(batch.capacity_bytes[0])
        if not self.keep_failing:
            return
        fits = batch.fits
        # Offload only adds time (perf.offload): a plan that does not fit and scores no better than the top_k-th
        # fitting plan seen so far can never rank, so it is not kept for a retry.
        self.best = np.sort(np.concatenate([self.best, score[fits]]))[:top_k]
        bar = self.best[-1] if len(self.best) >= top_k else np.inf
        failing = np.flatnonzero(~fits & (score < bar))
        kept = (*MEMORY_FIELDS, "keep_share")
        self.failing.append((failing + start, {k: batch.memory[k][failing] for k in kept}))

    def retry(self, cols: PlanColumns, top_k: int) -> PlanColumns:
        """The failing plans that could enter the best ``top_k`` with offload, each with its smallest fitting sets.

        A plan whose score without offload is no better than the ``top_k``-th fitting plan's cannot enter (offload
        only adds time); the rest are retried.
        """
        bar = self.best[-1] if len(self.best) >= top_k else np.inf
        index = np.concatenate([i for i, _ in self.failing])
        chosen = self.score[index] < bar
        index = index[chosen]
        memory = {k: np.concatenate([m[k] for _, m in self.failing])[chosen] for k in self.failing[0][1]}
        return offload_retries(cols.take(index), memory, np.full(len(index), self.capacity), self.host_capacity[index])

    @property
    def fits(self) -> NDArray[np.bool_]:
        return (self.memory <= self.capacity) & (self.host <= self.host_capacity)
