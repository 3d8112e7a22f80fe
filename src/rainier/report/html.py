"""Self-contained HTML reports: the answer first, then why, then tables and plotly figures, the inputs last.

``HtmlReport`` collects an answer card (the headline quantities as a grid of cards, with their 10th-90th
percentile intervals where computed, and the sentence that says why), sections (a heading, optional text, an
HTML table or a plotly figure) and the inputs, shown collapsed at the end. ``render`` writes one page that loads
plotly.js once: inlined (``plotly.offline.get_plotlyjs``, the file works offline) or from the CDN (a script tag,
a small file that needs a network). The figure builders take the ``to_dict()`` documents of rainier's results,
the same JSON the CLI prints, so a report shows exactly the numbers ``--json`` gives, and one formatter
(``format_number``) writes every number, so a quantity reads the same in the card and in every table. Every plot
has a title, axis titles with units and a legend where there is more than one series.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from rainier.errors import InputError

BREAKDOWN_ORDER = (
    "compute",
    "recompute",
    "tp_comm",
    "cp_comm",
    "ep_comm",
    "pp_comm",
    "dp_comm_exposed",
    "link_contention",
    "pipeline_bubble",
    "optimizer",
    "other",
)
MEMORY_ORDER = ("weights", "gradients", "optimizer", "activations", "buffers")
GIB = 2**30
PLOTLY_MODES = ("inline", "cdn")  # how a report loads plotly.js (``rainier report --plotly``)
PLOTLY_CDN = "https://cdn.plot.ly/plotly-{version}.min.js"  # plotly's own CDN, the version plotly.py bundles
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
#answer{max-width:100%;box-sizing:border-box}#answer h1{margin-top:0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(9.5rem,1fr));gap:.6rem;margin:.8rem 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.5rem .7rem;background:#fafafa;min-width:0}
.card .label{color:#555;font-size:.8rem}.card .value{font-size:1.35rem;font-variant-numeric:tabular-nums;
overflow-wrap:anywhere}.card .range{color:#555;font-size:.78rem;font-variant-numeric:tabular-nums}
.card.bad{border-color:#c33;background:#fff4f4}.why{font-size:1.05rem;margin:.4rem 0}
.plan,.note{overflow-wrap:anywhere}section.inputs{margin-top:2rem}.table{max-width:100%;overflow-x:auto}
td{overflow-wrap:anywhere}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{border:1px solid #ddd;padding:.25rem .6rem}
th{background:#f4f4f4;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;padding:.8rem;overflow:auto;font-size:.85rem}.note{color:#555;font-size:.9rem}
"""


@dataclass(frozen=True, slots=True)
class Headline:
    """One quantity of the answer card: a label with its unit, the value, and its 10th-90th percentile interval."""

    label: str
    value: Any
    low: float | None = None
    high: float | None = None
    bad: bool = False  # drawn as a warning (does not fit, misses the SLO)

    def html(self) -> str:
        span = ""
        if self.low is not None and self.high is not None:
            span = f"<div class='range'>{format_number(self.low)} – {format_number(self.high)} (p10–p90)</div>"
        return (
            f"<div class='card{' bad' if self.bad else ''}'><div class='label'>{html.escape(self.label)}</div>"
            f"<div class='value'>{html.escape(format_number(self.value))}</div>{span}</div>"
        )


@dataclass(frozen=True, slots=True)
class AnswerCard:
    """What a report opens with: the headline quantities, why in words, the plan or layout, and notes."""

    headlines: tuple[Headline, ...]
    why: tuple[str, ...] = ()
    plan: str = ""  # the plan (or layout) the numbers are for, exactly as ``--plan`` takes it
    notes: tuple[str, ...] = ()
    plan_label: str = "Plan"

    def html(self, title: str) -> str:
        cards = "".join(h.html() for h in self.headlines)
        why = "".join(f"<p class='why'><b>Why:</b> {html.escape(w)}</p>" for w in self.why)
        label = html.escape(self.plan_label)
        plan = f"<p class='plan'><b>{label}:</b> <code>{html.escape(self.plan)}</code></p>" if self.plan else ""
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (
            f"<section id='answer'><h1>{html.escape(title)}</h1><div class='cards'>{cards}</div>{why}{plan}"
            + (f"<ul class='note'>{notes}</ul>" if notes else "")
            + "</section>"
        )


