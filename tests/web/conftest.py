"""A real uvicorn server of the web app on a free local port, shared by the HTTP and the browser tests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from starlette.types import ASGIApp
from typer.testing import CliRunner

from rainier.cli import app
from rainier.web import create_app
from rainier.web.evaluate import SEARCH_TOP

STARTUP_TIMEOUT_S = 15.0
runner = CliRunner()


@contextmanager
def served(application: ASGIApp) -> Iterator[str]:
    """``http://127.0.0.1:PORT``: ``application`` served by uvicorn in a background thread, on a socket bound here."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(application, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="session")
def base_url() -> Iterator[str]:
    """The app as ``rainier web`` serves it by default (bound to 127.0.0.1)."""
    with served(create_app()) as url:
        yield url


def cli_json(args: list[str]) -> dict[str, Any]:
    """The JSON document the CLI prints for ``args`` (``--json`` added)."""
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def cli_error(args: list[str]) -> str:
    """The one line the CLI prints on stderr for bad input (without its ``error:`` prefix)."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0].removeprefix("error: ")


def cli_args(fields: dict[str, Any]) -> list[str]:
    """The ``rainier train estimate|search`` arguments of a web form's fields (catalog models)."""
    search = str(fields.get("plan", "")).strip().lower() == "search"
    args = ["train", "search" if search else "estimate", "--model", str(fields["model"])]
    for name in ("cluster", "accelerator", "count", "seq_len"):
        if name in fields:
            args += [f"--{name.replace('_', '-')}", str(fields[name])]
    if search:
        args += ["--gbs", str(fields["gbs"]), "--top", str(SEARCH_TOP)]
    elif "plan" in fields:
        args += ["--plan", str(fields["plan"])]
    return args


def plan_text(plan: dict[str, Any]) -> str:
    """A plan's JSON as ``Plan.describe`` writes it (what the page shows in ``#plan``)."""
    from rainier.parallel.plan import describe_plan_dict

    return describe_plan_dict(plan)
