"""FLOPs per token, the published closed forms, and per-GEMM shapes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rainier.errors import InputError
from rainier.workload import (
    GemmKind,
    Recompute,
    TransformerShape,
    flops_per_token,
    get_model,
    hardware_flops_per_token,
    layer_gemms,
    megatron_hardware_flops,
    megatron_model_flops,
    model_flops_per_token,
    model_gemms,
    palm_model_flops_per_token,
    tp_divisibility_problem,
)

from .conftest import gpt_shape

# The per-GEMM count and Korthikanti's closed form count the same matmuls (no biases, norms, softmax), so
# they agree to floating-point rounding.
EXACT = 1e-12


def test_tiny_gpt_by_hand(tiny_gpt: TransformerShape) -> None:
    # h=8, a=2 (d=4), ffn=32, V=16, l=2, s=4. Weight matmuls per token: 4h² + 8h² = 768 per layer -> 1536,
    # plus LM head 16*8 = 128 -> 1664 MACs = 3328 FLOP. Attention core (full): 2·s·a·(d+d)·l = 2*4*2*8*2 = 256.
    full = flops_per_token(tiny_gpt, causal=False)
    assert full.forward_matmul_flop == 3328
    assert full.forward_attention_flop == 256
    assert full.backward_flop == 2 * (3328 + 256)
    assert full.training_flop == 3 * 3584
    causal = flops_per_token(tiny_gpt, causal=True)
    assert causal.forward_attention_flop == 128  # half of the score/value matrices
    assert causal.forward_flop_without_attention == full.forward_flop_without_attention
    # Korthikanti et al. 2022 sec. 6 for B=1, s=4: 72·1·4·2·64·(1 + 4/48 + 16/192) = 36864 · 7/6 = 43008.
    assert megatron_model_flops(tiny_gpt, batch=1) == pytest.approx(43008)
    assert full.training_flop * 4 == pytest.approx(43008)


@pytest.mark.parametrize("model", ["gpt3-175b", "megatron-1t", "korthikanti-gpt-22b", "nemo-gpt3-5b"])
def test_gemm_sum_equals_korthikanti_closed_form(model: str) -> None:
    shape = get_model(model)
    batch = 4
    gemms = model_gemms(shape, micro_batch=batch, causal=False)
    per_gemm = 3 * gemms.forward_flop  # forward + backward (2x)
    assert per_gemm / megatron_model_flops(shape, batch) - 1 == pytest.approx(0, abs=EXACT)
    per_token = model_flops_per_token(shape, causal=False) * batch * shape.seq_len
    assert per_token / megatron_model_flops(shape, batch) - 1 == pytest.approx(0, abs=EXACT)


def test_full_recompute_matches_narayanan_eq3() -> None:
    shape = get_model("megatron-gpt-145.6b")
    batch = 1536
    ours = hardware_flops_per_token(shape, causal=False, recompute=Recompute.FULL) * batch * shape.seq_len
    assert ours / megatron_hardware_flops(shape, batch) - 1 == pytest.approx(0, abs=EXACT)


def test_recompute_only_adds_hardware_flops() -> None:
    shape = get_model("llama-3-8b")
    model = model_flops_per_token(shape)
    counts = flops_per_token(shape)
    assert hardware_flops_per_token(shape) == model
    assert hardware_flops_per_token(shape, recompute=Recompute.SELECTIVE) == model + counts.forward_attention_flop
    assert model < hardware_flops_per_token(shape, recompute=Recompute.FULL) < model + counts.forward_flop


def test_palm_formula_close_to_exact_count() -> None:
    # PaLM's 6N counts every parameter (biases, norms, position table) as a matmul weight: +0.02% for GPT-3.
    shape = get_model("gpt3-175b")
    ratio = palm_model_flops_per_token(shape) / model_flops_per_token(shape, causal=False)
    assert ratio == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("model", "seq_len"),
    [("mixtral-8x7b", 4096), ("deepseek-v3", 4096), ("llama-3-70b", 8192), ("frontier-2t-moe", 8192)],
)
@pytest.mark.parametrize("causal", [True, False])
def test_gemms_match_per_token_count(model: str, seq_len: int, causal: bool) -> None:
    # b·s·top_k is a multiple of the expert count here, so no rounding of tokens per expert.
    shape = get_model(model)
    gemms = model_gemms(shape, micro_batch=2, seq_len=seq_len, causal=causal)
    per_token = flops_per_token(shape, seq_len, causal=causal).forward_flop
    assert gemms.forward_flop / (2 * seq_len) == pytest.approx(per_token, rel=EXACT)


def test_tensor_parallel_shards_sum_to_the_whole() -> None:
    shape = get_model("llama-3-70b")
    whole = model_gemms(shape, micro_batch=1, tp_degree=1).forward_flop
    assert 8 * model_gemms(shape, micro_batch=1, tp_degree=8).forward_flop == pytest.approx(whole, rel=EXACT)
    # Beyond 8 ranks the 8 KV heads are replicated: each rank still projects one KV head.
    assert 16 * model_gemms(shape, micro_batch=1, tp_degree=16).forward_flop > whole


def test_gemm_shapes_llama_70b_tp8() -> None:
    shape = get_model("llama-3-70b")
    gemms = {g.kind: g for g in layer_gemms(shape, micro_batch=1, seq_len=8192, tp_degree=8)}
    qkv = gemms[GemmKind.QKV]
    assert (qkv.m, qkv.n, qkv.k) == (8192, (8 + 2 * 1) * 128, 8192)
    score = gemms[GemmKind.ATTENTION_SCORE]
    assert (score.m, score.n, score.k, score.batch, score.flop_fraction) == (8192, 8192, 128, 8, 0.5)
    assert not score.has_weight and score.weight_elements == 0
    value = gemms[GemmKind.ATTENTION_VALUE]
    assert (value.m, value.n, value.k) == (8192, 128, 8192)
    out = gemms[GemmKind.ATTENTION_OUT]
    assert (out.m, out.n, out.k) == (8192, 8192, 1024)
    up, down = gemms[GemmKind.MLP_UP], gemms[GemmKind.MLP_DOWN]
    assert (up.n, up.k, down.n, down.k) == (2 * 3584, 8192, 8192, 3584)
    head = model_gemms(shape, micro_batch=1, tp_degree=8).head[0]
    assert (head.kind, head.m, head.n, head.k) == (GemmKind.LM_HEAD, 8192, 128256 // 8, 8192)


def test_gemm_shapes_deepseek_mla_and_experts() -> None:
    shape = get_model("deepseek-v3")
    gemms = {
        g.kind: g
        for g in layer_gemms(
            shape, micro_batch=1, seq_len=4096, tp_degree=8, moe_layer=True, ep_degree=8, expert_tp_degree=1
        )
    }
    assert (gemms[GemmKind.Q_DOWN].n, gemms[GemmKind.Q_DOWN].k) == (1536, 7168)
    assert (gemms[GemmKind.Q_UP].n, gemms[GemmKind.Q_UP].k) == (16 * 192, 1536)
    assert (gemms[GemmKind.KV_DOWN].n, gemms[GemmKind.KV_DOWN].k) == (512 + 64, 7168)
    assert (gemms[GemmKind.KV_UP].n, gemms[GemmKind.KV_UP].k) == (16 * 256, 512)
    assert gemms[GemmKind.ATTENTION_SCORE].k == 192 and gemms[GemmKind.ATTENTION_VALUE].n == 128
    assert gemms[GemmKind.ATTENTION_OUT].k == 16 * 128
    assert (gemms[GemmKind.ROUTER].n, gemms[GemmKind.ROUTER].k) == (256, 7168)
    expert = gemms[GemmKind.EXPERT_UP]
    # 32 local experts; with etp=1 (MoE parallel folding) each rank routes its sequence shard b·s/tp, so each
    # local expert gets b·s·top_k·ep·etp/(tp·E) = 4096·8·8·1/(8·256) = 128 tokens.
    assert (expert.m, expert.n, expert.k, expert.batch) == (128, 2 * 2048, 7168, 32)
    assert (gemms[GemmKind.SHARED_EXPERT_DOWN].k, gemms[GemmKind.SHARED_EXPERT_DOWN].n) == (2048 // 8, 7168)


def test_backward_gemms_double_the_forward() -> None:
    for gemm in layer_gemms(get_model("mixtral-8x7b"), micro_batch=1, seq_len=1024, moe_layer=True):
        dgrad, wgrad = gemm.backward()
        assert dgrad.flop + wgrad.flop == pytest.approx(2 * gemm.flop)
        assert (dgrad.m, dgrad.n) == (gemm.m, gemm.k) and (wgrad.m, wgrad.n) == (gemm.k, gemm.n)


def test_tp_divisibility() -> None:
    falcon = get_model("falcon-180b")
    assert tp_divisibility_problem(falcon, 8) is None
    assert "must divide num_heads=232" in (tp_divisibility_problem(falcon, 16) or "")
    with pytest.raises(ValueError, match="tp_degree=16 is invalid"):
        layer_gemms(falcon, micro_batch=1, tp_degree=16)
    with pytest.raises(ValueError, match="ep_degree=3 is invalid"):
        layer_gemms(get_model("mixtral-8x7b"), micro_batch=1, moe_layer=True, ep_degree=3)
    with pytest.raises(ValueError, match="micro_batch=0 is invalid"):
        model_gemms(falcon, micro_batch=0)


@given(short=st.integers(1, 4096), extra=st.integers(1, 4096), layers=st.integers(1, 8), heads=st.integers(1, 8))
def test_flops_grow_with_context_and_causal_is_cheaper(short: int, extra: int, layers: int, heads: int) -> None:
    shape = gpt_shape(layers=layers, hidden=heads * 16, heads=heads)
    assert model_flops_per_token(shape, short + extra) > model_flops_per_token(shape, short)
    assert model_flops_per_token(shape, short, causal=True) < model_flops_per_token(shape, short, causal=False)


@given(
    span=st.integers(min_value=1, max_value=4096),
    tp=st.sampled_from([1, 2, 4, 8]),
)
def test_packed_documents_scale_the_attention_core_by_keys_per_query(span: int, tp: int) -> None:
    """A query that sees ``span`` keys costs span/s of the full core; every other GEMM is unchanged."""
    shape = get_model("llama-2-7b")
    full = {g.kind: g for g in layer_gemms(shape, micro_batch=2, seq_len=4096, tp_degree=tp)}
    packed = {g.kind: g for g in layer_gemms(shape, micro_batch=2, seq_len=4096, tp_degree=tp, attention_span=span)}
    for kind, gemm in full.items():
        if kind in (GemmKind.ATTENTION_SCORE, GemmKind.ATTENTION_VALUE):
            assert packed[kind].flop == pytest.approx(gemm.flop * span / 4096, rel=EXACT)
        else:
            assert packed[kind] == gemm


def test_a_document_as_long_as_the_sequence_changes_nothing() -> None:
    shape = get_model("llama-2-7b")
    assert layer_gemms(shape, micro_batch=1, attention_span=shape.seq_len) == layer_gemms(shape, micro_batch=1)
    assert layer_gemms(shape, micro_batch=1, attention_span=10 * shape.seq_len) == layer_gemms(shape, micro_batch=1)
    assert shape.with_documents(shape.seq_len).attention_len == shape.seq_len
    with pytest.raises(InputError, match="document_len"):
        shape.with_documents(0)
