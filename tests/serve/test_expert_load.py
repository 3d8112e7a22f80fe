"""The busiest expert-parallel rank's routed load (serve.expert_load) and where the step pays it."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainier.hardware import cluster_of
from rainier.serve.cost import WeightFormat, replica_cost
from rainier.serve.expert_load import (
    BALANCED_CV2,
    BALANCED_RATIO,
    EXPERT_CV2,
    MEASURED_MEAN_COPIES,
    UNBALANCED_RATIO,
    busiest_load,
    busiest_touched,
    expected_max_normal,
    placement_cv2,
)
from rainier.workload import get_model

from .efficiencies import IDEAL


def test_blom_matches_the_expected_maximum_of_normal_draws() -> None:
    # exact expectations of the largest of n standard normals (Harter 1961): 0.5642 (2), 1.0294 (4), 1.4236 (8)
    assert expected_max_normal(1) == 0.0
    assert expected_max_normal(2) == pytest.approx(0.5642, abs=0.03)
    assert expected_max_normal(4) == pytest.approx(1.0294, abs=0.02)
    assert expected_max_normal(8) == pytest.approx(1.4236, abs=0.02)


def test_the_constants_give_back_the_published_imbalance_ratios() -> None:
    """TensorRT-LLM tech blog 4 Table 1: 1,024 routed tokens per rank, hottest rank 1.564 above the mean without EPLB
    (256 experts on EP32), 0.115 with it (288 slots on EP36)."""
    unbalanced = busiest_load(
        MEASURED_MEAN_COPIES, expected_max_normal(32), placement_cv2(256, 256, 32, balanced=False), 32
    )
    balanced = busiest_load(
        MEASURED_MEAN_COPIES, expected_max_normal(36), placement_cv2(256, 288, 36, balanced=True), 36
    )
    assert unbalanced == pytest.approx(1 + UNBALANCED_RATIO)
    assert balanced == pytest.approx(1 + BALANCED_RATIO)
    # the effective per-expert CV (a tail-equivalent: the table's plain std over experts is 164.1 / 128 = 1.28)
    assert math.sqrt(EXPERT_CV2) == pytest.approx(2.14, abs=0.01)
    assert math.sqrt(BALANCED_CV2) == pytest.approx(0.045, abs=0.001)


def test_fewer_coarser_experts_spread_their_load_more_evenly() -> None:
    assert placement_cv2(8, 8, 8, balanced=False) == pytest.approx(EXPERT_CV2 * 8 / 256)  # Mixtral: CV 0.38
    assert placement_cv2(256, 256, 8, balanced=False) == pytest.approx(EXPERT_CV2 / 32)  # 32 experts per rank
    assert placement_cv2(256, 256, 1, balanced=False) == 0.0


@settings(max_examples=200, deadline=None)
@given(
    copies=st.floats(1e-3, 1e7),
    ep=st.integers(2, 1024),
    experts=st.sampled_from([8, 64, 128, 256, 384]),
)
def test_the_busiest_rank_is_between_the_mean_and_everything(copies: float, ep: int, experts: int) -> None:
    slots = math.ceil(experts / ep) * ep
    extreme = expected_max_normal(ep)
    plain = busiest_load(copies, extreme, placement_cv2(experts, slots, ep, balanced=False), ep)
    eplb = busiest_load(copies, extreme, placement_cv2(experts, slots, ep, balanced=True), ep)
    assert 1.0 <= eplb <= ep and 1.0 <= plain <= ep
    if experts * ep >= 4 * slots:  # at least a few experts' popularity per rank to balance
        assert eplb <= plain
    # a larger batch evens out its noise: never a heavier busiest rank
    assert busiest_load(copies * 4, extreme, BALANCED_CV2, ep) <= busiest_load(copies, extreme, BALANCED_CV2, ep)


def test_only_expert_parallel_moe_replicas_pay_an_imbalance() -> None:
    h100x8 = cluster_of("h100-sxm", 8)
    dense = replica_cost(get_model("llama-3-8b"), h100x8, tp=8, eff=IDEAL)
    tp_moe = replica_cost(get_model("mixtral-8x7b"), h100x8, tp=8, eff=IDEAL)
    assert dense.expert_load_extreme == tp_moe.expert_load_extreme == 0.0  # every rank holds a slice of each expert


def test_the_busiest_rank_sets_the_experts_gemms_and_the_all_to_all() -> None:
    """DeepSeek-V3 prefill on EP32 (compute-bound experts): with EPLB the experts' GEMMs and the all-to-all take
    ~1.1x the even split's time; without it ~2.6x."""
    shape, cluster = get_model("deepseek-v3"), cluster_of("h100-sxm", 32)
    kwargs = {"tp": 1, "ep": 32, "dp_attention": 32, "weights": WeightFormat.FP8, "eff": IDEAL}
    plain = replica_cost(shape, cluster, **kwargs)  # type: ignore[arg-type]
    eplb = replica_cost(shape, cluster, eplb=True, **kwargs)  # type: ignore[arg-type]
    even = replace(plain, expert_load_extreme=0.0)  # every rank at the mean
    tokens, prompts = 32 * 4096, 32
    parts = {name: cost.parts(tokens, 0, 0, prefill_seqs=prompts) for name, cost in
             (("plain", plain), ("eplb", eplb), ("even", even))}  # fmt: skip
    copies = tokens * 8 / 32
    latency = shape.num_moe_layers * 2 * (plain.all_to_all[1] + IDEAL.collective_latency_s)
    for name, cv2 in (("plain", EXPERT_CV2 / 8), ("eplb", BALANCED_CV2)):
        busiest = 1 + expected_max_normal(32) * math.sqrt(cv2 + 1 / copies)
        moved = parts[name]["ep_comm"] - latency  # the bytes' share: the latencies do not grow with the load
        assert moved == pytest.approx(busiest * (parts["even"]["ep_comm"] - latency))
        assert parts[name]["gemm"] > parts["even"]["gemm"]
    assert parts["eplb"]["gemm"] < parts["plain"]["gemm"]
    # an expert count ep does not divide (redundant slots: EPLB's copies of hot experts) implies the balance
    assert replica_cost(
        shape, cluster_of("h100-sxm", 72), **kwargs | {"ep": 72, "dp_attention": 72}
    ).expert_load_cv2 == (  # type: ignore[arg-type]
        BALANCED_CV2
    )


