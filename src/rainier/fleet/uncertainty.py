"""Error bars on a run's headline numbers, and what moves them (the inputs of a tornado chart).

A run's step time, days, energy, cost and tokens per joule are only as good as the step model and the catalog
inputs behind them. Two kinds of uncertainty are carried:

- **The step model's error on unseen runs.** The held-out ratios of measured to predicted step time of the
  accelerator's efficiency family (leave-one-group-out over the public cases, :mod:`rainier.perf.residuals`).
- **Inputs marked as estimates.** Each is varied over a stated range, one at a time, with everything else
  fixed: scale-up and scale-out bandwidth where the catalog estimates them (the step is re-estimated for the
  run's plan), the WAN between sites (its share of the step scales inversely), power per device, and, when
  failures are modelled, the restart time and the failure rates (the effective training time ratio follows
  Daly's model, :func:`rainier.fleet.goodput.analytic_goodput`). Ranges: ``ESTIMATE_SPAN`` for an estimated
  figure, ``RESTART_SPAN`` for the restart (no public record of its parts), ``FAILURE_SPAN`` for failure rates
  carried to another chip than the reference run's (``FAILURE_SPAN_REFERENCE`` on the reference chip itself).

The one-at-a-time responses are the sensitivity (tornado) rows. The interval combines them: a seeded Monte
Carlo draws the step model's ratio from its family's held-out ratios and each input uniformly in log space over
its range, adds the inputs' effects in log space (each interpolated between its low- and high-end responses:
a first-order combination), and reports the 10th and 90th percentiles of every headline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rainier.fleet.failures import FailureModel, committed_failures
from rainier.fleet.plan import RunPlan
from rainier.hardware import Cluster
from rainier.perf.residuals import HIGH_QUANTILE, LOW_QUANTILE, ResidualBand, committed_residuals
from rainier.perf.result import StepEstimate

ESTIMATE_SPAN = 1.25  # an estimated catalog figure: anywhere from /1.25 to x1.25
RESTART_SPAN = 2.0  # the restart time's parts are engineering estimates: /2 to x2
FAILURE_SPAN = 2.0  # failure rates measured on H100 (Llama 3) and carried to another chip: /2 to x2
FAILURE_SPAN_REFERENCE = 1.25  # on the reference chip: another site and software stack, /1.25 to x1.25
SAMPLES = 4000
SEED = 0
Factor = float | NDArray[np.float64]  # one change, or one per Monte Carlo draw
HEADLINES = (
    "step_time_s",
    "wall_clock_days",
    "device_hours",
    "energy_mwh",
    "cost_usd",
    "tokens_per_joule",
    "usd_per_million_tokens",
)


@dataclass(frozen=True, slots=True)
class Change:
    """Multiplicative changes to a run's primitive quantities: step time, power, price, effective time ratio."""

    step: float = 1.0
    power: float = 1.0
    ettr: float = 1.0

    def log(self) -> np.ndarray:
        return np.log([self.step, self.power, self.ettr])


@dataclass(frozen=True, slots=True, kw_only=True)
class InputRange:
    """One uncertain input: what it is, its range, and the run's change at each end."""

    name: str
    range_text: str
    reason: str
    low: Change  # the input at the low end of its range
    high: Change


@dataclass(frozen=True, slots=True, kw_only=True)
class Sensitivity:
    """The headlines with one input at each end of its range (a tornado row)."""

    name: str
    range_text: str
    reason: str
    at_low: dict[str, float | None]
    at_high: dict[str, float | None]

    @property
    def swing(self) -> float:
        """|log| of the wall-clock days' ratio between the two ends: how much this input moves the answer."""
        low, high = self.at_low["wall_clock_days"], self.at_high["wall_clock_days"]
        return abs(math.log(high / low)) if low and high else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.name,
            "range": self.range_text,
            "reason": self.reason,
            "at_low": dict(self.at_low),
            "at_high": dict(self.at_high),
            "swing": self.swing,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Uncertainty:
    """Central 80% intervals of a run's headlines and the inputs ranked by how much they move the days."""

    intervals: dict[str, tuple[float, float] | None]
    sensitivities: tuple[Sensitivity, ...]
    band: ResidualBand
    samples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "intervals": {k: None if v is None else list(v) for k, v in self.intervals.items()},
            "quantiles": [LOW_QUANTILE, HIGH_QUANTILE],
            "step_model": {**self.band.to_dict(), "source": "catalog/residuals.yaml (leave-one-group-out)"},
            "sensitivity": [s.to_dict() for s in self.sensitivities],
            "samples": self.samples,
            "seed": self.seed,
            "method": "one-at-a-time responses; Monte Carlo over the step model's held-out ratios and each input's "
            "range, combined in log space",
        }

    def flat(self) -> dict[str, float | None]:
        """``<headline>_low`` and ``<headline>_high`` for JSON."""
        out: dict[str, float | None] = {}
        for key, value in self.intervals.items():
            out[f"{key}_low"] = None if value is None else value[0]
            out[f"{key}_high"] = None if value is None else value[1]
        return out


