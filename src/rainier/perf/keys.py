"""The per-key pieces of a batch of plans: what depends on a few small-cardinality columns, computed once.

Most of a plan's cost model depends on only a few of its columns: the layer passes on (tp, cp, ep, etp, mbs,
sp, precision, lora, flash, recipe), a collective on its group's (degree, stride), the pipeline rank rows on
(pp, chunks, first, last), the activation bytes on (tp, cp, mbs, sp, recompute, flash). A million plans have a
few hundred distinct values of each. :func:`plan_keys` finds them over the whole batch, asks the
:class:`~rainier.perf.context.StepContext` for each once, and keeps each plan's integer index into the tables;
``perf.batch.prepare`` gathers from them (``np.take``), chunk by chunk (:meth:`PlanKeys.part`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from rainier.parallel.plan import Recompute
from rainier.perf import distinct_loop, kernel
from rainier.perf.columns import RECOMPUTE_CODES, PlanColumns, chunks_of
from rainier.perf.compute import PassForms
from rainier.perf.context import Placed, StepContext
from rainier.perf.memory import row_param_sums
from rainier.perf.offload import fewest_layers

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

PASS_FIELDS = kernel.PASS_FIELDS  # the quantities of a pass table (perf.compute.PassForms fields)
LAYER_KINDS = ("dense", "moe", "head")
COMM_KINDS = kernel.COMM_FIELDS
ROW_NAMES = ("num_dense", "num_moe", "embedding", "head", "count", "first_rank")  # of parallel.pipeline.StageRow
FULL_CODE = RECOMPUTE_CODES[Recompute.FULL]
NONE_CODE = RECOMPUTE_CODES[Recompute.NONE]
# Each collective and the placed group it runs over.
COMM_GROUPS = (
    ("tp_ar", "tp", "all_reduce"),
    ("tp_rs", "tp", "reduce_scatter"),
    ("etp_ar", "etp", "all_reduce"),
    ("cp_step", "cp", "ring_step"),
    ("ep_a2a", "ep", "all_to_all"),
    ("pp_p2p", "pp", "p2p"),
    ("dp_ar", "dp", "all_reduce"),
    ("dp_rs", "dp_shard", "reduce_scatter"),
    ("edp_ar", "edp", "all_reduce"),
    ("edp_rs", "edp_shard", "reduce_scatter"),
    ("dpr_ar", "dp_replica", "all_reduce"),
    ("edpr_ar", "edp_replica", "all_reduce"),
)
DENSE_KEYS = 1 << 22  # key spaces up to this size are deduplicated with a lookup table instead of a sort


def distinct(
    keys: Sequence[NDArray[Any]], bounds: Sequence[tuple[int, int] | None] = (), *, compiled: bool | None = None
) -> tuple[IntArray, list[tuple[int, ...]]]:
    """Unique combinations of the key columns ``keys`` (integers or booleans, one array per column) and each
    plan's index into them, in the order of the combinations (lexicographic, as ``np.unique`` of the stacked
    columns).

    The columns that vary over the batch are packed into one mixed-radix integer per plan (the constant ones
    cost nothing); a single plan skips that. Where numba is installed and the batch has at least
    ``kernel.COMPILED_MIN_PLANS`` plans (``compiled``), the bounds and codes are found and grouped by compiled
    loops (``perf.distinct_loop``), else a small code space is deduplicated through a presence table (linear
    time), a larger one with ``np.unique``; both give the same result. ``bounds``: each column's (smallest,
    largest) value where known (e.g. an index into a table), else None.
    """
    n = len(keys[0])
    if n == 1:
        return np.zeros(1, dtype=np.int64), [tuple(int(k[0]) for k in keys)]
    if compiled is None:
        compiled = compiled_grouping(n)
    known = [*bounds, *[None] * (len(keys) - len(bounds))]
    if compiled:
        found = [b if b is not None else _bounds(k) for k, b in zip(keys, known, strict=True)]
        lo, hi = [b[0] for b in found], [b[1] for b in found]
    else:
        lo = [int(k.min()) if b is None else b[0] for k, b in zip(keys, known, strict=True)]
        hi = [int(k.max()) if b is None else b[1] for k, b in zip(keys, known, strict=True)]
    varying = [j for j in range(len(keys)) if hi[j] > lo[j]]
    if not varying:
        return np.zeros(n, dtype=np.int64), [tuple(lo)]
    radix = [hi[j] - lo[j] + 1 for j in varying]
    size = math.prod(radix)
    offset = 0  # the code of the smallest values, subtracted once at the end
    for j, r in zip(varying, radix, strict=True):
        offset = offset * r + lo[j]
    if size + abs(offset) >= 2**62:  # the codes (and numpy's before the offset comes off) would not fit in int64
        found_rows, inverse = np.unique(np.stack([keys[j] for j in varying], axis=1), axis=0, return_inverse=True)
        digits = [found_rows[:, v].tolist() for v in range(len(varying))]
    else:
        if compiled:  # codes from the smallest values up: no offset
            columns = [np.ascontiguousarray(keys[j], dtype=np.int64) for j in varying]
            unique_codes, inverse = distinct_loop.group(columns, [lo[j] for j in varying], radix)
        else:
            unique_codes, inverse = _codes(keys, varying, radix, offset, size)
        digits = [[] for _ in varying]
        rest = unique_codes
        for v in range(len(varying) - 1, -1, -1):
            rest, digit = np.divmod(rest, radix[v])
            digits[v] = (digit + lo[varying[v]]).tolist()
    count = len(digits[0])
    columns_out = [[lo[j]] * count for j in range(len(keys))]
    for v, j in enumerate(varying):
        columns_out[j] = digits[v]
    return inverse.reshape(-1), list(zip(*columns_out, strict=True))


def compiled_grouping(n: int) -> bool:
    """Whether :func:`distinct` groups ``n`` plans by compiled loops (numba installed, a batch the compiled
    loops take)."""
    return kernel.AVAILABLE and n >= kernel.COMPILED_MIN_PLANS


def _bounds(column: NDArray[Any]) -> tuple[int, int]:
    """A column's (smallest, largest) value: a compiled pass over integers (numpy reads them twice), numpy's
    own reductions over booleans (a byte each: already fast)."""
    if column.dtype == np.bool_:
        return int(column.min()), int(column.max())
    return distinct_loop.bounds(np.ascontiguousarray(column))


def _codes(
    keys: Sequence[NDArray[Any]], varying: list[int], radix: list[int], offset: int, size: int
) -> tuple[IntArray, IntArray]:
    """:func:`distinct`'s sorted distinct codes and each plan's index into them, in numpy array operations."""
    n = len(keys[0])
    codes = keys[varying[0]].astype(np.int64)
    for j, r in zip(varying[1:], radix[1:], strict=True):
        codes *= r
        codes += keys[j]
    if offset:
        codes -= offset
    if size <= max(DENSE_KEYS, 4 * n):
        present = np.zeros(size, dtype=bool)
        present[codes] = True
        unique_codes = np.flatnonzero(present)
        lookup = np.empty(size, dtype=np.int64)
        lookup[unique_codes] = np.arange(len(unique_codes))
        return unique_codes, lookup.take(codes)
    found: tuple[IntArray, IntArray] = np.unique(codes, return_inverse=True)
    return found


def gather(keys: Sequence[NDArray[Any]], compute: Callable[..., Any]) -> tuple[IntArray, list[Any]]:
    """:func:`distinct` rows of the key columns, ``compute`` of each, and each plan's index into them."""
    inverse, rows = distinct(keys)
    return inverse, [compute(*row) for row in rows]


