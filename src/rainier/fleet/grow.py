"""Capacity growth: devices online quarter by quarter from a facility power schedule, and what they can train.

``--power-schedule "2025Q4:1GW,2026Q4:+1GW@trn3"`` gives facility power per quarter (absolute, or ``+`` an
increment); each increment is filled with the accelerators of ``--mix`` (``trn2,trn3`` in equal shares of
power, or weighted ``trn2:0.25,trn3:0.75``) unless the entry names its own after ``@``. Devices per watt come
from the all-in power per device and PUE (``fleet.power``: a catalog cluster of that accelerator where one
exists, else its largest system). Power is never retired.

Training capacity: each accelerator's tokens per second per device is measured once, on a reference job of
the model (its first quarter's devices, capped at ``REFERENCE_MAX_DEVICES``), and scaled by the devices online;
runs per quarter = tokens the whole fleet could train in the quarter / tokens per run. That linear scaling
ignores the efficiency lost by ever larger jobs, so it is an upper bound for one job using everything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rainier.errors import field_error
from rainier.fleet.limits import MAX_FACILITY_POWER_W, MAX_MIX_SHARE
from rainier.fleet.power import fleet_cluster, power_basis
from rainier.hardware import Cluster, get_accelerator
from rainier.precision import Precision
from rainier.units import SECONDS_PER_DAY

DAYS_PER_QUARTER = 365.25 / 4
REFERENCE_MAX_DEVICES = 65_536
_ENTRY = re.compile(
    r"^(?P<year>\d{4})q(?P<quarter>[1-4]):(?P<plus>\+)?(?P<value>\d+(?:\.\d+)?)(?P<unit>gw|mw)(?:@(?P<chips>.+))?$"
)
_UNIT_W = {"gw": 1e9, "mw": 1e6}


@dataclass(frozen=True, slots=True, kw_only=True)
class PowerStep:
    """One schedule entry: a quarter, the facility power added then, and the accelerator shares filling it."""

    year: int
    quarter: int
    added_w: float
    mix: tuple[tuple[str, float], ...]

    @property
    def label(self) -> str:
        return f"{self.year}Q{self.quarter}"


def parse_mix(text: str, field: str = "mix") -> tuple[tuple[str, float], ...]:
    """``trn2,trn3`` (equal power shares) or ``trn2:0.25,trn3:0.75`` -> normalised (accelerator id, share)."""
    parts = [p.strip().lower() for p in text.split(",") if p.strip()]
    if not parts:
        raise field_error(field, text, "accelerator ids with optional power shares, e.g. trn2:0.5,trn3:0.5")
    items: list[tuple[str, float]] = []
    for part in parts:
        name, _, weight_text = part.partition(":")
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise field_error(field, part, "a share after ':' such as trn3:0.5") from None
        if not 0 < weight <= MAX_MIX_SHARE:  # also refuses nan and inf
            raise field_error(field, part, f"a positive share, at most {MAX_MIX_SHARE:g}")
        items.append((get_accelerator(name).id, weight))
    total = sum(w for _, w in items)
    return tuple((name, w / total) for name, w in items)


def parse_power_schedule(text: str, mix: str) -> list[PowerStep]:
    """Parse the schedule (module docstring); quarters must increase and power must not fall."""
    entries = [e.strip().lower().replace(" ", "") for e in text.split(",") if e.strip()]
    if not entries:
        raise field_error("power-schedule", text, "entries like 2025Q4:1GW,2026Q4:+1GW")
    default_mix = parse_mix(mix)
    steps: list[PowerStep] = []
    total = 0.0
    for entry in entries:
        match = _ENTRY.match(entry)
        if match is None:
            raise field_error("power-schedule", entry, "YYYYQn:POWER with POWER like 1GW, 500MW or +1GW[@trn3]")
        year, quarter = int(match["year"]), int(match["quarter"])
        if steps and (year, quarter) <= (steps[-1].year, steps[-1].quarter):
            raise field_error("power-schedule", entry, f"quarters in increasing order (after {steps[-1].label})")
        value = float(match["value"]) * _UNIT_W[match["unit"]]
        added = value if match["plus"] else value - total
        if added <= 0:
            raise field_error(
                "power-schedule", entry, f"more power than the {total / 1e9:g} GW already installed (or +increment)"
            )
        if not total + added <= MAX_FACILITY_POWER_W:  # also refuses inf (a power written with 400 digits)
            raise field_error(
                "power-schedule", entry, f"a facility of at most {MAX_FACILITY_POWER_W / 1e9:,.0f} GW in all"
            )
        chips = parse_mix(match["chips"], "power-schedule") if match["chips"] else default_mix
        steps.append(PowerStep(year=year, quarter=quarter, added_w=added, mix=chips))
        total += added
    return steps


def facility_watts_per_device(accelerator_id: str) -> tuple[float, str]:
    """All-in watts x PUE per device of an accelerator, and where the figure came from."""
    basis = power_basis(fleet_cluster(accelerator_id, 1))
    if basis.watts_per_device is None:
        raise field_error("mix", accelerator_id, "an accelerator with a power figure in the catalog")
    return basis.watts_per_device * basis.pue, basis.basis


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarterCapacity:
    """The fleet online at the end of one quarter."""

    label: str
    facility_power_w: float
    devices: dict[str, int]
    dense_fp8_flop_per_s: float
    runs_per_quarter: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "quarter": self.label,
            "facility_power_gw": self.facility_power_w / 1e9,
            "devices": dict(self.devices),
            "total_devices": sum(self.devices.values()),
            "dense_fp8_eflop_per_s": self.dense_fp8_flop_per_s / 1e18,
            "runs_per_quarter": self.runs_per_quarter,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class GrowthPlan:
    """Quarters of capacity, with the per-device training rate used for ``runs_per_quarter``."""

    quarters: tuple[QuarterCapacity, ...]
    power_basis: dict[str, str]
    model: str | None
    tokens_per_run: float | None
    tokens_per_s_per_device: dict[str, float]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "tokens_per_run": self.tokens_per_run,
            "tokens_per_s_per_device": dict(self.tokens_per_s_per_device),
            "power_basis": dict(self.power_basis),
            "quarters": [q.to_dict() for q in self.quarters],
            "notes": list(self.notes),
        }


def grow(
    steps: list[PowerStep],
    *,
    tokens_per_run: float | None = None,
    model: str | None = None,
    rate_of: Callable[[Cluster], float | None] | None = None,
) -> GrowthPlan:
    """Capacity per quarter; with ``rate_of`` (tokens/s of the model on a cluster) also runs per quarter."""
    devices: dict[str, int] = {}
    watts: dict[str, float] = {}
    basis: dict[str, str] = {}
    rates: dict[str, float] = {}
    notes: list[str] = []
    quarters: list[QuarterCapacity] = []
    power = 0.0
    for step in steps:
        power += step.added_w
        for accelerator_id, share in step.mix:
            if accelerator_id not in watts:
                watts[accelerator_id], basis[accelerator_id] = facility_watts_per_device(accelerator_id)
            added = math.floor(step.added_w * share / watts[accelerator_id])
            devices[accelerator_id] = devices.get(accelerator_id, 0) + added
            if rate_of is not None and accelerator_id not in rates and added > 0:
                reference = fleet_cluster(accelerator_id, min(added, REFERENCE_MAX_DEVICES))
                rate = rate_of(reference)
                if rate is None:
                    notes.append(f"no valid plan for {model} on {reference.num_devices} {accelerator_id}")
                    rates[accelerator_id] = 0.0
                else:
                    rates[accelerator_id] = rate / reference.num_devices
        flops = sum(n * get_accelerator(a).peak_flop_per_s(_fp8_or_bf16(a)) for a, n in devices.items())
        runs = None
        if rate_of is not None and tokens_per_run:
            fleet_rate = sum(devices[a] * rates.get(a, 0.0) for a in devices)
            runs = fleet_rate * DAYS_PER_QUARTER * SECONDS_PER_DAY / tokens_per_run
        quarters.append(
            QuarterCapacity(
                label=step.label,
                facility_power_w=power,
                devices=dict(devices),
                dense_fp8_flop_per_s=flops,
                runs_per_quarter=runs,
            )
        )
    if rate_of is not None:
        notes.append(
            "runs per quarter scale each accelerator's tokens/s per device on a reference job "
            f"(<= {REFERENCE_MAX_DEVICES:,} devices) linearly to the whole fleet: an upper bound"
        )
    return GrowthPlan(
        quarters=tuple(quarters),
        power_basis=basis,
        model=model,
        tokens_per_run=tokens_per_run,
        tokens_per_s_per_device=rates,
        notes=tuple(notes),
    )


def _fp8_or_bf16(accelerator_id: str) -> Precision:
    accelerator = get_accelerator(accelerator_id)
    return Precision.FP8 if accelerator.supports(Precision.FP8) else Precision.BF16
