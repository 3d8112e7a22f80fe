"""The DuckDB store: round trip of a row, one row per cell id, CSV and Parquet export read back with duckdb."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from rainier.errors import InputError
from rainier.search.result import Objective
from rainier.search.runner import run_cell
from rainier.search.store import (
    COLUMNS,
    CellRecord,
    CellStatus,
    ExportFormat,
    export_results,
    open_store,
    read_rows,
)
from rainier.search.sweep import SweepCell
from tests.search.fakes import fake_search


def _cell(gbs: int = 16) -> SweepCell:
    return SweepCell(
        model="llama-2-7b",
        cluster=None,
        accelerator="h100-sxm",
        count=8,
        gbs=gbs,
        seq_len=None,
        objective=Objective.TIME,
        top_k=3,
    )


@pytest.fixture(scope="module")
def record() -> CellRecord:
    return run_cell(_cell(), fake_search)


def test_record_from_a_search(record: CellRecord) -> None:
    assert record.status is CellStatus.OK and record.error is None
    assert record.cell_id == _cell().cell_id and record.num_devices == 8
    assert record.best_plan is not None and record.best_plan.startswith("tp=8,pp=1,dp=1,")
    assert json.loads(record.best_plan_json or "")["tp"] == 8
    assert record.step_time_s is not None and record.step_time_s > 0
    assert record.tokens_per_s == pytest.approx(16 * 4096 / record.step_time_s)
    assert record.mfu is not None and 0 < record.mfu < 1
    assert record.memory_bytes_per_device is not None and record.memory_capacity_bytes == pytest.approx(80e9, rel=0.2)
    assert (record.evaluated, record.candidates) == (1, 3)
    assert record.search_elapsed_s is not None and record.elapsed_s >= record.search_elapsed_s
    assert json.loads(record.result_json or "")["top"][0]["plan"]["gbs"] == 16


def test_round_trip(tmp_path: Path, record: CellRecord) -> None:
    db = tmp_path / "r.duckdb"
    with open_store(db) as store:
        store.insert(record)
        store.insert(record)  # a second insert of one cell id is ignored, never a duplicate row
        assert store.stored_ids([record.cell_id, "other"]) == {record.cell_id}
    (row,) = read_rows(db)
    assert tuple(row) == COLUMNS
    expected = dataclasses.asdict(record)
    expected["status"] = "ok"
    assert row == expected
    assert isinstance(row["started_at"], datetime)
    assert read_rows(db, ["nope"]) == []


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_export_reads_back(tmp_path: Path, record: CellRecord, fmt: ExportFormat) -> None:
    db = tmp_path / "r.duckdb"
    failed = dataclasses.replace(
        record, cell_id="f" * 16, gbs=24, status=CellStatus.ERROR, error="no plan, says 'the search'", step_time_s=None
    )
    with open_store(db) as store:
        store.insert(record)
        store.insert(failed)
    out = tmp_path / f"results.{fmt.value}"
    assert export_results(db, out, fmt) == 2
    reader = "read_csv_auto" if fmt is ExportFormat.CSV else "read_parquet"
    con = duckdb.connect()
    cursor = con.execute(f"SELECT * FROM {reader}(?) ORDER BY gbs", [str(out)])
    names = [d[0] for d in cursor.description or ()]
    rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    assert tuple(names) == COLUMNS
    assert [r["cell_id"] for r in rows] == [record.cell_id, "f" * 16]
    assert rows[0]["step_time_s"] == pytest.approx(record.step_time_s)
    assert rows[0]["best_plan"] == record.best_plan
    assert rows[1]["status"] == "error" and rows[1]["error"] == "no plan, says 'the search'"
    assert json.loads(rows[0]["result_json"])["gbs"] == 16


def test_store_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such results database"):
        read_rows(tmp_path / "missing.duckdb")
    with pytest.raises(InputError, match=r"folder .* does not exist"):
        export_results(tmp_path / "missing.duckdb", tmp_path / "no" / "out.csv", ExportFormat.CSV)
    with pytest.raises(InputError, match=r"folder .* does not exist"), open_store(tmp_path / "no" / "r.duckdb"):
        pass
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).execute("CREATE TABLE cells (x INTEGER)").close()
    with pytest.raises(InputError, match="written by another rainier version"):
        read_rows(other)
    text = tmp_path / "text.duckdb"
    text.write_text("not a database\n")
    with pytest.raises(InputError, match=r"--db .*text\.duckdb"):
        read_rows(text)


def test_a_running_sweep_locks_the_file(tmp_path: Path) -> None:
    """DuckDB allows one writer process; a second open (here: in a child process) gets a one-line error."""
    import subprocess
    import sys

    db = tmp_path / "r.duckdb"
    with open_store(db):
        probe = (
            "import sys\nfrom rainier.search.store import read_rows\n"
            "try:\n    read_rows(sys.argv[1])\nexcept ValueError as e:\n    print(e)\n"
        )
        out = subprocess.run([sys.executable, "-c", probe, str(db)], capture_output=True, text=True, check=True)
    assert "in use by another process" in out.stdout
