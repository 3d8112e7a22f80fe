"""Tables for ``rainier train search`` and ``rainier train scale``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from rainier.report import format as fmt

PLAN_KEYS = (
    "tp", "pp", "dp", "cp", "ep", "vpp", "mbs", "zero", "shard", "recompute", "precision", "schedule", "offload",
)  # fmt: skip


def _plan(plan: dict[str, Any]) -> str:
    defaults = {"cp": 1, "ep": 1, "vpp": 1, "shard": None, "schedule": "1f1b", "precision": "bf16", "offload": "none"}
    parts = [f"{k}={plan[k]}" for k in PLAN_KEYS if k in plan and defaults.get(k) != plan[k]]
    if plan.get("sp"):
        parts.append("sp")
    return ",".join(parts)


def search_tables(doc: dict[str, Any]) -> list[Table]:
    """Summary, top plans with their breakdowns, and rejection counts, from ``SearchResult.to_dict()``."""
    head = Table(
        title=f"plan search: {doc['model']} on {doc['cluster']} ({doc['num_devices']:,} devices), "
        f"gbs {doc['gbs']:,} x {doc['seq_len']:,} tokens",
        show_header=False,
        title_justify="left",
    )
    head.add_column("quantity", style="bold")
    head.add_column("value")
    head.add_row("candidates", f"{doc['candidates']:,} enumerated, {doc['evaluated']:,} timed by the cost model")
    head.add_row("speed", f"{doc['plans_per_s']:,.0f} plans/s ({doc['elapsed_s']:.2f} s)")
    rejected = ", ".join(f"{k}: {v:,}" for k, v in sorted(doc["infeasible"].items())) or "none"
    head.add_row("infeasible", rejected)
    head.add_row("objective", doc["objective"])
    if doc.get("batch_rule"):
        head.add_row("batch", doc["batch_rule"])
    for note in doc.get("notes", []):
        head.add_row("note", note)

    top = Table(title="best plans (parts of the step in seconds)", title_justify="left")
    for column in (
        "#",
        "plan",
        "step s",
        "gbs",
        "tokens/s/dev",
        "MFU",
        "mem GiB",
        "compute s",
        "recomp s",
        "tp s",
        "cp s",
        "ep s",
        "dp exp s",
        "pp s",
        "bubble s",
        "offload s",
        "$/M tok",
    ):
        top.add_column(column, justify="left" if column == "plan" else "right")
    exact: list[str] = []
    for rank, (row, equal) in enumerate(merged_ties(doc["top"]), start=1):
        b = row["breakdown_s"]
        dollars = row["objective"]["dollars_per_million_tokens"]
        top.add_row(
            str(rank),
            _plan(row["plan"]) + (f" (+{equal} equal)" if equal else ""),
            f"{row['step_time_s']:.4g}",
            f"{row['gbs']:,}",
            f"{row['tokens_per_s_per_device']:,.0f}",
            f"{row['mfu']:.1%}",
            f"{row['memory_bytes']['total'] / 2**30:.1f}",
            f"{b['compute']:.3g}",
            f"{b['recompute']:.3g}",
            f"{b['tp_comm']:.3g}",
            f"{b['cp_comm']:.3g}",
            f"{b['ep_comm']:.3g}",
            f"{b['dp_comm_exposed']:.3g}",
            f"{b['pp_comm']:.3g}",
            f"{b['pipeline_bubble']:.3g}",
            f"{b.get('offload', 0.0):.3g}",
            "—" if dollars is None else f"{dollars:.3g}",
        )
        if row.get("plan_text"):
            exact.append(f"#{rank}: {row['plan_text']}")
    if exact:
        top.caption = "as --plan (exact, paste back):\n" + "\n".join(exact)
        top.caption_justify = "left"
    return [head, top]


def merged_ties(rows: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Plans whose step, batch and memory are the same (to 1e-9) as one row: the simplest (shortest plan text,
    no warnings first), with how many equal ones it stands for."""
    groups: list[list[dict[str, Any]]] = []
    for row in rows:
        last = groups[-1][0] if groups else None
        same = (
            last is not None
            and abs(row["step_time_s"] - last["step_time_s"]) <= 1e-9 * last["step_time_s"]
            and row["gbs"] == last["gbs"]
            and abs(row["memory_bytes"]["total"] - last["memory_bytes"]["total"])
            <= 1e-9 * last["memory_bytes"]["total"]
        )
        if same:
            groups[-1].append(row)
        else:
            groups.append([row])

    def simplicity(row: dict[str, Any]) -> tuple[int, int]:
        return (len(row.get("warnings") or ()), len(_plan(row["plan"])))

    return [(min(group, key=simplicity), len(group) - 1) for group in groups]


def scale_table(title: str, points: Sequence[dict[str, Any]], front: Sequence[int] | None = None) -> Table:
    """One row per cluster size: best plan, step time, throughput, MFU, cost and energy per token."""
    table = Table(title=title, title_justify="left")
    for column in ("devices", "gbs", "best plan", "step s", "tokens/s", "MFU", "$/M tokens", "J/token", "front"):
        table.add_column(column, justify="left" if column in ("best plan", "front") else "right")
    on_front = set(front or ())
    for i, p in enumerate(points):
        if "error" in p:
            table.add_row(
                f"{p['num_devices']:,}", f"{p['gbs']:,}", Text(str(p["error"]), style="red"), "", "", "", "", "", ""
            )
            continue
        dollars = p["dollars_per_million_tokens"]
        joules = p["joules_per_token"]
        table.add_row(
            f"{p['num_devices']:,}",
            f"{p['gbs']:,}",
            _plan(p["plan"]),
            f"{p['step_time_s']:.4g}",
            fmt.count(p["tokens_per_s"]),
            f"{p['mfu']:.1%}",
            "—" if dollars is None else f"{dollars:.3g}",
            "—" if joules is None else f"{joules:.3g}",
            "*" if i in on_front else "",
        )
    return table


def verification_table(doc: dict[str, Any]) -> Table:
    """``train search --verify K``: the best plans in simulated order, with their rank by the estimate."""
    changed = "; ".join(doc["moves"]) if doc["order_changed"] else "the simulation keeps the search's order"
    table = Table(title=f"verified by simulation: {changed}", title_justify="left")
    for column in ("sim #", "est #", "plan", "estimate (s)", "simulated (s)", "difference", "cause"):
        table.add_column(column, justify="left" if column in ("plan", "cause") else "right")
    for plan in doc["plans"]:
        table.add_row(
            str(plan["simulated_rank"]),
            str(plan["estimate_rank"]),
            plan["plan_text"],
            f"{plan['estimate_step_time_s']:.4g}",
            f"{plan['simulated_step_time_s']:.4g}",
            f"{100 * plan['difference']:+.2f}%",
            plan["cause"],
        )
    return table
