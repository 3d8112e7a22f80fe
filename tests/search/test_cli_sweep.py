"""CLI: ``rainier sweep`` and ``rainier results export``, and THE resume test (SIGKILL mid-sweep, then --resume)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from rainier.cli import app
from rainier.search import engine
from rainier.search.runner import CELL_DELAY_ENV
from rainier.search.store import read_rows
from rainier.search.sweep import load_sweep_spec
from tests.search.fakes import FAIL_GBS, fake_search, write_spec

runner = CliRunner()


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells run inline (--workers 1) look ``engine.search`` up when called: replace it by the fake."""
    monkeypatch.setattr(engine, "search", fake_search)


def _invoke(args: list[str], code: int = 0) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    return result


@pytest.mark.usefixtures("fake_engine")
def test_sweep_json_then_resume(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, gbs=[16, FAIL_GBS])
    db = tmp_path / "r.duckdb"
    args = ["sweep", str(spec), "--db", str(db), "--workers", "1", "--json"]
    doc = json.loads(_invoke(args).stdout)
    assert doc == {"db": str(db), "cells": 4, "done": 2, "failed": 2, "skipped_existing": 0}
    again = _invoke(args, code=2)
    assert again.stdout == ""
    assert len(again.stderr.strip().splitlines()) == 1
    error = json.loads(again.stderr)  # under --json the error is JSON too
    assert error["error"].startswith("--db") and "pass --resume" in error["error"] and error["exit_code"] == 2
    doc = json.loads(_invoke([*args, "--resume"]).stdout)
    assert doc == {"db": str(db), "cells": 4, "done": 0, "failed": 0, "skipped_existing": 4}


@pytest.mark.usefixtures("fake_engine")
def test_sweep_tables_and_log_lines(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, gbs=[16, FAIL_GBS])
    result = _invoke(["sweep", str(spec), "--db", str(tmp_path / "r.duckdb"), "--workers", "1"])
    log = result.stderr.splitlines()  # not a terminal: one line per stored cell instead of a progress bar
    assert log[0].startswith("[1/4] ok llama-2-7b on h100-sxm x8 gbs=16: tp=8,pp=1,dp=1,zero=1,mbs=1,gbs=16,")
    assert log[1] == (
        f"[2/4] error llama-2-7b on h100-sxm x8 gbs={FAIL_GBS}: "
        f"no feasible plan for gbs={FAIL_GBS}: the binding constraint is made up"
    )
    for text in ("best plan per cell (time)", "h100-sxm x16", "tp=8,pp=1,dp=2,", "2 ok, 2 failed, 0 already stored"):
        assert text in result.stdout, text


@pytest.mark.usefixtures("fake_engine")
def test_results_export_csv_and_parquet(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    db = tmp_path / "r.duckdb"
    _invoke(["sweep", str(spec), "--db", str(db), "--workers", "1", "--json"])
    for suffix, reader in (("csv", "read_csv_auto"), ("parquet", "read_parquet")):
        out = tmp_path / f"out.{suffix}"
        doc = json.loads(_invoke(["results", "export", "--db", str(db), "-o", str(out), "--json"]).stdout)
        assert doc == {"db": str(db), "out": str(out), "format": suffix, "rows": 4}
        rows = duckdb.connect().execute(f"SELECT cell_id, status FROM {reader}(?)", [str(out)]).fetchall()
        assert sorted(r[0] for r in rows) == sorted(c.cell_id for c in load_sweep_spec(spec).cells())
        assert {r[1] for r in rows} == {"ok"}
    text = _invoke(["results", "export", "--db", str(db), "--format", "csv", "-o", str(tmp_path / "x.txt")]).stdout
    assert "wrote 4 rows" in text
    bad = _invoke(["results", "export", "--db", str(db), "-o", str(tmp_path / "x.json")], code=2)
    assert "format='json' is invalid: one of csv, parquet" in bad.stderr
    missing = _invoke(["results", "export", "--db", str(tmp_path / "none.duckdb"), "-o", str(tmp_path / "x.csv")], 2)
    assert "no such results database" in missing.stderr


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"models": ["llama-3-7b"]}, "models[0]: unknown model 'llama-3-7b'; did you mean 'llama-3-70b'"),
        ({"clusters": [{"accelerator": "h100-sxm", "count": 0}]}, "clusters[0].count[0]: 0 is invalid"),
        ({"gbs": [16], "batch": 3}, "top level: unknown field(s): batch"),
    ],
)
def test_bad_spec_exits_2_with_one_line(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    result = _invoke(["sweep", str(write_spec(tmp_path, **fields)), "--db", str(tmp_path / "r.duckdb")], code=2)
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.duckdb").exists()


def test_malformed_yaml_and_conflicting_options(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("models: [llama-2-7b\n")
    assert "malformed YAML" in _invoke(["sweep", str(spec)], code=2).stderr
    both = _invoke(["sweep", str(write_spec(tmp_path)), "--ray", "auto", "--workers", "2"], code=2)
    assert "not both" in both.stderr


def test_ray_missing_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the optional extra were not installed
    result = _invoke(["sweep", str(write_spec(tmp_path)), "--db", str(tmp_path / "r.duckdb"), "--ray", "auto"], 2)
    assert result.stderr == "error: --ray needs Ray, an optional extra: pip install 'rainier[ray]'\n"


# ----------------------------------------------------------------------------------------------------------------
# THE resume test: a real `rainier sweep` process, SIGKILLed mid-sweep, then run again with --resume.
# ----------------------------------------------------------------------------------------------------------------
CELL_DELAY_S = 0.5  # each cell sleeps this long (test hook) so the kill lands mid-sweep deterministically
STARTUP_TIMEOUT_S = 60.0


def _sweep_command(spec: Path, db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rainier", "sweep", str(spec), "--db", str(db), "--workers", "2", *extra]


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while text not in path.read_text():
        assert proc.poll() is None, f"sweep ended before storing a cell: {path.read_text()}"
        assert time.monotonic() < deadline, f"no cell stored in {STARTUP_TIMEOUT_S} s: {path.read_text()}"
        time.sleep(0.02)


def _group_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_sigkill_mid_sweep_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, gbs=[16, 32, 64])  # 6 cells, 2 at a time, about 0.5 s each
    db = tmp_path / "r.duckdb"
    log = tmp_path / "sweep.log"
    env = {**os.environ, CELL_DELAY_ENV: str(CELL_DELAY_S)}
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            _sweep_command(spec, db), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
            start_new_session=True,  # its own process group: the test can check that no worker outlives it
        )  # fmt: skip
    try:
        _wait_for(log, "[1/6]", proc)  # printed only after the first row is committed
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        # The pool's workers notice their driver is gone and exit on their own (no orphans).
        assert _group_gone(proc.pid, timeout_s=10), "worker processes outlived the killed sweep"
    finally:  # only if an assertion above failed: end the group this test started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    stored_before = {r["cell_id"] for r in read_rows(db)}
    assert 1 <= len(stored_before) < 6, "the kill should land mid-sweep"

    rerun = subprocess.run(
        [*_sweep_command(spec, db, "--resume"), "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["cells"] == 6 and summary["skipped_existing"] == len(stored_before)
    assert summary["done"] + summary["failed"] == 6 - len(stored_before)

    rows = read_rows(db)
    ids = [r["cell_id"] for r in rows]
    assert sorted(ids) == sorted(c.cell_id for c in load_sweep_spec(spec).cells())  # every cell exactly once
    assert len(set(ids)) == len(ids) == 6
    assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows]
