"""Chrome/Perfetto traces of one pipeline-parallel training step and of a serving simulation.

Format: the Chrome Trace Event Format's "JSON Object Format" (Google, "Trace Event Format", the document behind
``chrome://tracing``): ``{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}`` with complete
events (``"ph": "X"``, ``ts`` and ``dur`` in microseconds), counters (``"C"``), instants (``"i"``) and metadata
(``"M"``: process and thread names, thread order). Perfetto opens it at https://ui.perfetto.dev (drag the file in);
``chrome://tracing`` too. :func:`write_trace` writes compact JSON.

**Training step** (:func:`step_trace`): one process, one thread per pipeline stage. The step model
(``rainier.perf.batch``) gives totals, not a schedule, so the schedule is rebuilt from the breakdown:

- per micro-batch and stage, ``compute + recompute + tp/cp/ep/pp comm`` divided by ``m`` micro-batches is the
  model's per-micro-batch time; the model's bubble is ``(pp - 1) / vpp`` times that time *without* the LM head
  (1F1B, interleaved, GPipe), so inverting it gives the head's share, which runs on the last stage only
  (the model's step is ``m`` per-micro-batch times plus the bubble: the critical path through the last stage);
- compute splits forward : backward = 1 : 2 (2N and 4N FLOP per token, the 6N rule); recompute runs right before
  each backward; each collective is its own slice right after the pass it belongs to (tp and ep: half forward,
  half backward, a third each with full recompute; cp: a third forward, two thirds backward, plus the recompute's
  quarter), pp send/recv half after the forward, half after the backward of each chunk;
- 1F1B is PipeDream-Flush as in Megatron-LM (``pp - 1 - stage`` warm-up forwards, one forward one backward, then
  cool-down backwards); with ``vpp > 1`` Megatron-LM's interleaved order (micro-batches in groups of ``pp``, chunk
  by chunk, ``2 (pp - 1 - stage) + (vpp - 1) pp`` warm-up forwards); GPipe all forwards then all backwards;
  zero-bubble is ZB-H1 approximated greedily: backward split into input-gradient (B) and weight-gradient (W)
  halves, each stage runs a ready B first, else a forward (at most 1F1B's in-flight count), else a deferred W;
- every pass starts when its dependency (the previous virtual stage's forward, the next one's backward) is done,
  so idle time falls out of the simulation. The same schedule is also run balanced (no LM head anywhere): the idle
  time before each pass there is the schedule's own bubble, drawn as "bubble"; what the real run idles longer
  before the same pass is drawn as "imbalance" (stages before the last wait for the last stage, slower by the head
  every micro-batch: ``m x head`` per stage in all for 1F1B, GPipe and interleaved);
- then, on every stage at once, the exposed data-parallel gradient reduce (and ZeRO weight gather), the optimizer
  step and the fixed per-step overhead.

How close it comes (Llama-3-70B on 64 H100s, tp=8, pp=4, m=32, and other plans in the tests): for 1F1B, GPipe and
interleaved (``m`` a multiple of ``pp``) the trace ends at ``step_time_s`` and every stage's "bubble" slices add
up to ``pipeline_bubble``, both to rounding (the model's ``(pp - 1) / vpp`` formula is exact for these schedules
with equal stages). Zero-bubble schedules (ZB-H1, and ZB-V and DualPipe, which are drawn as ZB-H1): the trace
is a greedy ZB-H1 with the backward split in equal B and W halves, while the step model uses each pass's own
weight-gradient share (``perf.schedule``), so the trace is an illustration that can end some percent away from
the step time. With fewer micro-batches than stages (interleaved with ``m < pp``, zero-bubble with ``m < pp``)
the schedule cannot reach the model's formula and the trace is longer (10-45% in the extremes tried).
With ``pp = 1`` there is no bubble and the head is not separated from the forward/backward slices.

**Serving** (:func:`serving_trace`): the first ``max_requests`` requests by arrival, one slice row ("lane") per set
of requests that do not overlap in time (greedy interval packing, lowest free lane first). Per request: "queue"
from arrival to ``min(arrival + queue_s, first_token_s)`` (exact for a request that is never preempted in a
colocated deployment; ``queue_s`` also counts later waits, after a preemption or for a decode replica, which the
timeline does not place, so then the slice ends at the first token at the latest), "prefill" to the first token,
"KV transfer" (disaggregated) for ``transfer_s``, then "decode" to the finish (a decode-pool queue wait or a
recompute after a preemption is inside it). Counters (all requests, up to the last selected request's end):
requests in the system and requests decoding. Rejected requests are instant events at their arrival.
"""

