"""CLI: ``rainier validate`` and ``rainier calibrate`` through typer's runner (real and fake step models)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from rainier.calibrate import default_efficiency_path
from rainier.cli import app
from rainier.perf import step
from rainier.perf.efficiency import load_efficiency
from tests.calibrate.conftest import INFERENCE, SHARED_CASES, TRAINING
from tests.calibrate.fakes import fake_estimate

runner = CliRunner()
NUM_CASES = len(yaml.safe_load(TRAINING.read_text())["cases"])


@pytest.fixture(scope="module")
def shared_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 51 shared public cases in a file of their own (small and fixed, for the calibrate commands)."""
    raw = yaml.safe_load(TRAINING.read_text())
    raw["cases"] = raw["cases"][:SHARED_CASES]
    path = tmp_path_factory.mktemp("cases") / "shared.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the step model by the fake (the calibrate package looks ``estimate`` up when called)."""
    monkeypatch.setattr(step, "estimate", fake_estimate)


def _json(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_validate_json_structure() -> None:
    doc = _json(["validate", str(TRAINING), "--json"])
    assert set(doc) == {"cases", "summary"}
    cases, summary = doc["cases"], doc["summary"]
    assert isinstance(cases, list) and isinstance(summary, dict) and len(cases) == NUM_CASES
    for row in cases:
        assert set(row) >= {"id", "group", "trust"}
        assert "skipped" in row or set(row) >= {"metric", "measured", "predicted", "error_pct"}
    for key in ("count", "skipped", "median_abs_error_pct", "mean_abs_error_pct", "p90_abs_error_pct", "by_group"):
        assert key in summary, key
    assert summary["count"] == NUM_CASES and set(summary["by_trust"]) == {"A", "B", "C", "A+B"}
    assert summary["korthikanti2022_table5_mean_abs_error_pct"] is not None


def test_validate_tables() -> None:
    result = runner.invoke(app, ["validate", str(TRAINING)])
    assert result.exit_code == 0, result.output
    for text in ("Narayanan2021_Table1", "kor22-22b-full", "validation summary", "Korthikanti et al. 2022 Table 5"):
        assert text in result.stdout, text
    assert "micro_batch null: 1 sequence per micro-batch assumed" in result.stdout


def test_validate_group_and_inference() -> None:
    doc = _json(["validate", str(TRAINING), "--group", "Korthikanti2022_Table5", "--json"])
    assert len(doc["cases"]) == 8
    doc = _json(["validate", str(INFERENCE), "--group", "TensorRT-LLM_v0.5_static", "--json"])
    assert len(doc["cases"]) == 4 and all("error_pct" in row for row in doc["cases"])  # scored by serve.validate
    result = runner.invoke(app, ["validate", str(INFERENCE), "--group", "TensorRT-LLM_v0.5_static"])
    assert result.exit_code == 0 and "validation summary" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "nowhere.yaml"], "nowhere.yaml: cannot read file"),
        (["validate", str(TRAINING), "--group", "nope"], "unknown group 'nope'"),
        (["validate", str(TRAINING), "--efficiency", "nowhere.yaml"], "nowhere.yaml: no such efficiency file"),
        (["calibrate", str(TRAINING), "--exclude-group", "nope", "--dry-run"], "unknown group 'nope'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], message: str, fake_model: None) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_calibrate_dry_run_writes_nothing(fake_model: None, shared_file: Path) -> None:
    target = default_efficiency_path()
    before = target.read_bytes() if target.exists() else None
    doc = _json(["calibrate", str(shared_file), "--dry-run", "--json"])
    assert doc["written"] is None and doc["leave_one_group_out"] is None
    fit = doc["fit"]
    assert isinstance(fit, dict)
    assert [e["id"] for e in fit["entries"]] == ["default", "nvidia-ampere", "nvidia-hopper", "trainium"]
    assert fit["num_cases"] == 51 and fit["after"]["median_abs_error_pct"] < fit["before"]["median_abs_error_pct"]
    assert (target.read_bytes() if target.exists() else None) == before


def test_calibrate_writes_a_file_validate_reads(fake_model: None, tmp_path: Path, shared_file: Path) -> None:
    out = tmp_path / "eff.yaml"
    result = runner.invoke(
        app,
        ["calibrate", str(shared_file), "--out", str(out), "--exclude-group", "MLPerf_Training_v4.0_Llama2_70B_LoRA"],
    )
    assert result.exit_code == 0, result.output
    assert "fitted efficiency parameters" in result.stdout and f"wrote {out}" in result.stdout
    assert "held-out groups" in result.stdout
    table = load_efficiency(out)
    assert set(table.entries) == {"default", "nvidia-ampere", "nvidia-hopper", "trainium"}
    assert "--exclude-group MLPerf_Training_v4.0_Llama2_70B_LoRA" in out.read_text()
    doc = _json(["validate", str(shared_file), "--efficiency", str(out), "--json"])
    assert doc["summary"]["efficiency"] == str(out)


def test_calibrate_leave_one_group_out(fake_model: None, shared_file: Path) -> None:
    doc = _json(["calibrate", str(shared_file), "--dry-run", "--leave-one-group-out", "--json"])
    logo = doc["leave_one_group_out"]
    assert isinstance(logo, dict) and len(logo["folds"]) == 7 and logo["summary"]["predicted"] == SHARED_CASES
    result = runner.invoke(app, ["calibrate", str(shared_file), "--dry-run", "--leave-one-group-out"])
    assert result.exit_code == 0 and "leave-one-group-out" in result.stdout and "all held-out" in result.stdout


def test_calibrate_with_the_real_step_model_improves_the_fit(shared_file: Path) -> None:
    doc = _json(["calibrate", str(shared_file), "--dry-run", "--json"])
    fit = doc["fit"]
    assert isinstance(fit, dict) and fit["num_cases"] + len(fit["not_used"]) == SHARED_CASES
    assert fit["after"]["median_abs_error_pct"] <= fit["before"]["median_abs_error_pct"]
