"""Fleet sizing under SLOs: SLO grammar, layout choice, capacity arithmetic, simulation check, bad input."""

from __future__ import annotations

import math

import pytest

from rainier.api.serve import run_serve_size
from rainier.serve.iteration import pipeline_groups
from rainier.serve.size import (
    MAX_EP_DEVICES,
    PIPELINE_STAGES,
    Slo,
    Traffic,
    _degrees,
    layout_label,
    layouts,
    parse_models,
    parse_slo,
    size_model,
)
from rainier.workload import get_model


def test_parse_slo_and_models() -> None:
    assert parse_slo("ttft_p99_ms=2000, tpot_p99_ms=50") == Slo(ttft_s=2.0, tpot_s=0.05)
    assert parse_models("llama-3-70b:20,llama-3-8b:1e2") == [("llama-3-70b", 20.0), ("llama-3-8b", 100.0)]
    for bad, field in (("ttft=5", "slo"), ("tpot_p99_ms=-1", "slo"), ("", "slo")):
        with pytest.raises(ValueError, match=field):
            parse_slo(bad)
    for bad in ("llama-3-70b", "llama-3-70b:0", "x:abc"):
        with pytest.raises(ValueError, match="models"):
            parse_models(bad)


def test_layouts_meet_the_tpot_target_and_capacity_is_arithmetic() -> None:
    traffic = Traffic(model="llama-3-70b", rate_per_s=10.0, input_len=1024, output_len=256)
    slo = Slo(ttft_s=2.0, tpot_s=0.05)
    found, _ = layouts(get_model("llama-3-70b"), traffic, "h100-sxm", slo)
    assert found and any(layout.pp > 1 for layout, _ in found)
    for layout, cost in found:
        groups, group = pipeline_groups(cost)  # pp micro-batch groups in flight, each with its share of the cache
        assert groups == layout.pp and layout.replica_devices == layout.tp * layout.pp
        context = traffic.input_len + traffic.output_len
        assert group.iteration_s(0, layout.batch, layout.batch * context) <= 0.05
        if layout.batch < min(group.max_batch, group.kv_capacity_tokens // context):
            nxt = layout.batch + 1
            assert group.iteration_s(0, nxt, nxt * context) > 0.05  # the largest batch under the target
        mean = group.iteration_s(0, layout.batch, layout.batch * (1024 + 128))
        assert layout.requests_per_s == pytest.approx(groups / (layout.prefill_s + 256 * mean / layout.batch))


def test_moe_layouts_add_expert_parallelism_dense_ones_do_not() -> None:
    dense = [(tp, 1, 1, pp) for pp in PIPELINE_STAGES for tp in (1, 2, 4, 8)]
    assert _degrees(get_model("llama-3-70b"), 8) == dense
    moe = get_model("deepseek-v3")
    assert moe.moe is not None
    tried = _degrees(moe, 8)
    assert {(8, 8, 1, 1), (8, 8, 1, 2), (8, 64, 8, 1), (1, 256, 256, 1)} <= set(tried)
    for tp, ep, dp, pp in tried:
        assert tp <= 8 and ep <= min(moe.moe.num_experts, MAX_EP_DEVICES)
        assert ep in (1, tp) if dp == 1 else ep == tp * dp and pp == 1  # the layouts the cost model can express
    assert len(set(tried)) == len(tried)


def test_a_dense_model_too_big_for_one_node_is_pipelined() -> None:
    """Llama 3 405B in bf16 (no fp8 on an A100) outgrows eight 80 GB GPUs: two pipeline stages over two nodes, as
    vLLM serves it (tp 8 x pp 2); each stage's group keeps half the cache and the replica two groups in flight."""
    traffic = Traffic(model="llama-3-405b", rate_per_s=2.0, input_len=1024, output_len=256)
    slo = Slo(ttft_s=3.0, tpot_s=0.1)
    found, reasons = layouts(get_model("llama-3-405b"), traffic, "a100-80gb", slo)
    assert any(reason.startswith("tp=8 bf16: the KV cache") for reason in reasons)
    assert found and all(layout.pp > 1 for layout, _ in found)
    fleet = size_model(get_model("llama-3-405b"), traffic, "a100-80gb", slo, cost_of=lambda a: (1.0, "usd"))
    assert fleet.layout.pp > 1 and fleet.layout.label.startswith(f"tp={fleet.layout.tp} pp={fleet.layout.pp}")


def test_a_moe_too_big_for_one_node_is_sized_with_wide_expert_parallelism() -> None:
    """Two trillion fp8 parameters outgrow eight 80 GB GPUs: tensor parallelism alone left no layout (the KV cache
    of one request did not fit); spreading the experts over several nodes does, and so do pipeline stages."""
    traffic = Traffic(model="frontier-2t-moe", rate_per_s=50.0, input_len=1024, output_len=256)
    slo = Slo(ttft_s=2.0, tpot_s=0.05)
    found, reasons = layouts(get_model("frontier-2t-moe"), traffic, "h100-sxm", slo)
    assert found and all(layout.replica_devices > 8 for layout, _ in found)
    assert any("tp=8 fp8: the KV cache" in reason for reason in reasons)
    wide = [layout for layout, _ in found if layout.dp_attention > 1]
    assert wide
    for layout in wide:
        assert layout.ep == layout.tp * layout.dp_attention == layout.replica_devices > 8
        assert layout.to_dict()["label"] == f"tp={layout.tp} dp-attention={layout.dp_attention} ep={layout.ep}"
    fleet = size_model(get_model("frontier-2t-moe"), traffic, "h100-sxm", slo, cost_of=lambda a: (1.0, "usd"))
    assert fleet.layout.replica_devices > 8
    assert layout_label({"tp": 4}) == "tp=4"  # a result stored before layouts had labels


def test_size_model_replicas_and_verification_growth() -> None:
    traffic = Traffic(model="llama-3-8b", rate_per_s=50.0, input_len=512, output_len=128)
    slo = Slo(tpot_s=0.05)
    plain = size_model(get_model("llama-3-8b"), traffic, "h100-sxm", slo, cost_of=lambda a: (1.0, "usd"))
    assert plain.replicas == math.ceil(50.0 / (0.8 * plain.layout.requests_per_s))
    calls: list[int] = []

    def strict(layout, cost, t, replicas):  # type: ignore[no-untyped-def]
        calls.append(replicas)
        return ({"tpot": 0.06 if len(calls) < 3 else 0.04}, {"replicas": replicas})

    checked = size_model(
        get_model("llama-3-8b"), traffic, "h100-sxm", slo, cost_of=lambda a: (1.0, "usd"), verify=strict
    )
    assert len(calls) == 3 and checked.replicas > plain.replicas and len(checked.notes) == 2


def test_sizing_picks_the_cheapest_and_offers_a_mixed_fleet() -> None:
    result = run_serve_size(
        models="llama-3-70b:20,llama-3-8b:100",
        slo="ttft_p99_ms=2000,tpot_p99_ms=60",
        accelerators="trn2,trn3,h100-sxm",
        price="trn2=2.0,trn3=4.0",
        simulate=False,
    )
    costs = [o.usd_per_hour for o in result.options]
    assert costs == sorted(costs)  # ranked, best first
    names = [o.name for o in result.options]
    assert set(names) >= {"trn2", "trn3", "h100-sxm"}
    doc = result.to_dict()
    assert doc["best"] == names[0] and doc["options"][0]["usd_per_million_output_tokens"] > 0


def test_unmeetable_slo_is_an_error() -> None:
    with pytest.raises(ValueError, match="slo"):
        run_serve_size(models="llama-3-70b:5", slo="tpot_p99_ms=0.5", accelerators="h100-sxm", simulate=False)


def test_without_prices_fleets_rank_by_power() -> None:
    result = run_serve_size(models="llama-3-8b:10", slo="tpot_p99_ms=50", accelerators="trn2,trn3", simulate=False)
    assert result.ranked_by == "facility_power" and result.notes
