"""Hugging Face config.json import: real fixtures, and fuzzing that only InputError (or success) comes out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainier.errors import InputError
from rainier.workload import (
    AttentionKind,
    MlpActivation,
    Router,
    TransformerShape,
    count_params,
    get_model,
    load_hf_config,
    shape_from_hf_config,
)

from .conftest import DATA


def _config(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return data


def test_llama3_70b_equals_catalog_entry() -> None:
    shape = load_hf_config(DATA / "Meta-Llama-3-70B.json")
    assert shape.name == "Meta-Llama-3-70B"
    catalog = get_model("llama-3-70b")
    assert shape == TransformerShape(**{**_fields(catalog), "name": "Meta-Llama-3-70B"})
    assert abs(count_params(shape).total / 70.55e9 - 1) < 0.005


def _fields(shape: TransformerShape) -> dict[str, Any]:
    return {f: getattr(shape, f) for f in TransformerShape.__dataclass_fields__}


def test_mixtral() -> None:
    shape = load_hf_config(DATA / "Mixtral-8x7B-v0.1.json")
    assert shape.moe is not None and (shape.moe.num_experts, shape.moe.top_k) == (8, 2)
    counts = count_params(shape)
    assert abs(counts.total / 46.7e9 - 1) < 0.005 and abs(counts.active / 12.9e9 - 1) < 0.005
    assert shape.seq_len == 32768  # max_position_embeddings kept (the CLI's --seq-len overrides)


def test_mistral_v01_attends_within_its_sliding_window_on_every_layer() -> None:
    shape = load_hf_config(DATA / "Mistral-7B-v0.1.json")
    assert shape.attention_kind is AttentionKind.GQA
    assert abs(count_params(shape).total / 7.24e9 - 1) < 0.005
    assert shape.sliding_window == 4096 and shape.sliding_window_layers == shape.num_layers
    mixtral = load_hf_config(DATA / "Mixtral-8x7B-v0.1.json")  # sliding_window: null
    assert mixtral.sliding_window is None and mixtral.sliding_window_layers == 0


def test_qwen_sliding_window_only_where_the_config_turns_it_on() -> None:
    data = json.loads((DATA / "Qwen2-7B.json").read_text())
    assert load_hf_config(DATA / "Qwen2-7B.json").sliding_window is None  # use_sliding_window: false
    data.update(use_sliding_window=True, sliding_window=4096, max_window_layers=20)
    shape = shape_from_hf_config(data, "qwen2-swa")
    assert shape.sliding_window == 4096 and shape.sliding_window_layers == shape.num_layers - 20


def test_qwen2_has_qkv_bias_and_tied_small_model() -> None:
    qwen = load_hf_config(DATA / "Qwen2-7B.json")
    assert qwen.qkv_bias and not qwen.linear_bias
    assert abs(count_params(qwen).total / 7.62e9 - 1) < 0.005  # model card: 7.62B
    small = load_hf_config(DATA / "Qwen2-0.5B")  # a directory holding config.json
    assert small.name == "Qwen2-0.5B" and small.tied_embeddings
    assert abs(count_params(small).total / 0.494e9 - 1) < 0.005


def test_qwen3_dense_and_moe() -> None:
    dense = load_hf_config(DATA / "Qwen3-8B.json")
    assert dense.qk_norm and dense.head_dim == 128
    assert abs(count_params(dense).total / 8.19e9 - 1) < 0.005  # model card: 8.2B
    moe = load_hf_config(DATA / "Qwen3-30B-A3B.json")
    assert moe.moe is not None and (moe.moe.num_experts, moe.moe.top_k, moe.moe.expert_ffn_hidden_dim) == (128, 8, 768)
    counts = count_params(moe)
    assert abs(counts.total / 30.5e9 - 1) < 0.005 and abs(counts.active / 3.3e9 - 1) < 0.02  # 30.5B / 3.3B


def test_deepseek_v3() -> None:
    shape = load_hf_config(DATA / "DeepSeek-V3.json")
    assert shape.attention_kind is AttentionKind.MLA and shape.mla is not None and shape.moe is not None
    assert shape.moe.router is Router.SIGMOID_BIAS and shape.moe.first_k_dense_layers == 3
    assert shape.mlp_activation is MlpActivation.SWIGLU
    assert count_params(shape).total == count_params(get_model("deepseek-v3")).total
    assert shape.seq_len == 163840


def test_defaults_head_dim_and_kv_heads() -> None:
    data = _config("Meta-Llama-3-70B")
    del data["num_key_value_heads"]
    shape = shape_from_hf_config(data, "x")
    assert shape.num_kv_heads == 64 and shape.head_dim == 128 and shape.attention_kind is AttentionKind.MHA


@pytest.mark.parametrize(
    ("mutation", "match"),
    [
        ({"model_type": "gpt2"}, r"model_type='gpt2' is not supported; supported: llama, mistral, mixtral"),
        ({"hidden_size": None}, r"missing required field 'hidden_size'"),
        ({"hidden_size": -1}, r"hidden_size=-1 is invalid: must be between 1 and"),
        ({"hidden_size": "8192"}, r"hidden_size='8192' is invalid: expected an integer"),
        ({"hidden_size": 10**30}, r"hidden_size=1000000000000000000000000000000 is invalid"),
        ({"num_hidden_layers": 80.0}, r"num_hidden_layers=80.0 is invalid: expected an integer"),
        ({"num_key_value_heads": 7}, r"num_kv_heads=7 is invalid: must divide num_heads=64"),
        ({"tie_word_embeddings": "no"}, r"tie_word_embeddings='no' is invalid: expected true or false"),
        ({"hidden_act": "relu"}, r"hidden_act='relu' is invalid: allowed:"),
        ({"num_attention_heads": 0}, r"num_attention_heads=0 is invalid"),
    ],
)
def test_bad_fields_name_the_source_and_field(mutation: dict[str, Any], match: str) -> None:
    data = {**_config("Meta-Llama-3-70B"), **mutation}
    with pytest.raises(InputError, match=match) as info:
        shape_from_hf_config(data, "m", source="cfg.json")
    assert str(info.value).startswith("cfg.json: ")
    assert "\n" not in str(info.value)


def test_file_errors(tmp_path: Path) -> None:
    cases = {
        "missing.json": None,
        "notjson.json": "{hidden_size: 1",
        "list.json": "[1, 2]",
        "nan.json": '{"model_type": "llama", "hidden_size": NaN}',
        "bigint.json": '{"model_type": "llama", "hidden_size": ' + "9" * 5000 + "}",
        "binary.json": b"\xff\xfe\x00garbage",
    }
    for name, content in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        with pytest.raises(InputError, match=str(path).replace("\\", "\\\\")):
            load_hf_config(path)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError, match="cannot read file"):
        load_hf_config(tmp_path / "empty_dir")


# --- fuzzing ------------------------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
FIXTURES = [
    "Meta-Llama-3-70B",
    "Mixtral-8x7B-v0.1",
    "Mistral-7B-v0.1",
    "Qwen2-7B",
    "Qwen3-8B",
    "Qwen3-30B-A3B",
    "DeepSeek-V3",
]


def _only_input_error(data: Any) -> None:
    try:
        shape = shape_from_hf_config(data, "fuzz")
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(shape, TransformerShape)
        count_params(shape)  # whatever imports also counts


@given(json_values)
def test_fuzz_any_json_value(data: Any) -> None:
    _only_input_error(data)


@given(
    fixture=st.sampled_from(FIXTURES),
    edits=st.lists(st.tuples(st.booleans(), st.integers(0, 60), json_values), min_size=1, max_size=4),
)
def test_fuzz_mutated_real_configs(fixture: str, edits: list[tuple[bool, int, Any]]) -> None:
    data = _config(fixture)
    for delete, index, value in edits:
        key = sorted(data)[index % len(data)]
        if delete:
            data.pop(key)
        else:
            data[key] = value
    _only_input_error(data)


@given(
    fixture=st.sampled_from(FIXTURES),
    key=st.sampled_from(
        [
            "hidden_size",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "intermediate_size",
            "num_hidden_layers",
            "vocab_size",
            "num_experts_per_tok",
            "n_routed_experts",
            "kv_lora_rank",
            "q_lora_rank",
            "first_k_dense_replace",
            "num_local_experts",
            "num_experts",
            "moe_intermediate_size",
            "max_position_embeddings",
            "decoder_sparse_step",
        ]
    ),
    value=st.integers(min_value=-(2**40), max_value=2**40),
)
def test_fuzz_numeric_fields(fixture: str, key: str, value: int) -> None:
    _only_input_error({**_config(fixture), key: value})


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50)
@given(content=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_fuzz_file_bytes(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(InputError):
        load_hf_config(path)


def test_gpt_oss_config_gives_the_catalog_shape_with_its_windows() -> None:
    # the fields of openai/gpt-oss-120b's config.json that the shape depends on
    config = {
        "model_type": "gpt_oss", "num_hidden_layers": 36, "hidden_size": 2880, "intermediate_size": 2880,
        "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 201088,
        "max_position_embeddings": 131072, "num_local_experts": 128, "num_experts_per_tok": 4, "sliding_window": 128,
        "attention_bias": True, "tie_word_embeddings": False, "hidden_act": "silu",
        "layer_types": ["sliding_attention", "full_attention"] * 18,
    }  # fmt: skip
    shape = shape_from_hf_config(config, "gpt-oss-120b")
    assert shape == get_model("gpt-oss-120b")
    with pytest.raises(InputError, match="layer_types"):
        shape_from_hf_config({**config, "layer_types": ["sliding_attention"] * 3}, "bad")


def test_gemma2_and_gemma3_text_configs() -> None:
    # the fields of google/gemma-2-9b's config.json that the shape depends on (model card: 9.24B parameters)
    gemma2 = {
        "model_type": "gemma2", "num_hidden_layers": 42, "hidden_size": 3584, "intermediate_size": 14336,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256, "vocab_size": 256000,
        "max_position_embeddings": 8192, "hidden_activation": "gelu_pytorch_tanh", "sliding_window": 4096,
    }  # fmt: skip
    shape = shape_from_hf_config(gemma2, "gemma-2-9b")
    assert shape.tied_embeddings and shape.mlp_activation is MlpActivation.GEGLU
    assert (shape.sliding_window, shape.sliding_window_layers) == (4096, 21)  # every other layer
    assert abs(count_params(shape).total / 9.24e9 - 1) < 0.005
    # Gemma 3: five local layers per global one, or as layer_types lists them
    gemma3 = {
        **gemma2, "model_type": "gemma3_text", "num_hidden_layers": 48, "hidden_size": 3840, "intermediate_size": 15360,
        "vocab_size": 262208, "sliding_window": 1024, "max_position_embeddings": 131072,
    }  # fmt: skip
    three = shape_from_hf_config(gemma3, "gemma-3-12b")
    assert three.qk_norm and (three.sliding_window, three.sliding_window_layers) == (1024, 40)
    listed = shape_from_hf_config({**gemma3, "layer_types": ["sliding_attention"] * 47 + ["full_attention"]}, "g")
    assert listed.sliding_window_layers == 47
