"""Fleet sizing under SLOs: SLO grammar, layout choice, capacity arithmetic, simulation check, bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from rainier.api.serve import run_serve_size
from rainier.serve.iteration import pipeline_groups
from rainier.serve.size import (
    MAX_EP_DEVICES,
    PIPELINE_STAGES,
    Slo,
    Traffic,
    _degrees,
    dp_prefill_s,
    layout_label,
    layouts,
    parse_models,
    parse_slo,
    size_model,
)
from rainier.serve.speculative import SpeculativeCost, parse_speculation
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


def test_data_parallel_attention_prompts_stall_every_groups_decodes() -> None:
    """Under data-parallel attention a prompt stops every group's decodes for its own group's pass, shared only with
    the prompts that reach the other groups in the same iteration: a wide-EP layout's TPOT carries those stalls, and
    the fleet sized for it meets its TPOT target in the simulation check (before they were counted, 960 H100s
    sized for a 50 ms TPOT at 200 requests/s simulated 305 ms)."""
    traffic = Traffic(model="frontier-2t-moe", rate_per_s=50.0, input_len=1024, output_len=256)
    slo = Slo(ttft_s=2.0, tpot_s=0.05)
    found, _ = layouts(get_model("frontier-2t-moe"), traffic, "h100-sxm", slo)
    wide = [(layout, cost) for layout, cost in found if layout.dp_attention > 1]
    assert wide
    for layout, cost in wide:
        dp, batch = layout.dp_attention, layout.batch
        one = cost.iteration_s(1024, 0, 0, 1)  # one prompt alone: its group's whole pass, every group waiting
        assert dp_prefill_s(cost, dp, 0.2, 1024, 0) == pytest.approx(one)
        full = cost.iteration_s(dp * 1024, 0, 0, dp) / dp  # a prompt in every group at once: the pass shared dp ways
        assert dp_prefill_s(cost, dp, 10.0 * dp, 1024, 0) == pytest.approx(full) and full < one
        share = dp_prefill_s(cost, dp, batch / 256, 1024, 0)
        decode = cost.iteration_s(0, batch, batch * 1280)
        assert layout.tpot_p99_s == pytest.approx(decode + batch / 256 * share)
        assert layout.tpot_p99_s <= 0.05
    result = run_serve_size(
        models="frontier-2t-moe:200", slo="ttft_p99_ms=2000,tpot_p99_ms=50", accelerators="h100-sxm"
    )
    (fleet,) = result.to_dict()["options"][0]["models"]
    assert fleet["simulated"]["tpot_p99_ms"] <= 50.0 and not any("still over" in n for n in fleet["notes"])


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


def test_speculative_decoding_and_prefix_hits_size_smaller_fleets() -> None:
    """Under a tight TPOT target, EAGLE-3 (3 tokens, 0.74 acceptance: ~2.6 tokens a step) lets each replica run a
    larger batch; a 50% prefix-cache hit shortens every prefill. Replicas draft for one group, so none is pipelined."""
    shape, slo = get_model("llama-3-70b"), Slo(ttft_s=2.0, tpot_s=0.02)
    plain = Traffic(model="llama-3-70b", rate_per_s=20.0, input_len=1024, output_len=256)
    spec = parse_speculation("eagle3:k=3,accept=0.74")
    found, _ = layouts(shape, plain, "h100-sxm", slo, speculative=spec)
    assert found
    for layout, cost in found:
        assert layout.pp == 1 and isinstance(cost, SpeculativeCost)
        assert layout.to_dict()["speculative"] == "eagle3:k=3,accept=0.74" and layout.label.endswith("accept=0.74")

    def usd(_: str) -> tuple[float, str]:
        return (1.0, "usd")

    without = size_model(shape, plain, "h100-sxm", slo, cost_of=usd)
    drafted = size_model(shape, plain, "h100-sxm", slo, cost_of=usd, speculative=spec)
    assert drafted.devices < without.devices
    cached = replace(plain, prefix_hit=0.5)
    assert cached.cached_tokens == 512
    hit = {(la.tp, la.pp): la.prefill_s for la, _ in layouts(shape, cached, "h100-sxm", slo)[0]}
    for layout, _ in layouts(shape, plain, "h100-sxm", slo)[0]:
        assert hit[(layout.tp, layout.pp)] < layout.prefill_s


def test_serve_size_speculative_is_checked_by_simulation_and_bad_values_are_one_line() -> None:
    result = run_serve_size(models="llama-3-8b:20", slo="tpot_p99_ms=30", accelerators="h100-sxm",
                            speculative="eagle3:k=3,accept=0.7", prefix_hit=0.3)  # fmt: skip
    model = result.to_dict()["options"][0]["models"][0]
    assert model["layout"]["speculative"] == "eagle3:k=3,accept=0.7" and model["traffic"]["prefix_hit"] == 0.3
    assert model["simulated"]["requests"] > 0 and model["simulated"]["tpot_p99_ms"] is not None
    for bad, field in (({"speculative": "eagle3:k=0"}, "speculative.k"), ({"prefix_hit": 1.5}, "prefix-hit")):
        with pytest.raises(ValueError, match=field):
            run_serve_size(models="llama-3-8b:20", slo="tpot_p99_ms=30", accelerators="h100-sxm", **bad)  # type: ignore[arg-type]


def test_a_serve_scenario_file_states_speculation_and_prefix_hits() -> None:
    from rainier.api.scenario import load_scenario_text

    text = "kind: serve\nmodels: {llama-3-8b: 5}\nslo: {tpot_p99_ms: 30}\naccelerators: [h100-sxm]\n"
    loaded = load_scenario_text(text + "speculative: eagle3:k=3,accept=0.7\nprefix_hit: 0.25\n")
    assert loaded.value.speculative == "eagle3:k=3,accept=0.7" and loaded.value.prefix_hit == 0.25  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="prefix_hit"):
        load_scenario_text(text + "prefix_hit: fast\n")


def test_trainium_layouts_are_costed_at_neurons_buckets() -> None:
    """A 600-token prompt is prefilled as 1,024 on Trainium; a decode step reads every cache over the bucket of the
    longest context (600 + 200 -> 1,024); a GPU runs the real lengths."""
    shape = replace(get_model("llama-3.1-8b"), seq_len=8192)
    slo = Slo(ttft_s=2.0, tpot_s=0.05)
    short = Traffic(model="llama-3.1-8b", rate_per_s=10.0, input_len=600, output_len=200)
    long = replace(short, input_len=1024)
    found = layouts(shape, short, "trn2", slo)[0]
    trn2 = {(layout.tp, layout.pp, layout.weights): layout for layout, _ in found}
    padded = {(layout.tp, layout.pp, layout.weights): layout for layout, _ in layouts(shape, long, "trn2", slo)[0]}
    assert trn2 and trn2.keys() == padded.keys()
    for key, layout in trn2.items():
        assert layout.prefill_s == padded[key].prefill_s
        assert layout.batch >= padded[key].batch  # 600 + 200 tokens pad to 1,024, 1,024 + 200 to 2,048
    for layout, cost in found:
        group = pipeline_groups(cost)[1]
        assert layout.tpot_p99_s == group.iteration_s(0, layout.batch, layout.batch * 1024)
    gpu = {(layout.tp, layout.pp): layout.prefill_s for layout, _ in layouts(shape, short, "h100-sxm", slo)[0]}
    gpu_long = {(layout.tp, layout.pp): layout.prefill_s for layout, _ in layouts(shape, long, "h100-sxm", slo)[0]}
    assert all(gpu[key] < gpu_long[key] for key in gpu)
