"""Data-parallel attention with wide expert parallelism (ep > tp): hand-computed weights, all-to-all bytes and reads."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from rainier.api.serve_sim import run_serve_simulate, simulation_scenario
from rainier.calibrate.cases import InferenceCase, load_cases
from rainier.cli import app
from rainier.hardware import cluster_of, get_accelerator
from rainier.serve.cost import (
    COMBINE_BYTES_PER_COPY,
    FP8_DISPATCH_BYTES,
    MEMORY_UTILIZATION,
    WeightFormat,
    busiest_share,
    elementwise_bytes_per_token,
    replica_cost,
)
from rainier.serve.estimate import ServeConfig
from rainier.serve.expert_load import EXPERT_CV2, busiest_touched, expected_max_normal
from rainier.serve.validate import predict_metrics, prepare
from rainier.workload import count_params, get_model

from .efficiencies import IDEAL

runner = CliRunner()


def _mixtral_bytes() -> tuple[float, float]:
    """Mixtral 8x7B's non-expert and routed-expert weights in bf16, counted by hand."""
    shape = get_model("mixtral-8x7b")
    assert shape.moe is not None
    per_expert = 3 * shape.hidden_dim * shape.moe.expert_ffn_hidden_dim  # SwiGLU: gate, up, down
    experts = per_expert * shape.moe.num_experts * shape.num_moe_layers
    return (count_params(shape).total - experts) * 2.0, experts * 2.0


def _embedding_bytes() -> float:
    """Mixtral 8x7B's untied input embedding in bf16: stored, but only its looked-up rows are read."""
    shape = get_model("mixtral-8x7b")
    return shape.vocab_size * shape.hidden_dim * 2.0


