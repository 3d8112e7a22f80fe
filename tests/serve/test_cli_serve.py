"""CLI: rainier serve estimate, and validate/calibrate on the inference file."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rainier.cli import app

runner = CliRunner()


def test_serve_estimate_json_contract() -> None:
    args = ["serve", "estimate", "--model", "llama-3-70b", "--accelerator", "h100-sxm", "--count", "8", "--tp", "8"]
    result = runner.invoke(app, [*args, "--batch", "32", "--precision", "fp8", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"ttft_ms", "tpot_ms", "output_tokens_per_s", "fits", "max_batch"} <= set(doc)
    assert doc["fits"] and doc["ttft_ms"] > 0 and doc["tpot_ms"] > 0


def test_serve_estimate_neuron_cores() -> None:
    args = ["serve", "estimate", "--model", "llama-2-70b", "--accelerator", "trn1", "--count", "16", "--tp", "32"]
    result = runner.invoke(app, [*args, "--unit", "core", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["replica_devices"] == 16


def test_validate_inference_file() -> None:
    result = runner.invoke(app, ["validate", "validation/inference.yaml", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["summary"]["kind"] == "inference" and doc["summary"]["skipped"] == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--tp", "0"], "tp"),
        (["--batch", "100000"], "batch=100000 is invalid: at most"),
        (["--input-len", "3000000"], "input-len + output-len"),
        (["--precision", "int4"], "precision"),
        (["--unit", "chip"], "unit"),
        (["--tp", "16"], "tp"),
    ],
)
def test_bad_serve_input(args: list[str], needle: str) -> None:
    base = ["serve", "estimate", "--model", "llama-2-70b", "--accelerator", "h100-sxm", "--count", "8", "--tp", "8"]
    result = runner.invoke(app, [*base, *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0]
