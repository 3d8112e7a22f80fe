"""Benchmark request-length mixes (``serve.datasets``): the catalog's samples, draws scaled to a case's means, and
what a mix changes in a simulation against equal requests."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rainier.cli import app
from rainier.errors import InputError
from rainier.hardware import cluster_of
from rainier.serve.cost import replica_cost
from rainier.serve.datasets import dataset_registry, length_samples
from rainier.serve.efficiency import ServeEfficiency
from rainier.serve.inflight import MIN_REQUESTS, OFFLINE_MAX_WAVES, in_flight_of, simulate_case
from rainier.serve.simulate import ServeScenario, poisson_requests
from rainier.workload import get_model
from tests.serve.test_bad_input import FixedCost

runner = CliRunner()


def test_every_shipped_mix_loads_with_its_stated_count() -> None:
    ids = dataset_registry().ids()
    assert {"mlperf-llama2-70b", "mlperf-llama3.1-405b", "mlperf-deepseek-r1"} <= set(ids)
    for mix in dataset_registry():
        assert mix.inputs.size == mix.describe()["samples"] and mix.inputs.min() >= 1
        if mix.outputs is not None:
            assert mix.outputs.size == mix.inputs.size
    r1 = length_samples("mlperf-deepseek-r1")
    assert 800 < r1.mean_input < 810  # 803.8 tokens (the case files' input_len 804)
    assert r1.mean_output is not None and np.median(r1.outputs) < 0.6 * r1.mean_output  # a long tail
    assert length_samples("mlperf-llama3.1-8b").outputs is None  # its output column is characters / 4


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(["mlperf-llama2-70b", "mlperf-llama3.1-405b", "mlperf-mixtral-8x7b", "mlperf-deepseek-r1"]),
    input_scale=st.floats(0.3, 3.0),
    output_scale=st.floats(0.3, 1.5),
)
def test_a_draw_has_the_means_asked_and_keeps_under_the_cap(name: str, input_scale: float, output_scale: float) -> None:
    mix = length_samples(name)
    assert mix.mean_output is not None
    want_in = max(2, round(mix.mean_input * input_scale))
    want_out = max(2, min(round(mix.mean_output * output_scale), mix.max_output_len - 1))
    inputs, outputs = mix.draw(np.random.default_rng(3), 200_000, want_in, want_out)
    assert inputs.min() >= 1 and outputs.min() >= 1 and outputs.max() <= mix.max_output_len
    assert inputs.mean() == pytest.approx(want_in, rel=0.03)
    assert outputs.mean() == pytest.approx(want_out, rel=0.03)


def test_a_mix_without_output_tokens_generates_the_mean() -> None:
    inputs, outputs = length_samples("mlperf-llama3.1-8b").draw(np.random.default_rng(0), 500, 871, 129)
    assert (outputs == 129).all() and inputs.std() > 100


def test_bad_names_and_impossible_means_are_one_line_errors() -> None:
    with pytest.raises(InputError, match=r"unknown dataset 'sharegpt'"):
        length_samples("sharegpt")
    with pytest.raises(InputError, match=r"serving\.lengths.*mlperf-llama2-70b"):
        in_flight_of({"load": "offline", "lengths": "sharegpt"}, 1, 1)
    with pytest.raises(InputError, match=r"serving\.lengths"):
        in_flight_of({"load": "offline", "lengths": "mlperf-llama2-70b", "length_range": 0.2}, 1, 1)
    with pytest.raises(InputError, match="cap of 1024"):
        length_samples("mlperf-llama2-70b").draw(np.random.default_rng(0), 10, 222, 1024)


def test_poisson_requests_draw_from_the_mix() -> None:
    mix = length_samples("mlperf-llama2-70b")
    scenario = ServeScenario(
        cost=FixedCost(), rate_per_s=50.0, duration_s=100.0, input_len=222, output_len=290, length_samples=mix
    )
    _, inputs, outputs = poisson_requests(scenario, np.random.default_rng(0))
    assert inputs.size > 4000 and abs(inputs.mean() - 222) < 10 and abs(outputs.mean() - 290) < 12
    assert outputs.max() <= 1024 and np.percentile(outputs, 99) > 3 * np.median(outputs)


def test_an_offline_benchmark_runs_the_requests_it_issued() -> None:
    stated = in_flight_of({"load": "offline", "max_batch": 64, "num_requests": 3000}, 8, 2)
    assert stated.requests() == 3000
    huge = in_flight_of({"load": "offline", "max_batch": 64, "num_requests": 10**6}, 8, 2)
    assert huge.requests() == 4 * max(MIN_REQUESTS, OFFLINE_MAX_WAVES * 64)  # a few full batches per replica


def test_long_outputs_in_the_mix_cost_throughput_on_a_cache_bound_engine() -> None:
    """A running batch is a length-biased draw of the requests: with DeepSeek-R1's tail of outputs its sequences
    hold more context than equal requests of the same means, so a KV-cache-bound engine runs fewer of them at once,
    and the last long ones finish on an emptying engine."""
    cost = replica_cost(get_model("llama-3.1-8b"), cluster_of("h100-sxm", 1), tp=1, eff=ServeEfficiency())
    case = {"load": "offline", "max_batch": 4096, "num_requests": 3000}
    equal = simulate_case(in_flight_of(case, 1, 1), cost, 804, 3736)
    mixed = simulate_case(in_flight_of({**case, "lengths": "mlperf-deepseek-r1"}, 1, 1), cost, 804, 3736)
    assert mixed["output_tokens_per_s"] < 0.9 * equal["output_tokens_per_s"]


def test_cli_lists_the_mixes_and_simulates_with_one() -> None:
    listing = runner.invoke(app, ["catalog", "datasets", "--json"])
    assert listing.exit_code == 0, listing.output
    assert {row["id"] for row in json.loads(listing.output)} == set(dataset_registry().ids())
    args = ["serve", "simulate", "--model", "llama-3.1-8b", "--accelerator", "h100-sxm", "--count", "1",
            "--rate", "4", "--duration", "30", "--json"]  # fmt: skip
    run = runner.invoke(app, [*args, "--lengths", "mlperf-mixtral-8x7b"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.output)["requests_completed"] > 50
    bad = runner.invoke(app, [*args, "--lengths", "sharegpt"])
    assert bad.exit_code == 2 and "lengths" in bad.output and "mlperf-deepseek-r1" in bad.output


def test_a_max_rate_search_widens_past_a_drained_offline_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    """When every rate of the first bracket (up to 1.25x the offline capacity) passes, the search moves up: a
    long-tailed mix's offline run ends in a drain that leaves its capacity far below what a stream sustains."""
    import rainier.serve.inflight as inflight

    def fake(load, cost, input_len, output_len, *, prefix_hit=0.0):  # type: ignore[no-untyped-def]
        if load.load is inflight.Load.OFFLINE:
            return {"requests_per_s": 1.0, "ttft_p99_ms": 1.0}
        assert load.loadgen_server
        ok = load.request_rate < 3.3
        return {"requests_per_s": load.request_rate, "ttft_p99_ms": 1.0 if ok else 1e9}

    monkeypatch.setattr(inflight, "simulate_case", fake)
    load = in_flight_of({"load": "max_rate", "max_batch": 64, "slo": {"ttft_p99_ms": 2000.0}}, 1, 1)
    found = inflight.max_rate_within_slo(load, None, 100, 100)  # type: ignore[arg-type]
    assert 3.2 < found["requests_per_s"] < 3.3


