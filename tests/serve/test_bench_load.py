"""An in-flight case in the shared schema (``batch: null``, no ``serving.load``) runs the load its words describe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rainier.calibrate.cases import InferenceCase, Trust
from rainier.serve.bench_load import MLPERF_LIMITS, mlperf_benchmark, read_bench_load
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
