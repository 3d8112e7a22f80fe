"""HTML reports of scenarios and single results (``rainier report``, ``--report PATH``).

A scenario file is a fleet scenario (``examples/rainier-frontier.yaml``; ``kind: fleet``, the default) or a
serving scenario (``kind: serve``: traffic, SLOs and accelerators to size a fleet for, and optionally one
configuration to simulate). Each becomes one self-contained HTML page (``report.html``) that opens with the
answer (the headline quantities with their intervals, and why: the largest loss of the step in words,
``api.explain``), then plots and tables of the step-time breakdown, memory, top plans, the scaling curve and
Pareto front, the comparison across accelerators and the goodput of the run; or, for serving, the sized fleets
(with each model's simulated p99) and the simulated latency distributions against the SLOs. The scenario file
comes last, collapsed. Every quantity is taken from one result, so it reads the same in every section.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rainier.api.explain import binding_slo, dominant_loss
from rainier.catalog.loader import load_yaml
from rainier.errors import InputError
from rainier.fleet.plan import RunPlan
from rainier.fleet.scenario import ScenarioResult
from rainier.perf.result import StepEstimate
from rainier.report import html as fig
from rainier.report.html import AnswerCard, Headline, HtmlReport
from rainier.search.result import SearchResult
from rainier.search.scaling import SizePoint, pareto_front
from rainier.serve.estimate import ServeEstimate
from rainier.serve.simulate import ServeResult, ServeScenario
from rainier.serve.size import layout_label
from rainier.sim.training import SimulatedStep

if TYPE_CHECKING:
    from rainier.api.scenario import ServeFile
    from rainier.api.serve import SizingResult

TRACE_BATCHES = 50_000  # engine iterations kept for a serving trace
SCALING_FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)  # cluster sizes of the scaling curve, as shares of the run's


def scenario_kind(path: Path | str) -> str:
    """The ``kind`` of a scenario file (``fleet`` when absent; :mod:`rainier.api.scenario`)."""
    from rainier.api.scenario import scenario_kind as kind_of

    return kind_of(load_yaml(path), path=str(path))


def scenario_report(path: Path | str) -> tuple[HtmlReport, dict[str, Any]]:
    """The report of a scenario file (``kind`` fleet, training or serve) and the JSON document behind it."""
    from rainier.api.scenario import ServeFile, load_scenario_file
    from rainier.api.training_scenario import TrainingScenario, run_training
    from rainier.fleet.scenario import Scenario

    loaded = load_scenario_file(path)
    if isinstance(loaded.value, ServeFile):
        return serve_file_report(loaded.value, inputs=loaded.text)
    if isinstance(loaded.value, TrainingScenario):
        step = run_training(loaded.value).result
        return report_of(step), step.to_dict()
    if not isinstance(loaded.value, Scenario):
        raise InputError(
            f"{path}: kind={loaded.kind} runs with rainier {loaded.kind} FILE; a report takes kind fleet, training"
            " or serve"
        )
    from rainier.api.fleet import run_fleet_scenario

    result = run_fleet_scenario(loaded.value)
    return fleet_report(result, inputs=loaded.text), result.to_dict()


# ------------------------------------------------------------------------------------------------------ training
def add_step(report: HtmlReport, estimate: StepEstimate, *, wan_s: float = 0.0) -> None:
    doc = estimate.to_dict()
    report.add_figure("Where the step time goes", fig.step_breakdown_figure(doc, wan_s=wan_s))
    report.add_figure("Memory per device", fig.memory_figure(doc))


def _plan_rows(rows: list[tuple[StepEstimate, float]], used: StepEstimate | None = None) -> list[dict[str, Any]]:
    """Table rows of plans, each with its step time in the run (the estimate's, plus a multi-site run's WAN)."""
    return [
        {
            "rank": i + 1,
            **({"used": "the run's" if e.plan == used.plan else ""} if used is not None else {}),
            "plan": e.plan.describe(),
            "step s": step,
            "MFU %": e.mfu * e.step_time_s / step * 100,
            "tokens/s per device": e.tokens_per_s_per_device * e.step_time_s / step,
            "memory GiB": e.memory.total / 2**30,
        }
        for i, (e, step) in enumerate(rows)
    ]


def step_answer(estimate: StepEstimate) -> AnswerCard:
    """The answer card of one training step: size, time, utilisation, memory, and why."""
    memory_gib = estimate.memory.total / 2**30
    return AnswerCard(
        headlines=(
            Headline("devices", estimate.num_devices),
            Headline("step time (s)", estimate.step_time_s),
            Headline("MFU (%)", estimate.mfu * 100),
            Headline("tokens/s", estimate.tokens_per_s),
            Headline(f"memory GiB (of {estimate.memory.capacity / 2**30:,.0f})", memory_gib),
            Headline("fits in memory", estimate.fits, bad=not estimate.fits),
        ),
        why=(dominant_loss(estimate).text,),
        plan=estimate.plan.describe(),
        notes=estimate.warnings,
    )


def estimate_report(estimate: StepEstimate) -> HtmlReport:
    report = HtmlReport(title=f"Training step: {estimate.model} on {estimate.cluster}", answer=step_answer(estimate))
    add_step(report, estimate)
    report.data = {"estimate": estimate.to_dict()}
    return report


def simulation_report(sim: SimulatedStep) -> HtmlReport:
    """``train simulate --report``: the simulated step beside the estimate, its critical path, streams and links."""
    doc = sim.to_dict()
    report = HtmlReport(title=f"Simulated training step: {doc['model']} on {doc['cluster']}")
    report.add_table(
        "Headline",
        [
            {
                "plan": doc["plan"],
                "simulated step s": doc["step_time_s"],
                "estimated step s": doc["estimate_step_time_s"],
                "difference %": 100 * doc["difference"],
                "cause": doc["cause"],
            }
        ],
    )
    report.add_table(
        "Where the last rank's time goes (s)",
        [
            {"part": k, "simulated": v, "estimate": doc["estimate_breakdown"].get(k, 0.0)}
            for k, v in doc["breakdown"].items()
        ],
    )
    report.add_table("Critical path (s)", [{"category": k, "seconds": v} for k, v in doc["critical_path_s"].items()])
    report.add_table(
        "Busy fraction of each stream",
        [{"rank class": rank, **{k: 100 * v for k, v in lanes.items()}} for rank, lanes in doc["stream_busy"].items()],
    )
    report.add_table("Busiest links", doc["busiest_links"])
    add_step(report, sim.estimate)
    report.data = {"simulation": doc}
    return report


def search_report(result: SearchResult) -> HtmlReport:
    report = HtmlReport(title=f"Plan search: {result.model} on {result.cluster}")
    if result.top:
        report.answer = step_answer(result.top[0].estimate)
    report.add_table(
        "Search",
        [
            {
                "evaluated": result.evaluated,
                "candidates": result.candidates,
                "gbs": result.gbs,
                "seq_len": result.seq_len,
            }
        ],
    )
    report.add_table("Top plans", _plan_rows([(r.estimate, r.estimate.step_time_s) for r in result.top]))
    if result.top:
        add_step(report, result.top[0].estimate)
    report.data = {"search": result.to_dict()}
    return report


def add_scaling(report: HtmlReport, points: list[SizePoint], *, accelerator: str) -> None:
    rows = [p.to_dict() for p in points]
    report.add_figure("Scaling", fig.scaling_figure(rows, f"Best plan per cluster size ({accelerator})"))
    axis, key, title = ("cost", "dollars_per_million_tokens", "dollars per million tokens")
    if all(r.get(key) is None for r in rows if "mfu" in r):
        axis, key, title = ("energy", "joules_per_token", "joules per token")
    usable = [i for i, r in enumerate(rows) if r.get(key) is not None]
    if usable:
        front = pareto_front(points, ("time", axis))
        kept = [rows[i] for i in usable]
        index = {i: n for n, i in enumerate(usable)}
        report.add_figure("Pareto front", fig.pareto_figure(kept, [index[i] for i in front if i in index], key, title))


# ------------------------------------------------------------------------------------------------------ fleet
TOP_PLANS = 10  # rows of a fleet report's table of the fastest plans


def run_answer(run: RunPlan, doc: dict[str, Any]) -> AnswerCard:
    """The answer card of a whole run (``RunPlan.to_dict()`` as ``doc``): the headlines with their intervals."""

    def interval(key: str, label: str, scale: float = 1.0) -> Headline:
        low, high = doc.get(f"{key}_low"), doc.get(f"{key}_high")
        value = doc[key]
        return Headline(
            label,
            None if value is None else value * scale,
            None if low is None else low * scale,
            None if high is None else high * scale,
        )

    fits = run.estimate.fits
    return AnswerCard(
        headlines=(
            Headline("devices", doc["devices"]),
            interval("wall_clock_days", "days (wall clock)"),
            Headline("facility MW", doc["facility_power_mw"]),
            interval("energy_mwh", "energy MWh"),
            interval("cost_usd", "cost $" if doc["cost_usd"] is not None else "cost $ (no price)"),
            interval("step_time_s", "step time (s)"),
            Headline("MFU (%)", doc["mfu"] * 100),
            Headline("fits in memory", fits, bad=not fits),
        ),
        why=(dominant_loss(run.estimate, wan_s=run.step_time_s - run.estimate.step_time_s).text,),
        plan=doc["plan"],
        notes=tuple(doc["notes"]),
    )


def fleet_report(result: ScenarioResult, *, inputs: str = "") -> HtmlReport:
    """Everything about a fleet scenario's run (see the module docstring)."""
    from rainier.api import run_scale
    from rainier.api.fleet import run_candidates

    run = result.run
    doc = result.to_dict()
    title = result.scenario.title or f"{run.model} on {run.cluster}"
    report = HtmlReport(title=title, answer=run_answer(run, doc["run"]), inputs=inputs)
    add_uncertainty(report, doc["run"])
    add_step(report, run.estimate, wan_s=run.step_time_s - run.estimate.step_time_s)
    report.add_table(
        "Top plans on the cluster used",
        _plan_rows(run_candidates(result, TOP_PLANS), used=run.estimate),
        note="the run's own search (batch target, precision); step s as in the run"
        + (", the WAN between sites included" if run.sites is not None else ""),
    )
    sizes = sorted({max(1, round(run.footprint.devices * f)) for f in SCALING_FRACTIONS})
    points = run_scale(
        model=result.scenario.model,
        accelerator=run.accelerator,
        counts=",".join(str(n) for n in sizes),
        gbs=run.estimate.plan.gbs,
        price=run.price.usd_per_device_hour,
    )
    add_scaling(report, points, accelerator=run.accelerator)
    if result.comparison is not None:
        rows = doc["comparison"]["rows"]
        report.add_figure("Across accelerators", fig.fleet_comparison_figure(rows))
        report.add_table(
            "Across accelerators (table)",
            [
                {
                    "accelerator": r["accelerator"],
                    "cluster": r["run"]["cluster"] if r["run"] else None,
                    "precision": r["precision"] or None,
                    "devices": r["run"]["devices"] if r["run"] else None,
                    "target devices": r["target_devices"],
                    "facility MW (target)": r["provisioned_facility_mw"],
                    "days": r["run"]["wall_clock_days"] if r["run"] else None,
                    "MWh": r["run"]["energy_mwh"] if r["run"] else None,
                    "USD per M tokens": r["run"]["usd_per_million_tokens"] if r["run"] else None,
                    "break-even USD/device-h": r["break_even_usd_per_device_hour"],
                    "error": r["error"] or None,
                }
                for r in rows
            ],
            note=doc["comparison"]["footing_line"],
        )
    if doc["goodput"] is not None and result.goodput is not None:
        g = result.goodput
        report.add_figure(
            "Goodput timeline", fig.goodput_timeline_figure(g.timeline_dict(), g.wall_clock_days, g.productive_days)
        )
        report.add_figure("Goodput of the run", fig.goodput_figure(doc["goodput"]))
        report.add_figure("Interruptions", fig.interruptions_figure(doc["goodput"]))
    report.data = doc
    return report