from __future__ import annotations

import heapq
import json
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from rainier.errors import InputError, field_error
from rainier.parallel.plan import Plan, Recompute, Schedule
from rainier.perf.result import StepEstimate
from rainier.serve.simulate import ServeTimeline
from rainier.units import MICROSECOND

__all__ = ["serving_trace", "step_trace", "write_trace"]

BACKWARD_PER_FORWARD = 2.0  # backward = 2x forward FLOP: input and weight gradients (the 6N-per-token rule)
TS_DECIMALS = 3  # microsecond timestamps rounded to nanoseconds
MIN_GAP_S = 1e-9  # idle time shorter than this (float noise) is not drawn
# A step trace has one event per slice of every pass on every stage (plus idle gaps): its size is known before it
# is built. 500,000 events is a file of about 90 MB that Perfetto still opens; a larger one is asked for by name.
MAX_TRACE_EVENTS = 500_000
STEP_PID = 1
SERVE_PID = 1
SERVE_INFO_TID = 0  # counters and rejected requests; request lanes are tids 1, 2, ...
BATCH_PID = 2  # engine iterations, one thread per replica (recorded with ServeScenario.record_batches)


class _Pass(Enum):
    """A pipeline pass of one micro-batch through one chunk of layers."""

    FORWARD = "F"
    BACKWARD = "B"  # the whole backward, or its input-gradient half under zero-bubble
    WEIGHT = "W"  # zero-bubble only: the weight-gradient half of the backward


@dataclass(frozen=True, slots=True)
class _Piece:
    """One slice of a pass: name, Chrome category and seconds; the pass's own compute slice (``main``) is shown
    under the pass's label instead (``F3``: forward of micro-batch 3)."""

    name: str
    cat: str
    seconds: float
    main: bool = False


@dataclass(frozen=True, slots=True)
class _Work:
    """The slices of every pass kind, per chunk, on an ordinary and on the last virtual stage (LM head)."""

    pieces: dict[tuple[_Pass, bool], tuple[_Piece, ...]]
    per_microbatch_s: float
    head_per_microbatch_s: float

    def duration(self, kind: _Pass, last: bool) -> float:
        return sum(p.seconds for p in self.pieces[(kind, last)])


