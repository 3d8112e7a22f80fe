"""``rainier train simulate``, ``train search --verify`` and ``validate --simulate`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from rainier.cli import app

runner = CliRunner()
PLAN = "tp=8,pp=4,mbs=1,gbs=32,schedule=interleaved,vpp=2"
CLUSTER = ("--model", "llama-3-70b", "--accelerator", "h100-sxm", "--count", "64")


def test_simulate_json_has_the_answers_and_a_trace_with_lanes_and_counters(tmp_path: Path) -> None:
    trace = tmp_path / "step.json"
    result = runner.invoke(app, ["train", "simulate", *CLUSTER, "--plan", PLAN, "--json", "--trace", str(trace)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for key in ("step_time_s", "estimate_step_time_s", "difference", "cause", "critical_path", "stream_busy"):
        assert key in doc
    assert doc["rank_classes"] == 4 and doc["ranks_per_class"] == 16
    assert abs(doc["step_time_s"] / doc["estimate_step_time_s"] - 1 - doc["difference"]) < 1e-12
    events = json.loads(trace.read_text())["traceEvents"]
    assert {e["ph"] for e in events} >= {"X", "C", "M"}
    assert {e["pid"] for e in events if e["ph"] == "X"} == {1, 2, 3, 4}
    assert any("nvlink" in key for e in events if e["ph"] == "C" for key in e["args"])


def test_simulate_refuses_a_plan_that_does_not_divide_with_exit_2() -> None:
    result = runner.invoke(app, ["train", "simulate", *CLUSTER, "--plan", "tp=8,pp=3,mbs=1,gbs=64"])
    assert result.exit_code == 2
    assert "tp*pp*cp=24" in result.output and "64" in result.output


def test_simulate_tables_name_the_difference() -> None:
    result = runner.invoke(app, ["train", "simulate", *CLUSTER, "--plan", PLAN])
    assert result.exit_code == 0, result.output
    assert "critical path" in result.output and "busiest links" in result.output and "difference" in result.output


def test_search_verify_reranks_the_best_plans() -> None:
    args = ["train", "search", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "64", "--gbs", "128"]
    result = runner.invoke(app, [*args, "--top", "3", "--verify", "3", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    verification = doc["verification"]
    plans = verification["plans"]
    assert sorted(p["simulated_rank"] for p in plans) == [1, 2, 3]
    assert sorted(p["estimate_rank"] for p in plans) == [1, 2, 3]
    simulated = [p["objective_simulated"] for p in plans]
    assert simulated == sorted(simulated)  # listed in the simulation's order
    assert verification["order_changed"] == any(p["estimate_rank"] != p["simulated_rank"] for p in plans)
    assert len(doc["top"]) == 3


def test_validate_simulate_reports_both_errors_and_agreement() -> None:
    path = "validation/training.yaml"
    result = runner.invoke(app, ["validate", path, "--group", "MaxText_v4_2023", "--simulate", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    rows = [r for r in doc["cases"] if "simulated" in r]
    assert rows and all("sim_error_pct" in r for r in rows)
    agreement = doc["summary"]["agreement"]
    assert agreement["within_bound"] and agreement["max_abs_difference_pct"] <= 2.0
    assert doc["summary"]["simulation"]["predicted"] == len(rows)


def test_simulate_report_holds_the_simulation(tmp_path: Path) -> None:
    out = tmp_path / "sim.html"
    result = runner.invoke(app, ["train", "simulate", *CLUSTER, "--plan", PLAN, "--report", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "Simulated training step" in text and "Critical path" in text


def test_simulate_refuses_a_step_past_its_budget_with_exit_2() -> None:
    plan = "tp=8,pp=4,mbs=1,gbs=200000"  # dp = 2: 100,000 micro-batches x 4 ranks
    result = runner.invoke(app, ["train", "simulate", *CLUSTER, "--plan", plan])
    assert result.exit_code == 2
    assert "400,000 pass visits" in result.output and "100,000" in result.output
