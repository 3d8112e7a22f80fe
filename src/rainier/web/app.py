"""The local web app behind ``rainier web``: one page, a small JSON API, the same numbers as the CLI.

Routes:

- ``GET /``: the page (``static/index.html`` and ``static/app.js``: vanilla JS, no CDN, no build step);
  ``GET /vendor/plotly.min.js``: plotly.js from the installed plotly package, so the plots work offline.
- ``GET /api/catalog``: models, clusters and accelerators for the form.
- ``POST /api/estimate``: the form's fields as JSON -> the CLI's JSON (``rainier train estimate --json``, or the
  best plan of ``rainier train search --json``), the plan as text and the report's two figures.
- ``POST /api/report``: the same inputs -> the HTML report (``--report PATH``); JSON, or a form field
  ``scenario`` holding that JSON (the page submits it to a new tab).
- ``GET|POST /api/scenario.yaml``: the fields (query string or JSON) as a YAML scenario file to download;
  ``POST /api/scenario``: an uploaded YAML file (multipart ``file``, or the raw text) -> the fields.

Bad input is HTTP 400 with ``{"error": one line, "field": the form field or null}``; anything unexpected is 500
with one line (the traceback goes to the server's log only). The heavy work runs in worker threads, so the
server keeps answering under many concurrent requests.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from rainier.api.report import report_of
from rainier.errors import InputError
from rainier.web.evaluate import SEARCH_TOP, finite_json, response_document, run_scenario
from rainier.web.scenario import (
    MAX_SCENARIO_BYTES,
    FieldError,
    TrainingScenario,
    scenario_from_mapping,
    scenario_from_yaml,
)

STATIC = Path(__file__).parent / "static"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
SCENARIO_FILE = "scenario.yaml"
_log = logging.getLogger("rainier.web")


def create_app() -> FastAPI:
    """The FastAPI application (no interactive API docs: they would load scripts from a CDN)."""
    app = FastAPI(title="rainier", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> Response:
        return HTMLResponse(_static_text("index.html"), headers={"Cache-Control": "no-cache"})

    @app.get("/vendor/plotly.min.js")
    async def plotly_js() -> Response:
        return Response(_plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/api/catalog")
    async def catalog() -> Response:
        async def work() -> Response:
            return _json(await run_in_threadpool(catalog_document))

        return await _answer(work)

    @app.post("/api/estimate")
    async def estimate(request: Request) -> Response:
        async def work() -> Response:
            scenario = scenario_from_mapping(await _json_body(request), where="request")
            outcome = await run_in_threadpool(run_scenario, scenario)
            return _json(await run_in_threadpool(response_document, outcome))

        return await _answer(work)

    @app.post("/api/report")
    async def report(request: Request) -> Response:
        form_post = _is_form(request)

        async def work() -> Response:
            raw = await _form_scenario(request) if form_post else await _json_body(request)
            outcome = await run_in_threadpool(run_scenario, scenario_from_mapping(raw, where="request"))
            page = await run_in_threadpool(lambda: report_of(outcome.result).render())
            return HTMLResponse(page)

        return await _answer(work, html=form_post)

    @app.get("/api/scenario.yaml")
    async def scenario_download_get(request: Request) -> Response:
        async def work() -> Response:
            return _yaml_file(scenario_from_mapping(dict(request.query_params), where="request"))

        return await _answer(work)

    @app.post("/api/scenario.yaml")
    async def scenario_download_post(request: Request) -> Response:
        async def work() -> Response:
            raw = await _form_scenario(request) if _is_form(request) else await _json_body(request)
            return _yaml_file(scenario_from_mapping(raw, where="request"))

        return await _answer(work)

    @app.post("/api/scenario")
    async def scenario_upload(request: Request) -> Response:
        async def work() -> Response:
            scenario = scenario_from_yaml(await _uploaded(request))
            return _json({"scenario": scenario.to_fields()})

        return await _answer(work)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def catalog_document() -> dict[str, Any]:
    """The lists the form offers (names the API accepts)."""
    from rainier import hardware
    from rainier.workload import catalog_model_rows

    return {
        "models": [{"id": row["id"], "title": row["title"]} for row in catalog_model_rows()],
        "clusters": [
            {"id": c.id, "name": c.name, "devices": c.num_devices, "accelerator": c.accelerator.id}
            for c in hardware.clusters()
        ],
        "accelerators": [{"id": a.id, "name": a.name} for a in hardware.accelerators()],
        "search_top": SEARCH_TOP,
    }


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the app with uvicorn until interrupted; a port that cannot be listened on is an InputError."""
    import uvicorn

    check_listen(host, port)
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")


def check_listen(host: str, port: int) -> None:
    """Fail early, in one line, where ``host:port`` cannot be listened on (taken, privileged, no such address)."""
    if not 0 < port < 65536:
        raise InputError(f"port={port!r} is invalid: 1 to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(f"host={host!r} is invalid: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise InputError(f"{host}:{port}: cannot listen ({exc.strerror or exc})") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------------------------------------ helpers
async def _answer(work: Callable[[], Awaitable[Response]], *, html: bool = False) -> Response:
    """Run a route's work; user errors become 400 with one line and the field, anything else 500."""
    try:
        return await work()
    except FieldError as exc:
        return _error(400, _one_line(str(exc)), exc.field, html=html)
    except ValueError as exc:  # InputError, and any config validation error: the API's one-line messages
        return _error(400, _one_line(str(exc)), None, html=html)
    except Exception as exc:  # never a traceback to the client
        _log.exception("unexpected error")
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details", None, html=html)


def _error(status: int, message: str, field: str | None, *, html: bool) -> Response:
    if html:
        from html import escape

        page = f"<!DOCTYPE html><meta charset='utf-8'><title>rainier: error</title><p>error: {escape(message)}</p>"
        return HTMLResponse(page, status_code=status)
    return JSONResponse({"error": message, "field": field}, status_code=status)


def _one_line(message: str) -> str:
    return " ".join(message.split()) or "error"


def _json(document: Any) -> Response:
    body = json.dumps(finite_json(document), allow_nan=False, default=str, separators=(",", ":"))
    return Response(body, media_type="application/json")


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_SCENARIO_BYTES:
        raise FieldError(f"request: body too large ({len(body)} bytes; at most {MAX_SCENARIO_BYTES})", None)
    return body


async def _json_body(request: Request) -> Any:
    body = await _body(request)
    try:
        return json.loads(body) if body.strip() else {}
    except (ValueError, RecursionError):
        raise FieldError("request: the body is not JSON (expected the form's fields as a JSON object)", None) from None


async def _form_scenario(request: Request) -> Any:
    """The JSON text of a form post's ``scenario`` field (the page's report and download buttons)."""
    await _body(request)
    form = await request.form()
    text = form.get("scenario")
    if not isinstance(text, str):
        raise FieldError("request: expected a form field 'scenario' holding the form's fields as JSON", None)
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise FieldError("request: the form field 'scenario' is not JSON", None) from None


async def _uploaded(request: Request) -> bytes | str:
    """An uploaded scenario: a multipart ``file`` (or ``text``) field, else the raw body."""
    body = await _body(request)
    if not _is_form(request):
        return body
    form = await request.form()
    item = form.get("file", form.get("text"))
    if item is None:
        raise FieldError("scenario: expected a file field 'file' (or a text field 'text')", "scenario")
    if isinstance(item, str):
        return item
    return await item.read()


def _yaml_file(scenario: TrainingScenario) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{SCENARIO_FILE}"'}
    return Response(scenario.to_yaml(), media_type="application/yaml", headers=headers)


@functools.cache
def _static_text(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


@functools.cache
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())
