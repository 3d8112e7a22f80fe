"""Engine iterations recorded by the serving simulation and drawn in its trace."""

from __future__ import annotations

import dataclasses
import itertools

from rainier.api.serve_sim import simulation_scenario
from rainier.report.trace import BATCH_PID, serving_trace
from rainier.serve.simulate import simulate_timeline


def test_recorded_iterations_match_the_run_and_do_not_change_it() -> None:
    base = simulation_scenario(model="llama-3-8b", accelerator="h100-sxm", count=2, rate=10.0, duration=20.0, seed=4)
    plain = simulate_timeline(base)
    recorded = simulate_timeline(dataclasses.replace(base, record_batches=1_000_000))
    assert plain.batches == () and len(recorded.batches) == recorded.iterations == plain.iterations
    assert (recorded.finish_s == plain.finish_s).all()  # recording is observation only
    busy = sum(duration for _, _, _, duration, _, _ in recorded.batches)
    assert abs(busy - recorded.busy_s) < 1e-9 * max(1.0, busy)
    trace = serving_trace(recorded)
    slices = [e for e in trace["traceEvents"] if e.get("pid") == BATCH_PID and e["ph"] == "X"]
    assert len(slices) == recorded.iterations
    by_replica: dict[int, list[tuple[float, float]]] = {}
    for event in slices:
        by_replica.setdefault(event["tid"], []).append((event["ts"], event["ts"] + event["dur"]))
    for spans in by_replica.values():
        spans.sort()
        assert all(a_end <= b_start + 1e-6 for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    capped = simulate_timeline(dataclasses.replace(base, record_batches=5))
    assert len(capped.batches) == 5