# ------------------------------------------------------------------------------------------------------ serving
def serve_estimate_report(estimate: ServeEstimate) -> HtmlReport:
    doc = estimate.to_dict()
    report = HtmlReport(
        title=f"Serving: {estimate.model} on {estimate.cluster}",
        answer=AnswerCard(
            headlines=(
                Headline("TTFT (ms)", doc["ttft_ms"]),
                Headline("TPOT (ms)", doc["tpot_ms"]),
                Headline("end to end (ms)", doc["e2e_ms"]),
                Headline("output tokens/s", doc["output_tokens_per_s"]),
                Headline("fits in memory", doc["fits"], bad=not doc["fits"]),
            ),
            plan=",".join(f"{k}={v}" for k, v in doc["config"].items()),
            plan_label="Configuration",
        ),
    )
    parts = [
        {"part": k, "prefill ms": v, "decode ms": doc["decode_parts_ms"][k]} for k, v in doc["prefill_parts_ms"].items()
    ]
    report.add_table("Where an iteration's time goes", parts)
    report.data = {"serve": doc}
    return report


def add_simulation(
    report: HtmlReport, scenario: ServeScenario, result: ServeResult, *, slo: dict[str, Any] | None = None
) -> None:
    """The simulation's table and latency CDFs; ``slo`` (``ttft_p99_ms``, ``tpot_p99_ms``, ...) draws the targets."""
    from rainier.serve.simulate import simulate_timeline

    timeline = simulate_timeline(scenario)
    ttft = (timeline.first_token_s - timeline.arrival_s) * 1e3
    e2e = (timeline.finish_s - timeline.arrival_s) * 1e3
    with_decode = timeline.output_len > 1
    tpot = ((timeline.finish_s - timeline.first_token_s)[with_decode] / (timeline.output_len[with_decode] - 1)) * 1e3
    doc = result.to_dict()
    report.add_table(
        "Simulation",
        [
            {
                "requests": doc["requests_completed"],
                "replicas": doc["replicas"],
                "output tokens/s": doc["output_tokens_per_s"],
                "utilisation %": doc["utilisation"] * 100,
                "TTFT p99 ms": (doc["ttft_ms"] or {}).get("p99"),
                "TPOT p99 ms": (doc["tpot_ms"] or {}).get("p99"),
            }
        ],
        note="; ".join(doc["warnings"]),
    )
    report.add_figure(
        "Latency distributions",
        fig.latency_cdf_figure(
            {"TTFT": ttft, "TPOT": tpot, "end to end": e2e},
            "Per-request latency (simulated)",
            slo_ms={
                label: float(target)
                for label, key in (("TTFT", "ttft_p99_ms"), ("TPOT", "tpot_p99_ms"), ("end to end", "e2e_p99_ms"))
                if (target := (slo or {}).get(key)) is not None
            },
        ),
    )


