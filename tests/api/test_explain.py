"""The answer card's "why": the largest loss of a step in words, with its cause and remedy (``api.explain``)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rainier.api import run_estimate
from rainier.api.explain import binding_slo, dominant_loss
from rainier.perf.result import StepBreakdown, StepEstimate


@pytest.fixture(scope="module")
def pipelined() -> StepEstimate:
    # 8 micro-batches on 8 stages: 1F1B idles (p-1)/(m+p-1) = 7/15 of the step (Narayanan et al. 2021)
    return run_estimate(model="llama-3-70b", accelerator="h100-sxm", count=64, plan="tp=8,pp=8,gbs=8")


def _with(estimate: StepEstimate, **parts: float) -> StepEstimate:
    breakdown = StepBreakdown(**parts)
    return replace(estimate, breakdown=breakdown, step_time_s=breakdown.total)


def test_a_deep_pipeline_on_few_micro_batches_is_the_bubble(pipelined: StepEstimate) -> None:
    loss = dominant_loss(pipelined)
    assert loss.part == "pipeline_bubble"
    assert loss.share == pytest.approx(pipelined.breakdown.pipeline_bubble / pipelined.step_time_s)
    assert 0.3 < loss.share < 0.6  # near 7/15 once the windows' communication is counted
    assert (
        loss.text
        == f"{loss.share:.0%} pipeline bubble: 8 micro-batches for pp=8; raise gbs or lower pp (or interleave: vpp)"
    )


def test_the_share_is_of_the_whole_step(pipelined: StepEstimate) -> None:
    estimate = _with(pipelined, compute=6.0, pipeline_bubble=1.0, tp_comm=3.0)
    loss = dominant_loss(estimate)
    assert (loss.part, loss.seconds, loss.share) == ("tp_comm", 3.0, pytest.approx(0.3))
    assert loss.text.startswith("30% tensor-parallel communication: tp=8; lower tp")


def test_the_wan_of_a_multi_site_run_competes_with_the_parts(pipelined: StepEstimate) -> None:
    estimate = _with(pipelined, compute=6.0, pipeline_bubble=1.0, tp_comm=3.0)
    loss = dominant_loss(estimate, wan_s=5.0)  # step 15 s: the WAN is a third of it
    assert loss.part == "wan" and loss.share == pytest.approx(1 / 3)
    assert loss.text == "33% WAN between sites: data parallelism across sites; more WAN bandwidth, or fewer sites"


def test_small_losses_read_as_compute_bound(pipelined: StepEstimate) -> None:
    estimate = _with(pipelined, compute=9.5, ep_comm=0.3, optimizer=0.2)
    loss = dominant_loss(estimate)
    assert loss.text == "compute-bound: 95% of the step computes; the largest loss is expert all-to-all at 3%"


def test_binding_slo_names_the_model_with_least_headroom() -> None:
    def model(name: str, devices: int, ttft: float, tpot: float) -> dict:  # type: ignore[type-arg]
        return {
            "traffic": {"model": name},
            "layout": {"accelerator": "trn2", "tp": 2, "precision": "fp8"},
            "devices": devices,
            "simulated": {"ttft_p99_ms": ttft, "tpot_p99_ms": tpot},
        }

    option = {"devices": 12, "models": [model("a", 4, 1500.0, 10.0), model("b", 8, 100.0, 57.0)]}
    slo = {"ttft_p99_ms": 2000.0, "tpot_p99_ms": 60.0, "e2e_p99_ms": None}
    assert binding_slo(option, slo) == (
        "b binds: simulated TPOT p99 57 ms against the 60 ms SLO (95%) on 8 of 12 devices (trn2 tp=2 fp8)"
    )
    assert binding_slo(option, {"ttft_p99_ms": None}) == ""
