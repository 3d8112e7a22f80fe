"""The same training run on other accelerators, side by side: the price-performance question.

Each accelerator gets a cluster of the same facility power as the base run (``at="power"``: a fleet is limited
by its megawatts) or of the same device count (``at="devices"``). A catalog cluster sized to the base's power
(``equal_power_to``) is used where one exists; otherwise an ad-hoc cluster of the accelerator's fleet building
block (``fleet.power.fleet_cluster``) on one site with a flat network, at least one system. Accelerators
without a public price get the break-even price at which they would match the cheapest priced row's cost per
token.

With Trainium2 and Trainium3 both present, it also prints Trn3-vs-Trn2 UltraServer ratios of compute, memory
bandwidth and energy per token against AWS's claims (4.4x, nearly 4x, 4x; shared/reference/hardware.md,
AIW-trn3); the last from the same job on 1,024 UltraServers of each kind.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from rainier.errors import field_error
from rainier.fleet.plan import RunPlan
from rainier.fleet.power import devices_for_power, fleet_cluster, power_basis
from rainier.frame import frame
from rainier.hardware import Cluster, clusters, get_accelerator, get_system
from rainier.precision import Precision

if TYPE_CHECKING:
    import pandas as pd

# AWS's launch claims for the Trn3 Gen2 UltraServer over the Trn2 UltraServer (AIW-trn3).
AWS_TRN3_CLAIMS = {"compute": 4.4, "memory_bandwidth": 4.0, "energy_per_token": 4.0}
TRN2_ULTRASERVER = "trn2-ultraserver"
TRN3_ULTRASERVER = "trn3-ultraserver-gen2"


class CompareAt(StrEnum):
    POWER = "power"
    DEVICES = "devices"


@dataclass(frozen=True, slots=True, kw_only=True)
class CompareRow:
    """One accelerator's run (or why it has none) and its break-even price when it has no price of its own."""

    accelerator: str
    run: RunPlan | None
    error: str = ""
    break_even_usd_per_device_hour: float | None = None
    break_even_against: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "accelerator": self.accelerator,
            "run": None if self.run is None else self.run.to_dict(),
            "error": self.error,
            "break_even_usd_per_device_hour": self.break_even_usd_per_device_hour,
            "break_even_against": self.break_even_against,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """A run repeated on several accelerators, and the Trn3-vs-Trn2 ratios when both are present."""

    at: CompareAt
    base_cluster: str
    rows: tuple[CompareRow, ...]
    trn3_vs_trn2: dict[str, dict[str, float | None]] | None

    def to_frame(self) -> pd.DataFrame:
        """This result as a pandas DataFrame (``rainier.frame``)."""
        return frame(self.to_dict(), self.to_dict()["rows"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.value,
            "base_cluster": self.base_cluster,
            "rows": [r.to_dict() for r in self.rows],
            "trn3_vs_trn2": self.trn3_vs_trn2,
        }


def parse_accelerators(text: str) -> list[str]:
    """``"trn2,trn3,h100-sxm"`` -> catalog ids (unknown names raise with suggestions)."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise field_error("compare", text, "a comma-separated list of accelerator ids, e.g. trn2,trn3,h100-sxm")
    return [get_accelerator(name).id for name in dict.fromkeys(names)]


def comparison_cluster(base: Cluster, accelerator_id: str, at: CompareAt) -> Cluster:
    """The cluster ``accelerator_id`` gets in a comparison with ``base`` (see the module docstring)."""
    if accelerator_id == base.accelerator.id:
        return base
    if at is CompareAt.POWER:
        for candidate in clusters():
            if candidate.equal_power_to == base.id and candidate.accelerator.id == accelerator_id:
                return candidate
    probe = fleet_cluster(accelerator_id, 1)
    per_system = probe.system.num_devices
    if at is CompareAt.DEVICES:
        count = max(1, round(base.num_devices / per_system)) * per_system
    else:
        if base.facility_power_w is None:
            raise field_error("compare-at", at.value, f"devices: {base.id} has no facility power to match")
        if power_basis(probe).watts_per_device is None:
            raise field_error("compare", accelerator_id, "an accelerator with a power figure in the catalog")
        count = max(devices_for_power(probe, base.facility_power_w), per_system)  # at least one system
    return fleet_cluster(accelerator_id, count)


def compare_runs(
    base: Cluster,
    accelerators: list[str],
    *,
    at: CompareAt,
    run_on: Callable[[Cluster], RunPlan],
) -> Comparison:
    """``run_on`` each accelerator's comparison cluster; a failure (no plan fits) becomes that row's error."""
    rows: list[CompareRow] = []
    for accelerator_id in accelerators:
        try:
            cluster = comparison_cluster(base, accelerator_id, at)
            rows.append(CompareRow(accelerator=accelerator_id, run=run_on(cluster)))
        except ValueError as exc:
            rows.append(CompareRow(accelerator=accelerator_id, run=None, error=str(exc)))
    rows = _with_break_even(rows)
    return Comparison(at=at, base_cluster=base.id, rows=tuple(rows), trn3_vs_trn2=_trn3_ratios(rows, run_on))


def _with_break_even(rows: list[CompareRow]) -> list[CompareRow]:
    priced = [r for r in rows if r.run is not None and r.run.usd_per_million_tokens is not None]
    if not priced:
        return rows
    reference = min(priced, key=lambda r: (r.run.usd_per_million_tokens if r.run is not None else None) or math.inf)
    assert reference.run is not None and reference.run.cost_usd is not None
    usd_per_token = reference.run.cost_usd / reference.run.trained_tokens
    out = []
    for row in rows:
        run = row.run
        if run is None or run.price.usd_per_device_hour is not None:
            out.append(row)
            continue
        device_hours_per_token = run.device_hours / run.trained_tokens
        out.append(
            CompareRow(
                accelerator=row.accelerator,
                run=run,
                break_even_usd_per_device_hour=usd_per_token / device_hours_per_token,
                break_even_against=reference.accelerator,
            )
        )
    return out


# UltraServers per side in the controlled Trn3-vs-Trn2 run (8,192 Trn2 / 18,432 Trn3 chips): the same job on
# the same number of UltraServers, so the ratio is per UltraServer and not an artefact of unequal cluster sizes.
RATIO_ULTRASERVERS = 128


def _trn3_ratios(
    rows: list[CompareRow], run_on: Callable[[Cluster], RunPlan]
) -> dict[str, dict[str, float | None]] | None:
    if not {"trn2", "trn3"} <= {r.accelerator for r in rows}:
        return None
    trn2, trn3 = get_system(TRN2_ULTRASERVER), get_system(TRN3_ULTRASERVER)
    compute = trn3.peak_flop_per_s(Precision.FP8) / trn2.peak_flop_per_s(Precision.FP8)
    memory = trn3.num_devices * trn3.accelerator.hbm_bw_bytes_per_s
    memory /= trn2.num_devices * trn2.accelerator.hbm_bw_bytes_per_s
    energy = throughput = None
    a: RunPlan | None
    b: RunPlan | None
    try:
        a = run_on(fleet_cluster("trn2", RATIO_ULTRASERVERS * trn2.num_devices))
        b = run_on(fleet_cluster("trn3", RATIO_ULTRASERVERS * trn3.num_devices))
    except ValueError:
        a = b = None
    if a is not None and b is not None:
        # failure-free: tokens per step / (facility power x step time), and tokens per second per UltraServer
        per_joule = [
            r.tokens_per_step / (r.footprint.facility_power_w * r.step_time_s) if r.footprint.facility_power_w else None
            for r in (a, b)
        ]
        if per_joule[0] and per_joule[1]:
            energy = per_joule[1] / per_joule[0]
        throughput = (b.tokens_per_step / b.step_time_s / b.footprint.scale_up_domains) / (
            a.tokens_per_step / a.step_time_s / a.footprint.scale_up_domains
        )
    power_a, power_b = (fleet_cluster(x, 1).power_w_per_device_all_in for x in ("trn2", "trn3"))
    peak_per_watt = None
    if power_a and power_b:
        peak_per_watt = (trn3.accelerator.peak_flop_per_s(Precision.FP8) / power_b) / (
            trn2.accelerator.peak_flop_per_s(Precision.FP8) / power_a
        )
    return {
        "compute": {"rainier": compute, "aws_claim": AWS_TRN3_CLAIMS["compute"]},
        "memory_bandwidth": {"rainier": memory, "aws_claim": AWS_TRN3_CLAIMS["memory_bandwidth"]},
        "peak_fp8_per_watt": {"rainier": peak_per_watt, "aws_claim": None},
        "energy_per_token": {"rainier": energy, "aws_claim": AWS_TRN3_CLAIMS["energy_per_token"]},
        "tokens_per_s_per_ultraserver": {"rainier": throughput, "aws_claim": None},
    }
