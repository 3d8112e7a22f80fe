"""Sweep results in an embedded DuckDB file: one row per cell, written as each cell finishes.

One table, ``cells``, keyed by the cell's input hash (``cell_id``). Each finished cell is inserted in its own
transaction, so a sweep killed at any moment (SIGKILL included: DuckDB's write-ahead log is replayed on the next
open) loses only the cells that were still running, and ``--resume`` skips every id already stored. Only the
sweep's driver process writes; DuckDB's file lock keeps a second writer (or reader) out while a sweep runs.

Export uses DuckDB's own ``COPY ... TO ... (FORMAT csv|parquet)``, so Parquet needs no pyarrow.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from rainier.errors import InputError

DEFAULT_DB = Path("rainier-results.duckdb")
TABLE = "cells"


class CellStatus(enum.StrEnum):
    """How a cell ended: a ranked search result, or a one-line error."""

    OK = "ok"
    ERROR = "error"


class ExportFormat(enum.StrEnum):
    """File formats of ``rainier results export``."""

    CSV = "csv"
    PARQUET = "parquet"


@dataclass(frozen=True, slots=True, kw_only=True)
class CellRecord:
    """One stored row: the cell's inputs, how it ended, its best plan and metrics, and the full search JSON.

    Field order is the table's column order. Metrics are those of the best plan (rank 1 by the objective).
    """

    cell_id: str
    # inputs
    model: str
    cluster: str | None
    accelerator: str | None
    count: int | None
    gbs: int
    seq_len: int | None
    objective: str
    top_k: int
    # outcome
    status: CellStatus
    error: str | None
    num_devices: int | None
    best_plan: str | None  # key=value text, as `rainier train estimate --plan` reads it
    best_plan_json: str | None
    step_time_s: float | None
    tokens_per_s: float | None
    mfu: float | None
    memory_bytes_per_device: float | None
    memory_capacity_bytes: float | None
    evaluated: int | None
    candidates: int | None
    search_elapsed_s: float | None  # the search alone
    elapsed_s: float  # the whole cell in its worker: name resolution, search, result conversion
    started_at: datetime  # UTC, naive
    finished_at: datetime  # UTC, naive
    result_json: str | None  # SearchResult.to_dict() as JSON text
    rainier_version: str


_SQL_TYPES = {
    "cell_id": "VARCHAR PRIMARY KEY",
    "model": "VARCHAR NOT NULL",
    "cluster": "VARCHAR",
    "accelerator": "VARCHAR",
    "count": "INTEGER",
    "gbs": "INTEGER NOT NULL",
    "seq_len": "INTEGER",
    "objective": "VARCHAR NOT NULL",
    "top_k": "INTEGER NOT NULL",
    "status": "VARCHAR NOT NULL CHECK (status IN ('ok', 'error'))",
    "error": "VARCHAR",
    "num_devices": "INTEGER",
    "best_plan": "VARCHAR",
    "best_plan_json": "VARCHAR",
    "step_time_s": "DOUBLE",
    "tokens_per_s": "DOUBLE",
    "mfu": "DOUBLE",
    "memory_bytes_per_device": "DOUBLE",
    "memory_capacity_bytes": "DOUBLE",
    "evaluated": "BIGINT",
    "candidates": "BIGINT",
    "search_elapsed_s": "DOUBLE",
    "elapsed_s": "DOUBLE NOT NULL",
    "started_at": "TIMESTAMP NOT NULL",
    "finished_at": "TIMESTAMP NOT NULL",
    "result_json": "VARCHAR",
    "rainier_version": "VARCHAR NOT NULL",
}
COLUMNS = tuple(f.name for f in fields(CellRecord))
assert tuple(_SQL_TYPES) == COLUMNS, "CellRecord fields and table columns must match"
CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (\n"
    + ",\n".join(f'    "{name}" {sql}' for name, sql in _SQL_TYPES.items())
    + "\n)"
)
_QUOTED_COLUMNS = ", ".join('"' + c + '"' for c in COLUMNS)  # "count" is an SQL keyword
_INSERT = f"INSERT INTO {TABLE} ({_QUOTED_COLUMNS}) VALUES ({', '.join('?' for _ in COLUMNS)}) ON CONFLICT DO NOTHING"


class ResultStore:
    """A sweep database opened for writing (by :func:`open_store`); the driver's only handle on it."""

    def __init__(self, path: Path, connection: duckdb.DuckDBPyConnection) -> None:
        self.path = path
        self._db = connection

    def stored_ids(self, cell_ids: Iterable[str]) -> set[str]:
        """Which of ``cell_ids`` already have a row."""
        wanted = list(cell_ids)
        if not wanted:
            return set()
        rows = self._db.execute(f"SELECT cell_id FROM {TABLE} WHERE list_contains(?, cell_id)", [wanted]).fetchall()
        return {str(r[0]) for r in rows}

    def insert(self, record: CellRecord) -> None:
        """Store one finished cell in its own transaction (committed, hence durable, on return)."""
        values = [v.value if isinstance(v, enum.Enum) else v for v in astuple(record)]
        try:
            self._db.execute("BEGIN TRANSACTION")
            self._db.execute(_INSERT, values)
            self._db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(duckdb.Error, RuntimeError):  # nothing to undo if the commit went through
                self._db.execute("ROLLBACK")
            if _interrupted(exc):  # DuckDB turns a Ctrl-C during a statement into "Query interrupted"
                raise KeyboardInterrupt from None
            raise

    def rows(self) -> list[dict[str, Any]]:
        """Every row, as dicts keyed by column, in insertion-independent order (model, cluster, gbs, seq_len)."""
        return _rows(self._db)

    def close(self) -> None:
        self._db.close()


