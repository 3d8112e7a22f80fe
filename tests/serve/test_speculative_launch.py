"""Where a drafter runs (fused with the verification, or launched as its own program), what it costs before the
first token, and a draft model named in a case's free text."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rainier.calibrate.cases import InferenceCase, Trust
from rainier.errors import InputError
from rainier.hardware import cluster_of
from rainier.serve.cost import ReplicaCost, replica_cost
from rainier.serve.efficiency import ServeEfficiency
from rainier.serve.estimate import ServeConfig, draft_cost, static_batch_times
from rainier.serve.speculative import (
    SpecMethod,
    Speculation,
    drafter_prefill_s,
    parse_speculation,
    speculation_from_case,
    speculative_step_s,
)
from rainier.serve.validate import serve_config
from rainier.workload import get_model
from rainier.workload.registry import has_model

EFF = ServeEfficiency(iteration_overhead_s=3e-3, collective_latency_s=20e-6)


def _llama_on_trn2(spec: Speculation) -> tuple[ReplicaCost, ReplicaCost]:
    shape, cluster = get_model("llama-3.1-8b"), cluster_of("trn2", 2)
    config = ServeConfig(tp=8, unit_core=True, batch=2, input_len=512, output_len=128, speculative=spec)
    drafter = draft_cost(shape, cluster, config, EFF)
    assert drafter is not None
    return replica_cost(shape, cluster, tp=8, unit_core=True, eff=EFF), drafter


def test_a_separately_launched_drafter_pays_one_more_launch_per_step_and_its_prefill() -> None:
    fused = Speculation(method=SpecMethod.EAGLE3, num_tokens=3, acceptance_length=3.22)
    separate = replace(fused, separate_launch=True)
    cost, drafter = _llama_on_trn2(fused)
    step_fused = speculative_step_s(cost, drafter, fused, 2, 2 * 600)
    step_separate = speculative_step_s(cost, drafter, separate, 2, 2 * 600)
    assert step_separate - step_fused == pytest.approx(EFF.iteration_overhead_s)
    # the step: one launch, the host work of its 2 requests, a 4-token verification and three one-layer drafter
    # passes
    host = EFF.iteration_overhead_s + 2 * EFF.sequence_overhead_s
    expected = host + cost.pass_s(2, 1200, queries=4) + 3 * drafter.pass_s(2, 1200)
    assert step_fused == pytest.approx(expected)
    plain = static_batch_times(cost, 2, 512, 128)
    with_fused = static_batch_times(cost, 2, 512, 128, speculative=fused, drafter=drafter)
    with_separate = static_batch_times(cost, 2, 512, 128, speculative=separate, drafter=drafter)
    draft_prefill = drafter_prefill_s(drafter, fused, 1024, 2)
    assert 0 < draft_prefill < plain.ttft_s / 10  # one layer of 32
    assert with_fused.ttft_s == pytest.approx(plain.ttft_s + draft_prefill)
    # the drafter's own launch over the 2 prompts: its step overhead and its host work for each request
    assert with_separate.ttft_s == pytest.approx(with_fused.ttft_s + host)
    assert with_separate.tpot_s > with_fused.tpot_s


def test_a_draft_model_pays_its_own_layers_collectives_at_the_targets_tp() -> None:
    shape, draft, cluster = get_model("llama-3.1-70b"), get_model("qwen3-0.6b"), cluster_of("trn2", 16)
    spec = Speculation(method=SpecMethod.DRAFT, num_tokens=7, draft_model="qwen3-0.6b")
    config = ServeConfig(tp=64, unit_core=True, batch=1, input_len=128, output_len=512, speculative=spec)
    drafter = draft_cost(shape, cluster, config, EFF, draft)
    assert drafter is not None and drafter.num_layers == 28
    slope, intercept = drafter.all_reduce.library  # Neuron: its collective library's ring or tree
    parts = drafter.parts(0, 1, 600)
    # two all-reduces in each of the 28 layers, each paying the links' and the call's latency
    assert parts["tp_comm"] == pytest.approx(56 * (slope * 1024 * 2 + intercept + EFF.collective_latency_s))


def test_launch_is_parsed_and_refused() -> None:
    assert parse_speculation("eagle3:k=3,launch=separate").separate_launch is True
    assert parse_speculation("eagle3:k=3,launch=fused").separate_launch is False
    assert parse_speculation("eagle3:k=3").to_dict()["separate_launch"] is False
    with pytest.raises(InputError, match=r"speculative\.launch"):
        parse_speculation("eagle3:k=3,launch=twice")


def test_case_text_naming_a_catalog_draft_model_is_costed_as_that_model() -> None:
    text = (
        "draft Qwen/Qwen3-0.6B, speculative-config {method: eagle, num_speculative_tokens: 7}; acceptance not reported"
    )
    spec = speculation_from_case(text, known_model=has_model)
    assert spec is not None and spec.method is SpecMethod.DRAFT and spec.num_tokens == 7
    assert spec.draft_model == "Qwen/Qwen3-0.6B"
    unknown = speculation_from_case(text.replace("Qwen/Qwen3-0.6B", "someone/tiny-draft"), known_model=has_model)
    assert unknown is not None and unknown.method is SpecMethod.EAGLE  # not in the catalog: an EAGLE-style head
    default = speculation_from_case(text)  # no catalog to look in: the older reading
    assert default is not None and default.method is SpecMethod.EAGLE


def test_nxd_inference_counts_the_pending_token_in_its_speculation_length() -> None:
    """NxD Inference's speculation_length k verifies k tokens: k - 1 proposals, and k drafter passes (the last
    fills the drafter's cache)."""
    nxdi = parse_speculation("draft:k=7,model=qwen3-0.6b,accept=0.7,launch=nxdi")
    plain = parse_speculation("draft:k=6,model=qwen3-0.6b,accept=0.7")
    assert nxdi.counts_pending and not nxdi.separate_launch
    assert (nxdi.proposals, nxdi.verified_tokens, nxdi.draft_passes) == (6, 7, 7)
    assert nxdi.tokens_per_step == pytest.approx(plain.tokens_per_step)
    with pytest.raises(InputError, match="from 1 to the 7 tokens"):
        parse_speculation("eagle:k=7,len=7.5,launch=nxdi")


def test_a_neuron_case_naming_nxd_inference_speculation_counts_the_pending_token() -> None:
    def config(accelerator: str, framework: str) -> Speculation | None:
        case = InferenceCase(
            id="x", group="g", trust=Trust.B, source="s", model={"name": "qwen3-32b"},
            system={"accelerator": accelerator, "count": 16},
            serving={"degrees_unit": "neuroncore", "tp": 64, "batch": 1, "input_len": 128, "output_len": 512,
                     "precision": "bf16", "framework": framework,
                     "speculative": "draft model Qwen/Qwen3-0.6B, speculation_length 7"},
            targets=(),
        )  # fmt: skip
        return serve_config(case).speculative

    nxdi = config("trn2", "vLLM 0.9.1 with the NxD Inference backend, enable_fused_speculation")
    assert nxdi is not None and nxdi.counts_pending and nxdi.proposals == 6
    gpu = config("h100-sxm", "vLLM 0.9.1")
    assert gpu is not None and not gpu.counts_pending and gpu.proposals == 7
