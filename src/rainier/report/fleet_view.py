"""Tables for ``rainier fleet``: a whole run, a comparison across accelerators, sites, capacity growth."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from rainier.report import format as fmt
from rainier.report.step_view import ALWAYS_SHOWN, PLAN_DEFAULTS


def _plan_text(plan: str) -> str:
    items = dict(part.split("=", 1) for part in plan.split(","))
    return ", ".join(
        f"{k}={v}" for k, v in items.items() if k in ALWAYS_SHOWN or v != str(PLAN_DEFAULTS.get(k, "")).lower()
    )


def _money(value: float | None) -> str:
    if value is None:
        return "n/a"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"${value / scale:,.2f}{suffix}"
    return f"${value:,.2f}"


def _opt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def _band(run: dict[str, Any], key: str, pattern: str) -> str:
    """`` (low-high)`` of a headline when the run carries its interval, else nothing."""
    low, high = run.get(f"{key}_low"), run.get(f"{key}_high")
    if low is None or high is None:
        return ""
    return f" ({pattern.format(low)}-{pattern.format(high)})"


def _money_band(run: dict[str, Any], key: str) -> str:
    low, high = run.get(f"{key}_low"), run.get(f"{key}_high")
    return "" if low is None or high is None else f" ({_money(low)}-{_money(high)})"


def run_tables(run: dict[str, Any], *, sensitivity: bool = False) -> list[Table]:
    """Tables from ``RunPlan.to_dict()``; intervals in brackets (10th-90th percentile) where the run has them."""
    head = Table(
        title=f"training run: {run['model']}, {fmt.count(run['tokens'])} tokens on {run['cluster']}",
        show_header=False,
        title_justify="left",
    )
    head.add_column("quantity", style="bold")
    head.add_column("value")
    head.add_row("plan", _plan_text(run["plan"]))
    head.add_row(
        "batch",
        f"{run['gbs']:,} sequences = {fmt.count(run['tokens_per_step'])} tokens/step, {run['num_steps']:,} steps",
    )
    head.add_row("step time", f"{run['step_time_s']:.3g} s{_band(run, 'step_time_s', '{:.3g}')} (MFU {run['mfu']:.1%})")
    racks = f", {run['racks']:,} racks" if run["racks"] is not None else ""
    head.add_row(
        "hardware",
        f"{run['devices']:,} {run['accelerator']} in {run['servers']:,} servers, "
        f"{run['scale_up_domains']:,} x {run['scale_up_domain']}{racks}",
    )
    head.add_row(
        "time",
        f"{run['wall_clock_days']:,.1f} days{_band(run, 'wall_clock_days', '{:,.1f}')} wall clock = "
        f"{run['compute_days']:,.1f} days of training / "
        f"{run['effective_training_time_ratio']:.1%} effective training time",
    )
    head.add_row("device-hours", fmt.count(run["device_hours"]))
    head.add_row(
        "power",
        f"{_opt(run['it_power_mw'], '{:,.1f}')} MW IT, {_opt(run['facility_power_mw'], '{:,.1f}')} MW facility "
        f"({run['power_basis']})",
    )
    head.add_row(
        "energy",
        f"{_opt(run['energy_mwh'], '{:,.0f}')} MWh{_band(run, 'energy_mwh', '{:,.0f}')}, "
        f"{_opt(run['tokens_per_joule'], '{:.3g}')}{_band(run, 'tokens_per_joule', '{:.3g}')} tokens per joule",
    )
    price = run["price_usd_per_device_hour"]
    head.add_row(
        "cost",
        f"{_money(run['cost_usd'])}{_money_band(run, 'cost_usd')} = {_money(run['usd_per_million_tokens'])} per "
        "million tokens "
        f"(at {_money(price)}/device-hour, {run['price_source']})"
        if price is not None
        else "n/a (no price: pass --price USD_PER_DEVICE_HOUR)",
    )
    for note in run["notes"]:
        head.add_row("note", note)
    uncertainty = run.get("uncertainty")
    if uncertainty is not None:
        head.add_row(
            "intervals",
            "10th-90th percentile: the step model's held-out error for this family and the catalog's estimated "
            "inputs (fleet plan --sensitivity ranks them)",
        )
    tables = [head]
    if sensitivity and uncertainty is not None:
        tables.append(sensitivity_table(uncertainty))
    if run["sites"] is not None:
        tables.extend(sites_tables(run["sites"]))
    return tables


def sensitivity_table(uncertainty: dict[str, Any]) -> Table:
    """The tornado rows: each uncertain input at both ends of its range, ranked by how far it moves the days."""
    table = Table(title="what moves the answer (one input at a time)", title_justify="left")
    for name, justify in (
        ("input", "left"),
        ("range", "left"),
        ("days", "right"),
        ("MWh", "right"),
        ("cost", "right"),
        ("why uncertain", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in uncertainty["sensitivity"]:
        low, high = row["at_low"], row["at_high"]
        table.add_row(
            row["input"],
            row["range"],
            f"{low['wall_clock_days']:,.1f} .. {high['wall_clock_days']:,.1f}",
            "n/a" if low["energy_mwh"] is None else f"{low['energy_mwh']:,.0f} .. {high['energy_mwh']:,.0f}",
            "n/a" if low["cost_usd"] is None else f"{_money(low['cost_usd'])} .. {_money(high['cost_usd'])}",
            row["reason"],
        )
    return table


def sites_tables(analysis: dict[str, Any]) -> list[Table]:
    """Tables from ``SiteAnalysis.to_dict()``."""
    ring = analysis["wan_ring"]
    table = Table(
        title=(
            f"across sites: {' - '.join(ring['order'])} (WAN ring {fmt.si(ring['bw_bytes_per_s'] * 8, 'b/s')} "
            f"bottleneck, {ring['latency_s'] * 1e3:.1f} ms); one site: {analysis['one_site_step_time_s']:.3g} s/step"
        ),
        title_justify="left",
    )
    for column in ("split", "devices", "step s", "tokens/s", "WAN s", "slowdown", "note"):
        table.add_column(column, justify="left" if column in ("split", "note") else "right")
    for split in analysis["splits"]:
        marker = " *" if split["split"] == analysis["best_split"] else ""
        if not split["feasible"]:
            why = f"infeasible: {split['reason']}"
            table.add_row(split["split"], f"{split['devices']:,}", "—", "—", "—", "—", why)
            continue
        table.add_row(
            split["split"] + marker,
            f"{split['devices']:,}",
            f"{split['step_time_s']:.3g}",
            fmt.count(split["tokens_per_s"]),
            f"{split['wan_time_s']:.3g}",
            f"{split['slowdown']:.3f}x",
            split["note"],
        )
    need = analysis["min_wan_tbit_per_s"]
    best = "* best." if analysis["best_split"] is not None else "no split is feasible."
    table.caption = (
        f"{best} dp-across-sites stays within {analysis['target_slowdown']:.2f}x of one site with a WAN ring of "
        + (f">= {need:,.1f} Tb/s per direction." if need is not None else "no bandwidth: latency alone exceeds it.")
        + "".join(f"\n{note}" for note in analysis.get("notes", ()))
    )
    table.caption_justify = "left"
    return [table]


PRICE_KIND_SHORT = {"capacity-block": "CB", "on-demand": "OD", "reserved": "RI", "given": "given"}
# Ratio rows of the Trn3-vs-Trn2 table; "energy_per_token" is the JSON's older name of "tokens_per_joule".
RATIO_LABELS = {
    "compute": "dense FP8 compute",
    "memory_bandwidth": "memory bandwidth",
    "peak_fp8_per_watt": "peak FP8 per watt",
    "tokens_per_joule": "tokens per joule",
    "tokens_per_s_per_ultraserver": "tokens per s per UltraServer",
}


def compare_tables(comparison: dict[str, Any]) -> list[Table]:
    """Tables from ``Comparison.to_dict()``: the footing line, the rows, and the Trn3-vs-Trn2 ratios."""
    title = f"the same run at equal {comparison['at']} to {comparison['base_cluster']}"
    if comparison.get("footing_line"):
        title += "\n" + comparison["footing_line"]
    table = Table(title=title, title_justify="left")
    columns = (
        "accelerator",
        "precision",
        "devices",
        "facility MW",
        "step s",
        "MFU",
        "days",
        "MWh",
        "tokens/J",
        "$/device-h",
        "cost",
        "$/M tokens",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("accelerator", "precision") else "right")
    notes: list[str] = []
    prices: list[str] = []
    for row in comparison["rows"]:
        run = row["run"]
        if row.get("sizing_reason") and row.get("chosen_devices") != row.get("target_devices"):
            notes.append(f"{row['accelerator']}: {row['sizing_reason']}")
        if run is None:
            table.add_row(row["accelerator"], row.get("precision") or "—", *["—"] * (len(columns) - 2))
            notes.append(f"{row['accelerator']}: {row['error']}")
            continue
        price = run["price_usd_per_device_hour"]
        kind = PRICE_KIND_SHORT.get(row.get("price_kind", ""), "")
        price_text = (_money(price) + (f" {kind}" if kind else "")) if price is not None else "n/a"
        if price is not None and row.get("price_note"):
            prices.append(f"{row['accelerator']} {_money(price)} {row['price_kind']} ({row['price_note']})")
        if row["break_even_usd_per_device_hour"] is not None:
            price_text = f"n/a (≤{_money(row['break_even_usd_per_device_hour'])})"
            kinds = {r["accelerator"]: r.get("price_kind", "") for r in comparison["rows"]}
            against = row["break_even_against"]
            kind = f" ({kinds[against]} price)" if kinds.get(against) not in ("", "none", None) else ""
            notes.append(
                f"{row['accelerator']}: no public price; it matches {against}'s cost per token{kind} at "
                f"{_money(row['break_even_usd_per_device_hour'])} per device-hour"
            )
        facility = row.get("provisioned_facility_mw") or run["facility_power_mw"]
        table.add_row(
            f"{row['accelerator']} ({run['cluster']})",
            row.get("precision") or "—",
            f"{run['devices']:,}",
            _opt(facility, "{:,.3g}"),
            f"{run['step_time_s']:.3g}",
            f"{run['mfu']:.1%}",
            f"{run['wall_clock_days']:,.1f}{_band(run, 'wall_clock_days', '{:,.1f}')}",
            _opt(run["energy_mwh"], "{:,.0f}"),
            _opt(run["tokens_per_joule"], "{:.3g}"),
            price_text,
            _money(run["cost_usd"]),
            _money(run["usd_per_million_tokens"]),
        )
    if prices:
        notes.append(
            "prices (CB: EC2 Capacity Block, OD: on-demand; not comparable with each other): " + "; ".join(prices)
        )
    notes.extend(comparison.get("price_claims", []))
    notes.append(
        "facility MW: the cluster each row is sized to; devices, MWh and cost: the devices the job uses (idle ones "
        "draw and cost nothing here)"
    )
    table.caption = "\n".join(notes)
    table.caption_justify = "left"
    tables = [table]
    ratios = comparison["trn3_vs_trn2"]
    if ratios is not None:
        workload = comparison.get("trn3_vs_trn2_workload") or "this model"
        trn = Table(title="Trn3 Gen2 UltraServer vs Trn2 UltraServer, higher is better", title_justify="left")
        trn.add_column("ratio, Trn3 / Trn2")
        trn.add_column("rainier", justify="right")
        trn.add_column("AWS claim", justify="right")
        for name, values in ratios.items():
            if name not in RATIO_LABELS and name == "energy_per_token" and "tokens_per_joule" in ratios:
                continue
            trn.add_row(
                RATIO_LABELS.get(name, name.replace("_", " ")),
                _opt(values["rainier"], "{:.2f}x"),
                _opt(values["aws_claim"], "{:.1f}x"),
            )
        trn.caption = (
            f"workload: {workload}. "
            "compute: dense FP8 peak per UltraServer; memory bandwidth: HBM per UltraServer; peak per watt: all-in "
            "catalog power; tokens per joule and per second: the workload on about 128 UltraServers of each kind, "
            "failure-free (AWS's claim: 4x 'energy efficiency', workload not stated; AIW-trn3)"
        )
        trn.caption_justify = "left"
        tables.append(trn)
    return tables


def grow_tables(plan: dict[str, Any]) -> list[Table]:
    """Tables from ``GrowthPlan.to_dict()``."""
    accelerators = sorted({a for q in plan["quarters"] for a in q["devices"]})
    title = "capacity by quarter"
    if plan["model"]:
        title += f"; runs of {plan['model']} ({fmt.count(plan['tokens_per_run'])} tokens) per quarter"
    table = Table(title=title, title_justify="left")
    table.add_column("quarter")
    table.add_column("facility GW", justify="right")
    for accelerator in accelerators:
        table.add_column(accelerator, justify="right")
    table.add_column("dense FP8 EFLOP/s", justify="right")
    if plan["model"]:
        table.add_column("runs/quarter", justify="right")
    for quarter in plan["quarters"]:
        cells = [quarter["quarter"], f"{quarter['facility_power_gw']:.2f}"]
        cells += [f"{quarter['devices'].get(a, 0):,}" for a in accelerators]
        cells.append(f"{quarter['dense_fp8_eflop_per_s']:,.0f}")
        if plan["model"]:
            cells.append(_opt(quarter["runs_per_quarter"], "{:,.2f}"))
        table.add_row(*cells)
    lines = [f"{a}: {basis}" for a, basis in plan["power_basis"].items()] + list(plan["notes"])
    table.caption = "\n".join(lines)
    table.caption_justify = "left"
    return [table]


def scenario_tables(result: dict[str, Any]) -> list[Table]:
    """One screen for ``ScenarioResult.to_dict()``: the run with failures, then the comparison."""
    scenario, run, goodput = result["scenario"], result["run"], result["goodput"]
    title = scenario["title"] or f"{run['model']} on {run['cluster']}"
    head = Table(title=f"{title}  ({scenario['path']})", show_header=False, title_justify="left")
    head.add_column("quantity", style="bold")
    head.add_column("value")
    head.add_row("model, tokens", f"{run['model']}, {fmt.count(run['tokens'])} tokens")
    racks = f", {run['racks']:,} racks" if run["racks"] is not None else ""
    head.add_row(
        "cluster",
        f"{run['cluster']}: {run['devices']:,} {run['accelerator']}, {run['scale_up_domains']:,} x "
        f"{run['scale_up_domain']}{racks}",
    )
    head.add_row("best plan", _plan_text(run["plan"]))
    head.add_row(
        "step",
        f"{run['step_time_s']:.3g} s{_band(run, 'step_time_s', '{:.3g}')} for {fmt.count(run['tokens_per_step'])} "
        f"tokens (MFU {run['mfu']:.1%}), {run['num_steps']:,} steps",
    )
    head.add_row(
        "time",
        f"{run['wall_clock_days']:,.1f} days{_band(run, 'wall_clock_days', '{:,.1f}')} wall clock "
        f"({run['compute_days']:,.1f} days of training at "
        f"{run['effective_training_time_ratio']:.1%} effective training time)",
    )
    if goodput is not None:
        causes = ", ".join(
            f"{k} {v}" for k, v in sorted(goodput["interruptions_by_cause"].items(), key=lambda i: -i[1])
        )
        head.add_row(
            "failures",
            f"{goodput['interruptions_unexpected']:,} interruptions in {goodput['wall_clock_days']:,.1f} days "
            f"(one per {goodput['job_mtbf_hours'] * 60:,.0f} min: {causes})",
        )
        head.add_row(
            "goodput lost",
            f"{goodput['lost_work_hours']:,.1f} h recomputed, {goodput['checkpoint_hours']:,.1f} h checkpointing "
            f"(every {fmt.duration(goodput['checkpoint_interval_s'])}), {goodput['restart_hours']:,.1f} h "
            f"restarting, {goodput['waiting_for_spares_hours']:,.1f} h waiting for spares",
        )
    head.add_row(
        "power, energy",
        f"{_opt(run['facility_power_mw'], '{:,.0f}')} MW facility ({_opt(run['it_power_mw'], '{:,.0f}')} MW IT), "
        f"{_opt(run['energy_mwh'], '{:,.0f}')} MWh{_band(run, 'energy_mwh', '{:,.0f}')}, "
        f"{_opt(run['tokens_per_joule'], '{:.3g}')}{_band(run, 'tokens_per_joule', '{:.3g}')} tokens/J",
    )
    price = run["price_usd_per_device_hour"]
    head.add_row(
        "cost",
        f"{_money(run['cost_usd'])} ({_money(run['usd_per_million_tokens'])} per million tokens at {_money(price)}"
        f"/device-hour)"
        if price is not None
        else f"{fmt.count(run['device_hours'])} device-hours; no public {run['accelerator']} price (set price:)",
    )
    for note in run["notes"]:
        if not note.startswith("no public price"):
            head.add_row("note", note)
    tables = [head]
    if result["comparison"] is not None:
        tables.extend(compare_tables(result["comparison"]))
    return tables
