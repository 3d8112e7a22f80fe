"""The local web app behind ``rainier web``: one page, a small JSON API, the same numbers as the CLI.

Routes:

- ``GET /``: the page (``static/index.html`` and ``static/app.js``: vanilla JS, no CDN, no build step);
  ``GET /vendor/plotly.min.js``: plotly.js from the installed plotly package, so the plots work offline.
- ``GET /api/catalog``: models, clusters and accelerators for the form.
- ``POST /api/estimate``: the form's fields as JSON -> the CLI's JSON (``rainier train estimate --json``, or the
  best plan of ``rainier train search --json``), the plan as text and the report's two figures.
- ``POST /api/report``: the same inputs -> the HTML report (``--report PATH``); JSON, or a form field
  ``scenario`` holding that JSON (the page submits it to a new tab).
- ``POST /api/fleet``: a ``kind: fleet`` scenario's keys as JSON -> ``{"kind": "fleet", "result": the JSON of
  rainier fleet scenario}``: the run, its goodput under failures and the comparison (:mod:`rainier.web.questions`;
  a longer time budget, ``FLEET_BUDGET_S``).
- ``POST /api/serve``: a ``kind: serve`` scenario's keys as JSON -> ``{"kind": "serve", "result": the sized fleets
  and the simulation}`` (``rainier report FILE --json`` of the same file, without the report's path).
- ``POST /api/sweep``: a ``kind: sweep`` scenario's keys as JSON -> ``{"kind": "sweep", "result": a row per cell}``:
  the rows ``rainier sweep FILE --db`` stores (``rainier results export``), run in memory, no database file; at
  most ``MAX_SWEEP_CELLS`` cells, within ``SWEEP_BUDGET_S``.
- ``GET|POST /api/scenario.yaml``: the fields (query string or JSON; a fleet, serving or sweep tab's with its
  ``kind``) as a YAML scenario file to download;
  ``POST /api/scenario``: an uploaded YAML file of any kind (multipart ``file``, or the raw text) -> its ``kind``
  and its fields, read by the one scenario loader (:mod:`rainier.api.scenario`).
- ``GET /api/scenario.schema.json``: the JSON Schema of scenario files, from which the page builds its fleet and
  serving forms (``docs/schemas/scenario.schema.json``).

Bad input is HTTP 400 with ``{"error": one line, "field": the form field or null}``; anything unexpected is 500
with one line (the traceback goes to the server's log only). Every message quotes at most 80 characters of the
input. Requests the app refuses are one line too: 403 for a Host that is not this server or a cross-origin post
(:mod:`rainier.web.guard`), 413 for a body past its route's limit, 415 for a content type the route does not
take (``text/plain`` nowhere), 503 when the request's time budget runs out (:mod:`rainier.web.limits`).

Parsing (JSON, YAML through the CLI's own bounded loader) and evaluation run in a few worker threads, never on
the event loop, so a slow search or a hostile upload never stalls the other clients.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from rainier.api.report import report_of
from rainier.errors import MAX_QUOTE, InputError, clip
from rainier.web.evaluate import SEARCH_TOP, finite_json, response_document, run_scenario
from rainier.web.guard import HostPolicy, LocalOnly
from rainier.web.limits import (
    FLEET_BUDGET_S,
    FORM_TYPES,
    JSON_TYPES,
    MAX_FORM_BYTES,
    MAX_JSON_BYTES,
    MAX_SWEEP_CELLS,
    MAX_UPLOAD_BYTES,
    NUM_WORKERS,
    REQUEST_BUDGET_S,
    SERVE_BUDGET_S,
    SWEEP_BUDGET_S,
    UPLOAD_TYPES,
    Refused,
    RequestBudget,
    Workers,
    media_type,
)
from rainier.web.questions import fleet_answer, question_yaml, serve_answer, sweep_answer, upload_answer
from rainier.web.scenario import FieldError, scenario_from_mapping

STATIC = Path(__file__).parent / "static"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
SCENARIO_FILE = "scenario.yaml"
MAX_CONNECTIONS = 256  # uvicorn answers 503 past this many open connections (each holds at most one body)
# Backstops for messages that quote a user's input whole: a word longer than a quote clipped by rainier.errors
# (80 characters, its quotes and "...") is clipped to 80, and a message to MAX_MESSAGE_CHARS.
MAX_WORD_CHARS = MAX_QUOTE + 8
MAX_MESSAGE_CHARS = 400
_log = logging.getLogger("rainier.web")
Work = Callable[[RequestBudget], Awaitable[Response]]


def create_app(
    *,
    bind_host: str = DEFAULT_HOST,
    allowed_hosts: Iterable[str] = (),
    request_budget_s: float = REQUEST_BUDGET_S,
    num_workers: int = NUM_WORKERS,
    fleet_budget_s: float = FLEET_BUDGET_S,
    serve_budget_s: float = SERVE_BUDGET_S,
    sweep_budget_s: float = SWEEP_BUDGET_S,
) -> FastAPI:
    """The FastAPI application (no interactive API docs: they would load scripts from a CDN).

    ``bind_host`` is the address served, ``allowed_hosts`` more names it is reached by (``Host`` must name one
    of them or localhost; :mod:`rainier.web.guard`); ``request_budget_s`` and ``num_workers`` bound each
    request's time and the heavy work done at once (:mod:`rainier.web.limits`).
    """
    workers = Workers(num_workers=num_workers, budget_s=request_budget_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        workers.close()

    app = FastAPI(title="rainier", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(LocalOnly, policy=HostPolicy.for_bind(bind_host, allowed_hosts))

    async def answer(work: Work, *, html: bool = False, budget_s: float | None = None) -> Response:
        return await _answer(workers.budget(budget_s), work, html=html)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> Response:
        return HTMLResponse(_static_text("index.html"), headers={"Cache-Control": "no-cache"})

    @app.get("/vendor/plotly.min.js")
    async def plotly_js() -> Response:
        return Response(_plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/api/catalog")
    async def catalog() -> Response:
        async def work(budget: RequestBudget) -> Response:
            return _json_response(await budget.run(_catalog_json))

        return await answer(work)

    @app.post("/api/estimate")
    async def estimate(request: Request) -> Response:
        async def work(budget: RequestBudget) -> Response:
            body = await budget.body(request, limit=MAX_JSON_BYTES, kinds=JSON_TYPES)
            return _json_response(await budget.run(_estimate_json, body))

        return await answer(work)

    def question_route(path: str, run: Callable[[object], dict[str, Any]], budget_s: float) -> None:
        """``POST path``: a question's JSON fields in, ``run``'s answer out as JSON, within its own budget."""

        async def route(request: Request) -> Response:
            async def work(budget: RequestBudget) -> Response:
                body = await budget.body(request, limit=MAX_JSON_BYTES, kinds=JSON_TYPES)
                return _json_response(await budget.run(_question_json, run, body))

            return await answer(work, budget_s=budget_s)

        app.post(path)(route)

    question_route("/api/fleet", fleet_answer, fleet_budget_s)
    question_route("/api/serve", serve_answer, serve_budget_s)
    question_route("/api/sweep", sweep_answer, sweep_budget_s)

    @app.get("/api/scenario.schema.json")
    async def scenario_schema() -> Response:
        async def work(budget: RequestBudget) -> Response:
            return _json_response(await budget.run(_schema_json))

        return await answer(work)

    @app.post("/api/report")
    async def report(request: Request) -> Response:
        async def work(budget: RequestBudget) -> Response:
            return HTMLResponse(await budget.run(_report_html, await _scenario_text(request, budget)))

        return await answer(work, html=_is_form(request))

    @app.get("/api/scenario.yaml")
    async def scenario_download_get(request: Request) -> Response:
        async def work(budget: RequestBudget) -> Response:
            return _yaml_file(await budget.run(_yaml_of_fields, dict(request.query_params)))

        return await answer(work)

    @app.post("/api/scenario.yaml")
    async def scenario_download_post(request: Request) -> Response:
        async def work(budget: RequestBudget) -> Response:
            return _yaml_file(await budget.run(_yaml_of_text, await _scenario_text(request, budget)))

        return await answer(work)

    @app.post("/api/scenario")
    async def scenario_upload(request: Request) -> Response:
        async def work(budget: RequestBudget) -> Response:
            return _json_response(await budget.run(_upload_json, await _uploaded(request, budget)))

        return await answer(work)

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
        "max_sweep_cells": MAX_SWEEP_CELLS,
    }


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the app with uvicorn until interrupted; a port that cannot be listened on is an InputError."""
    import uvicorn

    check_listen(host, port)
    app = create_app(bind_host=host)
    uvicorn.run(app, host=host, port=port, log_level="warning", limit_concurrency=MAX_CONNECTIONS)


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


