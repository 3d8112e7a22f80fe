"""The web app over HTTP: catalog, estimates and searches equal to the CLI's JSON, one-line errors with their
field, scenario YAML round trips, the report page, and 100 concurrent requests against a real server."""

from __future__ import annotations

import asyncio
import json
import math
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import rainier.cli.web  # noqa: F401  # registers `rainier web` (until rainier.cli imports it itself)
from rainier.cli import app
from rainier.web.evaluate import finite_json
from tests.web.conftest import cli_args, cli_error, cli_json, plan_text, runner

HF_CONFIG = Path(__file__).resolve().parents[1] / "workload" / "data" / "Meta-Llama-3-70B.json"
H100_64 = {"model": "llama-3-8b", "accelerator": "h100-sxm", "count": "64"}
H100_8 = {"accelerator": "h100-sxm", "count": "8", "plan": "tp=8,gbs=8"}
TIMEOUT_S = 60.0


def _post(base_url: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(base_url + path, timeout=TIMEOUT_S, **kwargs)


def _without_timing(search: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in search.items() if k not in ("elapsed_s", "plans_per_s")}


def test_page_catalog_and_assets(base_url: str) -> None:
    page = httpx.get(base_url + "/", timeout=TIMEOUT_S)
    assert page.status_code == 200
    for element in ("model-input", "plan-input", "step-time", "mfu", "tokens-per-s", "memory", 'id="plan"'):
        assert element in page.text
    assert not re.search(r"<script[^>]*\bsrc=['\"]?(https?:)?//", page.text)  # no CDN: works offline
    assert httpx.get(base_url + "/static/app.js", timeout=TIMEOUT_S).status_code == 200
    plotly = httpx.get(base_url + "/vendor/plotly.min.js", timeout=TIMEOUT_S)
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    catalog = httpx.get(base_url + "/api/catalog", timeout=TIMEOUT_S).json()
    assert {"llama-3-8b", "llama-3-70b"} <= {m["id"] for m in catalog["models"]}
    assert {"trn2", "h100-sxm"} <= {a["id"] for a in catalog["accelerators"]}
    assert "rainier-trn2-500k" in {c["id"] for c in catalog["clusters"]}


@pytest.mark.parametrize(
    "fields",
    [
        {**H100_64, "plan": "tp=8,pp=1,mbs=1,gbs=256"},
        {"model": "llama-3-70b", "accelerator": "trn2", "count": "128", "plan": "tp=8,pp=4,gbs=512", "seq_len": "4096"},
        {"model": "llama-3-70b", "cluster": "rainier-trn2-500k", "plan": "tp=4,pp=8,gbs=15624"},
    ],
)
def test_estimate_equals_cli_json(base_url: str, fields: dict[str, str]) -> None:
    answer = _post(base_url, "/api/estimate", json=fields)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = cli_json(cli_args(fields))
    assert body["mode"] == "estimate" and body["search"] is None
    assert body["estimate"] == finite_json(expected)
    assert body["plan_text"] == plan_text(expected["plan"])
    breakdown = body["figures"]["breakdown"]
    assert breakdown["layout"]["yaxis"]["title"]["text"] and breakdown["data"]
    assert math.isclose(sum(bar["y"][0] for bar in breakdown["data"]), expected["step_time_s"], rel_tol=1e-9)
    losses = {k: v for k, v in expected["breakdown_s"].items() if k != "compute"}
    share = max(losses.values()) / expected["step_time_s"]  # the why line names the largest loss's share
    assert body["why"].startswith(f"{share:.0%} " if share >= 0.1 else "compute-bound: ")


def test_search_equals_cli_json(base_url: str) -> None:
    fields = {**H100_64, "plan": "search", "gbs": "64"}
    answer = _post(base_url, "/api/estimate", json=fields)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = finite_json(cli_json(cli_args(fields)))
    assert body["mode"] == "search"
    assert _without_timing(body["search"]) == _without_timing(expected)
    best = {k: v for k, v in expected["top"][0].items() if k not in ("objective", "plan_text", "gbs")}
    assert body["estimate"] == best


def test_pasted_config_equals_cli_with_the_file(base_url: str, tmp_path: Path) -> None:
    text = HF_CONFIG.read_text()
    folder = tmp_path / "pasted-config"  # a pasted config without _name_or_path is named so
    folder.mkdir()
    (folder / "config.json").write_text(text)
    fields = {"config": text, "accelerator": "h100-sxm", "count": "64", "plan": "tp=8,pp=2,gbs=256"}
    answer = _post(base_url, "/api/estimate", json=fields)
    assert answer.status_code == 200, answer.text
    args = ["train", "estimate", "--model", str(folder / "config.json"), "--accelerator", "h100-sxm", "--count", "64"]
    expected = cli_json([*args, "--plan", "tp=8,pp=2,gbs=256"])
    assert answer.json()["estimate"] == finite_json(expected)
    assert answer.json()["estimate"]["model"] == "pasted-config"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({**H100_64, "model": "llama-3-8", "plan": "tp=8,gbs=64"}, "model"),
        ({**H100_64, "accelerator": "h100", "plan": "tp=8,gbs=64"}, "accelerator"),
        ({**H100_64, "count": "0", "plan": "tp=8,gbs=64"}, "count"),
        ({"model": "llama-3-8b", "cluster": "rainier-trn9", "plan": "tp=8,gbs=64"}, "cluster"),
        ({**H100_64, "plan": "tp=3,gbs=64"}, "plan"),
        ({**H100_64, "plan": "tp=8,foo=1"}, "plan"),
        ({**H100_64, "plan": "tp=x,gbs=64"}, "plan"),
        ({**H100_64, "plan": "tp=8,mbs=64,gbs=64"}, "plan"),
        ({**H100_64, "plan": "search", "gbs": "-3"}, "gbs"),
        ({"model": "llama-3-70b", "cluster": "rainier-trn3-144", "plan": "search", "gbs": "4096"}, "plan"),
    ],
)
def test_bad_input_is_the_cli_message_beside_its_field(base_url: str, fields: dict[str, str], field: str) -> None:
    answer = _post(base_url, "/api/estimate", json=fields)
    assert answer.status_code == 400
    assert answer.json() == {"error": cli_error(cli_args(fields)), "field": field}


