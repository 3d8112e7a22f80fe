"""HTML reports: self-contained pages, titled plots with axis labels, every example scenario through `report`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rainier.api import run_estimate
from rainier.api.report import estimate_report
from rainier.cli import app
from rainier.report import html as fig
from tests.report.conftest import Report

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if p.name != "sweep.yaml")
runner = CliRunner()


def _figures(page: str) -> list[dict]:  # type: ignore[type-arg]
    """The plotly figure specs embedded in a page (Plotly.newPlot(id, data, layout, ...))."""
    specs = []
    for match in re.finditer(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{", page, flags=re.S):
        specs.append({"data": json.loads(match.group(1)), "layout": json.loads(match.group(2))})
    return specs


def test_estimate_report_is_self_contained_with_labelled_plots() -> None:
    est = run_estimate(model="llama-3-70b", accelerator="h100-sxm", count=64, plan="tp=8,pp=2,gbs=512")
    page = estimate_report(est).render()
    assert not re.search(r"<script[^>]*\bsrc=", page)  # plotly.js inlined: opens without a network
    assert "Plotly.newPlot" in page
    specs = _figures(page)
    assert len(specs) == 2
    for spec in specs:
        layout = spec["layout"]
        assert layout["title"]["text"] and layout["yaxis"]["title"]["text"]
    breakdown = specs[0]
    assert sum(trace["y"][0] for trace in breakdown["data"]) == pytest.approx(est.step_time_s, rel=1e-9)
    data = json.loads(re.search(r"id='rainier-data'>(.*?)</script>", page, flags=re.S).group(1))  # type: ignore[union-attr]
    assert data["estimate"]["step_time_s"] == est.step_time_s


@pytest.mark.parametrize("scenario", EXAMPLES, ids=lambda p: p.name)
def test_every_example_scenario_reports(scenario: Path, example_reports: dict[str, Report]) -> None:
    page = example_reports[scenario.name].page
    specs = _figures(page)
    assert len(specs) >= 2
    for spec in specs:
        assert spec["layout"]["title"]["text"]
        layout = spec["layout"]
        assert layout.get("yaxis", {}).get("title", {}).get("text"), layout["title"]["text"]


def test_latency_cdf_is_monotone() -> None:
    import numpy as np

    figure = fig.latency_cdf_figure({"TTFT": np.array([3.0, 1.0, 2.0, np.nan])}, "t")
    ys = figure.data[0].y
    assert list(ys) == sorted(ys) and ys[-1] == 1.0


def test_report_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: trainingg\nmodel: x\n")
    result = runner.invoke(app, ["report", str(bad)])
    assert result.exit_code == 2 and "kind='trainingg' is invalid: fleet, training, serve, sweep" in result.stderr
    bad.write_text("kind: training\nmodel: x\n")  # a training scenario is run, and its mistakes are one line
    result = runner.invoke(app, ["report", str(bad)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "unknown model 'x'" in result.stderr


def test_report_and_trace_flags(tmp_path: Path) -> None:
    step = ["train", "estimate", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "16"]
    result = runner.invoke(
        app,
        [
            *step,
            "--plan",
            "tp=2,pp=2,gbs=64",
            "--trace",
            str(tmp_path / "t.json"),
            "--report",
            str(tmp_path / "r.html"),
        ],
    )
    assert result.exit_code == 0, result.output
    trace = json.loads((tmp_path / "t.json").read_text())
    assert any(e.get("name") == "bubble" for e in trace["traceEvents"])
    assert _figures((tmp_path / "r.html").read_text())
    sim = ["serve", "simulate", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "2"]
    result = runner.invoke(app, [*sim, "--rate", "5", "--duration", "10", "--perfetto", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s.json").read_text())["traceEvents"]
    bad = runner.invoke(app, [*step, "--plan", "tp=2,gbs=64", "--trace", str(tmp_path / "nowhere" / "t.json")])
    assert bad.exit_code == 2 and "cannot write" in bad.stderr
