"""Weight-only and expert quantisation, the KV-cache format, prefix caching and engine token budgets (issue 13)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rainier.cli import app
from rainier.errors import InputError
from rainier.hardware import cluster_of
from rainier.precision import Precision
from rainier.serve.cost import (
    INT4_BYTES_PER_WEIGHT,
    MXFP4_BYTES_PER_WEIGHT,
    WeightFormat,
    parse_kv_precision,
    replica_cost,
)
from rainier.serve.estimate import ServeConfig, estimate_serving
from rainier.serve.inflight import VLLM_V1_TOKEN_BUDGET, in_flight_of
from rainier.serve.simulate import Request, ServeScenario, simulate_serving, simulate_timeline
from rainier.workload import count_params, get_model

from .efficiencies import IDEAL

runner = CliRunner()


def test_awq_and_gptq_store_four_bits_and_a_group_scale() -> None:
    assert WeightFormat.parse("AWQ") is WeightFormat.parse("gptq") is WeightFormat.INT4_WEIGHTS
    assert pytest.approx(0.5 + 2.5 / 128) == INT4_BYTES_PER_WEIGHT
    shape = get_model("llama-3.1-70b")
    cost = replica_cost(shape, cluster_of("h100-sxm", 4), tp=4, weights=WeightFormat.INT4_WEIGHTS, eff=IDEAL)
    table = shape.vocab_size * shape.hidden_dim  # the LM head and the input embedding each: left in bf16
    layers = count_params(shape).total - 2 * table
    assert cost.weight_bytes_per_device == pytest.approx((layers * INT4_BYTES_PER_WEIGHT + 2 * table * 2.0) / 4)
    # W4A16 multiplies in bf16: the prefill is as compute-bound as bf16's, the decode reads ~4x fewer bytes of the
    # layers, the whole bf16 head, and no more of the embedding than a token's row
    bf16 = replica_cost(shape, cluster_of("h100-sxm", 4), tp=4, weights=WeightFormat.BF16, eff=IDEAL)
    assert cost.flop_per_s == bf16.flop_per_s
    # without padded rows one token's matmuls add ~1e-4 to its reads under the soft roofline
    cost, bf16 = replace(cost, tile_tokens=0.0), replace(bf16, tile_tokens=0.0)
    norms = cost.elementwise_bytes_per_token / (cost.hbm_bytes_per_s * cost.tp_devices)  # the token's own kernels
    weights = cost.parts(0, 1, 0)["gemm"] - norms
    rate = cost.hbm_bytes_per_s * cost.tp_devices
    assert weights == pytest.approx((layers * INT4_BYTES_PER_WEIGHT + table * 2.0) / rate, rel=1e-3)
    assert bf16.parts(0, 1, 0)["gemm"] - norms == pytest.approx((layers + table) * 2.0 / rate, rel=1e-3)


def test_int8_is_w8a8_at_the_chips_int8_rate_with_a_16_bit_cache() -> None:
    """The shared schema's precision ``int8`` (SmoothQuant-style W8A8): one byte per weight and int8 matmuls."""
    assert WeightFormat.parse("W8A8") is WeightFormat.parse("int8") is WeightFormat.INT8
    shape = get_model("llama-2-7b")
    int8 = replica_cost(shape, cluster_of("a100-80gb", 1), tp=1, weights=WeightFormat.INT8, eff=IDEAL)
    bf16 = replica_cost(shape, cluster_of("a100-80gb", 1), tp=1, weights=WeightFormat.BF16, eff=IDEAL)
    assert int8.flop_per_s == pytest.approx(2 * bf16.flop_per_s)  # A100: 624 int8 TOPS against 312 bf16
    # the layers at one byte; the embedding and LM head stay 16-bit, as with every quantised format here
    assert bf16.weight_bytes_per_device / 2 < int8.weight_bytes_per_device < 0.55 * bf16.weight_bytes_per_device
    assert WeightFormat.INT8.kv is Precision.BF16
    with pytest.raises(InputError, match="no int8 matmuls"):
        replica_cost(shape, cluster_of("b300", 1), tp=1, weights=WeightFormat.INT8, eff=IDEAL)


