"""Bad input on the training, sweep, results, calibrate and report commands: one line, exit 2, nothing clobbered."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rainier.cli import app
from rainier.search import engine
from rainier.search.store import ResultStore
from tests.search.fakes import fake_search, write_spec

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
H100_64 = ["--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "64"]


def _fails(args: list[str], *needles: str) -> str:
    """Run ``args``; they must exit 2 with one line on stderr holding every needle."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "search", *H100_64, "--gbs", "99999999999999999999"], "gbs=99999999999999999999 is invalid"),
        (
            [
                "train",
                "search",
                "--model",
                "llama-3-8b",
                "--accelerator",
                "h100-sxm",
                "--count",
                "10" * 10,
                "--gbs",
                "8",
            ],
            "a whole number of devices from 1 to 16,777,216",
        ),
        (["train", "search", *H100_64, "--gbs", "64", "--price", "1e400"], "price=inf is invalid"),
        (["train", "estimate", *H100_64, "--plan", "tp=99999999999999999999"], "plan="),
        (
            ["train", "scale", "--model", "llama-3-8b", "--accelerator", "foo", "--counts", "8,16", "--gbs", "64"],
            "unknown accelerator 'foo'",
        ),
        (
            [
                "train",
                "scale",
                "--model",
                "llama-3-405b",
                "--accelerator",
                "h100-sxm",
                "--counts",
                "1,2",
                "--gbs",
                "64",
            ],
            "no valid plan at any size",
        ),
        (
            ["train", "estimate", *H100_64, "--plan", "gbs=64", "--efficiency", "/nonexistent/eff.yaml"],
            "no such efficiency file",
        ),
        (
            ["train", "search", "--model", "x" * 1_000_000, "--accelerator", "h100-sxm", "--count", "8", "--gbs", "8"],
            "more characters",
        ),
    ],
)
def test_bad_training_input_is_one_line_exit_2(args: list[str], needle: str) -> None:
    line = _fails(args, needle)
    assert len(line) < 400  # at most 80 characters of any input are quoted


def test_a_single_device_search_answers() -> None:
    # 8B parameters of mixed-precision Adam (128 GB) fit one 80 GB H100 only with offload to host memory;
    # the H800 has no cited host link, so its search says no plan fits and why offload was not tried
    _fails(
        ["train", "search", "--model", "llama-3-8b", "--accelerator", "h800", "--count", "1", "--gbs", "8"],
        "no valid plan: memory",
        "offload not tried: h800 has no cited host link",
    )
    done = runner.invoke(
        app, ["train", "search", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "1", "--gbs", "8"]
    )
    assert done.exit_code == 0 and "offload=" in done.stdout


def test_trace_budget_is_checked_before_writing(tmp_path: Path) -> None:
    trace = tmp_path / "t.json"
    base = ["train", "estimate", *H100_64, "--trace", str(trace)]
    _fails([*base, "--plan", "tp=1,pp=8,gbs=1000000"], "--trace: this step has about", "--trace-max-events")
    assert not trace.exists()
    _fails([*base, "--plan", "tp=1,pp=8,gbs=512", "--trace-max-events", "10"], "budget of 10")
    ok = runner.invoke(app, [*base, "--plan", "tp=1,pp=8,gbs=512"])
    assert ok.exit_code == 0, ok.output
    assert trace.stat().st_size > 0


@pytest.fixture
def sweep_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setattr(engine, "search", fake_search)
    spec = write_spec(tmp_path)
    db = tmp_path / "r.duckdb"
    result = runner.invoke(app, ["sweep", str(spec), "--db", str(db), "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    return spec, db


def test_no_command_writes_over_its_input_or_a_results_db(sweep_db: tuple[Path, Path], tmp_path: Path) -> None:
    spec, db = sweep_db
    before = db.read_bytes()
    _fails(["results", "export", "--db", str(db), "-o", str(db), "--format", "csv"], "is also an input")
    other = tmp_path / "other.csv"
    shutil.copy(db, other)  # a results database under another name is still not an output
    _fails(["results", "export", "--db", str(db), "-o", str(other)], "is a rainier results database")
    _fails(["train", "estimate", *H100_64, "--plan", "gbs=64", "--report", str(db)], "is a rainier results database")
    _fails(["sweep", str(spec), "--db", str(spec)], "is the sweep file")
    assert db.read_bytes() == before
    scenario = tmp_path / "s.yaml"
    shutil.copy(ROOT / "examples" / "trn3-vs-gpu.yaml", scenario)
    _fails(["report", str(scenario), "-o", str(scenario)], "is also an input")
    cases = tmp_path / "t.yaml"
    shutil.copy(ROOT / "validation" / "training.yaml", cases)
    text = cases.read_text()
    _fails(["calibrate", str(cases), "--out", str(cases)], "is also an input")
    assert cases.read_text() == text
    _fails(["train", "estimate", *H100_64, "--plan", "gbs=64", "--trace", str(tmp_path)], "is a folder")


def test_a_truncated_results_db_is_bad_input(sweep_db: tuple[Path, Path], tmp_path: Path) -> None:
    spec, db = sweep_db
    with db.open("r+b") as handle:
        handle.truncate(os.path.getsize(db) // 2)
    _fails(["results", "export", "--db", str(db), "-o", str(tmp_path / "x.csv")], "damaged or truncated")
    _fails(["sweep", str(spec), "--db", str(db), "--resume", "--workers", "1"], "damaged or truncated")


def test_sweep_cells_are_range_checked(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, gbs=[2**31])
    _fails(["sweep", str(spec), "--db", str(tmp_path / "r.duckdb"), "--workers", "1"], "gbs=2147483648 is invalid")


class _InterruptedDb:
    """A DuckDB connection whose statement is interrupted by Ctrl-C (DuckDB reports it as a RuntimeError)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def execute(self, sql: str, *args: Any) -> None:
        self.statements.append(sql.split()[0])
        if sql.startswith("INSERT"):
            raise RuntimeError("Query interrupted")


@dataclass
class _Row:
    cell_id: str = "c"


def test_ctrl_c_during_an_insert_is_an_interrupt_and_rolls_back(tmp_path: Path) -> None:
    db = _InterruptedDb()
    store = ResultStore(tmp_path / "r.duckdb", db)  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        store.insert(_Row())  # type: ignore[arg-type]
    assert db.statements == ["BEGIN", "INSERT", "ROLLBACK"]