@dataclass
class HtmlReport:
    """A report being built: the answer card, sections in order, the inputs; ``render`` wraps them in one page."""

    title: str
    sections: list[tuple[str, str]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # the JSON documents shown, embedded for programs
    answer: AnswerCard | None = None
    inputs: str = ""  # the scenario file as given, shown collapsed at the end

    def add_text(self, heading: str, text: str) -> None:
        self.sections.append((heading, f"<p class='note'>{html.escape(text)}</p>"))

    def add_pre(self, heading: str, text: str) -> None:
        self.sections.append((heading, f"<pre>{html.escape(text)}</pre>"))

    def add_table(self, heading: str, rows: Sequence[Mapping[str, Any]], note: str = "") -> None:
        self.sections.append((heading, table_html(rows) + (f"<p class='note'>{html.escape(note)}</p>" if note else "")))

    def add_figure(self, heading: str, figure: go.Figure) -> None:
        figure.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 60, "b": 60})
        self.sections.append((heading, figure.to_html(full_html=False, include_plotlyjs=False)))

    def render(self, *, plotly: str = "inline") -> str:
        """The page; ``plotly`` ``inline`` puts plotly.js in it once (offline), ``cdn`` loads it from the CDN."""
        if plotly not in PLOTLY_MODES:
            raise InputError(f"--plotly {plotly!r} is invalid: {' or '.join(PLOTLY_MODES)}")
        if plotly == "cdn":
            script = f"<script src='{PLOTLY_CDN.format(version=get_plotlyjs_version())}' charset='utf-8'></script>"
        else:
            script = f"<script type='text/javascript'>{get_plotlyjs()}</script>"
        head = self.answer.html(self.title) if self.answer else f"<h1>{html.escape(self.title)}</h1>"
        body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{content}" for h, content in self.sections)
        inputs = (
            "<section class='inputs'><details><summary>Inputs (scenario file)</summary>"
            f"<pre>{html.escape(self.inputs)}</pre></details></section>"
            if self.inputs
            else ""
        )
        # inside <script> entities are not decoded: keep the JSON as is, only breaking a closing tag sequence
        data = json.dumps(self.data, default=str).replace("</", "<\\/")
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style>"
            f"{script}</head><body>{head}\n{body}\n{inputs}\n"
            f"<script type='application/json' id='rainier-data'>{data}</script></body></html>"
        )

    def write(self, path: Path | str, *, plotly: str = "inline") -> Path:
        target = Path(path)
        page = self.render(plotly=plotly)
        try:
            target.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{target}: cannot write the report ({exc.strerror or exc})") from None
        return target


def format_number(value: Any) -> str:
    """How a report writes a value: 4 significant figures below 1,000, whole numbers with separators above."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return "—"
        return f"{value:,.4g}" if abs(value) < 1e3 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "—" if value is None else str(value)


def _cell(value: Any) -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    text = html.escape(format_number(value))
    return f"<td class='num'>{text}</td>" if numeric else f"<td>{text}</td>"


def table_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table of rows with the same keys (the first row's keys are the columns)."""
    if not rows:
        return "<p class='note'>(none)</p>"
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c)) for c in columns) + "</tr>" for row in rows)
    return f"<div class='table'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


# ---------------------------------------------------------------------------------------------------- figures
def step_breakdown_figure(estimate: Mapping[str, Any], *, wan_s: float = 0.0) -> go.Figure:
    """Stacked bar of where one training step's time goes (``StepEstimate.to_dict()``).

    ``wan_s`` is a multi-site run's WAN time per step, stacked on top, so the bar is the run's step time.
    """
    parts = {**estimate["breakdown_s"], "WAN between sites": wan_s}
    figure = go.Figure()
    for name in (*BREAKDOWN_ORDER, "WAN between sites"):
        value = parts.get(name, 0.0)
        if value > 0:
            figure.add_bar(name=name.replace("_", " "), x=["step"], y=[value], hovertemplate="%{y:.4g} s")
    step = estimate["step_time_s"] + wan_s
    figure.update_layout(
        barmode="stack",
        title=f"Step time {format_number(step)} s: {estimate['model']} on {estimate['cluster']}",
        yaxis_title="time per step (s)",
        xaxis_title="",
        legend_title="part",
    )
    return figure


def memory_figure(estimate: Mapping[str, Any]) -> go.Figure:
    """Memory per device by kind against the device's capacity (``StepEstimate.to_dict()``)."""
    memory = estimate["memory_bytes"]
    figure = go.Figure()
    for name in MEMORY_ORDER:
        if memory.get(name, 0.0) > 0:
            figure.add_bar(name=name, x=["per device"], y=[memory[name] / GIB], hovertemplate="%{y:.2f} GiB")
    capacity = memory["capacity"] / GIB
    figure.add_hline(y=capacity, line_dash="dash", annotation_text=f"capacity {capacity:.0f} GiB")
    figure.update_layout(barmode="stack", title="Memory per device vs capacity", yaxis_title="GiB", legend_title="kind")
    return figure


