"""Running a step graph: compute streams, communication streams and the flow network on one event kernel.

Each rank class has a compute stream (its passes in schedule order, one at a time), a data-parallel stream
(gathers and reduce-scatters in launch order, as one NCCL communicator serialises them) and a pipeline stream for
the sends of schedules that overlap them; the collectives hidden behind a pass run beside it. A pass is a
generator of *waits*: a compute segment (a kernel event after its duration), a transfer (a flow in
``network.FlowNetwork``, done when its bytes are through at the fair rate), or a group of launched transfers.
A pass closes when its overlapped transfers have (as the closed form's window does). The optimizer of a rank
waits for its last gradient bucket; the step ends with the last optimizer plus the fixed per-step overhead.

Every interval is recorded with the interval that let it start, so the critical path is read backwards from the
last one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np

from rainier.parallel.plan import Schedule
from rainier.sim.kernel import Environment, Event
from rainier.sim.training.graph import (
    PassId,
    PassKind,
    PassWork,
    RankWork,
    StepGraph,
    Transfer,
    forward_limit,
    static_order,
    weight_delay,
)
from rainier.sim.training.network import Flow, FlowNetwork


@dataclass(frozen=True, slots=True)
class Interval:
    """Something a rank class did: on ``lane`` from ``start_s`` to ``end_s``; ``cause`` = enabling interval."""

    rank: int
    lane: str  # compute, comm (blocking), overlap, dp, pp
    category: str  # forward, backward, weight, recompute, optimizer, tp, ep, cp, pp, dp, fsdp
    start_s: float
    end_s: float
    cause: int  # index of the interval that ended when this one could start (-1: the step's start)
    work_s: float = 0.0  # a transfer's time alone


@dataclass(slots=True)
class _Group:
    outstanding: int = 0
    last: int = -1
    waiter: Callable[[int], None] | None = None


@dataclass(slots=True)
class _Wait:
    kind: str  # compute, transfer, group
    seconds: float = 0.0
    transfer: Transfer | None = None
    group: _Group | None = None
    category: str = ""


@dataclass(slots=True)
class _Rank:
    work: RankWork
    order: list[PassId] | None
    position: int = 0
    busy: bool = False
    last: int = -1  # the rank's last compute-stream interval
    in_flight: int = 0
    pending_weights: list[PassId] = field(default_factory=list)
    started_grads: dict[int, int] = field(default_factory=dict)  # weight-gradient passes started, per chunk
    grads: _Group = field(default_factory=_Group)
    gathers: dict[tuple[int, int], _Group] = field(default_factory=dict)
    dp_queue: list[tuple[Transfer, _Group, str, int]] = field(default_factory=list)
    dp_busy: bool = False
    dp_last: int = -1
    pp_queue: list[tuple[Transfer, Callable[[int], None]]] = field(default_factory=list)
    pp_busy: bool = False
    done_passes: int = 0
    optimizer_started: bool = False


class StepRun:
    """One simulation of a :class:`StepGraph` (``sharing=False``: transfers never slow each other)."""

    def __init__(self, graph: StepGraph, *, sharing: bool = True, record_links: bool = False) -> None:
        self.graph = graph
        self.env = Environment(np.random.default_rng(0))
        self.network = FlowNetwork(self.env, sharing=sharing, record=record_links)
        self.intervals: list[Interval] = []
        self.ranks = [_Rank(work=w, order=static_order(graph, i)) for i, w in enumerate(graph.ranks)]
        self.arrived: dict[tuple[PassKind, int, int], int] = {}  # input of a pass ready -> enabling interval
        self.done: dict[PassId, int] = {}
        self.started: set[PassId] = set()
        self.finished_ranks = 0
        self.end_interval = -1
        self.visits: list[list[tuple[int, int]]] = [[] for _ in graph.ranks]  # (micro-batch, virtual) per rank
        for j in range(graph.num_micro_batches):
            for v in range(graph.num_virtual):
                self.visits[graph.rank_of(j, v)].append((j, v))
        kinds = 3 if graph.split_weight else 2
        self.passes_per_rank = [kinds * len(v) for v in self.visits]
        # Greedy ranks look at earlier micro-batches first and, within one, the visit nearest its path's end.
        self.greedy_order = [sorted(v, key=lambda visit: (visit[0], -visit[1])) for v in self.visits]

    # -- recording ---------------------------------------------------------------------------------------------
    def _record(self, interval: Interval) -> int:
        self.intervals.append(interval)
        return len(self.intervals) - 1

    def _later(self, a: int, b: int) -> int:
        if a < 0:
            return b
        if b < 0:
            return a
        return a if self.intervals[a].end_s >= self.intervals[b].end_s else b

    # -- running -----------------------------------------------------------------------------------------------
    def run(self) -> float:
        """Simulate the step; returns its time in seconds."""
        g = self.graph
        for index, rank in enumerate(self.ranks):
            gather = rank.work.param_gather
            if gather is not None:  # the step's parameter all-gather, chunk by chunk in order of first use
                blocks = rank.work.passes[PassKind.FORWARD].blocks
                for chunk in range(2 if g.schedule is Schedule.DUALPIPE else g.chunks):
                    for block in range(blocks):
                        group = _Group()
                        rank.gathers[(chunk, block)] = group
                        self._launch_dp(index, gather.scaled(1.0 / blocks), group, "dp", -1)
            self._try(index)
        self.env.run()
        if self.finished_ranks != len(self.ranks):
            raise RuntimeError(f"simulation stalled: {self.finished_ranks} of {len(self.ranks)} ranks finished")
        end = self.intervals[self.end_interval].end_s if self.end_interval >= 0 else 0.0
        return end + g.step_overhead_s

    def _ready(self, pid: PassId) -> int | None:
        """The interval that made ``pid``'s input available (-1 at the start), or None if not yet."""
        kind, j, v = pid
        if kind is PassKind.FORWARD:
            return -1 if v == 0 else self.arrived.get((kind, j, v))
        if kind is PassKind.BACKWARD:
            own = self.done.get((PassKind.FORWARD, j, v))
            if own is None:
                return None
            if v == self.graph.num_virtual - 1:
                return own
            upstream = self.arrived.get((kind, j, v))
            return None if upstream is None else self._later(own, upstream)
        return self.done.get((PassKind.BACKWARD, j, v))

    def _choose(self, index: int) -> tuple[PassId, int] | None:
        rank = self.ranks[index]
        g = self.graph
        delay = weight_delay(g, index)
        if rank.pending_weights and len(rank.pending_weights) > delay:
            pid = rank.pending_weights.pop(0)
            return pid, self.done[(PassKind.BACKWARD, pid[1], pid[2])]
        if rank.order is not None:
            if rank.position < len(rank.order):
                pid = rank.order[rank.position]
                cause = self._ready(pid)
                if cause is not None:
                    rank.position += 1
                    return pid, cause
            if rank.pending_weights:
                pid = rank.pending_weights.pop(0)
                return pid, self.done[(PassKind.BACKWARD, pid[1], pid[2])]
            return None
        # Greedy (ZB-V, DualPipe): a ready backward, else a forward within the activation limit, else a weight pass.
        best: tuple[PassId, int] | None = None
        for kind in (PassKind.BACKWARD, PassKind.FORWARD):
            full = kind is PassKind.FORWARD and rank.in_flight >= forward_limit(g, index)
            for j, v in self.greedy_order[index]:
                pid = (kind, j, v)
                if pid in self.started or (full and self._injects(pid)):
                    continue
                cause = self._ready(pid)
                if cause is not None:
                    best = (pid, cause)
                    break
            if best is not None:
                break
        if best is None and rank.pending_weights:
            pid = rank.pending_weights.pop(0)
            return pid, self.done[(PassKind.BACKWARD, pid[1], pid[2])]
        return best

    def _injects(self, pid: PassId) -> bool:
        """Whether a greedy rank's activation limit counts ``pid``: a micro-batch's first visit to the rank."""
        g = self.graph
        if g.schedule is Schedule.DUALPIPE:
            return pid[2] == 0
        return g.schedule is Schedule.ZB_V and pid[2] < g.num_stages

    def _try(self, index: int) -> None:
        rank = self.ranks[index]
        if rank.busy or rank.optimizer_started:
            return
        choice = self._choose(index)
        if choice is None:
            self._maybe_optimizer(index)
            return
        pid, cause = choice
        self.started.add(pid)
        rank.busy = True
        rank.in_flight += 1 if pid[0] is PassKind.FORWARD else -1 if pid[0] is PassKind.BACKWARD else 0
        proc = self._pass(index, pid)
        next(proc)  # to its first wait, which takes the cause of its start
        self._drive(index, proc, self._later(rank.last, cause))

    def _drive(self, index: int, proc: Generator[_Wait, int, None], cause: int) -> None:
        """Advance a pass generator until it waits; ``cause`` is the interval that let it go on."""
        while True:
            try:
                wait = proc.send(cause)
            except StopIteration:
                return
            if wait.kind == "compute":
                now = self.env.now
                cause = self._record(Interval(index, "compute", wait.category, now, now + wait.seconds, cause))
                if wait.seconds > 0.0:
                    self.env.schedule(wait.seconds, self._resume, payload=(index, proc, cause))
                    return
            elif wait.kind == "transfer":
                transfer = wait.transfer
                assert transfer is not None
                if transfer.work_s <= 0.0:
                    continue

                def finished(done: int, proc: Generator[_Wait, int, None] = proc) -> None:
                    self._drive(index, proc, done)

                self._transfer(index, transfer, "comm", cause, finished)
                return
            else:
                group = wait.group
                assert group is not None
                if group.outstanding == 0:
                    cause = self._later(cause, group.last)
                    continue

                def released(last: int, proc: Generator[_Wait, int, None] = proc, c: int = cause) -> None:
                    self._drive(index, proc, self._later(c, last))

                group.waiter = released
                return

    def _resume(self, event: Event) -> None:
        index, proc, cause = event.payload
        self._drive(index, proc, cause)

    # -- side streams ------------------------------------------------------------------------------------------
    def _transfer(
        self, index: int, transfer: Transfer, lane: str, cause: int, on_done: Callable[[int], None], phase: int = 0
    ) -> None:
        """Run ``transfer``'s phases one after the other as flows; ``on_done(last interval)`` after the last."""
        share, demand = transfer.phases[phase]

        def finished(flow: Flow) -> None:
            done = self._record(Interval(index, lane, flow.label, flow.started_s, flow.ended_s, cause, flow.work_s))
            if phase + 1 < len(transfer.phases):
                self._transfer(index, transfer, lane, done, on_done, phase + 1)
            else:
                on_done(done)

        self.network.start(Flow(index, transfer.work_s * share, demand, finished, transfer.category))

    def _launch(self, index: int, transfer: Transfer, group: _Group, lane: str, cause: int) -> None:
        """A transfer beside the compute stream (no queue), counted in ``group``."""
        if transfer.work_s <= 0.0:
            return
        group.outstanding += 1
        self._transfer(index, transfer, lane, cause, lambda done: self._release(group, done))

    def _release(self, group: _Group, done: int) -> None:
        group.outstanding -= 1
        group.last = self._later(group.last, done)
        if group.outstanding == 0 and group.waiter is not None:
            waiter, group.waiter = group.waiter, None
            waiter(group.last)

    def _launch_dp(self, index: int, transfer: Transfer, group: _Group, lane: str, cause: int) -> None:
        """A transfer on the rank's data-parallel stream, after those launched before it."""
        if transfer.work_s <= 0.0:
            return
        group.outstanding += 1
        rank = self.ranks[index]
        rank.dp_queue.append((transfer, group, lane, cause))
        self._pump_dp(index)

    def _pump_dp(self, index: int) -> None:
        rank = self.ranks[index]
        if rank.dp_busy or not rank.dp_queue:
            return
        transfer, group, lane, launched = rank.dp_queue.pop(0)
        cause = self._later(launched, rank.dp_last)
        rank.dp_busy = True

        def finished(done: int) -> None:
            rank.dp_last = done
            rank.dp_busy = False
            self._release(group, done)
            self._pump_dp(index)
            self._maybe_optimizer(index)

        self._transfer(index, transfer, lane, cause, finished)

    def _send(self, index: int, transfer: Transfer, deliver: Callable[[int], None], cause: int) -> None:
        rank = self.ranks[index]
        rank.pp_queue.append((transfer, deliver))
        if rank.pp_busy:
            return
        self._pump_pp(index, cause)

    def _pump_pp(self, index: int, cause: int) -> None:
        rank = self.ranks[index]
        if rank.pp_busy or not rank.pp_queue:
            return
        transfer, deliver = rank.pp_queue.pop(0)
        rank.pp_busy = True

        def finished(done: int) -> None:
            rank.pp_busy = False
            deliver(done)
            self._pump_pp(index, done)

        self._transfer(index, transfer, "pp", cause, finished)

    # -- one pass ----------------------------------------------------------------------------------------------
    def _pass(self, index: int, pid: PassId) -> Generator[_Wait, int, None]:
        g = self.graph
        rank = self.ranks[index]
        kind, j, v = pid
        chunk = g.chunk_of(j, v)
        work: PassWork = rank.work.passes[kind]
        cause = yield _Wait("group", group=_Group())  # the first resume carries the cause of the start
        side = _Group()
        for transfer in work.hidden:
            self._launch(index, transfer, side, "overlap", cause)
        last_grads = False
        if kind is PassKind.WEIGHT or (kind is PassKind.BACKWARD and not g.split_weight):
            rank.started_grads[chunk] = rank.started_grads.get(chunk, 0) + 1
            per_chunk = g.num_micro_batches // 2 if g.schedule is Schedule.DUALPIPE else g.num_micro_batches
            last_grads = rank.started_grads[chunk] == per_chunk
        # Layers are cut into blocks only where buckets of data-parallel traffic follow them; elsewhere a pass is
        # one compute segment and its blocking transfers (the same time while no transfer is slowed).
        bucketed = (
            (work.gather is not None and kind is not PassKind.WEIGHT)
            or work.scatter is not None
            or (last_grads and rank.work.reduce is not None)
            or (kind is PassKind.FORWARD and (chunk, 0) in rank.gathers)
        )
        blocks = work.blocks if bucketed else 1
        gathers: list[_Group] = []
        if work.gather is not None and kind is not PassKind.WEIGHT:
            for _ in range(blocks):
                group = _Group()
                gathers.append(group)
                self._launch_dp(index, work.gather.scaled(1.0 / blocks), group, "dp", cause)
        label = {PassKind.FORWARD: "forward", PassKind.BACKWARD: "backward", PassKind.WEIGHT: "weight"}[kind]
        for block in range(blocks):
            if gathers:
                cause = yield _Wait("group", group=gathers[block])
            first_use = rank.gathers.get((chunk, block)) if bucketed else None
            if kind is PassKind.FORWARD and first_use is not None:
                cause = yield _Wait("group", group=first_use)
            if work.recompute_s > 0.0:
                cause = yield _Wait("compute", seconds=work.recompute_s / blocks, category="recompute")
            cause = yield _Wait("compute", seconds=work.compute_s / blocks, category=label)
            for transfer in work.blocking:
                cause = yield _Wait("transfer", transfer=transfer.scaled(1.0 / blocks))
            if work.scatter is not None:
                # Reduce-scatters keep running behind later passes (DeepSpeed, FSDP); the optimizer waits for them.
                self._launch_dp(index, work.scatter.scaled(1.0 / blocks), rank.grads, "dp", cause)
            if last_grads and rank.work.reduce is not None:
                self._launch_dp(index, rank.work.reduce.scaled(1.0 / blocks), rank.grads, "dp", cause)
        if kind is not PassKind.FORWARD:
            for key in [k for k in rank.gathers if k[0] == chunk]:
                del rank.gathers[key]  # later forwards of the chunk have their parameters
        cause = yield _Wait("group", group=side)
        send = rank.work.send
        to_next = kind is PassKind.FORWARD and v < g.num_virtual - 1
        to_previous = kind is PassKind.BACKWARD and v > 0
        if send is not None and rank.work.send_blocks and (to_next or to_previous):
            cause = yield _Wait("transfer", transfer=send)
        self._finish(index, pid, to_next, to_previous, send is not None and not rank.work.send_blocks, cause)

    def _finish(self, index: int, pid: PassId, to_next: bool, to_previous: bool, async_send: bool, last: int) -> None:
        g = self.graph
        rank = self.ranks[index]
        kind, j, v = pid
        rank.last = last
        self.done[pid] = last
        rank.busy = False
        rank.done_passes += 1
        if kind is PassKind.BACKWARD and g.split_weight:
            rank.pending_weights.append((PassKind.WEIGHT, j, v))
        targets: list[tuple[PassKind, int, int]] = []
        if to_next:
            targets.append((PassKind.FORWARD, j, v + 1))
        if to_previous:
            targets.append((PassKind.BACKWARD, j, v - 1))
        for target in targets:
            receiver = g.rank_of(j, target[2])

            def deliver(cause: int, target: tuple[PassKind, int, int] = target, receiver: int = receiver) -> None:
                self.arrived[target] = cause
                self._try(receiver)

            if async_send and self.ranks[index].work.send is not None and receiver != index:
                send = self.ranks[index].work.send
                assert send is not None
                self._send(index, send, deliver, last)
            else:
                deliver(last)
        self._try(index)

    def _maybe_optimizer(self, index: int) -> None:
        rank = self.ranks[index]
        if rank.optimizer_started or rank.busy or rank.done_passes < self.passes_per_rank[index]:
            return
        if rank.grads.outstanding > 0:
            return
        rank.optimizer_started = True
        cause = self._later(rank.last, rank.grads.last)
        now = self.env.now
        seconds = rank.work.optimizer_s
        end = self._record(Interval(index, "compute", "optimizer", now, now + seconds, cause))

        def finished(_: Event, end: int = end) -> None:
            self.finished_ranks += 1
            if self.end_interval < 0 or self.intervals[end].end_s > self.intervals[self.end_interval].end_s:
                self.end_interval = end

        self.env.schedule(seconds, finished)


def critical_path(intervals: list[Interval], end: int) -> list[Interval]:
    """The chain of intervals that led to ``end``, first to last."""
    path = []
    seen = set()
    while end >= 0 and end not in seen:
        seen.add(end)
        path.append(intervals[end])
        end = intervals[end].cause
    return path[::-1]


def union_length(spans: list[tuple[float, float]]) -> float:
    """Total time covered by possibly overlapping ``spans``."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total
