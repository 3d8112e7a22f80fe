"""serve simulate --requests-out: one row per request; --json echoes the layout; errors under --json are JSON."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from rainier.cli import app

runner = CliRunner()
ARGS = ["serve", "simulate", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "1", "--rate", "2"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_each_request_is_written_and_matches_the_summary(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"requests{suffix}"
    result = runner.invoke(app, [*ARGS, "--duration", "20", "--requests-out", str(path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["model"] == "llama-3-8b" and doc["accelerator"] == "h100-sxm" and doc["layout"]["tp"] == 1
    table = pd.read_csv(path) if suffix == ".csv" else duckdb.sql(f"select * from '{path}'").df()
    assert len(table) == doc["requests_submitted"]
    done = table[table["status"] == "completed"]
    assert len(done) == doc["requests_completed"]
    assert (done["e2e_ms"] >= done["ttft_ms"]).all() and (done["queue_ms"] >= 0).all()
    assert done["ttft_ms"].median() == pytest.approx(doc["ttft_ms"]["p50"], rel=0.05)


def test_a_bad_name_is_refused_before_simulating(tmp_path: Path) -> None:
    result = runner.invoke(app, [*ARGS, "--duration", "5", "--requests-out", str(tmp_path / "r.txt")])
    assert result.exit_code == 2 and "requests-out" in result.output


def test_errors_under_json_are_json() -> None:
    result = runner.invoke(app, ["serve", "simulate", "--model", "nope", "--accelerator", "h100-sxm", "--rate", "1",
                                 "--json"])  # fmt: skip
    assert result.exit_code == 2
    error = json.loads(result.stderr)
    assert "unknown model 'nope'" in error["error"] and error["exit_code"] == 2
