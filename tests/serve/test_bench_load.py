"""An in-flight case in the shared schema (``batch: null``, no ``serving.load``) runs the load its words describe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rainier.calibrate.cases import InferenceCase, Trust
from rainier.serve.bench_load import (
    MLPERF_LIMITS,
    engine_settings_from_words,
    mlperf_benchmark,
    read_bench_load,
)
from rainier.serve.efficiency import ServeEfficiency
from rainier.serve.inflight import Load
from rainier.serve.limits import MAX_BATCH
from rainier.serve.validate import predict_metrics, prepare

ROOT = Path(__file__).resolve().parents[2]
LOAD_KEYS = ("load", "request_rate", "concurrency", "num_requests", "slo")
SCHEMA_KEYS = {"degrees_unit", "tp", "pp", "ep", "batch", "input_len", "output_len", "precision", "speculative",
               "framework"}  # fmt: skip


def _read(case: dict[str, Any], serving: dict[str, Any]) -> dict[str, Any]:
    return read_bench_load(
        serving, case_id=case["id"], group=case["group"], model_name=case["model"]["name"],
        notes=case.get("notes") or "", target_notes=[t.get("note") or "" for t in case["targets"]],
        source=case.get("source") or "",
    ).fields  # fmt: skip


def _in_flight_cases() -> list[dict[str, Any]]:
    out = []
    for name in ("inference-mlperf.yaml", "inference-open.yaml"):
        cases = yaml.safe_load((ROOT / "validation" / name).read_text())["cases"]
        out.extend(c for c in cases if c["serving"].get("batch", 0) is None)
    return out


def test_every_stated_load_is_read_back_from_the_cases_words() -> None:
    """Each in-flight case here states its load; with those fields removed, its id, framework and notes give the
    same load, rate, concurrency and latency limits (a published count of requests where the text has it)."""
    cases = _in_flight_cases()
    assert len(cases) > 80
    for case in cases:
        stated = case["serving"]
        bare = {k: v for k, v in stated.items() if k not in LOAD_KEYS}
        read = _read(case, bare)
        assert read["load"] == stated["load"], case["id"]
        if stated["load"] == "rate":
            assert read["request_rate"] == stated["request_rate"], case["id"]
        assert read.get("concurrency") == stated.get("concurrency"), case["id"]
        assert read.get("slo") == stated.get("slo"), case["id"]
        if "num_requests" in read:
            assert read["num_requests"] == stated.get("num_requests"), case["id"]


@pytest.mark.parametrize(
    ("framework", "expected"),
    [
        ("vLLM 0.10, vllm bench serve --max-concurrency 8 --num-prompts 400", {"load": "concurrency", "concurrency": 8,
                                                                                "num_requests": 400}),
        ("vllm bench serve --request-rate inf", {"load": "offline"}),
        ("SGLang bench_serving, request rate 4", {"load": "rate", "request_rate": 4.0}),
        ("GenAI-Perf, 16 concurrent requests", {"load": "concurrency", "concurrency": 16}),
        ("TensorRT-LLM 0.17, trtllm-bench throughput", {"load": "offline"}),
    ],
)  # fmt: skip
def test_tool_flags(framework: str, expected: dict[str, Any]) -> None:
    case = {"id": "x", "group": "g", "model": {"name": "m"}, "targets": []}
    assert _read(case, {"framework": framework}) == expected


def test_mlperf_scenarios_take_loadgens_limits() -> None:
    server = {"id": "mlperf-v4.0-h100-gptj-server", "group": "MLPerf v4.0", "model": {"name": "GPT-J 6B"},
              "targets": []}  # fmt: skip
    assert _read(server, {}) == {"load": "max_rate", "slo": {"e2e_latency_p99_ms": 20000.0}, "max_batch": MAX_BATCH}
    interactive = {**server, "id": "x-interactive", "model": {"name": "Llama 2 70B"}}
    assert _read(interactive, {"max_batch": 64})["slo"] == MLPERF_LIMITS["llama2-70b-interactive"]
    offline = {**server, "id": "x", "group": "MLPerf Inference v4.0 Offline", "model": {"name": "Llama-2-70b"}}
    assert _read(offline, {"max_batch": 64}) == {"load": "offline"}
    assert mlperf_benchmark("Llama 3.1 405B Instruct") == "llama3_1-405b"
    assert mlperf_benchmark("Mixtral-8x7B") == "mixtral-8x7b"
    assert mlperf_benchmark("Qwen3-32B") is None


def _mlperf_case(serving: dict[str, Any]) -> InferenceCase:
    return InferenceCase(
        id="mlperf-inf4.0-h100x8-llama2-70b-offline", group="MLPerf_Inference_v4.0", trust=Trust.A, source="s",
        model={"name": "Llama 2 70B", "arch": "dense", "layers": 80, "hidden": 8192, "ffn_hidden": 28672, "heads": 64,
               "kv_heads": 8, "vocab": 32000, "seq_len": 4096, "activation": "swiglu"},
        system={"accelerator": "h100-sxm", "count": 8},
        serving={"degrees_unit": "device", "tp": 2, "pp": 1, "batch": None, "precision": "fp8",
                 "framework": "TensorRT-LLM 0.9 (MLPerf Inference NVIDIA submission)", **serving},
        targets=({"metric": "output_tokens_per_s", "value": 24000.0},),
    )  # fmt: skip


def test_a_schema_only_mlperf_case_is_predicted_with_its_assumptions() -> None:
    """No load fields and no lengths: the MLPerf Offline load and the dataset's mean lengths, each recorded."""
    item = prepare(_mlperf_case({"input_len": None, "output_len": None}))
    assert item.in_flight is not None and item.in_flight.load is Load.OFFLINE
    assert item.in_flight.max_batch == MAX_BATCH
    assert item.config.input_len == 222 and 200 < item.config.output_len < 300  # OpenOrca's means
    fields = [a.field for a in item.assumptions]
    assert fields == ["serving.input_len", "serving.output_len", "serving.load"]
    stated = prepare(_mlperf_case({"input_len": 222, "output_len": 219}))
    assert [a.field for a in stated.assumptions] == ["serving.load"]
    rate = predict_metrics(stated, ServeEfficiency())["output_tokens_per_s"]
    assert rate == pytest.approx(predict_metrics(item, ServeEfficiency())["output_tokens_per_s"], rel=0.02)