def test_a_server_trial_reads_the_steady_state_and_loadgens_rates() -> None:
    """A max_rate trial's percentiles leave out the requests of its first and last lifetime (the engine filling and
    emptying, which a ten-minute LoadGen run hardly sees), and its rates run to when the last arrival finished."""
    from dataclasses import replace

    cost = replica_cost(get_model("llama-3.1-8b"), cluster_of("h100-sxm", 1), tp=1, eff=ServeEfficiency())
    base = in_flight_of({"load": "rate", "request_rate": 40.0, "max_batch": 256, "lengths": "mlperf-llama2-70b"}, 1, 1)
    trial = replace(base, window_s=60.0)
    plain = simulate_case(trial, cost, 222, 290)
    server = simulate_case(replace(trial, loadgen_server=True), cost, 222, 290)
    assert server["tpot_ms"] > plain["tpot_ms"]  # the ramp-up's light batches are left out
    assert server["output_tokens_per_s"] > plain["output_tokens_per_s"]  # the drain after the last arrival too


def test_a_fleet_is_sized_at_the_mix_means_and_checked_on_its_tail() -> None:
    """``serve size --lengths``: the layouts are sized at the mix's means, and the simulated check draws every
    request from the mix, so its p99s carry the longest answers (a fixed-length check never sees them)."""
    from rainier.api.serve import run_serve_size

    common = {"models": "llama-3.1-8b:20", "slo": "ttft_p99_ms=2000,tpot_p99_ms=200", "accelerators": "h100-sxm"}
    mixed = run_serve_size(**common, lengths="mlperf-llama2-70b").to_dict()
    traffic = mixed["options"][0]["models"][0]["traffic"]
    assert traffic["lengths"] == "mlperf-llama2-70b" and (traffic["input_len"], traffic["output_len"]) == (222, 219)
    fixed = run_serve_size(**common, input_len=222, output_len=219).to_dict()
    e2e = [r["options"][0]["models"][0]["simulated"]["e2e_p99_ms"] for r in (mixed, fixed)]
    assert e2e[0] > 2 * e2e[1]
    with pytest.raises(InputError, match="lengths='sharegpt'"):
        run_serve_size(**common, lengths="sharegpt")