def headlines(run: RunPlan, change: Change) -> dict[str, float | None]:
    """The run's headline numbers after ``change`` (the plan, batch and footprint stay as they are)."""
    scaled = scaled_headlines(run, change.step, change.power, change.ettr)
    return {key: None if value is None else float(value) for key, value in scaled.items()}


def scaled_headlines(run: RunPlan, step: Factor, power: Factor, ettr: Factor) -> dict[str, Factor | None]:
    """The run's own headlines scaled by factors on step time, power and effective training time ratio (floats, or
    arrays of Monte Carlo draws): time, device-hours and cost go as ``step / ettr``, energy also as ``power``."""
    time = step / ettr
    energy = run.energy_mwh
    cost = run.cost_usd
    per_joule = run.tokens_per_joule
    per_million = run.usd_per_million_tokens
    return {
        "step_time_s": run.step_time_s * step,
        "wall_clock_days": run.wall_clock_days * time,
        "device_hours": run.device_hours * time,
        "energy_mwh": None if energy is None else energy * power * time,
        "cost_usd": None if cost is None else cost * time,
        "tokens_per_joule": None if per_joule is None else per_joule / (power * time),
        "usd_per_million_tokens": None if per_million is None else per_million * time,
    }


# ----------------------------------------------------------------------------------------------------------------
# The inputs
# ----------------------------------------------------------------------------------------------------------------

StepOn = Callable[[Cluster], StepEstimate | None]  # the run's plan re-estimated on a changed cluster
EttrOf = Callable[[float, float], float]  # (restart factor, failure-rate factor) -> analytic ETTR


def _scaled_axes(cluster: Cluster, factor: float) -> Cluster:
    system = cluster.system
    axes = tuple(
        replace(a, link_bw_bytes_per_s_per_direction=a.link_bw_bytes_per_s_per_direction * factor) for a in system.axes
    )
    return replace(cluster, system=replace(system, axes=axes))


def _scaled_nic(cluster: Cluster, factor: float) -> Cluster:
    system = cluster.system
    nic = system.nic_bw_bytes_per_s_per_device
    assert nic is not None
    return replace(cluster, system=replace(system, nic_bw_bytes_per_s_per_device=nic * factor))


def _step_change(run: RunPlan, step_on: StepOn, changed: Cluster, one_site_step: float) -> float:
    """The run's step after re-estimating its one-network part on ``changed`` (the WAN part kept)."""
    found = step_on(changed)
    if found is None:
        return 1.0
    return (run.step_time_s - one_site_step + found.step_time_s) / run.step_time_s


