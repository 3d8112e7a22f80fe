"""Issue 17: full recompute of the first N layers of each chunk (Megatron's ``--recompute-method block``)."""

from __future__ import annotations

import itertools
import json

import pytest
from typer.testing import CliRunner

from rainier.cli import app
from rainier.hardware import cluster_of
from rainier.parallel.plan import Plan, Recompute, parse_plan
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate
from rainier.workload import get_model

runner = CliRunner()
LLAMA_70B = get_model("llama-3-70b")  # 80 layers
H100_64 = cluster_of("h100-sxm", 64)
# (plan without recompute, layers per chunk): 1F1B, interleaved, a zero-bubble V schedule.
PLANS = [
    ("tp=8,pp=4,dp=2,mbs=1,gbs=64", 20),
    ("tp=8,pp=4,dp=2,vpp=2,mbs=1,gbs=64", 10),
    ("tp=4,pp=4,dp=4,mbs=2,gbs=64,schedule=zb-v", 10),
]


def _estimate(text: str, shape: object = LLAMA_70B, cluster: object = H100_64) -> StepEstimate:
    result = estimate(shape, parse_plan(text), cluster)  # type: ignore[arg-type]
    assert isinstance(result, StepEstimate), result
    return result


@pytest.mark.parametrize(("base", "per_chunk"), PLANS)
def test_n_at_or_above_the_layers_per_chunk_is_exactly_full_recompute(base: str, per_chunk: int) -> None:
    full = _estimate(f"{base},recompute=full").to_dict()
    for n in (per_chunk, per_chunk + 1, 1000):
        block = _estimate(f"{base},recompute=full,recompute_layers={n}").to_dict()
        assert block.pop("plan")["recompute_layers"] == n  # type: ignore[index]
        full_plan = dict(full)
        full_plan.pop("plan")
        assert block == full_plan


@pytest.mark.parametrize(("base", "per_chunk"), PLANS)
def test_step_time_grows_and_activations_fall_with_n(base: str, per_chunk: int) -> None:
    none = _estimate(f"{base},recompute=none")
    full = _estimate(f"{base},recompute=full")
    series = [none] + [_estimate(f"{base},recompute=full,recompute_layers={n}") for n in range(1, per_chunk + 1)]
    times = [e.step_time_s for e in series]
    recompute = [e.breakdown.recompute for e in series]
    activations = [e.memory.activations for e in series]
    assert all(a < b for a, b in itertools.pairwise(recompute))
    assert all(a <= b * (1 + 1e-12) for a, b in itertools.pairwise(times))
    assert all(a > b for a, b in itertools.pairwise(activations))
    assert series[-1].step_time_s == full.step_time_s and series[-1].memory.activations == full.memory.activations
    assert times[-1] > times[0]


def test_shares_of_recompute_time_and_memory_are_the_recomputed_layers() -> None:
    """1F1B on 4 ranks of 20 layers, N=5: a quarter of full recompute's extra forward; the first rank (no head,
    the most micro-batches in flight) holds a quarter of its layers as inputs only, the rest in full."""
    base = "tp=8,pp=4,dp=2,mbs=1,gbs=64"
    none, full = _estimate(f"{base},recompute=none"), _estimate(f"{base},recompute=full")
    quarter = _estimate(f"{base},recompute=full,recompute_layers=5")
    assert quarter.breakdown.recompute == pytest.approx(0.25 * full.breakdown.recompute, rel=1e-12)
    expected = 0.25 * full.memory.activations + 0.75 * none.memory.activations
    assert quarter.memory.activations == pytest.approx(expected, rel=1e-12)
    # Executed FLOPs: a quarter of full recompute's extra forward.
    extra = full.hardware_flops_per_step - none.hardware_flops_per_step
    assert quarter.hardware_flops_per_step == pytest.approx(none.hardware_flops_per_step + 0.25 * extra, rel=1e-12)


def test_the_plan_refuses_n_without_full_recompute_and_n_below_one() -> None:
    with pytest.raises(ValueError, match="recompute_layers=2 is invalid: only with recompute=full"):
        Plan(recompute=Recompute.SELECTIVE, recompute_layers=2)
    with pytest.raises(ValueError, match="recompute_layers=0 is invalid: a positive integer"):
        Plan(recompute=Recompute.FULL, recompute_layers=0)


def test_cli_estimate_reads_recompute_layers() -> None:
    args = ["train", "estimate", "--model", "llama-3-70b", "--accelerator", "h100-sxm", "--count", "64", "--json"]
    result = runner.invoke(app, [*args, "--plan", "tp=8,pp=4,dp=2,mbs=1,gbs=64,recompute=full,recompute_layers=2"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["plan"]["recompute"] == "full" and doc["plan"]["recompute_layers"] == 2
    assert doc["breakdown_s"]["recompute"] > 0


@pytest.mark.parametrize(
    ("plan", "words"),
    [
        ("tp=8,pp=4,dp=2,mbs=1,gbs=64,recompute=selective,recompute_layers=2", "only with recompute=full"),
        ("tp=8,pp=4,dp=2,mbs=1,gbs=64,recompute=full,recompute_layers=0", "a positive integer"),
    ],
)
def test_cli_bad_recompute_layers_is_one_line_exit_2(plan: str, words: str) -> None:
    args = ["train", "estimate", "--model", "llama-3-70b", "--accelerator", "h100-sxm", "--count", "64"]
    result = runner.invoke(app, [*args, "--plan", plan])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "recompute_layers" in lines[0] and words in lines[0], result.output