def test_an_in_flight_latency_noted_as_p99_is_scored_as_the_p99() -> None:
    """The schema keeps medians in ttft_ms unless the note says otherwise; a static batch has no spread to read."""
    targets = (
        {"metric": "ttft_ms", "value": 400.0, "note": "p99 TTFT (LLMPerf)"},
        {"metric": "tpot_ms", "value": 30.0, "note": "p50 (p90 31, p99 33)"},
        {"metric": "output_tokens_per_s", "value": 24000.0},
    )
    case = _mlperf_case({"input_len": 222, "output_len": 219})
    in_flight = prepare(InferenceCase(**{**_fields(case), "targets": targets}))
    assert [m for m, _ in in_flight.targets] == ["ttft_p99_ms", "tpot_ms", "output_tokens_per_s"]
    static = {**_fields(case), "targets": targets, "serving": {**case.serving, "batch": 8, "input_len": 222,
                                                               "output_len": 219}}  # fmt: skip
    assert [m for m, _ in prepare(InferenceCase(**static)).targets] == ["ttft_ms", "tpot_ms", "output_tokens_per_s"]


def _fields(case: InferenceCase) -> dict[str, Any]:
    return {name: getattr(case, name) for name in InferenceCase.__dataclass_fields__}


def _moe_case(serving: dict[str, Any], notes: str = "") -> InferenceCase:
    model = {"name": "deepseek-v3", "arch": "moe", "layers": 61, "hidden": 7168, "ffn_hidden": 18432, "heads": 128,
             "kv_heads": 128, "head_dim": 192, "vocab": 129280, "seq_len": 163840, "activation": "swiglu",
             "num_experts": 256, "top_k": 8, "shared_experts": 1, "expert_ffn_hidden": 2048, "params_b": 671,
             "mla": {"q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
                     "v_head_dim": 128}}  # fmt: skip
    return InferenceCase(
        id="dsv3-decode", group="g", trust=Trust.B, source="s", model=model,
        system={"accelerator": "h200-sxm", "count": 16},
        serving={"degrees_unit": "device", "pp": 1, "batch": 64, "input_len": 1000, "output_len": 1000,
                 "precision": "fp8", "framework": "SGLang", **serving},
        targets=({"metric": "output_tokens_per_s", "value": 1000.0},), notes=notes,
    )  # fmt: skip


def test_the_schemas_wide_expert_layouts_are_read_as_data_parallel_attention() -> None:
    """The shared schema has no field for attention data parallelism: ep over tp ranks implies it, and so do the
    engines' words for it where ep = tp."""
    wide = prepare(_moe_case({"tp": 1, "ep": 16}))
    assert (wide.config.tp, wide.config.dp_attention) == (1, 16)
    assert [a.field for a in wide.assumptions] == ["serving.dp_attention"]
    named = prepare(_moe_case({"tp": 8, "ep": 8}, notes="TensorRT-LLM with enable_attention_dp"))
    assert (named.config.tp, named.config.dp_attention) == (1, 8)
    plain = prepare(_moe_case({"tp": 8, "ep": 8}))
    assert (plain.config.tp, plain.config.dp_attention, plain.assumptions) == (8, 1, ())


MODEL_SCHEMA_KEYS = {"name", "arch", "layers", "hidden", "ffn_hidden", "heads", "kv_heads", "head_dim", "vocab",
                     "seq_len", "activation", "num_experts", "top_k", "shared_experts", "expert_ffn_hidden",
                     "params_b", "mla", "sliding_window", "sliding_window_fraction"}  # fmt: skip


