"""The engine's host work per running request (``ServeEfficiency.sequence_overhead_s``): what an iteration adds per
request, per data-parallel attention group, and that the fit keeps one value for every entry."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rainier.catalog.loader import CatalogError
from rainier.hardware import cluster_of
from rainier.serve.cost import replica_cost
from rainier.serve.efficiency import PARAMETERS, ServeEfficiency, committed_serve_efficiency, load_serve_efficiency
from rainier.serve.fitting import GLOBAL_PARAMETERS, LOWER, UPPER
from rainier.workload import get_model


def test_each_running_request_adds_its_host_work_to_the_step() -> None:
    cluster = cluster_of("h100-sxm", 1)
    without = replica_cost(get_model("llama-3-8b"), cluster, tp=1, eff=ServeEfficiency(sequence_overhead_s=0.0))
    with_ = without.with_efficiency(ServeEfficiency(sequence_overhead_s=20e-6))
    for prefill, decodes, prompts in ((0, 1, 1), (0, 256, 1), (4096, 100, 4)):
        added = with_.iteration_s(prefill, decodes, decodes * 500, prompts) - without.iteration_s(
            prefill, decodes, decodes * 500, prompts
        )
        requests = decodes + (prompts if prefill else 0)
        assert added == pytest.approx(20e-6 * requests)
        # the simulator's closure charges the same
        fast = with_.iteration_function()(prefill, decodes, decodes * 500, prompts, 0)
        assert fast == with_.iteration_s(prefill, decodes, decodes * 500, prompts)


def test_data_parallel_attention_groups_schedule_their_own_requests() -> None:
    shape, cluster = get_model("mixtral-8x7b"), cluster_of("h100-sxm", 8)
    eff = ServeEfficiency(sequence_overhead_s=0.0)
    base = replica_cost(shape, cluster, tp=2, ep=8, dp_attention=4, eff=eff)
    busy = base.with_efficiency(ServeEfficiency(sequence_overhead_s=10e-6))
    # 64 decodes over 4 groups: 16 each; 6 prompts round-robin: the busiest group has 2
    added = busy.iteration_s(600, 64, 64 * 100, 6) - base.iteration_s(600, 64, 64 * 100, 6)
    assert added == pytest.approx(10e-6 * (16 + 2))


def test_the_fit_keeps_one_request_overhead_for_every_entry_within_its_bounds() -> None:
    assert set(GLOBAL_PARAMETERS) <= set(PARAMETERS)
    entries = committed_serve_efficiency().entries
    for name in GLOBAL_PARAMETERS:
        values = {getattr(eff, name) for eff in entries.values()}
        assert len(values) == 1, (name, values)
        (value,) = values
        assert LOWER[name] <= value <= UPPER[name]


def test_an_efficiency_file_from_before_the_request_overhead_loads_with_its_prior(tmp_path: Path) -> None:
    entry = {name: value for name, value in ServeEfficiency().to_dict().items() if name != "sequence_overhead_s"}
    path = tmp_path / "serve-efficiency.yaml"
    path.write_text(yaml.safe_dump({"provenance": {}, "entries": {"default": entry}}), encoding="utf-8")
    loaded = load_serve_efficiency(path).entries["default"]
    assert loaded.sequence_overhead_s == ServeEfficiency().sequence_overhead_s
    # every other parameter is still required
    del entry["comm"]
    path.write_text(yaml.safe_dump({"provenance": {}, "entries": {"default": entry}}), encoding="utf-8")
    with pytest.raises(CatalogError, match="comm"):
        load_serve_efficiency(path)


def test_a_static_gpt_session_batch_has_no_host_work_per_request() -> None:
    """TensorRT-LLM's gptSession (before 0.7) runs its static batch as one tensor sampled on the device: its steps
    pay the per-iteration overhead but nothing per request (``ReplicaCost.per_request_host_work``)."""
    cluster = cluster_of("h100-sxm", 1)
    eff = ServeEfficiency(sequence_overhead_s=20e-6)
    serving = replica_cost(get_model("llama-2-7b"), cluster, tp=1, eff=eff)
    session = replica_cost(get_model("llama-2-7b"), cluster, tp=1, eff=eff, per_request_host_work=False)
    assert session.request_overhead_s == 0.0 and serving.request_overhead_s == 20e-6
    for decodes in (1, 112, 768):
        gap = serving.iteration_s(0, decodes, decodes * 1000) - session.iteration_s(0, decodes, decodes * 1000)
        assert gap == pytest.approx(20e-6 * decodes)
        assert session.iteration_function()(0, decodes, decodes * 1000, 1, 0) == session.iteration_s(
            0, decodes, decodes * 1000
        )


def test_only_the_gpt_session_cases_are_costed_without_request_host_work() -> None:
    from rainier.serve.validate import _prepared, load_inference_cases

    ready, _ = _prepared(load_inference_cases(Path(__file__).parents[2] / "validation" / "inference.yaml"))
    by_source = {(item.case.group.startswith("TensorRT-LLM_v0."), item.cost.per_request_host_work) for item in ready}
    assert by_source == {(True, False), (False, True)}  # v0.5/v0.6 gptSession groups off, Neuron's on
