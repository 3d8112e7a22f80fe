"""The model catalog: strict loading, names, aliases, did-you-mean, name-or-path, validation model blocks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from rainier.catalog.loader import CatalogError, source_index
from rainier.errors import InputError, UnknownNameError
from rainier.workload import (
    TransformerShape,
    count_params,
    get_entry,
    get_model,
    load_model_file,
    model_entries,
    models,
    resolve_model,
    shape_from_validation_model,
)
from rainier.workload.registry import has_model

from .conftest import DATA

VALIDATION = Path(__file__).resolve().parents[2] / "validation"  # vendored copy of shared/validation
REQUIRED_IDS = [
    "gpt3-175b",
    "megatron-1t",
    "llama-2-7b",
    "llama-2-13b",
    "llama-2-70b",
    "llama-3-8b",
    "llama-3-70b",
    "llama-3-405b",
    "mixtral-8x7b",
    "mixtral-8x22b",
    "deepseek-v3",
    "frontier-2t-moe",
    "megatron-gpt-1.7b",
    "mcore-gpt-7.1b",
    "korthikanti-gpt-22b",
    "nemotron-4-340b",
    "falcon-180b",
    "nemo-gpt3-5b",
    "nemotron-22b",
    "neuron-gpt3-23b",
    "mistral-7b-v0.2",
]


def _validation_blocks() -> list[tuple[str, dict[str, Any]]]:
    blocks = []
    for kind in ("training", "inference"):
        path = VALIDATION / f"{kind}.yaml"
        if not path.exists():
            continue
        for case in yaml.safe_load(path.read_text())["cases"]:
            blocks.append((case["id"], case["model"]))
    return blocks


def test_every_named_model_loads() -> None:
    registry = models()
    assert len(registry) == len(model_entries()) >= 40
    for model_id in REQUIRED_IDS:
        assert isinstance(registry.get(model_id), TransformerShape), model_id
    for shape in registry:
        assert count_params(shape).total > 0


def test_every_entry_is_sourced() -> None:
    index = source_index()
    for entry in model_entries():
        assert entry.sources, entry.id
        assert all(index.is_known(s) for s in entry.sources.values()), entry.id
    assert index.describe("rainier-demo").startswith("rainier's illustrative frontier-scale MoE, not a published")
    assert get_entry("frontier-2t-moe").sources == {"default": "rainier-demo"}


def test_names_and_aliases_resolve_case_insensitively() -> None:
    assert get_model("LLAMA-3-70B") is get_model("llama-3-70b")
    assert get_model("Llama 3/3.1/3.3 70B") is get_model("llama-3-70b")
    assert get_model("megatron-gpt-1t") is get_model("megatron-1t")


def test_unknown_model_suggests() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown model 'lama-3-70b'; did you mean 'llama-3-70b'"):
        get_model("lama-3-70b")
    with pytest.raises(UnknownNameError, match=r"did you mean .*'mixtral-8x7b'"):
        resolve_model("mixtral-8x7")


def test_resolve_model_paths(tmp_path: Path) -> None:
    assert resolve_model(DATA / "Qwen3-8B.json").name == "Qwen3-8B"
    assert resolve_model(str(DATA / "Qwen2-0.5B")).name == "Qwen2-0.5B"
    assert resolve_model("deepseek-v3") is get_model("deepseek-v3")
    with pytest.raises(InputError, match="no such file"):
        resolve_model(tmp_path / "absent" / "config.json")
    with pytest.raises(InputError, match=r"directory has no config\.json"):
        resolve_model(tmp_path)
    copy = tmp_path / "my-model"
    copy.mkdir()
    shutil.copy(DATA / "Mixtral-8x7B-v0.1.json", copy / "config.json")
    assert resolve_model(copy).name == "my-model"
    with pytest.raises(InputError):
        resolve_model("bad\x00name")


SHARED_TRAINING_CASES = 51  # the shared public set opens validation/training.yaml (tests/test_validation_copy.py)


def test_validation_blocks_resolve_to_their_catalog_shapes() -> None:
    blocks = _validation_blocks()
    shared_ids = {case["id"] for case in yaml.safe_load((VALIDATION / "training.yaml").read_text())["cases"][:51]}
    shared_ids |= {case["id"] for case in yaml.safe_load((VALIDATION / "inference.yaml").read_text())["cases"]}
    assert len(shared_ids) == 116
    for case_id, block in blocks:
        shape = shape_from_validation_model(block, source=case_id)
        if case_id in shared_ids:  # the shared cases name catalog models, which supply what the block leaves out
            assert shape == get_model(block["name"]).with_seq_len(block["seq_len"]), case_id
        if block.get("params_b"):  # nominal sizes ("8B") are rounded; the exact ones agree to 0.5%
            assert abs(count_params(shape).total / (block["params_b"] * 1e9) - 1) < 0.07, case_id


BLOCK: dict[str, Any] = {
    "name": "held-back gpt",
    "arch": "dense",
    "layers": 24,
    "hidden": 2048,
    "ffn_hidden": None,
    "heads": 16,
    "kv_heads": None,
    "head_dim": None,
    "vocab": 50000,
    "seq_len": 2048,
    "activation": None,
    "num_experts": None,
    "top_k": None,
    "shared_experts": None,
    "expert_ffn_hidden": None,
    "params_b": 1.3,
}


def test_validation_block_without_catalog_entry() -> None:
    gpt = shape_from_validation_model(BLOCK)
    assert gpt.ffn_hidden_dim == 4 * 2048 and gpt.tied_embeddings and gpt.num_kv_heads == 16 and gpt.head_dim == 128
    moe = shape_from_validation_model(
        {
            **BLOCK,
            "name": "held-back moe",
            "arch": "moe",
            "activation": "swiglu",
            "num_experts": 64,
            "top_k": 6,
            "shared_experts": 2,
            "expert_ffn_hidden": 1408,
        }
    )
    assert moe.moe is not None and moe.moe.num_shared_experts == 2 and not moe.tied_embeddings
    assert moe.ffn_hidden_dim == 5632  # 8/3·2048 rounded up to a multiple of 256
    llama = shape_from_validation_model({**BLOCK, "name": "Llama 2 70B", "seq_len": 8192})
    assert llama.num_layers == 24 and llama.seq_len == 8192 and llama.mlp_activation.value == "swiglu"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"layers": None}, r"case-1: model 'held-back gpt': missing layers and no catalog model of that name"),
        ({"extra": 1}, r"unknown field\(s\): extra"),
        ({"layers": "24"}, r"layers='24' is invalid: expected an integer"),
        ({"heads": 0}, r"heads=0 is invalid: must be >= 1"),
        ({"heads": 7}, r"heads=7 must divide hidden=2048"),
        ({"arch": "moe"}, r"arch=moe needs num_experts and top_k"),
        ({"arch": "moe", "num_experts": 8, "top_k": 9}, r"moe.top_k=9 is invalid"),
        ({"activation": "tanh"}, r"activation='tanh' is invalid: allowed: swiglu"),
    ],
)
def test_validation_block_errors(change: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        shape_from_validation_model({**BLOCK, **change}, source="case-1")


def test_validation_block_must_be_a_mapping() -> None:
    with pytest.raises(InputError, match="expected a mapping"):
        shape_from_validation_model(["not", "a", "block"])  # type: ignore[arg-type]


ENTRY = """\
models:
  - id: toy
    title: Toy
    num_layers: 2
    hidden_dim: 8
    num_heads: 2
    ffn_hidden_dim: 32
    vocab_size: 16
    seq_len: 4
    mlp_activation: gelu
    tied_embeddings: true
    position_embedding: learned
    norm: layernorm
    sources: {default: brown2020-gpt3}
