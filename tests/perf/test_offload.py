"""Offload to host memory (issue 17): memory leaves HBM for the host, the host link's time joins the step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rainier.catalog.loader import CatalogError
from rainier.cli import app
from rainier.errors import InputError
from rainier.hardware import cluster_of, get_accelerator
from rainier.parallel import InfeasibleKind, parse_plan
from rainier.parallel.plan import Infeasible
from rainier.perf.offload import ACTIVATIONS, OPTIMIZER, WEIGHTS
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate
from rainier.search.engine import search
from rainier.search.space import load_space
from rainier.workload import get_model

PLAN = "tp=1,dp=8,mbs=2,gbs=64,zero=0"


def _estimate(plan: str, accelerator: str = "a100-80gb", model: str = "llama-3-8b", count: int = 8) -> StepEstimate:
    result = estimate(get_model(model), parse_plan(plan), cluster_of(accelerator, count))
    assert isinstance(result, StepEstimate), result
    return result


def test_the_host_link_comes_from_the_catalog_per_direction() -> None:
    a100 = get_accelerator("a100-80gb")  # datasheet: "PCIe Gen4: 64GB/s", both directions together
    assert a100.host_link_bw_bytes_per_s == pytest.approx(32e9)
    assert get_accelerator("h100-sxm").host_link_bw_bytes_per_s == pytest.approx(64e9)  # PCIe Gen5: 128 GB/s
    assert a100.host_memory_bytes == pytest.approx(256e9)  # DGX A100: 2 TB over 8 GPUs
    assert get_accelerator("gb200").host_link_bw_bytes_per_s is None  # no cited per-GPU figure


def test_offloaded_optimizer_leaves_hbm_and_the_step_grows_by_the_link_time() -> None:
    base = _estimate(PLAN)
    assert not base.fits and base.breakdown.offload == 0.0 and base.memory.host == 0.0
    moved = _estimate(PLAN + ",offload=optimizer")
    assert moved.memory.optimizer == 0.0 and moved.memory.host == pytest.approx(base.memory.optimizer)
    assert moved.memory.weights == base.memory.weights and moved.memory.activations == base.memory.activations
    # The state streams in and back out once per step (both directions at once), never hidden behind compute.
    link_s = base.memory.optimizer / 32e9
    assert moved.breakdown.offload == pytest.approx(link_s, rel=1e-12)
    assert moved.step_time_s == pytest.approx(base.step_time_s + link_s, rel=1e-12)
    assert moved.breakdown.total == pytest.approx(moved.step_time_s, rel=1e-9)


def test_a_plan_that_does_not_fit_fits_with_offload() -> None:
    base = _estimate(PLAN)
    everything = _estimate(PLAN + ",offload=optimizer+weights+activations")
    assert not base.fits and everything.fits and everything.memory.total < base.memory.total / 4
    # Weights and activations keep two layers' worth on the device (the prefetch buffers).
    layers = get_model("llama-3-8b").num_layers
    assert everything.memory.weights == pytest.approx(base.memory.weights * 2 / layers)
    assert everything.memory.activations == pytest.approx(base.memory.activations * 2 / layers)
    assert everything.step_time_s >= _estimate(PLAN + ",offload=optimizer").step_time_s
    assert everything.to_dict()["breakdown_s"]["offload"] == everything.breakdown.offload
    assert everything.to_dict()["memory_bytes"]["host"] == everything.memory.host


def test_activation_traffic_hides_behind_its_phase_of_compute() -> None:
    """Activations go out during the forward (a third of the compute) and come back during the backward (two
    thirds); only what the link cannot move in that time is exposed. Checked against the bytes by hand: on one
    1F1B stage a rank holds one micro-batch's activations plus the fp32 logits (4 x seq x vocab bytes)."""
    plan = "tp=1,dp=8,mbs=1,gbs=32,zero=3"
    base, moved = _estimate(plan), _estimate(plan + ",offload=activations")
    shape = get_model("llama-3-8b")
    per_micro_batch = base.memory.activations - 4.0 * shape.seq_len * shape.vocab_size
    m, link = 4, 32e9  # micro-batches per step; A100 PCIe Gen4, per direction
    compute = base.breakdown.compute
    expected = max(m * per_micro_batch / link - compute / 3, 0.0) + max(
        m * per_micro_batch / link - 2 * compute / 3, 0.0
    )
    assert expected > 0.0 and moved.breakdown.offload == pytest.approx(expected, rel=1e-9)
    # Llama 3 70B does more arithmetic per activation byte (h^2 against h): the same traffic hides entirely.
    big = _estimate("tp=8,sp=true,dp=1,mbs=1,gbs=4,zero=1,offload=activations", model="llama-3-70b")
    assert big.breakdown.offload == 0.0 and big.memory.host > 0.0