def test_eplb_from_the_cli_shortens_an_expert_parallel_prefill() -> None:
    from typer.testing import CliRunner

    from rainier.cli import app

    runner = CliRunner()
    base = ["serve", "estimate", "--model", "mixtral-8x7b", "--accelerator", "h100-sxm", "--count", "8", "--tp", "8",
            "--batch", "64", "--input-len", "1024", "--output-len", "64", "--json"]  # fmt: skip
    plain = runner.invoke(app, [*base, "--ep", "8"])
    eplb = runner.invoke(app, [*base, "--ep", "8", "--eplb"])
    assert plain.exit_code == eplb.exit_code == 0, plain.output + eplb.output
    plain_out, eplb_out = json.loads(plain.output), json.loads(eplb.output)
    assert eplb_out["config"]["eplb"] is True and plain_out["config"]["eplb"] is False
    assert eplb_out["ttft_ms"] < plain_out["ttft_ms"]
    refused = runner.invoke(app, [*base, "--eplb"])  # ep = 1: nothing to balance
    assert refused.exit_code == 2 and "eplb" in refused.output


def test_the_step_waits_for_the_rank_that_touched_most_experts() -> None:
    """Mixtral at one token: top-2 of 8 experts. Under TP8 every rank reads a slice of the two experts (a quarter of
    an expert's bytes each); under EP8 two ranks read a whole expert while the others idle, and the step waits for
    them: the normal approximation of the largest of 8 binomial(1, 1/4) counts puts the busiest rank at
    0.25 + z_8 x 0.433 = 0.87 of an expert (exactly 1)."""
    z8 = expected_max_normal(8)
    assert busiest_touched(0.25, z8, 1) == pytest.approx(0.25 + z8 * math.sqrt(0.25 * 0.75))
    assert busiest_touched(0.25, 0.0, 1) == 0.25  # no expert parallelism: the mean
    assert busiest_touched(1.0, z8, 32) == 1.0  # every expert touched: nothing to wait for
    assert busiest_touched(0.9, 5.0, 4) == 1.0  # at most every slot
    shape, cluster = get_model("mixtral-8x7b"), cluster_of("h100-sxm", 8)
    # no padded rows: one token's matmuls then add next to nothing to its reads under the soft roofline
    tp = replace(replica_cost(shape, cluster, tp=8, eff=IDEAL), tile_tokens=0.0)
    ep = replace(replica_cost(shape, cluster, tp=8, ep=8, eff=IDEAL), tile_tokens=0.0)
    assert ep.experts_per_rank == 1 and tp.experts_per_rank == 0
    rate = tp.hbm_bytes_per_s * tp.tp_devices * IDEAL.memory
    touched = 1 - (1 - 2 / 8)
    extra = ep.expert_weight_bytes * (busiest_touched(touched, z8, 1) - touched) / rate
    # (the combine's partial rows, one per tp rank under TP8, differ by a few hundred ns besides)
    assert ep.parts(0, 1, 512)["gemm"] - tp.parts(0, 1, 512)["gemm"] == pytest.approx(extra, rel=1e-3)
    # a large batch touches every expert on every rank: the layouts read alike
    assert ep.parts(0, 512, 512 * 512)["gemm"] >= tp.parts(0, 512, 512 * 512)["gemm"]
