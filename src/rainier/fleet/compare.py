"""The same training run on other accelerators, side by side: the price-performance question.

Every row stands on the same footing (:mod:`rainier.fleet.footing`, printed above the table): a cluster of the
same facility power as the base run (``at="power"``: a fleet is limited by its megawatts) or of the same device
count (``at="devices"``), one network (sites and WAN left out for every row alike), one global batch, the same
power accounting, and each chip's best training precision. A catalog cluster sized to the base's power
(``equal_power_to``) is used where one exists; otherwise an ad-hoc cluster of the accelerator's fleet building
block (``fleet.power.fleet_cluster``) with a flat network, at least one system. Each row then tries a few counts
near its target (``footing.size_cluster``) and runs on the fastest. Accelerators without a public price get the
break-even price at which they would match the cheapest priced row's cost per token; each price names its kind
(on-demand or EC2 Capacity Block) and date, since the two are not comparable.

With Trainium2 and Trainium3 both present, it also prints Trn3-vs-Trn2 UltraServer ratios (all higher is
better) of compute, memory bandwidth, tokens per joule and tokens per second against AWS's claims (4.4x, nearly
4x, 4x "energy efficiency"; shared/reference/hardware.md, AIW-trn3); the last two from the same job on 128
UltraServers of each kind, at the comparison's batch and each chip's precision.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from rainier.errors import InputError, field_error
from rainier.fleet.footing import (
    Footing,
    Sizing,
    StepSource,
    best_training_precision,
    common_batch_sequences,
    model_parallel_sizes,
    row_fit,
    size_cluster,
)
from rainier.fleet.plan import RunPlan
from rainier.fleet.power import Footprint, devices_for_power, fleet_cluster, footprint, power_basis
from rainier.frame import frame
from rainier.hardware import Cluster, Site, clusters, get_accelerator, get_system, systems
from rainier.precision import Precision
from rainier.workload.shape import TransformerShape

if TYPE_CHECKING:
    import pandas as pd

# AWS's launch claims for the Trn3 Gen2 UltraServer over the Trn2 UltraServer (AIW-trn3).
AWS_TRN3_CLAIMS = {"compute": 4.4, "memory_bandwidth": 4.0, "energy_per_token": 4.0}
# AWS: Trn2 instances give 30-40% better price-performance than GPU-based P5e/P5en (JB-trn2-de).
AWS_TRN2_PRICE_PERFORMANCE = (1.3, 1.4)
AWS_TRN2_PRICE_PERFORMANCE_AGAINST = "h200-sxm"  # P5e/P5en are H200 instances
TRN2_ULTRASERVER = "trn2-ultraserver"
TRN3_ULTRASERVER = "trn3-ultraserver-gen2"
ONE_SITE = "single-site"


class CompareAt(StrEnum):
    POWER = "power"
    DEVICES = "devices"


def price_kind(note: str) -> str:
    """A catalog price note's kind: EC2 Capacity Block, on-demand, reserved-instance effective, or other."""
    text = note.lower()
    if "capacity block" in text:
        return "capacity-block"
    if "on-demand" in text and "not firmly" not in text:
        return "on-demand"
    if "ri-effective" in text:
        return "reserved"
    return "other"


def price_provenance(source: str) -> tuple[str, str]:
    """(kind, note) of a price's source: a catalog system or cluster id, ``--price`` or none."""
    if source in ("", "none"):
        return "none", ""
    if source == "--price":
        return "given", "--price"
    for system in systems():
        if system.id == source:
            return price_kind(system.price_note or ""), f"{system.id}: {system.price_note or 'no note'}"
    for cluster in clusters():
        if cluster.id == source:
            return price_kind(cluster.price_note or ""), f"{cluster.id}: {cluster.price_note or 'no note'}"
    return "other", source


