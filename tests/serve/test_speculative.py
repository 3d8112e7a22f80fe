"""Speculative decoding, expert parallelism in place of the MLP all-reduce, and kernel-given attention traffic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from rainier.cli import app
from rainier.errors import InputError
from rainier.hardware import cluster_of
from rainier.serve.cost import AttentionKernels, replica_cost
from rainier.serve.efficiency import ServeEfficiency
from rainier.serve.speculative import SpecMethod, Speculation, parse_speculation, speculation_from_case
from rainier.workload import get_model
from rainier.workload.registry import has_model

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@given(st.floats(0.01, 0.99), st.integers(1, 16))
def test_tokens_per_step_is_leviathans_expectation(alpha: float, k: int) -> None:
    spec = Speculation(method=SpecMethod.EAGLE, num_tokens=k, acceptance_rate=alpha)
    expected = sum(alpha**i for i in range(k + 1))  # 1 + alpha + ... + alpha^k
    assert spec.tokens_per_step == pytest.approx(expected)
    assert 1.0 <= spec.tokens_per_step <= k + 1


def test_parse_and_refuse() -> None:
    spec = parse_speculation("eagle3:k=3,len=3.22")
    assert spec.method is SpecMethod.EAGLE3 and spec.num_tokens == 3 and spec.tokens_per_step == 3.22
    assert parse_speculation("draft:k=4,model=llama-3-8b").draft_model == "llama-3-8b"
    for bad in ("eagle3", "beam:k=3", "eagle3:k=3,len=9", "eagle3:k=3,accept=1.5", "eagle3:k=3,k=4", "draft:k=2",
                "eagle3:k=3,accept=0.7,len=2"):  # fmt: skip
        with pytest.raises(InputError):
            parse_speculation(bad)


def test_case_text_is_read_for_method_k_and_acceptance() -> None:
    text = "EAGLE3 draft X, num_speculative_tokens 3; measured acceptance rate 74.14%, mean acceptance length 3.22"
    spec = speculation_from_case(text)
    assert spec is not None and spec.method is SpecMethod.EAGLE3 and spec.tokens_per_step == 3.22
    assert speculation_from_case(None) is None


@pytest.mark.parametrize(
    ("text", "method", "k", "draft", "rate"),
    [
        ("fused speculation, draft model meta-llama/Llama-3.2-1B-Instruct, speculation_length 7", SpecMethod.DRAFT, 7,
         "meta-llama/Llama-3.2-1B-Instruct", None),
        ("vLLM with Llama-3.2-1B as draft, 5 speculative tokens", SpecMethod.DRAFT, 5, "Llama-3.2-1B", None),
        ("EAGLE speculative decoding, speculation_length=5, acceptance rate 0.7", SpecMethod.EAGLE, 5, None, 0.7),
        ("EAGLE-3, max_draft_len 3, acceptance rate 60%", SpecMethod.EAGLE3, 3, None, 0.6),
        ("MTP, num_nextn_predict_layers 1", SpecMethod.MTP, 1, None, None),
        ("Medusa, 4 medusa heads", SpecMethod.MEDUSA, 4, None, None),
        ("prompt lookup decoding, k=4", SpecMethod.NGRAM, 4, None, None),
        # a method named beats a model that follows the word "draft" (the target's name in an EAGLE head's)
        ("EAGLE draft for llama-3.1-8b, num_speculative_tokens 2", SpecMethod.EAGLE, 2, None, None),
    ],
)  # fmt: skip
def test_engines_wordings_of_speculation(
    text: str, method: SpecMethod, k: int, draft: str | None, rate: float | None
) -> None:
    spec = speculation_from_case(text, known_model=has_model)
    assert spec is not None
    assert (spec.method, spec.num_tokens, spec.draft_model, spec.acceptance_rate) == (method, k, draft, rate)


def test_speculation_text_without_its_tokens_is_refused() -> None:
    with pytest.raises(InputError, match="speculative tokens per step"):
        speculation_from_case("EAGLE speculative decoding", known_model=has_model)


def _tpot(*extra: str) -> float:
    args = ["serve", "estimate", "--model", "llama-3.1-8b", "--accelerator", "trn2", "--count", "16", "--tp", "8",
            "--unit", "core", "--batch", "2", "--input-len", "512", "--output-len", "128", *extra]  # fmt: skip
    args.append("--json")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return float(json.loads(result.stdout)["tpot_ms"])


def test_speculation_speeds_decode_up_and_a_same_size_draft_does_not() -> None:
    plain = _tpot()
    eagle = _tpot("--speculative", "eagle3:k=3,accept=0.74")
    assert eagle < plain / 1.5  # ~2.7 tokens per step for a one-layer drafter and a 4-token verification
    assert _tpot("--speculative", "draft:k=4,model=llama-3-8b") > plain  # drafting with an equal model costs more


def test_expert_parallelism_replaces_the_moe_layers_all_reduce() -> None:
    shape, cluster = get_model("mixtral-8x7b"), cluster_of("h100-sxm", 8)
    eff = ServeEfficiency()
    tp_only = replica_cost(shape, cluster, tp=8, eff=eff).parts(0, 64, 64 * 1024)
    with_ep = replica_cost(shape, cluster, tp=8, ep=8, eff=eff).parts(0, 64, 64 * 1024)
    assert with_ep["tp_comm"] == pytest.approx(tp_only["tp_comm"] / 2)  # every Mixtral layer is MoE
    assert with_ep["ep_comm"] > 0 and tp_only["ep_comm"] == 0


def test_per_head_decode_kernels_read_each_kv_head_once_per_query_head() -> None:
    shape, cluster = get_model("llama-2-70b"), cluster_of("h100-sxm", 8)
    fused = replica_cost(shape, cluster, tp=4, eff=ServeEfficiency())
    per_head = replica_cost(shape, cluster, tp=4, eff=ServeEfficiency(), attention=AttentionKernels.PER_HEAD_DECODE)
    assert fused.kv_reads_per_head == 1.0 and per_head.kv_reads_per_head == 8.0  # 64 query heads on 8 KV heads
    assert per_head.parts(0, 64, 64 * 2048)["attention"] > 4 * fused.parts(0, 64, 64 * 2048)["attention"]
    unfused = replica_cost(shape, cluster, tp=4, eff=ServeEfficiency(), attention=AttentionKernels.UNFUSED)
    assert unfused.parts(4096, 0, 0)["attention"] > fused.parts(4096, 0, 0)["attention"]


def test_validate_and_calibrate_read_several_inference_files() -> None:
    files = [str(ROOT / "validation" / "inference.yaml"), str(ROOT / "validation" / "inference-trn2.yaml")]
    result = runner.invoke(app, ["validate", *files, "--json"])
    assert result.exit_code == 0, result.output[-500:]
    groups = set(json.loads(result.stdout)["summary"]["by_group"])
    assert "AWS_Neuron_trn1_inference" in groups and "trn2-vllmneuron-eagle3-tutorials" in groups
    mixed = runner.invoke(app, ["validate", files[0], str(ROOT / "validation" / "training.yaml")])
    assert mixed.exit_code == 2 and "only for inference cases" in mixed.stderr


def _simulated_tpot(*extra: str) -> float:
    args = ["serve", "simulate", "--model", "llama-3.1-8b", "--accelerator", "h100-sxm", "--count", "1", "--rate", "4",
            "--duration", "30", "--input-len", "512", "--output-len", "256", *extra]  # fmt: skip
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return float(json.loads(result.stdout)["tpot_ms"]["mean"])


def test_the_simulator_speculates_as_the_estimate_does() -> None:
    plain, eagle = _simulated_tpot(), _simulated_tpot("--speculative", "eagle3:k=3,accept=0.74")
    assert eagle < plain / 1.5
    result = runner.invoke(
        app, ["serve", "simulate", "--model", "llama-3-8b", "--rate", "5", "--duration", "10", "--speculative",
              "eagle3:k=3", "--disaggregate", "prefill=h100-sxm:8,decode=trn2:16"],
    )  # fmt: skip
    assert result.exit_code == 2 and "not disaggregated" in result.stderr
