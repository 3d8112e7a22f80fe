"""``perf.keys.distinct`` as compiled loops (numba): each key column's bounds in one pass, then the plans' codes
grouped through a hash table in one more; and the runs of plans with equal columns (``perf.keys.Runs``).

The numpy path of ``perf.keys.distinct`` reads every key column four or five times (its minimum, its maximum,
then a multiply and an add into the codes; then a presence table and a lookup) and writes as many temporaries;
for the ten columns of a million plans' pass key that was most of ``perf.keys.plan_keys``. Here a column's minimum
and maximum are found in one read, and the varying columns are read once more, a block of plans at a time (the
mixed-radix codes of a block stay in cache), and grouped through an open-addressing hash table of the distinct
codes, which are few. A plan whose code is its predecessor's (a search lists plans of one key next to each other)
skips the table. The distinct codes are then sorted and the plans' indices renumbered, so that the result is the
numpy path's to the last index (``tests/perf/test_keys.py`` checks it). :func:`runs` reads each column once more
to split the plans into runs of equal values, over which ``perf.keys.plan_keys`` finds most keys. numba is
imported on the first call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]

BLOCK = 2048  # plans whose codes are formed at once, column by column (16 KiB of codes: in L1 cache)
FIRST_SLOTS = 1024  # the hash table's first size (slots, a power of two); it doubles at half full
MIX = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64: Fibonacci hashing's multiplier


def _bounds(column: NDArray[Any]) -> tuple[int, int]:
    """(smallest, largest) value of a non-empty integer column, in one read."""
    lo = column[0]
    hi = column[0]
    for i in range(column.shape[0]):  # two independent reductions: LLVM vectorises them
        v = column[i]
        lo = min(lo, v)
        hi = max(hi, v)
    return int(lo), int(hi)


def _slot(code: int, mask: int) -> int:
    """A code's first slot in a table of ``mask + 1`` slots (Fibonacci hashing, high bits folded down)."""
    h = code * MIX  # wraps around in int64, as numba's integers do
    return int((h ^ (h >> 29)) & mask)


def _group(
    columns: Any,  # int64 arrays, one per varying key column
    lo: IntArray,  # each column's smallest value
    radix: IntArray,  # and its range
    start: int,  # the first plan to group
    inverse: IntArray,  # out: each plan's index into found
    codes: IntArray,  # scratch: BLOCK
    slots: IntArray,  # the hash table: each slot's index into found, -1 where empty (a power of two long)
    found: IntArray,  # the distinct codes in the order first met (half as long as slots)
    count: int,  # how many found holds
) -> tuple[int, int]:
    """Group plans ``start:`` by their mixed-radix codes, until a new code would fill the table past half.
    Returns the first plan not grouped (all: ``len(inverse)``) and how many distinct codes ``found`` holds."""
    n = inverse.shape[0]
    k = len(columns)
    mask = slots.shape[0] - 1
    last_code, last_index = -1, -1  # codes are >= 0
    for b0 in range(start, n, BLOCK):
        size = min(BLOCK, n - b0)
        column, base = columns[0], lo[0]
        for t in range(size):
            codes[t] = column[b0 + t] - base
        for j in range(1, k):
            column, base, r = columns[j], lo[j], radix[j]
            for t in range(size):
                codes[t] = codes[t] * r + (column[b0 + t] - base)
        for t in range(size):
            code = codes[t]
            if code != last_code:
                s = _slot(code, mask)
                while slots[s] >= 0 and found[slots[s]] != code:
                    s = (s + 1) & mask
                if slots[s] < 0:
                    if 2 * (count + 1) > mask + 1:
                        return b0 + t, count
                    slots[s] = count
                    found[count] = code
                    count += 1
                last_code, last_index = code, slots[s]
            inverse[b0 + t] = last_index
    return n, count


def _rehash(found: IntArray, count: int, slots: IntArray) -> None:
    """Enter the first ``count`` codes of ``found`` into an empty table ``slots``."""
    mask = slots.shape[0] - 1
    for u in range(count):
        s = _slot(found[u], mask)
        while slots[s] >= 0:
            s = (s + 1) & mask
        slots[s] = u


def _renumber(inverse: IntArray, rank: IntArray) -> None:
    """``inverse[i] = rank[inverse[i]]`` in place."""
    for i in range(inverse.shape[0]):
        inverse[i] = rank[inverse[i]]