def serve_scenario_report(path: Path | str) -> tuple[HtmlReport, dict[str, Any]]:
    """A ``kind: serve`` scenario file: size fleets for the traffic and SLOs, simulate one configuration."""
    from rainier.api.scenario import ServeFile, load_scenario_file

    loaded = load_scenario_file(path, expect="serve")
    assert isinstance(loaded.value, ServeFile)
    return serve_file_report(loaded.value, inputs=loaded.text)


def run_serve_file(serve: ServeFile) -> tuple[SizingResult, ServeScenario | None, ServeResult | None]:
    """A serving scenario's sizing (``rainier serve size``) and its simulation (``rainier serve simulate``), if any."""
    from rainier.api.serve import run_serve_size
    from rainier.api.serve_sim import run_serve_simulate, simulation_scenario

    sizing = run_serve_size(
        models=serve.models,
        slo=serve.slo,
        accelerators=serve.accelerators,
        input_len=serve.input_len,
        output_len=serve.output_len,
        price=serve.price,
        speculative=serve.speculative,
        prefix_hit=serve.prefix_hit,
        lengths=serve.lengths,
    )
    if not serve.simulate:
        return sizing, None, None
    kwargs = dict(serve.simulate)
    return sizing, simulation_scenario(**kwargs), run_serve_simulate(**kwargs)


