"""The JSON-ready model summary."""

from __future__ import annotations

import json

from rainier.precision import Precision
from rainier.workload import count_params, flops_per_token, get_model, kv_cache_bytes_per_token, summarize


def test_summary_is_json_and_consistent() -> None:
    shape = get_model("frontier-2t-moe")
    summary = summarize(shape, seq_len=8192, kv_precision=Precision.FP8)
    data = summary.to_dict()
    assert json.loads(json.dumps(data)) == data
    counts = count_params(shape)
    assert data["params_total"] == counts.total and isinstance(data["params_total"], int)
    assert data["params_active"] == counts.active
    assert data["params_embedding"] == counts.embeddings_total
    assert data["flops_per_token"]["causal"]["forward_flop"] == flops_per_token(shape, 8192).forward_flop
    full = data["flops_per_token"]["full_attention_matrix"]
    assert full["forward_flop"] > data["flops_per_token"]["causal"]["forward_flop"]
    assert full["forward_flop_without_attention"] == data["flops_per_token"]["causal"]["forward_flop_without_attention"]
    state = data["training_state"]
    assert state["bytes_per_param"]["total"] == 16
    assert sum(g["params"] for g in state["by_group"].values()) == counts.total
    assert state["total_bytes"] == 16 * counts.total
    assert data["kv_cache"]["bytes_per_token"] == kv_cache_bytes_per_token(shape, precision=Precision.FP8)


def test_summary_seq_len_override() -> None:
    shape = get_model("gpt3-175b")
    assert summarize(shape, seq_len=4096).to_dict()["model"]["seq_len"] == 4096
    # learned position table grows with the context
    assert summarize(shape, seq_len=4096).params_total == count_params(shape).total + 2048 * 12288