def _as_text(spec: dict[str, Any]) -> str:
    """A speculation mapping written as the shared schema's free text."""
    words = [str(spec["method"]), f"num_speculative_tokens {spec.get('num_tokens')}"]
    if spec.get("draft_model"):
        words.append(f"draft model {spec['draft_model']}")
    if spec.get("acceptance_length") is not None:
        words.append(f"mean acceptance length {spec['acceptance_length']}")
    elif spec.get("acceptance_rate") is not None:
        words.append(f"acceptance rate {100 * spec['acceptance_rate']:g}%")
    return ", ".join(words)


def test_every_case_here_prepares_in_the_shared_schema_alone() -> None:
    """Stripped of every field beyond the shared schema (validation/README.md), each case that prepares with its
    fields still prepares, its speculation read from text, as the held-back cases in that schema must."""
    prepared = 0
    for name in ("inference.yaml", "inference-trn2.yaml", "inference-mlperf.yaml", "inference-open.yaml"):
        for raw in yaml.safe_load((ROOT / "validation" / name).read_text())["cases"]:

            def case(serving: dict[str, Any], model: dict[str, Any], raw: dict[str, Any] = raw) -> InferenceCase:
                return InferenceCase(
                    id=raw["id"], group=raw["group"], trust=Trust(raw["trust"]), source=raw.get("source") or "",
                    model=model, system=raw["system"], serving=serving, targets=tuple(raw["targets"]),
                    notes=raw.get("notes") or "",
                )  # fmt: skip

            try:
                full = prepare(case(raw["serving"], raw["model"]))
            except ValueError:
                continue
            serving = {k: v for k, v in raw["serving"].items() if k in SCHEMA_KEYS}
            if isinstance(serving.get("speculative"), dict):
                serving["speculative"] = _as_text(serving["speculative"])
            bare = prepare(case(serving, {k: v for k, v in raw["model"].items() if k in MODEL_SCHEMA_KEYS}))
            assert (bare.config.speculative is None) == (full.config.speculative is None), raw["id"]
            if full.config.speculative is not None and bare.config.speculative is not None:
                assert bare.config.speculative.tokens_per_step == full.config.speculative.tokens_per_step
            prepared += 1
    assert prepared > 150


def test_engine_settings_are_read_from_the_launch_command_in_the_framework() -> None:
    read = engine_settings_from_words(
        {"framework": "vLLM 0.10, vllm serve --kv-cache-dtype fp8 --max-num-seqs 128 --max-num-batched-tokens 4096"}
    )
    assert read is not None
    assert read.fields == {"kv_cache_dtype": "fp8", "max_batch": 128, "max_num_batched_tokens": 4096}
    stated = {"framework": "TensorRT-LLM, KV cache FP16, max_num_tokens 2048", "kv_cache_precision": "fp8",
              "max_batch": 64}  # fmt: skip
    read = engine_settings_from_words(stated)  # what the fields state wins
    assert read is not None and read.fields == {"max_num_tokens": 2048}
    assert engine_settings_from_words({"framework": "SGLang 0.4"}) is None


def test_an_in_flight_case_that_speculates_is_simulated_with_its_drafter() -> None:
    """A closed loop of EAGLE-3 requests: the simulator drafts and verifies, so tokens come faster than without."""

    def case(speculative: str | None) -> InferenceCase:
        return InferenceCase(
            id="x", group="g", trust=Trust.B, source="s",
            model={"name": "llama-3.1-8b", "arch": "dense", "layers": 32, "hidden": 4096, "ffn_hidden": 14336,
                   "heads": 32, "kv_heads": 8, "vocab": 128256, "seq_len": 131072, "activation": "swiglu"},
            system={"accelerator": "h100-sxm", "count": 1},
            serving={"tp": 1, "batch": None, "input_len": 1000, "output_len": 500, "precision": "bf16",
                     "framework": "SGLang 0.4.9, bench_serving --max-concurrency 4", "speculative": speculative},
            targets=({"metric": "tpot_ms", "value": 5.0},),
        )  # fmt: skip

    plain = prepare(case(None))
    eagle = prepare(case("EAGLE-3, num_speculative_tokens 3, mean acceptance length 3.0"))
    assert eagle.in_flight is not None and not eagle.linearised
    faster = predict_metrics(plain, ServeEfficiency())["tpot_ms"] / predict_metrics(eagle, ServeEfficiency())["tpot_ms"]
    assert 1.5 < faster < 3.0


def test_a_disaggregated_sides_phase_and_moe_features_are_read_from_its_words() -> None:
    framework = "SGLang with PD disaggregation, DP attention, DeepEP, EPLB, two-batch overlap"
    decode = prepare(_moe_case({"tp": 1, "ep": 16, "framework": framework}, notes=""))
    assert decode.decode_only and {a.field for a in decode.assumptions} >= {"serving.phase", "serving"}
    assert decode.cost.two_batch_overlap
    off = engine_settings_from_words({"framework": "SGLang PD disaggregation; two-batch overlap disabled, no EPLB"})
    assert off is not None and off.fields == {"two_batch_overlap": False, "eplb": False}
    plain = prepare(_moe_case({"tp": 1, "ep": 16}))  # no disaggregation named: both phases on one replica
    assert not plain.decode_only
