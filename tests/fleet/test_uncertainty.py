"""Intervals and sensitivities: held-out residual bands, one-at-a-time responses, the seeded Monte Carlo."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rainier.api.fleet import run_fleet_plan
from rainier.calibrate.cases import Metric
from rainier.calibrate.crossval import CrossValidationReport, HeldOutFold
from rainier.calibrate.residuals_file import residual_document, step_ratio, write_residuals
from rainier.calibrate.score import CaseResult
from rainier.cli import app
from rainier.errors import InputError
from rainier.fleet.uncertainty import Change, InputRange, analyse, headlines
from rainier.perf.residuals import ALL_KEY, MIN_CASES, ResidualBand, committed_residuals, load_residuals

runner = CliRunner()


@pytest.fixture(scope="module")
def run():  # type: ignore[no-untyped-def]
    return run_fleet_plan(model="llama-3-8b", tokens=1e12, accelerator="h100-sxm", count=256, price="4")


def test_committed_residuals_cover_every_fitted_family() -> None:
    residuals = committed_residuals()
    assert residuals is not None and "leave-one-group-out" in residuals.command
    everything = residuals.bands[ALL_KEY]
    assert everything.n == sum(b.n for k, b in residuals.bands.items() if k != ALL_KEY)
    for band in residuals.bands.values():
        assert 0 < band.low <= band.median <= band.high
    # a family without enough held-out cases falls back to all of them
    assert residuals.for_family("inferentia") is everything


def test_step_ratio_reads_rates_inversely() -> None:
    assert step_ratio(Metric.STEP_TIME_S.value, measured=2.0, predicted=1.0) == 2.0  # model too fast
    assert step_ratio(Metric.MFU.value, measured=0.5, predicted=0.4) == pytest.approx(0.8)  # model too slow


def test_residuals_file_round_trips(tmp_path: Path) -> None:
    rows = tuple(
        CaseResult(
            id=f"c{i}", group="g", trust="A", metric="step_time_s", measured=1.0 + i / 10, predicted=1.0, error_pct=0.0
        )
        for i in range(MIN_CASES)
    )
    report = CrossValidationReport(folds=(HeldOutFold(group="g", num_fit_cases=5, rows=rows),), summary={})
    family = {f"c{i}": "nvidia-hopper" for i in range(MIN_CASES)}
    document = residual_document(report, family)
    assert document["families"]["nvidia-hopper"]["n"] == MIN_CASES
    path = write_residuals(report, family, tmp_path / "residuals.yaml")
    loaded = load_residuals(path)
    assert loaded is not None
    band = loaded.for_family("nvidia-hopper")
    assert band.n == MIN_CASES and band.low >= 1.0 and band.high <= 1.0 + (MIN_CASES - 1) / 10


def test_headlines_without_change_are_the_runs_own(run) -> None:  # type: ignore[no-untyped-def]
    same = headlines(run, Change())
    assert same["wall_clock_days"] == pytest.approx(run.wall_clock_days)
    assert same["energy_mwh"] == pytest.approx(run.energy_mwh)
    assert same["cost_usd"] == pytest.approx(run.cost_usd)
    assert same["tokens_per_joule"] == pytest.approx(run.tokens_per_joule)
    slower = headlines(run, Change(step=2.0, ettr=0.5))
    assert slower["wall_clock_days"] == pytest.approx(4 * run.wall_clock_days)


def test_a_single_ratio_and_no_inputs_give_a_point(run) -> None:  # type: ignore[no-untyped-def]
    result = analyse(run, [], ResidualBand(family="x", ratios=(1.2,)), samples=50)
    low, high = result.intervals["wall_clock_days"]  # type: ignore[misc]
    assert low == pytest.approx(1.2 * run.wall_clock_days) and high == pytest.approx(low)


def test_intervals_widen_with_each_input_and_rank_by_swing(run) -> None:  # type: ignore[no-untyped-def]
    band = ResidualBand(family="x", ratios=(0.9, 1.0, 1.1))
    narrow = analyse(run, [], band)
    power = InputRange(name="power", range_text="", reason="", low=Change(power=0.8), high=Change(power=1.25))
    restart = InputRange(name="restart", range_text="", reason="", low=Change(ettr=1.05), high=Change(ettr=0.7))
    wide = analyse(run, [power, restart], band)

    def width(u, key: str) -> float:  # type: ignore[no-untyped-def]
        low, high = u.intervals[key]
        return math.log(high / low)

    assert width(wide, "wall_clock_days") > width(narrow, "wall_clock_days")
    assert width(wide, "energy_mwh") > width(narrow, "energy_mwh")
    assert wide.sensitivities[0].name == "restart"  # moves the days most
    again = analyse(run, [power, restart], band)
    assert again.intervals == wide.intervals  # seeded


def test_fleet_plan_reports_intervals_and_sensitivity() -> None:
    args = ["fleet", "plan", "--model", "llama-3-8b", "--tokens", "1e12", "--accelerator", "trn2", "--count", "256"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for key in ("step_time_s", "wall_clock_days", "energy_mwh", "tokens_per_joule"):
        assert doc[f"{key}_low"] <= doc[f"{key}_high"]
    names = {row["input"] for row in doc["uncertainty"]["sensitivity"]}
    assert {"step model", "power per device", "restart time", "failure rates"} <= names  # trn2 power is estimated
    table = runner.invoke(app, [*args, "--sensitivity"])
    assert table.exit_code == 0, table.output
    assert "what moves the answer" in table.output and "failure rates" in table.output


def test_the_report_shows_intervals_and_the_tornado(run) -> None:  # type: ignore[no-untyped-def]
    from rainier.api.report import report_of
    from rainier.report.html import fleet_comparison_figure

    html = report_of(run).render()
    assert "How far to trust it" in html and "What moves the answer" in html
    doc = run.to_dict()
    figure = fleet_comparison_figure([{"accelerator": "h100-sxm", "run": doc}])
    bars = figure.data[0].error_y
    assert bars.array[0] == pytest.approx(doc["wall_clock_days_high"] - doc["wall_clock_days"])


def test_a_rounded_count_is_announced() -> None:
    run = run_fleet_plan(model="llama-3-8b", tokens=1e12, accelerator="h100-sxm", count=100, failures=False)
    assert run.footprint.devices == 96
    assert any("--count 100" in note and "96 devices used" in note for note in run.notes)
    exact = run_fleet_plan(model="llama-3-8b", tokens=1e12, accelerator="h100-sxm", count=96, failures=False)
    assert not any("--count" in note for note in exact.notes)


def test_the_batch_rule_and_the_batch_used_are_announced() -> None:
    """The fleet commands use train search's batch rule: a target within +-5% (the largest batch in range each
    plan can split), or an exact --gbs; one note says the rule and the batch the run's plan used."""
    run = run_fleet_plan(model="llama-3-8b", tokens=1e12, accelerator="h100-sxm", count=64, failures=False)
    note = next(n for n in run.notes if n.startswith("batch:"))
    assert "sequences target (DeepSeek LLM's batch law), \u00b15%" in note
    assert note.endswith(f": used {run.estimate.plan.gbs:,}")
    low, high = (int(x.replace(",", "")) for x in note.split("(")[-1].split(")")[0].split(" to "))
    assert low <= run.estimate.plan.gbs <= high
    exact = run_fleet_plan(model="llama-3-8b", tokens=1e12, accelerator="h100-sxm", count=64, gbs=512, failures=False)
    assert "batch: 512 sequences exact (--gbs): used 512" in exact.notes
    wide = run_fleet_plan(
        model="llama-3-8b", tokens=1e12, accelerator="h100-sxm", count=64, gbs_tolerance=0.2, failures=False
    )
    assert any("\u00b120%" in n for n in wide.notes)
    with pytest.raises(InputError, match="--gbs is an exact batch"):
        run_fleet_plan(model="llama-3-8b", tokens=1e12, accelerator="h100-sxm", count=64, gbs=512, gbs_tolerance=0.1)