def test_weights_and_all_to_all_bytes_per_rank_by_hand() -> None:
    shape, cluster = get_model("mixtral-8x7b"), cluster_of("h100-sxm", 8)
    cost = replica_cost(shape, cluster, tp=2, ep=8, dp_attention=4, eff=IDEAL)
    dense, experts = _mixtral_bytes()
    assert cost.replica_devices == 8
    # each of the 4 attention groups holds the non-expert weights over its 2 ranks (the router whole on each rank:
    # one copy more per group); the experts are split 8 ways
    router = 32 * 8 * 4096 * 2.0
    assert cost.weight_bytes_per_device == pytest.approx(dense / 2 + router / 2 + experts / 8)
    h100 = get_accelerator("h100-sxm")
    free = h100.hbm_bytes * MEMORY_UTILIZATION * 8 - (4 * (dense + router) + experts)
    assert cost.kv_capacity == int(free // cost.kv_bytes_per_token)
    # 64 decoding sequences: 64 x top-2 = 128 token copies, 16 per rank on average, each dispatched and combined
    # in bf16; the busiest of the 8 ranks (one expert each, no EPLB) gets 1 + z_8 x CV times that
    # (serve.expert_load): the CV from Mixtral's 8 experts' popularity and from 16 copies' Poisson noise
    busiest = 1 + expected_max_normal(8) * math.sqrt(EXPERT_CV2 * 8 / 256 + 1 / 16)
    slope, intercept = cost.all_to_all
    per_rank = busiest * 64 * 2 / 8 * shape.hidden_dim * (2.0 + 2.0)
    expected = shape.num_moe_layers * (slope * per_rank + 2 * intercept)
    assert cost.parts(0, 64, 64 * 512)["ep_comm"] == pytest.approx(expected)
    assert cost.parts(0, 64, 64 * 512)["tp_comm"] > 0  # attention's all-reduce inside each tp=2 group


def test_fp8_experts_dispatch_in_fp8() -> None:
    shape, cluster = get_model("mixtral-8x7b"), cluster_of("h100-sxm", 8)
    cost = replica_cost(shape, cluster, tp=1, ep=8, dp_attention=8, weights=WeightFormat.FP8, eff=IDEAL)
    slope, intercept = cost.all_to_all
    busiest = 1 + expected_max_normal(8) * math.sqrt(EXPERT_CV2 * 8 / 256 + 1 / 16)  # as above
    per_rank = busiest * 64 * 2 / 8 * shape.hidden_dim * (FP8_DISPATCH_BYTES + 2.0)
    expected = shape.num_moe_layers * (slope * per_rank + 2 * intercept)
    assert cost.parts(0, 64, 64 * 512)["ep_comm"] == pytest.approx(expected)
    assert cost.parts(0, 64, 64 * 512)["tp_comm"] == 0.0  # tp=1: no all-reduce at all


def test_one_sequence_reads_its_groups_weights_and_waits_for_a_rank_with_a_touched_expert() -> None:
    """Decode of one sequence is weight-read bound: a rank reads its group's share of the non-expert weights and
    its touched experts. Top-2 of 8 touches a quarter of the experts on average, but each of the 8 ranks holds one
    whole expert, so two ranks read a whole one and the step waits for them (serve.expert_load.busiest_touched: the
    normal approximation of the largest of 8 binomial counts, 0.87 of an expert). Without padded rows one token's
    matmuls are a few hundredths of its reads, so the soft roofline is the reads to a few parts in 10^4."""
    shape, cluster = get_model("mixtral-8x7b"), cluster_of("h100-sxm", 8)
    cost = replace(replica_cost(shape, cluster, tp=2, ep=8, dp_attention=4, eff=IDEAL), tile_tokens=0.0)
    dense, experts = _mixtral_bytes()
    bw = get_accelerator("h100-sxm").hbm_bw_bytes_per_s
    elementwise = cost.elementwise_bytes_per_token / 4 / (2 * bw)  # the token's group: a quarter, on 2 ranks
    read = dense - _embedding_bytes()
    busiest = busiest_touched(0.25, expected_max_normal(8), 1)
    assert busiest == pytest.approx(0.87, abs=0.005)
    expected = (read / 2 + experts * busiest / 8) / bw + elementwise
    assert cost.parts(0, 1, 0)["gemm"] == pytest.approx(expected, rel=1e-3)


def test_a_group_attends_over_its_own_sequences_only() -> None:
    """4 groups serving 4 x 16 sequences spend on attention what one tp=2 replica serving 16 spends."""
    shape, cluster = get_model("mixtral-8x7b"), cluster_of("h100-sxm", 8)
    wide = replica_cost(shape, cluster, tp=2, ep=8, dp_attention=4, eff=IDEAL)
    alone = replica_cost(shape, cluster, tp=2, ep=2, eff=IDEAL)
    assert wide.parts(0, 64, 64 * 2000)["attention"] == pytest.approx(alone.parts(0, 16, 16 * 2000)["attention"])
    assert wide.parts(4096, 0, 0, prefill_seqs=4)["attention"] == pytest.approx(
        alone.parts(1024, 0, 0, prefill_seqs=1)["attention"]
    )


def test_a_prompt_is_prefilled_whole_by_one_group_while_the_others_wait() -> None:
    """The groups run in lockstep: one 1024-token prompt with 64 decodes costs the busiest group its whole prompt
    plus its 16 decodes, which is what 4 such prompts at once cost (one per group), and more than the same tokens
    spread evenly; decode-only iterations are unchanged."""
    shape, cluster = get_model("mixtral-8x7b"), cluster_of("h100-sxm", 8)
    wide = replica_cost(shape, cluster, tp=2, ep=8, dp_attention=4, eff=IDEAL)
    one = wide.parts(1024, 64, 64 * 2000, prefill_seqs=1)
    four = wide.parts(4096, 64, 64 * 2000, prefill_seqs=4)
    assert one["attention"] == pytest.approx(four["attention"])
    assert one["tp_comm"] == pytest.approx(four["tp_comm"])
    alone = replica_cost(shape, cluster, tp=2, ep=2, eff=IDEAL)
    assert one["attention"] == pytest.approx(alone.parts(1024, 16, 16 * 2000)["attention"])
    assert wide.iteration_s(1024, 64, 64 * 2000, 1) > wide.iteration_s(1024, 64, 64 * 2000, 4)
    assert busiest_share(1, 4) == 1.0 and busiest_share(5, 4) == pytest.approx(2 / 5) and busiest_share(7, 1) == 1.0


def test_layouts_refused() -> None:
    cluster = cluster_of("h100-sxm", 8)
    with pytest.raises(ValueError, match=r"dp_attention=8 is invalid: 1 for llama-2-7b, a dense model"):
        replica_cost(get_model("llama-2-7b"), cluster, tp=1, ep=8, dp_attention=8, eff=IDEAL)
    with pytest.raises(ValueError, match=r"ep=16 is invalid: at most tp=1 .*dp_attention=16"):
        ServeConfig(tp=1, ep=16)
    with pytest.raises(ValueError, match=r"ep=8 is invalid: tp x dp_attention = 4"):
        ServeConfig(tp=1, ep=8, dp_attention=4)
    with pytest.raises(ValueError, match=r"dp_attention=16 is invalid: .*at most 8 devices"):
        replica_cost(get_model("mixtral-8x7b"), cluster, tp=1, ep=16, dp_attention=16, eff=IDEAL)


def test_serve_estimate_with_dp_attention() -> None:
    args = ["serve", "estimate", "--model", "deepseek-v3", "--accelerator", "h200-sxm", "--count", "16", "--tp", "1"]
    result = runner.invoke(app, [*args, "--ep", "16", "--dp-attention", "16", "--batch", "32", "--precision", "fp8",
                                 "--input-len", "2000", "--output-len", "100", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["config"]["dp_attention"] == 16 and doc["config"]["ep"] == 16 and doc["replica_devices"] == 16
    assert doc["decode_parts_ms"]["ep_comm"] > 0 and doc["decode_parts_ms"]["tp_comm"] == 0.0
    assert doc["fits"] and doc["tpot_ms"] > 0
    flags = [*args, "--ep", "16", "--dp-attention", "16", "--batch", "32", "--precision", "fp8"]
    table = runner.invoke(app, flags, env={"COLUMNS": "160"})
    assert table.exit_code == 0 and "ep=16, dp_attention=16, batch=32" in table.stdout


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--ep", "16"], "ep=16 is invalid: at most tp=1"),
        (["--ep", "8", "--dp-attention", "16"], "ep=8 is invalid: tp x dp_attention = 16"),
        (["--ep", "16", "--dp-attention", "16", "--model", "llama-3-8b"], "dp_attention=16 is invalid: 1 for"),
        (["--ep", "16", "--dp-attention", "0"], "dp_attention=0 is invalid"),
    ],
)
def test_serve_estimate_bad_layout(extra: list[str], needle: str) -> None:
    args = ["serve", "estimate", "--model", "deepseek-v3", "--accelerator", "h200-sxm", "--count", "16", "--tp", "1"]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--ep", "16"], "ep=16 is invalid: at most tp=1"),
        (["--ep", "8", "--dp-attention", "16"], "ep=8 is invalid: tp x dp_attention = 16"),
        (["--ep", "16", "--dp-attention", "16", "--model", "llama-3-8b"], "dp_attention=16 is invalid: 1 for"),
        (["--two-batch-overlap"], "two-batch-overlap=True is invalid: with ep > 1"),
    ],
)
def test_serve_simulate_bad_layout(extra: list[str], needle: str) -> None:
    args = ["serve", "simulate", "--model", "deepseek-v3", "--accelerator", "h200-sxm", "--count", "16", "--tp", "1"]
    result = runner.invoke(app, [*args, "--rate", "1", "--duration", "10", *extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0]


def test_serve_simulate_runs_the_layout_serve_estimate_takes() -> None:
    """``serve simulate`` takes ``serve estimate``'s expert-parallel layout keys: 32 H200s as two replicas of 2
    attention groups x tp 8, the experts over 16 ranks; with disaggregated pools both pools use the layout."""
    block = {"model": "deepseek-v3", "accelerator": "h200-sxm", "count": 32, "tp": 8, "ep": 16, "dp_attention": 2,
             "precision": "fp8", "rate": 2.0, "duration": 20.0, "input_len": 1000, "output_len": 100}  # fmt: skip
    scenario = simulation_scenario(**block)
    cost = scenario.cost
    assert (cost.ep, cost.dp_attention, cost.replica_devices, scenario.replicas) == (16, 2, 16, 2)  # type: ignore[attr-defined]
    plain = simulation_scenario(**{**block, "ep": 8, "dp_attention": 1})
    assert plain.cost.iteration_s(0, 64, 64 * 1100) != cost.iteration_s(0, 64, 64 * 1100)
    overlapped = simulation_scenario(**block, two_batch_overlap=True)
    assert overlapped.cost.two_batch_overlap and not cost.two_batch_overlap  # type: ignore[attr-defined]
    assert overlapped.cost.iteration_s(0, 256, 256 * 1100) != cost.iteration_s(0, 256, 256 * 1100)
    result = run_serve_simulate(**block)
    assert result.requests_completed > 0 and result.tpot_ms is not None
    split = simulation_scenario(**{**block, "count": None, "disaggregate": "prefill=h200-sxm:16,decode=h200-sxm:32"})
    assert split.prefill_cost is not None and split.prefill_cost.dp_attention == 2  # type: ignore[attr-defined]
    assert split.replicas == 2 and split.prefill_replicas == 1
    result = runner.invoke(app, ["serve", "simulate", "--model", "deepseek-v3", "--accelerator", "h200-sxm",
                                 "--count", "16", "--tp", "8", "--ep", "16", "--dp-attention", "2", "--precision",
                                 "fp8", "--rate", "2", "--duration", "20", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["requests_completed"] > 0


def _open_case(case_id: str) -> InferenceCase:
    cases = load_cases("validation/inference-open.yaml")
    found = [c for c in getattr(cases, "cases", cases) if c.id == case_id]
    assert len(found) == 1 and isinstance(found[0], InferenceCase)
    return found[0]


def test_decode_server_case_is_scored_on_its_decode_iterations() -> None:
    item = prepare(_open_case("sglang-largeep-h100-dsv3-decode-ep72-b256-kv2000"))
    assert item.config.dp_attention == 72 and item.cost.replica_devices == 72 and item.decode_only
    metrics = predict_metrics(item, IDEAL)
    assert set(metrics) == {"output_tokens_per_s", "output_tokens_per_s_per_device", "tpot_ms", "tpot_p99_ms"}
    assert metrics["output_tokens_per_s"] == pytest.approx(18432 / (metrics["tpot_ms"] / 1e3))


def test_decode_server_under_in_flight_load_is_skipped_with_its_reason() -> None:
    with pytest.raises(ValueError, match=r"serving.batch=None is invalid: a stated batch with phase: decode"):
        prepare(_open_case("sglang-gb200p1-dsv3-decode-ep48-2k"))


def test_dispatch_latency_does_not_grow_with_the_peers() -> None:
    """All-to-all kernels write to every peer at once: EP16 and EP64 over the same two levels (NVLink, then the
    scale-out network) pay the same fixed latency, while the bandwidth term covers the bytes."""
    shape = get_model("deepseek-v3")
    costs = [
        replica_cost(shape, cluster_of("h100-sxm", n), tp=1, ep=n, dp_attention=n, weights=WeightFormat.FP8, eff=IDEAL)
        for n in (16, 64)
    ]
    assert costs[0].all_to_all[1] == pytest.approx(costs[1].all_to_all[1])
    assert costs[0].all_to_all[1] > replica_cost(shape, cluster_of("h100-sxm", 8), tp=8, ep=8, eff=IDEAL).all_to_all[1]


def test_prefill_server_case_needs_one_output_token() -> None:
    case = _open_case("sglang-largeep-h100-dsv3-prefill-ep32-1k")
    assert prepare(case).config.dp_attention == 32
    longer = replace(case, serving={**case.serving, "output_len": 100})
    with pytest.raises(ValueError, match=r"serving.output_len=100 is invalid: 1 with phase: prefill"):
        prepare(longer)


def test_launch_writers_refuse_data_parallel_attention_but_sglang() -> None:
    from rainier.launch.serving import write_sglang, write_trtllm, write_vllm

    config = ServeConfig(tp=1, ep=8, dp_attention=8, weights=WeightFormat.FP8)
    for write in (write_vllm, write_trtllm):
        with pytest.raises(ValueError, match=r"dp_attention=8 cannot be written for .*written for sglang"):
            write("deepseek-v3", config)
    assert "--enable-dp-attention" in write_sglang("deepseek-v3", config)


def test_tensorrt_llm_attention_dp_is_one_attention_group_per_rank() -> None:
    """TensorRT-LLM's ``attention_dp: true`` with ep = tp = 8 is rainier's tp=1 x dp_attention=8, every rank with
    its own executor: the case's max_batch (512) and max_num_tokens bound each rank."""
    cases = load_cases("validation/inference-mlperf.yaml")
    found = [c for c in getattr(cases, "cases", cases) if c.id == "mlperf-inf5.1-nvidia-b200x8-deepseek-r1-offline"]
    assert len(found) == 1 and isinstance(found[0], InferenceCase)
    item = prepare(found[0])
    assert (item.config.tp, item.config.dp_attention, item.config.ep) == (1, 8, 8)
    assert item.in_flight is not None
    assert item.in_flight.max_batch == 8 * 512 and item.in_flight.token_budget == 8 * 4608
    plain = replace(found[0], serving={**found[0].serving, "attention_dp": False})
    item = prepare(plain)
    assert (item.config.tp, item.config.dp_attention) == (8, 1)
    assert item.in_flight is not None and item.in_flight.max_batch == 512
    # left out, as the shared schema leaves it: the case's notes name enable_attention_dp, which is read
    unstated = prepare(replace(found[0], serving={**found[0].serving, "attention_dp": None}))
    assert (unstated.config.tp, unstated.config.dp_attention) == (1, 8)
    assert [a.field for a in unstated.assumptions] == ["serving.attention_dp"]


def test_moe_combine_moves_each_expert_output_row_through_hbm() -> None:
    """A MoE layer writes one hidden-wide output row per routed token copy and reads it back to sum them, on every
    rank that holds a slice of the expert: tp / ep of them (Mixtral: 2 copies of 4,096 per token, 32 layers)."""
    shape = get_model("mixtral-8x7b")
    moe = shape.moe
    assert moe is not None
    row = COMBINE_BYTES_PER_COPY * moe.top_k * shape.hidden_dim * shape.num_moe_layers
    tensor_parallel = elementwise_bytes_per_token(shape, 4)
    expert_parallel = elementwise_bytes_per_token(shape, 4, ep=4)
    assert tensor_parallel - expert_parallel == pytest.approx(3 * row)  # four partial rows per copy, against one
    assert elementwise_bytes_per_token(shape, 4, ep=2) - expert_parallel == pytest.approx(row)
    dense = get_model("llama-3-8b")
    assert elementwise_bytes_per_token(dense, 4) == elementwise_bytes_per_token(dense, 4, ep=4)  # no experts