def test_mxfp4_experts_shrink_only_the_experts_and_multiply_in_fp4_where_the_chip_can() -> None:
    shape = get_model("mixtral-8x7b")
    h100 = replica_cost(shape, cluster_of("h100-sxm", 1), tp=1, weights=WeightFormat.MXFP4_EXPERTS, eff=IDEAL)
    bf16 = replica_cost(shape, cluster_of("h100-sxm", 1), tp=1, weights=WeightFormat.BF16, eff=IDEAL)
    assert h100.expert_weight_bytes == pytest.approx(bf16.expert_weight_bytes * MXFP4_BYTES_PER_WEIGHT / 2.0)
    assert h100.dense_weight_bytes == pytest.approx(bf16.dense_weight_bytes)
    assert h100.expert_flop_per_s == h100.flop_per_s  # no fp4 matmuls on Hopper: dequantised to bf16
    b200 = replica_cost(shape, cluster_of("b200", 1), tp=1, weights=WeightFormat.MXFP4_EXPERTS, eff=IDEAL)
    assert b200.expert_flop_per_s > b200.flop_per_s
    with pytest.raises(InputError, match="MoE"):
        replica_cost(
            get_model("llama-2-7b"), cluster_of("b200", 1), tp=1, weights=WeightFormat.MXFP4_EXPERTS, eff=IDEAL
        )


def test_fp8_kv_cache_halves_the_cache_and_its_reads() -> None:
    shape = get_model("llama-3.1-8b")
    cluster = cluster_of("h100-sxm", 1)
    bf16 = replica_cost(shape, cluster, tp=1, eff=IDEAL)
    fp8 = replica_cost(shape, cluster, tp=1, eff=IDEAL, kv_precision=Precision.FP8)
    assert fp8.kv_bytes_per_token_replica == pytest.approx(bf16.kv_bytes_per_token_replica / 2)
    assert fp8.kv_capacity >= 2 * bf16.kv_capacity - 1
    # decode attention is far below the ridge (a few FLOPs per cached byte): its matmuls add ~1e-4 in quadrature
    half = bf16.parts(0, 64, 64 * 32_000)["attention"] / 2
    assert fp8.parts(0, 64, 64 * 32_000)["attention"] == pytest.approx(half, rel=1e-3)
    assert parse_kv_precision("auto") is None and parse_kv_precision("fp8_e4m3") is Precision.FP8
    with pytest.raises(InputError, match="kv-precision"):
        parse_kv_precision("int2")


def test_prefix_hit_computes_only_the_uncached_prompt() -> None:
    shape = get_model("llama-3.1-8b")
    cluster = cluster_of("h100-sxm", 1)
    base = estimate_serving(shape, cluster, ServeConfig(batch=8, input_len=8192, output_len=64), efficiency=IDEAL)
    half = estimate_serving(
        shape, cluster, ServeConfig(batch=8, input_len=8192, output_len=64, prefix_hit=0.5), efficiency=IDEAL
    )
    # the GEMMs halve (but for half a tile of padded rows, 64 of 32,768, and the LM head, once per prompt);
    # attention to the cached half still costs, so the TTFT falls by a bit less than half
    assert half.prefill_parts["gemm"] == pytest.approx(base.prefill_parts["gemm"] / 2, rel=2e-3)
    assert half.prefill_parts["gemm"] > base.prefill_parts["gemm"] / 2
    assert 0.45 * base.ttft_s < half.ttft_s < 0.75 * base.ttft_s
    assert half.kv_bytes_per_device == base.kv_bytes_per_device  # the cache still holds every prompt token
    assert half.tpot_s == pytest.approx(base.tpot_s)
    with pytest.raises(InputError, match="prefix-hit"):
        ServeConfig(prefix_hit=1.0)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 0.95), st.floats(0.0, 0.95))
def test_ttft_never_rises_with_the_prefix_hit(a: float, b: float) -> None:
    low, high = sorted((a, b))
    shape = get_model("llama-3.1-8b")
    cluster = cluster_of("h100-sxm", 1)

    def ttft(hit: float) -> float:
        config = ServeConfig(batch=4, input_len=4096, output_len=16, prefix_hit=hit)
        return estimate_serving(shape, cluster, config, efficiency=IDEAL).ttft_s

    assert ttft(high) <= ttft(low) * (1 + 1e-9)