def _work(estimate: StepEstimate) -> _Work:
    """Split the breakdown's per-micro-batch parts into the slices of a forward, backward (and W) pass per chunk."""
    plan, b = estimate.plan, estimate.breakdown
    m, pp, vpp = plan.num_microbatches, plan.pp_degree, plan.vpp_degree
    totals = (b.compute + b.link_contention, b.recompute, b.tp_comm, b.cp_comm, b.ep_comm, b.pp_comm)
    compute, recompute, tp, cp, ep, p2p = (x / m for x in totals)
    per_mb = compute + recompute + tp + cp + ep + p2p
    head = 0.0
    plain = plan.schedule in (Schedule.ONE_F_ONE_B, Schedule.INTERLEAVED, Schedule.GPIPE)
    if pp > 1 and b.pipeline_bubble > 0 and plain:
        # perf.schedule: bubble = the other ranks' passes once, / vpp; the slowest (last, with the LM head) rank
        # sets the steady state, so the head is what the slowest rank's micro-batch has beyond the others'.
        body = b.pipeline_bubble * vpp / (pp - 1)
        head = min(max(per_mb - body, 0.0), compute)
    full = plan.recompute is Recompute.FULL
    # (forward, recompute, backward) shares of each collective, as perf.batch adds them up
    halves = (1 / 3, 1 / 3, 1 / 3) if full else (0.5, 0.0, 0.5)
    cp_shares = (0.25, 0.25, 0.5) if full else (1 / 3, 0.0, 2 / 3)
    comms = (("tp collectives", tp, halves), ("cp ring exchange", cp, cp_shares), ("ep all-to-all", ep, halves))
    fwd = (compute - head) / (1 + BACKWARD_PER_FORWARD) / vpp
    bwd = (compute - head) * BACKWARD_PER_FORWARD / (1 + BACKWARD_PER_FORWARD) / vpp
    head_fwd = head / (1 + BACKWARD_PER_FORWARD)
    head_bwd = head - head_fwd
    send = p2p / 2 / vpp
    zero_bubble = plan.schedule in (Schedule.ZERO_BUBBLE, Schedule.ZB_V, Schedule.DUALPIPE) and pp > 1
    pieces: dict[tuple[_Pass, bool], tuple[_Piece, ...]] = {}
    for last in (False, True):
        h = 1.0 if last else 0.0
        forward = [_Piece("forward", "compute", fwd, main=True), _Piece("LM head + loss", "compute", h * head_fwd)]
        forward += [_Piece(name, "comm", total * s[0] / vpp) for name, total, s in comms]
        forward.append(_Piece("pp send/recv", "comm", send))
        split = 0.5 if zero_bubble else 1.0
        backward = [_Piece("LM head + loss backward", "compute", h * head_bwd * split)]
        backward.append(_Piece("recompute", "recompute", recompute / vpp))
        backward += [_Piece(f"{name} (recompute)", "comm", total * s[1] / vpp) for name, total, s in comms]
        backward.append(_Piece("backward" if split == 1.0 else "backward (input grad)", "compute", bwd * split, True))
        backward += [_Piece(name, "comm", total * s[2] / vpp) for name, total, s in comms]
        backward.append(_Piece("pp send/recv", "comm", send))
        weight = [
            _Piece("LM head weight grad", "compute", h * head_bwd * (1 - split)),
            _Piece("backward (weight grad)", "compute", bwd * (1 - split), main=True),
        ]
        for kind, parts in ((_Pass.FORWARD, forward), (_Pass.BACKWARD, backward), (_Pass.WEIGHT, weight)):
            pieces[(kind, last)] = tuple(p for p in parts if p.seconds > 0)
    return _Work(pieces=pieces, per_microbatch_s=per_mb, head_per_microbatch_s=head)


# ----------------------------------------------------------------------------------------------------------------
# The pipeline schedule
# ----------------------------------------------------------------------------------------------------------------

_Key = tuple[_Pass, int, int]  # pass, micro-batch, virtual stage


@dataclass(frozen=True, slots=True)
class _Slot:
    """A pass as scheduled on a stage."""

    start_s: float
    end_s: float
    kind: _Pass
    microbatch: int
    chunk: int


def _sequence(m: int, pp: int, vpp: int, *, backward: bool) -> list[tuple[int, int]]:
    """(micro-batch, chunk) in the order a stage runs them: Megatron-LM's groups of ``pp`` micro-batches, chunk by
    chunk (chunks in reverse for backwards); plain micro-batch order when ``vpp == 1``."""
    order = []
    for group in range(0, m, pp):
        for c in range(vpp):
            chunk = vpp - 1 - c if backward else c
            order += [(mb, chunk) for mb in range(group, min(group + pp, m))]
    return order


def _warmup(stage: int, m: int, pp: int, vpp: int) -> int:
    """Forwards before the first backward: PipeDream-Flush / Megatron-LM's (interleaved) 1F1B warm-up."""
    if vpp == 1:
        return min(pp - 1 - stage, m)
    return min(2 * (pp - 1 - stage) + (vpp - 1) * pp, m * vpp)