def through(
    index: IntArray, rows: Sequence[tuple[int, ...]], key: Callable[..., tuple[Any, ...]], compute: Callable[..., Any]
) -> tuple[IntArray, list[Any]]:
    """``compute(*key(*row))`` of the distinct keys of ``rows``, and each plan's index into them, for plans that
    already index ``rows`` (``index``): a key of a few columns of a finer key is found over its few distinct
    rows, not over the plans."""
    local, computed = through_local(rows, key, compute)
    return local.take(index), computed


def through_local(
    rows: Sequence[tuple[int, ...]], key: Callable[..., tuple[Any, ...]], compute: Callable[..., Any]
) -> tuple[IntArray, list[Any]]:
    """:func:`through` before the plans: each row's index into the distinct keys, and ``compute`` of each."""
    found: dict[tuple[Any, ...], int] = {}
    local = [found.setdefault(key(*row), len(found)) for row in rows]  # a list: numpy's item assignment is slow
    return np.array(local, dtype=np.int64).reshape(len(rows)), [compute(*k) for k in found]


def placed_local(degree: IntArray, stride: IntArray, compute: Callable[[int, int], Any]) -> tuple[IntArray, list[Any]]:
    """:func:`through_local` of keys (degree, stride) given as an array each over the rows: the same indices and
    ``compute`` of the same distinct pairs in the same order (of each pair's first row), found by ``np.unique``
    over one integer per pair instead of a Python call per row, which over the few thousand rows of the
    data-parallel keys had cost more than the rest of those keys."""
    low = int(stride.min())
    codes = degree * (int(stride.max()) - low + 1) + (stride - low)  # one integer per distinct pair
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first)  # the pairs in the order of their first rows, as through_local's dict holds them
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    rows = first.take(order)
    pairs = zip(degree.take(rows).tolist(), stride.take(rows).tolist(), strict=True)
    return rank.take(inverse.reshape(-1)), [compute(d, s) for d, s in pairs]


