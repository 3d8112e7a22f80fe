"""A minimal discrete-event kernel: one clock, one event heap, one sequence counter, one random generator.

The spirit is simpy's ``Environment`` (STYLE.md, point 12) without processes or generators: a model schedules
*callbacks* at future times and the kernel calls them in time order. Keeping all mutable simulation state in
one :class:`Environment` (plus whatever the model's callbacks close over) makes runs reproducible:

- events are ordered by ``(time, priority, seq)``: earlier first, then lower ``priority`` (:data:`URGENT` before
  :data:`NORMAL`), then the order in which they were scheduled (``seq``, a counter owned by the environment), so
  simultaneous events never depend on hash order or floating-point noise in comparisons of payloads;
- randomness comes only from the ``numpy.random.Generator`` passed in (``env.rng``); a model that draws its
  numbers from it in event order gets the same numbers for the same seed;
- cancelling is lazy: :meth:`Event.cancel` marks the event and the kernel drops it when it reaches the top of
  the heap (the usual trick to keep cancellation O(1); the heap may briefly hold dead entries).

``run(until=T)`` processes the events strictly before ``T`` and leaves the clock at ``T`` (as simpy does: an
event at exactly ``T`` belongs to the next run). The serving simulator reuses this kernel; it must stay free
of fleet or serving concepts.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from rainier.errors import field_error

URGENT = 0
"""Priority of events that must run before others at the same time (e.g. a repair freeing a spare)."""
NORMAL = 1
"""Default priority."""

EventCallback = Callable[["Event"], None]
"""What the kernel calls when an event fires; it receives the event (its ``time``, ``payload`` ...)."""


class Event:
    """One scheduled occurrence: fires ``callback(event)`` at ``time`` unless cancelled first.

    ``priority`` breaks ties at equal times (lower first), ``seq`` breaks the remaining ties in scheduling
    order. ``payload`` is free for the model (a cause, a server id ...). Events are created by
    :meth:`Environment.schedule`, never directly.
    """

    __slots__ = ("callback", "cancelled", "payload", "priority", "seq", "time")

    def __init__(self, time: float, priority: int, seq: int, callback: EventCallback | None, payload: Any) -> None:
        self.time = time
        self.priority = priority
        self.seq = seq
        self.callback = callback
        self.payload = payload
        self.cancelled = False

    def cancel(self) -> None:
        """Prevent the event from firing (it stays on the heap until popped, then is skipped)."""
        self.cancelled = True

    def __repr__(self) -> str:
        state = ", cancelled" if self.cancelled else ""
        return f"Event(time={self.time!r}, priority={self.priority}, seq={self.seq}, payload={self.payload!r}{state})"


class Environment:
    """The simulation's clock, event heap, sequence counter and random generator.

    ``rng`` is the only source of randomness a model should use; pass ``numpy.random.default_rng(seed)``.
    ``now`` starts at ``start_s`` (seconds by convention; the kernel itself is unit-free) and only moves
    forward, to the time of each event processed and to ``until`` at the end of :meth:`run`.
    """

    __slots__ = ("_heap", "_now", "_processed", "_seq", "_stopped", "rng")

    def __init__(self, rng: np.random.Generator, *, start_s: float = 0.0) -> None:
        if not isinstance(rng, np.random.Generator):
            raise field_error("rng", rng, "expected a numpy.random.Generator (numpy.random.default_rng(seed))")
        if not math.isfinite(start_s):
            raise field_error("start_s", start_s, "must be a finite time")
        self.rng = rng
        self._now = float(start_s)
        self._heap: list[tuple[float, int, int, Event]] = []
        self._seq = 0
        self._processed = 0
        self._stopped = False

    # -- state ------------------------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        """The current simulation time."""
        return self._now

    @property
    def processed(self) -> int:
        """Events fired so far (cancelled ones are not counted)."""
        return self._processed

    @property
    def pending(self) -> int:
        """Events on the heap that are still due to fire."""
        return sum(1 for entry in self._heap if not entry[3].cancelled)

    def peek(self) -> float:
        """Time of the next live event, or ``inf`` when none is left."""
        self._drop_cancelled()
        return self._heap[0][0] if self._heap else math.inf

    # -- scheduling ---------------------------------------------------------------------------------------------
    def schedule(
        self, delay: float, callback: EventCallback | None = None, *, priority: int = NORMAL, payload: Any = None
    ) -> Event:
        """Schedule ``callback(event)`` ``delay`` after now (``delay >= 0``); returns the event (to cancel it)."""
        if not delay >= 0 or math.isnan(delay):
            raise field_error("delay", delay, "must be >= 0 (events cannot be scheduled in the past)")
        return self._push(self._now + delay, priority, callback, payload)

    def schedule_at(
        self, time: float, callback: EventCallback | None = None, *, priority: int = NORMAL, payload: Any = None
    ) -> Event:
        """Schedule ``callback(event)`` at absolute ``time`` (not before now)."""
        if not time >= self._now:
            raise field_error("time", time, f"must be >= now ({self._now!r})")
        return self._push(float(time), priority, callback, payload)

    def _push(self, time: float, priority: int, callback: EventCallback | None, payload: Any) -> Event:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise field_error("priority", priority, "expected an integer (lower fires first at equal times)")
        event = Event(time, priority, self._seq, callback, payload)
        heapq.heappush(self._heap, (time, priority, self._seq, event))
        self._seq += 1
        return event

    # -- running --------------------------------------------------------------------------------------------
    def _drop_cancelled(self) -> None:
        heap = self._heap
        while heap and heap[0][3].cancelled:
            heapq.heappop(heap)

    def step(self) -> Event | None:
        """Fire the next live event (advancing the clock to it); ``None`` when the heap is empty."""
        self._drop_cancelled()
        if not self._heap:
            return None
        time, _, _, event = heapq.heappop(self._heap)
        self._now = time
        self._processed += 1
        if event.callback is not None:
            event.callback(event)
        return event

    def stop(self) -> None:
        """Make the current :meth:`run` return after the event being processed."""
        self._stopped = True

    def run(self, until: float | None = None) -> int:
        """Fire events in ``(time, priority, seq)`` order; returns how many fired.

        With ``until``, events strictly before it fire and the clock then moves to ``until`` (unless
        :meth:`stop` was called first, which leaves the clock at the last event). Without it, the run ends when
        the heap is empty or on :meth:`stop`.
        """
        if until is not None and (math.isnan(until) or until < self._now):
            raise field_error("until", until, f"must be >= now ({self._now!r})")
        limit = math.inf if until is None else until
        self._stopped = False
        fired = 0
        heap = self._heap
        while heap and not self._stopped:
            time, _, _, event = heap[0]
            if event.cancelled:
                heapq.heappop(heap)
                continue
            if time >= limit:
                break
            heapq.heappop(heap)
            self._now = time
            self._processed += 1
            fired += 1
            if event.callback is not None:
                event.callback(event)
        if until is not None and math.isfinite(until) and not self._stopped:
            self._now = float(until)
        return fired