def serve_document(sizing: SizingResult, simulation: ServeResult | None) -> dict[str, Any]:
    """The JSON of a serving scenario (``rainier report --json`` and the web app's serving answer)."""
    document: dict[str, Any] = {"sizing": sizing.to_dict()}
    if simulation is not None:
        document["simulation"] = simulation.to_dict()
    return document


def serve_file_report(serve: ServeFile, *, inputs: str = "") -> tuple[HtmlReport, dict[str, Any]]:
    """The report of a serving scenario and the JSON document behind it."""
    sizing, scenario, simulation = run_serve_file(serve)
    sized = sizing.to_dict()
    title = serve.title
    report = HtmlReport(title=title, answer=sizing_answer(sized), inputs=inputs)
    report.add_figure("Fleets", fig.sizing_figure(sized["options"], sized["ranked_by"]))
    report.add_table(
        "Fleets (table)",
        [
            {
                "fleet": o["fleet"],
                "devices": o["devices"],
                "facility MW": o["facility_power_mw"],
                "USD/hour": o["usd_per_hour"],
                "USD per M output tokens": o["usd_per_million_output_tokens"],
            }
            for o in sized["options"]
        ],
        note="; ".join(sized["notes"]),
    )
    for option in sized["options"]:
        report.add_table(
            f"{option['fleet']}: per model",
            [
                {
                    "model": m["traffic"]["model"],
                    "req/s": m["traffic"]["rate_per_s"],
                    "layout": f"{m['layout']['accelerator']} {layout_label(m['layout'])} {m['layout']['precision']}",
                    "batch": m["layout"]["batch"],
                    "replicas": m["replicas"],
                    "devices": m["devices"],
                    "TTFT p99 ms (simulated)": (m.get("simulated") or {}).get("ttft_p99_ms"),
                    "TPOT p99 ms (simulated)": (m.get("simulated") or {}).get("tpot_p99_ms"),
                }
                for m in option["models"]
            ],
            note=_slo_note(sized["slo"]),
        )
    if scenario is not None and simulation is not None:
        add_simulation(report, scenario, simulation, slo=sized["slo"])
    document = serve_document(sizing, simulation)
    report.data = document
    return report, document


