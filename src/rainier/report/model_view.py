"""Tables for ``rainier model show`` and ``rainier catalog models``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.table import Table
from rich.text import Text

from rainier.report import format as fmt


def model_tables(summary: dict[str, Any]) -> list[Table]:
    """Overview, FLOPs and training-state tables from ``ModelSummary.to_dict()``."""
    model = summary["model"]
    overview = Table(title=f"model {model['name']}", show_header=False, title_justify="left")
    overview.add_column("quantity", style="bold")
    overview.add_column("value")
    arch = "MoE" if model.get("moe") else "dense"
    attention = model["attention_kind"].upper()
    overview.add_row("architecture", f"{arch}, {attention} attention, {model['mlp_activation']} MLP")
    overview.add_row(
        "shape",
        f"{model['num_layers']} layers, hidden {model['hidden_dim']}, {model['num_heads']} heads "
        f"({model['num_kv_heads']} kv) x {model['head_dim']}, ffn {model['ffn_hidden_dim']}, "
        f"vocab {model['vocab_size']}",
    )
    moe = model.get("moe")
    if moe:
        overview.add_row(
            "experts",
            f"{moe['num_experts']} routed (top-{moe['top_k']}, ffn {moe['expert_ffn_hidden_dim']}), "
            f"{moe['num_shared_experts']} shared, first {moe['first_k_dense_layers']} layers dense",
        )
    overview.add_row("sequence length", f"{summary['seq_len']:,}")
    if model.get("sliding_window"):
        overview.add_row(
            "attention window",
            f"{model['sliding_window']:,} tokens on {model['sliding_window_layers']} of {model['num_layers']} layers",
        )
    overview.add_row("parameters, total", f"{fmt.count(summary['params_total'])} ({summary['params_total']:,})")
    overview.add_row("parameters, active per token", f"{fmt.count(summary['params_active'])}")
    overview.add_row("parameters, embeddings", fmt.count(summary["params_embedding"]))
    kv = summary["kv_cache"]
    overview.add_row(f"KV cache per token ({kv['precision']})", fmt.kib(kv["bytes_per_token"]))

    flops = Table(title="FLOPs per token (matmuls, 2 FLOP per multiply-add)", title_justify="left")
    for column in ("attention counted as", "forward", "backward", "training (fwd+bwd)", "without attention"):
        flops.add_column(column, justify="right")
    for label, key in (("causal (half matrix)", "causal"), ("full matrix (Megatron)", "full_attention_matrix")):
        f = summary["flops_per_token"][key]
        flops.add_row(
            label,
            fmt.si(f["forward_flop"], "FLOP"),
            fmt.si(f["backward_flop"], "FLOP"),
            fmt.si(f["training_flop"], "FLOP"),
            fmt.si(f["forward_flop_without_attention"] + f["backward_flop_without_attention"], "FLOP"),
        )

    state = summary["training_state"]
    per = state["bytes_per_param"]
    groups = Table(
        title=f"training state, mixed-precision Adam ({per['weight']:g}+{per['gradient']:g}+{per['optimizer']:g} "
        "bytes/param, unsharded)",
        title_justify="left",
    )
    for column in ("group", "parameters", "weights", "gradients", "optimizer"):
        groups.add_column(column, justify="right" if column != "group" else "left")
    for name, g in state["by_group"].items():
        if g["params"]:
            groups.add_row(
                name,
                fmt.count(g["params"]),
                fmt.gib(g["weight_bytes"]),
                fmt.gib(g["gradient_bytes"]),
                fmt.gib(g["optimizer_bytes"]),
            )
    groups.add_row(
        Text("total", style="bold"), fmt.count(summary["params_total"]), "", "", fmt.gib(state["total_bytes"]) + " all"
    )
    return [overview, flops, groups]


def models_table(rows: Iterable[dict[str, Any]]) -> Table:
    """One line per named model."""
    table = Table(title="models", title_justify="left")
    for column in ("id", "arch", "layers", "hidden", "heads/kv", "params", "active", "seq len"):
        table.add_column(column, justify="left" if column in ("id", "arch") else "right")
    for r in rows:
        table.add_row(
            r["id"],
            r["arch"],
            str(r["num_layers"]),
            str(r["hidden_dim"]),
            f"{r['num_heads']}/{r['num_kv_heads']}",
            fmt.count(r["params_total"]),
            fmt.count(r["params_active"]),
            f"{r['seq_len']:,}",
        )
    return table


def fit_table(fit: dict[str, Any]) -> Table:
    """Memory floors and the peak-rate bound from ``DeviceFit.to_dict()``."""
    table = Table(
        title=f"on {fit['accelerator']} ({fmt.gib(fit['hbm_bytes'])} HBM per device): floors, not estimates",
        show_header=False,
        title_justify="left",
    )
    table.add_column("quantity", style="bold")
    table.add_column("value")
    table.add_row(
        "devices to hold bf16 weights", f"{fit['min_devices_for_weights']:,}  ({fmt.gib(fit['weight_bytes'])})"
    )
    table.add_row(
        "devices to hold the Adam training state (ZeRO-3)",
        f"{fit['min_devices_for_training_state']:,}  ({fmt.gib(fit['training_state_bytes'])}, before activations)",
    )
    table.add_row(
        f"training tokens/s per device at 100% of {fit['precision']} peak",
        f"{fit['max_training_tokens_per_s_per_device']:,.0f}  ({fmt.si(fit['peak_flop_per_s'], 'FLOP/s')} / "
        f"{fmt.si(fit['training_flop_per_token'], 'FLOP')} per token)",
    )
    return table
