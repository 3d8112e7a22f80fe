"""In-flight batching cases replayed in the simulator, and the closed loop of ``concurrency`` clients."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rainier.errors import InputError
from rainier.hardware import cluster_of
from rainier.serve.cost import replica_cost
from rainier.serve.datasets import length_samples
from rainier.serve.efficiency import ServeEfficiency
from rainier.serve.inflight import (
    LOADGEN_MIN_DURATION_S,
    MAX_WINDOW_REQUESTS,
    RATE_SEARCH_HEADROOM,
    Load,
    in_flight_of,
    simulate_case,
    steady_window_s,
)
from rainier.serve.simulate import Request, ServeScenario, simulate_timeline
from rainier.serve.validate import validate_inference_file
from rainier.workload import get_model
from tests.serve.test_bad_input import FixedCost

ROOT = Path(__file__).resolve().parents[2]


def test_a_closed_loop_keeps_exactly_its_clients_in_flight() -> None:
    requests = tuple(Request(arrival_s=99.0, input_len=10, output_len=5) for _ in range(12))
    scenario = ServeScenario(cost=FixedCost(max_batch=64), requests=requests, concurrency=3)
    t = simulate_timeline(scenario)
    assert (t.finish_s > 0).all()
    arrivals = sorted(t.arrival_s.tolist())
    assert arrivals[:3] == [0.0, 0.0, 0.0]  # the clients start together; the given arrival times are ignored
    for k in range(3, 12):  # every later request arrives when an earlier one finishes
        assert any(abs(arrivals[k] - f) < 1e-12 for f in t.finish_s.tolist())
    assert t.batch_seqs <= 3 * t.iterations  # never more than three sequences in an iteration


def test_concurrency_needs_requests() -> None:
    with pytest.raises(InputError, match="concurrency"):
        ServeScenario(cost=FixedCost(), rate_per_s=1.0, duration_s=10.0, concurrency=4)


def test_loads_of_a_case() -> None:
    offline = in_flight_of({"load": "offline", "max_batch": 64}, 8, 2)
    assert offline.load is Load.OFFLINE and offline.replicas == 4 and offline.requests() == 1_024
    closed = in_flight_of({"load": "concurrency", "concurrency": 16}, 2, 2)
    assert closed.requests() == 128 and closed.max_batch == 256  # vLLM's default max_num_seqs
    with pytest.raises(InputError, match="request_rate"):
        in_flight_of({"load": "rate"}, 8, 8)
    with pytest.raises(InputError, match=r"serving\.load"):
        in_flight_of({"load": "burst"}, 8, 8)


def test_more_load_means_more_throughput_and_more_latency() -> None:
    cost = replica_cost(get_model("llama-3.1-8b"), cluster_of("h100-sxm", 1), tp=1, eff=ServeEfficiency())
    low = simulate_case(in_flight_of({"load": "concurrency", "concurrency": 1}, 1, 1), cost, 1024, 128)
    high = simulate_case(in_flight_of({"load": "concurrency", "concurrency": 64}, 1, 1), cost, 1024, 128)
    assert high["output_tokens_per_s"] > 10 * low["output_tokens_per_s"]
    assert high["tpot_ms"] > low["tpot_ms"] and high["ttft_p99_ms"] >= high["ttft_ms"]


def test_in_flight_files_are_scored_with_reasons_for_what_is_skipped() -> None:
    report = validate_inference_file([ROOT / "validation" / "inference-open.yaml"])
    skipped = [r.skipped for r in report.rows if r.skipped]
    assert report.summary["predicted"] >= 70
    assert all("is invalid" in reason for reason in skipped)  # each names its field


def test_max_rate_needs_latency_bounds() -> None:
    found = in_flight_of({"load": "max_rate", "slo": {"ttft_p99_ms": 2000, "tpot_p99_ms": 200.0}}, 8, 2)
    assert found.load is Load.MAX_RATE and found.slo == (("ttft_p99_ms", 2000.0), ("tpot_p99_ms", 200.0))
    with pytest.raises(InputError, match=r"serving\.slo"):
        in_flight_of({"load": "max_rate"}, 8, 8)
    with pytest.raises(InputError, match=r"serving\.slo"):
        in_flight_of({"load": "max_rate", "slo": {"e2e_p50_ms": 10}}, 8, 8)
    with pytest.raises(InputError, match=r"serving\.slo\.tpot_p99_ms"):
        in_flight_of({"load": "max_rate", "slo": {"tpot_p99_ms": -1}}, 8, 8)


def test_max_rate_is_the_edge_of_the_slo() -> None:
    """The rate found meets the bounds, and a few percent more load breaks the binding one (MLPerf Server)."""
    cost = replica_cost(get_model("llama-3.1-8b"), cluster_of("h100-sxm", 1), tp=1, eff=ServeEfficiency())
    slo = {"ttft_p99_ms": 2000.0, "tpot_p99_ms": 60.0}
    load = in_flight_of({"load": "max_rate", "max_batch": 512, "slo": slo}, 1, 1)
    found = simulate_case(load, cost, 1024, 128)
    assert found["ttft_p99_ms"] <= 2000.0 and found["tpot_p99_ms"] <= 60.0
    rate = found["requests_per_s"]
    offline = simulate_case(in_flight_of({"load": "offline", "max_batch": 512}, 1, 1), cost, 1024, 128)
    assert rate < RATE_SEARCH_HEADROOM * offline["requests_per_s"]
    window = steady_window_s(load.slo, 128)
    more = simulate_case(
        replace(in_flight_of({"load": "rate", "request_rate": 1.1 * rate, "max_batch": 512}, 1, 1), window_s=window),
        cost, 1024, 128,
    )  # fmt: skip
    assert more["ttft_p99_ms"] > 2000.0 or more["tpot_p99_ms"] > 60.0
    tight = in_flight_of({"load": "max_rate", "max_batch": 512, "slo": {"tpot_p99_ms": 0.01}}, 1, 1)
    assert simulate_case(tight, cost, 1024, 128)["tpot_p99_ms"] > 0.01  # no rate passes: the lowest one is shown


def test_a_poisson_benchmark_runs_its_stated_requests() -> None:
    stated = in_flight_of({"load": "rate", "request_rate": 4.0, "num_requests": 1200}, 1, 1)
    assert stated.requests() == 1200  # vllm bench serve --num-prompts 1200, as it ran
    assert replace(stated, num_requests=None, window_s=100.0).requests() == 1_000  # at least MIN_REQUESTS
    assert replace(stated, num_requests=None, window_s=1e6).requests() == MAX_WINDOW_REQUESTS


def test_the_steady_window_is_loadgens_ten_minutes_or_five_lifetimes() -> None:
    llama70 = (("ttft_p99_ms", 2000.0), ("tpot_p99_ms", 200.0))
    assert steady_window_s(llama70, 274) == pytest.approx(5 * (2.0 + 273 * 0.2))
    assert steady_window_s(llama70, 4000) == LOADGEN_MIN_DURATION_S
    assert steady_window_s((("ttft_p99_ms", 2000.0),), 1) == pytest.approx(10.0)


def test_an_offline_run_is_one_replica_with_its_share() -> None:
    """Equal requests all at once: the router deals them out in turn and every replica runs the same timeline, so
    the case simulates one replica (its throughput times the replicas) and matches the whole pool's run."""
    from rainier.serve.simulate import simulate_serving

    cost = replica_cost(get_model("llama-3.1-8b"), cluster_of("h100-sxm", 1), tp=1, eff=ServeEfficiency())
    load = in_flight_of({"load": "offline", "max_batch": 32}, 4, 1)
    shortcut = simulate_case(load, cost, 512, 128)
    n = load.requests()
    assert n % load.replicas == 0
    engine = replace(cost, engine_max_batch=load.max_batch)
    requests = (Request(arrival_s=0.0, input_len=512, output_len=128),) * n
    whole = simulate_serving(ServeScenario(cost=engine, replicas=load.replicas, requests=requests, max_requests=n))
    assert shortcut["output_tokens_per_s"] == pytest.approx(whole.output_tokens_per_s, rel=1e-12)
    assert shortcut["requests_per_s"] == pytest.approx(whole.requests_per_s, rel=1e-12)
    assert whole.ttft_ms is not None and whole.tpot_ms is not None
    assert shortcut["ttft_ms"] == pytest.approx(whole.ttft_ms.p50, rel=1e-12)
    assert shortcut["tpot_ms"] == pytest.approx(whole.tpot_ms.p50, rel=1e-12)


