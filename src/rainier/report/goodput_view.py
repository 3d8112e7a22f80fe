"""Tables for ``rainier fleet goodput``: headline, interruptions by cause, where the wall clock goes, checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

from rainier.fleet.goodput import GoodputResult
from rainier.report import format as fmt

CAUSE_LABELS = {
    "accelerator": "accelerator (GPU, SRAM, system processor, SDC, thermal)",
    "hbm": "HBM",
    "host": "host (maintenance, SSD, PSU, chassis, CPU, memory)",
    "nic": "NIC",
    "switch_link": "network switch / cable",
    "software": "software (bugs, dependencies, NCCL timeouts)",
}
BUDGET_ROWS = (
    ("productive training", "productive_hours"),
    ("lost work (since last checkpoint)", "lost_work_hours"),
    ("writing checkpoints", "checkpoint_hours"),
    ("restarting + restoring", "restart_hours"),
    ("waiting for spare servers", "waiting_for_spares_hours"),
)
HOURS_PER_DAY = 24.0


def goodput_tables(goodput: GoodputResult | Mapping[str, Any]) -> list[Table]:
    """Tables from a :class:`GoodputResult` or its ``to_dict()``."""
    result = goodput.to_dict() if isinstance(goodput, GoodputResult) else dict(goodput)
    horizon = (
        f"{result['days']:g} days window"
        if result.get("days") is not None
        else f"{result['work_hours']:,.0f} productive hours"
    )
    head = Table(
        title=f"goodput: {result['num_devices']:,} devices ({result['num_servers']:,} servers + "
        f"{result['spare_servers']:,} spares), {horizon}, seed {result['seed']}",
        show_header=False,
        title_justify="left",
    )
    head.add_column("quantity", style="bold")
    head.add_column("value")
    head.add_row(
        "effective training time",
        f"{result['effective_training_time_ratio']:.1%} "
        f"(analytic, Daly 2006: {result['analytic_effective_training_time_ratio']:.1%})",
    )
    head.add_row(
        "wall clock",
        f"{result['wall_clock_days']:,.2f} days ({result['productive_days']:,.2f} days productive)",
    )
    head.add_row(
        "unexpected interruptions",
        f"{result['interruptions_unexpected']:,} (expected {result['expected_interruptions']:,.0f}; "
        f"{result['interruptions_hardware']:,} took a server out)",
    )
    head.add_row("job MTBF", fmt.duration(result["job_mtbf_hours"] * 3600))
    head.add_row("failure model", result["failure_model"])
    head.add_row("most servers in repair at once", f"{result['max_servers_in_repair']:,}")

    causes = Table(title="interruptions by cause", title_justify="left")
    causes.add_column("component")
    causes.add_column("count", justify="right")
    causes.add_column("share", justify="right")
    total = result["interruptions_unexpected"]
    for key, count in result["interruptions_by_cause"].items():
        share = f"{count / total:.1%}" if total else "—"
        causes.add_row(CAUSE_LABELS.get(key, key), f"{count:,}", share)
    causes.add_row(Text("total", style="bold"), Text(f"{total:,}", style="bold"), "100.0%" if total else "—")

    budget = Table(title="where the wall clock goes", title_justify="left")
    budget.add_column("part")
    budget.add_column("hours", justify="right")
    budget.add_column("share", justify="right")
    wall_h = result["wall_clock_days"] * HOURS_PER_DAY
    values = dict(result, productive_hours=result["productive_days"] * HOURS_PER_DAY)
    for label, key in BUDGET_ROWS:
        hours = values[key]
        budget.add_row(label, f"{hours:,.1f}", f"{hours / wall_h:.1%}" if wall_h else "—")
    budget.add_row(Text("wall clock", style="bold"), Text(f"{wall_h:,.1f}", style="bold"), "100.0%")

    checkpoint = Table(title="checkpoints and recovery", show_header=False, title_justify="left")
    checkpoint.add_column("quantity", style="bold")
    checkpoint.add_column("value")
    checkpoint.add_row("checkpoint size", fmt.gib(result["checkpoint_bytes"]))
    write, restore = fmt.duration(result["checkpoint_write_s"]), fmt.duration(result["checkpoint_restore_s"])
    checkpoint.add_row("write / restore", f"{write} / {restore}")
    checkpoint.add_row("interval used (compute between checkpoints)", fmt.duration(result["checkpoint_interval_s"]))
    checkpoint.add_row(
        "optimum: Young 1974 / Daly 2006",
        f"{fmt.duration(result['young_interval_s'])} / {fmt.duration(result['daly_interval_s'])}",
    )
    checkpoint.add_row("checkpoint tier", _TIERS.get(result.get("checkpoint_tier", "storage"), "storage"))
    checkpoint.add_row("restart (before restore)", fmt.duration(result["restart_time_s"]))
    parts = result.get("restart_parts")
    if parts:
        kept = [(label, parts[key]) for key, label in _RESTART_PARTS if parts.get(key)]
        mode = "hot spares, in-place restart" if result.get("hot_spares") else "cold restart"
        checkpoint.add_row(f"  {mode}", " + ".join(f"{label} {fmt.duration(value)}" for label, value in kept))
    return [head, causes, budget, checkpoint]


_TIERS = {"storage": "shared storage", "peer-memory": "peer host memory (in-memory checkpoints)"}
_RESTART_PARTS = (
    ("detection_s", "detect"),
    ("reschedule_s", "reschedule"),
    ("process_start_s", "start"),
    ("swap_in_s", "swap in"),
    ("communicator_init_s", "communicators"),
)
