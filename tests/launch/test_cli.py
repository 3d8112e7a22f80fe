"""``rainier export`` / ``rainier import`` faces: output, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from rainier.cli import app

CONFIGS = Path(__file__).parent / "configs"
runner = CliRunner()


def test_export_then_import(tmp_path: Path) -> None:
    out = tmp_path / "run.sh"
    plan = "tp=8,pp=2,dp=4,mbs=1,gbs=256,sp=true,recompute=selective,precision=bf16"
    result = runner.invoke(
        app, ["export", "--model", "llama-3-70b", "--to", "megatron", "--plan", plan, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["import", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["framework"] == "megatron"
    assert doc["plan"].startswith("tp=8,pp=2,dp=4,cp=1,ep=1,vpp=1,sp=true,zero=1,mbs=1,gbs=256,recompute=selective")
    assert doc["cluster"]["num_devices"] == 64


def test_import_real_with_model() -> None:
    result = runner.invoke(app, ["import", str(CONFIGS / "nxd_hf_llama3_8B_config.yaml"), "--model", "llama-3-8b"])
    assert result.exit_code == 0, result.output
    assert "plan: tp=32,pp=1,dp=4" in result.output and "model: llama-3-8b" in result.output


def _one_line_error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    line = _one_line_error(["export", "--model", "llama-3-8b", "--to", "deepspeed", "--plan", "tp=1,gbs=8"])
    assert "to='deepspeed'" in line and "megatron" in line
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    assert "bad.yaml" in _one_line_error(["import", str(bad)])
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello world\n")
    assert "no framework recognised" in _one_line_error(["import", str(unknown)])
    assert "from='x'" in _one_line_error(["import", str(unknown), "--from", "x"])
    line = _one_line_error(["export", "--model", "llama-3-8b", "--to", "nxd", "--plan", "tp=8,dp=4,gbs=32"])
    assert line.endswith("NxD degrees count NeuronCores: write unit=core") and "unit='device'" in line


def test_serving_engines_are_written_for_the_chips_they_run_on() -> None:
    """TensorRT-LLM serves NVIDIA GPUs only and SGLang GPUs; vLLM has Neuron and TPU backends too."""
    for framework, chip in (("trtllm", "trn2"), ("sglang", "trn2"), ("sglang", "tpu-v5p")):
        result = runner.invoke(app, ["export", "--model", "llama-3-70b", "--to", framework, "--tp", "8",
                                     "--accelerator", chip])  # fmt: skip
        assert result.exit_code == 2, result.output
        assert f"accelerator='{chip}' is invalid: a chip {framework} serves on" in result.stderr
    ok = runner.invoke(app, ["export", "--model", "llama-3-70b", "--to", "vllm", "--tp", "8", "--accelerator", "trn2"])
    assert ok.exit_code == 0 and ok.stdout.startswith("vllm serve llama-3-70b")