# ------------------------------------------------------------------------------------------------ jobs
# What the routes run in a worker thread (rainier.web.limits): parsing, evaluation and serialisation.
def _catalog_json() -> bytes:
    return _json_bytes(catalog_document())


def _estimate_json(body: bytes) -> bytes:
    outcome = run_scenario(scenario_from_mapping(_json_of(body), where="request"))
    return _json_bytes(response_document(outcome))


def _report_html(text: bytes | str) -> str:
    outcome = run_scenario(scenario_from_mapping(_json_of(text), where="request"))
    return report_of(outcome.result).render()


def _yaml_of_fields(fields: dict[str, str]) -> str:
    return scenario_from_mapping(fields, where="request").to_yaml()


def _yaml_of_text(text: bytes | str) -> str:
    fields = _json_of(text)
    if isinstance(fields, dict) and fields.get("kind") in ("fleet", "serve", "sweep"):  # the question tabs
        return question_yaml(fields)
    return scenario_from_mapping(fields, where="request").to_yaml()


def _upload_json(data: bytes | str) -> bytes:
    return _json_bytes(upload_answer(data))


def _question_json(question: Callable[[object], dict[str, Any]], body: bytes) -> bytes:
    return _json_bytes(question(_json_of(body)))


@functools.cache
def _schema_json() -> bytes:
    from rainier.api.scenario import scenario_schema

    return _json_bytes(scenario_schema())


