"""Attention costed as the kernels run it: MLA's absorbed decode, the attention core's precision, engines' KV format."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from rainier.calibrate.cases import InferenceCase, Trust
from rainier.hardware import cluster_of, get_accelerator
from rainier.precision import Precision
from rainier.serve.cost import WeightFormat, mla_decode_attention_flop, replica_cost
from rainier.serve.expert_load import BALANCED_CV2, expected_max_normal
from rainier.serve.validate import serve_config
from rainier.workload import get_model
from rainier.workload.flops import attention_core_flop_per_token

from .efficiencies import IDEAL


def test_mla_decode_attends_over_the_latent_with_every_head() -> None:
    """DeepSeek-V3: 128 heads x (QK^T over 512 + 64, AV over 512) x 2 FLOPs x 61 layers per (query, key) pair,
    3.4x the expanded heads' 2 x 128 x (192 + 128) x 61 that prefill runs."""
    shape = get_model("deepseek-v3")
    assert mla_decode_attention_flop(shape) == 2 * 128 * (512 + 64 + 512) * 61
    assert attention_core_flop_per_token(shape, 1, causal=False) == 2 * 128 * (192 + 128) * 61
    assert mla_decode_attention_flop(get_model("llama-3.1-8b")) == 0.0  # no latent: the usual heads


def test_long_context_mla_decode_is_bound_by_the_absorbed_flops() -> None:
    """One H200 decoding 2 sequences at 64K context (bf16 cache): the latent read is 2 x 65,536 x 576 x 2 B x 61
    = 9.2 GB, 1.9 ms at 4.8 TB/s; the absorbed attention is 2.3 TFLOP, 2.3 ms at the bf16 peak -- near the ridge,
    where the soft roofline adds the two in quadrature: 2.96 ms."""
    shape, cluster = get_model("deepseek-v3"), cluster_of("h200-sxm", 16)
    cost = replica_cost(
        shape, cluster, tp=1, ep=16, dp_attention=16, weights=WeightFormat.FP8, eff=IDEAL,
        kv_precision=Precision.BF16,
    )  # fmt: skip
    kv_tokens = 16 * 2 * 65_536  # 2 per rank, each group attending over its own
    h200 = get_accelerator("h200-sxm")
    flop = 2 * 65_536 * mla_decode_attention_flop(shape)
    latent = 2 * (65_536 + 1) * 576 * 2 * 61 / h200.hbm_bw_bytes_per_s  # the cache and each new token's row
    expected = math.hypot(flop / h200.peak_flop_per_s(Precision.BF16), latent)
    assert expected == pytest.approx(2.96e-3, rel=0.002)
    assert cost.parts(0, 32, kv_tokens)["attention"] == pytest.approx(expected)
    # prompts attend with the expanded heads: 16 prompts of 1,024 tokens, one per group, causally over themselves
    pairs = 16 * 1024**2 / 2 / 16
    expanded = pairs * attention_core_flop_per_token(shape, 1, causal=False) / h200.peak_flop_per_s(Precision.BF16)
    # (far above the ridge: the prompts' KV reads add ~2e-5 in quadrature)
    assert cost.parts(16 * 1024, 0, 0, prefill_seqs=16)["attention"] == pytest.approx(expanded, rel=1e-4)


def test_attention_multiplies_at_its_cache_precision() -> None:
    """An fp8 checkpoint over a bf16 cache (SGLang's and vLLM's default) runs its attention at the bf16 rate; an fp8
    cache under fp8 weights runs at the fp8 rate (TensorRT-LLM's FP8 FMHA/XQA), and so does an NVFP4 checkpoint's
    (only its linear layers are 4-bit); bf16 weights stay bf16."""
    shape, cluster = get_model("llama-3.1-8b"), cluster_of("b200", 1)
    b200 = get_accelerator("b200")
    expected = {
        (WeightFormat.BF16, Precision.BF16): Precision.BF16,
        (WeightFormat.BF16, Precision.FP8): Precision.BF16,
        (WeightFormat.FP8, Precision.BF16): Precision.BF16,
        (WeightFormat.FP8, Precision.FP8): Precision.FP8,
        (WeightFormat.FP4, Precision.BF16): Precision.BF16,
        (WeightFormat.FP4, Precision.FP8): Precision.FP8,
    }
    for (weights, kv), precision in expected.items():
        cost = replica_cost(shape, cluster, tp=1, weights=weights, kv_precision=kv, eff=IDEAL)
        assert cost.attention_flop_per_s == b200.peak_flop_per_s(precision), (weights, kv)
    # a 32K prompt is attention-heavy: at the bf16 rate it takes longer than at fp8
    fast = replica_cost(shape, cluster, tp=1, weights=WeightFormat.FP8, kv_precision=Precision.FP8, eff=IDEAL)
    slow = replica_cost(shape, cluster, tp=1, weights=WeightFormat.FP8, kv_precision=Precision.BF16, eff=IDEAL)
    assert slow.parts(32_768, 0, 0)["attention"] == pytest.approx(2 * fast.parts(32_768, 0, 0)["attention"])


