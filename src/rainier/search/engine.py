"""Plan search: enumerate the space, evaluate every valid plan with the vectorised step model, rank.

Objectives are per token trained: seconds (``time``), dollars (``cost``: devices x price per device-hour) and
joules (``energy``: devices x all-in power per device). On one fixed cluster the three rank plans alike (each
is step time times a constant); they differ when cluster sizes vary (``--pareto``, ``train scale``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from rainier.errors import InputError
from rainier.hardware import Cluster, systems
from rainier.parallel.batch_target import BatchTarget
from rainier.parallel.plan import DegreeUnit, InfeasibleKind
from rainier.perf.batch import evaluate
from rainier.perf.columns import PlanColumns
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate, flops_per_token_table, resolve_efficiency, step_context
from rainier.search.offload import Evaluated, can_offload, with_offload
from rainier.search.result import Objective, RankedPlan, SearchResult
from rainier.search.space import SearchSpace, check_gbs, enumerate_plans
from rainier.units import GIB, SECONDS_PER_HOUR
from rainier.workload.shape import TransformerShape

CHUNK = 32_768  # plans evaluated per numpy pass (bounds memory: ~200 arrays of plans x rows x link classes)
MEMO_SEARCHES = 128  # results kept for asking again (search); a fleet scenario asks a dozen or two
_MEMO: dict[tuple[object, ...], SearchResult] = {}
_MEMO_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Rates:
    """Price and power per device, for the cost and energy objectives (None when the catalog has none)."""

    usd_per_device_hour: float | None
    watts_per_device: float | None

    price_source: str = ""

    @classmethod
    def of(cls, cluster: Cluster, price: float | None = None) -> Rates:
        """The cluster's own price, else the cheapest priced catalog system of the same accelerator."""
        power = cluster.power_w_per_device_all_in or cluster.accelerator.power_w
        if price is not None:
            return cls(usd_per_device_hour=price, watts_per_device=power, price_source="--price")
        if cluster.device_price_usd_per_hour is not None:
            source = cluster.id if cluster.price_usd_per_device_hour is not None else cluster.system.id
            return cls(
                usd_per_device_hour=cluster.device_price_usd_per_hour, watts_per_device=power, price_source=source
            )
        priced = sorted(
            (s.price_usd_per_device_hour, s.id)
            for s in systems()
            if s.accelerator.id == cluster.accelerator.id and s.price_usd_per_device_hour is not None
        )
        if priced:
            return cls(usd_per_device_hour=priced[0][0], watts_per_device=power, price_source=priced[0][1])
        return cls(usd_per_device_hour=None, watts_per_device=power)


def _require(objective: Objective, rates: Rates, cluster: Cluster) -> None:
    if objective is Objective.COST and rates.usd_per_device_hour is None:
        raise InputError(
            f"objective=cost needs a price: {cluster.id} has no public price per device-hour; "
            "pass --price USD_PER_DEVICE_HOUR"
        )
    if objective is Objective.ENERGY and rates.watts_per_device is None:
        raise InputError(f"objective=energy needs power: {cluster.accelerator.id} has no power in the catalog")


def search(
    shape: TransformerShape,
    cluster: Cluster,
    *,
    gbs: int | BatchTarget,
    seq_len: int | None = None,
    objective: Objective = Objective.TIME,
    top_k: int = 10,
    space: SearchSpace | None = None,
    efficiency: Efficiency | EfficiencyTable | None = None,
    price: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    round_gbs: bool = False,
) -> SearchResult:
    """Every valid plan of ``shape`` on all of ``cluster`` at global batch ``gbs`` sequences, ranked.

    ``gbs`` is an exact batch, or a :class:`BatchTarget` whose rule gives each plan its batch (shown per plan).
    With ``round_gbs``, ``gbs`` is a target each plan rounds up to a batch it can run (see ``enumerate_plans``).
    Raises ``InputError`` when no plan is feasible, naming the binding constraint.
    """
    check_gbs(gbs.sequences if isinstance(gbs, BatchTarget) else gbs)
    if top_k < 1:
        raise InputError(f"top={top_k} is invalid: at least 1")
    if seq_len is not None:
        shape = shape.with_seq_len(seq_len)
    space = space or SearchSpace()
    rates = Rates.of(cluster, price)
    _require(objective, rates, cluster)
    started = time.perf_counter()
    eff, _ = resolve_efficiency(cluster, efficiency)
    # A search is a pure function of these (the efficiencies resolved): the last few results are kept, so asking
    # again (a web form resubmitted, a report that shows a plan the fleet search found) costs nothing.
    key: tuple[object, ...] | None = (shape, cluster, gbs, objective, top_k, space, eff, rates, round_gbs)
    try:
        hash(key)
    except TypeError:  # a value that is not frozen: searched every time
        key = None
    if key is not None and progress is None:  # a search that reports progress runs
        with _MEMO_LOCK:
            kept = _MEMO.pop(key, None)
            if kept is not None:
                _MEMO[key] = kept  # the most recently asked goes last: the least recently asked is dropped first
        if kept is not None:
            return replace(kept, elapsed_s=time.perf_counter() - started)
    result = _search(shape, cluster, gbs, objective, top_k, space, eff, rates, progress, round_gbs, started)
    if key is not None:
        with _MEMO_LOCK:
            _MEMO[key] = result
            while len(_MEMO) > MEMO_SEARCHES:
                _MEMO.pop(next(iter(_MEMO)))
    return result


