"""Tables for ``rainier train simulate``: the simulated step beside the estimate, critical path, streams, links."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from rainier.report.step_view import BREAKDOWN_LABELS

PATH_LABELS = {
    "forward": "forward compute",
    "backward": "backward compute",
    "weight": "weight-gradient compute",
    "recompute": "activation recompute",
    "optimizer": "optimizer step",
    "tp": "tensor-parallel collectives",
    "ep": "expert all-to-all",
    "cp": "context-parallel exchange",
    "pp": "pipeline sends",
    "dp": "data-parallel gradients / gathers",
    "fsdp": "FSDP gathers / reduce-scatters",
    "wait": "waiting",
    "other": "fixed per-step overhead",
}


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    return table


def simulate_tables(doc: dict[str, Any]) -> list[Table]:
    """Tables from ``SimulatedStep.to_dict()``."""
    head = Table(
        title=f"simulated train step: {doc['model']} on {doc['cluster']}", show_header=False, title_justify="left"
    )
    head.add_column("quantity", style="bold")
    head.add_column("value")
    head.add_row("plan", doc["plan"])
    head.add_row("step time (simulated)", f"{doc['step_time_s']:.4g} s")
    head.add_row("step time (train estimate)", f"{doc['estimate_step_time_s']:.4g} s")
    head.add_row("difference", f"{100 * doc['difference']:+.2f}%: {doc['cause']}")
    head.add_row(
        "simulated",
        f"{doc['rank_classes']} rank classes x {doc['ranks_per_class']:,} ranks each; "
        f"{doc['operations']:,} operations, {doc['flows']:,} flows",
    )
    head.add_row("links over capacity", f"{doc['contended_s']:.4g} s (transfers slowed {doc['slowed_s']:.4g} s in all)")
    breakdown = _table("where the last rank's time goes", "part", "simulated (s)", "estimate (s)")
    for key, label in BREAKDOWN_LABELS.items():
        sim, est = doc["breakdown"].get(key, 0.0), doc["estimate_breakdown"].get(key, 0.0)
        if sim or est:
            breakdown.add_row(label, f"{max(sim, 0.0):.4g}", f"{max(est, 0.0):.4g}")
    path = _table("critical path", "category", "seconds", "share")
    total = sum(doc["critical_path_s"].values()) or 1.0
    for key, seconds in sorted(doc["critical_path_s"].items(), key=lambda kv: -kv[1]):
        path.add_row(PATH_LABELS.get(key, key), f"{seconds:.4g}", f"{100 * seconds / total:.1f}%")
    streams = _table("busy fraction of each stream (per rank class)", "rank", "compute", "communication")
    for rank, lanes in doc["stream_busy"].items():
        streams.add_row(
            rank, f"{100 * lanes.get('compute', 0.0):.1f}%", f"{100 * lanes.get('communication', 0.0):.1f}%"
        )
    links = _table("busiest links", "rank", "link class", "utilisation")
    for use in doc["busiest_links"]:
        links.add_row(str(use["rank"]), use["link"], f"{100 * use['utilisation']:.1f}%")
    return [head, breakdown, path, streams, links]
