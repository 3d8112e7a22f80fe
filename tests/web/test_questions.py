"""The web app's fleet and serving questions over HTTP: the CLI's JSON, one-line errors beside their field, every
example uploads, and the fleet route's own time budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rainier.api.scenario import load_scenario_file, scenario_schema
from rainier.web import create_app
from rainier.web.evaluate import finite_json
from rainier.web.limits import FLEET_BUDGET_S, REQUEST_BUDGET_S
from tests.web.conftest import cli_json, served

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
        # the page reads no files of the server: a model path is an unknown name, a request trace is refused
        ("/api/fleet", {**FLEET, "model": str(HF_CONFIG)}, "model", "unknown model"),
        ("/api/serve", {**SERVE, "models": f"{HF_CONFIG}:5"}, "models", "unknown model"),
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
    if raw.get("kind") == "sweep":  # read by the loader, and answered with how to run it
        assert answer.status_code == 400 and "rainier sweep FILE" in answer.json()["error"]
        return
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
    assert answer.status_code == 503
    assert answer.json()["error"].startswith("not answered within 0.001 s")


@pytest.mark.parametrize(("kind", "fields", "bad"), [("fleet", FLEET, "tokens"), ("serve", SERVE, "input_len")])
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
