"""Training state, activation memory (Korthikanti et al. 2022) and KV cache."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rainier.precision import Precision
from rainier.workload import (
    MoeConfig,
    Recompute,
    StateBytesPerParam,
    TransformerShape,
    get_model,
    kv_cache_bytes_per_token,
    layer_activation_bytes,
    model_state_bytes,
)

from .conftest import gpt_shape, llama_shape


def test_korthikanti_table2_by_hand(tiny_gpt: TransformerShape) -> None:
    # s=4, b=2, h=8, a=2: sbh = 64, 5·a·s/h = 5·2·4/8 = 5.
    #   no parallelism       sbh(34 + 5)            = 64·39   = 2496
    #   TP t=2               sbh(10 + 24/2 + 5/2)   = 64·24.5 = 1568
    #   TP + SP t=2          sbh/2·(34 + 5)         = 32·39   = 1248
    #   TP + selective t=2   sbh(10 + 24/2)         = 64·22   = 1408
    #   TP + SP + selective  34·sbh/2               = 1088
    #   full recompute       2·sbh (/t with SP)     = 128 / 64
    #   FlashAttention t=1   34·sbh                 = 2176
    def total(**kwargs: object) -> float:
        return layer_activation_bytes(tiny_gpt, micro_batch=2, **kwargs).total_bytes  # type: ignore[arg-type]

    assert total() == 2496
    assert total(tp_degree=2) == 1568
    assert total(tp_degree=2, sequence_parallel=True) == 1248
    assert total(tp_degree=2, recompute=Recompute.SELECTIVE) == 1408
    assert total(tp_degree=2, sequence_parallel=True, recompute=Recompute.SELECTIVE) == 1088
    assert total(tp_degree=2, recompute=Recompute.FULL) == 128
    assert total(tp_degree=2, sequence_parallel=True, recompute=Recompute.FULL) == 64
    assert total(flash_attention=True) == 2176


@pytest.mark.parametrize("t", [1, 2, 4, 8])
def test_gpt3_matches_the_published_formulas(t: int) -> None:
    shape = get_model("gpt3-175b")
    s, b, h, a = 2048, 1, 12288, 96
    sbh = s * b * h

    def total(**kwargs: object) -> float:
        return layer_activation_bytes(shape, micro_batch=b, tp_degree=t, **kwargs).total_bytes  # type: ignore[arg-type]

    assert total() == pytest.approx(sbh * (10 + 24 / t + 5 * a * s / (h * t)))  # eq. 2/3
    assert total(sequence_parallel=True) == pytest.approx(sbh / t * (34 + 5 * a * s / h))  # eq. 4
    assert total(sequence_parallel=True, recompute=Recompute.SELECTIVE) == pytest.approx(34 * sbh / t)  # eq. 5
    assert total(sequence_parallel=True, recompute=Recompute.FULL) == pytest.approx(2 * sbh / t)


def test_swiglu_gqa_generalisation_by_hand(tiny_llama: TransformerShape) -> None:
    # h=8, a=4, n_kv=2, d=2, SwiGLU f=16, s=4, b=1 (sb = 4):
    #   norms 2·2·sbh = 128; attention: QKV input 2sbh + mask sbh = 96, Q,K,V,out 2·sb·(8 + 4 + 4 + 8) = 192;
    #   core 5·a·s²·b = 320; MLP: input 2sbh + mask sbh = 96, gate+up+down inputs 6·sb·f = 384.  Total 1216.
    acts = layer_activation_bytes(tiny_llama, micro_batch=1)
    assert acts.norm_bytes == 128
    assert acts.attention_bytes == 96 + 192
    assert acts.attention_core_bytes == 320
    assert acts.mlp_bytes == 96 + 384
    assert acts.total_bytes == 1216


def test_moe_layer_activations_by_hand() -> None:
    # Tiny Llama with 4 experts (f=4), top-2, one shared expert (f=4): MLP input+mask 96; routed 2·(2sbh + 6·sb·4)
    # = 2·(64 + 96) = 320; shared 6·sb·4 = 96; router fp32 4·sb·E = 64 -> 576.
    moe = MoeConfig(num_experts=4, top_k=2, expert_ffn_hidden_dim=4, num_shared_experts=1)
    shape = llama_shape(moe=moe)
    assert layer_activation_bytes(shape, micro_batch=1, moe_layer=True).mlp_bytes == 576


@given(
    b=st.integers(1, 64),
    t=st.sampled_from([1, 2, 4, 8]),
    sp=st.booleans(),
    recompute=st.sampled_from(list(Recompute)),
    flash=st.booleans(),
)
def test_activation_invariants(b: int, t: int, sp: bool, recompute: Recompute, flash: bool) -> None:
    shape = get_model("llama-3-8b").with_seq_len(1024)
    kwargs = {"tp_degree": t, "sequence_parallel": sp, "recompute": recompute, "flash_attention": flash}
    one = layer_activation_bytes(shape, micro_batch=b, **kwargs).total_bytes  # type: ignore[arg-type]
    assert layer_activation_bytes(shape, micro_batch=b + 1, **kwargs).total_bytes > one  # type: ignore[arg-type]
    with_sp = layer_activation_bytes(shape, micro_batch=b, **{**kwargs, "sequence_parallel": True})  # type: ignore[arg-type]
    assert with_sp.total_bytes <= one
    full = layer_activation_bytes(shape, micro_batch=b, **{**kwargs, "recompute": Recompute.FULL})  # type: ignore[arg-type]
    assert full.total_bytes <= one


def test_model_state_and_zero_stages() -> None:
    n = 1_000_000_000
    assert StateBytesPerParam.mixed_precision_adam().total == 16  # 2 + 2 + 12 (Rajbhandari et al. 2020)
    assert model_state_bytes(n).total_bytes == 16e9
    assert model_state_bytes(n, dp_degree=8, zero_stage=1).total_bytes == pytest.approx((2 + 2 + 12 / 8) * n)
    assert model_state_bytes(n, dp_degree=8, zero_stage=2).total_bytes == pytest.approx((2 + 14 / 8) * n)
    assert model_state_bytes(n, dp_degree=8, zero_stage=3).total_bytes == pytest.approx(16 / 8 * n)
    fp32 = StateBytesPerParam.mixed_precision_adam(Precision.FP32, Precision.FP32)
    assert model_state_bytes(n, per_param=fp32).weight_bytes == 4e9
    with pytest.raises(ValueError, match="zero_stage=4 is invalid"):
        model_state_bytes(n, zero_stage=4)
    with pytest.raises(ValueError, match="dp_degree=0 is invalid"):
        model_state_bytes(n, dp_degree=0)


def test_kv_cache_gqa_mha_and_mla() -> None:
    # Llama-3-70B (GQA): 2·l·n_kv·d·bytes = 2·80·8·128·2 = 327680 bytes per token.
    llama3 = get_model("llama-3-70b")
    assert kv_cache_bytes_per_token(llama3) == 327_680
    assert kv_cache_bytes_per_token(llama3, tp_degree=8) == 327_680 / 8
    assert kv_cache_bytes_per_token(llama3, tp_degree=16) == 327_680 / 8  # one KV head per rank, replicated
    assert kv_cache_bytes_per_token(llama3, precision=Precision.FP8) == 163_840
    # Llama-2-7B (MHA): 2·32·32·128·2 = 524288.
    assert kv_cache_bytes_per_token(get_model("llama-2-7b")) == 524_288
    # DeepSeek-V3 (MLA): l·(kv_lora_rank + rope_dim)·bytes = 61·(512 + 64)·2 = 70272, the same on every TP rank.
    deepseek = get_model("deepseek-v3")
    assert kv_cache_bytes_per_token(deepseek) == 70_272
    assert kv_cache_bytes_per_token(deepseek, tp_degree=8) == 70_272


def test_invalid_arguments() -> None:
    shape = gpt_shape()
    with pytest.raises(ValueError, match="micro_batch=0 is invalid"):
        layer_activation_bytes(shape, micro_batch=0)
    with pytest.raises(ValueError, match="tp_degree=0 is invalid"):
        kv_cache_bytes_per_token(shape, tp_degree=0)