def _case(framework: str, **serving: object) -> InferenceCase:
    return InferenceCase(
        id="x", group="g", trust=Trust.B, source="s", model={}, system={},
        serving={"tp": 8, "batch": 1, "input_len": 128, "output_len": 128, "precision": "fp8", "framework": framework,
                 **serving},
        targets=({"metric": "tpot_ms", "value": 10.0},), notes="",
    )  # fmt: skip


def test_sglang_and_vllm_keep_a_16_bit_cache_unless_told() -> None:
    """--kv-cache-dtype auto is the model's activation dtype in SGLang and vLLM, fp8 under TensorRT-LLM's fp8."""
    assert serve_config(_case("SGLang v0.4.6")).kv_precision is Precision.BF16
    assert serve_config(_case("vLLM 0.8.5 (V1)")).kv_precision is Precision.BF16
    assert serve_config(_case("SGLang", kv_cache_dtype="auto")).kv_precision is Precision.BF16
    assert serve_config(_case("SGLang", kv_cache_dtype="fp8_e4m3")).kv_precision is Precision.FP8
    assert serve_config(_case("TensorRT-LLM 0.17")).kv_precision is None  # the fp8 weight format's default: fp8


def test_two_batch_overlap_hides_the_all_to_all_behind_the_other_half() -> None:
    """Two micro-batches: the GEMMs run twice on half the tokens (each half reads its weights), attention does the
    whole batch's work, and only the all-to-all beyond the compute is left exposed."""
    shape, cluster = get_model("deepseek-v3"), cluster_of("h100-sxm", 72)
    kwargs = {"tp": 1, "ep": 72, "dp_attention": 72, "weights": WeightFormat.FP8, "eff": IDEAL}
    plain = replica_cost(shape, cluster, **kwargs)  # type: ignore[arg-type]
    tbo = replica_cost(shape, cluster, two_batch_overlap=True, **kwargs)  # type: ignore[arg-type]
    batch, kv = 72 * 256, 72 * 256 * 2000
    whole, half, both = plain.parts(0, batch, kv), plain.parts(0, batch // 2, kv // 2), tbo.parts(0, batch, kv)
    compute = 2 * half["gemm"] + whole["attention"]
    assert both["gemm"] == pytest.approx(2 * half["gemm"]) and both["attention"] == whole["attention"]
    assert both["ep_comm"] == pytest.approx(max(0.0, 2 * half["ep_comm"] - compute))
    assert sum(both.values()) == pytest.approx(max(compute, 2 * half["ep_comm"]) + whole["overhead"])
    assert sum(both.values()) < sum(whole.values())  # 256 per rank: the all-to-all is worth hiding
    assert tbo.parts(0, 1, 2000) == plain.parts(0, 1, 2000)  # one token cannot be split


def test_two_batch_overlap_needs_expert_parallelism() -> None:
    from typer.testing import CliRunner

    from rainier.cli import app

    result = CliRunner().invoke(
        app, ["serve", "estimate", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "1",
              "--two-batch-overlap"],
    )  # fmt: skip
    assert result.exit_code == 2 and "two-batch-overlap" in result.output


def test_chunked_prefill_pipelines_through_the_stages() -> None:
    """128K prompt in 32K chunks on PP4: the chunks cross the stages one behind the other, so the prefill takes a
    quarter of the chunks' summed time plus three quarters of the slowest (the last, attending to all before it)."""
    from rainier.serve.estimate import prefill_s

    shape, cluster = get_model("deepseek-v3"), cluster_of("gb300", 4)
    cost = replica_cost(shape, cluster, tp=1, pp=4, weights=WeightFormat.FP4, eff=IDEAL)
    chunks = [cost.iteration_s(32_768, 0, 0, cached_tokens=done) for done in range(0, 131_072, 32_768)]
    assert chunks == sorted(chunks)  # later chunks attend to more context
    assert prefill_s(cost, 1, 131_072, 0, 32_768) == pytest.approx(sum(chunks) / 4 + 3 * chunks[-1] / 4)
    assert prefill_s(cost, 1, 131_072, 0, 32_768) < 0.6 * prefill_s(cost, 1, 131_072, 0)  # one pass: no overlap
    one_stage = replace(cost, pipeline_stages=1)
    assert prefill_s(one_stage, 1, 131_072, 0, 32_768) == pytest.approx(sum(chunks))  # pp=1: chunks in turn


def test_tensorrt_llm_engines_admit_whole_prompts_up_to_8192_tokens() -> None:
    """TensorRT-LLM's max_num_tokens defaults to 8192 from v0.11, prompts admitted whole (no chunked context); NIM
    serves such engines; older releases and unversioned text keep no budget."""
    from rainier.serve.inflight import TRTLLM_TOKEN_BUDGET, in_flight_of

    for framework in ("TensorRT-LLM 0.17 trtllm-serve", "NVIDIA NIM for LLMs 1.8.0, fp8 TP2 profile"):
        load = in_flight_of({"load": "concurrency", "concurrency": 8, "framework": framework}, 2, 2)
        assert load.token_budget == TRTLLM_TOKEN_BUDGET == 8192 and not load.chunked, framework
    chunked = in_flight_of({"load": "offline", "framework": "TensorRT-LLM 0.17", "chunked_context": True}, 2, 2)
    assert chunked.chunked
    for framework in ("TensorRT-LLM 0.9", "TensorRT-LLM"):
        assert in_flight_of({"load": "offline", "framework": framework}, 2, 2).token_budget is None


def test_prefill_dispatch_crosses_to_each_node_once() -> None:
    """DeepEP's normal kernels (prefill) send a token once per node holding one of its experts: top-8 over 4 nodes
    reaches 4 x (1 - (3/4)^8) = 3.6 nodes, so 0.45 network copies per remote expert copy; decode sends them all."""
    from rainier.serve.dispatch import node_copies_share

    assert node_copies_share(4, 8) == pytest.approx(4 * (1 - 0.75**8) / 8) == pytest.approx(0.45, abs=0.005)
    assert node_copies_share(1, 8) == node_copies_share(4, 1) == 1.0
    shape = get_model("deepseek-v3")
    kwargs = {"tp": 1, "ep": 32, "dp_attention": 32, "weights": WeightFormat.FP8, "eff": IDEAL, "eplb": True}
    cost = replica_cost(shape, cluster_of("h100-sxm", 32), **kwargs)  # type: ignore[arg-type]
    assert cost.ep_nodes == 4 and 0 < cost.all_to_all_network < cost.all_to_all[0]
    slope, intercept = cost.all_to_all
    tokens = 32 * 1024
    # the busiest of 32 ranks under EPLB: 1 + z_32 x CV, placement residual and 8,192 copies' noise (serve.expert_load)
    busiest = 1 + expected_max_normal(32) * math.sqrt(BALANCED_CV2 + 1 / 8192)
    per_rank = busiest * tokens * 8 / 32 * shape.hidden_dim * (cost.dispatch_bytes_per_token / shape.hidden_dim + 2.0)
    prefill_slope = slope - cost.all_to_all_network * (1 - node_copies_share(4, 8))
    expected = shape.num_moe_layers * (prefill_slope * per_rank + 2 * intercept)
    assert cost.parts(tokens, 0, 0, prefill_seqs=32)["ep_comm"] == pytest.approx(expected)
    decode = shape.num_moe_layers * (slope * per_rank + 2 * intercept)
    assert cost.parts(0, tokens, tokens * 1024)["ep_comm"] == pytest.approx(decode)
    one_domain = replica_cost(shape, cluster_of("gb200", 48), **kwargs | {"ep": 48, "dp_attention": 48})  # type: ignore[arg-type]
    assert one_domain.ep_nodes == 1 and one_domain.all_to_all_network == 0.0


def test_a_precision_with_a_remark_reads_its_format() -> None:
    """``bf16 (FP8 checkpoint dequantized to BF16 at load)``: the format, then a remark; a wrong format is refused."""
    assert (
        serve_config(_case("NxDI", precision="bf16 (FP8 checkpoint dequantized at load)")).weights is WeightFormat.BF16
    )
    with pytest.raises(ValueError, match=r"serving\.precision"):
        serve_config(_case("NxDI", precision="bf17 (a typo)"))


def test_an_nvfp4_mla_checkpoint_keeps_its_latent_projections_in_16_bits() -> None:
    """DeepSeek-V3's latent projections: 61 x (q_a 7168 x 1536 + q_b 1536 x 128 x 192 + kv_a 7168 x 576 + kv_b 512 x
    128 x 256) = 4,249,550,848 weights. Under fp4 they stay 16-bit by default (NVIDIA's NVFP4 checkpoint), or 8-bit
    when the checkpoint's attention is FP8: 1 byte per weight apart, and multiplied at 1/4 and 1/2 of B200's fp4
    rate, which costs 2 x (4 - 2) FLOPs more per weight in the GEMMs' fp4 time units; fp8 weights keep them fp8."""
    shape, cluster = get_model("deepseek-v3"), cluster_of("b200", 8)
    latent = 61 * (7168 * 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 * 128 * 256)
    assert latent == 4_249_550_848

    def cost(weights: WeightFormat, latent_precision: Precision | None = None):  # type: ignore[no-untyped-def]
        return replica_cost(shape, cluster, tp=8, ep=8, weights=weights, eff=IDEAL, latent_precision=latent_precision)

    bf16, fp8 = cost(WeightFormat.FP4), cost(WeightFormat.FP4, Precision.FP8)
    # with the 7 extra copies of the down-projections every tp rank holds (q_a and kv_a, 61 x 7168 x 2112)
    held = latent + 7 * 61 * 7168 * (1536 + 576)
    assert bf16.dense_weight_bytes - fp8.dense_weight_bytes == pytest.approx(held * 1.0)
    assert bf16.gemm_flop_per_token - fp8.gemm_flop_per_token == pytest.approx(2 * held * (4 - 2))
    plain = cost(WeightFormat.FP8)  # fp8 weights: the projections are fp8 like the rest, whatever latent_precision
    assert cost(WeightFormat.FP8, Precision.BF16).dense_weight_bytes == plain.dense_weight_bytes
    with pytest.raises(ValueError, match="latent_precision"):
        cost(WeightFormat.FP4, Precision.FP4)


def test_mla_down_projections_are_replicated_on_every_tensor_parallel_rank() -> None:
    """DeepSeek-V3's W_DQ (7168 x 1536) and W_DKV with the rotary key (7168 x 576) are whole on each of the tp
    ranks: at tp 8, 7 extra copies of 61 x 7168 x 2112 weights are stored and read per pass (1 byte each in fp8),
    and their GEMMs run 7 more times; without MLA, tensor parallelism splits every weight and adds nothing."""
    shape, cluster = get_model("deepseek-v3"), cluster_of("h200-sxm", 8)
    one = replica_cost(shape, cluster, tp=1, weights=WeightFormat.FP8, eff=IDEAL)
    eight = replica_cost(shape, cluster, tp=8, weights=WeightFormat.FP8, eff=IDEAL)
    down = 61 * 7168 * (1536 + 512 + 64)
    router = 58 * (256 * 7168 + 256)  # 58 MoE layers' gates and sigmoid biases, 16-bit and copied as well
    assert eight.dense_weight_bytes - one.dense_weight_bytes == 7 * down + 7 * router * 2
    assert eight.gemm_flop_per_token - one.gemm_flop_per_token == 2 * 7 * (down + router)
    assert eight.weight_bytes_per_device * 8 - one.weight_bytes_per_device == pytest.approx(7 * (down + 2 * router))
    # data-parallel attention groups of one rank each hold one copy per group, as they hold the rest of attention
    groups = replica_cost(shape, cluster, tp=1, ep=8, dp_attention=8, weights=WeightFormat.FP8, eff=IDEAL)
    assert groups.gemm_flop_per_token == one.gemm_flop_per_token
    llama = get_model("llama-3.1-70b")
    dense = [replica_cost(llama, cluster, tp=tp, eff=IDEAL) for tp in (1, 8)]
    assert dense[0].dense_weight_bytes == dense[1].dense_weight_bytes
    assert dense[0].gemm_flop_per_token == dense[1].gemm_flop_per_token


def test_neuron_ranks_each_hold_the_mla_down_projections() -> None:
    """On Trainium2 a tensor-parallel rank is a logical NeuronCore (LNC=2, 4 per chip): DeepSeek-V3 at tp 64 on
    16 chips holds 64 copies of the bf16 down-projections, 1.85 GB a rank."""
    shape, cluster = get_model("deepseek-v3"), cluster_of("trn2", 16)
    cost = replica_cost(shape, cluster, tp=64, unit_core=True, eff=IDEAL)
    flat = replica_cost(shape, cluster, tp=4, unit_core=True, eff=IDEAL)  # one chip's 4 ranks
    down = 61 * 7168 * (1536 + 512 + 64) * 2
    router = 58 * (256 * 7168 + 256) * 4  # NxD's fp32 router, copied alike: 0.43 GB a rank
    assert cost.dense_weight_bytes - flat.dense_weight_bytes == pytest.approx(60 * (down + router))
    assert down == pytest.approx(1.847e9, rel=1e-3)
    assert router == pytest.approx(0.4258e9, rel=1e-3)


def test_kv_projections_are_copied_to_ranks_beyond_the_kv_heads() -> None:
    """Llama 3 70B (8 KV heads of 128) at tp 32 on Trainium1: each of the 32 ranks holds one whole KV head, so the
    K and V projections (80 x 2 x 8192 x 1024 weights) are held 4 times; at tp 8 they are split, one head a rank."""
    shape, cluster = get_model("llama-3-70b"), cluster_of("trn1", 16)
    kv = 80 * 2 * 8192 * 8 * 128
    split = replica_cost(shape, cluster, tp=8, unit_core=True, eff=IDEAL)
    copied = replica_cost(shape, cluster, tp=32, unit_core=True, eff=IDEAL)
    assert copied.dense_weight_bytes - split.dense_weight_bytes == 3 * kv * 2  # bf16
    assert copied.gemm_flop_per_token - split.gemm_flop_per_token == 2 * 3 * kv
    assert copied.kv_bytes_per_token_replica == 4 * split.kv_bytes_per_token_replica  # the cache is copied alike


def test_padded_heads_hold_padded_projections() -> None:
    """Llama 2 13B (40 heads of 128, no GQA) at tp 32: transformers-neuronx pads the heads to 64, two a rank, and
    with them the Q, K, V and O columns: 24 more heads' worth of each of the four 5120 x 128 matrices per layer, 40
    layers, stored and read like the real ones (as the padded heads' attention and cache already were)."""
    shape, cluster = get_model("llama-2-13b"), cluster_of("trn1", 16)
    even = replica_cost(shape, cluster, tp=8, unit_core=True, eff=IDEAL)  # 5 heads a rank, nothing padded
    padded = replica_cost(shape, cluster, tp=32, unit_core=True, eff=IDEAL)
    extra = 40 * 4 * 5120 * 128 * 24
    assert padded.dense_weight_bytes - even.dense_weight_bytes == pytest.approx(extra * 2)
    assert padded.gemm_flop_per_token - even.gemm_flop_per_token == pytest.approx(2 * extra)


def test_the_moe_router_is_copied_to_every_rank_and_never_quantised() -> None:
    """Mixtral 8x7B's gates (32 layers x 8 experts x 4096) are whole on each tensor-parallel rank and stay 16-bit
    under an fp8 checkpoint (vLLM's ReplicatedLinear gate, quant_config=None): at tp 8, 7 extra copies of 2 bytes
    a weight beyond tp 1, and 2 bytes instead of 1 at tp 1; a dense model's weights are unchanged by tp."""
    shape, cluster = get_model("mixtral-8x7b"), cluster_of("h100-sxm", 8)
    router = 32 * 8 * 4096
    one = replica_cost(shape, cluster, tp=1, weights=WeightFormat.FP8, eff=IDEAL)
    eight = replica_cost(shape, cluster, tp=8, weights=WeightFormat.FP8, eff=IDEAL)
    assert eight.dense_weight_bytes - one.dense_weight_bytes == 7 * router * 2
    assert eight.gemm_flop_per_token - one.gemm_flop_per_token == 2 * 7 * router
    bf16 = replica_cost(shape, cluster, tp=1, weights=WeightFormat.BF16, eff=IDEAL)
    # bf16 -> fp8 halves every quantised weight's bytes but the router's (and the 16-bit LM head's)
    head = shape.vocab_size * shape.hidden_dim
    assert bf16.dense_weight_bytes - one.dense_weight_bytes == pytest.approx(
        bf16.dense_weight_bytes / 2 - head - router
    )