# The columns every key but the activations' reads (:func:`_structure`), integers and booleans.
STRUCTURE_COLUMNS = (
    "tp",
    "cp",
    "ep",
    "etp",
    "mbs",
    "precision",
    "flash",
    "fp8_recipe",
    "dp",
    "shard",
    "pp",
    "schedule",
    "vpp",
    "pp_first",
    "pp_last",
)
STRUCTURE_FLAGS = ("sp", "lora")
RUNS_SAMPLE = 4096  # plans whose runs tell whether the runs of a batch are long enough to key it over them


@dataclass(frozen=True, slots=True)
class Runs:
    """Runs of consecutive plans with equal structure columns (:data:`STRUCTURE_COLUMNS` and
    :data:`STRUCTURE_FLAGS`): each plan's run (``run_of``), and each run's values of those columns and its rows of
    the pass, layout, data-parallel and pipeline keys. Where the plans were keyed plan by plan, every plan is a run
    of its own. The fused loop (``perf.fused``) reads a plan's structure through its run."""

    run_of: IntArray
    columns: dict[str, NDArray[Any]]
    pass_index: IntArray
    row_index: IntArray
    dp_index: IntArray
    pp_index: IntArray

    @staticmethod
    def of(found: _Structure, run_of: IntArray, columns: dict[str, NDArray[Any]]) -> Runs:
        """The runs whose keys :func:`_structure` found (one row per run)."""
        return Runs(
            run_of=run_of,
            columns=columns,
            pass_index=found.pass_index,
            row_index=found.row_index,
            dp_index=found.dp_index,
            pp_index=found.pp_index,
        )

    def part(self, start: int, stop: int) -> Runs:
        """The runs of plans ``start:stop`` (the runs' arrays are shared)."""
        return replace(self, run_of=self.run_of[start:stop])

    def per_plan(self, per_run: IntArray) -> IntArray:
        """A per-run array copied out to every plan of the run."""
        return per_run.take(self.run_of)


