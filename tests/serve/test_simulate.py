"""The serving simulator: hand-checked small cases, scheduler comparisons, KV limits, disaggregation, determinism,
Little's law, invariants (hypothesis) and input errors."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from rainier.report.serve_sim_view import serve_sim_tables
from rainier.serve.simulate import (
    IterationCost,
    LengthDistribution,
    Request,
    Scheduler,
    ServeScenario,
    simulate_serving,
    simulate_timeline,
)


@dataclass(frozen=True)
class LinearCost:
    """A fake cost: fixed time per iteration plus linear terms (satisfies IterationCost structurally)."""

    kv_capacity_tokens: int = 1_000_000
    kv_bytes_per_token: float = 1_000.0
    max_batch: int = 64
    fixed_s: float = 0.01
    prefill_s_per_token: float = 0.0
    decode_s_per_seq: float = 0.0
    kv_s_per_token: float = 0.0

    def iteration_s(self, prefill_tokens: int, decode_seqs: int, kv_tokens: int) -> float:
        return (
            self.fixed_s
            + self.prefill_s_per_token * prefill_tokens
            + self.decode_s_per_seq * decode_seqs
            + self.kv_s_per_token * kv_tokens
        )


@dataclass(frozen=True)
class RooflineCost:
    """A fake roofline: an iteration is bound by compute (2 x params FLOP per token) or by reading the weights and
    the KV cache, like an 8B model on an H100."""

    kv_capacity_tokens: int = 400_000
    kv_bytes_per_token: float = 131_072.0
    max_batch: int = 256
    flop_per_token: float = 16e9
    peak_flop_per_s: float = 8e14
    weight_bytes: float = 16e9
    hbm_bytes_per_s: float = 3e12
    overhead_s: float = 5e-4

    def iteration_s(self, prefill_tokens: int, decode_seqs: int, kv_tokens: int) -> float:
        compute = (prefill_tokens + decode_seqs) * self.flop_per_token / self.peak_flop_per_s
        memory = (self.weight_bytes + kv_tokens * self.kv_bytes_per_token) / self.hbm_bytes_per_s
        return self.overhead_s + max(compute, memory)


@dataclass(frozen=True)
class RecordingCost(LinearCost):
    """A linear cost that logs every call (prefill_tokens, decode_seqs, kv_tokens)."""

    calls: list[tuple[int, int, int]] = field(default_factory=list)

    def iteration_s(self, prefill_tokens: int, decode_seqs: int, kv_tokens: int) -> float:
        self.calls.append((prefill_tokens, decode_seqs, kv_tokens))
        return super().iteration_s(prefill_tokens, decode_seqs, kv_tokens)


def reqs(*rows: tuple[float, int, int]) -> tuple[Request, ...]:
    return tuple(Request(arrival_s=a, input_len=i, output_len=o) for a, i, o in rows)


def test_fakes_satisfy_the_protocol() -> None:
    assert isinstance(LinearCost(), IterationCost)
    assert isinstance(RooflineCost(), IterationCost)


# ---------------------------------------------------------------------------------------------------------------
# Exact small cases
# ---------------------------------------------------------------------------------------------------------------


def test_two_requests_by_hand() -> None:
    # iteration 1 prefills both prompts (20 tokens): 10 ms + 20 x 1 ms = 30 ms, both first tokens at 30 ms.
    # Iterations 2-3 decode both (10 + 2 x 2 = 14 ms each), 4-5 decode the longer one (12 ms each).
    cost = LinearCost(fixed_s=0.010, prefill_s_per_token=0.001, decode_s_per_seq=0.002)
    result = simulate_serving(ServeScenario(cost=cost, requests=reqs((0.0, 10, 3), (0.0, 10, 5))))
    out = result.to_dict()
    assert out["requests_completed"] == 2
    assert out["ttft_ms"]["p50"] == pytest.approx(30.0)
    e2e_short, e2e_long = 30 + 2 * 14, 30 + 2 * 14 + 2 * 12
    assert out["e2e_ms"]["mean"] == pytest.approx((e2e_short + e2e_long) / 2)
    assert out["duration_s"] == pytest.approx(e2e_long / 1e3)
    # TPOT = (e2e - ttft) / (output_len - 1): 28/2 = 14 and 52/4 = 13
    assert out["tpot_ms"]["mean"] == pytest.approx((14 + 13) / 2)
    assert out["iterations"] == 5
    assert out["mean_batch"] == pytest.approx((2 + 2 + 2 + 1 + 1) / 5)
    assert out["queue_ms"]["p99"] == 0.0
    assert out["utilisation"] == pytest.approx(1.0)
    assert out["output_tokens_per_s"] == pytest.approx(8 / (e2e_long / 1e3))


def test_kv_tokens_passed_to_the_cost() -> None:
    cost = RecordingCost()
    simulate_serving(ServeScenario(cost=cost, requests=reqs((0.0, 10, 3), (0.0, 7, 2))))
    # the prefill iteration decodes nothing; each decode appends one token to its cache
    assert cost.calls == [(17, 0, 0), (0, 2, 19), (0, 1, 12)]


def test_arrival_at_a_boundary_joins_that_boundary() -> None:
    cost = RecordingCost(fixed_s=0.5)
    simulate_serving(ServeScenario(cost=cost, requests=reqs((0.0, 4, 3), (0.5, 6, 2))))
    assert cost.calls[1] == (6, 1, 5)  # at t = 0.5 the second prompt is prefilled with the first's decode


def test_static_batch_returns_together() -> None:
    cost = LinearCost(fixed_s=0.01)
    result = simulate_serving(
        ServeScenario(cost=cost, requests=reqs((0.0, 10, 3), (0.0, 10, 5)), scheduler=Scheduler.STATIC)
    )
    assert result.ttft_ms is not None and result.e2e_ms is not None
    assert result.ttft_ms.p99 == pytest.approx(10.0)
    assert result.e2e_ms.p50 == pytest.approx(50.0)  # prefill + 4 padded decode steps, both return at the end
    assert result.mean_batch == pytest.approx(2.0)


def test_static_batch_admits_nothing_while_running() -> None:
    cost = LinearCost(fixed_s=0.01)
    timeline = simulate_timeline(
        ServeScenario(cost=cost, requests=reqs((0.0, 10, 4), (0.005, 10, 1)), scheduler=Scheduler.STATIC)
    )
    # the first batch (prefill + 3 decodes) runs to 40 ms; the second request waits for it
    assert timeline.queue_s.tolist() == pytest.approx([0.0, 0.035])
    assert timeline.finish_s.tolist() == pytest.approx([0.04, 0.05])


def test_static_batch_pads_kv_to_the_longest_output() -> None:
    # 30 cache tokens: 10 + 10 prompts padded to 8 outputs need 20 + 2 x 7 = 34, so the second waits
    cost = LinearCost(fixed_s=0.01, kv_capacity_tokens=30)
    timeline = simulate_timeline(
        ServeScenario(cost=cost, requests=reqs((0.0, 10, 3), (0.0, 10, 8)), scheduler=Scheduler.STATIC)
    )
    assert timeline.queue_s.tolist() == pytest.approx([0.0, 0.03])


@dataclass(frozen=True)
class PromptCountingCost(LinearCost):
    """A cost that also takes ``prefill_seqs`` (as ``serve.cost.ReplicaCost`` does) and logs it."""

    seqs: list[int] = field(default_factory=list)

    def iteration_s(self, prefill_tokens: int, decode_seqs: int, kv_tokens: int, prefill_seqs: int = 1) -> float:
        self.seqs.append(prefill_seqs)
        return super().iteration_s(prefill_tokens, decode_seqs, kv_tokens)


@pytest.mark.parametrize("scheduler", list(Scheduler))
def test_prompt_count_reaches_costs_that_take_it(scheduler: Scheduler) -> None:
    cost = PromptCountingCost()
    simulate_serving(ServeScenario(cost=cost, requests=reqs((0.0, 10, 2), (0.0, 20, 2)), scheduler=scheduler))
    assert cost.seqs == [2, 0]


def test_chunked_prefill_by_hand() -> None:
    cost = RecordingCost()
    scenario = ServeScenario(cost=cost, requests=reqs((0.0, 10, 2)), chunked_prefill=True, chunk_tokens=4)
    result = simulate_serving(scenario)
    assert [c[0] for c in cost.calls] == [4, 4, 2, 0]
    assert result.ttft_ms is not None and result.ttft_ms.p50 == pytest.approx(30.0)


def test_chunk_budget_counts_decodes() -> None:
    cost = RecordingCost()
    scenario = ServeScenario(
        cost=cost, requests=reqs((0.0, 2, 4), (0.005, 10, 2)), chunked_prefill=True, chunk_tokens=4
    )
    simulate_serving(scenario)
    # one running decode leaves 3 tokens of the budget to the new prompt
    assert [(p, d) for p, d, _ in cost.calls[:5]] == [(2, 0), (3, 1), (3, 1), (3, 1), (1, 0)]


def test_preemption_by_hand() -> None:
    # cache of 10 tokens: A (4 + 4 out) and B (3 + 4 out) fit at first; in iteration 3 the two decodes need 11
    # tokens, so B (newest) is preempted with 2 tokens generated and recomputes 3 + 2 prompt tokens once A is done
    cost = LinearCost(kv_capacity_tokens=10, fixed_s=1.0)
    timeline = simulate_timeline(ServeScenario(cost=cost, requests=reqs((0.0, 4, 4), (0.0, 3, 4))))
    assert timeline.preemptions == 1
    assert timeline.first_token_s.tolist() == [1.0, 1.0]  # B keeps its first first token
    assert timeline.finish_s.tolist() == [4.0, 6.0]
    assert timeline.queue_s.tolist() == [0.0, 2.0]  # B waits from its preemption (t=2) to A's end (t=4)


def test_too_long_request_is_rejected() -> None:
    cost = LinearCost(kv_capacity_tokens=100)
    result = simulate_serving(ServeScenario(cost=cost, requests=reqs((0.0, 90, 11), (0.0, 90, 12), (1.0, 5, 5))))
    assert (result.rejected, result.requests_completed, result.requests_submitted) == (1, 2, 3)
    assert any("1 requests rejected" in w for w in result.warnings)


# ---------------------------------------------------------------------------------------------------------------
# Disaggregated serving
# ---------------------------------------------------------------------------------------------------------------


def disaggregated(requests: tuple[Request, ...], **changes: Any) -> ServeScenario:
    base: dict[str, Any] = dict(
        cost=LinearCost(fixed_s=0.005, decode_s_per_seq=0.001),
        replicas=1,
        prefill_cost=LinearCost(fixed_s=0.002, prefill_s_per_token=1e-4, kv_bytes_per_token=2e5),
        prefill_replicas=1,
        kv_link_bytes_per_s=1e9,
        kv_link_latency_s=0.003,
        requests=requests,
    )
    base.update(changes)
    return ServeScenario(**base)


def test_disaggregation_adds_the_kv_transfer_exactly() -> None:
    result = simulate_serving(disaggregated(reqs((0.0, 100, 3))))
    prefill_s = 0.002 + 100 * 1e-4
    transfer_s = 0.003 + 100 * 2e5 / 1e9
    decode_s = 2 * (0.005 + 0.001)
    assert result.ttft_ms is not None and result.e2e_ms is not None and result.kv_transfer_ms is not None
    assert result.ttft_ms.p50 == pytest.approx(prefill_s * 1e3)
    assert result.kv_transfer_ms.p50 == pytest.approx(transfer_s * 1e3)
    assert result.e2e_ms.p50 == pytest.approx((prefill_s + transfer_s + decode_s) * 1e3)
    assert result.prefill_replicas == 1 and result.prefill_utilisation is not None


def test_transfers_share_the_prefill_replicas_link() -> None:
    timeline = simulate_timeline(disaggregated(reqs((0.0, 100, 3), (0.0, 100, 3))))
    one = 100 * 2e5 / 1e9
    assert timeline.transfer_s.tolist() == pytest.approx([one + 0.003, 2 * one + 0.003])


def test_single_token_requests_need_no_transfer() -> None:
    timeline = simulate_timeline(disaggregated(reqs((0.0, 100, 1))))
    assert np.isnan(timeline.transfer_s[0]) and timeline.finish_s[0] == timeline.first_token_s[0]


def test_prefill_pool_rejects_prompts_it_cannot_hold() -> None:
    prefill = LinearCost(kv_capacity_tokens=50)
    result = simulate_serving(disaggregated(reqs((0.0, 60, 2), (0.0, 40, 2)), prefill_cost=prefill))
    assert (result.rejected, result.requests_completed) == (1, 1)


# ---------------------------------------------------------------------------------------------------------------
# Behaviour under load
# ---------------------------------------------------------------------------------------------------------------


def loaded(**changes: Any) -> ServeScenario:
    base: dict[str, Any] = dict(
        cost=RooflineCost(max_batch=64),
        rate_per_s=15.0,
        duration_s=30.0,
        input_len=512,
        output_len=128,
        length_distribution=LengthDistribution.GEOMETRIC,
        seed=3,
    )
    base.update(changes)
    return ServeScenario(**base)


def test_continuous_beats_static_ttft_under_load() -> None:
    continuous = simulate_serving(loaded())
    static = simulate_serving(loaded(scheduler=Scheduler.STATIC))
    assert continuous.ttft_ms is not None and static.ttft_ms is not None
    assert continuous.ttft_ms.p99 < 0.1 * static.ttft_ms.p99
    assert continuous.requests_completed == static.requests_completed == continuous.requests_submitted


def long_prompt_mix() -> tuple[Request, ...]:
    """Short chats every 50 ms and an 8k-token prompt every second."""
    rows = []
    for i in range(600):
        long = i % 20 == 0
        rows.append((i * 0.05, 8192 if long else 128, 16 if long else 256))
    return reqs(*rows)


def test_chunked_prefill_lowers_tpot_tail() -> None:
    plain = simulate_serving(ServeScenario(cost=RooflineCost(), requests=long_prompt_mix()))
    chunked = simulate_serving(ServeScenario(cost=RooflineCost(), requests=long_prompt_mix(), chunked_prefill=True))
    assert plain.tpot_ms is not None and chunked.tpot_ms is not None
    assert chunked.tpot_ms.p99 < 0.97 * plain.tpot_ms.p99


def test_small_kv_cache_preempts_and_shrinks_batches() -> None:
    roomy = simulate_serving(loaded())
    tight = simulate_serving(loaded(cost=RooflineCost(max_batch=64, kv_capacity_tokens=8_000)))
    assert roomy.preemptions == 0 and tight.preemptions > 0
    assert tight.mean_batch < roomy.mean_batch
    assert tight.queue_ms is not None and roomy.queue_ms is not None and tight.queue_ms.p90 > roomy.queue_ms.p90
    assert tight.requests_completed + tight.rejected == tight.requests_submitted


def test_littles_law() -> None:
    window_s, rate = 200.0, 40.0
    scenario = loaded(rate_per_s=rate, duration_s=window_s, cost=RooflineCost(), output_len=64, seed=11)
    t = simulate_timeline(scenario)
    # time-average number of requests in the system over the arrival window
    in_window = np.clip(np.minimum(t.finish_s, window_s) - t.arrival_s, 0.0, None)
    mean_in_system = in_window.sum() / window_s
    mean_e2e = float(np.mean(t.finish_s - t.arrival_s))
    assert mean_in_system == pytest.approx(rate * mean_e2e, rel=0.03)


def test_length_distributions_keep_their_means() -> None:
    for kind in LengthDistribution:
        t = simulate_timeline(loaded(length_distribution=kind, duration_s=200.0, output_len=100, input_len=300))
        assert t.output_len.mean() == pytest.approx(100, rel=0.05)
        assert t.input_len.mean() == pytest.approx(300, rel=0.05)
        assert t.output_len.min() >= 1


def test_overload_is_flagged() -> None:
    result = simulate_serving(loaded(rate_per_s=60.0, duration_s=10.0, cost=LinearCost(fixed_s=0.05, max_batch=8)))
    assert any("overloaded" in w for w in result.warnings)


# ---------------------------------------------------------------------------------------------------------------
# Determinism and invariants
# ---------------------------------------------------------------------------------------------------------------


def test_same_seed_same_bytes() -> None:
    a = json.dumps(simulate_serving(loaded(chunked_prefill=True)).to_dict())
    b = json.dumps(simulate_serving(loaded(chunked_prefill=True)).to_dict())
    c = json.dumps(simulate_serving(loaded(chunked_prefill=True, seed=4)).to_dict())
    assert a == b
    assert a != c


def test_disaggregated_run_is_deterministic() -> None:
    scenario = loaded(
        cost=RooflineCost(),
        replicas=2,
        prefill_cost=RooflineCost(),
        prefill_replicas=1,
        kv_link_bytes_per_s=50e9,
        kv_link_latency_s=1e-5,
    )
    a, b = simulate_serving(scenario), simulate_serving(scenario)
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    assert a.kv_transfer_ms is not None and a.kv_transfer_ms.p50 > 0
    assert a.requests_completed == a.requests_submitted


arrivals = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=2.0, allow_nan=False),
        st.integers(min_value=1, max_value=400),
        st.integers(min_value=1, max_value=40),
    ),
    min_size=1,
    max_size=40,
)


# "More replicas never raise p50 TTFT" does not hold request by request for an iteration-level engine: with one
# more replica a long prompt can land in the first batch of a replica and slow the short prompts prefilled with it,
# or a request can arrive just after a boundary instead of just before (hypothesis finds both). What does hold:
# with a replica per request every request gets its least possible TTFT, so no smaller deployment beats its p50.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=arrivals,
    replicas=st.integers(min_value=1, max_value=4),
    chunked=st.booleans(),
    kv_capacity=st.sampled_from([500, 5_000, 1_000_000]),
)
def test_more_replicas_never_raise_ttft(
    rows: list[tuple[float, int, int]], replicas: int, chunked: bool, kv_capacity: int
) -> None:
    cost = LinearCost(
        fixed_s=0.01, prefill_s_per_token=1e-4, decode_s_per_seq=1e-4, max_batch=4, kv_capacity_tokens=kv_capacity
    )
    base = ServeScenario(cost=cost, requests=reqs(*rows), replicas=replicas, chunked_prefill=chunked, chunk_tokens=64)
    fewer, more = simulate_timeline(base), simulate_timeline(replace(base, replicas=len(rows)))
    kept = ~fewer.rejected
    ttft_fewer = fewer.first_token_s[kept] - fewer.arrival_s[kept]
    ttft_more = more.first_token_s[kept] - more.arrival_s[kept]
    assert np.all(ttft_more <= ttft_fewer + 1e-12)
    if kept.any():
        assert np.median(ttft_more) <= np.median(ttft_fewer) + 1e-12


def test_replicas_lower_median_ttft_under_poisson_load() -> None:
    medians = []
    for replicas in (1, 2, 4, 8):
        result = simulate_serving(loaded(rate_per_s=40.0, duration_s=10.0, replicas=replicas))
        assert result.ttft_ms is not None
        medians.append(result.ttft_ms.p50)
    assert medians == sorted(medians, reverse=True)


@settings(max_examples=40, deadline=None)
@given(rows=arrivals, replicas=st.integers(min_value=1, max_value=3), static=st.booleans())
def test_throughput_within_capacity(rows: list[tuple[float, int, int]], replicas: int, static: bool) -> None:
    cost = LinearCost(fixed_s=0.01, prefill_s_per_token=1e-5, max_batch=8)
    scheduler = Scheduler.STATIC if static else Scheduler.CONTINUOUS
    result = simulate_serving(ServeScenario(cost=cost, requests=reqs(*rows), replicas=replicas, scheduler=scheduler))
    # every iteration takes >= fixed_s and yields <= max_batch tokens per replica
    assert result.output_tokens_per_s <= replicas * cost.max_batch / cost.fixed_s * (1 + 1e-9)
    assert 0.0 <= result.utilisation <= 1.0 + 1e-9
    assert result.requests_completed == len(rows)


@settings(max_examples=50, deadline=None)
@given(rows=arrivals, chunked=st.booleans(), chunk=st.sampled_from([1, 3, 64]), disaggregate=st.booleans())
def test_every_token_is_computed_once(
    rows: list[tuple[float, int, int]], chunked: bool, chunk: int, disaggregate: bool
) -> None:
    # without preemption: prompt tokens prefilled = sum of input_len; one token per request from its prefill, the
    # other output_len - 1 from decode slots
    cost, prefill = RecordingCost(max_batch=4), RecordingCost(max_batch=4)
    extra: dict[str, Any] = (
        dict(prefill_cost=prefill, prefill_replicas=1, kv_link_bytes_per_s=1e6) if disaggregate else {}
    )
    scenario = ServeScenario(cost=cost, requests=reqs(*rows), chunked_prefill=chunked, chunk_tokens=chunk, **extra)
    simulate_serving(scenario)
    calls = cost.calls + prefill.calls
    assert sum(p for p, _, _ in calls) == sum(i for _, i, _ in rows)
    assert sum(d for _, d, _ in calls) + len(rows) == sum(o for _, _, o in rows)


@settings(max_examples=50, deadline=None)
@given(
    rows=arrivals,
    replicas=st.integers(min_value=1, max_value=3),
    kv_capacity=st.sampled_from([60, 200, 500]),
    chunked=st.booleans(),
    disaggregate=st.booleans(),
)
def test_tight_caches_still_finish_every_request(
    rows: list[tuple[float, int, int]], replicas: int, kv_capacity: int, chunked: bool, disaggregate: bool
) -> None:
    cost = LinearCost(fixed_s=0.01, prefill_s_per_token=1e-4, max_batch=6, kv_capacity_tokens=kv_capacity)
    extra: dict[str, Any] = dict(prefill_cost=cost, prefill_replicas=2, kv_link_bytes_per_s=1e6) if disaggregate else {}
    scenario = ServeScenario(
        cost=cost, requests=reqs(*rows), replicas=replicas, chunked_prefill=chunked, chunk_tokens=16, **extra
    )
    t = simulate_timeline(scenario)
    kept = ~t.rejected
    assert not np.isnan(t.finish_s[kept]).any() and np.isnan(t.finish_s[~kept]).all()
    assert (t.first_token_s[kept] >= t.arrival_s[kept]).all() and (t.finish_s[kept] >= t.first_token_s[kept]).all()
    assert (t.queue_s >= 0).all()


# ---------------------------------------------------------------------------------------------------------------
# Input errors and the report
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        (dict(replicas=0), "replicas"),
        (dict(rate_per_s=-1.0), "rate_per_s"),
        (dict(duration_s=float("nan")), "duration_s"),
        (dict(rate_per_s=None), "rate_per_s/duration_s"),
        (dict(chunk_tokens=0), "chunk_tokens"),
        (dict(input_len=0), "input_len"),
        (dict(seed=-1), "seed"),
        (dict(scheduler="static"), "scheduler"),
        (dict(scheduler=Scheduler.STATIC, chunked_prefill=True), "chunked_prefill"),
        (dict(cost=object()), "cost"),
        (dict(cost=LinearCost(max_batch=0)), "cost.max_batch"),
        (dict(requests=reqs((0.0, 1, 1))), "requests"),
        (dict(prefill_cost=LinearCost()), "prefill_replicas"),
        (dict(prefill_cost=LinearCost(), prefill_replicas=1), "kv_link_bytes_per_s"),
        (dict(prefill_replicas=2), "prefill_replicas"),
        (dict(kv_link_latency_s=-1.0), "kv_link_latency_s"),
        (dict(length_distribution="fixed"), "length_distribution"),
    ],
)
def test_bad_inputs_name_the_field(changes: dict[str, Any], field_name: str) -> None:
    base: dict[str, Any] = dict(cost=LinearCost(), rate_per_s=1.0, duration_s=1.0)
    base.update(changes)
    with pytest.raises(ValueError, match=f"^{field_name.replace('.', '[.]')}="):
        ServeScenario(**base)


def test_bad_request_fields() -> None:
    with pytest.raises(ValueError, match="output_len=0"):
        Request(arrival_s=0.0, input_len=1, output_len=0)
    with pytest.raises(ValueError, match="arrival_s=-1"):
        Request(arrival_s=-1.0, input_len=1, output_len=1)


def test_trace_warnings_reach_the_result_and_tables_render() -> None:
    scenario = disaggregated(reqs((0.0, 100, 3), (0.1, 50, 1)), warnings=["line 3: bad row"])
    result = simulate_serving(scenario)
    assert result.warnings[0] == "line 3: bad row"
    assert scenario.to_dict()["requests"] == 2
    console = Console(file=io.StringIO(), width=140)
    for source in (result, json.loads(json.dumps(result.to_dict()))):
        for table in serve_sim_tables(source):
            console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "KV transfer" in text and "line 3: bad row" in text and "1 prefill + 1 decode" in text


def test_a_pipeline_parallel_replica_keeps_one_micro_batch_group_per_stage_in_flight() -> None:
    """pp = 2 under in-flight batching: two groups of sequences one stage apart (vLLM's virtual engines), so an
    offline run serves twice the tokens per second at the same TPOT as one group crossing the stages alone, and
    each group holds half the cache."""
    from rainier.hardware import cluster_of
    from rainier.serve.cost import replica_cost
    from rainier.serve.efficiency import ServeEfficiency
    from rainier.serve.iteration import pipeline_groups
    from rainier.workload import get_model

    eff = ServeEfficiency(
        compute=0.6, memory=0.8, kv_memory=0.8, comm=0.5, collective_latency_s=1e-5, iteration_overhead_s=1e-3
    )
    piped = replace(replica_cost(get_model("llama-3-70b"), cluster_of("h100-sxm", 8), tp=4, pp=2, eff=eff),
                    engine_max_batch=32)  # fmt: skip
    alone = replace(piped, pipeline_stages=1)
    groups, group = pipeline_groups(piped)
    assert (groups, pipeline_groups(alone)[0]) == (2, 1)
    assert group.kv_capacity_tokens == piped.kv_capacity_tokens // 2
    requests = tuple(Request(arrival_s=0.0, input_len=128, output_len=64) for _ in range(256))
    results = [
        simulate_serving(ServeScenario(cost=cost, replicas=1, requests=requests, max_requests=256))
        for cost in (piped, alone)
    ]
    assert results[0].output_tokens_per_s == pytest.approx(2 * results[1].output_tokens_per_s, rel=0.05)
    assert results[0].tpot_ms.p50 == pytest.approx(results[1].tpot_ms.p50, rel=0.02)
    assert results[0].utilisation <= 1.0