@dataclass(frozen=True, slots=True, kw_only=True)
class CompareRow:
    """One accelerator's run (or why it has none), how its size was chosen, and its break-even price."""

    accelerator: str
    run: RunPlan | None
    error: str = ""
    break_even_usd_per_device_hour: float | None = None
    break_even_against: str = ""
    footing: Footing | None = None
    precision: str = ""
    sizing: Sizing | None = None
    provisioned: Footprint | None = None  # the target cluster the row was sized to (idle devices included)

    def to_dict(self) -> dict[str, Any]:
        kind, note = price_provenance(self.run.price.source) if self.run is not None else ("none", "")
        footing = self.footing
        return {
            "accelerator": self.accelerator,
            "run": None if self.run is None else self.run.to_dict(),
            "error": self.error,
            "break_even_usd_per_device_hour": self.break_even_usd_per_device_hour,
            "break_even_against": self.break_even_against,
            "footing": None if footing is None else footing.to_dict(),
            "precision": self.precision,
            "gbs": None if footing is None else footing.gbs,
            "tokens_per_step": None if footing is None else footing.tokens_per_step,
            "target_devices": None if self.sizing is None else self.sizing.target_devices,
            "chosen_devices": None if self.sizing is None else self.sizing.chosen_devices,
            "idle_share": None if self.sizing is None else self.sizing.idle_share,
            "sizing_reason": "" if self.sizing is None else self.sizing.reason,
            "sizing_tried": [] if self.sizing is None else [t.to_dict() for t in self.sizing.tried],
            "provisioned_facility_mw": None if self.provisioned is None else self.provisioned.facility_power_mw,
            "price_kind": kind,
            "price_note": note,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """A run repeated on several accelerators on one footing, and the Trn3-vs-Trn2 ratios when both are present."""

    at: CompareAt
    base_cluster: str
    rows: tuple[CompareRow, ...]
    trn3_vs_trn2: dict[str, dict[str, float | None]] | None
    footing: Footing | None = None
    ratio_workload: str = ""  # the job the Trn3-vs-Trn2 run ratios come from
    price_claims: tuple[str, ...] = ()  # AWS's price-performance claims beside what the rows imply

    def to_frame(self) -> pd.DataFrame:
        """This result as a pandas DataFrame (``rainier.frame``)."""
        return frame(self.to_dict(), self.to_dict()["rows"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.value,
            "base_cluster": self.base_cluster,
            "footing": None if self.footing is None else self.footing.to_dict(),
            "footing_line": "" if self.footing is None else self.footing.describe(),
            "rows": [r.to_dict() for r in self.rows],
            "trn3_vs_trn2": self.trn3_vs_trn2,
            "trn3_vs_trn2_workload": self.ratio_workload,
            "price_claims": list(self.price_claims),
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


def one_network(cluster: Cluster) -> Cluster:
    """``cluster`` with its sites as one (the WAN left out): the site rule every comparison row shares."""
    if len(cluster.sites) <= 1 and not cluster.wan_links:
        return cluster
    return replace(cluster, sites=(Site(name=ONE_SITE, num_systems=cluster.num_systems),), wan_links=())


# Runs a row's job on a cluster with that row's step source: (cluster, step source) -> RunPlan.
RunOn = Callable[[Cluster, StepSource], RunPlan]


def compare_runs(
    base: Cluster,
    accelerators: list[str],
    *,
    at: CompareAt,
    footing: Footing,
    shape: TransformerShape,
    step_for: Callable[[str, int], StepSource],
    run_on: RunOn,
) -> Comparison:
    """Each accelerator's comparison cluster, sized by ``footing.size_cluster``, run with its own step source.

    The batch is chosen here, for all rows at once (``footing.common_batch_sequences``), unless the footing's
    is exact. ``step_for(accelerator, gbs)`` gives the step source at that batch and the chip's precision; a row
    whose cluster or run fails (no plan fits) carries the error instead.
    """
    targets: dict[str, Cluster | ValueError] = {}
    for accelerator_id in accelerators:
        try:
            targets[accelerator_id] = one_network(comparison_cluster(base, accelerator_id, at))
        except ValueError as exc:
            targets[accelerator_id] = exc
    clusters_in = [t for t in targets.values() if isinstance(t, Cluster)]
    ratio_clusters = [_ratio_cluster("trn2", TRN2_ULTRASERVER), _ratio_cluster("trn3", TRN3_ULTRASERVER)]
    ratio_gbs = footing.gbs
    if footing.batch_source != "gbs":
        footing = replace(footing, gbs=_common_batch(footing, shape, clusters_in))
        # the Trn3-vs-Trn2 run (128 UltraServers a side) takes the batch target rounded the same way for its own
        # two clusters: a batch the big rows divide (e.g. 3^6 x 8) can leave a power-of-two Trn2 cluster only
        # dp=8, and the per-UltraServer ratio would measure that, not the chips
        ratio_gbs = _common_batch(footing, shape, ratio_clusters)
    rows: list[CompareRow] = []
    for accelerator_id, target in targets.items():
        if not isinstance(target, Cluster):
            rows.append(CompareRow(accelerator=accelerator_id, run=None, error=str(target), footing=footing))
            continue
        step_on = step_for(accelerator_id, footing.gbs)
        chosen, sizing = size_cluster(target, step_on, footing.idle_share, shape=shape, gbs=footing.gbs)
        row = CompareRow(
            accelerator=accelerator_id,
            run=None,
            footing=footing,
            precision=_precision(footing, accelerator_id),
            sizing=sizing,
            provisioned=footprint(target),
        )
        try:
            rows.append(replace(row, run=run_on(chosen, step_on)))
        except InputError as exc:
            rows.append(replace(row, error=str(exc)))
    rows = _with_break_even(rows)
    ratio_footing = replace(footing, gbs=ratio_gbs)
    ratios = _trn3_ratios(rows, lambda a: step_for(a, ratio_gbs), run_on, ratio_footing, shape)
    workload = ""
    if ratios is not None:
        precisions = ", ".join(f"{a} {_precision(footing, a)}" for a in ("trn2", "trn3"))
        workload = (
            f"{shape.name}, {ratio_gbs:,} x {footing.seq_len:,} = {ratio_footing.tokens_per_step / 1e6:,.1f}M tokens "
            f"per step, {precisions}"
        )
    return Comparison(
        at=at,
        base_cluster=base.id,
        rows=tuple(rows),
        trn3_vs_trn2=ratios,
        footing=footing,
        ratio_workload=workload,
        price_claims=_price_claims(rows),
    )


def _common_batch(footing: Footing, shape: TransformerShape, targets: list[Cluster]) -> int:
    """The batch of ``footing.common_batch_sequences`` for these rows' target clusters."""
    sizes = {t.id: model_parallel_sizes(shape, t.scale_up_domain_devices) for t in targets}

    def worst_fit(gbs: int) -> float:
        return max((row_fit(t.num_systems, t.system.num_devices, gbs, sizes[t.id]) for t in targets), default=0.0)

    return common_batch_sequences(footing.batch_target_sequences, worst_fit)


def _precision(footing: Footing, accelerator_id: str) -> str:
    if footing.precision != "best":
        return footing.precision
    return best_training_precision(get_accelerator(accelerator_id)).value


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
            replace(
                row,
                break_even_usd_per_device_hour=usd_per_token / device_hours_per_token,
                break_even_against=reference.accelerator,
            )
        )
    return out


def _price_claims(rows: list[CompareRow]) -> tuple[str, ...]:
    """AWS's Trn2 price-performance claim beside the Trn2 price it implies against this run's H200 row."""
    runs = {r.accelerator: r.run for r in rows if r.run is not None}
    trn2, gpu = runs.get("trn2"), runs.get(AWS_TRN2_PRICE_PERFORMANCE_AGAINST)
    if trn2 is None or gpu is None or gpu.cost_usd is None:
        return ()
    kind, note = price_provenance(gpu.price.source)
    gpu_usd_per_token = gpu.cost_usd / gpu.trained_tokens
    trn2_hours_per_token = trn2.device_hours / trn2.trained_tokens
    low, high = (gpu_usd_per_token / ratio / trn2_hours_per_token for ratio in reversed(AWS_TRN2_PRICE_PERFORMANCE))
    return (
        f"AWS claim: Trn2 gives {AWS_TRN2_PRICE_PERFORMANCE[0] - 1:.0%}-{AWS_TRN2_PRICE_PERFORMANCE[1] - 1:.0%} better "
        f"price-performance than P5e/P5en (JB-trn2-de); on this run that holds at a Trn2 price of "
        f"${low:,.2f}-${high:,.2f} per device-hour against {AWS_TRN2_PRICE_PERFORMANCE_AGAINST} at "
        f"${gpu.price.usd_per_device_hour:,.2f} ({kind}: {note})",
    )


# UltraServers per side in the controlled Trn3-vs-Trn2 run (8,192 Trn2 / 18,432 Trn3 chips): the same job on
# the same number of UltraServers, so the ratio is per UltraServer and not an artefact of unequal cluster sizes.
RATIO_ULTRASERVERS = 128
# The ratios are per UltraServer used, so idle ones cost nothing there: each side may look this far below 128 for
# a count its plans divide well (a power-of-two Trn2 cluster and a 2^11 x 9 Trn3 one rarely suit the same batch).
RATIO_IDLE_SHARE = 0.25


def _ratio_cluster(accelerator_id: str, system_id: str) -> Cluster:
    return fleet_cluster(accelerator_id, RATIO_ULTRASERVERS * get_system(system_id).num_devices)


def _trn3_ratios(
    rows: list[CompareRow],
    step_for: Callable[[str], StepSource],
    run_on: RunOn,
    footing: Footing,
    shape: TransformerShape,
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

    def run(accelerator_id: str, system_id: str) -> RunPlan:
        # sized like a row (a count near 128 UltraServers the batch divides); the ratios are per UltraServer used
        step_on = step_for(accelerator_id)
        target = _ratio_cluster(accelerator_id, system_id)
        chosen, _ = size_cluster(target, step_on, RATIO_IDLE_SHARE, shape=shape, gbs=footing.gbs)
        return run_on(chosen, step_on)

    try:
        a, b = run("trn2", TRN2_ULTRASERVER), run("trn3", TRN3_ULTRASERVER)
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
        # tokens per joule, Trn3 over Trn2 (higher is better); the key keeps its first name for JSON readers
        "energy_per_token": {"rainier": energy, "aws_claim": AWS_TRN3_CLAIMS["energy_per_token"]},
        "tokens_per_joule": {"rainier": energy, "aws_claim": AWS_TRN3_CLAIMS["energy_per_token"]},
        "tokens_per_s_per_ultraserver": {"rainier": throughput, "aws_claim": None},
    }
