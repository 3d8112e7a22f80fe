"""A client that re-tokenises the returned text (LLMPerf) reports output rates in its own tokens."""

from __future__ import annotations

import pytest

from rainier.calibrate.cases import InferenceCase, Trust
from rainier.errors import InputError
from rainier.serve.efficiency import ServeEfficiency
from rainier.serve.validate import predict_metrics, prepare


def _case(**serving: object) -> InferenceCase:
    return InferenceCase(
        id="x", group="g", trust=Trust.B, source="s",
        model={"name": "llama-3.1-8b", "arch": "dense", "layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 8,
               "vocab": 128256, "seq_len": 8192},
        system={"accelerator": "h100-sxm", "count": 1},
        serving={"tp": 1, "batch": 1, "input_len": 128, "output_len": 512, "precision": "bf16",
                 "framework": "vLLM 0.9.1, LLMPerf", **serving},
        targets=({"metric": "output_tokens_per_s", "value": 100.0}, {"metric": "e2e_latency_ms", "value": 5000.0}),
        notes="",
    )  # fmt: skip


def test_counted_output_tokens_scale_the_rates_not_the_latencies() -> None:
    eff = ServeEfficiency()
    plain = predict_metrics(prepare(_case()), eff)
    counted = predict_metrics(prepare(_case(counted_output_len=558)), eff)
    assert counted["output_tokens_per_s"] == pytest.approx(plain["output_tokens_per_s"] * 558 / 512)
    assert counted["e2e_latency_ms"] == plain["e2e_latency_ms"]
    with pytest.raises(InputError, match="counted_output_len"):
        prepare(_case(counted_output_len=-3))
