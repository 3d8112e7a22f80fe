"""One scenario format: every example validates against the published JSON Schema and loads through the one loader;
the web app's downloaded YAML runs in ``rainier report``; versions and kinds outside the format are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from rainier.api.scenario import KINDS, ServeFile, load_scenario_file, load_scenario_text, scenario_schema, schema_text
from rainier.api.training_scenario import TrainingScenario
from rainier.catalog.loader import CatalogError
from rainier.cli import app
from rainier.fleet.scenario import Scenario
from rainier.search.sweep import SweepSpec

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "schemas" / "scenario.schema.json"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
EXPECTED_KIND = {
    "rainier-frontier.yaml": ("fleet", Scenario),
    "trn3-vs-gpu.yaml": ("fleet", Scenario),
    "serving-fleet.yaml": ("serve", ServeFile),
    "sweep.yaml": ("sweep", SweepSpec),
}
TRAINING = TrainingScenario(model="llama-3-8b", accelerator="h100-sxm", count=64, plan="tp=8,pp=1,mbs=1,gbs=256")
runner = CliRunner()


def test_the_published_schema_is_the_loaders() -> None:
    """``docs/schemas/scenario.schema.json`` is what ``python -m rainier.api.scenario`` writes (rerun it if not)."""
    Draft202012Validator.check_schema(scenario_schema())
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text()
    assert set(scenario_schema()["$defs"]) == set(KINDS)


def test_every_example_has_a_case() -> None:
    assert sorted(p.name for p in EXAMPLES) == sorted(EXPECTED_KIND)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates_and_loads(path: Path) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [error.message for error in Draft202012Validator(scenario_schema()).iter_errors(raw)]
    assert errors == []
    loaded = load_scenario_file(path)
    kind, kind_type = EXPECTED_KIND[path.name]
    assert loaded.kind == kind and isinstance(loaded.value, kind_type)


def test_the_schema_refuses_what_the_loader_refuses() -> None:
    validator = Draft202012Validator(scenario_schema())
    base = {"model": "llama-3-8b", "tokens": 1e12, "accelerator": "h100-sxm", "count": 64}
    assert validator.is_valid(base) and validator.is_valid({**base, "kind": "fleet", "version": 1})
    for bad in ({**base, "version": 2}, {**base, "bogus": 1}, {**base, "kind": "nope"}, {**base, "failures": {"x": 1}}):
        assert not validator.is_valid(bad), bad
        with pytest.raises(CatalogError):
            load_scenario_text(yaml.safe_dump(bad))


def test_the_web_download_runs_in_rainier_report(tmp_path: Path) -> None:
    text = TRAINING.to_yaml()
    document = yaml.safe_load(text)
    assert document["kind"] == "training" and document["version"] == 1  # written on output
    assert Draft202012Validator(scenario_schema()).is_valid(document)
    assert load_scenario_text(text).value == TRAINING
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["report", str(path), "-o", str(tmp_path / "report.html"), "--json"])
    assert result.exit_code == 0, result.output
    args = ["--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "64", "--plan", "tp=8,pp=1,mbs=1,gbs=256"]
    estimate = runner.invoke(app, ["train", "estimate", *args, "--json"])
    expected = json.loads(estimate.stdout)
    got = json.loads(result.stdout)
    assert got["step_time_s"] == expected["step_time_s"] and got["plan"] == expected["plan"]
    assert "Training step: llama-3-8b" in (tmp_path / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("text", "command", "needle"),
    [
        ("kind: training\nversion: 2\nmodel: llama-3-8b\n", "report", "version=2 is invalid: 1"),
        ("kind: serve\nversion: 3\nmodels: a:1\nslo: ttft_p99_ms=1\naccelerators: trn2\n", "report", "version"),
        ("kind: sweep\nversion: 0\nmodels: [llama-3-8b]\nclusters: [{cluster: x}]\ngbs: 1\n", "sweep", "version"),
        ("kind: bogus\n", "report", "kind='bogus' is invalid: fleet, training, serve, sweep"),
        ("kind: sweep\nmodels: [llama-3-8b]\nclusters: [{accelerator: trn2, count: 8}]\ngbs: 8\n", "report", "sweep"),
        ("kind: training\nmodel: llama-3-8b\n", "fleet", "kind='training' is invalid here: fleet"),
    ],
)
def test_kinds_and_versions_outside_the_format_are_one_line(
    tmp_path: Path, text: str, command: str, needle: str
) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    args = {
        "report": ["report", str(path), "-o", str(tmp_path / "r.html")],
        "fleet": ["fleet", "scenario", str(path)],
        "sweep": ["sweep", str(path), "--db", str(tmp_path / "s.duckdb")],
    }[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], lines