@pytest.mark.parametrize(
    ("fields", "field", "needle"),
    [
        (
            {**H100_64, "plan": "tp=8,gbs=64", "seq_len": "0"},
            "seq_len",
            "seq-len=0 is invalid: a positive number of tokens",
        ),
        ({**H100_64, "count": "sixty", "plan": "tp=8,gbs=64"}, "count", "count='sixty' is invalid: a whole number"),
        ({**H100_64, "plan": "search"}, "gbs", "gbs: give the global batch"),
        ({**H100_64, "plan": "tp=8", "gbs": "64"}, "gbs", "gbs: used with plan search only"),
        (H100_64, "plan", "plan: give a plan"),
        ({"model": "llama-3-8b", "plan": "tp=8,gbs=64"}, "accelerator", "missing cluster"),
        (H100_8, "model", "model: choose a catalog model"),
        ({**H100_8, "model": "/etc/hostname"}, "model", "unknown model"),  # no server paths from the form
        ({**H100_8, "config": "{bad"}, "config", "config.json: not valid JSON"),
        ({**H100_8, "config": '{"model_type": "gpt9"}'}, "config", "config.json: model_type='gpt9' is not supported"),
        ({**H100_64, "plan": "tp=8,gbs=64", "colour": "red"}, None, "request: unknown key 'colour'"),
    ],
)
def test_form_only_errors(base_url: str, fields: dict[str, str], field: str | None, needle: str) -> None:
    answer = _post(base_url, "/api/estimate", json=fields)
    assert answer.status_code == 400
    body = answer.json()
    assert body["field"] == field and needle in body["error"] and "\n" not in body["error"]
    assert "/tmp" not in body["error"] and "Traceback" not in body["error"]


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b'{"count": {"a": 1}}'])
def test_malformed_request_body(base_url: str, content: bytes) -> None:
    answer = _post(base_url, "/api/estimate", content=content, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert "\n" not in answer.json()["error"]


def test_unexpected_errors_are_one_line_500s(base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("boom\nwith a second line")

    monkeypatch.setattr("rainier.web.app.run_scenario", broken)
    answer = _post(base_url, "/api/estimate", json={**H100_64, "plan": "tp=8"})
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error (RuntimeError); the server log has the details", "field": None}


def test_scenario_yaml_round_trip(base_url: str) -> None:
    fields = {"model": "llama-3-70b", "accelerator": "trn2", "count": "128", "plan": "search", "gbs": "512"}
    download = _post(base_url, "/api/scenario.yaml", json=fields)
    assert download.status_code == 200
    assert 'filename="scenario.yaml"' in download.headers["content-disposition"]
    document = yaml.safe_load(download.text)
    assert document == {"kind": "training", "version": 1, **fields, "count": 128, "gbs": 512}
    assert httpx.get(base_url + "/api/scenario.yaml", params=fields, timeout=TIMEOUT_S).text == download.text
    upload = _post(base_url, "/api/scenario", files={"file": ("scenario.yaml", download.content, "application/yaml")})
    assert upload.status_code == 200
    uploaded = upload.json()["scenario"]
    assert uploaded == {**fields, "count": 128, "gbs": 512}
    again = _post(base_url, "/api/estimate", json=uploaded).json()
    first = _post(base_url, "/api/estimate", json=fields).json()
    assert again["estimate"] == first["estimate"]


def test_pasted_config_round_trips_as_a_mapping(base_url: str) -> None:
    text = HF_CONFIG.read_text()
    fields = {"config": text, "cluster": "rainier-trn2-500k", "plan": "tp=4,pp=8,gbs=15624"}
    download = _post(base_url, "/api/scenario.yaml", json=fields)
    assert yaml.safe_load(download.text)["config"] == json.loads(text)
    uploaded = _post(base_url, "/api/scenario", content=download.content).json()["scenario"]
    assert json.loads(uploaded["config"]) == json.loads(text)
    assert _post(base_url, "/api/estimate", json=uploaded).json()["estimate"]["model"] == "pasted-config"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"kind: training\nmodel: [llama", "scenario: line 3: malformed YAML: "),
        (b"- a list\n", "scenario: expected a mapping"),
        (b"", "scenario: empty file"),
        (b"\xff\xfe\x00", "scenario: not UTF-8 text"),
        (b"kind: fleet\n", "scenario: missing required field 'model'"),  # a fleet upload is read, and checked
        (b"kind: training\nmodel: llama-3-8b\ncolour: red\n", "scenario: unknown key 'colour'"),
        (b"kind: training\ncount: many\n", "count='many' is invalid: a whole number"),
        (b"model: llama-3-8b\ncolour: red\n", "unknown field(s) 'colour'"),  # no kind: a fleet scenario
    ],
)
def test_malformed_upload_is_one_line(base_url: str, content: bytes, needle: str) -> None:
    answer = _post(base_url, "/api/scenario", files={"file": ("scenario.yaml", content)})
    assert answer.status_code == 400
    body = answer.json()
    assert body["field"] == "scenario" and needle in body["error"] and "\n" not in body["error"]