def _scenario(**extra: object) -> ServeScenario:
    cost = replica_cost(get_model("llama-3.1-8b"), cluster_of("h100-sxm", 1), tp=1, eff=IDEAL)
    requests = tuple(Request(arrival_s=0.5 * i, input_len=16_000, output_len=32) for i in range(40))
    return ServeScenario(cost=cost, requests=requests, **extra)  # type: ignore[arg-type]


def test_prefix_hit_lowers_simulated_ttft() -> None:
    cold = simulate_serving(_scenario())
    warm = simulate_serving(_scenario(prefix_hit=0.9))
    assert cold.ttft_ms is not None and warm.ttft_ms is not None
    assert warm.ttft_ms.p50 < 0.4 * cold.ttft_ms.p50
    with pytest.raises(InputError, match="prefix_hit"):
        _scenario(prefix_hit=-0.1)


def test_later_chunks_attend_to_earlier_ones() -> None:
    """With chunked prefill a prompt's last chunk attends to all earlier ones: costlier than its first."""
    cost = replica_cost(get_model("llama-3.1-8b"), cluster_of("h100-sxm", 1), tp=1, eff=IDEAL)
    first = cost.parts(4096, 0, 0, prefill_seqs=1)["attention"]
    last = cost.parts(4096, 0, 0, prefill_seqs=1, cached_tokens=28_672)["attention"]
    assert last > 10 * first


def test_whole_prompt_token_budget_spreads_prompts_over_iterations() -> None:
    """TensorRT-LLM's max_num_tokens without chunked context: prompts admitted whole while they fit."""
    cost = replica_cost(get_model("llama-3.1-8b"), cluster_of("h100-sxm", 1), tp=1, eff=IDEAL)
    requests = tuple(Request(arrival_s=0.0, input_len=1000, output_len=4) for _ in range(8))
    unbounded = simulate_timeline(ServeScenario(cost=cost, requests=requests, record_batches=50))
    budget = simulate_timeline(ServeScenario(cost=cost, requests=requests, token_budget=2500, record_batches=50))
    assert max(b[4] for b in unbounded.batches) == 8000
    assert max(b[4] for b in budget.batches) == 2000  # two whole prompts per iteration
    assert budget.first_token_s.min() < unbounded.first_token_s.min()  # the first prompts start decoding sooner


def test_in_flight_cases_take_the_engine_token_budget() -> None:
    base = {"load": "offline", "framework": "TensorRT-LLM"}
    assert in_flight_of(base, 8, 1).token_budget is None
    trt = in_flight_of({**base, "max_num_tokens": 4096}, 8, 1)
    assert trt.token_budget == 4096 and not trt.chunked
    vllm = in_flight_of({"load": "offline", "framework": "vLLM v0.19.1, vllm bench serve"}, 8, 1)
    assert vllm.token_budget == VLLM_V1_TOKEN_BUDGET and vllm.chunked
    old = in_flight_of({"load": "offline", "framework": "vLLM 0.6.0 OpenAI server"}, 8, 1)
    assert old.token_budget is None


def test_cli_kv_precision_and_prefix_hit() -> None:
    args = ["serve", "estimate", "--model", "llama-3.1-8b", "--accelerator", "h100-sxm", "--count", "1"]
    result = runner.invoke(app, [*args, "--kv-precision", "fp8", "--prefix-hit", "0.5", "--precision", "awq", "--json"])
    assert result.exit_code == 0, result.output
    config = json.loads(result.stdout)["config"]
    assert config["kv_precision"] == "fp8" and config["prefix_hit"] == 0.5 and config["precision"] == "int4-weights"
    bad = runner.invoke(app, [*args, "--prefix-hit", "1.5"])
    assert bad.exit_code == 2 and "prefix-hit" in bad.stderr
    sim = ["serve", "simulate", "--model", "llama-3.1-8b", "--accelerator", "h100-sxm", "--count", "1"]
    result = runner.invoke(app, [*sim, "--rate", "2", "--duration", "5", "--prefix-hit", "0.5", "--kv-precision",
                                 "fp8", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