@dataclass(frozen=True, slots=True)
class PlanKeys:
    """The per-key tables of a batch of plans and each plan's index into them (see the module docstring).

    ``passes``: (pass keys x layer kinds x :data:`PASS_FIELDS` x forms); ``comm_slopes`` / ``comm_loads``: per
    collective of :data:`COMM_KINDS`, (groups x (slope up, slope out, intercept)) and (groups x link classes);
    ``comm_local``: each collective's group per row of the key it goes by (``comm_source``: the pass key,
    ``dp``: pass key, dp and HSDP shard, ``pp``: those and pp; each plan's row in :attr:`pass_index`, :attr:`dp_index`,
    :attr:`pp_index`), whence :attr:`comm_index`;
    ``ep_domains``: scale-out domains of each expert-parallel group; ``rows``: per :data:`ROW_NAMES`, (layouts x
    row slots, padded with zero-count rows) and what follows from a layout alone: ``param_sums``
    (``perf.memory.row_param_sums``), ``fewest`` (``perf.offload.fewest_layers``); ``activations`` / ``kept``:
    a dense and a MoE layer's activation bytes per micro-batch under the plan's recompute and under
    :func:`kept_recompute` (keys x 2); ``runs``: the plans' :class:`Runs`, which hold each plan's pass,
    data-parallel, pipeline and layout keys (:attr:`pass_index`, :attr:`dp_index`, :attr:`pp_index`,
    :attr:`row_index`: gathered where asked for; the fused loop reads them per run).
    """

    passes: FloatArray
    comm_slopes: dict[str, FloatArray]
    comm_loads: dict[str, FloatArray]
    comm_local: dict[str, IntArray]
    comm_source: dict[str, str]
    ep_domains: FloatArray
    rows: dict[str, FloatArray]
    param_sums: tuple[FloatArray, FloatArray]
    fewest: FloatArray
    activations: FloatArray
    activation_index: IntArray
    kept: FloatArray
    kept_index: IntArray
    runs: Runs

    @property
    def pass_index(self) -> IntArray:
        """Each plan's pass key (a row of ``passes``)."""
        return self.runs.per_plan(self.runs.pass_index)

    @property
    def dp_index(self) -> IntArray:
        """Each plan's row of the data-parallel key (pass key, dp, HSDP shard)."""
        return self.runs.per_plan(self.runs.dp_index)

    @property
    def pp_index(self) -> IntArray:
        """Each plan's row of the pipeline key (the data-parallel key and pp)."""
        return self.runs.per_plan(self.runs.pp_index)

    @property
    def row_index(self) -> IntArray:
        """Each plan's pipeline layout (a row of ``rows``)."""
        return self.runs.per_plan(self.runs.row_index)

    @property
    def comm_index(self) -> dict[str, IntArray]:
        """Each plan's row of each collective's tables."""
        sources = {"pass": self.pass_index, "dp": self.dp_index, "pp": self.pp_index}
        return {name: local.take(sources[self.comm_source[name]]) for name, local in self.comm_local.items()}

    def part(self, start: int, stop: int) -> PlanKeys:
        """The keys of plans ``start:stop`` (views; the tables are shared)."""
        return PlanKeys(
            passes=self.passes,
            comm_slopes=self.comm_slopes,
            comm_loads=self.comm_loads,
            comm_local=self.comm_local,
            comm_source=self.comm_source,
            ep_domains=self.ep_domains,
            rows=self.rows,
            param_sums=self.param_sums,
            fewest=self.fewest,
            activations=self.activations,
            activation_index=self.activation_index[start:stop],
            kept=self.kept,
            kept_index=self.kept_index[start:stop],
            runs=self.runs.part(start, stop),
        )


def pass_table(ctx: StepContext, key: tuple[Any, ...]) -> FloatArray:
    """The pass forms of ``ctx.passes(key)`` as one array (layer kinds x PASS_FIELDS x forms), cached."""
    found: FloatArray | None = ctx.tables.get(key)
    if found is None:
        found = _forms_table(ctx.passes(key))
        ctx.tables[key] = found
    return found