def _search(
    shape: TransformerShape,
    cluster: Cluster,
    gbs: int | BatchTarget,
    objective: Objective,
    top_k: int,
    space: SearchSpace,
    eff: Efficiency,
    rates: Rates,
    progress: Callable[[int, int], None] | None,
    round_gbs: bool,
    started: float,
) -> SearchResult:
    ctx = step_context(shape, cluster, eff, DegreeUnit.DEVICE)
    found = enumerate_plans(shape, cluster, gbs, space, round_gbs=round_gbs)
    hosted = can_offload(cluster.accelerator)
    if space.offload and not hosted:
        raise InputError(
            f"space.offload needs the host link of {cluster.accelerator.id}, but the catalog has no cited host "
            "link bandwidth and host memory for it; leave offload out of the space"
        )
    cols = with_offload(found.valid, space.offload) if space.offload else found.valid
    model_flops, hardware_flops = flops_per_token_table(shape)

    def run(plans: PlanColumns, retry: bool) -> Evaluated:
        out = Evaluated.empty(len(plans), keep_failing=retry)
        for start in range(0, len(plans), CHUNK):
            part = plans.take(np.arange(start, min(start + CHUNK, len(plans))))
            batch = evaluate(ctx, part, model_flops_per_token=model_flops, hardware_flops_per_token=hardware_flops)
            out.fill(start, batch, batch.step_time_s / (part.gbs * shape.seq_len), top_k)
            if progress is not None:
                progress(start + len(part), len(plans))
        return out

    evaluated = run(cols, space.offload is None and hosted)
    parts = [(cols, evaluated)]
    if evaluated.failing:
        # Plans that fit only with offload and could rank, each with the fewest kinds that fit (search.offload).
        # They are kept apart rather than appended: copying every column of a large space costs more than them.
        more = evaluated.retry(cols, top_k)
        if len(more):
            parts.append((more, run(more, False)))
    elapsed = time.perf_counter() - started
    rejected = dict(found.rejected)
    unfit = sum(int((~e.fits).sum()) for _, e in parts)
    if unfit:
        rejected[InfeasibleKind.MEMORY.value] = unfit
    picks: list[tuple[float, PlanColumns, int]] = []
    for plans, result in parts:
        # seconds per token: the three objectives order one cluster's plans alike (module docstring)
        score = result.score
        feasible = np.flatnonzero(result.fits)
        best = feasible[np.argsort(score[feasible], kind="stable")][:top_k]
        picks += [(float(score[i]), plans, int(i)) for i in best]
    num_evaluated = sum(len(plans) for plans, _ in parts)
    if not picks:
        memory = np.concatenate([e.memory for _, e in parts])
        why = _binding_constraint(found.binding, found.reasons, rejected, memory, evaluated.capacity, num_evaluated)
        if why.startswith("no valid plan: memory") and space.offload is None:
            why += (
                "; offload to host memory was tried too"
                if hosted
                else f"; offload not tried: {cluster.accelerator.id} has no cited host link in the catalog"
            )
        raise InputError(why)
    picks.sort(key=lambda pick: pick[0])  # stable: on a tie the plan enumerated first stays first
    top = tuple(
        _ranked(shape, plans.plan_at(i), cluster, eff, rates, int(plans.gbs[i]) * shape.seq_len)
        for _, plans, i in picks[:top_k]
    )
    notes = (f"price per device-hour from {rates.price_source}",) if rates.price_source else ()
    return SearchResult(
        model=shape.name,
        cluster=cluster.id,
        num_devices=cluster.num_devices,
        gbs=found.target.sequences,
        seq_len=shape.seq_len,
        objective=objective,
        evaluated=num_evaluated,
        candidates=found.candidates + num_evaluated - len(found.valid),  # offload variants are candidates too
        infeasible=rejected,
        elapsed_s=elapsed,
        top=top,
        notes=notes,
        batch=None if round_gbs else found.target,
    )


def _ranked(
    shape: TransformerShape, plan: object, cluster: Cluster, eff: Efficiency, rates: Rates, tokens: int
) -> RankedPlan:
    result = estimate(shape, plan, cluster, efficiency=eff)  # type: ignore[arg-type]
    assert isinstance(result, StepEstimate), result  # enumerated plans pass the same checks
    per_token = result.step_time_s / tokens
    devices = cluster.num_devices
    dollars = (
        None
        if rates.usd_per_device_hour is None
        else per_token * devices * rates.usd_per_device_hour / (SECONDS_PER_HOUR)
    )
    joules = None if rates.watts_per_device is None else per_token * devices * rates.watts_per_device
    return RankedPlan(estimate=result, seconds_per_token=per_token, dollars_per_token=dollars, joules_per_token=joules)


def _binding_constraint(
    binding: tuple[str, str] | None,
    reasons: dict[str, str],
    rejected: dict[str, int],
    memory: np.ndarray,
    capacity: float,
    evaluated: int,
) -> str:
    """One line saying why no plan is feasible and what to try: the check that rejected the last plans left."""
    if evaluated and rejected.get(InfeasibleKind.MEMORY.value, 0) == evaluated:
        need = float(memory.min())
        return (
            f"no valid plan: memory: smallest need {need / GIB:.1f} GiB per device > {capacity / GIB:.1f} GiB; "
            "try zero=3, recompute=full, a smaller micro-batch, or more devices"
        )
    if not evaluated and rejected:
        # The check that removed the last plans left; else (no plan was ever built, e.g. every precision is
        # unsupported) the kind that rejected the most.
        if binding is None:
            kind = max(rejected, key=lambda k: rejected[k])
            binding = (kind, reasons.get(kind, kind))
        kind, why = binding
        return f"no valid plan: {kind}: {why}"
    return "no valid plan in the search space"