def _runs(
    ints: Any,  # int64 columns of the plans
    flags: Any,  # bool columns
    start: int,  # the first plan to look at (a multiple of BLOCK)
    runs: int,  # the runs before it
    run_of: IntArray,  # out: each plan's run
    run_ints: Any,  # out: each run's values of ints
    run_flags: Any,  # and of flags
    changed: NDArray[np.uint8],  # scratch: BLOCK
    starts: IntArray,  # scratch: BLOCK
) -> tuple[int, int]:
    """Split the plans into runs of equal values in every column, number each plan's run and write each run's
    values, until a block might start more runs than ``run_ints`` has room for; returns the first plan not looked
    at (all: the number of plans) and the runs so far. A block of plans is compared with the plans before it
    column by column (each column is read once, in order, without branches), then the runs that start in it are
    numbered and their values gathered while the block is still in cache."""
    n = run_of.shape[0]
    room = run_ints[0].shape[0]
    for b0 in range(start, n, BLOCK):
        size = min(BLOCK, n - b0)
        if runs + size > room:
            return b0, runs
        for t in range(size):
            changed[t] = 0
        lo = 1 if b0 == 0 else 0  # the first plan starts a run; the rest compare with the plan before
        marks = changed[lo:size]  # slices of the block and of it one plan back: LLVM vectorises the comparisons
        for j in range(len(ints)):
            now, before = ints[j][b0 + lo : b0 + size], ints[j][b0 + lo - 1 : b0 + size - 1]
            for t in range(size - lo):
                marks[t] |= np.uint8(now[t] != before[t])
        for j in range(len(flags)):
            now_b, before_b = flags[j][b0 + lo : b0 + size], flags[j][b0 + lo - 1 : b0 + size - 1]
            for t in range(size - lo):
                marks[t] |= np.uint8(now_b[t] != before_b[t])
        if lo:
            changed[0] = 1
        found = 0  # the runs that start in the block, at plans starts[:found]
        for t in range(size):
            starts[found] = b0 + t
            found += changed[t]
            runs += changed[t]
            run_of[b0 + t] = runs - 1
        base = runs - found
        for j in range(len(ints)):
            column, out = ints[j], run_ints[j]
            for q in range(found):
                out[base + q] = column[starts[q]]
        for j in range(len(flags)):
            column_b, out_b = flags[j], run_flags[j]
            for q in range(found):
                out_b[base + q] = column_b[starts[q]]
    return n, runs


def _pairs_present(
    run_key: IntArray, run_of: IntArray, column: IntArray, lo: int, width: int, present: NDArray[np.bool_]
) -> None:
    """Mark ``present[k * width + v - lo]`` for each plan's pair (k: its run's key, v: its value of ``column``)."""
    for i in range(run_of.shape[0]):
        present[run_key[run_of[i]] * width + column[i] - lo] = True


def _pairs_index(
    run_key: IntArray, run_of: IntArray, column: IntArray, lo: int, width: int, lookup: IntArray, out: IntArray
) -> None:
    """``out[i] = lookup[k * width + v - lo]`` of each plan's pair (as :func:`_pairs_present`)."""
    for i in range(run_of.shape[0]):
        out[i] = lookup[run_key[run_of[i]] * width + column[i] - lo]


_COMPILED: dict[str, Callable[..., Any]] = {}


def _load() -> dict[str, Callable[..., Any]]:
    """Compile (or load from numba's on-disk cache) the loops. They allocate nothing (the caller does), so they
    are compiled without numba's reference counting, which would cost atomic operations on the arrays in every
    pass of the grouping loop (``perf.fused_loop`` explains the flag)."""
    global _slot
    if not _COMPILED:
        import numba

        bare_options: dict[str, Any] = {"_nrt": False}  # numba's flag (no stub knows it): no reference counting

        def bare(function: Callable[..., Any]) -> Any:
            return numba.njit(cache=True, nogil=True, **bare_options)(function)

        _slot = bare(_slot)
        _COMPILED.update(
            bounds=bare(_bounds),
            group=bare(_group),
            rehash=bare(_rehash),
            renumber=bare(_renumber),
            runs=bare(_runs),
            pairs_present=bare(_pairs_present),
            pairs_index=bare(_pairs_index),
        )
    return _COMPILED


def bounds(column: NDArray[Any]) -> tuple[int, int]:
    """The compiled :func:`_bounds` (numba must be installed: ``perf.kernel.AVAILABLE``)."""
    found: tuple[int, int] = _load()["bounds"](column)
    return found