def _forms_table(forms: tuple[PassForms, PassForms | None, PassForms]) -> FloatArray:
    table = np.zeros((len(LAYER_KINDS), len(PASS_FIELDS), 4))
    for k, item in enumerate(forms):
        if item is not None:
            for q, name in enumerate(PASS_FIELDS):
                table[k, q] = getattr(item, name)
    return table


def _comm_table(placed: list[Placed], kind: str) -> tuple[FloatArray, FloatArray]:
    """A collective's (slope up, slope out, intercept) and per-link loads for each distinct placed group."""
    items = [getattr(p.links, kind) for p in placed]
    return np.array([[c.slope_up, c.slope_out, c.intercept] for c in items]), np.stack([c.loads for c in items])


def kept_recompute(cols: PlanColumns) -> IntArray:
    """The recompute of the layers full recompute of N layers per chunk leaves alone: none there; for every
    other plan its own."""
    partial = (cols.recompute == FULL_CODE) & (cols.recompute_layers > 0)
    out: IntArray = np.where(partial, NONE_CODE, cols.recompute)
    return out


def layer_activations(ctx: StepContext, cols: PlanColumns, *, kept: bool = False) -> tuple[IntArray, FloatArray]:
    """Each plan's index into a table of (dense, MoE) layer activation bytes per micro-batch, and the table;
    ``kept``: of the layers full recompute of N layers per chunk leaves alone (:func:`kept_recompute`)."""
    keys = [cols.tp, cols.cp, cols.mbs, cols.sp, kept_recompute(cols) if kept else cols.recompute]
    inverse, per_layer = gather(
        [*keys, cols.flash > 0],
        lambda t, c, b, s, r, f: ctx.activations(t, c, b, bool(s), r, bool(f)),
    )
    return inverse, np.array(per_layer, dtype=np.float64).reshape(-1, 2)


class _Structure(NamedTuple):
    """The tables of the pass, data-parallel, pipeline and layout keys and each plan's index into them."""

    pass_rows: list[tuple[int, ...]]
    passes: FloatArray
    pass_index: IntArray
    dp_index: IntArray
    pp_index: IntArray
    row_index: IntArray
    comm_slopes: dict[str, FloatArray]
    comm_loads: dict[str, FloatArray]
    comm_local: dict[str, IntArray]
    comm_source: dict[str, str]
    ep_domains: FloatArray
    rows: dict[str, FloatArray]