@dataclass(slots=True)
class _StageQueue:
    """What a stage runs next: a fixed order (1F1B, interleaved, GPipe) or ZB-H1's greedy choice."""

    fixed: deque[tuple[_Pass, int, int]] | None
    forwards: deque[tuple[int, int]] = field(default_factory=deque)
    backwards: deque[tuple[int, int]] = field(default_factory=deque)
    weights: deque[tuple[int, int]] = field(default_factory=deque)
    in_flight: int = 0
    max_in_flight: int = 1

    @property
    def remaining(self) -> int:
        if self.fixed is not None:
            return len(self.fixed)
        return len(self.forwards) + len(self.backwards) + len(self.weights)


def _queues(plan: Plan) -> list[_StageQueue]:
    pp, vpp, m = plan.pp_degree, plan.vpp_degree, plan.num_microbatches
    forwards, backwards = _sequence(m, pp, vpp, backward=False), _sequence(m, pp, vpp, backward=True)
    queues = []
    for stage in range(pp):
        warm = _warmup(stage, m, pp, vpp)
        if plan.schedule in (Schedule.ZERO_BUBBLE, Schedule.ZB_V, Schedule.DUALPIPE) and pp > 1:
            queues.append(_StageQueue(None, deque(forwards), deque(backwards), max_in_flight=warm + 1))
            continue
        if plan.schedule is Schedule.GPIPE:
            warm = len(forwards)
        order = [(_Pass.FORWARD, *f) for f in forwards[:warm]]
        for k in range(len(forwards) - warm):
            order += [(_Pass.FORWARD, *forwards[warm + k]), (_Pass.BACKWARD, *backwards[k])]
        order += [(_Pass.BACKWARD, *bw) for bw in backwards[len(forwards) - warm :]]
        queues.append(_StageQueue(deque(order)))
    return queues


def _dependency(kind: _Pass, microbatch: int, vstage: int, last_vstage: int) -> _Key | None:
    if kind is _Pass.FORWARD:
        return (_Pass.FORWARD, microbatch, vstage - 1) if vstage > 0 else None
    if kind is _Pass.BACKWARD:
        return (_Pass.BACKWARD, microbatch, vstage + 1) if vstage < last_vstage else (_Pass.FORWARD, microbatch, vstage)
    return (_Pass.BACKWARD, microbatch, vstage)


def _choose(queue: _StageQueue, ready: Callable[[_Pass, int, int], bool]) -> tuple[_Pass, int, int] | None:
    """The pass a stage starts now, if any: the next of a fixed order, or ZB-H1's greedy pick (a ready backward,
    else a forward within the in-flight limit, else a deferred weight-gradient pass)."""
    if queue.fixed is not None:
        return queue.fixed.popleft() if ready(*queue.fixed[0]) else None
    if queue.backwards and ready(_Pass.BACKWARD, *queue.backwards[0]):
        mb, chunk = queue.backwards.popleft()
        queue.in_flight -= 1
        queue.weights.append((mb, chunk))
        return (_Pass.BACKWARD, mb, chunk)
    if queue.forwards and queue.in_flight < queue.max_in_flight and ready(_Pass.FORWARD, *queue.forwards[0]):
        queue.in_flight += 1
        return (_Pass.FORWARD, *queue.forwards.popleft())
    if queue.weights:
        return (_Pass.WEIGHT, *queue.weights.popleft())
    return None