@contextmanager
def open_store(path: Path | str = DEFAULT_DB) -> Iterator[ResultStore]:
    """Open (creating if needed) a sweep database for writing; closed on exit."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"--db {path}: folder {path.parent} does not exist")
    db = _connect(path, read_only=False)
    try:
        with _damaged_as_input_error(path):
            db.execute(CREATE_TABLE)
            _check_columns(path, db)
            store = ResultStore(path, db)
            yield store
    finally:
        db.close()


@contextmanager
def memory_store() -> Iterator[ResultStore]:
    """A sweep database in memory (the web app's sweeps: no file on the server), closed on exit.

    The same table, inserts and row order as a file, so its rows are those ``rainier results export`` writes.
    """
    db = duckdb.connect(":memory:")
    try:
        db.execute(CREATE_TABLE)
        yield ResultStore(Path(":memory:"), db)
    finally:
        db.close()


def read_rows(path: Path | str, cell_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The stored rows of a database (only ``cell_ids`` when given), opened read-only."""
    wanted = None if cell_ids is None else set(cell_ids)
    with _read_only(Path(path)) as db:
        return [row for row in _rows(db) if wanted is None or row["cell_id"] in wanted]


def export_results(path: Path | str, out: Path | str, fmt: ExportFormat) -> int:
    """Write every row (one per cell) to ``out`` as CSV (with a header) or Parquet; returns the row count."""
    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"-o {out}: folder {out.parent} does not exist")
    options = "FORMAT csv, HEADER true" if fmt is ExportFormat.CSV else "FORMAT parquet"
    target = str(out).replace("'", "''")  # COPY takes a literal file name, not a parameter
    with _read_only(Path(path)) as db:
        count = db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        db.execute(f"COPY (SELECT * FROM {TABLE} ORDER BY {_ORDER}) TO '{target}' ({options})")
    return int(count[0]) if count else 0


_ORDER = "model, cluster NULLS FIRST, accelerator, count, gbs, seq_len NULLS FIRST, cell_id"


def _rows(db: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cursor = db.execute(f"SELECT * FROM {TABLE} ORDER BY {_ORDER}")
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _connect(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise InputError(f"--db {path}: in use by another process (a sweep still running?)") from None
        raise InputError(f"--db {path}: cannot open: {_first_line(exc)}") from None
    except duckdb.Error as exc:
        raise InputError(f"--db {path}: not a rainier results database: {_first_line(exc)}") from None


@contextmanager
def _read_only(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    if not path.is_file():
        raise InputError(f"--db {path}: no such results database (run `rainier sweep` first)")
    db = _connect(path, read_only=True)
    try:
        with _damaged_as_input_error(path):
            _check_columns(path, db)
            yield db
    finally:
        db.close()


@contextmanager
def _damaged_as_input_error(path: Path) -> Iterator[None]:
    """A database that opens but fails when read (a truncated or damaged file) is bad input, not a crash."""
    try:
        yield
    except (RuntimeError, duckdb.InterruptException) as exc:
        if _interrupted(exc):
            raise KeyboardInterrupt from None
        raise
    except (duckdb.IOException, duckdb.InternalException, duckdb.SerializationException) as exc:
        raise InputError(
            f"--db {path}: damaged or truncated ({_first_line(exc)[:80]}); give a new --db to sweep again"
        ) from None


def _check_columns(path: Path, db: duckdb.DuckDBPyConnection) -> None:
    found = db.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [TABLE]
    ).fetchall()
    if not found:
        raise InputError(f"--db {path}: not a rainier results database (no '{TABLE}' table)")
    if tuple(r[0] for r in found) != COLUMNS:
        raise InputError(f"--db {path}: written by another rainier version (its '{TABLE}' columns differ)")


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is a Ctrl-C: Python's own, or DuckDB's report of a statement it interrupted."""
    if isinstance(exc, KeyboardInterrupt | duckdb.InterruptException):
        return True
    return isinstance(exc, RuntimeError) and "interrupted" in str(exc).lower()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