def test_an_engine_without_a_stated_max_batch_runs_its_own_default() -> None:
    """trtllm-build builds for 256 sequences from v0.11 and 2048 from v0.14 (release notes), with max_num_tokens
    8192 from v0.11; a build named by commit is dated by its TensorRT, later than the one a release shipped with
    (10.11 postdates v0.15's 10.6; 10.1 only v0.10's 10.0); SGLang sizes its request pool from the KV pool within
    [2048, 4096]; vLLM and unknown engines run 256. A stated max_batch wins."""
    from rainier.serve.inflight import DEFAULT_ENGINE_MAX_BATCH, TRTLLM_MAX_BATCH, default_engine_max_batch

    assert TRTLLM_MAX_BATCH == 2048 and DEFAULT_ENGINE_MAX_BATCH == 256
    recent = ("TensorRT-LLM 0.17", "TensorRT-LLM (commit 18c0333e) + TensorRT 10.11", "NVIDIA NIM for LLMs 1.8.0")
    for framework in recent:
        assert default_engine_max_batch(framework) == 2048, framework
        load = in_flight_of({"load": "offline", "framework": framework}, 2, 2)
        assert load.max_batch == 2048 and load.token_budget == 8192, framework
    for framework in ("TensorRT-LLM 0.12", "TensorRT-LLM (main 2d234357) + TensorRT 10.3"):
        load = in_flight_of({"load": "offline", "framework": framework}, 2, 2)
        assert load.max_batch == 256 and load.token_budget == 8192, framework
    older = ("TensorRT-LLM 0.9", "TensorRT-LLM (private build, hash 4e5b175c) + TensorRT 10.1", "TensorRT-LLM")
    for framework in (*older, "vLLM 0.6.0", ""):
        assert default_engine_max_batch(framework) == 256, framework
        assert in_flight_of({"load": "offline", "framework": framework}, 2, 2).token_budget is None, framework
    assert default_engine_max_batch("SGLang v0.4.1", 100_000, 163_840) == 2048  # pool of 312: the floor
    assert default_engine_max_batch("SGLang v0.4.1", 1_000_000, 131_072) == 1_000_000 * 512 // 131_072
    assert default_engine_max_batch("SGLang v0.4.1", 10**8, 4096) == 4096
    stated = in_flight_of({"load": "offline", "max_batch": 64, "framework": "TensorRT-LLM 0.17"}, 2, 2)
    assert stated.max_batch == 64


