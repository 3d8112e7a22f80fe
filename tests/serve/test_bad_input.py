"""Bad input on the serving side: one line and exit code 2 naming the field, the value and the range; budgets
refused before the work with the flag that raises them; fp8 refused where the chip has none; physically sane
results (utilisation in [0, 1], null latencies with a reason when nothing completed); clean Ctrl-C."""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rainier.api.serve_sim import (
    VERIFY_MAX_REPLICAS,
    run_serve_simulate,
    scenario_keys,
    simulation_scenario,
    verify_with_simulation,
)
from rainier.cli import app
from rainier.errors import InputError
from rainier.hardware import cluster_of
from rainier.serve import simulate as simulate_module
from rainier.serve.cost import WeightFormat, replica_cost
from rainier.serve.efficiency import ServeEfficiency
from rainier.serve.engine import _Router
from rainier.serve.limits import DEFAULT_MAX_ITERATIONS, DEFAULT_MAX_REQUESTS, MAX_DEVICES, MAX_TOKENS
from rainier.serve.simulate import (
    Request,
    Scheduler,
    ServeScenario,
    iteration_lower_bound,
    simulate_serving,
    simulate_timeline,
)
from rainier.serve.size import Slo, Traffic, layouts
from rainier.workload import get_model

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
SIM = ["serve", "simulate", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "2"]
EST = ["serve", "estimate", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "8"]
HUGE = "99999999999999999999"  # beyond int64


