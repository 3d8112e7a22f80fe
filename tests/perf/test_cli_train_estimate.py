"""Issue 11 from the command line: uneven pipelines and DualPipe with expert parallelism are accepted."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rainier.cli import app

runner = CliRunner()


def _estimate(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["train", "estimate", *args, "--json"])
    assert result.exit_code == 0, result.output
    doc: dict[str, object] = json.loads(result.stdout)
    return doc


def test_pp16_on_a_126_layer_model() -> None:
    doc = _estimate(
        "--model", "llama-3-405b", "--accelerator", "h100-sxm", "--count", "16384",
        "--plan", "tp=8,pp=16,dp=128,mbs=1,gbs=2048,zero=1,sp=true,schedule=interleaved,vpp=2",
    )  # fmt: skip
    plan = doc["plan"]
    assert isinstance(plan, dict) and plan["pp"] == 16
    step = doc["step_time_s"]
    assert isinstance(step, float) and step > 0
    _, load = doc["busiest_link"]["name"], doc["busiest_link"]["load_s"]  # type: ignore[index]
    assert load <= step


def test_dualpipe_with_expert_parallelism_on_deepseek_v3() -> None:
    doc = _estimate(
        "--model", "deepseek-v3", "--accelerator", "h800", "--count", "2048",
        "--plan", "tp=1,pp=16,dp=128,ep=64,mbs=1,gbs=4096,zero=1,schedule=dualpipe,precision=fp8,ep_dedup=true",
    )  # fmt: skip
    plan = doc["plan"]
    assert isinstance(plan, dict) and plan["schedule"] == "dualpipe" and plan["ep"] == 64
    breakdown = doc["breakdown_s"]
    assert isinstance(breakdown, dict) and breakdown["pipeline_bubble"] > 0


def _refusal(plan: str) -> list[str]:
    """The non-blank output lines of ``train estimate`` on Llama 3 8B x 64 H100 with ``plan``, which must exit 2."""
    argv = ["train", "estimate", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "64"]
    result = runner.invoke(app, [*argv, "--plan", plan])
    assert result.exit_code == 2
    return [line for line in result.output.splitlines() if line.strip()]


def test_impossible_pipeline_is_one_line_exit_2() -> None:
    lines = _refusal("tp=1,pp=64,mbs=1,gbs=64")
    assert len(lines) == 1 and "pp=64" in lines[0] and "layers" in lines[0]


def test_hsdp_plan_from_the_command_line() -> None:
    """FSDP's hybrid shard on Llama 3 70B: ZeRO-3 inside groups of 8 data-parallel ranks (8 nodes at tp=8),
    replicated 16 times."""
    doc = _estimate(
        "--model", "llama-3-70b", "--accelerator", "h100-sxm", "--count", "1024",
        "--plan", "tp=8,dp=128,mbs=1,gbs=1024,hsdp=8,sp=true",
    )  # fmt: skip
    plan = doc["plan"]
    assert isinstance(plan, dict) and plan["shard"] == 8 and plan["zero"] == 3
    axes = [a["axis"] for a in doc["placement"]]  # type: ignore[union-attr]
    assert axes[-2:] == ["dp_shard", "dp_replica"]
    step = doc["step_time_s"]
    assert isinstance(step, float) and doc["busiest_link"]["load_s"] <= step  # type: ignore[index]


def test_bad_shard_degree_is_one_line_exit_2() -> None:
    lines = _refusal("tp=1,dp=64,mbs=1,gbs=64,zero=3,shard=6")
    assert len(lines) == 1 and "shard_degree=6" in lines[0] and "divisor of dp=64" in lines[0]