def _simulate(plan: Plan, work: _Work, *, balanced: bool = False) -> list[list[_Slot]]:
    """Run every stage's passes as soon as their dependencies allow (a small discrete-event loop: the stages with
    the earliest clock move first, so passes start in time order and a finished dependency is always known).
    ``balanced`` leaves the LM head out: every stage equal, so that idle time is the schedule's bubble alone."""
    pp, vpp = plan.pp_degree, plan.vpp_degree
    last_vstage = pp * vpp - 1
    queues = _queues(plan)
    ends: dict[_Key, float] = {}
    clocks = [0.0] * pp
    pending_ends: list[float] = []
    slots: list[list[_Slot]] = [[] for _ in range(pp)]

    def ready(stage: int, now: float, kind: _Pass, mb: int, chunk: int) -> bool:
        dep = _dependency(kind, mb, chunk * pp + stage, last_vstage)
        return dep is None or ends.get(dep, math.inf) <= now

    while True:
        active = [s for s in range(pp) if queues[s].remaining]
        if not active:
            break
        now = min(clocks[s] for s in active)
        moved = False
        for stage in (s for s in active if clocks[s] == now):
            choice = _choose(queues[stage], partial(ready, stage, now))
            if choice is None:
                continue
            kind, mb, chunk = choice
            vstage = chunk * pp + stage
            end = now + work.duration(kind, vstage == last_vstage and not balanced)
            ends[(kind, mb, vstage)] = end
            heapq.heappush(pending_ends, end)
            slots[stage].append(_Slot(now, end, kind, mb, chunk))
            clocks[stage] = end
            moved = True
        if moved:
            continue
        # nothing can start now: wait for the next pass to end, or for another stage's clock
        while pending_ends and pending_ends[0] <= now:
            heapq.heappop(pending_ends)
        later = [clocks[s] for s in active if clocks[s] > now] + pending_ends[:1]
        assert later, "pipeline schedule deadlocked"
        wake = min(later)
        for s in active:
            clocks[s] = max(clocks[s], wake)
    return slots


# ----------------------------------------------------------------------------------------------------------------
# Trace events
# ----------------------------------------------------------------------------------------------------------------


def _us(seconds: float) -> float:
    return round(seconds / MICROSECOND, TS_DECIMALS)


def _complete(name: str, cat: str, start_s: float, end_s: float, pid: int, tid: int, **args: Any) -> dict[str, Any]:
    """A complete ("X") event; ``dur`` is the difference of rounded ends so that abutting slices stay abutting."""
    ts = _us(start_s)
    event: dict[str, Any] = {
        "name": name,
        "cat": cat,
        "ph": "X",
        "ts": ts,
        "dur": max(round(_us(end_s) - ts, TS_DECIMALS), 0.0),
    }
    event.update(pid=pid, tid=tid)
    if args:
        event["args"] = args
    return event


def _metadata(event: str, pid: int, tid: int, **args: Any) -> dict[str, Any]:
    return {"name": event, "ph": "M", "ts": 0, "pid": pid, "tid": tid, "args": args}


def _idle(stage: int, start_s: float, end_s: float, bubble_s: float) -> list[dict[str, Any]]:
    """An idle gap: "bubble" up to ``bubble_s`` (the same gap in the balanced pipeline), the rest "imbalance"."""
    split = min(start_s + max(bubble_s, 0.0), end_s)
    events = []
    if split - start_s >= MIN_GAP_S:
        events.append(_complete("bubble", "bubble", start_s, split, STEP_PID, stage))
    if end_s - split >= MIN_GAP_S:
        reason = "idle longer than with equal stages: the last stage also runs the LM head and loss"
        events.append(_complete("imbalance", "imbalance", split, end_s, STEP_PID, stage, reason=reason))
    return events


def _gaps(slots: list[_Slot], end_s: float) -> dict[tuple[_Pass, int, int] | None, float]:
    """Idle time before each pass of a stage (keyed by the pass; None: after the last pass, to ``end_s``)."""
    gaps: dict[tuple[_Pass, int, int] | None, float] = {}
    clock = 0.0
    for slot in slots:
        gaps[(slot.kind, slot.microbatch, slot.chunk)] = slot.start_s - clock
        clock = slot.end_s
    gaps[None] = end_s - clock
    return gaps


