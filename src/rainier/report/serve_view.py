"""Tables for ``rainier serve estimate`` and for the serving fit of ``rainier calibrate inference.yaml``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

from rainier.report import format as fmt
from rainier.report.calibrate_view import summary_table
from rainier.serve.size import layout_label


def _band(values: dict[str, Any], key: str, pattern: str) -> str:
    """`` (low-high)`` of a quantity that carries its interval, else nothing."""
    low, high = values.get(f"{key}_low"), values.get(f"{key}_high")
    return "" if low is None or high is None else f" ({pattern.format(low)}-{pattern.format(high)})"


def serve_tables(est: dict[str, Any]) -> list[Table]:
    """Tables from ``ServeEstimate.to_dict()``."""
    c = est["config"]
    head = Table(
        title=(
            f"serving: {est['model']} on {est['cluster']} ({est['replicas']} replica(s) of {est['replica_devices']} x "
            f"{est['accelerator']})"
        ),
        show_header=False,
        title_justify="left",
    )
    head.add_column("quantity", style="bold")
    head.add_column("value")
    unit = " NeuronCores" if c["unit"] == "core" else ""
    dp = c.get("dp_attention") or 1
    groups = f", dp_attention={dp}" if dp > 1 else ""  # attention groups of tp ranks sharing the experts
    head.add_row(
        "configuration",
        f"tp={c['tp']}{unit}, pp={c['pp']}, ep={c['ep']}{groups}, batch={c['batch']}, input {c['input_len']} / output "
        f"{c['output_len']} tokens, {c['precision']}"
        + (f", KV cache {c['kv_precision']}" if "kv_precision" in c else ""),
    )
    if c.get("prefix_hit"):
        head.add_row("prefix cache", f"{c['prefix_hit']:.0%} of each prompt cached: its prefill computes the rest")
    spec = c.get("speculative")
    if spec:
        drafter = f", draft model {spec['draft_model']}" if spec.get("draft_model") else ""
        head.add_row(
            "speculative decoding",
            f"{spec['method']}, k={spec['num_tokens']}{drafter}: {spec['tokens_per_step']:.2f} tokens per step",
        )
    if c.get("attention", "fused") != "fused":
        head.add_row("attention kernels", c["attention"])
    buckets = est.get("buckets")
    if buckets:
        first, last = buckets["decode_first"], buckets["decode_last"]
        steps = f"{first:,}" if first == last else f"{first:,} to {last:,}"
        head.add_row(
            "Neuron buckets",
            f"prompts prefilled as {buckets['prompt']:,} tokens; decode steps read each cache over {steps} tokens",
        )
    head.add_row("TTFT (prefill)", f"{est['ttft_ms']:,.1f} ms{_band(est, 'ttft_ms', '{:,.1f}')}")
    head.add_row(
        "TPOT (decode)",
        f"{est['tpot_ms']:,.2f} ms{_band(est, 'tpot_ms', '{:,.2f}')} mean ({est['tpot_first_ms']:,.2f} ms at the "
        f"first token, {est['tpot_last_ms']:,.2f} ms at the last)",
    )
    head.add_row("end to end", f"{est['e2e_ms']:,.0f} ms{_band(est, 'e2e_ms', '{:,.0f}')} per batch")
    head.add_row(
        "throughput",
        f"{est['output_tokens_per_s']:,.0f}{_band(est, 'output_tokens_per_s', '{:,.0f}')} output tokens/s "
        f"({est['output_tokens_per_s_per_device']:,.1f} per device), {est['total_tokens_per_s']:,.0f} total tokens/s",
    )
    if "ttft_ms_low" in est:
        head.add_row(
            "intervals",
            "10th-90th percentile of the serving model's held-out error for this accelerator family "
            "(catalog/serve-residuals.yaml)",
        )
    mem = est["memory_per_device_gib"]
    verdict = Text("fits", style="green") if est["fits"] else Text("does NOT fit", style="bold red")
    head.add_row(
        "memory per device",
        Text.assemble(
            f"weights {mem['weights']:,.1f} GiB + KV cache {mem['kv_cache']:,.2f} GiB + activations "
            f"{mem['activations']:,.2f} GiB of {mem['capacity']:,.1f} GiB: ",
            verdict,
            f" (largest batch at these lengths: {est['max_batch']:,})",
        ),
    )
    reduce = est.get("tp_all_reduce")
    if reduce:
        head.add_row(
            "tp all-reduce",
            "; ".join(f"{phase} {fmt.binary(r['bytes'])} per call: {r['algorithm']}" for phase, r in reduce.items()),
        )
    head.add_row("efficiency set", est["efficiency"])
    parts = Table(title="where an iteration's time goes (ms)", title_justify="left")
    parts.add_column("part")
    parts.add_column("prefill", justify="right")
    parts.add_column("decode (mid-output)", justify="right")
    for name, value in est["prefill_parts_ms"].items():
        parts.add_row(name, f"{value:,.3f}", f"{est['decode_parts_ms'][name]:,.3f}")
    return [head, parts]


def serve_fit_tables(result: dict[str, Any]) -> list[Table]:
    """Fitted serving efficiencies and the errors before and after."""
    entries = result["entries"]
    params = Table(title="fitted serving efficiency parameters", title_justify="left")
    params.add_column("parameter")
    for key in entries:
        params.add_column(key, justify="right")
    for name in next(iter(entries.values())):
        params.add_row(name, *(f"{entries[key][name]:.4g}" for key in entries))
    tables = [params]
    if result.get("group_weights"):
        # every source's rows together carry the same weight (serve.fitting.group_weights)
        weights = Table(title="residual weight per source", title_justify="left")
        weights.add_column("group")
        weights.add_column("weight", justify="right")
        for group, weight in result["group_weights"].items():
            weights.add_row(group, f"{weight:.3f}")
        tables.append(weights)
    tables.append(summary_table(result["before"], title="before the fit (priors)"))
    tables.append(summary_table(result["after"]["summary"], title="after the fit"))
    if "leave_one_group_out" in result:
        tables.append(summary_table(result["leave_one_group_out"], title="leave one group out"))
    caption = f"wrote {result['written']}" if result["written"] else "dry run: nothing written"
    params.caption = caption
    params.caption_justify = "left"
    return tables


def size_tables(result: dict[str, Any]) -> list[Table]:
    """Tables from ``SizingResult.to_dict()``: fleets ranked, then each model's layout in the best one."""
    slo = ", ".join(f"{k}={v:g}" for k, v in result["slo"].items() if v is not None)
    fleets = Table(title=f"serving fleets meeting {slo} (ranked by {result['ranked_by']})", title_justify="left")
    for column in ("fleet", "devices", "facility MW", "$/hour", "$/M output tokens", "$/M tokens"):
        fleets.add_column(column, justify="left" if column == "fleet" else "right")

    def money(value: float | None, digits: int = 2) -> str:
        return "n/a" if value is None else f"${value:,.{digits}f}"

    for option in result["options"]:
        power = option["facility_power_mw"]
        fleets.add_row(
            option["fleet"] + (" *" if option["fleet"] == result["best"] else ""),
            f"{option['devices']:,}"
            + (
                f" ({option['devices_low']:,}-{option['devices_high']:,})"
                if option.get("devices_low") is not None
                else ""
            ),
            "n/a" if power is None else f"{power:,.3f}",
            money(option["usd_per_hour"]),
            money(option["usd_per_million_output_tokens"], 3),
            money(option["usd_per_million_tokens"], 3),
        )
    notes = list(result["notes"]) + [f"{k}: {v}" for k, v in result["infeasible"].items()]
    if any(o.get("devices_low") is not None for o in result["options"]):
        notes.append(
            "devices (low-high): replicas at the 90th / 10th percentile of the serving model's held-out "
            "throughput error for the chip's family"
        )
    if notes:
        fleets.caption = "\n".join(notes)
        fleets.caption_justify = "left"
    tables = [fleets]
    for option in result["options"]:
        table = Table(title=f"{option['fleet']}: per model", title_justify="left")
        for column in ("model", "req/s", "layout", "batch", "replicas", "devices", "simulated p99 TTFT / TPOT"):
            table.add_column(column, justify="left" if column in ("model", "layout") else "right")
        for item in option["models"]:
            layout, sim = item["layout"], item["simulated"]
            table.add_row(
                item["traffic"]["model"],
                f"{item['traffic']['rate_per_s']:g}",
                f"{layout['accelerator']} {layout_label(layout)} {layout['precision']} ({layout['system']})",
                f"{layout['batch']:,}",
                f"{item['replicas']:,}",
                f"{item['devices']:,}",
                _simulated_p99(sim),
            )
        tables.append(table)
    return tables


def _simulated_p99(sim: Mapping[str, Any] | None) -> str:
    """The simulated p99 TTFT / TPOT of a sized fleet; a dash where the check was skipped or measured nothing."""
    if sim is None or "skipped" in sim:
        return "—"
    ttft, tpot = sim.get("ttft_p99_ms"), sim.get("tpot_p99_ms")
    return f"{'—' if ttft is None else f'{ttft:,.0f}'} / {'—' if tpot is None else f'{tpot:,.1f}'} ms"
