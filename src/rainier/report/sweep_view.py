"""Display for ``rainier sweep``: a progress bar on a terminal, one line per cell otherwise, and a results table.

Both progress displays implement :class:`rainier.search.runner.SweepObserver`. The per-cell lines go to stderr
(the log of a sweep run in the background or under a job scheduler) and are printed only after the cell's row is
committed, so a line ``[k/n] ...`` means that row is safely stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from rainier.report import format as fmt
from rainier.report.step_view import ALWAYS_SHOWN, PLAN_DEFAULTS
from rainier.search.store import CellRecord, CellStatus


def cell_label(row: Mapping[str, Any]) -> str:
    """``model on cluster gbs=N [seq_len=N]`` from a stored row or a record's fields."""
    cluster = row["cluster"] if row["cluster"] is not None else f"{row['accelerator']} x{row['count']}"
    seq = f" seq_len={row['seq_len']}" if row["seq_len"] is not None else ""
    return f"{row['model']} on {cluster} gbs={row['gbs']}{seq}"


def compact_plan(plan_json: str | None) -> str:
    """The plan's always-shown keys and those off their defaults (the stored ``best_plan`` has every key)."""
    if not plan_json:
        return "—"
    plan: dict[str, Any] = json.loads(plan_json)
    return ",".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}"
        for k, v in plan.items()
        if k in ALWAYS_SHOWN or v != PLAN_DEFAULTS.get(k)
    )


def _record_row(record: CellRecord) -> dict[str, Any]:
    return {
        "model": record.model,
        "cluster": record.cluster,
        "accelerator": record.accelerator,
        "count": record.count,
        "gbs": record.gbs,
        "seq_len": record.seq_len,
    }


def _outcome(record: CellRecord) -> str:
    if record.status is CellStatus.ERROR:
        return str(record.error)
    step = f"{record.step_time_s:.4g} s/step" if record.step_time_s is not None else "—"
    return f"{compact_plan(record.best_plan_json)} ({step})"


class SweepLog:
    """One plain line per stored cell: ``[k/n] ok|error label: best plan or error``."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._total = 0
        self._done = 0

    def started(self, *, to_run: int, skipped: int) -> None:
        self._total = to_run
        if skipped:
            self._console.print(f"resuming: {skipped} cells already stored, {to_run} to run", soft_wrap=True)

    def finished(self, record: CellRecord) -> None:
        self._done += 1
        label = cell_label(_record_row(record))
        line = f"[{self._done}/{self._total}] {record.status.value} {label}: {_outcome(record)}"
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)


class SweepProgressBar:
    """A rich progress bar (cells done, failures, time left) for an interactive terminal; a context manager."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task("sweep", total=None, failed=0)
        self._failed = 0

    def __enter__(self) -> SweepProgressBar:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._progress.stop()

    def started(self, *, to_run: int, skipped: int) -> None:
        self._progress.update(self._task, total=to_run)
        if skipped:
            self._progress.console.print(f"resuming: {skipped} cells already stored, {to_run} to run")

    def finished(self, record: CellRecord) -> None:
        if record.status is CellStatus.ERROR:
            self._failed += 1
        self._progress.update(self._task, advance=1, failed=self._failed)


def results_table(rows: Iterable[Mapping[str, Any]], *, title: str) -> Table:
    """Stored rows: inputs, status, best plan and its metrics (errors in place of the plan)."""
    table = Table(title=title, title_justify="left")
    for column in ("model", "cluster", "gbs", "seq_len", "status", "best plan / error", "step", "tokens/s", "MFU"):
        table.add_column(column, justify="right" if column in ("gbs", "seq_len", "step", "tokens/s", "MFU") else "left")
    for r in rows:
        ok = r["status"] == CellStatus.OK.value
        cluster = r["cluster"] if r["cluster"] is not None else f"{r['accelerator']} x{r['count']}"
        table.add_row(
            escape(r["model"]),
            cluster,
            str(r["gbs"]),
            "model's" if r["seq_len"] is None else str(r["seq_len"]),
            Text("ok", style="green") if ok else Text("error", style="red"),
            compact_plan(r["best_plan_json"]) if ok else escape(str(r["error"])),  # errors may hold [brackets]
            fmt.maybe(r["step_time_s"], f"{r['step_time_s'] or 0:.4g} s"),
            fmt.maybe(r["tokens_per_s"], fmt.count(r["tokens_per_s"] or 0)),
            fmt.maybe(r["mfu"], f"{r['mfu'] or 0:.1%}"),
        )
    return table
