"""Tables for ``rainier serve simulate``: headline, latency percentiles, throughput and utilisation, warnings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table

from rainier.serve.simulate import ServeResult

LATENCY_ROWS = (
    ("time to first token (TTFT)", "ttft_ms"),
    ("time per output token (TPOT)", "tpot_ms"),
    ("end to end", "e2e_ms"),
    ("queueing", "queue_ms"),
    ("KV transfer (prefill -> decode)", "kv_transfer_ms"),
)
STAT_COLUMNS = ("p50", "p90", "p99", "mean")


def _ms(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.1f} s"
    if value >= 100:
        return f"{value:,.0f} ms"
    return f"{value:,.2f} ms"


def serve_sim_tables(serving: ServeResult | Mapping[str, Any]) -> list[Table]:
    """Tables from a :class:`ServeResult` or its ``to_dict()``."""
    result = serving.to_dict() if isinstance(serving, ServeResult) else dict(serving)
    chunked = " + chunked prefill" if result["chunked_prefill"] else ""
    balance = result.get("adp_balance")
    if balance:
        chunked += f" + ADP balance {balance['batching_wait_iters']}/{balance['timeout_iters']} iterations"
    if result.get("prefill_replicas"):
        layout = f"{result['prefill_replicas']:,} prefill + {result['replicas']:,} decode replicas"
    else:
        layout = f"{result['replicas']:,} replicas"
    head = Table(
        title=f"serving simulation: {layout}, {result['scheduler']} batching{chunked}, seed {result['seed']}",
        show_header=False,
        title_justify="left",
    )
    head.add_column("quantity", style="bold")
    head.add_column("value")
    head.add_row(
        "requests",
        f"{result['requests_completed']:,} completed of {result['requests_submitted']:,} "
        f"({result['rejected']:,} rejected: too long for the KV cache)",
    )
    head.add_row(
        "simulated time",
        f"{result['duration_s']:,.2f} s (arrivals over {result['arrival_window_s']:,.2f} s)",
    )

    latency = Table(title="latency per request", title_justify="left")
    latency.add_column("metric")
    for column in STAT_COLUMNS:
        latency.add_column(column, justify="right")
    for label, key in LATENCY_ROWS:
        stats = result.get(key)
        if stats is None:
            if key != "kv_transfer_ms":
                latency.add_row(label, *("—" for _ in STAT_COLUMNS))
            continue
        latency.add_row(label, *(_ms(stats[column]) for column in STAT_COLUMNS))

    load = Table(title="throughput and utilisation", show_header=False, title_justify="left")
    load.add_column("quantity", style="bold")
    load.add_column("value", justify="right")
    load.add_row("requests per second", f"{result['requests_per_s']:,.2f}")
    load.add_row("output tokens per second", f"{result['output_tokens_per_s']:,.0f}")
    load.add_row("total tokens per second (input + output)", f"{result['total_tokens_per_s']:,.0f}")
    load.add_row("replica utilisation (busy fraction)", f"{result['utilisation']:.1%}")
    if result.get("prefill_utilisation") is not None:
        load.add_row("prefill pool utilisation", f"{result['prefill_utilisation']:.1%}")
    mean_batch = result.get("mean_batch")
    load.add_row("mean batch (sequences per iteration)", "—" if mean_batch is None else f"{mean_batch:,.1f}")
    load.add_row("engine iterations", f"{result['iterations']:,}")
    load.add_row("preemptions (KV cache full, recomputed)", f"{result['preemptions']:,}")
    tables = [head, latency, load]

    if result.get("warnings"):
        notes = Table(title="warnings", show_header=False, title_justify="left")
        notes.add_column("warning", style="yellow")
        for warning in result["warnings"]:
            notes.add_row(warning)
        tables.append(notes)
    return tables
