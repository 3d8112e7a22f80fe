"""Reports open with the answer: a grid of headline cards with the JSON's numbers, why, then plots; inputs last."""

from __future__ import annotations

import re

import pytest
from plotly.offline import get_plotlyjs
from typer.testing import CliRunner

from rainier.cli import app
from rainier.report.html import format_number
from tests.report.conftest import ROOT, Report
from tests.report.test_html import _figures

FLEET = ("rainier-frontier.yaml", "trn3-vs-gpu.yaml")
PLOTLY_BANNER = get_plotlyjs()[:60]  # "/**\n* plotly.js v4.1.1\n* Copyright ..."


def _answer(page: str) -> str:
    match = re.search(r"<body>(<section id='answer'>.*?</section>)", page, flags=re.S)
    assert match, "the answer card is not the first element of <body>"
    return match.group(1)


def _cards(answer: str) -> dict[str, tuple[str, str | None]]:
    """label -> (value, interval text or None) of each card."""
    cards = {}
    for label, value, span in re.findall(
        r"<div class='label'>(.*?)</div><div class='value'>(.*?)</div>(?:<div class='range'>(.*?)</div>)?", answer
    ):
        cards[label] = (value, span or None)
    return cards


@pytest.mark.parametrize("name", FLEET)
def test_a_fleet_report_opens_with_the_runs_numbers(name: str, example_reports: dict[str, Report]) -> None:
    report = example_reports[name]
    run = report.document["run"]
    answer = _answer(report.page)
    assert "<table" not in answer  # a grid of cards: nothing wider than the window
    cards = _cards(answer)
    assert cards["devices"] == (f"{run['devices']:,}", None)
    assert cards["facility MW"][0] == format_number(run["facility_power_mw"])
    for label, key in (
        ("days (wall clock)", "wall_clock_days"),
        ("energy MWh", "energy_mwh"),
        ("step time (s)", "step_time_s"),
    ):
        value, span = cards[label]
        assert value == format_number(run[key])
        assert span == f"{format_number(run[f'{key}_low'])} – {format_number(run[f'{key}_high'])} (p10–p90)"
    assert cards["fits in memory"][0] == "yes"
    why = re.search(r"<p class='why'><b>Why:</b> (.*?)</p>", answer)
    breakdown = next(s for s in _figures(report.page) if s["layout"]["title"]["text"].startswith("Step time"))
    parts = {trace["name"]: trace["y"][0] for trace in breakdown["data"]}
    loss = max(v for k, v in parts.items() if k != "compute") / sum(parts.values())  # the bar is the run's step
    expected = f"{loss:.0%} " if loss >= 0.1 else f"compute-bound: {parts['compute'] / sum(parts.values()):.0%} "
    assert why and why.group(1).startswith(expected) and "; " in why.group(1)
    assert f"<code>{run['plan']}</code>" in answer


@pytest.mark.parametrize("name", FLEET)
def test_the_top_plans_table_agrees_with_the_headline(name: str, example_reports: dict[str, Report]) -> None:
    page, run = example_reports[name].page, example_reports[name].document["run"]
    table = page[page.index("<h2>Top plans on the cluster used</h2>") :].split("</table>")[0]
    row = re.search(r"<td>the run&#x27;s</td><td>(.*?)</td><td class='num'>(.*?)</td>", table)
    assert row, "the run's plan is not among the top plans"
    assert row.groups() == (run["plan"], format_number(run["step_time_s"]))
    breakdown = next(s for s in _figures(page) if s["layout"]["title"]["text"].startswith("Step time"))
    assert sum(trace["y"][0] for trace in breakdown["data"]) == pytest.approx(run["step_time_s"], rel=1e-9)


def test_every_report_loads_plotly_once_and_shows_the_inputs_last(example_reports: dict[str, Report]) -> None:
    for report in example_reports.values():
        page = report.page
        assert page.count(PLOTLY_BANNER) == 1 and not re.search(r"<script[^>]*\bsrc=", page)
        details = page.index("<details><summary>Inputs (scenario file)</summary>")
        assert details > page.rindex("<h2>")  # after every section
        assert "<pre>" in page[details:] and "title:" in page[details:]


def test_the_serving_report_shows_the_slos_and_each_fleets_simulated_p99(example_reports: dict[str, Report]) -> None:
    report = example_reports["serving-fleet.yaml"]
    sizing = report.document["sizing"]
    cards = _cards(_answer(report.page))
    best = next(o for o in sizing["options"] if o["fleet"] == sizing["best"])
    assert cards["best fleet"][0] == best["fleet"]
    assert cards["devices"] == (f"{best['devices']}", f"{best['devices_low']} – {best['devices_high']} (p10–p90)")
    worst_tpot = max(m["simulated"]["tpot_p99_ms"] for m in best["models"])
    assert cards["TPOT p99 ms, simulated (SLO 60)"][0] == format_number(worst_tpot)
    for option in sizing["options"]:
        table = report.page[report.page.index(f"<h2>{option['fleet']}: per model</h2>") :].split("</table>")[0]
        assert "TTFT p99 ms (simulated)" in table
        for model in option["models"]:
            assert f"<td class='num'>{format_number(model['simulated']['ttft_p99_ms'])}</td>" in table
    latency = next(s for s in _figures(report.page) if s["layout"]["title"]["text"].startswith("Per-request latency"))
    slo_lines = {t["name"]: t["x"] for t in latency["data"] if "SLO" in t["name"]}
    assert slo_lines == {"TTFT p99 SLO (2000 ms)": [2000.0, 2000.0], "TPOT p99 SLO (60 ms)": [60.0, 60.0]}


def test_the_comparison_bars_are_grouped_not_overdrawn(example_reports: dict[str, Report]) -> None:
    page = example_reports["trn3-vs-gpu.yaml"].page
    spec = next(s for s in _figures(page) if s["layout"]["title"]["text"].startswith("The same run on each"))
    assert spec["layout"]["barmode"] == "group"
    groups = [trace["offsetgroup"] for trace in spec["data"]]
    assert len(set(groups)) == len(groups) == 2


def test_plotly_from_the_cdn_is_a_script_tag(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "serve.html"
    runner = CliRunner()
    scenario = str(ROOT / "examples" / "serving-fleet.yaml")
    result = runner.invoke(app, ["report", scenario, "-o", str(out), "--plotly", "cdn"])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert (
        PLOTLY_BANNER not in page
        and len(re.findall(r"<script src='https://cdn\.plot\.ly/plotly-[\d.]+\.min\.js'", page)) == 1
    )
    assert out.stat().st_size < 500_000
    bad = runner.invoke(app, ["report", scenario, "-o", str(out), "--plotly", "web"])
    assert bad.exit_code == 2 and "--plotly 'web' is invalid: inline or cdn" in bad.stderr