def _slo_note(slo: dict[str, Any]) -> str:
    targets = ", ".join(f"{k.removesuffix('_ms').replace('_', ' ')} {v:,.0f} ms" for k, v in slo.items() if v)
    return f"SLOs: {targets}" if targets else ""


def sizing_answer(sized: dict[str, Any]) -> AnswerCard:
    """The answer card of a serving sizing (``SizingResult.to_dict()``): the best fleet, its size, power and cost."""
    best = next((o for o in sized["options"] if o["fleet"] == sized["best"]), None)
    if best is None:
        return AnswerCard(headlines=(Headline("fleets meeting the SLOs", 0, bad=True),), notes=tuple(sized["notes"]))
    slo = sized["slo"]
    worst = {
        key: max((v for m in best["models"] if (v := (m.get("simulated") or {}).get(key)) is not None), default=None)
        for key in ("ttft_p99_ms", "tpot_p99_ms")
    }
    latency = tuple(
        Headline(f"{label} p99 ms, simulated (SLO {slo[key]:,.0f})", worst[key], bad=worst[key] > slo[key])
        for key, label in (("ttft_p99_ms", "TTFT"), ("tpot_p99_ms", "TPOT"))
        if worst[key] is not None and slo.get(key)
    )
    why = binding_slo(best, slo)
    return AnswerCard(
        headlines=(
            Headline("best fleet", best["fleet"]),
            Headline("devices", best["devices"], best["devices_low"], best["devices_high"]),
            Headline("facility MW", best["facility_power_mw"]),
            Headline("$ per hour", best["usd_per_hour"]),
            Headline("$ per M output tokens", best["usd_per_million_output_tokens"]),
            *latency,
        ),
        why=(why,) if why else (),
        plan="; ".join(
            f"{m['traffic']['model']}: {m['replicas']} x {m['layout']['accelerator']} {layout_label(m['layout'])} "
            f"{m['layout']['precision']}"
            for m in best["models"]
        ),
        plan_label="Layout",
        notes=tuple(sized["notes"]),
    )


@dataclass(frozen=True, slots=True)
class SimulationRun:
    """A serving simulation's scenario and result (its timeline is recomputed for plots and traces)."""

    scenario: ServeScenario
    result: ServeResult


