"""Tables for ``rainier train estimate``: headline, where the time goes, memory, placement."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from rainier.parallel.plan import OPTION_DEFAULTS
from rainier.report import format as fmt

PLAN_DEFAULTS = {
    **OPTION_DEFAULTS,
    "cp": 1,
    "ep": 1,
    "vpp": 1,
    "sp": False,
    "unit": "device",
    "lora": False,
    "schedule": "1f1b",
}
ALWAYS_SHOWN = ("tp", "pp", "dp", "mbs", "gbs", "zero", "recompute", "precision")

BREAKDOWN_LABELS = {
    "compute": "compute (forward + backward)",
    "recompute": "activation recompute",
    "tp_comm": "tensor-parallel collectives",
    "cp_comm": "context-parallel exchange (exposed)",
    "ep_comm": "expert all-to-all",
    "dp_comm_exposed": "data-parallel gradients (exposed)",
    "pp_comm": "pipeline send/recv",
    "link_contention": "link contention (transfers sharing links)",
    "pipeline_bubble": "pipeline bubble",
    "optimizer": "optimizer step",
    "other": "fixed per-step overhead",
    "offload": "host offload (link time not hidden)",
}


def step_tables(est: dict[str, Any]) -> list[Table]:
    """Tables from ``StepEstimate.to_dict()``."""
    plan = est["plan"]
    head = Table(
        title=f"train step: {est['model']} on {est['cluster']} ({est['num_devices']:,} x {est['accelerator']})",
        show_header=False,
        title_justify="left",
    )
    head.add_column("quantity", style="bold")
    head.add_column("value")
    plan_text = ", ".join(f"{k}={v}" for k, v in plan.items() if k in ALWAYS_SHOWN or v != PLAN_DEFAULTS.get(k))
    head.add_row("plan", plan_text)
    head.add_row("step time", f"{est['step_time_s']:.4g} s")
    head.add_row(
        "throughput", f"{fmt.count(est['tokens_per_s'])} tokens/s ({est['tokens_per_s_per_device']:,.1f} per device)"
    )
    head.add_row(
        "model FLOP/s per device",
        f"{fmt.si(est['model_flops_per_s_per_device'], 'FLOP/s')} "
        f"(MFU {est['mfu']:.1%}, HFU {est['hfu']:.1%} of {fmt.si(est['peak_flop_per_s_per_device'], 'FLOP/s')})",
    )
    mem = est["memory_bytes"]
    verdict = Text("fits", style="green") if est["fits"] else Text("does NOT fit", style="bold red")
    head.add_row("memory per rank", Text.assemble(f"{fmt.gib(mem['total'])} of {fmt.gib(mem['capacity'])}: ", verdict))
    head.add_row("efficiency set", est["efficiency"])
    for warning in est["warnings"]:
        head.add_row(Text("warning", style="yellow"), warning)

    breakdown = Table(title="where the step time goes", title_justify="left")
    breakdown.add_column("part")
    breakdown.add_column("seconds", justify="right")
    breakdown.add_column("share", justify="right")
    step = est["step_time_s"]
    for key, value in est["breakdown_s"].items():
        if value > 0:
            breakdown.add_row(BREAKDOWN_LABELS.get(key, key), f"{value:.4g}", f"{value / step:.1%}")

    memory = Table(title="memory per rank (first pipeline stage)", title_justify="left")
    memory.add_column("kind")
    memory.add_column("bytes", justify="right")
    for key in ("weights", "gradients", "optimizer", "activations", "buffers", "total", "capacity"):
        memory.add_row(key, fmt.gib(mem[key]))
    if mem.get("host"):
        memory.add_row("offloaded to host", f"{fmt.gib(mem['host'])} of {fmt.gib(mem['host_capacity'])}")

    placement = Table(title="placement of parallel axes (innermost level first)", title_justify="left")
    for column in ("axis", "degree", "levels (ranks x bandwidth per direction, latency)"):
        placement.add_column(column)
    for axis in est["placement"]:
        if axis["degree"] > 1:
            levels = "  ->  ".join(
                f"{lv['name']}: {lv['size']} x {fmt.si(lv['bw_bytes_per_s'], 'B/s')}, {lv['latency_s'] * 1e6:.1f} us"
                for lv in axis["levels"]
            )
            placement.add_row(axis["axis"], str(axis["degree"]), levels)
    return [head, breakdown, memory, placement]
