"""The serving cost model: hand-computed roofline pieces, monotonicity, memory, bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainier.hardware import cluster_of, get_accelerator
from rainier.precision import Precision
from rainier.serve.cost import MEMORY_UTILIZATION, WeightFormat, replica_cost, usable_memory_bytes
from rainier.serve.efficiency import ServeEfficiency
from rainier.serve.estimate import ServeConfig, estimate_serving
from rainier.workload import count_params, get_model, kv_cache_bytes_per_token

from .efficiencies import IDEAL


def test_decode_of_one_sequence_reads_the_weights_once() -> None:
    shape = get_model("llama-2-7b")
    h100 = get_accelerator("h100-sxm")
    cost = replica_cost(shape, cluster_of("h100-sxm", 1), tp=1, weights=WeightFormat.BF16, eff=IDEAL)
    # every weight but the untied input embedding, of which a token reads one row
    weights = (count_params(shape).total - shape.vocab_size * shape.hidden_dim) * 2.0
    # one token, empty cache, no padded rows (whose matmuls the soft roofline would add, ~3%): memory-bound on the
    # weights (+ one token's KV write)
    cost = replace(cost, tile_tokens=0.0)
    expected = weights / h100.hbm_bw_bytes_per_s
    assert cost.iteration_s(0, 1, 0) == pytest.approx(expected, rel=0.01)


def test_prefill_is_compute_bound_at_the_peak() -> None:
    shape = get_model("llama-2-7b")
    h100 = get_accelerator("h100-sxm")
    cost = replica_cost(shape, cluster_of("h100-sxm", 1), tp=1, weights=WeightFormat.FP8, eff=IDEAL)
    tokens = 64 * 2048
    gemm = cost.parts(tokens, 0, 0, prefill_seqs=64)["gemm"]
    # every weight GEMM pads its rows by half an output tile on average: 64 of the H100's 128 x 256 tile
    assert cost.tile_tokens == 64
    flops = (tokens + 64) * cost.gemm_flop_per_token + (64 + 64) * cost.head_flop_per_token
    # then each token's add-norms (2 x 4h x 2 bytes), rotary on 32 query + 32 key heads of 128 (read and write,
    # 2 bytes) and SwiGLU over 11,008 (read 2f, write f) in every one of the 32 layers, at the HBM bandwidth
    per_layer = 16 * 4096 + 4 * (32 + 32) * 128 + 6 * 11008
    memory_bound = tokens * 32 * per_layer / h100.hbm_bw_bytes_per_s
    # the soft roofline: the weights' one read adds in quadrature to the matmuls (2 ms to 0.9 s: 2 us)
    weights = cost.dense_weight_bytes / h100.hbm_bw_bytes_per_s
    assert gemm == pytest.approx(math.hypot(flops / h100.peak_flop_per_s(Precision.FP8), weights) + memory_bound)


def test_weight_gemms_pad_half_a_tile_of_rows() -> None:
    """Compute-bound, an iteration of N prompt tokens costs (N + 64) rows of every weight GEMM on an H100 (half its
    128-row tile), so two of them cost more than one of 2N by exactly the padding; a MoE iteration pads every
    expert its tokens reach."""
    shape = get_model("llama-2-7b")
    cost = replica_cost(shape, cluster_of("h100-sxm", 1), tp=1, weights=WeightFormat.FP8, eff=IDEAL)
    cost = replace(cost, dense_weight_bytes=0.0)  # the matmuls alone (no weight reads under the soft roofline)
    peak = get_accelerator("h100-sxm").peak_flop_per_s(Precision.FP8)
    n = 16_384
    gemm = [cost.parts(tokens, 0, 0, prefill_seqs=1)["gemm"] for tokens in (n, 2 * n)]
    padding = (64 * cost.gemm_flop_per_token + (1 + 64) * cost.head_flop_per_token) / peak
    assert 2 * gemm[0] - gemm[1] == pytest.approx(padding, rel=1e-6)
    moe = replica_cost(get_model("mixtral-8x7b"), cluster_of("h100-sxm", 2), tp=2, weights=WeightFormat.FP8, eff=IDEAL)
    assert moe.num_experts == 8 and moe.top_k == 2
    moe = replace(moe, dense_weight_bytes=0.0, expert_weight_bytes=0.0)
    unpadded = replace(moe, tile_tokens=0.0)
    extra = moe.parts(n, 0, 0)["gemm"] - unpadded.parts(n, 0, 0)["gemm"]
    rate = moe.flop_per_s * moe.tp_devices
    per_expert = 64 * moe.expert_flop_per_token / moe.top_k  # all 8 experts reached, 64 padded rows each
    assert extra == pytest.approx((64 * (moe.gemm_flop_per_token + moe.head_flop_per_token) + 8 * per_expert) / rate)


def test_kv_capacity_and_fit() -> None:
    shape = get_model("llama-2-70b")
    cluster = cluster_of("h100-sxm", 4)
    cost = replica_cost(shape, cluster, tp=4, weights=WeightFormat.FP8, eff=IDEAL)
    # fp8 layers; the LM head and the input embedding stay in bf16
    tables = 2 * shape.vocab_size * shape.hidden_dim
    free = 4 * get_accelerator("h100-sxm").hbm_bytes * 0.9 - (count_params(shape).total - tables) * 1.0 - tables * 2.0
    per_token = kv_cache_bytes_per_token(shape, precision=Precision.FP8, tp_degree=4) * 4
    assert cost.kv_capacity_tokens == int(free // per_token)
    est = estimate_serving(shape, cluster, ServeConfig(tp=4, batch=8, weights=WeightFormat.FP8), efficiency=IDEAL)
    assert est.fits and est.max_batch == cost.kv_capacity_tokens // 256
    too_big = ServeConfig(tp=4, batch=est.max_batch + 1, weights=WeightFormat.FP8)
    assert not estimate_serving(shape, cluster, too_big, efficiency=IDEAL).fits


def test_throughput_counts_output_tokens_over_end_to_end() -> None:
    est = estimate_serving(get_model("llama-3-8b"), cluster_of("h100-sxm", 8), ServeConfig(tp=1, batch=32))
    assert est.replicas == 8
    assert est.e2e_s == pytest.approx(est.ttft_s + 127 * est.tpot_s)
    assert est.output_tokens_per_s == pytest.approx(8 * 32 * 128 / est.e2e_s)
    doc = est.to_dict()
    assert {"ttft_ms", "tpot_ms", "output_tokens_per_s", "fits"} <= set(doc)


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(min_value=1, max_value=256),
    context=st.integers(min_value=1, max_value=32_768),
    extra=st.integers(min_value=1, max_value=64),
)
def test_iteration_time_grows_with_batch_and_cache(batch: int, context: int, extra: int) -> None:
    cost = replica_cost(get_model("llama-3-70b"), cluster_of("h100-sxm", 8), tp=8, eff=ServeEfficiency())
    base = cost.iteration_s(0, batch, batch * context)
    assert cost.iteration_s(0, batch + extra, (batch + extra) * context) >= base
    assert cost.iteration_s(0, batch, batch * (context + extra)) >= base


@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(min_value=1, max_value=65_536))
def test_the_soft_roofline_lies_between_the_max_and_the_sum(tokens: int) -> None:
    """The weight GEMMs of any batch take between the larger of their matmul and weight-read times (a perfect
    overlap) and their sum (none), 1.41x the larger where the two are equal (serve.cost docstring)."""
    cost = replica_cost(get_model("llama-3.1-8b"), cluster_of("h100-sxm", 1), tp=1, eff=IDEAL)
    flop_rate = cost.flop_per_s * cost.tp_devices
    pad = cost.tile_tokens
    matmul = ((tokens + pad) * cost.gemm_flop_per_token + (1 + pad) * cost.head_flop_per_token) / flop_rate
    read = cost.dense_weight_bytes / (cost.hbm_bytes_per_s * cost.tp_devices)
    gemm = cost.parts(tokens, 0, 0)["gemm"] - tokens * cost.elementwise_bytes_per_token / (
        cost.hbm_bytes_per_s * cost.tp_devices
    )
    assert max(matmul, read) <= gemm * (1 + 1e-9) and gemm <= matmul + read
    assert gemm == pytest.approx(math.hypot(matmul, read))
    ridge = read / ((cost.gemm_flop_per_token + cost.head_flop_per_token) / flop_rate)  # matmul == read here
    assert 250 < ridge < 350  # bf16 on an H100: 989 TFLOP/s over 3.35 TB/s, ~295 tokens of 2-byte weights


def test_more_bandwidth_never_slows_decode() -> None:
    shape, cluster = get_model("llama-3-70b"), cluster_of("h100-sxm", 8)
    slow = replica_cost(shape, cluster, tp=8, eff=ServeEfficiency(memory=0.5, kv_memory=0.5))
    fast = slow.with_efficiency(ServeEfficiency(memory=0.9, kv_memory=0.9))
    assert fast.iteration_s(0, 64, 64 * 2048) < slow.iteration_s(0, 64, 64 * 2048)


def test_moe_decode_reads_only_the_touched_experts() -> None:
    cost = replica_cost(get_model("mixtral-8x7b"), cluster_of("h100-sxm", 2), tp=2, eff=IDEAL)
    one = cost.parts(0, 1, 0)["gemm"]
    many = cost.parts(0, 256, 0)["gemm"]
    assert many > one  # more tokens touch more of the 8 experts (top-2)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tp": 0}, "tp"),
        ({"batch": -1}, "batch"),
        ({"input_len": 0}, "input-len"),
        ({"ep": 4, "tp": 2}, "ep"),
    ],
)
def test_bad_configs_name_the_field(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ServeConfig(**kwargs)


def test_replica_larger_than_cluster_is_rejected() -> None:
    with pytest.raises(ValueError, match="tp"):
        replica_cost(get_model("llama-2-7b"), cluster_of("h100-sxm", 2), tp=4, eff=IDEAL)
    with pytest.raises(ValueError, match="precision"):
        WeightFormat.parse("int3")


def test_prefill_activations_are_reported_and_limit_fit() -> None:
    shape = get_model("llama-2-7b")
    cluster = cluster_of("h100-sxm", 1)
    est = estimate_serving(shape, cluster, ServeConfig(batch=8, input_len=512, output_len=16), efficiency=IDEAL)
    width = 4 * 4096 + 2 * 11008  # in/out, qkv + attention output, gate and up intermediates (SwiGLU)
    assert est.activation_bytes_per_device == 8 * 512 * width * 2.0
    assert est.to_dict()["memory_per_device_gib"]["activations"] > 0 and est.fits
    huge = estimate_serving(shape, cluster, ServeConfig(batch=512, input_len=4096, output_len=1), efficiency=IDEAL)
    assert not huge.fits  # ~115 GB of transient activations in one prefill pass


def test_expert_parallelism_adds_the_all_to_all() -> None:
    shape, cluster = get_model("mixtral-8x7b"), cluster_of("h100-sxm", 8)
    plain = replica_cost(shape, cluster, tp=8, eff=IDEAL)
    spread = replica_cost(shape, cluster, tp=8, ep=8, eff=IDEAL)
    assert plain.parts(0, 64, 64 * 1024)["ep_comm"] == 0.0
    assert spread.parts(0, 64, 64 * 1024)["ep_comm"] > 0.0
    with pytest.raises(ValueError, match="ep"):
        replica_cost(get_model("llama-2-7b"), cluster, tp=8, ep=2, eff=IDEAL)
    with pytest.raises(ValueError, match="ep"):
        replica_cost(shape, cluster, tp=8, ep=3, eff=IDEAL)


@pytest.mark.parametrize(
    ("model", "accelerator", "devices", "kwargs"),
    [
        ("llama-3-70b", "h100-sxm", 8, {"tp": 8}),
        ("llama-3-8b", "trn2", 16, {"tp": 16}),
        ("llama-3-8b+window", "h100-sxm", 8, {"tp": 8}),
        ("deepseek-v3", "h100-sxm", 32, {"tp": 1, "ep": 32, "dp_attention": 32, "weights": WeightFormat.FP8}),
        (
            "deepseek-v3",
            "h100-sxm",
            72,
            {"tp": 1, "ep": 72, "dp_attention": 72, "weights": WeightFormat.FP8, "two_batch_overlap": True},
        ),
    ],
)
@settings(max_examples=200, deadline=None)
@given(
    prefill=st.sampled_from([0, 1, 17, 8192, 40_000]),
    decode=st.integers(0, 4096),
    kv=st.integers(0, 10**8),
    prompts=st.integers(1, 64),
    cached=st.sampled_from([0, 3, 65_536]),
)
def test_iteration_function_is_iteration_s_bit_for_bit(
    model: str,
    accelerator: str,
    devices: int,
    kwargs: dict[str, object],
    prefill: int,
    decode: int,
    kv: int,
    prompts: int,
    cached: int,
) -> None:
    """The simulator's closure (ReplicaCost.iteration_function) repeats parts()'s arithmetic in the same order: the
    same float, for dense, sliding-window, Trainium, expert-parallel (over several nodes) and two-batch-overlap
    replicas."""
    cluster = cluster_of(accelerator, devices)
    name, _, windowed = model.partition("+")
    shape = get_model(name)
    if windowed:
        shape = replace(shape, sliding_window=1024, sliding_window_layers=shape.num_layers // 2)
    cost = replica_cost(shape, cluster, eff=ServeEfficiency(), **kwargs)  # type: ignore[arg-type]
    duration = cost.iteration_function()
    assert duration(prefill, decode, kv, prompts, cached) == cost.iteration_s(prefill, decode, kv, prompts, cached)


def test_neuron_devices_keep_a_runtime_reserve_per_core_not_vllms_fraction() -> None:
    """A GPU engine fills 0.9 of its memory (vLLM's gpu_memory_utilization); a Neuron device keeps 1 GiB for each
    logical core's programs and scratchpad: 92 of a Trainium2's 96 GiB (4 logical cores), 30 of a Trainium1's 32.
    With it NxD Inference's DeepSeek-V3 port, which runs bf16 at tp 64 on 16 Trainium2 chips (86.5 GiB of weights
    a chip, copies of the MLA down-projections and the fp32 router included), fits, as it did when measured."""
    gib = 2**30
    assert usable_memory_bytes(get_accelerator("trn2")) == 92 * gib
    assert usable_memory_bytes(get_accelerator("trn1")) == 30 * gib
    h100 = get_accelerator("h100-sxm")
    assert usable_memory_bytes(h100) == MEMORY_UTILIZATION * h100.hbm_bytes
    config = ServeConfig(tp=64, batch=1, input_len=256, output_len=256, unit_core=True)
    result = estimate_serving(get_model("deepseek-v3"), cluster_of("trn2", 16), config, efficiency=IDEAL)
    assert result.weight_bytes_per_device == pytest.approx(86.5 * gib, rel=2e-3)
    assert result.fits and result.usable_bytes_per_device == 92 * gib
