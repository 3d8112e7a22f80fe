"""Chrome/Perfetto traces: event structure, a hand-computed 1F1B schedule, end time and bubbles against the step
model's breakdown, lanes that never overlap, monotone counters, JSON round trip and write errors."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rainier.api import run_estimate
from rainier.errors import InputError
from rainier.parallel.plan import Plan, Schedule
from rainier.perf.result import StepBreakdown, StepEstimate
from rainier.report.trace import serving_trace, step_trace, write_trace
from rainier.serve.simulate import Request, ServeScenario, ServeTimeline, simulate_timeline

US = 1e6
PLANS = {
    "1f1b": "tp=8,pp=4,mbs=1,gbs=64",
    "interleaved": "tp=8,pp=4,vpp=2,mbs=1,gbs=64",
    "gpipe": "tp=8,pp=4,mbs=1,gbs=32,schedule=gpipe",
    "zero-bubble": "tp=8,pp=4,mbs=1,gbs=64,schedule=zero-bubble",
    "pp1": "tp=8,pp=1,mbs=1,gbs=64,recompute=full",
    "pp8-full": "tp=8,pp=8,mbs=1,gbs=32,recompute=full,sp=true",
}
EXACT = ("1f1b", "interleaved", "gpipe", "pp8-full")


@pytest.fixture(scope="module")
def estimates() -> dict[str, StepEstimate]:
    return {
        key: run_estimate(model="llama-3-70b", accelerator="h100-sxm", count=64, plan=plan)
        for key, plan in PLANS.items()
    }


@pytest.fixture(scope="module")
def traces(estimates: dict[str, StepEstimate]) -> dict[str, dict[str, Any]]:
    return {key: step_trace(est) for key, est in estimates.items()}


def slices(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in doc["traceEvents"] if e["ph"] == "X"]


def per_tid_totals(doc: dict[str, Any], cat: str) -> dict[int, float]:
    totals: dict[int, float] = defaultdict(float)
    for e in slices(doc):
        if e["cat"] == cat:
            totals[e["tid"]] += e["dur"] / US
    return totals


def trace_end_s(doc: dict[str, Any]) -> float:
    return max(e["ts"] + e["dur"] for e in slices(doc)) / US


def assert_well_formed(doc: dict[str, Any]) -> None:
    assert set(doc) == {"traceEvents", "displayTimeUnit", "otherData"}
    assert doc["displayTimeUnit"] == "ms"
    for event in doc["traceEvents"]:
        assert {"ph", "ts", "pid", "tid", "name"} <= set(event), event
        if event["ph"] == "X":
            assert event["dur"] >= 0, event
            assert event["cat"]


def assert_no_overlap(doc: dict[str, Any]) -> None:
    lanes: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for e in slices(doc):
        lanes[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    for spans in lanes.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end - 1e-6, (end, start)


# ------------------------------------------------------------------------------------------------------------------
# Training step
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(PLANS))
def test_step_trace_is_well_formed_and_names_every_stage(traces: dict[str, dict[str, Any]], key: str) -> None:
    doc = traces[key]
    assert_well_formed(doc)
    assert_no_overlap(doc)
    pp = doc["otherData"]["plan"]["pp"]
    names = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert names == {s: f"stage {s}" for s in range(pp)}
    assert any(e["name"] == "process_name" and "llama-3-70b" in e["args"]["name"] for e in doc["traceEvents"])
    assert {e["tid"] for e in slices(doc)} == set(range(pp))
    other = doc["otherData"]
    assert other["model"] == "llama-3-70b" and other["breakdown_s"]["compute"] > 0 and other["cluster"]
    assert {e["cat"] for e in slices(doc)} >= {"compute", "comm", "optimizer", "overhead"}


@pytest.mark.parametrize("key", (*EXACT, "pp1"))
def test_trace_ends_at_the_step_time(
    traces: dict[str, dict[str, Any]], estimates: dict[str, StepEstimate], key: str
) -> None:
    step = estimates[key].step_time_s
    assert trace_end_s(traces[key]) == pytest.approx(step, rel=1e-6)
    assert traces[key]["otherData"]["trace_end_s"] == pytest.approx(step, rel=1e-9)
    # every stage ends together, after the optimizer and the fixed overhead
    ends = {e["tid"]: e["ts"] + e["dur"] for e in slices(traces[key]) if e["name"] == "fixed overhead"}
    assert len(ends) == estimates[key].plan.pp_degree
    assert max(ends.values()) - min(ends.values()) < 1e-3


def test_zero_bubble_is_drawn_as_a_greedy_zb_h1(
    traces: dict[str, dict[str, Any]], estimates: dict[str, StepEstimate]
) -> None:
    """The zero-bubble trace is an illustration (report.trace docstring): close to the step, never a 1F1B."""
    est = estimates["zero-bubble"]
    assert trace_end_s(traces["zero-bubble"]) == pytest.approx(est.step_time_s, rel=0.25)
    weights = [e for e in slices(traces["zero-bubble"]) if e["name"].startswith("W")]
    assert len(weights) == 4 * est.plan.num_microbatches
    one_f_one_b = estimates["1f1b"]
    assert est.breakdown.pipeline_bubble < one_f_one_b.breakdown.pipeline_bubble


@pytest.mark.parametrize("key", EXACT)
def test_every_stage_bubble_matches_the_breakdown(
    traces: dict[str, dict[str, Any]], estimates: dict[str, StepEstimate], key: str
) -> None:
    est, doc = estimates[key], traces[key]
    bubbles = per_tid_totals(doc, "bubble")
    for stage in range(est.plan.pp_degree):
        assert bubbles[stage] == pytest.approx(est.breakdown.pipeline_bubble, rel=1e-4), stage
    # the stages before the last wait for the LM head on the last stage once per micro-batch
    head = doc["otherData"]["lm_head_per_microbatch_s"]
    assert 0 < head < doc["otherData"]["per_microbatch_s"] * 0.2
    imbalance = per_tid_totals(doc, "imbalance")
    pp = est.plan.pp_degree
    for stage in range(pp - 1):
        assert imbalance[stage] == pytest.approx(est.plan.num_microbatches * head, rel=1e-4)
    assert imbalance.get(pp - 1, 0.0) == 0.0


@pytest.mark.parametrize("key", (*EXACT, "pp1"))
def test_last_stage_work_adds_up_to_the_breakdown(
    traces: dict[str, dict[str, Any]], estimates: dict[str, StepEstimate], key: str
) -> None:
    b = estimates[key].breakdown
    last = estimates[key].plan.pp_degree - 1
    doc = traces[key]
    assert per_tid_totals(doc, "compute")[last] == pytest.approx(b.compute, rel=1e-6)
    assert per_tid_totals(doc, "recompute").get(last, 0.0) == pytest.approx(b.recompute, rel=1e-6, abs=1e-9)
    comm = b.tp_comm + b.cp_comm + b.ep_comm + b.pp_comm + b.dp_comm_exposed
    assert per_tid_totals(doc, "comm")[last] == pytest.approx(comm, rel=1e-6)
    assert per_tid_totals(doc, "optimizer")[last] == pytest.approx(b.optimizer, rel=1e-6)


def test_pp1_has_no_bubble_and_recompute_before_each_backward(traces: dict[str, dict[str, Any]]) -> None:
    doc = traces["pp1"]
    assert not per_tid_totals(doc, "bubble") and not per_tid_totals(doc, "imbalance")
    names = [e["name"] for e in sorted(slices(doc), key=lambda e: e["ts"]) if e["cat"] in {"compute", "recompute"}]
    assert names[:6] == ["F0", "recompute", "B0", "F1", "recompute", "B1"]
    assert {e["name"] for e in slices(doc) if e["cat"] == "comm"} >= {"tp collectives", "tp collectives (recompute)"}


def test_1f1b_order_warm_up_steady_cool_down(traces: dict[str, dict[str, Any]]) -> None:
    doc = traces["1f1b"]
    m = doc["otherData"]["num_microbatches"]
    order: dict[int, list[str]] = defaultdict(list)
    for e in sorted(slices(doc), key=lambda e: e["ts"]):
        if e["name"][0] in "FB" and e["cat"] == "compute" and e["name"][1:].isdigit():
            order[e["tid"]].append(e["name"])
    assert order[0][:5] == ["F0", "F1", "F2", "F3", "B0"]  # pp - 1 = 3 warm-up forwards
    assert order[3][:4] == ["F0", "B0", "F1", "B1"]
    assert order[1][-3:] == [f"B{m - 3}", f"B{m - 2}", f"B{m - 1}"]
    assert all(len(o) == 2 * m for o in order.values())


def test_interleaved_runs_every_chunk(traces: dict[str, dict[str, Any]]) -> None:
    doc = traces["interleaved"]
    m = doc["otherData"]["num_microbatches"]
    names = {e["name"] for e in slices(doc) if e["tid"] == 0 and e["cat"] == "compute"}
    assert {f"F{i}.{c}" for i in range(m) for c in range(2)} <= names
    assert {f"B{i}.{c}" for i in range(m) for c in range(2)} <= names
    # the LM head runs on the last virtual stage only: stage pp-1, chunk vpp-1
    head = [e for e in slices(doc) if e["name"] == "LM head + loss"]
    assert {(e["tid"], e["args"]["chunk"]) for e in head} == {(3, 1)}


def test_hand_computed_two_stage_schedule(estimates: dict[str, StepEstimate]) -> None:
    """pp=2, m=2, forward 1 s and backward 2 s per micro-batch, no head: F0 [0,1] F1 [1,2] B0 [4,6] B1 [7,9] on
    stage 0, F0 [1,2] B0 [2,4] F1 [4,5] B1 [5,7] on stage 1; bubble 3 s = (pp - 1) x 3 s on each."""
    plan = Plan(tp_degree=1, pp_degree=2, dp_degree=1, mbs=1, gbs=2, schedule=Schedule.ONE_F_ONE_B)
    breakdown = StepBreakdown(compute=6.0, pipeline_bubble=3.0, optimizer=0.5, other=0.25)
    est = replace(estimates["1f1b"], plan=plan, breakdown=breakdown, step_time_s=breakdown.total)
    doc = step_trace(est)
    log = sorted((e["tid"], e["ts"] / US, e["dur"] / US, e["name"]) for e in slices(doc))
    assert log == [
        (0, 0.0, 1.0, "F0"),
        (0, 1.0, 1.0, "F1"),
        (0, 2.0, 2.0, "bubble"),
        (0, 4.0, 2.0, "B0"),
        (0, 6.0, 1.0, "bubble"),
        (0, 7.0, 2.0, "B1"),
        (0, 9.0, 0.5, "optimizer step"),
        (0, 9.5, 0.25, "fixed overhead"),
        (1, 0.0, 1.0, "bubble"),
        (1, 1.0, 1.0, "F0"),
        (1, 2.0, 2.0, "B0"),
        (1, 4.0, 1.0, "F1"),
        (1, 5.0, 2.0, "B1"),
        (1, 7.0, 2.0, "bubble"),
        (1, 9.0, 0.5, "optimizer step"),
        (1, 9.5, 0.25, "fixed overhead"),
    ]


# ------------------------------------------------------------------------------------------------------------------
# Serving
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearCost:
    """A fake iteration cost: fixed time plus linear terms (satisfies IterationCost structurally)."""

    kv_capacity_tokens: int = 20_000
    kv_bytes_per_token: float = 1_000.0
    max_batch: int = 16
    fixed_s: float = 0.01
    prefill_s_per_token: float = 1e-5
    decode_s_per_seq: float = 1e-4

    def iteration_s(self, prefill_tokens: int, decode_seqs: int, kv_tokens: int) -> float:
        return self.fixed_s + self.prefill_s_per_token * prefill_tokens + self.decode_s_per_seq * decode_seqs


@pytest.fixture(scope="module")
def colocated() -> ServeTimeline:
    requests = [
        Request(arrival_s=0.05 * i, input_len=200 + 37 * (i % 9), output_len=20 + 13 * (i % 7)) for i in range(300)
    ]
    requests[10] = Request(arrival_s=0.5, input_len=30_000, output_len=10)  # never fits the KV cache: rejected
    return simulate_timeline(ServeScenario(cost=LinearCost(), replicas=2, requests=tuple(requests)))


@pytest.fixture(scope="module")
def disaggregated() -> ServeTimeline:
    scenario = ServeScenario(
        cost=LinearCost(),
        replicas=2,
        rate_per_s=30.0,
        duration_s=5.0,
        input_len=500,
        output_len=40,
        prefill_cost=LinearCost(),
        prefill_replicas=1,
        kv_link_bytes_per_s=1e8,
        seed=3,
    )
    return simulate_timeline(scenario)


def test_serving_trace_structure_and_lanes(colocated: ServeTimeline) -> None:
    doc = serving_trace(colocated)
    assert_well_formed(doc)
    assert_no_overlap(doc)
    other = doc["otherData"]
    assert other["requests_total"] == 300 and other["rejected_traced"] == 1 and other["requests_traced"] == 300
    rejected = [e for e in doc["traceEvents"] if e["ph"] == "i"]
    assert [e["args"]["request"] for e in rejected] == [10]
    by_request: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in slices(doc):
        by_request[e["args"]["request"]].append(e)
    assert len(by_request) == 299
    for rid, parts in by_request.items():
        assert len({e["tid"] for e in parts}) == 1  # one lane per request
        parts.sort(key=lambda e: e["ts"])
        assert parts[0]["ts"] == pytest.approx(colocated.arrival_s[rid] * US, abs=1e-3)
        assert parts[-1]["ts"] + parts[-1]["dur"] == pytest.approx(colocated.finish_s[rid] * US, abs=1e-3)
        assert next(e["name"] for e in parts if e["name"] != "queue") == "prefill"
        prefill_end = next(e["ts"] + e["dur"] for e in parts if e["name"] == "prefill")
        assert prefill_end == pytest.approx(colocated.first_token_s[rid] * US, abs=1e-3)
    lane_names = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert lane_names[0] == "rejected" and len(lane_names) == other["lanes"] + 1


def test_serving_counters_are_monotone_and_consistent(colocated: ServeTimeline) -> None:
    doc = serving_trace(colocated)
    for name in ("requests in system", "running decodes"):
        counter = [e for e in doc["traceEvents"] if e["ph"] == "C" and e["name"] == name]
        assert counter, name
        times = [e["ts"] for e in counter]
        assert times == sorted(times) and len(set(times)) == len(times)
        values = [e["args"]["requests"] for e in counter]
        assert min(values) >= 0 and values[-1] == 0
    in_system = [e["args"]["requests"] for e in doc["traceEvents"] if e["name"] == "requests in system"]
    assert max(in_system) <= doc["otherData"]["requests_completed_traced"]


def test_serving_trace_keeps_the_first_requests(colocated: ServeTimeline) -> None:
    doc = serving_trace(colocated, max_requests=50)
    traced = {e["args"]["request"] for e in slices(doc)}
    assert traced == set(range(50)) - {10}
    assert doc["otherData"]["requests_traced"] == 50
    with pytest.raises(InputError, match="max_requests"):
        serving_trace(colocated, max_requests=0)


def test_disaggregated_trace_shows_kv_transfers(disaggregated: ServeTimeline) -> None:
    doc = serving_trace(disaggregated)
    assert_well_formed(doc)
    assert_no_overlap(doc)
    transfers = [e for e in slices(doc) if e["name"] == "KV transfer"]
    assert len(transfers) == int(np.sum(~np.isnan(disaggregated.transfer_s)))
    for e in transfers:
        rid = e["args"]["request"]
        assert e["ts"] == pytest.approx(disaggregated.first_token_s[rid] * US, abs=1e-3)
        assert e["dur"] == pytest.approx(disaggregated.transfer_s[rid] * US, abs=2e-3)
    assert doc["otherData"]["disaggregated"] is True


# ------------------------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------------------------


def test_json_round_trip(traces: dict[str, dict[str, Any]], colocated: ServeTimeline, tmp_path: Path) -> None:
    for name, doc in (("step", traces["interleaved"]), ("serve", serving_trace(colocated))):
        path = write_trace(doc, tmp_path / f"{name}.json")
        text = path.read_text()
        assert json.loads(text) == doc
        assert text == json.dumps(doc, separators=(",", ":"))


def test_write_trace_names_an_unwritable_path(traces: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "trace.json"
    with pytest.raises(InputError, match=r"no-such-dir/trace\.json: cannot write the trace"):
        write_trace(traces["pp1"], missing)
    with pytest.raises(InputError, match="cannot write the trace"):
        write_trace(traces["pp1"], tmp_path)  # a directory