def plan_keys(ctx: StepContext, cols: PlanColumns) -> PlanKeys:
    """The per-key tables of every plan of ``cols`` (see the module docstring).

    A search lists plans that differ only in ZeRO stage, recompute and offload next to each other, so where the
    compiled loops run, the plans are first split into runs of equal :data:`STRUCTURE_COLUMNS` (one read of each
    column, ``perf.distinct_loop.runs``): the pass, data-parallel, pipeline and layout keys are found over one
    row per run, and each plan's indices copied from its run's. The keys are the same, in the same order (each
    is the sorted distinct combinations of its columns, and the runs hold every combination the plans do); this
    saves most passes over the plans' columns, which a million plans' keys spend most of their time in. Plans
    in an order with short runs (more than half as many runs as plans) are keyed plan by plan."""
    over_runs = _over_runs(ctx, cols) if compiled_grouping(len(cols)) else None
    if over_runs is not None:
        found, runs = over_runs
    else:
        found = _structure(ctx, cols)
        columns = {name: getattr(cols, name) for name in STRUCTURE_COLUMNS + STRUCTURE_FLAGS}
        runs = Runs.of(found, np.arange(len(cols), dtype=np.int64), columns)
    pass_rows, by_index = found.pass_rows, (0, len(found.pass_rows) - 1)

    def activations(recompute: IntArray) -> tuple[IntArray, FloatArray]:
        """Each plan's activation key (its pass key's columns and its recompute) and their table: through the
        distinct pairs of its run's pass key and recompute (perf.distinct_loop.pairs) where compiled."""
        rows: Sequence[tuple[int, ...]]
        pairs = None
        if compiled_grouping(len(cols)):
            pairs = distinct_loop.pairs(runs.pass_index, runs.run_of, recompute, len(pass_rows), table=DENSE_KEYS)
        if pairs is not None:
            rows, per_plan = pairs
        else:
            index, rows = distinct([runs.per_plan(runs.pass_index), recompute], [by_index])

            def per_plan(local: IntArray) -> IntArray:
                return local.take(index)

        local, per_layer = through_local(
            rows,
            lambda u, r: (
                pass_rows[u][0],
                pass_rows[u][1],
                pass_rows[u][4],
                bool(pass_rows[u][5]),
                r,
                pass_rows[u][8] > 0,
            ),
            ctx.activations,
        )
        return per_plan(local), np.array(per_layer, dtype=np.float64).reshape(-1, 2)

    activation_index, activation_table = activations(cols.recompute)
    partial = int(cols.recompute_layers.max()) > 0 and bool(
        ((cols.recompute == FULL_CODE) & (cols.recompute_layers > 0)).any()
    )
    kept_index, kept = activations(kept_recompute(cols)) if partial else (activation_index, activation_table)
    return PlanKeys(
        passes=found.passes,
        comm_slopes=found.comm_slopes,
        comm_loads=found.comm_loads,
        comm_local=found.comm_local,
        comm_source=found.comm_source,
        ep_domains=found.ep_domains,
        rows=found.rows,
        param_sums=row_param_sums(ctx.counts, found.rows),
        fewest=fewest_layers(found.rows),
        activations=activation_table,
        activation_index=activation_index,
        kept=kept,
        kept_index=kept_index,
        runs=runs,
    )


