"""Neuron's compiled sequence buckets: prompts prefilled at their bucket, decode steps reading the cache over theirs."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rainier.calibrate.cases import InferenceCase, Trust
from rainier.errors import InputError
from rainier.hardware import cluster_of, get_accelerator
from rainier.serve.buckets import Buckets, runtime_buckets
from rainier.serve.cost import ReplicaCost, replica_cost
from rainier.serve.estimate import ServeConfig, estimate_serving, static_batch_times
from rainier.serve.simulate import Request, Scheduler, ServeScenario, simulate_serving, simulate_timeline
from rainier.serve.validate import _bucketing
from rainier.workload import get_model
from rainier.workload.shape import TransformerShape

from .efficiencies import IDEAL


def _shape() -> TransformerShape:
    """Llama 3.1 8B compiled for 8,192 tokens: automatic buckets 128, 256, ..., 8,192."""
    return replace(get_model("llama-3.1-8b"), seq_len=8192)


def _cost(accelerator: str) -> ReplicaCost:
    """One device's replica of ``_shape`` at the ideal efficiencies."""
    return replica_cost(_shape(), cluster_of(accelerator, 1), tp=1, eff=IDEAL)


def test_automatic_buckets_are_powers_of_two_from_128_to_the_length() -> None:
    buckets = Buckets(max_len=6400)
    assert [buckets.pad(n) for n in (1, 128, 129, 600, 1024, 1025, 5000, 6400)] == [
        128, 128, 256, 1024, 1024, 2048, 6400, 6400,
    ]  # fmt: skip
    assert buckets.pad(7000) == 7000  # past the largest bucket: unpadded


def test_disabled_bucketing_pads_everything_to_the_length() -> None:
    assert Buckets(max_len=512, auto=False).pad(256) == 512
    assert Buckets(max_len=512, auto=False).segments(257, 512) == [(512, 256)]


@given(first=st.integers(1, 20_000), steps=st.integers(0, 20_000), max_len=st.integers(1, 40_000))
def test_segments_cover_every_length_once_at_a_bucket_that_holds_it(first: int, steps: int, max_len: int) -> None:
    buckets = Buckets(max_len=max_len)
    last = first + steps
    segments = buckets.segments(first, last)
    assert sum(count for _, count in segments) == steps + 1
    length = first
    for bucket, count in segments:
        assert bucket >= min(length, max_len)
        assert buckets.pad(length + count - 1) == bucket or length + count - 1 >= max_len
        length += count


def test_bad_buckets_name_the_field() -> None:
    with pytest.raises(InputError, match=r"buckets\.max_len"):
        Buckets(max_len=0)
    with pytest.raises(InputError, match="bucketing"):
        ServeConfig(bucketing="yes")  # type: ignore[arg-type]


def test_only_neuron_runtimes_have_buckets() -> None:
    assert runtime_buckets(get_accelerator("trn2"), 8192) == Buckets(8192)
    assert runtime_buckets(get_accelerator("trn1"), 8192, enabled=False) == Buckets(8192, auto=False)
    assert runtime_buckets(get_accelerator("h100-sxm"), 8192) is None


def _estimate(accelerator: str, count: int, tp: int, input_len: int, **config: object) -> float:
    shape = _shape()
    serve = ServeConfig(tp=tp, batch=1, input_len=input_len, output_len=64, **config)  # type: ignore[arg-type]
    return estimate_serving(shape, cluster_of(accelerator, count), serve, efficiency=IDEAL).ttft_s


def test_a_neuron_prompt_is_prefilled_at_its_bucket() -> None:
    assert _estimate("trn2", 1, 1, 600) == _estimate("trn2", 1, 1, 1024)
    assert _estimate("trn2", 1, 1, 1025) > _estimate("trn2", 1, 1, 1024)
    # bucketing disabled: one compiled length, input + output = 192 tokens, between the buckets of 128 and 256
    assert _estimate("trn2", 1, 1, 128) < _estimate("trn2", 1, 1, 128, bucketing=False) < _estimate("trn2", 1, 1, 129)
    # a GPU engine runs the real length
    assert _estimate("h100-sxm", 1, 1, 600) < _estimate("h100-sxm", 1, 1, 1024)