def test_vllm_v1_defaults_follow_the_gpu() -> None:
    """vLLM from v0.8 serves with max_num_batched_tokens 8192 and max_num_seqs 1024 on a GPU of 70 GiB or more
    that is not an A100, else 2048 and 256 (EngineArgs batch defaults); vLLM 0.6 keeps 256 and no budget."""
    from rainier.hardware import get_accelerator
    from rainier.serve.inflight import vllm_large_gpu

    def large(accelerator_id: str) -> bool:
        accelerator = get_accelerator(accelerator_id)
        return vllm_large_gpu(accelerator.hbm_bytes, accelerator.id)

    assert large("h100-sxm") and large("b200") and not large("a100-80gb")
    v1 = {"load": "offline", "framework": "vLLM v0.19.1, vllm bench serve"}
    big, small = in_flight_of(v1, 8, 1, large_gpu=True), in_flight_of(v1, 8, 1, large_gpu=False)
    assert (big.token_budget, big.max_batch, small.token_budget, small.max_batch) == (8192, 1024, 2048, 256)
    old = in_flight_of({"load": "offline", "framework": "vLLM 0.6.0 OpenAI server"}, 8, 1, large_gpu=True)
    assert (old.token_budget, old.max_batch) == (None, 256)


def test_a_benchmark_spread_of_lengths_is_replayed() -> None:
    """``serving.length_range`` r draws every request's lengths uniformly within +/- r of the means (vllm bench
    serve --random-range-ratio); a closed loop of equal requests moves in lockstep, every round's prompts arriving
    together, which the spread breaks up, so a long prompt's median TTFT falls towards one prefill."""
    import numpy as np

    from rainier.serve.simulate import ranged_lengths

    drawn = ranged_lengths(np.random.default_rng(0), 2000, 20_000, 0.15)
    assert drawn.min() >= 1700 and drawn.max() <= 2300 and abs(drawn.mean() - 2000) < 10
    with pytest.raises(InputError, match=r"serving\.length_range"):
        in_flight_of({"load": "offline", "length_range": 1.5}, 1, 1)
    cost = replica_cost(get_model("llama-3.1-8b"), cluster_of("h100-sxm", 1), tp=1, eff=ServeEfficiency())
    closed = {"load": "concurrency", "concurrency": 8, "num_requests": 64}
    equal = simulate_case(in_flight_of(closed, 1, 1), cost, 20_000, 500)
    spread = simulate_case(in_flight_of({**closed, "length_range": 0.15}, 1, 1), cost, 20_000, 500)
    assert spread["ttft_ms"] < 0.8 * equal["ttft_ms"]
    scenario = ServeScenario(cost=FixedCost(), rate_per_s=10.0, duration_s=10.0, input_len=100, length_range=0.5)
    from rainier.serve.simulate import poisson_requests

    _, inputs, outputs = poisson_requests(scenario, np.random.default_rng(1))
    assert inputs.min() >= 50 and inputs.max() <= 150 and outputs.min() >= 128 and outputs.max() <= 384
    with pytest.raises(InputError, match="length_range"):
        ServeScenario(cost=FixedCost(), rate_per_s=10.0, duration_s=10.0, length_range=-0.1)


