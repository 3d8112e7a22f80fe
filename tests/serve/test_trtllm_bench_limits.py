"""trtllm-bench's own engine limits for a case whose command states no max_batch_size or max_num_tokens."""

from __future__ import annotations

import pytest

from rainier.errors import InputError
from rainier.hardware.registry import get_accelerator
from rainier.serve.cost import WeightFormat
from rainier.serve.inflight import BenchModel, trtllm_bench_limits
from rainier.serve.validate import ServeConfig, _bench_limits
from rainier.workload.registry import get_model

GIB = 2**30


def _model(**changes: object) -> BenchModel:
    base = {
        "params": 8.0e9, "weights": "fp8", "kv": "fp8", "layers": 32, "kv_heads": 8, "head_dim": 128, "tp": 1,
        "pp": 1, "device_bytes": 80 * GIB,
    }  # fmt: skip
    base.update(changes)
    return BenchModel(**base)  # type: ignore[arg-type]


def test_a_small_model_with_room_for_thousands_of_requests_hits_the_caps() -> None:
    # (80 - 8e9/2^30) GiB x 0.95 over 64 KiB x 256 tokens: ~4,400 requests, capped at 4096; tokens 2 x 4096
    assert trtllm_bench_limits(_model(), 128, 128) == (4096, 8192)


def test_a_large_model_on_long_requests_gets_a_small_batch_and_the_token_floor() -> None:
    model = _model(params=70.6e9, layers=80, tp=4)
    free = (4 * 80 - 70.6e9 / GIB) * 0.95
    requests = free / (2 * 80 * 8 * 128 / GIB * 4096)
    assert 384 < requests < 512  # rounded up to a multiple of 128; tokens 2 x 386 under the 2048 floor
    assert trtllm_bench_limits(model, 2048, 2048) == (512, 2048)


def test_sixteen_bit_weights_and_cache_halve_the_room_and_pipeline_stages_split_the_batch() -> None:
    fp8 = trtllm_bench_limits(_model(params=70.6e9, layers=80, tp=8), 1024, 1024)
    bf16 = trtllm_bench_limits(_model(params=70.6e9, layers=80, tp=8, weights="bf16", kv="bf16"), 1024, 1024)
    assert bf16[0] < fp8[0]
    staged = trtllm_bench_limits(_model(params=70.6e9, layers=80, tp=4, pp=2), 1024, 1024)
    assert staged[0] <= fp8[0] // 2 + 128


def test_too_little_memory_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"system\.count"):
        trtllm_bench_limits(_model(params=400e9, layers=126), 128, 128)


def _config(**changes: object) -> ServeConfig:
    base = {"tp": 1, "pp": 1, "batch": 1, "input_len": 128, "output_len": 128, "weights": WeightFormat.FP8}
    base.update(changes)
    return ServeConfig(**base)  # type: ignore[arg-type]


def test_a_trtllm_bench_case_without_limits_gets_the_heuristics_and_others_keep_theirs() -> None:
    h100 = get_accelerator("h100-sxm").hbm_bytes
    shape = get_model("llama-3.1-8b")
    bench = {"framework": "TensorRT-LLM v0.20, trtllm-bench throughput", "max_batch": None}
    filled = _bench_limits(bench, shape, _config(), h100)
    assert filled["max_batch"] == 4096 and filled["max_num_tokens"] >= 8192
    stated = _bench_limits({**bench, "max_num_tokens": 2048}, shape, _config(), h100)
    assert stated["max_batch"] is None and stated["max_num_tokens"] == 2048
    other = _bench_limits({"framework": "vLLM 0.9 bench serve"}, shape, _config(), h100)
    assert "max_num_tokens" not in other
    mla = _bench_limits(bench, get_model("deepseek-v3"), _config(tp=8), h100)
    assert mla["max_batch"] is None


def test_a_simulation_takes_the_engines_token_budget() -> None:
    """``serve simulate --token-budget``: the chunk size with chunked prefill, else the whole-prompt budget."""
    from rainier.api.serve_sim import simulation_scenario

    common = {"model": "llama-3.1-8b", "accelerator": "h100-sxm", "count": 1, "rate": 5.0, "duration": 1.0}
    whole = simulation_scenario(**common, token_budget=8192)  # type: ignore[arg-type]
    assert whole.token_budget == 8192 and not whole.chunked_prefill
    chunked = simulation_scenario(**common, token_budget=2048, chunked_prefill=True)  # type: ignore[arg-type]
    assert chunked.chunk_tokens == 2048 and chunked.token_budget is None
    with pytest.raises(InputError, match="token_budget"):
        simulation_scenario(**common, token_budget=0)  # type: ignore[arg-type]
