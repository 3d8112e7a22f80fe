"""The web app's fleet, serving and sweep questions over HTTP: the CLI's JSON (a sweep's rows those of rainier
results export), one-line errors beside their field, every example uploads, and the routes' own time budgets."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rainier.api.scenario import load_scenario_file, scenario_schema
from rainier.cli import app as cli_app
from rainier.search.sweep import load_sweep_spec
from rainier.web import create_app
from rainier.web.evaluate import finite_json
from rainier.web.limits import FLEET_BUDGET_S, MAX_SWEEP_CELLS, REQUEST_BUDGET_S
from tests.web.conftest import cli_json, runner, served

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
HF_CONFIG = ROOT / "tests" / "workload" / "data" / "Meta-Llama-3-70B.json"  # a config.json the CLI would read
TIMEOUT_S = 60.0
# Small questions of each kind: seconds, not the examples' half minute (the examples upload below, unrun).
FLEET: dict[str, Any] = {
    "title": "Llama 3 8B on 64 H100",
    "model": "llama-3-8b",
    "tokens": 1.0e12,
    "accelerator": "h100-sxm",
    "count": 64,
    "failures": {"seed": 3},
    "compare": {"accelerators": ["trn2"], "at": "power"},
}
SERVE: dict[str, Any] = {
    "models": {"llama-3-8b": 20},
    "slo": {"ttft_p99_ms": 2000, "tpot_p99_ms": 60},
    "accelerators": ["trn2", "h100-sxm"],
    "price": {"trn2": 2.0},
    "simulate": {"model": "llama-3-8b", "accelerator": "h100-sxm", "count": 1, "rate": 5, "duration": 20},
}


# Two cells of a second or less each (examples/sweep.yaml's six take ten seconds; it uploads below, unrun).
SWEEP: dict[str, Any] = {
    "models": ["llama-3-8b"],
    "clusters": [{"accelerator": "h100-sxm", "count": [8, 16]}],
    "gbs": [64],
    "top": 3,
}
# Columns that are the same on every run of a cell (not its timings or the version that ran it).
SWEEP_COLUMNS = (
    "cell_id", "model", "cluster", "accelerator", "count", "gbs", "seq_len", "objective", "top_k", "status", "error",
    "num_devices", "best_plan", "best_plan_json", "step_time_s", "tokens_per_s", "mfu", "memory_bytes_per_device",
    "memory_capacity_bytes", "evaluated", "candidates",
)  # fmt: skip


def _post(base_url: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(base_url + path, timeout=TIMEOUT_S, **kwargs)


def _scenario_file(tmp_path: Path, kind: str, fields: dict[str, Any]) -> Path:
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump({"kind": kind, "version": 1, **fields}, sort_keys=False), encoding="utf-8")
    return path


def test_fleet_question_is_the_cli_json(base_url: str, tmp_path: Path) -> None:
    path = _scenario_file(tmp_path, "fleet", FLEET)
    uploaded = _post(base_url, "/api/scenario", content=path.read_bytes()).json()
    assert uploaded == {"kind": "fleet", "scenario": FLEET}
    answer = _post(base_url, "/api/fleet", json=uploaded["scenario"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = finite_json(cli_json(["fleet", "scenario", str(path)]))
    expected["scenario"]["path"] = "request"  # where the scenario came from: the request, not the file
    assert body["kind"] == "fleet" and body["result"] == expected
    assert body["result"]["goodput"] is not None and body["result"]["comparison"]["rows"]


def test_serve_question_is_the_cli_json(base_url: str, tmp_path: Path) -> None:
    path = _scenario_file(tmp_path, "serve", SERVE)
    answer = _post(base_url, "/api/serve", json=SERVE)
    assert answer.status_code == 200, answer.text
    expected = cli_json(["report", str(path), "-o", str(tmp_path / "report.html")])
    expected.pop("report")
    assert answer.json() == {"kind": "serve", "result": finite_json(expected)}


def _csv_value(text: str, like: object) -> object:
    """A CSV cell of rainier results export as the JSON value ``like`` has (empty: null)."""
    if text == "":
        return None
    if isinstance(like, bool):
        return text == "true"
    return type(like)(text) if isinstance(like, int | float) else text


def test_sweep_question_is_the_cli_rows(base_url: str, tmp_path: Path) -> None:
    """The web's sweep runs in memory; its rows equal those rainier sweep --db stores and results export writes."""
    path = _scenario_file(tmp_path, "sweep", SWEEP)
    uploaded = _post(base_url, "/api/scenario", content=path.read_bytes()).json()
    assert uploaded == {"kind": "sweep", "scenario": SWEEP}
    answer = _post(base_url, "/api/sweep", json=uploaded["scenario"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    db, out = tmp_path / "results.duckdb", tmp_path / "results.csv"
    ran = runner.invoke(cli_app, ["sweep", str(path), "--db", str(db), "--workers", "1", "--json"])
    assert ran.exit_code == 0, ran.output
    exported = runner.invoke(cli_app, ["results", "export", "-o", str(out), "--db", str(db)])
    assert exported.exit_code == 0, exported.output
    with out.open(encoding="utf-8", newline="") as file:
        expected = list(csv.DictReader(file))
    result = body["result"]
    assert body["kind"] == "sweep" and (result["cells"], result["ok"], result["failed"]) == (2, 2, 0)
    assert [row["count"] for row in result["rows"]] == [8, 16]  # the table's order: model, cluster, count, ...
    for row, cli_row in zip(result["rows"], expected, strict=True):
        for column in SWEEP_COLUMNS:
            value = row[column]
            assert _csv_value(cli_row[column], value) == value, column
        assert row["step_time_s"] > 0 and math.isfinite(row["tokens_per_s"])
        assert row["plan"] and row["best_plan"].startswith(row["plan"].split(",")[0])


def test_examples_sweep_fits_the_web_cell_limit() -> None:
    """examples/sweep.yaml runs on the page (six cells, 3-10 seconds on two shared CPU cores)."""
    cells = load_sweep_spec(ROOT / "examples" / "sweep.yaml").cells()
    assert len(cells) <= MAX_SWEEP_CELLS


@pytest.mark.parametrize(
    ("route", "fields", "field", "needle"),
    [
        ("/api/fleet", {**FLEET, "failures": {"seed": -1}}, "failures.seed", "seed=-1 is invalid"),
        ("/api/fleet", {**FLEET, "model": "llama-3-8"}, "model", "unknown model 'llama-3-8'"),
        ("/api/fleet", {**FLEET, "plan": "tp=3"}, "plan", "plan='tp=3' is invalid"),
        ("/api/fleet", {k: v for k, v in FLEET.items() if k != "tokens"}, "tokens", "missing required field"),
        ("/api/fleet", {**FLEET, "colour": "red"}, "scenario", "unknown field(s) 'colour'"),
        ("/api/serve", {**SERVE, "slo": {"ttft_p99_ms": "soon"}}, "slo.ttft_p99_ms", "ttft_p99_ms='soon'"),
        ("/api/serve", [1, 2], "scenario", "expected a mapping"),
        ("/api/sweep", {**SWEEP, "models": ["llama-3-8"]}, "models", "unknown model 'llama-3-8'"),
        ("/api/sweep", {**SWEEP, "gbs": [64, -1]}, "gbs", "gbs[1]: -1 is invalid"),
        ("/api/sweep", {**SWEEP, "objective": "speed"}, "objective", "objective='speed' is invalid"),
        ("/api/sweep", {k: v for k, v in SWEEP.items() if k != "gbs"}, "gbs", "missing required field 'gbs'"),
        ("/api/sweep", {**SWEEP, "clusters": [{"accelerator": "h100-sx", "count": 8}]}, "clusters", "h100-sx"),
        (
            "/api/sweep",
            {**SWEEP, "gbs": list(range(64, 64 + 8 * (MAX_SWEEP_CELLS // 2 + 1), 8))},
            "gbs",
            f"this page runs at most {MAX_SWEEP_CELLS}",
        ),
        # the page reads no files of the server: a model path is an unknown name, a request trace is refused
        ("/api/fleet", {**FLEET, "model": str(HF_CONFIG)}, "model", "unknown model"),
        ("/api/serve", {**SERVE, "models": f"{HF_CONFIG}:5"}, "models", "unknown model"),
        ("/api/sweep", {**SWEEP, "models": [str(HF_CONFIG)]}, "models", "unknown model"),
        (
            "/api/serve",
            {**SERVE, "simulate": {**SERVE["simulate"], "trace": str(HF_CONFIG)}},
            "simulate.trace",
            "reads no",
        ),
    ],
)
def test_bad_questions_are_one_line_beside_their_field(
    base_url: str, route: str, fields: Any, field: str, needle: str
) -> None:
    answer = _post(base_url, route, json=fields)
    assert answer.status_code == 400
    body = answer.json()
    assert body["field"] == field and needle in body["error"] and "\n" not in body["error"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_uploads(base_url: str, path: Path) -> None:
    answer = _post(base_url, "/api/scenario", files={"file": (path.name, path.read_bytes(), "application/yaml")})
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["kind"] == raw.get("kind", "fleet")
    assert body["scenario"] == {k: v for k, v in raw.items() if k not in ("kind", "version")}


def test_schema_route_is_the_loaders_schema(base_url: str) -> None:
    assert httpx.get(base_url + "/api/scenario.schema.json", timeout=TIMEOUT_S).json() == scenario_schema()


def test_the_fleet_route_has_its_own_time_budget() -> None:
    """A 500k-chip fleet question takes about half a minute: longer than a step's budget, within the fleet's; past
    it the answer is one line (never a silent timeout)."""
    assert FLEET_BUDGET_S >= 4 * REQUEST_BUDGET_S
    with served(create_app(fleet_budget_s=0.001)) as url:
        answer = _post(url, "/api/fleet", json=FLEET)
    _answered_past(answer, 0.001)


def test_the_sweep_route_has_its_own_time_budget() -> None:
    with served(create_app(sweep_budget_s=0.001)) as url:
        answer = _post(url, "/api/sweep", json=SWEEP)
    _answered_past(answer, 0.001)


def _answered_past(answer: httpx.Response, budget_s: float) -> None:
    """The one-line answer of a request past its route's budget: 503 when the work outlasts it, or 408 when a 1 ms
    budget already ran out while the body was read (a loaded machine: the same budget, spent earlier); either names
    the route's budget, not the default one."""
    error = answer.json()["error"]
    if answer.status_code == 408:
        assert error == f"request: the body did not arrive within {budget_s:g} s"
    else:
        assert answer.status_code == 503
        assert error.startswith(f"not answered within {budget_s:g} s")


@pytest.mark.parametrize(
    ("kind", "fields", "bad"), [("fleet", FLEET, "tokens"), ("serve", SERVE, "input_len"), ("sweep", SWEEP, "gbs")]
)
def test_a_tabs_download_is_a_scenario_file_the_cli_reads(
    base_url: str, tmp_path: Path, kind: str, fields: dict[str, Any], bad: str
) -> None:
    download = _post(base_url, "/api/scenario.yaml", json={"kind": kind, **fields})
    assert download.status_code == 200, download.text
    assert yaml.safe_load(download.text) == {"kind": kind, "version": 1, **fields}
    path = tmp_path / "scenario.yaml"
    path.write_bytes(download.content)
    assert load_scenario_file(path, expect=kind).kind == kind  # what rainier report / fleet scenario read it with
    uploaded = _post(base_url, "/api/scenario", content=download.content).json()
    assert uploaded == {"kind": kind, "scenario": fields}
    refused = _post(base_url, "/api/scenario.yaml", json={"kind": kind, **fields, bad: -1})
    assert refused.status_code == 400 and refused.json()["field"] == bad