def _stage_events(
    stage: int, plan: Plan, work: _Work, slots: list[_Slot], schedule_gaps: dict[Any, float], pipeline_end_s: float
) -> list[dict[str, Any]]:
    """One stage's slices up to the end of the pipeline: its passes and the idle time between them."""
    pp, vpp = plan.pp_degree, plan.vpp_degree
    events: list[dict[str, Any]] = []
    clock = 0.0
    for slot in slots:
        events += _idle(stage, clock, slot.start_s, schedule_gaps[(slot.kind, slot.microbatch, slot.chunk)])
        vstage = slot.chunk * pp + stage
        label = f"{slot.kind.value}{slot.microbatch}" + (f".{slot.chunk}" if vpp > 1 else "")
        args = {"microbatch": slot.microbatch, "chunk": slot.chunk, "virtual_stage": vstage}
        t = slot.start_s
        for piece in work.pieces[(slot.kind, vstage == pp * vpp - 1)]:
            name = label if piece.main else piece.name
            events.append(_complete(name, piece.cat, t, t + piece.seconds, STEP_PID, stage, part=piece.name, **args))
            t += piece.seconds
        clock = slot.end_s
    return events + _idle(stage, clock, pipeline_end_s, schedule_gaps[None])


def step_trace_events(estimate: StepEstimate) -> int:
    """An upper bound on the events of :func:`step_trace` (``estimate``): slices and gaps of every pass."""
    plan = estimate.plan
    work = _work(estimate)
    per_pass = max(len(parts) for parts in work.pieces.values()) + 2  # the pass's slices and two idle slices
    passes = plan.num_microbatches * plan.vpp_degree * len(_Pass)
    return plan.pp_degree * (passes * per_pass + 8)


def step_trace(estimate: StepEstimate, *, max_events: int = MAX_TRACE_EVENTS) -> dict[str, Any]:
    """A Chrome trace of one training step of ``estimate``: one thread per pipeline stage (see the module text).

    Refuses (``InputError``) a trace of more than ``max_events`` events, counted before anything is built.
    """
    needed = step_trace_events(estimate)
    if needed > max_events:
        raise InputError(
            f"--trace: this step has about {needed:,} trace events ({estimate.plan.num_microbatches:,} micro-batches "
            f"x {estimate.plan.pp_degree} stages), more than the budget of {max_events:,}; raise it with "
            "--trace-max-events, or trace a smaller global batch"
        )
    plan, b = estimate.plan, estimate.breakdown
    work = _work(estimate)
    slots = _simulate(plan, work)
    pipeline_end = max((s[-1].end_s for s in slots if s), default=0.0)
    balanced = _simulate(plan, work, balanced=True)
    balanced_end = max((s[-1].end_s for s in balanced if s), default=0.0)
    tail = [
        _Piece("dp grad reduce / weight gather (exposed)", "comm", b.dp_comm_exposed),
        _Piece("optimizer step", "optimizer", b.optimizer),
        _Piece("fixed overhead", "overhead", b.other),
    ]
    title = f"training step: {estimate.model} on {estimate.cluster} ({estimate.num_devices} x {estimate.accelerator})"
    events: list[dict[str, Any]] = [_metadata("process_name", STEP_PID, 0, name=title)]
    stages = []
    for stage in range(plan.pp_degree):
        events.append(_metadata("thread_name", STEP_PID, stage, name=f"stage {stage}"))
        events.append(_metadata("thread_sort_index", STEP_PID, stage, sort_index=stage))
        gaps = _gaps(balanced[stage], balanced_end)
        stage_events = _stage_events(stage, plan, work, slots[stage], gaps, pipeline_end)
        t = pipeline_end
        for piece in tail:
            if piece.seconds > 0:
                stage_events.append(_complete(piece.name, piece.cat, t, t + piece.seconds, STEP_PID, stage))
                t += piece.seconds
        totals: dict[str, float] = {}
        for e in stage_events:
            totals[e["cat"]] = totals.get(e["cat"], 0.0) + e["dur"] * MICROSECOND
        stages.append({"stage": stage, **{f"{cat}_s": seconds for cat, seconds in sorted(totals.items())}})
        events += stage_events
    other = {
        "kind": "training step",
        "model": estimate.model,
        "cluster": estimate.cluster,
        "accelerator": estimate.accelerator,
        "num_devices": estimate.num_devices,
        "plan": plan.to_dict(),
        "num_microbatches": plan.num_microbatches,
        "step_time_s": estimate.step_time_s,
        "trace_end_s": pipeline_end + sum(p.seconds for p in tail),
        "breakdown_s": b.to_dict(),
        "per_microbatch_s": work.per_microbatch_s,
        "lm_head_per_microbatch_s": work.head_per_microbatch_s,
        "stages": stages,
        "note": "schedule rebuilt from the step model's breakdown (rainier.report.trace); event ts and dur in "
        "microseconds, *_s in seconds",
    }
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


