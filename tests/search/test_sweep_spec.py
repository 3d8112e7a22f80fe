"""Sweep specs: the grid they expand to, stable cell ids, and one-line errors naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rainier.catalog.loader import CatalogError
from rainier.errors import InputError
from rainier.search.result import Objective
from rainier.search.sweep import ClusterChoice, SweepCell, SweepSpec, load_sweep_spec

ISSUE_SPEC = """\
models: [llama-3-70b, deepseek-v3]          # names or config.json paths
clusters:
  - {accelerator: h100-sxm, count: [1024, 4096]}
  - {cluster: rainier-trn2-500k}
gbs: [1024, 2048]
seq_len: [8192]
"""


def _load(text: str, tmp_path: Path) -> SweepSpec:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return load_sweep_spec(path)


def test_issue_example_expands_to_the_full_grid(tmp_path: Path) -> None:
    spec = _load(ISSUE_SPEC, tmp_path)
    assert spec.models == ("llama-3-70b", "deepseek-v3")
    assert spec.clusters == (
        ClusterChoice(accelerator="h100-sxm", counts=(1024, 4096)),
        ClusterChoice(cluster="rainier-trn2-500k"),
    )
    assert spec.objective is Objective.TIME and spec.top_k == 10
    cells = spec.cells()
    assert len(cells) == 2 * 3 * 2 * 1
    assert len({c.cell_id for c in cells}) == len(cells)
    assert cells[0] == SweepCell(
        model="llama-3-70b",
        cluster=None,
        accelerator="h100-sxm",
        count=1024,
        gbs=1024,
        seq_len=8192,
        objective=Objective.TIME,
        top_k=10,
    )
    assert cells[0].cluster_label == "h100-sxm x1024" and cells[4].cluster_label == "rainier-trn2-500k"


def test_scalars_stand_for_lists_and_optional_keys(tmp_path: Path) -> None:
    spec = _load(
        "models: LLAMA-2-7B\nclusters: [{accelerator: H100-SXM, count: 8}]\ngbs: 16\nobjective: energy\ntop: 3\n",
        tmp_path,
    )
    assert spec.models == ("llama-2-7b",) and spec.gbs == (16,) and spec.seq_len == (None,)
    assert spec.clusters == (ClusterChoice(accelerator="h100-sxm", counts=(8,)),)
    assert spec.objective is Objective.ENERGY and spec.top_k == 3


def test_alias_becomes_the_catalog_id_and_config_paths_stay(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_type": "llama",
                "hidden_size": 1024,
                "intermediate_size": 2816,
                "num_attention_heads": 8,
                "num_hidden_layers": 4,
                "vocab_size": 32000,
                "max_position_embeddings": 2048,
            }
        )
    )
    spec = _load(
        f"models: ['llama 2 7b', '{config}']\nclusters: [{{cluster: rainier-trn2-500k}}]\ngbs: [8]\n", tmp_path
    )
    assert spec.models == ("llama-2-7b", str(config))


def test_cell_id_is_a_stable_hash_of_the_inputs() -> None:
    cell = SweepCell(
        model="llama-2-7b",
        cluster=None,
        accelerator="h100-sxm",
        count=8,
        gbs=16,
        seq_len=None,
        objective=Objective.TIME,
        top_k=10,
    )
    # Pinned: a change here orphans every stored sweep (resume would rerun all cells).
    assert cell.cell_id == "c420a8f57ba2b7d7"
    assert len({cell.cell_id, SweepCell(**{**cell.inputs(), "gbs": 32, "objective": Objective.TIME}).cell_id}) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "models: [llama-3-7b]\nclusters: [{cluster: rainier-trn2-500k}]\ngbs: [8]\n",
            r"models\[0\]: unknown model 'llama-3-7b'; did you mean 'llama-3-70b'",
        ),
        (
            "models: [./missing/config.json]\nclusters: [{cluster: rainier-trn2-500k}]\ngbs: [8]\n",
            r"models\[0\]: \./missing/config\.json: no such file",
        ),
        (
            "models: [llama-2-7b]\nclusters: [{accelerator: h100-sxm, count: [8, 0]}]\ngbs: [8]\n",
            r"clusters\[0\]\.count\[1\]: 0 is invalid: a positive integer",
        ),
        (
            "models: [llama-2-7b]\nclusters: [{accelerator: h100-sxm, count: eight}]\ngbs: [8]\n",
            r"clusters\[0\]\.count\[0\]: 'eight' is invalid",
        ),
        (
            "models: [llama-2-7b]\nclusters: [{accelerator: h100, count: 8}]\ngbs: [8]\n",
            r"clusters\[0\]: unknown accelerator 'h100'; did you mean .*'h100-sxm'",
        ),
        (
            "models: [llama-2-7b]\nclusters: [{cluster: rainier-trn2-5k}]\ngbs: [8]\n",
            r"clusters\[0\]: unknown cluster 'rainier-trn2-5k'; did you mean",
        ),
        (
            "models: [llama-2-7b]\nclusters: [{accelerator: h100-sxm}]\ngbs: [8]\n",
            r"clusters\[0\]: an 'accelerator' entry needs 'count'",
        ),
        (
            "models: [llama-2-7b]\nclusters: [{cluster: rainier-trn2-500k, accelerator: trn2}]\ngbs: [8]\n",
            r"clusters\[0\]: .*either 'cluster' or 'accelerator'",
        ),
        (
            "models: [llama-2-7b]\nclusters: [{cluster: rainier-trn2-500k, count: 8}]\ngbs: [8]\n",
            r"clusters\[0\]: a named 'cluster' entry takes no 'count'",
        ),
        (
            "models: [llama-2-7b]\nclusters: [{cluster: rainier-trn2-500k, size: 8}]\ngbs: [8]\n",
            r"clusters\[0\]: unknown field\(s\): size",
        ),
        (
            "models: [llama-2-7b]\nclusters: [{cluster: rainier-trn2-500k}]\ngbs: [8]\nmodle: x\n",
            r"top level: unknown field\(s\): modle",
        ),
        ("models: [llama-2-7b]\nclusters: [{cluster: rainier-trn2-500k}]\n", r"missing required field 'gbs'"),
        ("models: []\nclusters: [{cluster: rainier-trn2-500k}]\ngbs: [8]\n", r"models: empty list"),
        (
            "models: [llama-2-7b]\nclusters: [{cluster: rainier-trn2-500k}]\ngbs: [8, -8]\n",
            r"gbs\[1\]: -8 is invalid: a positive integer",
        ),
        (
            "models: [llama-2-7b]\nclusters: [{cluster: rainier-trn2-500k}]\ngbs: [8, 8]\n",
            r"gbs\[1\]: 8 is listed twice",
        ),
        (
            "models: [llama-2-7b, 'llama 2 7b']\nclusters: [{cluster: rainier-trn2-500k}]\ngbs: [8]\n",
            r"models\[1\]: 'llama-2-7b' is listed twice",
        ),
        (
            "models: [llama-2-7b]\nclusters: [{accelerator: h100-sxm, count: 8}, "
            "{accelerator: h100-sxm, count: [16, 8]}]\ngbs: [8]\n",
            r"clusters: h100-sxm x8 is listed twice",
        ),
        (
            "models: [llama-2-7b]\nclusters: [{cluster: rainier-trn2-500k}]\ngbs: [8]\nseq_len: [0]\n",
            r"seq_len\[0\]: 0 is invalid",
        ),
        (
            "models: [llama-2-7b]\nclusters: [{cluster: rainier-trn2-500k}]\ngbs: [8]\nobjective: speed\n",
            r"objective='speed' is invalid: allowed: time, cost, energy",
        ),
        (
            "models: [llama-2-7b]\nclusters: [{cluster: rainier-trn2-500k}]\ngbs: [8]\ntop: 0\n",
            r"top=0 is invalid: must be >= 1",
        ),
        ("models: [llama-2-7b\nclusters: [\n", r"malformed YAML"),
        ("models: [llama-2-7b]\nmodels: [llama-2-13b]\n", r"duplicate key 'models'"),
        ("- llama-2-7b\n", r"top level: expected a mapping"),
        ("", r"empty sweep spec"),
    ],
)
def test_bad_specs_are_one_line_errors_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message) as info:
        _load(text, tmp_path)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(tmp_path / "spec.yaml"))


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read file"):
        load_sweep_spec(tmp_path / "nope.yaml")


def test_typed_objects_validate_on_construction() -> None:
    with pytest.raises(InputError, match="either cluster, or accelerator with count"):
        SweepCell(
            model="m", cluster="c", accelerator="a", count=1, gbs=1, seq_len=None, objective=Objective.TIME, top_k=1
        )
    with pytest.raises(InputError, match="gbs=0 is invalid"):
        SweepCell(
            model="m", cluster="c", accelerator=None, count=None, gbs=0, seq_len=None, objective=Objective.TIME, top_k=1
        )
    with pytest.raises(InputError, match="gbs: empty"):
        SweepSpec(models=("m",), clusters=(ClusterChoice(cluster="c"),), gbs=())