"""


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (ENTRY + "    colour: blue\n", r"unknown field\(s\): colour"),
        (ENTRY + ENTRY.removeprefix("models:\n"), r"duplicate id 'toy'"),
        (ENTRY.replace("{default: brown2020-gpt3}", "{num_layers: brown2020-gpt3}"), r"no source for hidden_dim"),
        (ENTRY.replace("brown2020-gpt3", "no-such-source"), r"not a known source id"),
        (ENTRY.replace("norm: layernorm", "norm: batchnorm"), r"norm='batchnorm' is invalid: allowed: layernorm"),
        (ENTRY.replace("num_heads: 2", "num_heads: 3"), r"\(toy\): num_heads=3 must divide hidden_dim=8"),
        (ENTRY.replace("num_heads: 2", "num_heads: 4\n    num_kv_heads: 3"), r"num_kv_heads=3 is invalid"),
        (ENTRY.replace("seq_len: 4", "seq_len: -4"), r"seq_len=-4 is invalid"),
        (ENTRY + "    moe: {num_experts: 4, top_k: 8, expert_ffn_hidden_dim: 4}\n", r"moe.top_k=8 is invalid"),
        (
            ENTRY + ENTRY.removeprefix("models:\n").replace("id: toy", "id: toy2") + "    aliases: [TOY]\n",
            r"alias 'toy' of 'toy2' is already used by 'toy'",
        ),
    ],
)
def test_strict_model_file(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError, match=match):
        load_model_file(path)


def test_model_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(ENTRY)
    entries = load_model_file(path)
    assert entries["toy"].shape.head_dim == 4 and entries["toy"].shape.num_kv_heads == 2
    assert json.dumps(entries["toy"].shape.to_dict())


def test_a_published_size_that_only_a_shared_vocabulary_matrix_explains_ties_the_embeddings() -> None:
    gemma = {
        "name": "Gemma-like 12B", "layers": 48, "hidden": 3840, "ffn_hidden": 15360, "heads": 16, "kv_heads": 8,
        "head_dim": 256, "vocab": 262144, "seq_len": 32768, "activation": "swiglu",
    }  # fmt: skip
    assert shape_from_validation_model({**gemma, "params_b": 11.8}, source="t").tied_embeddings
    assert not shape_from_validation_model({**gemma, "params_b": 12.8}, source="t").tied_embeddings
    assert not shape_from_validation_model(gemma, source="t").tied_embeddings
    # a size the tied count does not reach either (another field of the block is off): left untied
    assert not shape_from_validation_model({**gemma, "params_b": 10.0}, source="t").tied_embeddings


@pytest.mark.parametrize(
    ("name", "catalog_id"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b"),
        ("Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b"),
        ("meta-llama/Llama-2-70b-chat-hf", "llama-2-70b"),
        ("meta-llama/Llama-3.2-1B-Instruct", "llama-3.2-1b"),
        ("openai/gpt-oss-120b", "gpt-oss-120b"),
    ],
)
def test_hugging_face_repository_ids_name_catalog_models(name: str, catalog_id: str) -> None:
    """An organisation prefix and a tuning suffix name the same network as the catalog's id."""
    assert has_model(name)
    assert get_entry(name).id == catalog_id


def test_other_paths_and_names_stay_unknown() -> None:
    assert not has_model("./configs/model.json")
    assert not has_model("meta-llama/Llama-9-1B-Instruct")
