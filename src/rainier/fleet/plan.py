"""Whole training runs: best plan, days, device-hours, footprint, power, energy, cost, deadline sizing.

``plan_run`` answers the planner's first question: train this model on this many tokens on this cluster — how
long, how much power, energy and money. The step comes from the step model (a given plan) or the plan search;
the run is ``ceil(tokens / tokens per step)`` steps; failures stretch the wall clock by the effective training
time ratio (``fleet.goodput``) and a multi-site cluster pays for its WAN (``fleet.multisite``). Energy is
facility power over the wall clock at the catalog's all-in power per device (an upper bound: devices rarely
average their rated power). Cost is device-hours at a price per device-hour.

``smallest_for_deadline`` finds the fewest devices that finish by a deadline, over cluster sizes of whole
systems in the series 1, 2, 3, 4, 6, 8, 12, ... (powers of two and three times powers of two, the sizes plans
divide well).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from rainier.errors import InputError, field_error
from rainier.fleet.limits import (
    MAX_DEVICES,
    MAX_USD_PER_DEVICE_HOUR,
    MIN_EFFECTIVE_TRAINING_TIME_RATIO,
    check_days,
    check_price,
    check_tokens,
)
from rainier.fleet.multisite import SiteAnalysis
from rainier.fleet.power import Footprint, footprint, usable_systems
from rainier.frame import frame
from rainier.hardware import Cluster, get_accelerator, resize_cluster
from rainier.parallel.plan import Infeasible
from rainier.perf.result import StepEstimate
from rainier.precision import Precision
from rainier.units import GIB, JOULES_PER_MWH, SECONDS_PER_DAY, SECONDS_PER_HOUR
from rainier.workload.flops import model_flops_per_token
from rainier.workload.shape import TransformerShape

if TYPE_CHECKING:
    import pandas as pd

    from rainier.fleet.uncertainty import Uncertainty

# Batch size that minimises loss for a compute budget C (FLOPs): B_opt = 0.2920 * C ** 0.3271 tokens
# (Bi et al. 2024, "DeepSeek LLM", arXiv 2401.02954, eq. 1, fitted on 1e17-3e20 FLOP runs; extrapolated here).
CRITICAL_BATCH_COEFF = 0.2920
CRITICAL_BATCH_EXPONENT = 0.3271
MAX_DEADLINE_DEVICES = MAX_DEVICES
# Below this many tokens per device per step a run is scale-limited (Llama 3 405B trained with ~1,000 per GPU:
# 16M tokens on 16,384 H100, shared/reference/hardware.md section 9); the run plan says so.
SMALL_BATCH_TOKENS_PER_DEVICE = 1024


def critical_batch_tokens(compute_flop: float) -> float:
    """DeepSeek LLM's optimal batch in tokens for a training compute budget (see the constants above)."""
    if not compute_flop > 0 or not math.isfinite(compute_flop):
        raise field_error("compute", compute_flop, "a positive, finite number of FLOPs")
    return float(CRITICAL_BATCH_COEFF * compute_flop**CRITICAL_BATCH_EXPONENT)


def default_batch_sequences(shape: TransformerShape, tokens: float) -> int:
    """Global batch in sequences from DeepSeek LLM's batch law at C = model FLOPs per token x tokens."""
    compute = model_flops_per_token(shape) * tokens
    return max(1, round(critical_batch_tokens(compute) / shape.seq_len))


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """USD per device-hour and where it came from (a catalog price, ``--price``, or none)."""

    usd_per_device_hour: float | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"price_usd_per_device_hour": self.usd_per_device_hour, "price_source": self.source}


PriceText = str | float | Sequence[str] | None  # --price: one text, a number, or the texts of repeated flags
PRICE_FORMAT = "USD per device-hour, e.g. 2.5 or trn2=1.2,h100-sxm=4.9"