# ----------------------------------------------------------------------------------------------------------------
# Serving
# ----------------------------------------------------------------------------------------------------------------


def _lanes(starts: list[float], ends: list[float]) -> list[int]:
    """Greedy interval packing: each interval (in start order) takes the lowest lane free at its start."""
    busy: list[tuple[float, int]] = []  # (end, lane)
    free: list[int] = []
    lanes = []
    for start, end in zip(starts, ends, strict=True):
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        lane = heapq.heappop(free) if free else len(busy) + len(free)
        heapq.heappush(busy, (end, lane))
        lanes.append(lane)
    return lanes


def _counter(name: str, key: str, up: np.ndarray, down: np.ndarray, until_s: float) -> list[dict[str, Any]]:
    """A counter that rises at ``up`` and falls at ``down`` times, one event per distinct time up to ``until_s``."""
    times = np.concatenate([up, down])
    if times.size == 0:
        return []
    steps = np.concatenate([np.ones(up.size, dtype=np.int64), -np.ones(down.size, dtype=np.int64)])
    order = np.argsort(times, kind="stable")
    times, values = times[order], np.cumsum(steps[order])
    last_of_time = np.append(times[1:] != times[:-1], True)  # the value after every change at that time
    times, values = times[last_of_time], values[last_of_time]
    keep = times <= until_s
    return [
        {"name": name, "ph": "C", "ts": _us(float(t)), "pid": SERVE_PID, "tid": SERVE_INFO_TID, "args": {key: int(v)}}
        for t, v in zip(times[keep], values[keep], strict=True)
    ]