def _json_of(text: bytes | str) -> Any:
    """The form's fields from a JSON body (bytes) or a form field ``scenario`` (text)."""
    what = "the body" if isinstance(text, bytes) else "the form field 'scenario'"
    try:
        return json.loads(text) if text.strip() else {}
    except (ValueError, RecursionError):
        raise FieldError(f"request: {what} is not JSON (expected the form's fields as a JSON object)", None) from None


def _json_bytes(document: Any) -> bytes:
    return json.dumps(finite_json(document), allow_nan=False, default=str, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------------------------ helpers
async def _answer(budget: RequestBudget, work: Work, *, html: bool = False) -> Response:
    """Run a route's work; user errors become 400 with one line and the field, anything else 500."""
    try:
        return await work(budget)
    except Refused as exc:
        return _error(exc.status, _one_line(exc.message), None, html=html)
    except FieldError as exc:
        return _error(400, _one_line(str(exc)), exc.field, html=html)
    except ValueError as exc:  # InputError, and any config validation error: the API's one-line messages
        return _error(400, _one_line(str(exc)), None, html=html)
    except ClientDisconnect:  # the client left while sending its body: nobody to answer
        return Response(status_code=400)
    except Exception as exc:  # never a traceback to the client
        _log.exception("unexpected error")
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details", None, html=html)
    finally:
        budget.close()


def _error(status: int, message: str, field: str | None, *, html: bool) -> Response:
    if html:
        from html import escape

        page = f"<!DOCTYPE html><meta charset='utf-8'><title>rainier: error</title><p>error: {escape(message)}</p>"
        return HTMLResponse(page, status_code=status)
    return JSONResponse({"error": message, "field": field}, status_code=status)


def _one_line(message: str) -> str:
    """``message`` on one line; a word longer than a clipped quote (a user's input that a message repeats whole)
    is clipped, and so is the whole, so that no answer echoes a large input."""
    words = (clip(word) if len(word) > MAX_WORD_CHARS else word for word in message.split())
    return clip(" ".join(words), MAX_MESSAGE_CHARS) or "error"


def _json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _is_form(request: Request) -> bool:
    return media_type(request) in FORM_TYPES


async def _scenario_text(request: Request, budget: RequestBudget) -> bytes | str:
    """The form's fields as JSON: the body (bytes), or a form post's ``scenario`` field (text; the page's report
    and download buttons)."""
    if not _is_form(request):
        return await budget.body(request, limit=MAX_JSON_BYTES, kinds=JSON_TYPES)
    body = await budget.body(request, limit=MAX_FORM_BYTES, kinds=FORM_TYPES)
    form = await budget.form(request, body, limit=MAX_FORM_BYTES)
    try:
        text = form.get("scenario")
    finally:
        await form.close()
    if not isinstance(text, str):
        raise FieldError("request: expected a form field 'scenario' holding the form's fields as JSON", None)
    return text


async def _uploaded(request: Request, budget: RequestBudget) -> bytes | str:
    """An uploaded scenario: a multipart ``file`` (or ``text``) field, else the raw body."""
    body = await budget.body(request, limit=MAX_UPLOAD_BYTES, kinds=UPLOAD_TYPES)
    if not _is_form(request):
        return body
    form = await budget.form(request, body, limit=MAX_UPLOAD_BYTES)
    try:
        item = form.get("file", form.get("text"))
        if item is None:
            raise FieldError("scenario: expected a file field 'file' (or a text field 'text')", "scenario")
        return await item.read() if isinstance(item, UploadFile) else item
    finally:
        await form.close()


def _yaml_file(text: str) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{SCENARIO_FILE}"'}
    return Response(text, media_type="application/yaml", headers=headers)


@functools.cache
def _static_text(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


@functools.cache
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())