def parse_price_text(text: PriceText) -> tuple[float | None, dict[str, float]]:
    """``2.5`` or ``"trn2=1.2,h100-sxm=4.9"`` -> (USD per device-hour for every accelerator, per accelerator id).

    A sequence holds the texts of repeated ``--price`` flags, read as one list. An accelerator priced twice (also
    under two spellings of its id), or two prices for every accelerator, is refused: no price silently wins.
    Each price is above 0 and at most ``MAX_USD_PER_DEVICE_HOUR``.
    """
    if text is None:
        return None, {}
    if isinstance(text, int | float) and not isinstance(text, bool):
        return check_price(text), {}
    if isinstance(text, str):
        parts = [text]
    elif isinstance(text, Sequence) and all(isinstance(item, str) for item in text):
        parts = list(text)
    else:
        raise field_error("price", text, PRICE_FORMAT)
    default: float | None = None
    per_accelerator: dict[str, float] = {}
    for part in (p.strip() for item in parts for p in item.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        try:
            number = float(value if sep else name)
        except ValueError:
            raise field_error("price", part, PRICE_FORMAT) from None
        if not 0.0 < number <= MAX_USD_PER_DEVICE_HOUR:  # also refuses nan and inf
            raise field_error("price", part, f"USD per device-hour above 0 to {MAX_USD_PER_DEVICE_HOUR:g}")
        if not sep:
            if default is not None:
                raise field_error("price", part, f"one price for every accelerator (already {default:g})")
            default = number
            continue
        accelerator = get_accelerator(name.strip()).id
        if accelerator in per_accelerator:
            earlier = per_accelerator[accelerator]
            raise field_error("price", part, f"one price per accelerator ({accelerator} is already {earlier:g})")
        per_accelerator[accelerator] = number
    return default, per_accelerator


def does_not_fit(result: StepEstimate) -> str:
    """Why an estimate cannot run, as ``train estimate`` reports ``fits``: the memory needed and the capacity."""
    memory = result.memory
    return (
        f"does not fit in memory: {memory.total / GIB:,.1f} GiB needed per device > {memory.capacity / GIB:,.1f} GiB "
        f"on {result.num_devices:,} {result.accelerator}; try zero=3, recompute=full, a smaller mbs, more tp or pp, "
        "or more devices"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPlan:
    """A whole training run: its step, length, footprint, power, energy and cost."""

    model: str
    cluster: str
    accelerator: str
    tokens: float
    estimate: StepEstimate
    step_time_s: float  # the step used for the run: the estimate, plus the WAN on a multi-site cluster
    num_steps: int
    effective_training_time_ratio: float
    footprint: Footprint
    price: Price
    sites: SiteAnalysis | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    uncertainty: Uncertainty | None = None
    """Intervals of the headlines and the inputs that move them (``fleet.uncertainty``), where computed."""

    @property
    def tokens_per_step(self) -> int:
        return self.estimate.plan.gbs * self.estimate.seq_len

    @property
    def compute_days(self) -> float:
        """Days of failure-free training."""
        return self.num_steps * self.step_time_s / SECONDS_PER_DAY

    @property
    def wall_clock_days(self) -> float:
        return self.compute_days / self.effective_training_time_ratio

    @property
    def device_hours(self) -> float:
        return self.footprint.devices * self.wall_clock_days * 24.0

    @property
    def energy_mwh(self) -> float | None:
        power = self.footprint.facility_power_w
        return None if power is None else power * self.wall_clock_days * SECONDS_PER_DAY / JOULES_PER_MWH

    @property
    def cost_usd(self) -> float | None:
        price = self.price.usd_per_device_hour
        return None if price is None else price * self.device_hours

    @property
    def trained_tokens(self) -> float:
        return self.num_steps * self.tokens_per_step

    @property
    def tokens_per_joule(self) -> float | None:
        energy = self.energy_mwh
        return None if energy is None else self.trained_tokens / (energy * JOULES_PER_MWH)

    @property
    def usd_per_million_tokens(self) -> float | None:
        cost = self.cost_usd
        return None if cost is None else cost / self.trained_tokens * 1e6

    def to_frame(self) -> pd.DataFrame:
        """This result as a pandas DataFrame (``rainier.frame``)."""
        return frame(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        plan = self.estimate.plan
        return {
            "model": self.model,
            "cluster": self.cluster,
            "accelerator": self.accelerator,
            "tokens": self.tokens,
            "plan": plan.describe(),
            "gbs": plan.gbs,
            "tokens_per_step": self.tokens_per_step,
            "num_steps": self.num_steps,
            "step_time_s": self.step_time_s,
            "mfu": self.estimate.mfu * self.estimate.step_time_s / self.step_time_s,
            **self.footprint.to_dict(),
            "compute_days": self.compute_days,
            "effective_training_time_ratio": self.effective_training_time_ratio,
            "wall_clock_days": self.wall_clock_days,
            "device_hours": self.device_hours,
            "energy_mwh": self.energy_mwh,
            **self.price.to_dict(),
            "cost_usd": self.cost_usd,
            "tokens_per_joule": self.tokens_per_joule,
            "usd_per_million_tokens": self.usd_per_million_tokens,
            "sites": None if self.sites is None else self.sites.to_dict(),
            "notes": list(self.notes),
            **({} if self.uncertainty is None else self.uncertainty.flat()),
            "uncertainty": None if self.uncertainty is None else self.uncertainty.to_dict(),
        }


# A step source: the best (or the given) plan's estimate on a cluster at a batch target; when none fits, why
# (``Infeasible``: the binding constraint of the search) or ``None``.
StepSource = Callable[[Cluster], StepEstimate | Infeasible | None]
# Effective training time ratio of a run: (cluster, shape, failure-free hours) -> ratio in (0, 1].
GoodputModel = Callable[[Cluster, TransformerShape, float], float]
# Multi-site analysis on a cluster with WAN links, starting from the best one-network estimate (it may pick
# another plan: its ``one_site`` is the plan the run uses).
SiteModel = Callable[[Cluster, StepEstimate], SiteAnalysis]


def _why(found: StepEstimate | Infeasible | None) -> str:
    """The reason a step source gave for finding no plan ("" when it gave none)."""
    return f": {found.reason}" if isinstance(found, Infeasible) else ""


def plan_run(
    shape: TransformerShape,
    cluster: Cluster,
    tokens: float,
    *,
    step_on: StepSource,
    price: Price,
    goodput: GoodputModel | None = None,
    sites: SiteModel | None = None,
) -> RunPlan:
    """The run of ``tokens`` tokens of ``shape`` on ``cluster`` with the step ``step_on`` gives there."""
    check_tokens(tokens)
    found = step_on(cluster)
    notes: tuple[str, ...] = ()
    if not isinstance(found, StepEstimate):
        usable = usable_systems(cluster.num_systems)
        if usable != cluster.num_systems:
            smaller = resize_cluster(cluster, usable)
            retry = step_on(smaller)
            if isinstance(retry, StepEstimate):
                notes = (
                    f"no plan divides all {cluster.num_devices:,} devices: the job uses {smaller.num_devices:,} "
                    f"({1 - smaller.num_devices / cluster.num_devices:.1%} idle, not counted)",
                )
                cluster, found = smaller, retry
    if not isinstance(found, StepEstimate):
        raise InputError(
            f"no valid plan for {shape.name} on {cluster.id} ({cluster.num_devices:,} devices){_why(found)}"
        )
    run = _run(shape, cluster, tokens, found, price=price, goodput=goodput, sites=sites)
    return replace(run, notes=notes + run.notes) if notes else run


def _run(
    shape: TransformerShape,
    cluster: Cluster,
    tokens: float,
    estimate: StepEstimate,
    *,
    price: Price,
    goodput: GoodputModel | None,
    sites: SiteModel | None,
) -> RunPlan:
    notes: list[str] = []
    analysis = None
    step_time = estimate.step_time_s
    if sites is not None and cluster.wan_links:
        analysis = sites(cluster, estimate)
        estimate = analysis.one_site  # the site model may prefer another plan once the WAN is counted
        best = analysis.best
        if best is None:  # no split runs: replicas and stages do not tile the sites, and one site alone fits nothing
            raise InputError(
                f"no way to run {shape.name} on {cluster.id} across its {len(analysis.sites)} sites: "
                + "; ".join(f"{s.name}: {s.reason}" for s in analysis.splits)
            )
        if best.estimate is not None:  # one site alone beats spanning the WAN
            spanning = analysis.best_spanning
            cluster = resize_cluster(cluster, best.devices // cluster.system.num_devices)
            estimate = best.estimate
            step_time = estimate.step_time_s
            across = (
                f"{spanning.name}: {spanning.slowdown:.2f}x one site's step time"
                if spanning is not None and spanning.slowdown is not None
                else "no split across the sites is feasible"
            )
            notes.append(
                f"{best.note} ({best.devices:,} devices) is faster than spanning {len(analysis.sites)} sites "
                f"({across}); the run uses that site only"
            )
        else:
            assert best.step_time_s is not None and best.wan_time_s is not None and best.slowdown is not None
            step_time = best.step_time_s
            notes.append(
                f"{len(cluster.sites)} sites: {best.name} costs {best.wan_time_s:.2f} s of WAN per step "
                f"({(best.slowdown - 1) * 100:.1f}% slower than one site)"
            )
    tokens_per_step = estimate.plan.gbs * estimate.seq_len
    num_steps = math.ceil(tokens / tokens_per_step)
    hours = num_steps * step_time / SECONDS_PER_HOUR
    ratio = 1.0 if goodput is None else goodput(cluster, shape, hours)
    if goodput is None:
        notes.append("no failures modelled")
    elif not ratio >= MIN_EFFECTIVE_TRAINING_TIME_RATIO:  # also nan
        # Daly's model gives ~0 when the job fails faster than it restarts: no wall clock, no price (limits module)
        raise InputError(
            f"no run of {shape.name} on {cluster.id} ({cluster.num_devices:,} devices) finishes under failures: "
            f"effective training time ratio {ratio:.2g} < {MIN_EFFECTIVE_TRAINING_TIME_RATIO:.0%} (interrupted "
            "faster than it restarts); use fewer devices, or --no-failures for the failure-free time"
        )
    per_device = tokens_per_step / cluster.num_devices
    if per_device < SMALL_BATCH_TOKENS_PER_DEVICE:
        notes.append(
            f"the batch gives {per_device:,.0f} tokens per device per step: pipeline bubbles and collectives "
            "dominate at this scale; a larger batch (--batch-tokens) or fewer devices uses each device better"
        )
    if price.usd_per_device_hour is None:
        notes.append(f"no public price for {cluster.accelerator.id}: pass --price USD_PER_DEVICE_HOUR for cost")
    return RunPlan(
        model=shape.name,
        cluster=cluster.id,
        accelerator=cluster.accelerator.id,
        tokens=tokens,
        estimate=estimate,
        step_time_s=step_time,
        num_steps=num_steps,
        effective_training_time_ratio=ratio,
        footprint=footprint(cluster),
        price=price,
        sites=analysis,
        notes=tuple(notes),
    )


def deadline_sizes(system_devices: int, limit_devices: int) -> list[int]:
    """Whole-system cluster sizes 1, 2, 3, 4, 6, 8, 12, ... systems, up to ``limit_devices`` devices."""
    sizes: set[int] = set()
    power = 1
    while power * system_devices <= limit_devices:
        sizes.add(power)
        if 3 * power * system_devices // 2 <= limit_devices and power >= 2:
            sizes.add(3 * power // 2)
        power *= 2
    return sorted(n * system_devices for n in sizes)


def peak_floor_days(
    shape: TransformerShape, tokens: float, precisions: Callable[[Cluster], Sequence[Precision]]
) -> Callable[[Cluster], float]:
    """Days no plan on a cluster can beat: ``tokens`` x the model's training FLOPs per token (causal attention,
    no recompute) over every device at its dense peak in the fastest of ``precisions(cluster)``. The step model
    charges at least these FLOPs (recompute and full-matrix attention only add) at no more than peak (its GEMM and
    attention fractions are bounded below 1), and a run trains at least ``tokens``."""
    work = tokens * model_flops_per_token(shape)

    def floor(cluster: Cluster) -> float:
        usable = [p for p in precisions(cluster) if cluster.accelerator.supports(p)]
        if not usable:
            return 0.0  # nothing to bound by: the search says why
        return work / max(cluster.peak_flop_per_s(p) for p in usable) / SECONDS_PER_DAY

    return floor


def smallest_for_deadline(
    shape: TransformerShape,
    base: Cluster,
    tokens: float,
    deadline_days: float,
    *,
    step_on: StepSource,
    price: Price,
    goodput: GoodputModel | None = None,
    limit_devices: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    floor_days: Callable[[Cluster], float] | None = None,
) -> RunPlan:
    """The run on the fewest devices of ``base``'s kind (sizes: :func:`deadline_sizes`) that ends in time.

    ``floor_days`` (:func:`peak_floor_days`): a bound no plan on a cluster can beat; sizes whose bound misses the
    deadline are not searched (the answer is the same, sooner: a full search per size is most of the time)."""
    check_tokens(tokens)
    check_days(deadline_days, "deadline-days")
    limit = min(limit_devices or MAX_DEADLINE_DEVICES, MAX_DEADLINE_DEVICES)
    sizes = deadline_sizes(base.system.num_devices, limit)
    if not sizes:
        raise field_error("count", limit, f"at least one {base.system.id} ({base.system.num_devices} devices)")
    best_days: float | None = None
    why = ""
    slower = ""  # the largest size tried that misses the deadline
    skipped = ""  # the largest size whose bound misses the deadline, when no size searched misses it
    for index, devices in enumerate(sizes):
        cluster = resize_cluster(base, devices // base.system.num_devices)
        floor = floor_days(cluster) if floor_days is not None else 0.0
        if floor > deadline_days and index < len(sizes) - 1:  # the largest is searched: a refusal says why
            skipped = f"; {devices:,} devices would take {floor:.1f} even at peak FLOP/s"
            if progress is not None:
                progress(index + 1, len(sizes))
            continue
        found = step_on(cluster)
        if progress is not None:
            progress(index + 1, len(sizes))
        if not isinstance(found, StepEstimate):
            why = why or _why(found)
            continue
        try:
            run = _run(shape, cluster, tokens, found, price=price, goodput=goodput, sites=None)
        except InputError as exc:  # too large to finish under failures: larger sizes only fail more often
            why = why or f": {exc}"
            continue
        best_days = run.wall_clock_days if best_days is None else min(best_days, run.wall_clock_days)
        if run.wall_clock_days <= deadline_days:
            met = (
                f"deadline {deadline_days:g} days: {devices:,} devices is the smallest size tried that meets it "
                f"({run.wall_clock_days:.1f} days{slower or skipped})"
            )
            return replace(run, notes=(met, *run.notes))
        slower = f"; {devices:,} devices take {run.wall_clock_days:.1f}"
    reach = f"no size has a valid plan{why}" if best_days is None else f"the fastest takes {best_days:.1f} days"
    raise field_error(
        "deadline-days",
        deadline_days,
        f"a deadline some cluster of up to {sizes[-1]:,} {base.accelerator.id} can meet ({reach})",
    )