def scaling_figure(points: Sequence[Mapping[str, Any]], title: str) -> go.Figure:
    """MFU and step time of the best plan at each device count (``SizePoint.to_dict()`` rows)."""
    points = [p for p in points if "mfu" in p]
    devices = [p["num_devices"] for p in points]
    figure = go.Figure()
    figure.add_scatter(x=devices, y=[p["mfu"] * 100 for p in points], name="MFU (%)", mode="lines+markers")
    figure.add_scatter(
        x=devices, y=[p["step_time_s"] for p in points], name="step time (s)", mode="lines+markers", yaxis="y2"
    )
    figure.update_layout(
        title=title,
        xaxis={"title": "devices", "type": "log"},
        yaxis={"title": "MFU (%)"},
        yaxis2={"title": "step time (s)", "overlaying": "y", "side": "right"},
        legend_title="series",
    )
    return figure


def pareto_figure(points: Sequence[Mapping[str, Any]], front: Sequence[int], y_key: str, y_title: str) -> go.Figure:
    """Time vs cost (or energy) per token over cluster sizes, the Pareto-optimal points highlighted."""
    x = [p["seconds_per_million_tokens"] for p in points]
    y = [p[y_key] for p in points]
    labels = [f"{p['num_devices']:,} devices" for p in points]
    figure = go.Figure()
    figure.add_scatter(x=x, y=y, mode="markers", name="best plan per size", text=labels)
    figure.add_scatter(
        x=[x[i] for i in front],
        y=[y[i] for i in front],
        mode="lines+markers",
        name="Pareto front",
        text=[labels[i] for i in front],
    )
    figure.update_layout(
        title="Pareto front over cluster sizes", xaxis_title="seconds per million tokens", yaxis_title=y_title
    )
    return figure


def _error_bars(runs: Sequence[Mapping[str, Any]], key: str, scale: float = 1.0) -> dict[str, Any] | None:
    """Plotly ``error_y`` from each run's ``<key>_low`` / ``<key>_high`` (None when the runs carry no intervals)."""
    if not runs or any(run.get(f"{key}_low") is None or run.get(key) is None for run in runs):
        return None
    return {
        "type": "data",
        "symmetric": False,
        "array": [(run[f"{key}_high"] - run[key]) * scale for run in runs],
        "arrayminus": [(run[key] - run[f"{key}_low"]) * scale for run in runs],
    }