def test_report_page_shows_the_same_estimate(base_url: str) -> None:
    fields = {**H100_64, "plan": "tp=8,pp=1,mbs=1,gbs=256"}
    page = _post(base_url, "/api/report", json=fields)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    match = re.search(r"<script type='application/json' id='rainier-data'>(.*?)</script>", page.text, flags=re.S)
    assert match is not None
    assert json.loads(match.group(1))["estimate"] == finite_json(cli_json(cli_args(fields)))
    form = _post(base_url, "/api/report", data={"scenario": json.dumps(fields)})
    assert form.status_code == 200 and "Plotly.newPlot" in form.text
    bad = _post(base_url, "/api/report", data={"scenario": json.dumps({**fields, "plan": "tp=3"})})
    assert bad.status_code == 400 and "plan=&#x27;tp=3&#x27; is invalid" in bad.text and "Traceback" not in bad.text


def test_100_concurrent_requests(base_url: str) -> None:
    good = {**H100_64, "plan": "tp=8,gbs=256"}
    bad = {**H100_64, "plan": "tp=3"}
    search = {**H100_64, "plan": "search", "gbs": "128"}
    requests = [good] * 70 + [search] * 15 + [bad] * 15

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(requests))
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S, limits=limits) as client:
            return await asyncio.gather(*(client.post("/api/estimate", json=body) for body in requests))

    started = time.monotonic()
    answers = asyncio.run(fire())
    elapsed = time.monotonic() - started
    assert [a.status_code for a in answers] == [200] * 85 + [400] * 15
    steps = {a.json()["estimate"]["step_time_s"] for a in answers[:70]}
    assert len(steps) == 1  # every concurrent answer is the same number
    assert all(a.json()["field"] == "plan" for a in answers[85:])
    assert httpx.get(base_url + "/api/catalog", timeout=TIMEOUT_S).status_code == 200  # still up
    assert elapsed < TIMEOUT_S


# ------------------------------------------------------------------------------------------------ the command
def test_web_command_is_registered() -> None:
    result = runner.invoke(app, ["web", "--help"])
    assert result.exit_code == 0
    assert "--port" in result.output and "--host" in result.output


def test_web_command_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = cli_error(["web", "--port", str(port)])
    assert message.startswith(f"127.0.0.1:{port}: cannot listen")


def test_web_command_serves_until_interrupted() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = "import sys, rainier.cli.web; from rainier.cli import main; sys.argv[0] = 'rainier'; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "web", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/catalog", timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "rainier web did not start"
                time.sleep(0.1)
        assert answer.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)  # as Ctrl-C
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in err and "Traceback" not in err
