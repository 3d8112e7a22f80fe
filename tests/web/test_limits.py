"""The web app's defences: the CLI's bounded YAML loader for uploads, work off the event loop within a time budget,
body limits per route, Host and Origin checks, content types, and messages that quote at most 80 characters."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.types import Message

from rainier.web import create_app
from rainier.web.guard import HostPolicy, split_host
from rainier.web.limits import JSON_TYPES, MAX_FORM_BYTES, MAX_JSON_BYTES, MAX_UPLOAD_BYTES, Refused, Workers
from rainier.web.scenario import MAX_CONFIG_CHARS
from tests.web.conftest import cli_error, served

TIMEOUT_S = 60.0
GOOD = {"model": "llama-3-8b", "accelerator": "h100-sxm", "count": "64", "plan": "tp=8,gbs=256"}
SMALL_ANSWER_BYTES = 1_000  # an error answer: one line that quotes at most 80 characters of the input


def _port(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


def _upload(base_url: str, text: str | bytes) -> httpx.Response:
    return httpx.post(base_url + "/api/scenario", files={"file": ("scenario.yaml", text)}, timeout=TIMEOUT_S)


def _laughs(levels: int, indent: str = "") -> str:
    """ "Billion laughs": ``levels`` lists of nine aliases of the one before, 9**levels values once expanded."""
    lines = [f"{indent}a: &a [x,x,x,x,x,x,x,x,x]"]
    lines += [f"{indent}{chr(97 + n)}: &{chr(97 + n)} [{','.join([f'*{chr(96 + n)}'] * 9)}]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ the YAML loader
def test_duplicate_key_upload_is_the_cli_message(base_url: str, tmp_path: Path) -> None:
    text = "kind: training\nmodel: llama-3-8b\nmodel: llama-3-70b\n"
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    expected = cli_error(["report", str(path), "--out", str(tmp_path / "report.html")]).replace(str(path), "scenario")
    assert expected == "scenario: line 3: malformed YAML: duplicate key 'model'"
    answer = _upload(base_url, text)
    assert answer.status_code == 400
    assert answer.json() == {"error": expected, "field": "scenario"}


@pytest.mark.parametrize("under_config", [False, True])
def test_alias_bomb_is_refused_in_under_a_second_while_an_estimate_is_served(base_url: str, under_config: bool) -> None:
    bomb = "kind: training\nconfig:\n" + _laughs(9, "  ") if under_config else _laughs(9)
    assert len(bomb) < 360

    async def timed(request: Any) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        answer = await request
        return answer, time.monotonic() - started

    async def fire() -> list[tuple[httpx.Response, float]]:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S) as client:
            return await asyncio.gather(
                timed(client.post("/api/estimate", json=GOOD)),
                timed(client.post("/api/scenario", files={"file": ("bomb.yaml", bomb)})),
            )

    (estimate, estimate_s), (refused, refused_s) = asyncio.run(fire())
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "scenario: YAML has more than 1,000,000 values once its aliases are expanded",
        "field": "scenario",
    }
    assert refused_s < 1.0, f"the alias bomb took {refused_s:.2f} s"
    assert estimate.status_code == 200 and estimate.json()["estimate"]["step_time_s"] > 0
    assert estimate_s < TIMEOUT_S


def test_aliases_under_the_value_limit_cannot_blow_up_the_config(base_url: str) -> None:
    text = "kind: training\nconfig:\n" + _laughs(6, "  ")  # 9**6 strings: within the parser's 1M values, ~9 MB as JSON
    assert len(text) < 250
    started = time.monotonic()
    answer = _upload(base_url, text)
    assert time.monotonic() - started < 5.0
    assert answer.status_code == 400 and len(answer.content) < SMALL_ANSWER_BYTES
    assert answer.json()["field"] == "scenario"
    assert answer.json()["error"].startswith(f"config: more than {MAX_CONFIG_CHARS:,} characters as JSON")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("kind: training\nconfig: " + "[" * 100 + "]" * 100 + "\n", "scenario: YAML nested deeper than 64 levels"),
        ("kind: training\nconfig:\n" + "".join(f"{' ' * n}k:\n" for n in range(1, 100)), "nested deeper than 64"),
        ("? [a]\n: 1\n", "scenario: line 1: malformed YAML: a mapping key must be text or a number, not a list"),
    ],
)
def test_deep_or_strange_yaml_is_one_line(base_url: str, content: str, needle: str) -> None:
    answer = _upload(base_url, content)
    assert answer.status_code == 400
    assert answer.json()["field"] == "scenario" and needle in answer.json()["error"]


def test_deeply_nested_json_is_refused(base_url: str) -> None:
    for body in ("[" * 100_000 + "]" * 100_000, '{"config": ' * 50_000 + "1" + "}" * 50_000):
        answer = httpx.post(
            base_url + "/api/estimate", content=body, headers={"Content-Type": "application/json"}, timeout=TIMEOUT_S
        )
        assert answer.status_code == 400
        assert answer.json()["error"].startswith("request: the body is not JSON")


# ------------------------------------------------------------------------------------------------ messages
BIG = "x" * 1_000_000


@pytest.mark.parametrize(
    "fields",
    [
        {**GOOD, "model": BIG},
        {**GOOD, "plan": BIG},
        {**GOOD, "plan": f"tp=8,{BIG}=1"},
        {**GOOD, "accelerator": BIG},
        {**GOOD, "count": BIG},
        {**GOOD, BIG: "1"},
        {**GOOD, "kind": BIG},
        {**GOOD, "model": None, "config": json.dumps({"model_type": BIG})},
        {**GOOD, "plan": " ".join(["y"] * 400_000)},
    ],
)
def test_a_huge_input_comes_back_clipped(base_url: str, fields: dict[str, Any]) -> None:
    answer = httpx.post(base_url + "/api/estimate", json=fields, timeout=TIMEOUT_S)
    assert answer.status_code == 400
    assert len(answer.content) < SMALL_ANSWER_BYTES, answer.content[:200]
    error = answer.json()["error"]
    assert "x" * 81 not in error and "more characters" in error


def test_model_name_of_a_megabyte_is_quoted_in_80_characters(base_url: str) -> None:
    answer = httpx.post(base_url + "/api/estimate", json={**GOOD, "model": BIG}, timeout=TIMEOUT_S)
    assert answer.status_code == 400 and answer.json()["field"] == "model"
    assert answer.json()["error"].startswith(f"unknown model '{'x' * 79}... (999,922 more characters)")


# ------------------------------------------------------------------------------------------------ sizes
@pytest.mark.parametrize(
    ("path", "limit", "headers"),
    [
        ("/api/estimate", MAX_JSON_BYTES, {"Content-Type": "application/json"}),
        ("/api/report", MAX_JSON_BYTES, {"Content-Type": "application/json"}),
        ("/api/report", MAX_FORM_BYTES, {"Content-Type": "application/x-www-form-urlencoded"}),
        ("/api/scenario.yaml", MAX_JSON_BYTES, {"Content-Type": "application/json"}),
        ("/api/scenario", MAX_UPLOAD_BYTES, {"Content-Type": "application/yaml"}),
    ],
)
def test_a_body_past_its_route_limit_is_413(base_url: str, path: str, limit: int, headers: dict[str, str]) -> None:
    body = b" " * (limit + 1)
    html = headers["Content-Type"] != "application/json" and path == "/api/report"  # a form opening a new tab

    def error(answer: httpx.Response) -> str:
        return answer.text.partition("<p>error: ")[2].removesuffix("</p>") if html else str(answer.json()["error"])

    declared = httpx.post(base_url + path, content=body, headers=headers, timeout=TIMEOUT_S)
    assert declared.status_code == 413
    assert error(declared) == f"request: body too large ({limit + 1:,} bytes; at most {limit:,})"

    def chunks() -> Any:  # no Content-Length: the bytes received are counted
        for start in range(0, len(body), 2**16):
            yield body[start : start + 2**16]

    chunked = httpx.post(base_url + path, content=chunks(), headers=headers, timeout=TIMEOUT_S)
    assert chunked.status_code == 413
    assert error(chunked) == f"request: body too large (more than {limit:,} bytes)"
    fits = httpx.post(base_url + path, content=b" " * limit, headers=headers, timeout=TIMEOUT_S)
    assert fits.status_code != 413  # within the limit: read, and answered for what it says


def test_a_declared_length_past_the_limit_is_refused_before_the_body(base_url: str) -> None:
    port = _port(base_url)
    head = (
        f"POST /api/estimate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10**12}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as connection:
        connection.sendall(head.encode())
        answer = connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 ")


def _request(body: bytes) -> Request:
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-type", b"application/json")]}
    return Request(scope, receive)


def test_bodies_held_at_once_are_bounded() -> None:
    async def hold() -> None:
        workers = Workers(max_buffered_bytes=100)
        first, second = workers.budget(), workers.budget()
        assert await first.body(_request(b"x" * 80), limit=1_000, kinds=JSON_TYPES) == b"x" * 80
        with pytest.raises(Refused) as refused:
            await second.body(_request(b"y" * 40), limit=1_000, kinds=JSON_TYPES)
        assert refused.value.status == 503 and refused.value.message.startswith("server busy")
        first.close()
        second.close()
        assert workers.buffered_bytes == 0
        third = workers.budget()
        assert await third.body(_request(b"y" * 40), limit=1_000, kinds=JSON_TYPES) == b"y" * 40
        third.close()
        workers.close()

    asyncio.run(hold())


def test_an_upload_too_large_for_a_scenario_is_one_line(base_url: str) -> None:
    answer = _upload(base_url, "kind: training\n" + "#" * MAX_UPLOAD_BYTES)
    assert answer.status_code == 413 and "body too large" in answer.json()["error"]


# ------------------------------------------------------------------------------------------------ Host and Origin
@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:{port}", 200),
        ("localhost:{port}", 200),
        ("LOCALHOST:{port}", 200),
        ("[::1]:{port}", 200),
        ("evil.example:{port}", 403),  # a DNS name re-pointed at 127.0.0.1
        ("evil.example", 403),
        ("127.0.0.1:1", 403),  # not the port served
        ("127.0.0.1", 403),
        ("10.1.2.3:{port}", 403),
        ("localhost.:{port}", 403),
        ("127.0.0.1:{port}:9", 403),
        ("[::1:{port}", 403),
    ],
)
def test_host_must_name_this_server(base_url: str, host: str, status: int) -> None:
    headers = {"Host": host.format(port=_port(base_url))}
    for path in ("/", "/api/catalog"):
        answer = httpx.get(base_url + path, headers=headers, timeout=TIMEOUT_S)
        assert answer.status_code == status, (path, answer.text[:200])
    if status == 403:
        assert answer.json()["error"].startswith("forbidden: Host")
        posted = httpx.post(base_url + "/api/estimate", json=GOOD, headers=headers, timeout=TIMEOUT_S)
        assert posted.status_code == 403


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        (None, 200),  # not a browser
        ("http://127.0.0.1:{port}", 200),  # the app's own page
        ("http://evil.example", 403),
        ("http://evil.example:{port}", 403),
        ("http://localhost:{port}", 403),  # another origin, even if it is this machine
        ("https://127.0.0.1:{port}", 403),
        ("http://127.0.0.1:1", 403),
        ("null", 403),  # a sandboxed page or a file
    ],
)
def test_cross_origin_posts_are_refused(base_url: str, origin: str | None, status: int) -> None:
    headers = {} if origin is None else {"Origin": origin.format(port=_port(base_url))}
    answer = httpx.post(base_url + "/api/estimate", json=GOOD, headers=headers, timeout=TIMEOUT_S)
    assert answer.status_code == status, answer.text[:200]
    form = httpx.post(base_url + "/api/report", data={"scenario": json.dumps(GOOD)}, headers=headers, timeout=TIMEOUT_S)
    assert form.status_code == status
    upload = httpx.post(
        base_url + "/api/scenario", files={"file": ("s.yaml", b"kind: training\n")}, headers=headers, timeout=TIMEOUT_S
    )
    assert upload.status_code == status
    if status == 403:
        assert answer.json()["error"].startswith("forbidden: cross-origin request from")


def test_text_plain_posts_are_not_processed(base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[object] = []
    monkeypatch.setattr("rainier.web.app.run_scenario", ran.append)
    body = json.dumps(GOOD)
    for path in ("/api/estimate", "/api/report", "/api/scenario.yaml", "/api/scenario"):
        answer = httpx.post(base_url + path, content=body, headers={"Content-Type": "text/plain"}, timeout=TIMEOUT_S)
        assert answer.status_code == 415, path
        assert answer.json()["error"].startswith("request: Content-Type 'text/plain' is not accepted here")
    missing = httpx.post(base_url + "/api/estimate", content=body, timeout=TIMEOUT_S)
    assert missing.status_code == 415 and "no Content-Type" in missing.json()["error"]
    assert ran == []


def test_split_host() -> None:
    assert split_host("LocalHost:8765", 80) == ("localhost", 8765)
    assert split_host("127.0.0.1", 80) == ("127.0.0.1", 80)
    assert split_host("[::1]:9", 80) == ("::1", 9)
    assert split_host("[::1]", 443) == ("::1", 443)
    for bad in ("", ":80", "a:b", "a:0", "a:70000", "[::1", "[x]:1", "[::1]9", "::1", "a:1:2", "a: 1"):
        with pytest.raises(ValueError):
            split_host(bad, 80)


def test_host_policy_for_the_bound_address() -> None:
    local = HostPolicy.for_bind("127.0.0.1")
    assert local.accepts("localhost") and local.accepts("::1") and not local.accepts("10.0.0.5")
    named = HostPolicy.for_bind("192.168.1.7", allowed_hosts=["Box.Lan"])
    assert named.accepts("192.168.1.7") and named.accepts("box.lan") and not named.accepts("192.168.1.8")
    everywhere = HostPolicy.for_bind("0.0.0.0")
    assert everywhere.accepts(socket.gethostname().lower())
    assert everywhere.accepts("192.168.1.8") and everywhere.accepts("fe80::1")  # addresses cannot be rebound
    assert not everywhere.accepts("evil.example")
    assert HostPolicy.for_bind("[::1]").accepts("::1")


def test_allowed_hosts_are_configurable() -> None:
    with served(create_app(allowed_hosts=["rainier.test"])) as url:
        headers = {"Host": f"rainier.test:{_port(url)}"}
        assert httpx.get(url + "/api/catalog", headers=headers, timeout=TIMEOUT_S).status_code == 200
        headers = {"Host": f"other.test:{_port(url)}"}
        assert httpx.get(url + "/api/catalog", headers=headers, timeout=TIMEOUT_S).status_code == 403


# ------------------------------------------------------------------------------------------------ time
def _slow(release: threading.Event) -> Any:
    def run(*args: object) -> None:
        release.wait(10)
        raise ValueError("plan: released")

    return run


def test_a_slow_request_does_not_stall_the_others(base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr("rainier.web.app.run_scenario", _slow(release))

    async def fire() -> tuple[httpx.Response, list[float]]:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S) as client:
            slow = asyncio.ensure_future(client.post("/api/estimate", json=GOOD))
            await asyncio.sleep(0.2)
            waits = []
            for path in ("/", "/api/catalog", "/api/scenario.yaml"):
                started = time.monotonic()
                answer = await client.get(path, params=GOOD if path.endswith("yaml") else None)
                assert answer.status_code == 200, answer.text
                waits.append(time.monotonic() - started)
            assert not slow.done()
            release.set()
            return await slow, waits

    slow, waits = asyncio.run(fire())
    assert max(waits) < 1.0, waits
    assert slow.status_code == 400 and slow.json()["error"] == "plan: released"


def test_the_time_budget_answers_503(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr("rainier.web.app.run_scenario", _slow(release))

    async def fire(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
            return await asyncio.gather(*(client.post("/api/estimate", json=GOOD) for _ in range(2)))

    try:
        with served(create_app(request_budget_s=0.5, num_workers=1)) as url:
            started = time.monotonic()
            answers = asyncio.run(fire(url))
            elapsed = time.monotonic() - started
            release.set()
    finally:
        release.set()
    assert elapsed < 5.0
    assert [a.status_code for a in answers] == [503, 503]
    assert sorted(a.json()["error"] for a in answers) == [
        "not answered within 0.5 s (the time one request may take); try a smaller search",
        "server busy: no worker free within 0.5 s; try again later",
    ]