def input_ranges(
    run: RunPlan,
    cluster: Cluster,
    *,
    step_on: StepOn,
    ettr_of: EttrOf | None,
    reference_accelerator: str,
) -> list[InputRange]:
    """Every uncertain input of this run that the catalog marks as an estimate, with its low- and high-end change."""
    out: list[InputRange] = []
    span = ESTIMATE_SPAN
    spread = f"/{span:g} to x{span:g}"
    one_site = run.estimate.step_time_s
    system = cluster.system

    def bandwidth(name: str, reason: str, scaled: Callable[[Cluster, float], Cluster]) -> InputRange:
        """The run's plan re-estimated with one bandwidth at each end of its range."""
        low, high = (Change(step=_step_change(run, step_on, scaled(cluster, f), one_site)) for f in (1 / span, span))
        return InputRange(name=name, range_text=spread, reason=reason, low=low, high=high)

    if "axes.link_gb_per_s" in system.estimated or any("link_gb_per_s" in a.estimated for a in system.axes):
        out.append(bandwidth("scale-up bandwidth", f"{system.id}: link bandwidth is an estimate", _scaled_axes))
    tiers = {e for e in cluster.estimated if e.startswith("network_tiers.")}
    if system.nic_bw_bytes_per_s_per_device is not None and (tiers or "nic_bw_gb_per_s" in system.estimated):
        what = ", ".join(sorted(tiers)) or "NIC bandwidth"
        out.append(bandwidth("scale-out bandwidth", f"{cluster.id}: {what} estimated", _scaled_nic))
    best = run.sites.best if run.sites is not None else None
    if best is not None and best.estimate is None and best.wan_time_s and "wan_links.tbit_per_s" in cluster.estimated:
        wan = best.wan_time_s
        out.append(
            InputRange(
                name="WAN bandwidth",
                range_text=spread,
                reason=f"{cluster.id}: WAN links estimated; the run spans its sites",
                low=Change(step=(run.step_time_s + wan * (span - 1)) / run.step_time_s),
                high=Change(step=(run.step_time_s - wan * (1 - 1 / span)) / run.step_time_s),
            )
        )
    if "power_w" in system.accelerator.estimated or "power_w_per_device_all_in" in cluster.estimated:
        out.append(
            InputRange(
                name="power per device",
                range_text=spread,
                reason=f"{system.accelerator.id}: power is an estimate",
                low=Change(power=1 / span),
                high=Change(power=span),
            )
        )
    if ettr_of is not None:
        base = ettr_of(1.0, 1.0)
        out.append(
            InputRange(
                name="restart time",
                range_text=f"/{RESTART_SPAN:g} to x{RESTART_SPAN:g}",
                reason="detection, rescheduling, process start and set-up are estimates (failures.yaml)",
                low=Change(ettr=ettr_of(1 / RESTART_SPAN, 1.0) / base),
                high=Change(ettr=ettr_of(RESTART_SPAN, 1.0) / base),
            )
        )
        rate_span = FAILURE_SPAN_REFERENCE if system.accelerator.id == reference_accelerator else FAILURE_SPAN
        out.append(
            InputRange(
                name="failure rates",
                range_text=f"/{rate_span:g} to x{rate_span:g}",
                reason=(
                    "Llama 3's per-device rates on another site"
                    if rate_span == FAILURE_SPAN_REFERENCE
                    else f"Llama 3's H100 rates carried to {system.accelerator.id}"
                ),
                low=Change(ettr=ettr_of(1.0, 1 / rate_span) / base),
                high=Change(ettr=ettr_of(1.0, rate_span) / base),
            )
        )
    return out


def scaled_failures(model: FailureModel, factor: float) -> FailureModel:
    """Every component's rate times ``factor``."""
    parts = tuple(replace(c, rate_per_device_hour=c.rate_per_device_hour * factor) for c in model.components)
    return replace(model, components=parts)


# ----------------------------------------------------------------------------------------------------------------
# Combination
# ----------------------------------------------------------------------------------------------------------------


def analyse(
    run: RunPlan,
    inputs: Sequence[InputRange],
    band: ResidualBand,
    *,
    samples: int = SAMPLES,
    seed: int = SEED,
) -> Uncertainty:
    """Tornado rows for ``inputs`` (and the step model's band) and the Monte Carlo intervals of every headline."""
    model_row = Sensitivity(
        name="step model",
        range_text=f"x{band.low:.2f} to x{band.high:.2f}",
        reason=f"held-out error of the {band.family} family ({band.n} public runs, leave-one-group-out)",
        at_low=headlines(run, Change(step=band.low)),
        at_high=headlines(run, Change(step=band.high)),
    )
    rows = [model_row] + [
        Sensitivity(
            name=i.name,
            range_text=i.range_text,
            reason=i.reason,
            at_low=headlines(run, i.low),
            at_high=headlines(run, i.high),
        )
        for i in inputs
    ]
    rng = np.random.default_rng(seed)
    ratios = np.asarray(band.ratios)
    logs = np.zeros((samples, 3))
    logs[:, 0] = np.log(rng.choice(ratios, size=samples))
    for item in inputs:
        u = rng.uniform(-1.0, 1.0, size=samples)[:, None]
        logs += np.where(u < 0, -u * item.low.log(), u * item.high.log())
    step, power, ettr = np.exp(logs).T
    drawn = scaled_headlines(run, step, power, ettr)
    intervals: dict[str, tuple[float, float] | None] = {
        key: None
        if (values := drawn[key]) is None
        else (float(np.quantile(values, LOW_QUANTILE)), float(np.quantile(values, HIGH_QUANTILE)))
        for key in HEADLINES
    }
    ranked = tuple(sorted(rows, key=lambda r: -r.swing))
    return Uncertainty(intervals=intervals, sensitivities=ranked, band=band, samples=samples, seed=seed)


def run_uncertainty(
    run: RunPlan,
    cluster: Cluster,
    *,
    step_on: StepOn,
    ettr_of: EttrOf | None,
    family: str,
) -> Uncertainty | None:
    """The run's intervals and sensitivities; None when no residuals are committed (a fresh fit without LOGO)."""
    residuals = committed_residuals()
    if residuals is None:
        return None
    reference = committed_failures().reference.accelerator
    inputs = input_ranges(run, cluster, step_on=step_on, ettr_of=ettr_of, reference_accelerator=reference)
    return analyse(run, inputs, residuals.for_family(family))