def _over_runs(ctx: StepContext, cols: PlanColumns, *, longest: float = 0.5) -> tuple[_Structure, Runs] | None:
    """:func:`_structure` of ``cols`` found over one row per run of plans with equal structure columns (its
    indices are the runs'), and the runs; None where the runs are more than ``longest`` times as many as the plans
    (too short to save work), as the first :data:`RUNS_SAMPLE` plans' runs tell or the runs."""
    ints = [getattr(cols, name) for name in STRUCTURE_COLUMNS]
    flags = [getattr(cols, name) for name in STRUCTURE_FLAGS]
    head = slice(0, min(len(cols), RUNS_SAMPLE))  # the runs of the first plans, to skip a pass that would not pay
    sample = [c[head] for c in ints + flags]
    starts = np.zeros(len(sample[0]) - 1, dtype=bool)
    for column in sample:
        starts |= column[1:] != column[:-1]
    sampled = 1 + int(starts.sum())
    if sampled > longest * len(sample[0]):
        return None
    run_of, run_ints, run_flags = distinct_loop.runs(ints, flags, expect=sampled * len(cols) // len(sample[0]))
    count = len(run_ints[0])
    if count > longest * len(cols):
        return None
    values: dict[str, NDArray[Any]] = dict(zip(STRUCTURE_COLUMNS, run_ints, strict=True))
    values.update(zip(STRUCTURE_FLAGS, run_flags, strict=True))
    unread = {  # the columns _structure does not read: zeros (read-only views of one)
        f.name: np.broadcast_to(np.zeros(1, dtype=getattr(cols, f.name).dtype), count)
        for f in fields(PlanColumns)
        if f.name not in values
    }
    found = _structure(ctx, PlanColumns(**values, **unread))
    return found, Runs.of(found, run_of, values)


def _structure(ctx: StepContext, cols: PlanColumns) -> _Structure:
    """The pass, data-parallel, pipeline and layout keys of ``cols`` (which reads only :data:`STRUCTURE_COLUMNS`
    and :data:`STRUCTURE_FLAGS`)."""
    etp = cols.expert_tp
    pass_keys = [cols.tp, cols.cp, cols.ep, etp, cols.mbs, cols.sp, cols.precision, cols.lora, cols.flash]
    pass_index, pass_rows = distinct([*pass_keys, cols.fp8_recipe])
    pass_tables = [pass_table(ctx, k) for k in pass_rows]

    # Groups are functions of a pass key's columns (tp, cp, ep, etp, mbs, sp, flash: 0, 1, 2, 3, 4, 5, 8) and of dp
    # or pp: found per distinct pass key (and those columns), not per plan.
    def by_pass_local(
        rows: Sequence[tuple[int, ...]], key: Callable[..., tuple[Any, ...]], compute: Callable[..., Any]
    ) -> tuple[IntArray, list[Any]]:
        return through_local(rows, lambda u, *rest: key(pass_rows[u], *rest), compute)

    def group(axis: str) -> Callable[[int, int], Placed]:
        return lambda degree, stride: ctx.group(axis, degree, stride)

    def ep_stride(k: tuple[int, ...]) -> int:
        return k[0] * k[1] if k[3] == k[0] else k[3]

    own = [(u,) for u in range(len(pass_rows))]
    by_index = (0, len(pass_rows) - 1)  # the bounds of pass_index
    if compiled_grouping(len(cols)):  # any code space: a hash table holds the distinct codes
        with_dp_index, with_dp_rows = distinct([pass_index, cols.dp, cols.shard], [by_index])
        with_dp = [(u, dp, shard) for u, dp, shard in with_dp_rows]
        any_shard = any(shard > 0 for _, _, shard in with_dp)
    elif any_shard := bool(cols.shard.any()):
        # HSDP shard degrees are few: coded 0..k-1 through a presence table, so that the key stays a small code space
        present = np.zeros(int(cols.shard.max()) + 1, dtype=bool)
        present[cols.shard] = True
        degrees = np.flatnonzero(present)
        code = np.zeros(len(present), dtype=np.int64)
        code[degrees] = np.arange(len(degrees))
        with_dp_index, coded = distinct(
            [pass_index, cols.dp, code.take(cols.shard)], [by_index, None, (0, len(degrees) - 1)]
        )
        with_dp = [(u, dp, int(degrees[c])) for u, dp, c in coded]
    else:
        with_dp_index, dp_rows = distinct([pass_index, cols.dp], [by_index])
        with_dp = [(u, dp, 0) for u, dp in dp_rows]
    with_pp_index, with_pp = distinct([with_dp_index, cols.pp], [(0, len(with_dp) - 1)])
    # The (degree, stride) of the data-parallel and pipeline groups, as arrays over the rows of the keys they go by
    # (placed_local): of each (pass key, dp, HSDP shard) row, and of each (that row, pp) row.
    pass_array = np.array(pass_rows, dtype=np.int64).reshape(len(pass_rows), -1)
    dp_array = np.array(with_dp, dtype=np.int64).reshape(-1, 3)
    k_tp, k_cp, k_ep, k_etp = (pass_array[:, j].take(dp_array[:, 0]) for j in range(4))
    k_dp, k_shard = dp_array[:, 1], dp_array[:, 2]
    k_edp = np.maximum((k_tp * k_dp * k_cp) // (k_etp * k_ep), 1)
    pp_rows = np.array(with_pp, dtype=np.int64).reshape(-1, 2)
    # Each axis's placed groups per row of the key it goes by (perf.keys.PlanKeys.comm_local), and that key.
    placed = {
        "tp": (by_pass_local(own, lambda k: (k[0], 1), group("tp")), "pass"),
        "etp": (by_pass_local(own, lambda k: (k[3], 1), group("tp")), "pass"),
        "cp": (by_pass_local(own, lambda k: (k[1], k[0]), group("cp")), "pass"),
        "ep": (by_pass_local(own, lambda k: (k[2], ep_stride(k)), group("ep")), "pass"),
        # the pipeline group's stride: tp x cp x dp of the row's data-parallel key
        "pp": (placed_local(pp_rows[:, 1], (k_tp * k_cp * k_dp).take(pp_rows[:, 0]), group("pp")), "pp"),
        # dense gradients: over dp x cp; expert gradients: the expert-dp group. ZeRO's reduce-scatters and gathers
        # run over the shard groups (the whole groups without HSDP); HSDP's all-reduce across the replicas spaced a
        # shard group apart (Zhao et al. 2023 sec. 3.2.2).
        "dp": (placed_local(k_dp * k_cp, k_tp, group("dp")), "dp"),
        "edp": (placed_local(k_edp, k_etp * k_ep, group("dp")), "dp"),
    }
    if any_shard:
        # (dense shard group, dense replicas, expert shard group, expert replicas): columns.shard_groups
        dense_shard = np.where(k_shard > 0, k_shard, k_dp)
        dense_replicas = k_dp // dense_shard
        expert_replicas = np.gcd(k_edp, dense_replicas)
        expert_shard = k_edp // expert_replicas
        placed["dp_shard"] = (placed_local(dense_shard * k_cp, k_tp, group("dp")), "dp")
        placed["edp_shard"] = (placed_local(expert_shard, k_etp * k_ep, group("dp")), "dp")
        placed["dp_replica"] = (placed_local(dense_replicas, k_tp * dense_shard * k_cp, group("dp")), "dp")
        placed["edp_replica"] = (
            placed_local(expert_replicas, k_etp * k_ep * expert_shard, group("dp")),
            "dp",
        )
    else:  # no HSDP: ZeRO's groups are the whole ones, and no replicas to all-reduce across (one empty group)
        placed["dp_shard"], placed["edp_shard"] = placed["dp"], placed["edp"]
        alone = ((np.zeros(len(with_dp), dtype=np.int64), [ctx.group("dp", 1, 1)]), "dp")
        placed["dp_replica"] = placed["edp_replica"] = alone
    comm_slopes: dict[str, FloatArray] = {}
    comm_loads: dict[str, FloatArray] = {}
    comm_local: dict[str, IntArray] = {}
    comm_source: dict[str, str] = {}
    for name, over, kind in COMM_GROUPS:
        (local, found), source = placed[over]
        comm_slopes[name], comm_loads[name] = _comm_table(found, kind)
        comm_local[name], comm_source[name] = local, source

    # layouts go by (pp, chunks, first, last); chunks (a function of schedule and vpp) is found per distinct row
    by_schedule, schedule_rows = distinct([cols.pp, cols.schedule, cols.vpp, cols.pp_first, cols.pp_last])
    fine = np.array(schedule_rows, dtype=np.int64).reshape(-1, 5)
    local, layout_keys = distinct([fine[:, 0], chunks_of(fine[:, 1], fine[:, 2]), fine[:, 3], fine[:, 4]])
    row_index = local.take(by_schedule)
    layouts = [ctx.rows(*key) for key in layout_keys]
    width = max(len(layout) for layout in layouts)
    rows = {name: np.zeros((len(layouts), width)) for name in ROW_NAMES}
    for u, layout in enumerate(layouts):
        for r, row in enumerate(layout):
            for name in ROW_NAMES:
                rows[name][u, r] = float(getattr(row, name))

    return _Structure(
        pass_rows=pass_rows,
        passes=np.stack(pass_tables),
        pass_index=pass_index,
        dp_index=with_dp_index,
        pp_index=with_pp_index,
        row_index=row_index,
        comm_slopes=comm_slopes,
        comm_loads=comm_loads,
        comm_local=comm_local,
        comm_source=comm_source,
        ep_domains=np.array([g.domains for g in placed["ep"][0][1]], dtype=np.float64),
        rows=rows,
    )
