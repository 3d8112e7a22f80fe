"""Tables for ``rainier validate`` and ``rainier calibrate``, rendered from the results' ``to_dict()``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

_METRIC_UNITS = {
    "step_time_s": "s",
    "tokens_per_s_per_device": "tok/s/dev",
    "model_tflops_per_device": "TFLOP/s/dev",
    "mfu": "",
}


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return "—"
    if metric == "mfu":
        return f"{value:.3f}"
    if metric == "tokens_per_s_per_device" or value >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.4g}"


def _pct(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.1f}%" if signed else f"{value:.1f}%"


def validation_tables(doc: Mapping[str, Any]) -> list[Table]:
    """One table per group (id, trust, metric, measured, predicted, error) and the summary table."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in doc["cases"]:
        groups.setdefault(row["group"], []).append(row)
    tables = [_group_table(name, rows) for name, rows in groups.items()]
    tables.append(summary_table(doc["summary"], title="validation summary (|error|)"))
    simulation = doc["summary"].get("simulation")
    if simulation is not None:  # validate --simulate
        agreement = doc["summary"]["agreement"]
        title = (
            "simulation summary (|error|); without link contention ("
            f"{agreement['cases_without_contention']} cases) simulation and estimate differ by at most "
            f"{agreement['max_abs_difference_pct']:.2f}%"
        )
        tables.append(summary_table(simulation, title=title))
    return tables


def _group_table(name: str, rows: list[Mapping[str, Any]]) -> Table:
    assumed = dict.fromkeys(text for row in rows for text in row.get("assumptions", ()))
    caption = ("assumed: " + "; ".join(assumed)) if assumed else None
    table = Table(title=name, title_justify="left", caption=caption, caption_justify="left")
    simulated = any("simulated" in row for row in rows)
    columns = ("id", "trust", "metric", "measured", "predicted", "error")
    for column in columns + (("simulated", "sim error") if simulated else ()):
        table.add_column(column, justify="left" if column in ("id", "trust", "metric") else "right")
    for row in rows:
        if "skipped" in row:
            pad = ("", "") if simulated else ()
            table.add_row(row["id"], row["trust"], Text("skipped", style="dim"), "", "", "", *pad, end_section=False)
            table.add_row("", "", Text(str(row["skipped"]), style="dim"), "", "", "", *pad)
            continue
        metric = row["metric"]
        unit = _METRIC_UNITS.get(metric, "")
        table.add_row(
            row["id"],
            row["trust"],
            Text.assemble(metric, (f" ({unit})" if unit else "", "dim")),
            _value(metric, row["measured"]),
            _value(metric, row["predicted"]),
            _pct(row["error_pct"], signed=True),
            *(
                (_value(metric, row["simulated"]), _pct(row["sim_error_pct"], signed=True))
                if simulated and "simulated" in row
                else ("", "")
                if simulated
                else ()
            ),
        )
    return table


def summary_table(summary: Mapping[str, Any], *, title: str) -> Table:
    """Median / mean / p90 / max |error| overall, per group and per trust tier; the Korthikanti mean."""
    table = Table(title=title, title_justify="left")
    for column in ("slice", "predicted", "skipped", "median", "mean", "p90", "max"):
        table.add_column(column, justify="left" if column == "slice" else "right")

    def add(label: str, stats: Mapping[str, Any], *, bold: bool = False) -> None:
        # The overall summary has "predicted"; per-slice statistics call the same number "count".
        predicted = stats.get("predicted", stats["count"])
        table.add_row(
            Text(label, style="bold" if bold else ""),
            str(predicted),
            str(stats["skipped"]),
            _pct(stats["median_abs_error_pct"]),
            _pct(stats["mean_abs_error_pct"]),
            _pct(stats["p90_abs_error_pct"]),
            _pct(stats["max_abs_error_pct"]),
        )

    add("all", summary, bold=True)
    for name, stats in summary.get("by_group", {}).items():
        add(f"  {name}", stats)
    for tier, stats in summary.get("by_trust", {}).items():
        if stats["count"] or stats["skipped"]:
            add(f"  trust {tier}", stats)
    korthikanti = summary.get("korthikanti2022_table5_mean_abs_error_pct")
    if korthikanti is not None:
        table.caption = f"Korthikanti et al. 2022 Table 5, mean |error|: {korthikanti:.1f}%"
        table.caption_justify = "left"
    return table


def fit_tables(doc: Mapping[str, Any]) -> list[Table]:
    """Parameters per entry (fitted ones marked) and the errors before and after the fit."""
    fit = doc["fit"]
    entries = fit["entries"]
    params = Table(title="fitted efficiency parameters (* = fitted, else inherited)", title_justify="left")
    params.add_column("parameter")
    for entry in entries:
        params.add_column(f"{entry['id']} ({entry['cases']} cases)", justify="right")
    for name in entries[0]["parameters"]:
        cells = []
        for entry in entries:
            value = entry["parameters"][name]
            mark = "*" if name in entry["fitted"] else " "
            cells.append(f"{value:.4g}{mark}")
        params.add_row(name, *cells)
    params.add_row(
        Text("median |error| on own cases", style="dim"), *(_pct(entry["median_abs_error_pct"]) for entry in entries)
    )
    tables = [params, _before_after(fit)]
    if fit.get("held_out"):
        tables.append(summary_table(fit["held_out"], title="held-out groups under the fit (|error|)"))
    if fit.get("not_used"):
        unused = Table(title="cases left out of the fit", title_justify="left")
        unused.add_column("id")
        unused.add_column("reason")
        for item in fit["not_used"]:
            unused.add_row(item["id"], item["reason"])
        tables.append(unused)
    if doc.get("leave_one_group_out"):
        tables.append(crossval_table(doc["leave_one_group_out"]))
    return tables


def _before_after(fit: Mapping[str, Any]) -> Table:
    before, after = fit["before"], fit["after"]
    table = Table(title="|error| before (priors) and after the fit", title_justify="left")
    for column in ("slice", "cases", "median before", "median after", "p90 before", "p90 after"):
        table.add_column(column, justify="left" if column == "slice" else "right")
    rows = [("all", before, after)]
    rows += [(f"  {g}", before["by_group"][g], after["by_group"][g]) for g in after["by_group"]]
    for label, b, a in rows:
        table.add_row(
            label,
            str(a.get("predicted", a["count"])),
            _pct(b["median_abs_error_pct"]),
            _pct(a["median_abs_error_pct"]),
            _pct(b["p90_abs_error_pct"]),
            _pct(a["p90_abs_error_pct"]),
        )
    return table


def crossval_table(doc: Mapping[str, Any]) -> Table:
    """Leave-one-group-out: each held-out group's |error| and the summary over all held-out predictions."""
    table = Table(title="leave-one-group-out (fit on the other groups)", title_justify="left")
    for column in ("held-out group", "fit cases", "predicted", "median", "mean", "p90"):
        table.add_column(column, justify="left" if column == "held-out group" else "right")
    for fold in doc["folds"]:
        s = fold["summary"]
        table.add_row(
            fold["group"],
            str(fold["num_fit_cases"]),
            str(s["predicted"]),
            _pct(s["median_abs_error_pct"]),
            _pct(s["mean_abs_error_pct"]),
            _pct(s["p90_abs_error_pct"]),
        )
    s = doc["summary"]
    table.add_row(
        Text("all held-out", style="bold"),
        "",
        str(s["predicted"]),
        _pct(s["median_abs_error_pct"]),
        _pct(s["mean_abs_error_pct"]),
        _pct(s["p90_abs_error_pct"]),
    )
    return table