def test_offload_must_fit_the_host_memory() -> None:
    big = _estimate("tp=1,dp=8,gbs=8,zero=0,offload=optimizer", model="llama-3-70b")
    assert big.memory.host > big.memory.host_capacity and not big.fits
    assert any("offload does not fit the host" in w for w in big.warnings)


def test_a_chip_without_a_cited_host_link_refuses_offload() -> None:
    result = estimate(get_model("llama-3-8b"), parse_plan(PLAN + ",offload=optimizer"), cluster_of("gb200", 8))
    assert isinstance(result, Infeasible) and result.kind is InfeasibleKind.UNSUPPORTED
    assert "gb200" in result.reason and "host link bandwidth" in result.reason
    base = ["train", "estimate", "--model", "llama-3-8b", "--accelerator", "gb200", "--count", "8"]
    out = CliRunner().invoke(app, [*base, "--plan", PLAN + ",offload=weights"])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "offload=weights needs the host link of gb200" in out.output and len(out.output.strip().splitlines()) == 1


def test_search_reports_a_memory_bound_layout_as_fitting_with_offload() -> None:
    """Llama 3 8B on one A100: mixed-precision Adam needs 16 bytes a parameter (128 GB) > 80 GB, so no plan fits
    without offload; the default search retries the plans that do not fit with the fewest kinds that fit."""
    shape = get_model("llama-3-8b")
    found = search(shape, cluster_of("a100-80gb", 1), gbs=8, top_k=3)
    best = found.top[0].estimate
    assert best.fits and best.plan.offload and best.breakdown.offload > 0.0
    with pytest.raises(InputError, match=r"^no valid plan: memory: .*offload not tried: h800 has no cited host link"):
        search(shape, cluster_of("h800", 1), gbs=8)


def test_space_file_offload_sets(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("offload: [optimizer, weights+activations]\n")
    assert load_space(path).offload == (OPTIMIZER, WEIGHTS | ACTIVATIONS)
    path.write_text("offload: none\n")
    assert load_space(path).offload == ()
    path.write_text("tp: [1]\n")
    assert load_space(path).offload is None  # the default: only for plans that do not fit without it
    path.write_text("offload: [gradients]\n")
    with pytest.raises(CatalogError, match=r"space\.offload='gradients' is invalid: none, or a list of sets"):
        load_space(path)


def test_a_space_asking_offload_on_a_chip_without_a_host_link_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("offload: [optimizer]\ntp: [8]\npp: [1]\n")
    base = ["train", "search", "--model", "llama-3-8b", "--count", "8", "--gbs", "64", "--space", str(path)]
    refused = CliRunner().invoke(app, [*base, "--accelerator", "gb200"])
    assert refused.exit_code == 2 and "space.offload needs the host link of gb200" in refused.output
    done = CliRunner().invoke(app, [*base, "--accelerator", "a100-80gb", "--json", "--top", "50"])
    assert done.exit_code == 0, done.output
    assert any("offload=optimizer" in row["plan_text"] for row in json.loads(done.stdout)["top"])
