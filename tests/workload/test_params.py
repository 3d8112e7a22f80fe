"""Parameter counts: hand-computed tiny shapes and published totals of real models (0.5%)."""

from __future__ import annotations

import pytest

from rainier.workload import (
    MlaConfig,
    MoeConfig,
    Router,
    TransformerShape,
    count_params,
    get_entry,
    get_model,
    model_entries,
)

from .conftest import llama_shape

# (model id, published total parameters, source) -- the closing report lists the measured errors.
PUBLISHED_TOTALS = [
    ("llama-3-70b", 70.55e9),
    ("llama-3-8b", 8.03e9),
    ("llama-3-405b", 405.8e9),
    ("llama-2-7b", 6.74e9),
    ("llama-2-13b", 13.0e9),
    ("llama-2-70b", 68.98e9),
    ("mixtral-8x7b", 46.7e9),
    ("mixtral-8x22b", 140.6e9),
    ("deepseek-v3", 671e9),  # main model; the 14B MTP module is not part of the shape
    ("gpt3-175b", 175.0e9),
]
PUBLISHED_ACTIVE = [("mixtral-8x7b", 12.9e9), ("mixtral-8x22b", 39.1e9)]
TOLERANCE = 0.005


def test_tiny_gpt_by_hand(tiny_gpt: TransformerShape) -> None:
    # h=8, a=2, ffn=32, V=16, s=4, 2 layers, biases, LayerNorm, tied, learned positions:
    # attention: QKV 8*24 + 24 bias = 216, out 8*8 + 8 = 72 -> 288; MLP 2*8*32 + 32 + 8 = 552; norms 2*(8+8) = 32
    # layer = 872; 2 layers = 1744; token table 16*8 = 128; positions 4*8 = 32; final norm 16 -> 1920.
    counts = count_params(tiny_gpt)
    assert counts.dense_layer.attention == 288
    assert counts.dense_layer.mlp == 552
    assert counts.dense_layer.norms == 32
    assert counts.total == 1920
    assert counts.output_head == 0 and counts.embedding == 128 and counts.position_embedding == 32
    # Narayanan et al. 2021 sec. 5.1: P = 12lh^2 (1 + 13/(12h) + (V + s)/(12lh)), which omits the final LayerNorm.
    narayanan = 12 * 2 * 8**2 * (1 + 13 / (12 * 8) + (16 + 4) / (12 * 2 * 8))
    assert counts.total - 16 == pytest.approx(narayanan)
    assert sum(counts.by_group().values()) == counts.total


def test_tiny_llama_by_hand(tiny_llama: TransformerShape) -> None:
    # h=8, 4 heads of 2, 2 KV heads, SwiGLU ffn 16, no biases, RMSNorm, untied, V=16:
    # attention 8*(8 + 2*4) + 8*8 = 192; MLP 3*8*16 = 384; norms 2*8 = 16 -> 592 per layer, 1184 for 2 layers;
    # embedding 128 + head 128 + final norm 8 -> 1448.
    counts = count_params(tiny_llama)
    assert counts.dense_layer.total == 592
    assert counts.total == 1448 == counts.active
    assert counts.non_embedding == 1184 + 8


def test_moe_and_mla_by_hand() -> None:
    # 2 layers, first dense; MoE: 4 experts of SwiGLU width 4 (3*8*4 = 96 each), top-2, one shared of width 8 (192),
    # sigmoid router 8*4 + 4 bias = 36. MLA: q 8*4 + 4 (norm) + 4*4*(2+2) = 100; kv_down 8*(4+2) + 4 = 52;
    # kv_up 4*4*(2+2) = 64; out 4*2*8 = 64 -> 280 attention.
    mla = MlaConfig(q_lora_rank=4, kv_lora_rank=4, qk_nope_head_dim=2, qk_rope_head_dim=2, v_head_dim=2)
    moe = MoeConfig(
        num_experts=4,
        top_k=2,
        expert_ffn_hidden_dim=4,
        num_shared_experts=1,
        shared_expert_ffn_hidden_dim=8,
        first_k_dense_layers=1,
        router=Router.SIGMOID_BIAS,
    )
    shape = llama_shape(num_kv_heads=4, mla=mla, moe=moe)
    counts = count_params(shape)
    assert counts.dense_layer.attention == 280
    assert counts.moe_layer is not None
    assert counts.moe_layer.mlp == 4 * 96 and counts.moe_layer.active_mlp == 2 * 96
    assert counts.moe_layer.shared_experts == 192 and counts.moe_layer.router == 36
    dense = 280 + 384 + 16
    moe_total = 280 + 384 + 192 + 36 + 16
    moe_active = 280 + 192 + 192 + 36 + 16
    assert counts.total == dense + moe_total + 128 + 128 + 8
    assert counts.active == dense + moe_active + 128 + 128 + 8
    assert counts.active_without_input_embedding == counts.active - 128


@pytest.mark.parametrize(("model", "published"), PUBLISHED_TOTALS)
def test_published_totals_within_half_percent(model: str, published: float) -> None:
    total = count_params(get_model(model)).total
    assert abs(total / published - 1) < TOLERANCE, f"{model}: {total / 1e9:.3f}B vs {published / 1e9}B"


@pytest.mark.parametrize(("model", "published"), PUBLISHED_ACTIVE)
def test_published_active_within_half_percent(model: str, published: float) -> None:
    active = count_params(get_model(model)).active
    assert abs(active / published - 1) < TOLERANCE, f"{model}: {active / 1e9:.3f}B active vs {published / 1e9}B"


def test_deepseek_v3_active() -> None:
    counts = count_params(get_model("deepseek-v3"))
    # README_WEIGHTS: 36.6B activated, output head included, input embedding not (a lookup).
    assert abs(counts.active_without_input_embedding / 36.6e9 - 1) < TOLERANCE
    # The report's "37B" is that number rounded; ours with the input embedding is 37.55B.
    assert abs(counts.active_without_input_embedding / 37e9 - 1) < 0.015
    assert 37e9 < counts.active < 38e9


@pytest.mark.parametrize(
    ("model", "total", "active"), [("gpt-oss-120b", 116.83e9, 5.13e9), ("gpt-oss-20b", 20.91e9, 3.61e9)]
)
def test_gpt_oss_matches_its_model_card(model: str, total: float, active: float) -> None:
    """OpenAI's gpt-oss model card (Table 1) counts active parameters without the input embedding."""
    counts = count_params(get_model(model))
    assert abs(counts.total / total - 1) < TOLERANCE
    assert abs(counts.active_without_input_embedding / active - 1) < TOLERANCE


def test_frontier_demo_model_is_two_trillion() -> None:
    counts = count_params(get_model("frontier-2t-moe"))
    assert abs(counts.total / 2.0e12 - 1) < 0.01
    assert 100e9 <= counts.active <= 150e9


def test_catalog_published_sizes() -> None:
    """Every catalog model with a published size is near it (nominal names like "8B" are rounded: 7%)."""
    for entry in model_entries():
        counts = count_params(entry.shape)
        if entry.published_params:
            assert abs(counts.total / entry.published_params - 1) < 0.07, entry.id
        if entry.published_active_params:
            assert abs(counts.active / entry.published_active_params - 1) < 0.02, entry.id


def test_entry_published_values_are_in_parameters() -> None:
    assert get_entry("mixtral-8x7b").published_active_params == pytest.approx(12.9e9)