def fleet_comparison_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Days and energy of the same run on each accelerator, with their 10th-90th percentile intervals.

    The two metrics sit side by side on their own axes (offset groups), so neither bar hides the other.
    """
    runs = [(r["accelerator"], r["run"]) for r in rows if r["run"] is not None]
    names = [a for a, _ in runs]
    plain = [run for _, run in runs]
    figure = go.Figure()
    figure.add_bar(
        name="wall-clock days",
        x=names,
        y=[run["wall_clock_days"] for run in plain],
        error_y=_error_bars(plain, "wall_clock_days"),
        offsetgroup="days",
    )
    figure.add_bar(
        name="energy (GWh)",
        x=names,
        y=[(run["energy_mwh"] or 0.0) / 1e3 for run in plain],
        error_y=_error_bars(plain, "energy_mwh", 1e-3),
        yaxis="y2",
        offsetgroup="energy",
    )
    figure.update_layout(
        title="The same run on each accelerator (bars: 10th-90th percentile)",
        barmode="group",
        xaxis_title="accelerator",
        yaxis={"title": "days"},
        yaxis2={"title": "energy (GWh)", "overlaying": "y", "side": "right"},
        legend_title="metric",
    )
    return figure


def sensitivity_figure(uncertainty: Mapping[str, Any], key: str = "wall_clock_days", unit: str = "days") -> go.Figure:
    """A tornado chart: each uncertain input at both ends of its range, ranked by how far it moves ``key``."""
    rows = [r for r in uncertainty["sensitivity"] if r["at_low"].get(key) is not None]
    rows.sort(key=lambda r: abs(r["at_high"][key] - r["at_low"][key]))
    names = [f"{r['input']} ({r['range']})" for r in rows]
    figure = go.Figure()
    figure.add_bar(name="input at the low end", y=names, x=[r["at_low"][key] for r in rows], orientation="h")
    figure.add_bar(name="input at the high end", y=names, x=[r["at_high"][key] for r in rows], orientation="h")
    figure.update_layout(
        title=f"What moves the answer: {unit} with one input at each end of its range",
        barmode="group",
        xaxis_title=unit,
        yaxis_title="uncertain input (its range)",
    )
    return figure


def goodput_figure(goodput: Mapping[str, Any]) -> go.Figure:
    """Where the wall clock of a simulated run goes (``GoodputResult.to_dict()``)."""
    parts = {
        "productive": goodput["productive_days"] * 24,
        "lost work": goodput["lost_work_hours"],
        "checkpointing": goodput["checkpoint_hours"],
        "restarting": goodput["restart_hours"],
        "waiting for spares": goodput["waiting_for_spares_hours"],
    }
    figure = go.Figure()
    for name, hours in parts.items():
        figure.add_bar(name=name, x=["wall clock"], y=[hours], hovertemplate="%{y:,.1f} h")
    figure.update_layout(
        barmode="stack",
        title=(
            f"Goodput: {goodput['effective_training_time_ratio']:.1%} effective, "
            f"{goodput['interruptions_unexpected']:,} interruptions"
        ),
        yaxis_title="hours",
        legend_title="time spent",
    )
    return figure


def interruptions_figure(goodput: Mapping[str, Any]) -> go.Figure:
    """Interruptions by cause (``GoodputResult.to_dict()``)."""
    causes = goodput["interruptions_by_cause"]
    figure = go.Figure()
    figure.add_bar(x=list(causes), y=list(causes.values()), name="interruptions")
    figure.update_layout(title="Unexpected interruptions by cause", xaxis_title="component", yaxis_title="count")
    return figure


def latency_cdf_figure(
    samples_ms: Mapping[str, np.ndarray], title: str, slo_ms: Mapping[str, float] | None = None
) -> go.Figure:
    """Empirical CDFs of per-request latencies (TTFT, TPOT, end to end), milliseconds on a log axis.

    ``slo_ms`` draws each p99 target (``{"TTFT": 2000}``) as a dashed vertical line (a trace, so it has a legend
    entry and sits in data coordinates on the log axis), and the 99% share as a dotted horizontal one.
    """
    figure = go.Figure()
    for name, target in (slo_ms or {}).items():
        figure.add_scatter(
            x=[target, target], y=[0, 1], mode="lines", line={"dash": "dash"}, name=f"{name} p99 SLO ({target:g} ms)"
        )
    if slo_ms:
        figure.add_hline(y=0.99, line_dash="dot", line_color="#999")
    for name, values in samples_ms.items():
        clean = np.sort(values[np.isfinite(values)])
        if clean.size == 0:
            continue
        step = max(1, clean.size // 2000)  # at most ~2,000 points per curve
        xs = clean[::step]
        ys = np.arange(1, clean.size + 1)[::step] / clean.size
        figure.add_scatter(x=xs, y=ys, mode="lines", name=name)
    figure.update_layout(
        title=title,
        xaxis={"title": "latency (ms)", "type": "log"},
        yaxis={"title": "share of requests", "range": [0, 1]},
        legend_title="latency",
    )
    return figure


def sizing_figure(options: Sequence[Mapping[str, Any]], ranked_by: str) -> go.Figure:
    """Devices and cost (or power) of each sized serving fleet (``SizingResult.to_dict()['options']``)."""
    names = [o["fleet"] for o in options]
    figure = go.Figure()
    figure.add_bar(name="devices", x=names, y=[o["devices"] for o in options])
    if ranked_by == "usd_per_hour":
        second, label = [o["usd_per_million_output_tokens"] for o in options], "$ per million output tokens"
    else:
        second, label = [(o["facility_power_mw"] or 0) * 1e3 for o in options], "facility power (kW)"
    figure.add_scatter(name=label, x=names, y=second, mode="markers", marker={"size": 12}, yaxis="y2")
    figure.update_layout(
        title="Serving fleets meeting the SLOs",
        xaxis_title="fleet",
        yaxis={"title": "devices"},
        yaxis2={"title": label, "overlaying": "y", "side": "right"},
        legend_title="metric",
    )
    return figure


def goodput_timeline_figure(
    timeline: Mapping[str, Sequence[Any]], wall_clock_days: float, productive_days: float
) -> go.Figure:
    """Productive days against wall-clock days, each interruption a marker coloured by cause."""
    figure = go.Figure()
    xs = [0.0, *timeline["wall_clock_days"], wall_clock_days]
    ys = [0.0, *timeline["productive_days"], productive_days]
    figure.add_scatter(x=xs, y=ys, mode="lines", name="productive training", line={"shape": "hv"})
    figure.add_scatter(
        x=[0.0, wall_clock_days], y=[0.0, wall_clock_days], mode="lines", name="no failures", line={"dash": "dot"}
    )
    causes = list(dict.fromkeys(timeline["cause"]))
    for cause in causes:
        picks = [i for i, c in enumerate(timeline["cause"]) if c == cause]
        figure.add_scatter(
            x=[timeline["wall_clock_days"][i] for i in picks],
            y=[timeline["productive_days"][i] for i in picks],
            mode="markers",
            marker={"size": 5},
            name=f"interruption: {cause}",
        )
    figure.update_layout(
        title="Goodput timeline: productive training against wall clock",
        xaxis_title="wall-clock days",
        yaxis_title="productive days",
        legend_title="series",
    )
    return figure
