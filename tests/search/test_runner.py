"""Running sweeps with a fake search: inline, in a process pool, on Ray; failures recorded, resume, observers."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from rainier.errors import InputError
from rainier.search.runner import SweepSummary, run_cell, run_sweep, run_sweep_in_memory
from rainier.search.store import CellRecord, open_store, read_rows
from rainier.search.sweep import SweepSpec, load_sweep_spec
from tests.search.fakes import CRASH_GBS, FAIL_GBS, fake_search, write_spec


class Recorder:
    """An observer that keeps what it was told."""

    def __init__(self) -> None:
        self.started_with: dict[str, int] = {}
        self.records: list[CellRecord] = []

    def started(self, *, to_run: int, skipped: int) -> None:
        self.started_with = {"to_run": to_run, "skipped": skipped}

    def finished(self, record: CellRecord) -> None:
        self.records.append(record)


def _spec(tmp_path: Path, **fields: object) -> SweepSpec:
    return load_sweep_spec(write_spec(tmp_path, **fields))


def test_inline_sweep_records_failures_and_goes_on(tmp_path: Path) -> None:
    spec = _spec(tmp_path, gbs=[16, FAIL_GBS, CRASH_GBS, 32])
    recorder = Recorder()
    db = tmp_path / "r.duckdb"
    summary = run_sweep(spec, db=db, workers=1, search_fn=fake_search, observer=recorder)
    assert summary == SweepSummary(db=db, cells=8, done=4, failed=4, skipped_existing=0)
    assert recorder.started_with == {"to_run": 8, "skipped": 0}
    assert [r.cell_id for r in recorder.records] == [c.cell_id for c in spec.cells()]  # inline: spec order
    rows = read_rows(db)
    assert len(rows) == 8 and {r["cell_id"] for r in rows} == {c.cell_id for c in spec.cells()}
    errors = {(r["count"], r["gbs"]): r["error"] for r in rows if r["status"] == "error"}
    assert set(errors) == {(8, FAIL_GBS), (16, FAIL_GBS), (8, CRASH_GBS), (16, CRASH_GBS)}
    assert errors[(8, FAIL_GBS)] == f"no feasible plan for gbs={FAIL_GBS}: the binding constraint is made up"
    assert errors[(8, CRASH_GBS)] == "RuntimeError: boom"
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(r["best_plan"] and r["step_time_s"] > 0 and r["error"] is None for r in ok)


def test_in_memory_sweep_rows_are_the_files_rows(tmp_path: Path) -> None:
    """The web app's sweep (no file) stores the same rows, errors included, in the same order as run_sweep."""
    spec = _spec(tmp_path, gbs=[32, FAIL_GBS, 16])
    recorder = Recorder()
    in_memory = run_sweep_in_memory(spec, search_fn=fake_search, observer=recorder)
    run_sweep(spec, db=tmp_path / "r.duckdb", workers=1, search_fn=fake_search)
    on_file = read_rows(tmp_path / "r.duckdb")
    varying = {"elapsed_s", "search_elapsed_s", "started_at", "finished_at"}
    assert [{k: v for k, v in r.items() if k not in varying} for r in in_memory] == [
        {k: v for k, v in r.items() if k not in varying} for r in on_file
    ]
    assert [r["gbs"] for r in in_memory[:3]] == sorted([32, FAIL_GBS, 16])  # the store's order, not the spec's
    assert recorder.started_with == {"to_run": 6, "skipped": 0} and len(recorder.records) == 6
    assert {p.name for p in tmp_path.iterdir()} <= {"sweep.yaml", "r.duckdb", "r.duckdb.wal"}  # no other file


def test_process_pool_sweep(tmp_path: Path) -> None:
    spec = _spec(tmp_path, gbs=[16, 32, FAIL_GBS])
    recorder = Recorder()
    summary = run_sweep(spec, db=tmp_path / "r.duckdb", workers=2, search_fn=fake_search, observer=recorder)
    assert (summary.cells, summary.done, summary.failed) == (6, 4, 2)
    assert sorted(r.cell_id for r in recorder.records) == sorted(c.cell_id for c in spec.cells())
    assert Counter(r["status"] for r in read_rows(tmp_path / "r.duckdb")) == {"ok": 4, "error": 2}


def test_resume_runs_only_the_missing_cells(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    cells = spec.cells()
    db = tmp_path / "r.duckdb"
    with open_store(db) as store:  # as if a previous run was killed after two cells
        for cell in cells[:2]:
            store.insert(run_cell(cell, fake_search))
    with pytest.raises(InputError, match=r"already holds 2 of this sweep's 4 cells: pass --resume .* or --db"):
        run_sweep(spec, db=db, workers=1, search_fn=fake_search)
    recorder = Recorder()
    summary = run_sweep(spec, db=db, resume=True, workers=1, search_fn=fake_search, observer=recorder)
    assert summary == SweepSummary(db=db, cells=4, done=2, failed=0, skipped_existing=2)
    assert recorder.started_with == {"to_run": 2, "skipped": 2}
    assert [r.cell_id for r in recorder.records] == [c.cell_id for c in cells[2:]]
    assert sorted(r["cell_id"] for r in read_rows(db)) == sorted(c.cell_id for c in cells)
    again = run_sweep(spec, db=db, resume=True, workers=1, search_fn=fake_search)
    assert (again.done, again.skipped_existing) == (0, 4)


def test_other_sweeps_share_a_database(tmp_path: Path) -> None:
    """Rows of another spec are no reason to ask for --resume: only this spec's cell ids count."""
    db = tmp_path / "r.duckdb"
    run_sweep(_spec(tmp_path, gbs=[16]), db=db, workers=1, search_fn=fake_search)
    summary = run_sweep(_spec(tmp_path, gbs=[32]), db=db, workers=1, search_fn=fake_search)
    assert (summary.done, summary.skipped_existing) == (2, 0)
    assert len(read_rows(db)) == 4


def test_bad_runner_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path)
    with pytest.raises(InputError, match="workers=0 is invalid"):
        run_sweep(spec, db=tmp_path / "r.duckdb", workers=0)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    with pytest.raises(InputError, match=r"--ray needs Ray, an optional extra: pip install 'rainier\[ray\]'"):
        run_sweep(spec, db=tmp_path / "r.duckdb", ray_address="auto")
    assert not (tmp_path / "r.duckdb").exists()  # nothing was created before the error


def test_unreachable_ray_address_fails_fast(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    with pytest.raises(InputError, match=r"--ray 127\.0\.0\.1:1: cannot connect to a Ray cluster"):
        run_sweep(_spec(tmp_path), db=tmp_path / "r.duckdb", ray_address="127.0.0.1:1")
    assert not (tmp_path / "r.duckdb").exists()


@pytest.mark.ray
def test_ray_sweep_on_a_local_instance(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    spec = _spec(tmp_path, gbs=[16, FAIL_GBS])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        recorder = Recorder()
        summary = run_sweep(
            spec, db=tmp_path / "r.duckdb", ray_address="auto", search_fn=fake_search, observer=recorder
        )
    finally:
        ray.shutdown()
    assert (summary.cells, summary.done, summary.failed) == (4, 2, 2)
    rows = read_rows(tmp_path / "r.duckdb")
    assert sorted(r["cell_id"] for r in rows) == sorted(c.cell_id for c in spec.cells())
    assert len(recorder.records) == 4