def test_a_long_tailed_mix_runs_five_lifetimes_of_its_longest_request() -> None:
    """A length mix's trial lasts until its longest request has lived five times over (at least LoadGen's ten
    minutes): the long requests keep filling the batch until then, and a shorter window reads a low TPOT."""
    r1 = (("ttft_p99_ms", 2000.0), ("tpot_p99_ms", 80.0))
    mix = length_samples("mlperf-deepseek-r1")
    longest = mix.longest_output(3748)
    assert longest == mix.max_output_len == 20_000  # the answers the harness caps, scaled to the case's mean
    assert steady_window_s(r1, 3748, longest) == pytest.approx(5 * (2.0 + 19_999 * 0.08))
    assert steady_window_s(r1, 3748) == LOADGEN_MIN_DURATION_S  # every request the mean: ten minutes, as before
    llama70 = (("ttft_p99_ms", 2000.0), ("tpot_p99_ms", 200.0))
    orca = length_samples("mlperf-llama2-70b").longest_output(274)
    assert 274 < orca <= 1024
    assert steady_window_s(llama70, 274, orca) == pytest.approx(max(600.0, 5 * (2.0 + (orca - 1) * 0.2)))
    short = (("ttft_p99_ms", 100.0), ("tpot_p99_ms", 10.0))
    assert steady_window_s(short, 10, 20) == LOADGEN_MIN_DURATION_S  # never below the run's ten minutes
    assert length_samples("mlperf-llama3.1-8b").longest_output(100) == 100  # outputs not token counts: the mean
