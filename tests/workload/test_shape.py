"""TransformerShape validation and derived quantities."""

from __future__ import annotations

import dataclasses

import pytest

from rainier.errors import InputError
from rainier.workload import AttentionKind, MlaConfig, MoeConfig, TransformerShape

from .conftest import llama_shape


def test_attention_kind_follows_kv_heads() -> None:
    assert llama_shape(num_kv_heads=4).attention_kind is AttentionKind.MHA
    assert llama_shape(num_kv_heads=2).attention_kind is AttentionKind.GQA
    assert llama_shape(num_kv_heads=1).attention_kind is AttentionKind.MQA
    mla = MlaConfig(q_lora_rank=None, kv_lora_rank=4, qk_nope_head_dim=2, qk_rope_head_dim=2, v_head_dim=2)
    shape = llama_shape(num_kv_heads=4, mla=mla)
    assert shape.attention_kind is AttentionKind.MLA
    assert shape.qk_head_dim == 4 and shape.v_head_dim == 2


def test_shape_is_frozen_and_keyword_only(tiny_llama: TransformerShape) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny_llama.num_layers = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        TransformerShape("x")  # type: ignore[call-arg,misc]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"num_kv_heads": 3}, "num_kv_heads=3 is invalid: must divide num_heads=4"),
        ({"num_kv_heads": 8}, "num_kv_heads=8 is invalid"),
        ({"num_layers": 0}, "num_layers=0 is invalid: must be between 1 and"),
        ({"hidden_dim": -8}, "hidden_dim=-8 is invalid"),
        ({"hidden_dim": 2**40}, "hidden_dim=1099511627776 is invalid"),
        ({"seq_len": 4.0}, "seq_len=4.0 is invalid: expected an integer"),
        ({"vocab_size": True}, "vocab_size=True is invalid: expected an integer"),
        ({"name": ""}, "name='' is invalid"),
        ({"mlp_activation": "swiglu"}, "mlp_activation='swiglu' is invalid: allowed: swiglu, geglu, gelu, relu"),
        ({"tied_embeddings": 1}, "tied_embeddings=1 is invalid: expected true or false"),
    ],
)
def test_invalid_fields_name_field_value_and_allowed(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        llama_shape(**overrides)
    assert isinstance(info.value, InputError)


def test_moe_validation() -> None:
    with pytest.raises(ValueError, match=r"moe.top_k=9 is invalid: must be <= num_experts=8"):
        MoeConfig(num_experts=8, top_k=9, expert_ffn_hidden_dim=4)
    moe = MoeConfig(num_experts=8, top_k=2, expert_ffn_hidden_dim=4, first_k_dense_layers=2)
    with pytest.raises(ValueError, match=r"moe.first_k_dense_layers=2 is invalid: must be < num_layers=2"):
        llama_shape(moe=moe)
    with pytest.raises(ValueError, match=r"mla.kv_lora_rank=0 is invalid"):
        MlaConfig(q_lora_rank=None, kv_lora_rank=0, qk_nope_head_dim=2, qk_rope_head_dim=2, v_head_dim=2)
    mla = MlaConfig(q_lora_rank=None, kv_lora_rank=4, qk_nope_head_dim=2, qk_rope_head_dim=2, v_head_dim=2)
    with pytest.raises(ValueError, match=r"num_kv_heads=2 is invalid: must equal num_heads=4 with MLA"):
        llama_shape(mla=mla)


def test_moe_layer_layout() -> None:
    moe = MoeConfig(num_experts=8, top_k=2, expert_ffn_hidden_dim=4, first_k_dense_layers=1, moe_layer_interval=2)
    shape = llama_shape(num_layers=6, moe=moe)
    assert [shape.is_moe_layer(i) for i in range(6)] == [False, True, False, True, False, True]
    assert shape.num_moe_layers == 3 and shape.num_dense_layers == 3
    assert not llama_shape().is_moe_layer(0) and llama_shape().num_moe_layers == 0


def test_with_seq_len_validates(tiny_llama: TransformerShape) -> None:
    longer = tiny_llama.with_seq_len(128)
    assert longer.seq_len == 128 and longer.hidden_dim == tiny_llama.hidden_dim
    with pytest.raises(ValueError, match="seq_len=0 is invalid"):
        tiny_llama.with_seq_len(0)


def test_to_dict_is_plain_json(tiny_llama: TransformerShape) -> None:
    import json

    data = tiny_llama.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["attention_kind"] == "gqa" and data["mlp_activation"] == "swiglu"