def run_report(run: RunPlan) -> HtmlReport:
    """A fleet run without a scenario file: headline, step, memory."""
    report = HtmlReport(title=f"Training run: {run.model} on {run.cluster}")
    doc = run.to_dict()
    report.answer = run_answer(run, doc)
    add_uncertainty(report, doc)
    add_step(report, run.estimate, wan_s=run.step_time_s - run.estimate.step_time_s)
    report.data = {"run": doc}
    return report


def add_uncertainty(report: HtmlReport, run: dict[str, Any]) -> None:
    """The headline's intervals as a table, and the tornado chart of the inputs that move it (when computed)."""
    uncertainty = run.get("uncertainty")
    if uncertainty is None:
        return
    names = {
        "step_time_s": "step s",
        "wall_clock_days": "wall-clock days",
        "energy_mwh": "energy MWh",
        "cost_usd": "cost USD",
        "tokens_per_joule": "tokens per joule",
    }
    rows = [
        {
            "quantity": label,
            "estimate": run[key],
            "10th percentile": run.get(f"{key}_low"),
            "90th": run.get(f"{key}_high"),
        }
        for key, label in names.items()
        if run.get(key) is not None
    ]
    report.add_table(
        "How far to trust it",
        rows,
        note="the step model's held-out error for this chip family and the catalog's estimated inputs, combined by "
        f"a seeded Monte Carlo ({uncertainty['samples']:,} draws)",
    )
    report.add_figure("What moves the answer", fig.sensitivity_figure(uncertainty))


def report_of(result: object) -> HtmlReport:
    """The report of one command's result (``--report PATH``)."""
    if isinstance(result, StepEstimate):
        return estimate_report(result)
    if isinstance(result, SimulatedStep):
        return simulation_report(result)
    if isinstance(result, SearchResult):
        report = search_report(result)
        if result.verification is not None:
            doc = result.verification.to_dict()
            report.add_table("Best plans verified by simulation", doc["plans"], note="; ".join(doc["moves"]))
        return report
    if isinstance(result, RunPlan):
        return run_report(result)
    if isinstance(result, ServeEstimate):
        return serve_estimate_report(result)
    if isinstance(result, SimulationRun):
        doc = result.result.to_dict()
        report = HtmlReport(
            title="Serving simulation",
            answer=AnswerCard(
                headlines=(
                    Headline("replicas", doc["replicas"]),
                    Headline("output tokens/s", doc["output_tokens_per_s"]),
                    Headline("TTFT p99 (ms)", (doc["ttft_ms"] or {}).get("p99")),
                    Headline("TPOT p99 (ms)", (doc["tpot_ms"] or {}).get("p99")),
                    Headline("utilisation (%)", doc["utilisation"] * 100),
                ),
                notes=tuple(doc["warnings"]),
            ),
        )
        add_simulation(report, result.scenario, result.result)
        report.data = {"simulation": result.result.to_dict()}
        return report
    raise InputError(f"--report: no report for a {type(result).__name__}")


def trace_of(result: object, path: Path | str, *, max_events: int | None = None) -> None:
    """The Chrome/Perfetto trace of one command's result (``--trace PATH``): a training step or a simulation.

    A training step's trace is refused past ``max_events`` events (default ``report.trace.MAX_TRACE_EVENTS``).
    """
    from rainier.report.trace import MAX_TRACE_EVENTS, serving_trace, step_trace, write_trace
    from rainier.serve.simulate import simulate_timeline

    if isinstance(result, SimulatedStep):
        from rainier.report.sim_trace import sim_trace

        write_trace(sim_trace(result, max_events=max_events or MAX_TRACE_EVENTS), path)
    elif isinstance(result, StepEstimate):
        write_trace(step_trace(result, max_events=max_events or MAX_TRACE_EVENTS), path)
    elif isinstance(result, SimulationRun):
        recorded = replace(result.scenario, record_batches=TRACE_BATCHES)
        write_trace(serving_trace(simulate_timeline(recorded)), path)
    else:
        kind = type(result).__name__
        raise InputError(f"--trace: traces are written for a training step or a serving simulation, not a {kind}")
