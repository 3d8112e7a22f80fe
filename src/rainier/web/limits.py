"""What one request of the web app may cost: its body's size, its time, and a share of a few worker threads.

Every API request gets a :class:`RequestBudget` when it arrives. It reads the body within the route's size
limit (the declared ``Content-Length`` first, then the bytes actually received, so a chunked body is bounded
too) and runs the route's parsing and evaluation in :class:`Workers`, a small pool of threads, never on the
event loop: a slow search or a hostile upload costs its own worker, while the loop keeps answering everyone
else. A request gets ``REQUEST_BUDGET_S`` in all, from its arrival to its answer: reading the body, waiting for
a worker and the work itself. Past it, the client gets a one-line 503; a job already running finishes in the
background (its thread cannot be stopped), a job still waiting is dropped.

Memory, bounded by construction rather than watched:

- bodies waiting for a worker: at most ``MAX_BUFFERED_BYTES`` across all requests (one that would go past it
  is answered 503 at once), each within its route's limit (``MAX_JSON_BYTES``, ``MAX_FORM_BYTES``,
  ``MAX_UPLOAD_BYTES``; 413 past it);
- work in progress: at most ``NUM_WORKERS`` jobs at once, each parsing a body within those limits (YAML through
  ``rainier.catalog.loader.parse_yaml``: at most 1M values after alias expansion, 64 levels deep) or running one
  estimate or search (a search on the largest catalog cluster adds about 200 MB). A job abandoned at the
  time budget keeps its thread, so abandoned and running jobs together are still at most ``NUM_WORKERS``.

So a flood of requests costs at most ``MAX_BUFFERED_BYTES`` plus ``NUM_WORKERS`` jobs, and queues up to the time
budget before being answered 503; it cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message, Receive

from rainier.errors import clip

T = TypeVar("T")

REQUEST_BUDGET_S = 30.0  # one request, arrival to answer; a search of the largest catalog cluster takes a few s
# A fleet question is a plan search, a failure simulation of the whole job and a comparison on other chips:
# examples/rainier-frontier.yaml (~500k Trainium2, three other chips) took 27.5 s on 2 shared CPU cores, so its
# route gets longer; the page shows the seconds spent while it waits.
FLEET_BUDGET_S = 180.0
SERVE_BUDGET_S = 60.0  # sizing fleets on a few chip kinds with a simulation each (examples/serving-fleet.yaml: 7.6 s)
# A sweep runs its cells one after another in one worker (no database file, no process pool on the server): one
# plan search each, measured on 2 shared CPU cores at up to 1.5 s (deepseek-v3 on 2,048 H100: 1.5 s; llama-3-70b
# on rainier-trn2-1m: 0.7 s; examples/sweep.yaml's 6 cells: 3 s warm, 10 s from a cold start). MAX_SWEEP_CELLS such
# cells take ~25 s, so SWEEP_BUDGET_S leaves room for the 4 workers sharing the cores; a larger grid is refused
# before it starts, with the CLI command that runs it (rainier sweep, on every core, resumable).
MAX_SWEEP_CELLS = 16
SWEEP_BUDGET_S = 120.0
NUM_WORKERS = 4  # heavy jobs at once: searches are CPU-bound, so more threads only add memory, not speed
MAX_JSON_BYTES = 2**20  # a JSON request: eight short fields and a pasted config.json (a few KiB)
MAX_FORM_BYTES = 3 * 2**20  # the same JSON in a url-encoded form field (each escaped character takes 3 bytes)
MAX_UPLOAD_BYTES = 2**18 + 2**14  # a scenario file (rainier.web.scenario.MAX_SCENARIO_BYTES) and multipart headers
MAX_BUFFERED_BYTES = 64 * 2**20  # request bodies held at once, across all requests

JSON_TYPES = frozenset({"application/json"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# A YAML upload: the page's multipart form, a raw body (``curl --data-binary``), or a form's text field.
# ``text/plain`` is refused everywhere: it is what a cross-site page can post without a CORS preflight.
UPLOAD_TYPES = FORM_TYPES | {
    "application/yaml",
    "application/x-yaml",
    "text/yaml",
    "text/x-yaml",
    "application/octet-stream",
    "",
}


class Refused(Exception):
    """A request turned away before or instead of its work: the HTTP status and one line for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Workers:
    """The worker threads of one app and the bytes of request bodies it holds (module docstring)."""

    def __init__(
        self,
        *,
        num_workers: int = NUM_WORKERS,
        budget_s: float = REQUEST_BUDGET_S,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
    ) -> None:
        if num_workers < 1 or budget_s <= 0 or max_buffered_bytes < 1:
            raise ValueError(
                f"workers: num_workers={num_workers}, budget_s={budget_s}, max_buffered_bytes={max_buffered_bytes}"
                " are invalid: positive numbers"
            )
        self.budget_s = budget_s
        self.max_buffered_bytes = max_buffered_bytes
        self.buffered_bytes = 0  # changed on the event loop only
        self._executor = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="rainier-web")

    def submit(self, job: Callable[..., T], *args: object) -> Future[T]:
        """``job(*args)`` queued for the next free worker."""
        return self._executor.submit(job, *args)

    def budget(self, budget_s: float | None = None) -> RequestBudget:
        """A new request's budget (``budget_s``, or the app's per-request budget); its time starts now."""
        return RequestBudget(self, self.budget_s if budget_s is None else budget_s)

    def close(self) -> None:
        """Drop the jobs still waiting; running ones finish in their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class RequestBudget:
    """One request's share: its deadline and the body bytes it holds; :meth:`close` gives the bytes back."""

    def __init__(self, workers: Workers, budget_s: float) -> None:
        self._workers = workers
        self.budget_s = budget_s
        self._deadline = asyncio.get_running_loop().time() + budget_s
        self._held = 0

    def remaining_s(self) -> float:
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    async def body(self, request: Request, *, limit: int, kinds: Collection[str]) -> bytes:
        """The request's body, if its content type is one of ``kinds`` and it is at most ``limit`` bytes."""
        kind = media_type(request)
        if kind not in kinds:
            shown = f"Content-Type {clip(kind)!r}" if kind else "no Content-Type"
            accepted = " or ".join(sorted(k for k in kinds if k))
            raise Refused(415, f"request: {shown} is not accepted here; send {accepted}")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Refused(413, f"request: body too large ({int(declared):,} bytes; at most {limit:,})")
        try:
            return await asyncio.wait_for(self._read(request, limit), timeout=self.remaining_s())
        except TimeoutError:
            raise Refused(408, f"request: the body did not arrive within {self.budget_s:g} s") from None

    async def _read(self, request: Request, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"request: body too large (more than {limit:,} bytes)")
            self._hold(len(chunk))
            chunks.append(chunk)
        return b"".join(chunks)

    def _hold(self, num_bytes: int) -> None:
        workers = self._workers
        if workers.buffered_bytes + num_bytes > workers.max_buffered_bytes:
            raise Refused(503, "server busy: too many large requests at once; try again in a moment")
        workers.buffered_bytes += num_bytes
        self._held += num_bytes

    async def form(self, request: Request, body: bytes, *, limit: int) -> FormData:
        """The form in ``body`` (read by :meth:`body`), parsed on the loop: python-multipart is linear and ``body``
        is bounded. The caller closes it (``await form.close()``)."""
        replayed = Request(request.scope, _replay(body))
        try:
            return await asyncio.wait_for(
                replayed.form(max_files=1, max_fields=16, max_part_size=limit), timeout=self.remaining_s()
            )
        except HTTPException as exc:  # python-multipart's own limits and malformed forms
            raise Refused(400, f"request: malformed form data ({clip(str(exc.detail))})") from None
        except TimeoutError:
            raise Refused(503, f"request: the form was not read within {self.budget_s:g} s") from None

    async def run(self, job: Callable[..., T], *args: object) -> T:
        """``job(*args)`` in a worker thread, answered within the request's time budget (else :class:`Refused`)."""
        future = self._workers.submit(job, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=self.remaining_s())
        except TimeoutError:
            budget = self.budget_s
            if future.cancel():  # never started (now never will): every worker was busy for the whole budget
                raise Refused(503, f"server busy: no worker free within {budget:g} s; try again later") from None
            raise Refused(
                503, f"not answered within {budget:g} s (the time one request may take); try a smaller search"
            ) from None

    def close(self) -> None:
        self._workers.buffered_bytes -= self._held
        self._held = 0


def media_type(request: Request) -> str:
    """The content type without parameters, in lower case; ``""`` when none is given."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _replay(body: bytes) -> Receive:
    """An ASGI ``receive`` that hands over ``body`` once (already read, within its limit)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