def fails(args: list[str], *needles: str) -> str:
    """``args`` must exit 2 with exactly one line on stderr holding every needle (and no traceback)."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@dataclass(frozen=True)
class FixedCost:
    """A stand-in cost: a fixed time per iteration plus a little per prompt token (satisfies IterationCost)."""

    kv_capacity_tokens: int = 1_000_000
    kv_bytes_per_token: float = 1_000.0
    max_batch: int = 8
    fixed_s: float = 0.01

    def iteration_s(self, prefill_tokens: int, decode_seqs: int, kv_tokens: int) -> float:
        return self.fixed_s + 1e-5 * prefill_tokens


# ---------------------------------------------------------------------------------------------------------------
# Ranges: every numeric flag
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--count", HUGE, "--rate", "5", "--duration", "10"], ("count=", "16,777,216")),
        (["--rate", "5", "--duration", "10", "--input-len", HUGE], ("input_len=", "10,000,000")),
        (["--rate", "5", "--duration", "10", "--output-len", "9223372036854775807"], ("output_len=", "10,000,000")),
        (["--rate", "1e300", "--duration", "1e-300"], ("rate=", "10,000,000")),
        (["--rate", "1e-300", "--duration", "10"], ("rate=", "at least 1e-06")),
        (["--rate", "5", "--duration", "1e300"], ("duration=", "31,536,000")),
        (["--rate", "5", "--duration", "10", "--max-batch", HUGE], ("max_batch=", "1,048,576")),
        (["--rate", "5", "--duration", "10", "--tp", HUGE], ("tp=", "65,536")),
        (["--rate", "5", "--duration", "10", "--seed", HUGE], ("seed=", "9,223,372,036,854,775,807")),
        (["--rate", "5", "--duration", "10", "--max-requests", "0"], ("max_requests=", "20,000,000")),
        (["--rate", "5", "--duration", "10", "--max-iterations", HUGE], ("max_iterations=", "1,000,000,000")),
        (
            ["--rate", "5", "--duration", "10", "--disaggregate", "prefill=h100-sxm:99999999999,decode=trn2:4"],
            ("disaggregate=", "16,777,216"),
        ),
    ],
)
def test_simulate_numbers_out_of_range(args: list[str], needles: tuple[str, ...]) -> None:
    fails([*SIM, *args], *needles)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--count", HUGE], ("count=", "16,777,216")),
        (["--batch", HUGE], ("batch=", "1,048,576")),
        (["--input-len", HUGE], ("input-len=", "10,000,000")),
        (["--output-len", "9223372036854775807"], ("output-len=", "10,000,000")),
        (["--pp", "99999"], ("pp=", "65,536")),
        (["--pp", "16"], ("pp=16", "at most 8 devices")),
        (["--ep", HUGE], ("ep=", "65,536")),
    ],
)
def test_estimate_numbers_out_of_range(args: list[str], needles: tuple[str, ...]) -> None:
    fails([*EST, *args], *needles)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--models", "llama-3-8b:1e8", "--slo", "tpot_p99_ms=50"], ("models=", "10,000,000")),
        (["--models", "llama-3-8b:20", "--slo", "tpot_p99_ms=1e300"], ("slo=", "86,400,000")),
        (["--models", "llama-3-8b:20", "--slo", "tpot_p99_ms=50", "--input-len", HUGE], ("input-len=",)),
        (["--models", "llama-3-8b:20", "--slo", "tpot_p99_ms=50", "--utilisation", "2"], ("utilisation=2.0",)),
        (["--models", "llama-3-8b:20", "--slo", "tpot_p99_ms=50", "--seed", "-1"], ("seed=-1",)),
    ],
)
def test_size_numbers_out_of_range(args: list[str], needles: tuple[str, ...]) -> None:
    fails(["serve", "size", *args], *needles)


def test_messages_quote_at_most_80_characters() -> None:
    line = fails([*SIM, "--rate", "5", "--duration", "10", "--disaggregate", "prefill=" + "x" * 5000], "disaggregate=")
    assert len(line) < 300 and "more characters" in line


def test_a_fleet_of_millions_of_devices_costs_only_its_requests() -> None:
    # replicas are made when they get work: ten million devices with 25 requests run in well under a second
    args = ["serve", "simulate", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "10000000"]
    result = runner.invoke(app, [*args, "--rate", "5", "--duration", "5", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["replicas"] == 10_000_000 and doc["requests_completed"] == doc["requests_submitted"]
    assert 0.0 < doc["utilisation"] < 1e-5


def test_router_matches_a_full_heap() -> None:
    """The lazy router picks exactly what join-the-shortest-queue over every replica picks (lowest index on ties)."""
    rng = random.Random(7)
    for size in (1, 2, 5, 40):
        router, load = _Router(size), [0] * size
        busy: list[int] = []
        for _ in range(2_000):
            if busy and rng.random() < 0.45:
                replica = busy.pop(rng.randrange(len(busy)))
                router.release(replica)
                load[replica] -= 1
            else:
                expected = min(range(size), key=lambda r: (load[r], r))
                assert router.pick() == expected
                load[expected] += 1
                busy.append(expected)
        assert len(router.load) <= size


# ---------------------------------------------------------------------------------------------------------------
# Budgets
# ---------------------------------------------------------------------------------------------------------------


def test_too_many_requests_are_refused_before_the_run() -> None:
    line = fails([*SIM, "--rate", "100000", "--duration", "200"], "20,000,000", "--max-requests", "1,000,000")
    assert "requests expected" in line
    with pytest.raises(InputError, match="--max-requests"):
        ServeScenario(cost=FixedCost(), rate_per_s=100.0, duration_s=100.0, max_requests=5_000)
    ServeScenario(cost=FixedCost(), rate_per_s=100.0, duration_s=100.0, max_requests=20_000)  # raised: accepted
    assert DEFAULT_MAX_REQUESTS == 1_000_000


def test_too_many_iterations_are_refused_before_the_run() -> None:
    line = fails([*SIM, "--rate", "50", "--duration", "10", "--output-len", "300000"], "--max-iterations")
    assert "engine iterations needed" in line and f"{DEFAULT_MAX_ITERATIONS:,}" in line
    fails([*SIM, "--rate", "5", "--duration", "10", "--max-iterations", "100"], "--max-iterations", "100")


def test_iteration_budget_holds_during_the_run() -> None:
    # 100 sparse requests of 500 tokens: the lower bound (~800 iterations) passes, the ~50,000 iterations do not
    requests = tuple(Request(arrival_s=10.0 * i, input_len=10, output_len=500) for i in range(100))
    scenario = ServeScenario(cost=FixedCost(), requests=requests, max_iterations=20_000)
    expected = r"engine iterations \(stopped at .*over the budget of 20,000.*--max-iterations"
    with pytest.raises(InputError, match=expected):
        simulate_serving(scenario)


def test_trace_longer_than_the_budget_is_refused(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,input_len,output_len\n" + "".join(f"{i},10,5\n" for i in range(10)))
    fails([*SIM, "--trace", str(trace), "--max-requests", "3"], "--max-requests", "over the budget of 3")
    ok = runner.invoke(app, [*SIM, "--trace", str(trace), "--max-requests", "10", "--json"])
    assert ok.exit_code == 0, ok.output


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=3.0, allow_nan=False),
            st.integers(min_value=1, max_value=300),
            st.integers(min_value=1, max_value=60),
        ),
        min_size=1,
        max_size=30,
    ),
    replicas=st.integers(min_value=1, max_value=3),
    kv_capacity=st.sampled_from([80, 400, 1_000_000]),
    mode=st.sampled_from(["continuous", "chunked", "static", "disaggregated"]),
    prefill_batch=st.sampled_from([2, 8, 32]),
)
def test_lower_bound_and_utilisation_hold(
    rows: list[tuple[float, int, int]], replicas: int, kv_capacity: int, mode: str, prefill_batch: int
) -> None:
    """The pre-run iteration bound never exceeds what a run takes; busy fractions stay in [0, 1]; no NaN out."""
    cost = FixedCost(kv_capacity_tokens=kv_capacity, max_batch=4)
    extra: dict[str, Any] = {
        "continuous": {},
        "chunked": dict(chunked_prefill=True, chunk_tokens=16),
        "static": dict(scheduler=Scheduler.STATIC),
        "disaggregated": dict(
            prefill_cost=FixedCost(max_batch=prefill_batch), prefill_replicas=2, kv_link_bytes_per_s=1e6
        ),
    }[mode]
    requests = tuple(Request(arrival_s=a, input_len=i, output_len=o) for a, i, o in rows)
    scenario = ServeScenario(cost=cost, requests=requests, replicas=replicas, **extra)
    timeline = simulate_timeline(scenario)
    kept = ~timeline.rejected
    assert iteration_lower_bound(scenario, timeline.input_len[kept], timeline.output_len[kept]) <= timeline.iterations
    result = simulate_serving(scenario)
    assert 0.0 <= result.utilisation <= 1.0
    assert result.prefill_utilisation is None or 0.0 <= result.prefill_utilisation <= 1.0
    assert result.duration_s >= timeline.end_s
    json.dumps(result.to_dict(), allow_nan=False)  # no NaN or infinity anywhere


# ---------------------------------------------------------------------------------------------------------------
# Physically sane results
# ---------------------------------------------------------------------------------------------------------------


def test_nothing_completed_is_null_with_a_reason() -> None:
    # every prompt is longer than a replica's KV cache: all rejected, nothing runs
    result = runner.invoke(app, [*SIM, "--rate", "5", "--duration", "4", "--input-len", "5000000", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["requests_completed"] == 0 and doc["rejected"] == doc["requests_submitted"] > 0
    assert doc["ttft_ms"] is None and doc["e2e_ms"] is None and doc["mean_batch"] is None
    assert doc["utilisation"] == 0.0 and doc["output_tokens_per_s"] == 0.0
    assert doc["null_reasons"]["/ttft_ms"] == "no request completed"
    assert doc["null_reasons"]["/mean_batch"] == "no engine iteration ran"
    assert any("no request completed" in w for w in doc["warnings"])
    tables = runner.invoke(app, [*SIM, "--rate", "5", "--duration", "4", "--input-len", "5000000"])
    assert tables.exit_code == 0, tables.output  # the tables render the nulls as dashes


def test_utilisation_stays_a_fraction_when_the_run_outlasts_the_window() -> None:
    # a burst far beyond capacity drains long after the arrival window: busy time is over the whole run
    result = runner.invoke(app, [*SIM, "--rate", "400", "--duration", "2", "--output-len", "2000", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert 0.9 <= doc["utilisation"] <= 1.0
    assert doc["duration_s"] > doc["arrival_window_s"]


def test_sizing_a_huge_fleet_checks_a_slice() -> None:
    shape = get_model("llama-3-8b")
    traffic = Traffic(model="llama-3-8b", rate_per_s=20_000.0, input_len=512, output_len=64)
    found, _ = layouts(shape, traffic, "h100-sxm", Slo(tpot_s=0.05))
    layout, cost = found[0]
    p99, summary = verify_with_simulation(0)(layout, cost, traffic, 20_000)  # 1 request/s per replica
    assert summary["replicas_simulated"] == VERIFY_MAX_REPLICAS and summary["requests"] > 0
    assert set(p99) == {"ttft", "tpot", "e2e"} and all(v > 0 for v in p99.values())


# ---------------------------------------------------------------------------------------------------------------
# Precision support, as training checks it
# ---------------------------------------------------------------------------------------------------------------


def test_fp8_on_a100_is_refused() -> None:
    a100_estimate = ["serve", "estimate", "--model", "llama-3-8b", "--accelerator", "a100-80gb", "--count", "8"]
    fails([*a100_estimate, "--precision", "fp8"], "precision='fp8'", "a100-80gb has no fp8 matmuls")
    a100 = ["serve", "simulate", "--model", "llama-3-8b", "--accelerator", "a100-80gb", "--count", "2"]
    fails([*a100, "--rate", "5", "--duration", "5", "--precision", "fp8"], "a100-80gb has no fp8")
    disaggregated = ["--disaggregate", "prefill=a100-80gb:2,decode=h100-sxm:2", "--precision", "fp8"]
    fails([*SIM, "--rate", "5", "--duration", "5", *disaggregated], "a100-80gb has no fp8")
    with pytest.raises(InputError, match="tpu-v5e has no fp16"):
        replica_cost(get_model("llama-3-8b"), cluster_of("tpu-v5e", 4), tp=1, weights=WeightFormat.FP16,
                     eff=ServeEfficiency())  # fmt: skip
    ok = runner.invoke(app, [*EST, "--precision", "fp8", "--json"])  # H100 has fp8
    assert ok.exit_code == 0, ok.output


# ---------------------------------------------------------------------------------------------------------------
# A serving scenario's simulate: block
# ---------------------------------------------------------------------------------------------------------------

BLOCK: dict[str, Any] = dict(model="llama-3-8b", accelerator="h100-sxm", count=2, rate=5.0, duration=5.0)


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        (dict(rat=20), r"unknown key 'rat'; did you mean 'rate'\? allowed: model, cluster"),
        (dict(count="sixteen"), r"^count='sixteen' is invalid: a whole number of devices"),
        (dict(count=[1]), r"^count=\[1\] is invalid"),
        (dict(rate="fast"), r"^rate='fast' is invalid: a number above 0"),
        (dict(rate=float("inf")), r"^rate=inf is invalid"),
        (dict(duration=True), r"^duration=True is invalid"),
        (dict(chunked_prefill=3), r"^chunked_prefill=3 is invalid: true or false"),
        (dict(trace=5, rate=None, duration=None), r"^trace=5 is invalid"),
        (dict(trace="t.csv", rate=None), r"--duration S \(Poisson arrivals\) or --trace FILE, not both"),
        (dict(lengths=7), r"^lengths=7 is invalid"),
        (dict(unit="chip"), r"^unit='chip' is invalid: device or core"),
        (dict(model=None), r"model is required"),
        (dict(input_len=MAX_TOKENS + 1), r"^input_len=10000001 is invalid"),
    ],
)
def test_simulate_block_errors_name_the_key(changes: dict[str, Any], pattern: str) -> None:
    block = {**BLOCK, **changes}
    with pytest.raises(InputError, match=pattern):
        simulation_scenario(**block)
    with pytest.raises(InputError, match=pattern):
        run_serve_simulate(**block)


def test_simulate_block_takes_the_cli_unit_spelling() -> None:
    block = dict(BLOCK, model="llama-2-70b", accelerator="trn1", count=16, tp=32, unit="core")
    assert simulation_scenario(**block).cost.replica_devices == 16  # type: ignore[attr-defined]
    assert "unit" in scenario_keys() and "max_iterations" in scenario_keys()


def test_report_scenario_with_a_bad_simulate_block(tmp_path: Path) -> None:
    scenario = {
        "kind": "serve",
        "models": {"llama-3-8b": 5},
        "slo": {"tpot_p99_ms": 60},
        "accelerators": ["h100-sxm"],
        "simulate": {**BLOCK, "rate": 5, "duration": 5, "seeed": 1},
    }
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(scenario), encoding="utf-8")
    fails(["report", str(path), "-o", str(tmp_path / "r.html")], "unknown key 'seeed'", "did you mean 'seed'")


# ---------------------------------------------------------------------------------------------------------------
# Inference validation case files
# ---------------------------------------------------------------------------------------------------------------


def _first_case() -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "validation" / "inference.yaml").read_text(encoding="utf-8"))
    return copy.deepcopy(raw["cases"][0])


def _set(block: str, key: str, value: Any) -> Any:
    def change(case: dict[str, Any]) -> None:
        case[block][key] = value

    return change


def _drop(block: str, key: str) -> Any:
    def change(case: dict[str, Any]) -> None:
        case[block].pop(key)

    return change


def _both(first: Any, second: Any) -> Any:
    def change(case: dict[str, Any]) -> None:
        first(case)
        second(case)

    return change


def _target(key: str, value: Any) -> Any:
    def change(case: dict[str, Any]) -> None:
        if value is _drop:
            case["targets"][0].pop(key)
        else:
            case["targets"][0][key] = value

    return change


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_set("serving", "batch", "lots"), "serving.batch='lots' is invalid: a whole number of sequences"),
        (
            _both(_set("serving", "batch", None), _set("serving", "load", "burst")),
            "serving.load='burst' is invalid: offline, rate, max_rate or concurrency",
        ),
        (_drop("serving", "batch"), "serving.batch=None is invalid: a whole number of sequences (required)"),
        (_set("serving", "batch", 10**30), "serving.batch=1000000000000000000000000000000 is invalid"),
        (_set("serving", "batch", 1e300), "serving.batch=1e+300 is invalid"),
        (_set("serving", "pp", {"a": 1}), "serving.pp={'a': 1} is invalid"),
        (_set("serving", "ep", "two"), "serving.ep='two' is invalid"),
        (_set("serving", "tp", -2), "serving.tp=-2 is invalid"),
        (_set("serving", "input_len", 2**70), "serving.input_len=1180591620717411303424 is invalid"),
        (_set("serving", "degrees_unit", 5), "serving.degrees_unit=5 is invalid: device or neuroncore"),
        (_set("serving", "precision", 8), "serving.precision=8 is invalid"),
        (_set("system", "count", "eight"), "system.count='eight' is invalid"),
        (_drop("system", "count"), "system.count=None is invalid"),
        (_set("system", "accelerator", ["h100"]), "system.accelerator=['h100'] is invalid"),
        (_target("metric", _drop), "targets[0].metric=None is invalid"),
        (_target("metric", ["a"]), "targets[0].metric=['a'] is invalid"),
        (_target("value", "fast"), "targets[0].value='fast' is invalid: a positive finite measurement"),
        (_target("value", -1.0), "targets[0].value=-1.0 is invalid"),
        (_target("value", float("nan")), "targets[0].value=nan is invalid"),
        (_set("system", "accelerator", "a100-80gb"), "a100-80gb has no fp8 matmuls"),
    ],
)
def test_bad_inference_cases_are_skipped_naming_the_field(tmp_path: Path, change: Any, reason: str) -> None:
    good, bad = _first_case(), _first_case()
    change(bad)
    bad["id"] = "bad-case"
    path = tmp_path / "inference.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "kind": "inference", "cases": [good, bad]}), encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    skipped = {row["id"]: row["skipped"] for row in doc["cases"] if row.get("skipped")}
    assert list(skipped) == ["bad-case"], skipped
    assert reason in skipped["bad-case"]
    assert doc["summary"]["skipped"] == 1 and doc["summary"]["predicted"] >= 1


# ---------------------------------------------------------------------------------------------------------------
# Progress and Ctrl-C
# ---------------------------------------------------------------------------------------------------------------


def test_progress_is_reported_during_a_long_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulate_module, "PROGRESS_AFTER_S", 0.0)
    calls: list[tuple[int, int]] = []
    requests = tuple(Request(arrival_s=0.0, input_len=10, output_len=20_000) for _ in range(3))
    result = simulate_serving(ServeScenario(cost=FixedCost(), requests=requests), lambda d, t: calls.append((d, t)))
    assert result.iterations > 16_384 and calls
    assert all(0 <= done <= total == 3 for done, total in calls) and calls[-1] == (3, 3)


def test_ctrl_c_during_a_simulation_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(self: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(simulate_module._Run, "_checkpoint", interrupt)
    result = runner.invoke(app, [*SIM, "--rate", "5", "--duration", "5", "--output-len", "20000"])
    assert result.exit_code == 130, result.output
    assert result.stderr.strip() == "interrupted" and "Traceback" not in result.output


def test_limits_are_stated() -> None:
    assert MAX_DEVICES == 2**24 and MAX_TOKENS == 10_000_000
    assert np.iinfo(np.int64).max > MAX_TOKENS * 2 * 20_000_000  # a run's token sums stay inside int64
