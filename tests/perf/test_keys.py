"""Per-key tables (perf.keys) and the chunked evaluation that gathers from them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from rainier.hardware import cluster_of
from rainier.parallel import Schedule
from rainier.parallel.plan import DegreeUnit
from rainier.perf import batch, context, keys
from rainier.perf.step import flops_per_token_table, resolve_efficiency, step_context
from rainier.search.offload import with_offload
from rainier.search.space import SearchSpace, enumerate_plans
from rainier.workload import get_model


def test_distinct_finds_every_combination_and_indexes_it() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(-1, 3, 500)  # a sentinel below zero
    b = np.full(500, 7)  # constant over the batch
    c = rng.random(500) < 0.5  # booleans
    inverse, rows = keys.distinct([a, b, c])
    assert len(set(rows)) == len(rows) == len(set(zip(a.tolist(), b.tolist(), c.tolist(), strict=True)))
    for i in range(500):
        assert rows[inverse[i]] == (a[i], 7, int(c[i]))


def test_distinct_of_constant_columns_and_of_one_plan() -> None:
    inverse, rows = keys.distinct([np.full(10, 3), np.zeros(10, dtype=bool)])
    assert rows == [(3, 0)] and not inverse.any()
    inverse, rows = keys.distinct([np.array([5]), np.array([-1])])
    assert rows == [(5, -1)] and inverse.tolist() == [0]


@pytest.mark.parametrize("n", [2, 3, 64, 1000, 40_000])
def test_compiled_distinct_equals_numpys(n: int) -> None:
    """The compiled grouping (perf.distinct_loop) gives the numpy path's rows and indices: sentinels below zero,
    constant and boolean columns, sorted runs, more distinct codes than its first hash table holds, and code
    spaces too large for int64 (np.unique of the stacked columns on both paths)."""
    rng = np.random.default_rng(n)
    cases = [
        [rng.integers(-1, 3, n), np.full(n, 7), rng.random(n) < 0.5],
        [rng.integers(0, 100_000, n), rng.integers(-5, 5, n)],
        [np.sort(rng.integers(0, 5, n)), rng.integers(0, 3, n), np.repeat(rng.integers(0, 9, n // 2 + 1), 2)[:n]],
        [rng.integers(-(2**40), 2**40, n), rng.integers(0, 2**30, n)],
        [np.full(n, 3), np.zeros(n, dtype=bool)],
        [rng.integers(0, 4, n).astype(np.int32), rng.integers(0, 2, n).astype(np.uint8)],
    ]
    for columns in cases:
        inverse, rows = keys.distinct(columns, compiled=False)
        found_inverse, found_rows = keys.distinct(columns, compiled=True)
        assert found_rows == rows
        assert found_inverse.dtype == np.int64
        np.testing.assert_array_equal(found_inverse, inverse)
    bound = (0, 9)  # known bounds are taken as given
    column = rng.integers(0, 10, n)
    assert keys.distinct([column], [bound], compiled=True)[1] == keys.distinct([column], compiled=False)[1]


@pytest.mark.parametrize("n", [1, 2, 5000, 30_000])
def test_runs_number_the_runs_of_equal_columns(n: int) -> None:
    """perf.distinct_loop.runs: each plan's run of equal values in every column and each run's values, with room
    made for more runs than expected where needed."""
    from rainier.perf import distinct_loop

    rng = np.random.default_rng(n)
    ints = [np.repeat(rng.integers(0, 3, n), 3)[:n], rng.integers(0, 2, n) * (rng.random(n) < 0.1)]
    flags = [np.repeat(rng.random(n) < 0.5, 5)[:n]]
    starts = np.zeros(n, dtype=bool)  # where a run starts: the first plan, and where any column changes
    starts[0] = True
    for column in ints + flags:
        starts[1:] |= column[1:] != column[:-1]
    for expect in (0, n):
        run_of, run_ints, run_flags = distinct_loop.runs(ints, flags, expect=expect)
        np.testing.assert_array_equal(run_of, np.cumsum(starts) - 1)
        for column, values in zip(ints + flags, run_ints + run_flags, strict=True):
            np.testing.assert_array_equal(values, column[starts])


def _assert_same_fields(found: Any, expected: Any, names: Any) -> None:
    for name in names:
        mine, theirs = getattr(found, name), getattr(expected, name)
        if isinstance(theirs, keys.Runs):  # runs differ with the path; what they say of each plan does not
            for column, values in mine.columns.items():
                np.testing.assert_array_equal(values.take(mine.run_of), theirs.columns[column].take(theirs.run_of))
        elif isinstance(theirs, dict):
            assert list(mine) == list(theirs), name
            for k in theirs:
                np.testing.assert_array_equal(mine[k], theirs[k], err_msg=f"{name}[{k}]")
        elif isinstance(theirs, list | tuple):
            assert len(mine) == len(theirs), name
            for a, b in zip(mine, theirs, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_array_equal(mine, theirs, err_msg=name)
            assert np.asarray(mine).dtype == np.asarray(theirs).dtype, name


@pytest.mark.parametrize("order", ["listed", "shuffled"])
def test_keys_over_runs_of_plans_equal_keys_over_the_plans(monkeypatch: pytest.MonkeyPatch, order: str) -> None:
    """The keys found over runs of plans with equal structure columns (perf.distinct_loop.runs), then expanded to
    the plans, are the tables and indices found over every plan: in a search's order (long runs) and shuffled
    (runs of one plan), with HSDP, partial recompute and offload; and plan_keys equals its numpy path."""
    shape, cluster = get_model("mixtral-8x7b"), cluster_of("h100-sxm", 256)
    space = SearchSpace(
        schedules=tuple(Schedule), zero=(0, 1, 2, 3), hsdp=(2, 4), recompute_layers=(1,), offload=(1, 7)
    )
    cols = with_offload(enumerate_plans(shape, cluster, 512, space).valid, space.offload)
    if order == "shuffled":
        cols = cols.take(np.random.default_rng(2).permutation(len(cols)))
    assert cols.hsdp.any() and (cols.recompute_layers > 0).any()
    eff, _ = resolve_efficiency(cluster, None)
    ctx = step_context(shape, cluster, eff, DegreeUnit.DEVICE)
    over_runs = keys._over_runs(ctx, cols, longest=1.0)
    assert over_runs is not None
    structure, runs = over_runs
    per_plan = {"pass_index", "dp_index", "pp_index", "row_index"}  # per run in structure: gathered to the plans
    plan_by_plan = keys._structure(ctx, cols)
    _assert_same_fields(structure, plan_by_plan, [name for name in structure._fields if name not in per_plan])
    for name in per_plan:
        np.testing.assert_array_equal(getattr(structure, name).take(runs.run_of), getattr(plan_by_plan, name))
    found = keys.plan_keys(ctx, cols)
    monkeypatch.setattr(keys, "compiled_grouping", lambda n: False)
    expected = keys.plan_keys(ctx, cols)
    _assert_same_fields(found, expected, [*keys.PlanKeys.__dataclass_fields__, *per_plan, "comm_index"])


def test_through_finds_a_coarser_key_over_the_rows() -> None:
    index = np.array([0, 1, 2, 1, 0])
    inverse, values = keys.through(index, [(1, 2), (3, 2), (1, 5)], lambda x, y: (x,), lambda x: 10 * x)
    assert [values[i] for i in inverse] == [10, 30, 10, 30, 10]


@pytest.mark.parametrize(("model", "accelerator", "devices", "gbs"), [("mixtral-8x7b", "h100-sxm", 256, 512)])
def test_chunked_evaluation_matches_one_pass(
    monkeypatch: pytest.MonkeyPatch, model: str, accelerator: str, devices: int, gbs: int
) -> None:
    """Chunks slice the batch's per-key tables and write into one result: the same numbers as one prepare and
    assemble over the whole batch, field by field."""
    shape, cluster = get_model(model), cluster_of(accelerator, devices)
    space = SearchSpace(schedules=tuple(Schedule), zero=(0, 1, 2, 3), recompute_layers=(1,), offload=(1, 7))
    cols = with_offload(enumerate_plans(shape, cluster, gbs, space).valid, space.offload)
    cols = cols.take(np.random.default_rng(1).choice(len(cols), size=3000, replace=False))
    assert cols.offload.any() and (cols.recompute_layers > 0).any()
    eff, _ = resolve_efficiency(cluster, None)
    ctx = step_context(shape, cluster, eff, DegreeUnit.DEVICE)
    model_flops, hardware_flops = flops_per_token_table(shape)
    whole = batch.assemble(
        batch.prepare(ctx, cols, model_flops_per_token=model_flops, hardware_flops_per_token=hardware_flops), eff
    )
    monkeypatch.setattr(batch, "EVALUATE_CHUNK", 745)  # the last 20 plans take the numpy path
    chunked = batch.evaluate(ctx, cols, model_flops_per_token=model_flops, hardware_flops_per_token=hardware_flops)
    compiled = 4 * 745

    def same(a: np.ndarray, b: np.ndarray) -> None:
        np.testing.assert_array_equal(a[:compiled], b[:compiled])
        np.testing.assert_allclose(a[compiled:], b[compiled:], rtol=1e-12, atol=1e-15)  # numpy vs compiled

    same(chunked.step_time_s, whole.step_time_s)
    same(chunked.link_load_s, whole.link_load_s)
    for name in batch.BREAKDOWN_FIELDS:
        same(chunked.breakdown[name], whole.breakdown[name])
    for name in whole.memory:
        same(chunked.memory[name], whole.memory[name])
    for name in ("capacity_bytes", "model_flops_per_step", "hardware_flops_per_step", "host_offloaded", "fits"):
        same(getattr(chunked, name), getattr(whole, name))


def test_contexts_of_one_model_chip_and_efficiencies_share_their_pass_tables() -> None:
    """A deadline search builds a context per cluster size: the layer passes, which do not depend on the size,
    are formed once, and a context that finds them formed on another cluster size gives the step times it would
    give with tables of its own."""
    shape = get_model("llama-3-8b")
    small, large = cluster_of("h100-sxm", 64), cluster_of("h100-sxm", 4096)
    eff, _ = resolve_efficiency(small, None)
    mf, hf = flops_per_token_table(shape)
    cols = enumerate_plans(shape, large, 4096, SearchSpace()).valid

    def fresh(cluster: Any, efficiency: Any) -> context.StepContext:  # not step_context's cached ones
        return context.StepContext(shape=shape, cluster=cluster, eff=efficiency, unit=DegreeUnit.DEVICE)

    def step_times(ctx: context.StepContext) -> Any:
        return batch.evaluate(ctx, cols, model_flops_per_token=mf, hardware_flops_per_token=hf).step_time_s

    context._SHARED.clear()
    alone = step_times(fresh(large, eff))  # tables formed on the large cluster itself
    context._SHARED.clear()
    first = fresh(small, eff)
    batch.evaluate(first, enumerate_plans(shape, small, 64, SearchSpace()).valid, model_flops_per_token=mf,
                   hardware_flops_per_token=hf)  # fmt: skip
    assert first.tables
    second = fresh(large, eff)
    assert second.tables is first.tables and second._passes is first._passes
    np.testing.assert_array_equal(step_times(second), alone)
    other = fresh(small, replace(eff, gemm=eff.gemm * 0.9))
    assert other.tables is not first.tables and not other.tables
    for k in range(context.SHARED_CONTEXTS + 1):
        fresh(small, replace(eff, gemm=0.5 + k / 100))
    assert len(context._SHARED) == context.SHARED_CONTEXTS
