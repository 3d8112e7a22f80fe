"""CLI: rainier serve estimate, and validate/calibrate on the inference file."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_serve_estimate_neuron_buckets() -> None:
    args = ["serve", "estimate", "--model", "llama-3.1-8b", "--accelerator", "trn2", "--count", "1", "--tp", "4"]
    docs = {}
    for flag in ("--bucketing", "--no-bucketing"):
        result = runner.invoke(
            app, [*args, "--unit", "core", "--input-len", "600", "--output-len", "64", flag, "--json"]
        )
        assert result.exit_code == 0, result.output
        docs[flag] = json.loads(result.stdout)
    assert docs["--bucketing"]["config"]["bucketing"] is True
    assert docs["--no-bucketing"]["config"]["bucketing"] is False
    # automatic buckets prefill the 600-token prompt as 1,024; without them one length of 600 + 64 = 664
    assert docs["--bucketing"]["ttft_ms"] > docs["--no-bucketing"]["ttft_ms"]
    assert docs["--bucketing"]["buckets"] == {"prompt": 1024, "decode_first": 1024, "decode_last": 1024}
    assert docs["--no-bucketing"]["buckets"] == {"prompt": 664, "decode_first": 664, "decode_last": 664}
    table = runner.invoke(app, [*args, "--unit", "core", "--input-len", "1000", "--output-len", "64"])
    assert "prompts prefilled as 1,024 tokens; decode steps read each cache over 1,024 to 2,048 tokens" in table.output


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
        (["--precision", "int3"], "precision"),
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


def test_serve_simulate_and_size_json() -> None:
    sim = runner.invoke(
        app,
        [
            "serve", "simulate", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "2",
            "--rate", "5", "--duration", "20", "--seed", "3", "--json",
        ],
    )  # fmt: skip
    assert sim.exit_code == 0, sim.output
    doc = json.loads(sim.stdout)
    assert doc["requests_completed"] > 0 and doc["ttft_ms"]["p99"] >= doc["ttft_ms"]["p50"]
    again = runner.invoke(
        app,
        [
            "serve", "simulate", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "2",
            "--rate", "5", "--duration", "20", "--seed", "3", "--json",
        ],
    )  # fmt: skip
    assert again.stdout == sim.stdout  # same seed, same bytes
    size_args = ["serve", "size", "--models", "llama-3-8b:20", "--slo", "tpot_p99_ms=50"]
    size = runner.invoke(app, [*size_args, "--accelerators", "h100-sxm", "--json"])
    assert size.exit_code == 0, size.output
    assert json.loads(size.stdout)["best"] == "h100-sxm"


def test_disaggregated_simulation_costs_the_kv_transfer() -> None:
    args = ["serve", "simulate", "--model", "llama-3-8b", "--rate", "5", "--duration", "20", "--json"]
    result = runner.invoke(app, [*args, "--disaggregate", "prefill=h100-sxm:2,decode=trn2:4"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["prefill_replicas"] == 2 and doc["replicas"] == 4 and doc["kv_transfer_ms"]["p50"] > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rate", "5"], "--duration"),
        (["--rate", "5", "--duration", "10", "--scheduler", "fifo"], "scheduler"),
        (["--rate", "5", "--duration", "10", "--disaggregate", "prefill=h100-sxm:2"], "disaggregate"),
        (["--trace", "missing.csv"], "missing.csv"),
    ],
)
def test_bad_simulate_input(args: list[str], needle: str) -> None:
    base = ["serve", "simulate", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "2"]
    result = runner.invoke(app, [*base, *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_calibrate_reports_the_priors_and_the_fit() -> None:
    cases = Path(__file__).resolve().parents[2] / "validation" / "inference.yaml"
    result = runner.invoke(app, ["calibrate", str(cases), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output[-500:]
    doc = json.loads(result.stdout)
    before, after = doc["before"], doc["after"]["summary"]
    assert doc["written"] is None and before["predicted"] == after["predicted"] > 100
    assert after["median_abs_error_pct"] < before["median_abs_error_pct"]
    weights = doc["group_weights"]  # every source's rows carry the same total weight (serve.fitting.group_weights)
    assert "AWS_Neuron_trn1_inference" in weights and len(weights) >= 4
    assert weights["AWS_Neuron_trn1_inference"] == min(weights.values())  # the largest table, the smallest weight
