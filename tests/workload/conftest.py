"""Small shapes shared by the workload tests (worked by hand in the tests that use them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rainier.workload import MlpActivation, Norm, PositionEmbedding, TransformerShape

DATA = Path(__file__).parent / "data"


def gpt_shape(*, layers: int = 2, hidden: int = 8, heads: int = 2, vocab: int = 16, seq: int = 4) -> TransformerShape:
    """A GPT-style shape (Megatron layout: biases, LayerNorm, learned positions, tied embeddings, ffn = 4h)."""
    return TransformerShape(
        name="tiny-gpt",
        num_layers=layers,
        hidden_dim=hidden,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        ffn_hidden_dim=4 * hidden,
        vocab_size=vocab,
        seq_len=seq,
        mlp_activation=MlpActivation.GELU,
        tied_embeddings=True,
        position_embedding=PositionEmbedding.LEARNED,
        norm=Norm.LAYERNORM,
        qkv_bias=True,
        linear_bias=True,
    )


def llama_shape(**overrides: object) -> TransformerShape:
    """A Llama-style tiny shape: SwiGLU, RMSNorm, RoPE, GQA (4 query heads over 2 KV heads), untied."""
    fields: dict[str, object] = dict(
        name="tiny-llama",
        num_layers=2,
        hidden_dim=8,
        num_heads=4,
        num_kv_heads=2,
        head_dim=2,
        ffn_hidden_dim=16,
        vocab_size=16,
        seq_len=4,
        mlp_activation=MlpActivation.SWIGLU,
        tied_embeddings=False,
        position_embedding=PositionEmbedding.ROPE,
        norm=Norm.RMSNORM,
    )
    fields.update(overrides)
    return TransformerShape(**fields)  # type: ignore[arg-type]


@pytest.fixture
def tiny_gpt() -> TransformerShape:
    return gpt_shape()


@pytest.fixture
def tiny_llama() -> TransformerShape:
    return llama_shape()