def serving_trace(timeline: ServeTimeline, *, max_requests: int = 2000) -> dict[str, Any]:
    """A Chrome trace of a serving simulation's requests: lanes of queue / prefill / KV transfer / decode slices,
    counters of requests in the system and decoding, rejected requests as instants (see the module text)."""
    if isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1:
        raise field_error("max_requests", max_requests, "a positive integer")
    t = timeline
    n = int(t.arrival_s.size)
    order = np.argsort(t.arrival_s, kind="stable")[:max_requests]
    accepted = ~t.rejected & ~np.isnan(t.finish_s)
    transfer = np.nan_to_num(t.transfer_s, nan=0.0)
    decode_start = t.first_token_s + transfer
    chosen = [int(i) for i in order if accepted[i]]
    ends = [float(t.finish_s[i]) for i in chosen]
    lanes = _lanes([float(t.arrival_s[i]) for i in chosen], ends)
    events: list[dict[str, Any]] = [
        _metadata("process_name", SERVE_PID, 0, name="serving simulation"),
        _metadata("thread_name", SERVE_PID, SERVE_INFO_TID, name="rejected"),
    ]
    num_lanes = max(lanes, default=-1) + 1
    for lane in range(num_lanes):
        events.append(_metadata("thread_name", SERVE_PID, lane + 1, name=f"lane {lane}"))
        events.append(_metadata("thread_sort_index", SERVE_PID, lane + 1, sort_index=lane + 1))
    for rid, lane in zip(chosen, lanes, strict=True):
        arrival, first, finish = float(t.arrival_s[rid]), float(t.first_token_s[rid]), float(t.finish_s[rid])
        prefill_start = min(arrival + float(t.queue_s[rid]), first)
        args = {"request": rid, "input_len": int(t.input_len[rid]), "output_len": int(t.output_len[rid])}
        parts = [("queue", "queue", arrival, prefill_start), ("prefill", "prefill", prefill_start, first)]
        if not math.isnan(float(t.transfer_s[rid])):
            parts.append(("KV transfer", "comm", first, float(decode_start[rid])))
        parts.append(("decode", "decode", float(decode_start[rid]), finish))
        for name, cat, start, end in parts:
            if end - start >= MIN_GAP_S:
                events.append(_complete(name, cat, start, end, SERVE_PID, lane + 1, **args))
    rejected = [int(i) for i in order if t.rejected[i]]
    for rid in rejected:
        args = {"request": rid, "input_len": int(t.input_len[rid]), "output_len": int(t.output_len[rid])}
        ts = _us(float(t.arrival_s[rid]))
        instant = {"name": "rejected", "cat": "rejected", "ph": "i", "s": "t", "ts": ts, "pid": SERVE_PID}
        events.append(instant | {"tid": SERVE_INFO_TID, "args": args})
    events += _batch_events(t)
    until = max(ends, default=0.0)
    decoding = accepted & (t.finish_s > decode_start)
    events += _counter("requests in system", "requests", t.arrival_s[accepted], t.finish_s[accepted], until)
    events += _counter("running decodes", "requests", decode_start[decoding], t.finish_s[decoding], until)
    other = {
        "kind": "serving simulation",
        "requests_total": n,
        "requests_traced": len(chosen) + len(rejected),
        "requests_completed_traced": len(chosen),
        "rejected_total": int(t.rejected.sum()),
        "rejected_traced": len(rejected),
        "lanes": num_lanes,
        "max_requests": max_requests,
        "iterations": t.iterations,
        "preemptions": t.preemptions,
        "busy_s": t.busy_s,
        "disaggregated": bool((~np.isnan(t.transfer_s)).any()),
        "batches_traced": len(t.batches),
        "note": "queue slices end at min(arrival + queue_s, first token) (rainier.report.trace); event ts and dur "
        "in microseconds, *_s in seconds",
    }
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


def _batch_events(timeline: ServeTimeline) -> list[dict[str, Any]]:
    """Engine iterations as slices, one thread per replica: "prefill", "decode" or "prefill + decode" batches."""
    if not timeline.batches:
        return []
    events = [_metadata("process_name", BATCH_PID, 0, name="replicas (engine iterations)")]
    tids: dict[tuple[bool, int], int] = {}
    for replica, prefill_pool, *_ in timeline.batches:
        key = (prefill_pool, replica)
        if key not in tids:
            tids[key] = len(tids) + 1
    for (prefill_pool, replica), tid in sorted(tids.items(), key=lambda item: item[1]):
        label = f"prefill replica {replica}" if prefill_pool else f"replica {replica}"
        events.append(_metadata("thread_name", BATCH_PID, tid, name=label))
    for replica, prefill_pool, start, duration, prefill_tokens, decoding in timeline.batches:
        if prefill_tokens and decoding:
            name, cat = "prefill + decode", "batch"
        elif prefill_tokens:
            name, cat = "prefill", "prefill"
        else:
            name, cat = "decode", "decode"
        tid = tids[(prefill_pool, replica)]
        events.append(
            _complete(
                name, cat, start, start + duration, BATCH_PID, tid, prefill_tokens=prefill_tokens, decoding=decoding
            )
        )
    return events


def write_trace(document: Mapping[str, Any], path: Path | str) -> Path:
    """Write a trace document as compact JSON; an unwritable path is a one-line :class:`InputError`."""
    target = Path(path)
    try:
        text = json.dumps(document, separators=(",", ":"), allow_nan=False)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{target}: cannot write the trace ({exc.strerror or exc})") from None
    return target
