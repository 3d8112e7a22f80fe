"""Running a sweep: every cell a plan search, on local processes or Ray tasks, each result stored as it arrives.

The driver (the process that called :func:`run_sweep`) alone writes to the DuckDB file, one transaction per
finished cell, so killing it loses only the cells in flight and ``resume=True`` finishes the rest. Workers get
plain :class:`SweepCell` values (strings and integers) and resolve the model and cluster themselves: nothing
heavier than a cell crosses a process boundary, and a Ray worker on another machine needs only the package.

A cell that fails (no feasible plan, a bad config.json, even a bug in the search) is stored with
``status='error'`` and its one-line message, and the sweep goes on.

Local execution uses a ``ProcessPoolExecutor`` over ``os.cpu_count()`` processes (``spawn``, so no worker
inherits the driver's DuckDB handle or threads); each worker exits when it sees the driver gone, so a SIGKILLed
sweep leaves no orphans. ``workers=1`` runs cells in the driver itself. The Ray path imports ``ray`` lazily:
it is an optional extra (``pip install 'rainier[ray]'``).

Test hook: ``RAINIER_SWEEP_CELL_DELAY_S`` (seconds, default 0) makes every cell sleep that long before its
search. It exists only so tests can kill a sweep deterministically mid-run; it is not a user setting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rainier import __version__
from rainier.errors import InputError
from rainier.hardware import Cluster, cluster_of, get_cluster
from rainier.search.result import SearchResult
from rainier.search.store import DEFAULT_DB, CellRecord, CellStatus, memory_store, open_store
from rainier.search.sweep import SweepCell, SweepSpec
from rainier.workload import resolve_model

CELL_DELAY_ENV = "RAINIER_SWEEP_CELL_DELAY_S"  # test hook, see the module docstring
PARENT_POLL_S = 0.5  # how often a local worker checks that the driver is still alive

SearchFn = Callable[..., SearchResult]  # rainier.search.engine.search's signature


class SweepObserver(Protocol):
    """Told what a sweep is doing (the CLI's progress bar or log lines); called in the driver only."""

    def started(self, *, to_run: int, skipped: int) -> None: ...

    def finished(self, record: CellRecord) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepSummary:
    """What one ``rainier sweep`` invocation did: ``cells == done + failed + skipped_existing``."""

    db: Path
    cells: int  # cells in the spec
    done: int  # run now and stored with status ok
    failed: int  # run now and stored with status error
    skipped_existing: int  # already stored (resume)

    def to_dict(self) -> dict[str, Any]:
        return {
            "db": str(self.db),
            "cells": self.cells,
            "done": self.done,
            "failed": self.failed,
            "skipped_existing": self.skipped_existing,
        }


def run_sweep(
    spec: SweepSpec,
    *,
    db: Path | str = DEFAULT_DB,
    resume: bool = False,
    workers: int | None = None,
    ray_address: str | None = None,
    search_fn: SearchFn | None = None,
    observer: SweepObserver | None = None,
) -> SweepSummary:
    """Run every cell of ``spec`` not yet stored in ``db`` and store each result as it arrives.

    Without ``resume``, a database that already holds any of this spec's cells is an :class:`InputError` (so a
    finished sweep is never silently mixed with a rerun). ``workers`` defaults to every core; ``ray_address``
    (``"auto"`` or ``host:port``) runs the cells as Ray tasks instead. ``search_fn`` replaces the plan search
    (tests inject a fake; it must be picklable for the process and Ray paths).
    """
    if workers is not None and workers < 1:
        raise InputError(f"workers={workers!r} is invalid: a positive number of processes")
    cells = spec.cells()
    # Ray first: a missing extra or an unreachable cluster fails before the database file is created.
    with (
        _ray_session(ray_address) if ray_address is not None else contextlib.nullcontext() as ray,
        open_store(db) as store,
    ):
        stored = store.stored_ids(c.cell_id for c in cells)
        if stored and not resume:
            raise InputError(
                f"--db {store.path} already holds {len(stored)} of this sweep's {len(cells)} cells: "
                "pass --resume to finish it, or --db NEW_FILE for a fresh run"
            )
        todo = [c for c in cells if c.cell_id not in stored]
        if observer is not None:
            observer.started(to_run=len(todo), skipped=len(cells) - len(todo))
        counts = {CellStatus.OK: 0, CellStatus.ERROR: 0}
        if ray is not None:
            results = _ray_results(ray, todo, search_fn)
        else:
            results = _local_results(todo, workers or os.cpu_count() or 1, search_fn)
        with contextlib.closing(results):  # stops the pool or the Ray tasks if storing fails or on Ctrl-C
            for record in results:
                store.insert(record)
                counts[record.status] += 1
                if observer is not None:
                    observer.finished(record)
    return SweepSummary(
        db=Path(db),
        cells=len(cells),
        done=counts[CellStatus.OK],
        failed=counts[CellStatus.ERROR],
        skipped_existing=len(cells) - len(todo),
    )


def run_sweep_in_memory(
    spec: SweepSpec, *, search_fn: SearchFn | None = None, observer: SweepObserver | None = None
) -> list[dict[str, Any]]:
    """Every cell of ``spec``, one after another in this thread, stored in an in-memory database: its rows.

    The rows are those :func:`run_sweep` stores in a file (same cells, same :func:`run_cell`, same table and
    order), so they equal ``rainier results export`` of ``rainier sweep --db``; the web app runs its sweeps here.
    """
    cells = spec.cells()
    with memory_store() as store:
        if observer is not None:
            observer.started(to_run=len(cells), skipped=0)
        for record in _local_results(list(cells), 1, search_fn):
            store.insert(record)
            if observer is not None:
                observer.finished(record)
        return store.rows()


# ----------------------------------------------------------------------------------------------------------------
# One cell (runs in a worker)
# ----------------------------------------------------------------------------------------------------------------


def run_cell(cell: SweepCell, search_fn: SearchFn | None = None) -> CellRecord:
    """Resolve the cell's names, search, and turn the outcome (result or exception) into a row; never raises."""
    started = _utc_now()
    clock = time.perf_counter()
    cluster: Cluster | None = None
    try:
        delay_s = float(os.environ.get(CELL_DELAY_ENV, "0") or 0)
        if delay_s > 0:
            time.sleep(delay_s)
        shape = resolve_model(cell.model)
        cluster = _resolve_cluster(cell)
        if search_fn is None:
            from rainier.search import engine  # looked up per call so a patched engine.search is used

            search_fn = engine.search
        result = search_fn(
            shape, cluster, gbs=cell.gbs, seq_len=cell.seq_len, objective=cell.objective, top_k=cell.top_k
        )
        outcome = _from_result(result)
    except Exception as exc:  # a failing cell is data, not a crash: the sweep goes on
        outcome = {"status": CellStatus.ERROR, "error": _one_line(exc)}
    row: dict[str, Any] = {
        "cell_id": cell.cell_id,
        **cell.inputs(),
        "status": CellStatus.OK,
        "error": None,
        "num_devices": cluster.num_devices if cluster is not None else None,
        "best_plan": None,
        "best_plan_json": None,
        "step_time_s": None,
        "tokens_per_s": None,
        "mfu": None,
        "memory_bytes_per_device": None,
        "memory_capacity_bytes": None,
        "evaluated": None,
        "candidates": None,
        "search_elapsed_s": None,
        "result_json": None,
        **outcome,
        "elapsed_s": time.perf_counter() - clock,
        "started_at": started,
        "finished_at": _utc_now(),
        "rainier_version": __version__,
    }
    return CellRecord(**row)


def _resolve_cluster(cell: SweepCell) -> Cluster:
    if cell.cluster is not None:
        return get_cluster(cell.cluster)
    assert cell.accelerator is not None and cell.count is not None  # SweepCell guarantees one of the two forms
    return cluster_of(cell.accelerator, cell.count)


def _from_result(result: SearchResult) -> dict[str, Any]:
    """Row fields from a search result: the best plan's metrics, counts and the full JSON."""
    out: dict[str, Any] = {
        "evaluated": result.evaluated,
        "candidates": result.candidates,
        "search_elapsed_s": result.elapsed_s,
        "num_devices": result.num_devices,
        "result_json": json.dumps(result.to_dict(), default=str),
    }
    if not result.top:  # the search should raise instead; store what it said all the same
        out["status"] = CellStatus.ERROR
        out["error"] = result.binding_constraint or "no feasible plan"
        return out
    best = result.top[0].estimate
    out.update(
        best_plan=best.plan.describe(),
        best_plan_json=json.dumps(best.plan.to_dict()),
        step_time_s=best.step_time_s,
        tokens_per_s=best.tokens_per_s,
        mfu=best.mfu,
        memory_bytes_per_device=best.memory.total,
        memory_capacity_bytes=best.memory.capacity,
    )
    return out


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, ValueError) and text:  # InputError and config errors are already user-facing
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# ----------------------------------------------------------------------------------------------------------------
# Local processes
# ----------------------------------------------------------------------------------------------------------------