def group(columns: Sequence[IntArray], lo: Sequence[int], radix: Sequence[int]) -> tuple[IntArray, IntArray]:
    """The sorted distinct mixed-radix codes of ``columns`` (int64, one array per column, each ``lo`` to
    ``lo + radix - 1``; the codes must fit in int64) and each plan's index into them (numba must be installed).

    The hash table starts at :data:`FIRST_SLOTS` and doubles whenever the loop stops at half full."""
    compiled = _load()
    n = len(columns[0])
    inverse = np.empty(n, dtype=np.int64)
    codes = np.empty(BLOCK, dtype=np.int64)
    slots = np.full(FIRST_SLOTS, -1, dtype=np.int64)
    found = np.empty(FIRST_SLOTS // 2, dtype=np.int64)
    lo_v, radix_v, tupled = np.asarray(lo, dtype=np.int64), np.asarray(radix, dtype=np.int64), tuple(columns)
    start, count = 0, 0
    while True:
        start, count = compiled["group"](tupled, lo_v, radix_v, start, inverse, codes, slots, found, count)
        if start == n:
            break
        slots = np.full(2 * len(slots), -1, dtype=np.int64)
        found = np.concatenate([found, np.empty(len(found), dtype=np.int64)])
        compiled["rehash"](found, count, slots)
    unique = found[:count]
    order = np.argsort(unique)
    if (order != np.arange(count)).any():  # first met is not sorted: renumber
        rank = np.empty(count, dtype=np.int64)
        rank[order] = np.arange(count)
        compiled["renumber"](inverse, rank)
    return unique[order], inverse


def runs(
    ints: Sequence[NDArray[Any]], flags: Sequence[NDArray[np.bool_]], *, expect: int = 0
) -> tuple[IntArray, list[IntArray], list[NDArray[np.bool_]]]:
    """Each plan's run of equal values in every column of ``ints`` (integers) and ``flags`` (booleans; at least
    one column of each), and each run's values: the compiled :func:`_runs` (numba must be installed). ``expect``:
    about how many runs there are (room is made for twice as many, and grown where needed)."""
    n = len(ints[0])
    int_columns = tuple(np.ascontiguousarray(c, dtype=np.int64) for c in ints)
    flag_columns = tuple(np.ascontiguousarray(c, dtype=np.bool_) for c in flags)
    run_of = np.empty(n, dtype=np.int64)
    room = min(n, 2 * expect + BLOCK)
    run_ints = tuple(np.empty(room, dtype=np.int64) for _ in ints)
    run_flags = tuple(np.empty(room, dtype=np.bool_) for _ in flags)
    scratch = np.empty(BLOCK, dtype=np.uint8), np.empty(BLOCK, dtype=np.int64)
    start, count = 0, 0
    while True:
        start, count = _load()["runs"](int_columns, flag_columns, start, count, run_of, run_ints, run_flags, *scratch)
        if start == n:
            break
        room = min(n, 2 * room)
        run_ints = tuple(np.concatenate([c[:count], np.empty(room - count, dtype=np.int64)]) for c in run_ints)
        run_flags = tuple(np.concatenate([c[:count], np.empty(room - count, dtype=np.bool_)]) for c in run_flags)
    return run_of, [c[:count] for c in run_ints], [c[:count] for c in run_flags]


def pairs(
    run_key: IntArray, run_of: IntArray, column: NDArray[Any], keys: int, *, table: int
) -> tuple[list[tuple[int, int]], Callable[[IntArray], IntArray]] | None:
    """The distinct pairs (k, v) of the plans' run keys (``run_key`` of each plan's run, below ``keys``) and
    values of ``column``, sorted, and a function that maps a value per pair to each plan's (numba must be
    installed): ``perf.keys.distinct`` of the two columns and a gather, in two passes over the plans without
    the keys per plan. The pairs are marked in a table of ``keys`` x the column's range: None where that would
    be longer than ``table``."""
    compiled = _load()
    values = np.ascontiguousarray(column, dtype=np.int64)
    lo, hi = bounds(values)
    width = hi - lo + 1
    if keys * width > table:
        return None
    present = np.zeros(keys * width, dtype=np.bool_)
    by_run, of = np.ascontiguousarray(run_key, dtype=np.int64), np.ascontiguousarray(run_of, dtype=np.int64)
    compiled["pairs_present"](by_run, of, values, lo, width, present)
    codes = np.flatnonzero(present)

    def per_plan(per_pair: IntArray) -> IntArray:
        lookup = np.zeros(keys * width, dtype=np.int64)
        lookup[codes] = per_pair
        out = np.empty(len(of), dtype=np.int64)
        compiled["pairs_index"](by_run, of, values, lo, width, lookup, out)
        return out

    return [(int(c) // width, int(c) % width + lo) for c in codes], per_plan