def test_a_decode_step_reads_the_cache_over_its_bucket() -> None:
    cost = _cost("trn2")
    # 64 steps from a 1,100-token cache: every one reads 2,048 positions per sequence
    times = static_batch_times(cost, 8, 1100, 65, buckets=Buckets(8192))
    assert times.tpot_s == pytest.approx(cost.iteration_s(0, 8, 8 * 2048), rel=1e-12)
    plain = static_batch_times(cost, 8, 1100, 65)
    assert plain.tpot_s < times.tpot_s
    # across two buckets: the mean of the steps at each
    times = static_batch_times(cost, 8, 1000, 101, buckets=Buckets(8192))
    expected = (24 * cost.iteration_s(0, 8, 8 * 1024) + 76 * cost.iteration_s(0, 8, 8 * 2048)) / 100
    assert times.tpot_s == pytest.approx(expected, rel=1e-12)


def test_a_case_says_when_its_bucketing_was_disabled() -> None:
    def case(**serving: object) -> InferenceCase:
        return InferenceCase(
            id="x", group="g", trust=Trust.C, source="s", model={}, system={}, serving=serving, targets=()
        )

    assert _bucketing(case(framework="NxD Inference, bucketing disabled, flash decoding off")) is False
    assert _bucketing(case(framework="NxD Inference")) is True
    assert _bucketing(case(framework="NxD Inference", bucketing=False)) is False
    with pytest.raises(InputError, match=r"serving\.bucketing"):
        _bucketing(case(bucketing="off"))


def _simulated(accelerator: str, lengths: list[tuple[int, int]]) -> tuple[list[float], list[float], ReplicaCost]:
    """First-token times and per-token decode times of requests sent one after another to one idle replica."""
    cost = _cost(accelerator)
    ttft, tpot = [], []
    for input_len, output_len in lengths:
        request = Request(arrival_s=0.0, input_len=input_len, output_len=output_len)
        result = simulate_serving(ServeScenario(cost=cost, requests=(request,)))
        assert result.ttft_ms is not None and result.tpot_ms is not None
        ttft.append(result.ttft_ms.p50)
        tpot.append(result.tpot_ms.p50)
    return ttft, tpot, cost


def test_the_simulator_pads_a_neuron_replicas_prompts_and_caches() -> None:
    ttft, tpot, cost = _simulated("trn2", [(600, 64), (900, 64)])
    assert cost.buckets == Buckets(8192)
    # both prompts are prefilled at 1,024 tokens, and every decode step reads a 1,024-token cache
    assert ttft[0] == ttft[1] == pytest.approx(cost.iteration_s(1024, 0, 0, 1) * 1e3, rel=1e-9)
    assert tpot[0] == tpot[1] == pytest.approx(cost.iteration_s(0, 1, 1024) * 1e3, rel=1e-9)
    ttft, tpot, cost = _simulated("h100-sxm", [(600, 64), (900, 64)])
    assert cost.buckets is None and ttft[0] < ttft[1] and tpot[0] < tpot[1]


def test_a_decode_batch_reads_every_cache_over_the_longest_ones_bucket() -> None:
    cost = _cost("trn2")
    # a short and a long request decode together: both read 2,048 positions (the long one's bucket) per step
    requests = (
        Request(arrival_s=0.0, input_len=200, output_len=40),
        Request(arrival_s=0.0, input_len=1500, output_len=40),
    )
    timeline = simulate_timeline(ServeScenario(cost=cost, requests=requests, record_batches=100))
    # recorded iterations: (replica, prefill pool, start, duration, prefill tokens, decodes)
    decodes = [duration for _, _, _, duration, prefill, seqs in timeline.batches if prefill == 0 and seqs == 2]
    assert decodes and all(
        duration == pytest.approx(cost.iteration_s(0, 2, 2 * 2048), rel=1e-9) for duration in decodes
    )


def test_a_static_batch_on_neuron_runs_at_the_bucket_of_its_longest_prompt() -> None:
    cost = _cost("trn2")
    requests = (
        Request(arrival_s=0.0, input_len=300, output_len=3),
        Request(arrival_s=0.0, input_len=600, output_len=3),
    )
    timeline = simulate_timeline(
        ServeScenario(cost=cost, requests=requests, scheduler=Scheduler.STATIC, record_batches=10)
    )
    # one entry for the whole batch: both prompts prefilled as 1,024 tokens, then two decode steps over 1,024 each
    expected = cost.iteration_s(2 * 1024, 0, 0, 2) + 2 * cost.iteration_s(0, 2, 2 * 1024)
    assert timeline.batches[0][3] == pytest.approx(expected, rel=1e-9)
