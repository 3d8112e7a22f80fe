"""CLI: model show and catalog models, through typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from rainier.cli import app

runner = CliRunner()
DATA = Path(__file__).parent / "workload" / "data"


def test_model_show_json_has_integer_counts() -> None:
    result = runner.invoke(app, ["model", "show", "llama-3-70b", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert isinstance(doc["params_total"], int) and isinstance(doc["params_active"], int)
    assert abs(doc["params_total"] - 70.55e9) / 70.55e9 < 0.005


def test_model_show_table_for_frontier_model() -> None:
    result = runner.invoke(app, ["model", "show", "frontier-2t-moe", "--seq-len", "8192"])
    assert result.exit_code == 0, result.output
    assert "parameters, total" in result.stdout and "2.00T" in result.stdout


def test_model_show_hf_config() -> None:
    result = runner.invoke(app, ["model", "show", str(DATA / "Mixtral-8x7B-v0.1.json"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert abs(doc["params_active"] - 12.9e9) / 12.9e9 < 0.005


def test_unknown_model_is_one_line_exit_2_with_suggestion() -> None:
    result = runner.invoke(app, ["model", "show", "llama3-70b"])
    assert result.exit_code == 2
    assert "did you mean 'llama-3-70b'" in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_malformed_config_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "llama", "hidden_size": -4}')
    result = runner.invoke(app, ["model", "show", str(bad)])
    assert result.exit_code == 2
    assert "config.json" in result.stderr and "Traceback" not in result.output


def test_catalog_models_json_is_a_list_with_ids() -> None:
    result = runner.invoke(app, ["catalog", "models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    ids = {row["id"] for row in rows}
    assert {"gpt3-175b", "deepseek-v3", "frontier-2t-moe", "mixtral-8x22b", "llama-3-405b"} <= ids


def test_catalog_hardware_json_lists_have_ids() -> None:
    for kind, must in (
        ("accelerators", {"trn2", "trn3", "h100-sxm", "gb200", "tpu-v5p"}),
        ("systems", {"trn2-ultraserver", "trn3-ultraserver-gen2", "gb200-nvl72", "p5.48xlarge"}),
        ("fabrics", {"neuronlink-v3", "efa-v3", "nvlink4", "ib-ndr"}),
        ("clusters", {"rainier-trn2-500k", "rainier-trn2-1m", "rainier-trn3-144"}),
        ("sources", {"N-trainium2", "ML-acc"}),
    ):
        result = runner.invoke(app, ["catalog", kind, "--json"])
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout)
        assert must <= {row["id"] for row in rows}, kind


def test_catalog_tables_render() -> None:
    for kind in ("accelerators", "systems", "fabrics", "clusters", "models", "sources"):
        result = runner.invoke(app, ["catalog", kind])
        assert result.exit_code == 0, result.output
    assert "rainier-trn2-500k" in runner.invoke(app, ["catalog", "clusters"]).stdout
    rows = json.loads(runner.invoke(app, ["catalog", "fabrics", "--json"]).stdout)
    sharp = {row["id"] for row in rows if row["in_network_reduction"]}
    assert sharp == {"nvlink4", "nvlink5"}  # NVSwitch gen 3 and later reduce in the switch; A100's gen 2 does not


def test_unknown_catalog_kind_is_usage_error() -> None:
    result = runner.invoke(app, ["catalog", "gpus"])
    assert result.exit_code == 2


def test_train_estimate_json_has_the_contract_keys() -> None:
    args = [
        "train",
        "estimate",
        "--model",
        "llama-2-7b",
        "--accelerator",
        "h100-sxm",
        "--count",
        "16",
        "--plan",
        "tp=2,pp=2,mbs=1,gbs=64,recompute=selective,precision=bf16",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for key in (
        "step_time_s",
        "tokens_per_s",
        "tokens_per_s_per_device",
        "model_flops_per_s_per_device",
        "mfu",
        "hfu",
        "memory_bytes",
        "fits",
        "breakdown_s",
        "placement",
    ):
        assert key in doc, key
    assert set(doc["breakdown_s"]) == {
        "compute",
        "recompute",
        "tp_comm",
        "link_contention",
        "cp_comm",
        "ep_comm",
        "dp_comm_exposed",
        "pp_comm",
        "pipeline_bubble",
        "optimizer",
        "other",
        "offload",  # the host link's exposed time (issue 17): 0 without offload
    }
    assert doc["breakdown_s"]["offload"] == 0.0 and doc["plan"]["offload"] == "none"
    assert doc["memory_bytes"]["host"] == 0.0
    assert doc["plan"]["dp"] == 4


def test_train_estimate_table_and_not_fitting_is_an_answer() -> None:
    args = [
        "train",
        "estimate",
        "--model",
        "llama-3-70b",
        "--accelerator",
        "h100-sxm",
        "--count",
        "8",
        "--plan",
        "tp=1,gbs=8",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "does NOT fit" in result.stdout


def test_train_estimate_bad_plans_are_one_line_errors() -> None:
    base = ["train", "estimate", "--model", "gpt3-175b", "--accelerator", "a100-80gb", "--count", "64", "--plan"]
    for plan, message in (
        ("tp=1,pp=64,vpp=2,gbs=64", "96 layers cannot fill pp*chunks=128 virtual stages"),
        ("tq=8", "plan.tq='8' is invalid"),
        ("tp=8,precision=fp8,gbs=64", "has no fp8"),
    ):
        result = runner.invoke(app, [*base, plan])
        assert result.exit_code == 2, (plan, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    both = runner.invoke(
        app,
        [
            "train",
            "estimate",
            "--model",
            "gpt3-175b",
            "--cluster",
            "rainier-trn2-500k",
            "--accelerator",
            "trn2",
            "--count",
            "4",
            "--plan",
            "tp=4",
        ],
    )
    assert both.exit_code == 2 and "not both" in both.stderr
    negative = runner.invoke(app, [*base[:5], "a100-80gb", "--count", "-3", "--plan", "tp=1"])
    assert negative.exit_code == 2


def test_link_names_are_not_emoji() -> None:
    from rainier.cli import _out

    with _out.capture() as captured:
        _out.print("neuronlink-v3:x: and :smile:")
    assert "neuronlink-v3:x: and :smile:" in captured.get()