def _local_results(
    cells: list[SweepCell], workers: int, search_fn: SearchFn | None
) -> Generator[CellRecord, None, None]:
    """Records in completion order from a process pool (or inline for one worker)."""
    if not cells:
        return
    if workers == 1 or len(cells) == 1:
        for cell in cells:
            yield run_cell(cell, search_fn)
        return
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(cells)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        pending: set[Future[CellRecord]] = {pool.submit(run_cell, cell, search_fn) for cell in cells}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
    finally:  # on an error or Ctrl-C, drop the queued cells instead of running them
        pool.shutdown(wait=True, cancel_futures=True)


def _exit_with_parent(parent_pid: int) -> None:
    """Pool initializer: end this worker when the driver is gone (a SIGKILLed driver cannot stop its pool)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="rainier-parent-watch", daemon=True).start()


# ----------------------------------------------------------------------------------------------------------------
# Ray
# ----------------------------------------------------------------------------------------------------------------


RAY_CONNECT_TIMEOUT_S = 5.0  # ray.init retries an unreachable address for minutes; probe it first


@contextlib.contextmanager
def _ray_session(address: str) -> Iterator[Any]:
    """The ``ray`` module, connected to the cluster at ``address`` while the block runs.

    A Ray session already open in this process (``ray.init`` by the caller, as the tests do) is used as is and
    left open; one opened here is shut down on exit.
    """
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray, an optional extra: pip install 'rainier[ray]'") from None
    if ray.is_initialized():
        yield ray
        return
    _probe(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError depending on what is wrong
        raise InputError(f"--ray {address}: cannot connect to a Ray cluster: {_one_line(exc)}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _probe(address: str) -> None:
    """Fail fast on a ``[ray://]host:port`` nobody listens on (``auto`` is left to Ray)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"--ray {address}: cannot connect to a Ray cluster: {reason}") from None


def _ray_results(ray: Any, cells: list[SweepCell], search_fn: SearchFn | None) -> Generator[CellRecord, None, None]:
    """Records in completion order from Ray tasks (one CPU each); queued tasks are cancelled on early exit."""
    task = ray.remote(num_cpus=1)(run_cell)
    pending = [task.remote(cell, search_fn) for cell in cells]
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                record = ray.get(ref)
                assert isinstance(record, CellRecord)
                yield record
    finally:
        for ref in pending:  # only after an error or Ctrl-C
            ray.cancel(ref)
