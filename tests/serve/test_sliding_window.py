"""Sliding-window attention: a windowed layer's queries attend to, and read, the last ``window`` keys only."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainier.api.serve import run_serve_estimate
from rainier.errors import InputError
from rainier.hardware.registry import cluster_of
from rainier.serve.cost import replica_cost
from rainier.serve.efficiency import ServeEfficiency
from rainier.workload import get_model, shape_from_validation_model
from rainier.workload.shape import TransformerShape, window_keys

EFF = ServeEfficiency()


def _windowed(window: int = 4096, layers: int = 16) -> TransformerShape:
    return replace(get_model("llama-3-8b"), sliding_window=window, sliding_window_layers=layers)


@settings(max_examples=200, deadline=None)
@given(start=st.integers(0, 300), length=st.integers(1, 300), window=st.integers(1, 400))
def test_window_keys_is_the_sum_of_min_position_window(start: int, length: int, window: int) -> None:
    # the integral of min(x, W) over [start, start + length] against the midpoint sum of the same
    exact = sum(min(start + i + 0.5, window) for i in range(length))
    assert window_keys(start, length, window) == pytest.approx(exact, abs=0.13 * length / max(length, 1) + 1e-9)


def test_within_the_window_nothing_changes_and_beyond_it_decode_reads_less() -> None:
    cluster = cluster_of("h100-sxm", 1)
    full = replica_cost(get_model("llama-3-8b"), cluster, tp=1, eff=EFF)
    windowed = replica_cost(_windowed(), cluster, tp=1, eff=EFF)
    short = (0, 64, 64 * 2000)
    assert windowed.iteration_s(*short) == pytest.approx(full.iteration_s(*short))
    long = (0, 64, 64 * 32_000)
    saved = full.parts(*long)["attention"] - windowed.parts(*long)["attention"]
    # half the layers read 4096 of 32,000 keys: the attention part falls by (1 - 4096 / 32000) / 2 of itself
    assert saved == pytest.approx(full.parts(*long)["attention"] * (1 - 4096 / 32_000) / 2, rel=0.02)
    assert windowed.parts(8192, 0, 0, 1)["attention"] < full.parts(8192, 0, 0, 1)["attention"]


def _block(**extra: object) -> dict[str, object]:
    return {
        "name": "Gemma 3 12B", "arch": "dense", "layers": 48, "hidden": 3840, "ffn_hidden": 15360, "heads": 16,
        "kv_heads": 8, "head_dim": 256, "vocab": 262144, "seq_len": 32768, "activation": "swiglu", **extra,
    }  # fmt: skip


def test_a_validation_block_states_the_window_and_the_share_of_layers() -> None:
    shape = shape_from_validation_model(_block(sliding_window=1024, sliding_window_fraction=0.8333), source="t")
    assert (shape.sliding_window, shape.sliding_window_layers) == (1024, 40)
    every = shape_from_validation_model(_block(sliding_window=1024), source="t")
    assert every.sliding_window_layers == 48
    with pytest.raises(InputError, match="sliding_window_fraction"):
        shape_from_validation_model(_block(sliding_window=1024, sliding_window_fraction=1.5), source="t")
    with pytest.raises(InputError, match="sliding_window_fraction"):
        shape_from_validation_model(_block(sliding_window_fraction=0.5), source="t")


def test_training_spans_shrink_with_the_window() -> None:
    shape = shape_from_validation_model(_block(sliding_window=1024, sliding_window_fraction=0.8333), source="t")
    # 8 full layers at 32768 keys, 40 windowed at 2 x 1024 - 1024^2 / 32768 = 2016
    assert shape.causal_attention_span == -(-(8 * 32768 + 40 * 2016) // 48)
    assert get_model("llama-3-8b").causal_attention_span == get_model("llama-3-8b").seq_len
    with pytest.raises(InputError, match="sliding_window_layers"):
        replace(get_model("llama-3-8b"), sliding_window=4096, sliding_window_layers=99)


def test_a_windowed_target_drafts_with_one_full_attention_layer() -> None:
    result = run_serve_estimate(
        model="gpt-oss-120b", accelerator="h100-sxm", count=8, tp=8, batch=8, input_len=1024, output_len=256,
        precision="mxfp4-experts", speculative="eagle3:k=3,len=2.5",
    )  # fmt: skip
    plain = run_serve_estimate(
        model="gpt-oss-120b", accelerator="h100-sxm", count=8, tp=8, batch=8, input_len=1024, output_len=256,
        precision="mxfp4-experts",
    )  # fmt: skip
    assert result.tpot_s < plain.tpot_s


def test_draft_heads_of_a_moe_target_with_dense_first_layers() -> None:
    """DeepSeek-V3's first three layers are dense: its one-layer MTP head is a MoE layer, an EAGLE head a dense
    one, each a full-attention layer."""
    from rainier.serve.speculative import parse_speculation

    target = get_model("deepseek-v3")
    mtp = parse_speculation("mtp:k=1").draft_shape(target)
    eagle = parse_speculation("eagle:k=3").draft_shape(target)
    assert mtp is not None and mtp.num_layers == 1 and mtp.moe is not None and mtp.moe.first_k_dense_layers == 0
    assert eagle is not None and eagle.moe is None and eagle.sliding_window is None
    windowed = parse_speculation("eagle3:k=3").draft_shape(get_model("gpt-oss-120b"))
    assert windowed is not None and windowed.sliding_window is None and windowed.sliding_window_layers == 0


def test_attention_flops_per_token_count_the_window() -> None:
    from rainier.workload.flops import attention_core_flop_per_token

    base = get_model("llama-3-8b")
    windowed = replace(base, sliding_window=1024, sliding_window_layers=base.num_layers)
    s = 8192
    full = attention_core_flop_per_token(base, s, causal=False)
    assert attention_core_flop_per_token(windowed, s, causal=False) == pytest.approx(full * 1024 / s)
    causal = attention_core_flop_per_token(windowed, s, causal=True)
    assert causal == pytest.approx(full / s * (1024 - 1024**2 / (2 * s)))
    assert attention_core_flop_per_token(windowed, 512, causal=True) == attention_core_flop_per_token(
        base, 512, causal=True
    )
