"""Chrome/Perfetto trace of a simulated training step (``rainier train simulate --trace PATH``).

Same format as ``report.trace`` (Chrome Trace Event Format: complete events ``"X"``, counters ``"C"``, metadata
``"M"``). One process per rank class (a pipeline rank and the ``tp x cp x dp`` ranks it stands for), with one
thread per stream: the compute stream, blocking transfers, transfers hidden behind compute, the data-parallel
stream and the pipeline sends. Each link class of a rank class is a counter of its use (1.0 = at capacity),
sampled at every change of the fair rates.
"""

from __future__ import annotations

from typing import Any

from rainier.errors import InputError
from rainier.report.trace import MAX_TRACE_EVENTS
from rainier.sim.training import SimulatedStep

LANES = {"compute": 0, "comm": 1, "overlap": 2, "dp": 3, "pp": 4}
LANE_NAMES = {
    "compute": "compute stream",
    "comm": "blocking transfers",
    "overlap": "overlapped transfers",
    "dp": "data-parallel stream",
    "pp": "pipeline sends",
}


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 3)


def sim_trace_events(sim: SimulatedStep) -> int:
    """Events the trace of ``sim`` will hold (slices, counter samples, metadata)."""
    counters = sum(len(used) or 1 for _, _, used in sim.link_samples)
    return len(sim.intervals) + counters + sim.num_rank_classes * (len(LANES) + 1)


def sim_trace(sim: SimulatedStep, *, max_events: int = MAX_TRACE_EVENTS) -> dict[str, Any]:
    """The trace document of a simulated step; refuses (``InputError``) more than ``max_events`` events."""
    needed = sim_trace_events(sim)
    if needed > max_events:
        raise InputError(
            f"--trace: this simulation has about {needed:,} trace events, more than the budget of {max_events:,}; "
            "raise it with --trace-max-events, or trace a smaller global batch"
        )
    est = sim.estimate
    events: list[dict[str, Any]] = []
    for rank in range(sim.num_rank_classes):
        pid = rank + 1
        name = f"pipeline rank {rank} ({sim.ranks_per_class:,} ranks)"
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": name}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
        for lane, tid in LANES.items():
            events.append(
                {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": LANE_NAMES[lane]}}
            )
    for item in sim.intervals:
        args: dict[str, Any] = {}
        if item.lane != "compute":
            args = {"alone_ms": item.work_s * 1e3, "slowed_ms": (item.end_s - item.start_s - item.work_s) * 1e3}
        events.append(
            {
                "name": item.category,
                "cat": item.lane,
                "ph": "X",
                "ts": _us(item.start_s),
                "dur": _us(item.end_s - item.start_s),
                "pid": item.rank + 1,
                "tid": LANES[item.lane],
                "args": args,
            }
        )
    for time_s, rank, used in sim.link_samples:
        events.append(
            {
                "name": "link use",
                "ph": "C",
                "ts": _us(time_s),
                "pid": rank + 1,
                "args": {k: round(v, 6) for k, v in used.items()},
            }
        )
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "title": f"simulated training step: {est.model} on {est.cluster} ({est.num_devices} x {est.accelerator})",
            "plan": est.plan.describe(),
            "step_time_s": sim.step_time_s,
            "estimate_step_time_s": est.step_time_s,
        },
    }
