"""Every example scenario's report, written once per test session (the fleet scenarios take seconds each)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rainier.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if p.name != "sweep.yaml")


@dataclass(frozen=True)
class Report:
    """A report written by ``rainier report SCENARIO -o PATH --json``: the page, its path and the JSON printed."""

    scenario: Path
    path: Path
    page: str
    document: dict[str, Any]


@pytest.fixture(scope="session")
def example_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Report]:
    folder = tmp_path_factory.mktemp("reports")
    runner = CliRunner()
    reports = {}
    for scenario in EXAMPLES:
        out = folder / f"{scenario.stem}.html"
        result = runner.invoke(app, ["report", str(scenario), "-o", str(out), "--json"])
        assert result.exit_code == 0, result.output
        reports[scenario.name] = Report(scenario, out, out.read_text(encoding="utf-8"), json.loads(result.stdout))
    return reports
