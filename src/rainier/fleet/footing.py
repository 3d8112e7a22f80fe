"""Equal footing for a comparison: the constraints every row shares, and the device count each row uses.

A comparison is only fair when every accelerator runs the same job under the same rules. :class:`Footing` names
them once, and the comparison table prints it in one line above the rows:

- **the same size constraint**: equal facility power (or equal devices) to the base cluster;
- **the same tokens per step**: one global batch in sequences for every row (:func:`common_batch_sequences`),
  so every row trains the same number of steps and a faster step is a shorter run;
- **the same sites**: every row on one network (the base's WAN between sites is left out; ``rainier fleet
  sites`` prices it);
- **the same power accounting**: catalog figures where they exist, else one documented rule
  (:mod:`rainier.fleet.power`);
- **each chip's best supported training precision** (:func:`best_training_precision`), unless one is forced.

Sizing (:func:`size_cluster`) then looks around each row's target count: a count that no plan divides well
(GB200 at 3,174 NVL72 racks = 2 x 3 x 23^2) can run far worse than one a few percent smaller (3,072 racks), so
each row tries a few nearby counts of whole scale-up domains, down to a stated idle share, and keeps the fastest.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rainier.errors import field_error
from rainier.hardware import Accelerator, Cluster, resize_cluster
from rainier.parallel.plan import Infeasible
from rainier.perf.result import StepEstimate
from rainier.precision import Precision
from rainier.workload.shape import TransformerShape

# Largest share of a row's target devices that sizing may leave idle to reach a count plans divide well.
DEFAULT_IDLE_SHARE = 0.05
MAX_IDLE_SHARE = 0.5
# Counts tried per row: the largest counts from the target down to the idle share that a plan at the common
# batch can divide (``plan_divides``, a cheap arithmetic check), each then timed by the plan search.
NEARBY_COUNTS = 4
# The plan search's default limits (search.space.SearchSpace; fleet does not import the search).
MAX_TP = 64
MAX_CP = 32
MAX_PP = 128
# Fit penalty per halving of a count's largest data-parallel degree below the batch, in idle-share units: each
# doubling of the model parallelism a count forces beyond what the batch needs weighs like 1% of devices idle.
DP_SHORTFALL_PENALTY = 0.01
# When no count within the idle share has a plan at the common batch, sizing looks further down, in these
# steps, and says so: a row that runs on fewer devices is an answer, "no valid plan" is not.
FALLBACK_IDLE_SHARES = (0.1, 0.2, 0.4)
# Training precisions in order of preference: FP8 (Trn2's cFP8, Trn3's and Blackwell's MXFP8, Hopper's FP8
# Transformer Engine) where the catalog gives the chip FP8 matmuls, else BF16. FP4 is not a training format here.
TRAINING_PRECISIONS = (Precision.FP8, Precision.BF16)
# The batch rule: one global batch for every row, a 2^a 3^b number of sequences within this share of the target,
# the one that lets every row's cluster use the most of its devices (then the nearest the target).
BATCH_TOLERANCE = 0.25
BATCH_RULE = (
    f"of the 2^a x 3^b sequence counts within {BATCH_TOLERANCE:.0%} of the target, the one every row's cluster "
    "divides best (least idle share, least forced model parallelism), then the nearest"
)
SITES_RULE = "one network each (WAN between sites not counted)"
POWER_RULE = "catalog all-in W where given, else chip W x a catalog sibling's all-in ratio (fleet.power)"


def batch_options(target_sequences: float) -> list[int]:
    """The batches a comparison may run for a target: every 2^a 3^b sequences within ``BATCH_TOLERANCE`` of it
    (the batches data-parallel degrees of 2^a 3^b divide), nearest the target (on a log scale) first."""
    if not target_sequences >= 1 or not math.isfinite(target_sequences):
        raise field_error("gbs", target_sequences, "a batch target of at least 1 sequence")
    low, high = target_sequences / (1 + BATCH_TOLERANCE), target_sequences * (1 + BATCH_TOLERANCE)
    options = []
    three = 1
    while three <= high:
        n = three
        while n <= high:
            if n >= low:
                options.append(n)
            n *= 2
        three *= 3
    if not options:  # a target below 1.25 sequences
        options = [max(1, round(target_sequences))]
    return sorted(options, key=lambda n: (abs(math.log(n / target_sequences)), n))


def common_batch_sequences(target_sequences: float, misfit: Callable[[int], float] | None = None) -> int:
    """The one global batch every row of a comparison runs (module docstring, :data:`BATCH_RULE`).

    Of :func:`batch_options`, the one whose worst-fitting row fits best (``misfit``: batch -> the worst row's
    :func:`row_fit`, compared to the whole percent), nearest the target on ties. Without ``misfit``, the nearest.
    """
    options = batch_options(target_sequences)
    if misfit is None:
        return options[0]
    return min(options, key=lambda n: (math.ceil(misfit(n) * 100 - 1e-9), options.index(n)))


def best_training_precision(accelerator: Accelerator) -> Precision:
    """The first of :data:`TRAINING_PRECISIONS` the chip supports (BF16 when it has none of them)."""
    return next((p for p in TRAINING_PRECISIONS if accelerator.supports(p)), Precision.BF16)


def check_idle_share(value: float) -> float:
    """An idle share from 0 to ``MAX_IDLE_SHARE`` (a fraction), else a one-line error naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= MAX_IDLE_SHARE:
        raise field_error("idle-share", value, f"a fraction from 0 to {MAX_IDLE_SHARE:g}, e.g. 0.05")
    return float(value)


def model_parallel_sizes(shape: TransformerShape, domain_devices: int) -> frozenset[int]:
    """Every ``tp * cp * pp`` the plan search can build for ``shape`` (its default space: tp and cp powers of two
    up to 64 and 32, tp inside the scale-up domain and dividing the heads, cp dividing the sequence, pp a divisor
    of the layer count or a power of two up to 128)."""
    tps = [t for t in _powers(min(MAX_TP, domain_devices)) if shape.num_heads % t == 0]
    tps = [t for t in tps if shape.num_kv_heads % t == 0 or t % shape.num_kv_heads == 0]
    cps = [c for c in _powers(MAX_CP) if shape.seq_len % c == 0]
    top = min(shape.num_layers, MAX_PP)
    pps = {d for d in range(1, top + 1) if shape.num_layers % d == 0} | set(_powers(top))
    return frozenset(t * c * p for t in tps for c in cps for p in pps)


def _powers(limit: int) -> list[int]:
    return [1 << i for i in range(max(limit, 1).bit_length()) if 1 << i <= limit]


def largest_dp(devices: int, gbs: int, sizes: frozenset[int]) -> int | None:
    """The largest data-parallel degree dividing ``gbs`` whose model-parallel size (``devices / dp``) is one of
    ``sizes``; ``None`` when no plan at exactly ``gbs`` sequences can divide ``devices``."""
    return next((dp for dp in reversed(_divisors(gbs)) if devices % dp == 0 and devices // dp in sizes), None)


def plan_divides(devices: int, gbs: int, sizes: frozenset[int]) -> bool:
    """Whether a plan at exactly ``gbs`` sequences can divide ``devices`` (memory is the search's to check)."""
    return largest_dp(devices, gbs, sizes) is not None


@functools.lru_cache(maxsize=64)
def _divisors(n: int) -> tuple[int, ...]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return tuple(sorted({*small, *(n // d for d in small)}))


def fit_penalty(devices: int, target_devices: int, gbs: int, sizes: frozenset[int]) -> float | None:
    """How badly ``devices`` fits a target at ``gbs`` (lower is better; ``None``: no plan divides it): the idle
    share, plus :data:`DP_SHORTFALL_PENALTY` per halving of the largest data-parallel degree below the batch (a
    count that forces more model parallelism than the batch needs leaves the search fewer good plans)."""
    dp = largest_dp(devices, gbs, sizes)
    if dp is None:
        return None
    return (1 - devices / target_devices) + DP_SHORTFALL_PENALTY * math.log2(gbs / dp)


def candidate_domain_counts(num_domains: int, idle_share: float, penalty: Callable[[int], float | None]) -> list[int]:
    """Counts of scale-up domains to try for a target of ``num_domains``: of the counts from ``(1 - idle_share) x
    num_domains`` up to the target, the ``NEARBY_COUNTS`` with the least ``penalty`` (``None``: no plan divides
    it), largest first."""
    low = max(1, math.ceil((1.0 - idle_share) * num_domains - 1e-9))
    scored = [(score, -count) for count in range(num_domains, low - 1, -1) if (score := penalty(count)) is not None]
    return sorted((-count for _, count in sorted(scored)[:NEARBY_COUNTS]), reverse=True)


def row_fit(num_domains: int, per_domain: int, gbs: int, sizes: frozenset[int]) -> float:
    """The least :func:`fit_penalty` of any count from the target down to :data:`MAX_IDLE_SHARE` below it (1.0
    when none fits): how well a row's cluster takes batch ``gbs``."""
    target = num_domains * per_domain
    best = 1.0
    for count in range(num_domains, max(1, math.floor((1 - MAX_IDLE_SHARE) * num_domains)) - 1, -1):
        if 1 - count / num_domains >= best:  # the idle share alone is already worse: stop
            break
        score = fit_penalty(count * per_domain, target, gbs, sizes)
        if score is not None:
            best = min(best, score)
    return best


@dataclass(frozen=True, slots=True, kw_only=True)
class Footing:
    """The constraints every row of a comparison shares (module docstring), stated once and copied per row."""

    at: str  # "power" or "devices"
    facility_power_mw: float | None  # the base's facility power every row is sized to (at=power)
    devices: int | None  # the base's device count every row is sized to (at=devices)
    batch_target_sequences: float
    batch_source: str  # where the target came from: the batch law, --batch-tokens, or an exact --gbs
    gbs: int
    seq_len: int
    precision: str  # "best" (each chip's best) or the forced precision
    idle_share: float
    sites: str = SITES_RULE
    power: str = POWER_RULE
    batch_rule: str = BATCH_RULE
    recovery: str = "cold restarts, checkpoints to shared storage"  # the failure recovery every row gets

    @property
    def tokens_per_step(self) -> int:
        return self.gbs * self.seq_len

    def describe(self) -> str:
        """The footing in one line, for above the comparison table."""
        size = (
            f"equal facility power ({_mw(self.facility_power_mw)} MW)"
            if self.at == "power" and self.facility_power_mw is not None
            else f"equal devices ({self.devices:,})"
        )
        ratio = self.gbs / self.batch_target_sequences
        batch = f"{self.gbs:,} x {self.seq_len:,} = {self.tokens_per_step / 1e6:,.1f}M tokens per step"
        if self.batch_source != "gbs":
            batch += f" ({self.batch_source} {self.batch_target_sequences:,.0f} sequences x {ratio:.2f})"
        precision = "each chip's best training precision" if self.precision == "best" else self.precision
        return (
            f"footing: {size}; {batch}; {precision}; {self.sites}; up to {self.idle_share:.0%} of a row's devices "
            f"left idle for a count plans divide; {self.recovery}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "facility_power_mw": self.facility_power_mw,
            "devices": self.devices,
            "batch_target_sequences": self.batch_target_sequences,
            "batch_source": self.batch_source,
            "batch_rule": self.batch_rule if self.batch_source != "gbs" else "exact --gbs",
            "gbs": self.gbs,
            "seq_len": self.seq_len,
            "tokens_per_step": self.tokens_per_step,
            "precision": self.precision,
            "idle_share": self.idle_share,
            "sites": self.sites,
            "power": self.power,
            "recovery": self.recovery,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SizingTry:
    """One count a row tried: its devices and the best step there (``None`` when no plan runs)."""

    devices: int
    step_time_s: float | None
    mfu: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"devices": self.devices, "step_time_s": self.step_time_s, "mfu": self.mfu}


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizing:
    """Which count a row runs on, of the ones it tried, and why."""

    target_devices: int
    chosen_devices: int
    idle_share: float
    reason: str
    tried: tuple[SizingTry, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_devices": self.target_devices,
            "chosen_devices": self.chosen_devices,
            "idle_share": self.idle_share,
            "sizing_reason": self.reason,
            "sizing_tried": [t.to_dict() for t in self.tried],
        }


StepSource = Callable[[Cluster], StepEstimate | Infeasible | None]


def size_cluster(
    target: Cluster, step_on: StepSource, idle_share: float, *, shape: TransformerShape, gbs: int
) -> tuple[Cluster, Sizing]:
    """The count of ``target``'s scale-up domains (of :func:`candidate_domain_counts`) whose best step is fastest.

    Every row runs the same batch, so the fastest step is the shortest run. When no count within ``idle_share``
    has a plan, the window widens through :data:`FALLBACK_IDLE_SHARES` and the reason says so; when none of those
    has one either, the target itself is returned with a reason saying no count ran (the run then says why).
    """
    per_domain = target.system.num_devices
    sizes = model_parallel_sizes(shape, target.scale_up_domain_devices)

    def penalty(count: int) -> float | None:
        return fit_penalty(count * per_domain, target.num_devices, gbs, sizes)

    tried: list[SizingTry] = []
    seen: set[int] = set()
    best: tuple[float, Cluster] | None = None
    window = idle_share
    for window in (idle_share, *(s for s in FALLBACK_IDLE_SHARES if s > idle_share)):
        for count in candidate_domain_counts(target.num_systems, window, penalty) or [target.num_systems]:
            if count in seen:
                continue
            seen.add(count)
            cluster = target if count == target.num_systems else resize_cluster(target, count)
            found = step_on(cluster)
            if not isinstance(found, StepEstimate):
                tried.append(SizingTry(devices=count * per_domain, step_time_s=None, mfu=None))
                continue
            tried.append(SizingTry(devices=count * per_domain, step_time_s=found.step_time_s, mfu=found.mfu))
            if best is None or found.step_time_s < best[0] * (1 - 1e-9):
                best = (found.step_time_s, cluster)
        if best is not None:
            break
    return _chosen(target, best, tried, idle_share, window)


def _chosen(
    target: Cluster, best: tuple[float, Cluster] | None, tried: list[SizingTry], idle_share: float, window: float
) -> tuple[Cluster, Sizing]:
    domain = target.system.id
    per_domain = target.system.num_devices
    counts = ", ".join(f"{t.devices // per_domain:,}" for t in tried)
    whole = next((t for t in tried if t.devices == target.num_devices), None)
    if best is None:
        reason = f"no plan on any of {counts} x {domain} (down to {window:.0%} idle)"
        return target, _sizing(target, target, idle_share, tried, reason)
    step, cluster = best
    domains = cluster.num_systems
    wider = (
        f"; no count within {idle_share:.0%} has a plan at this batch, so sizing looked down to {window:.0%}"
        if window > idle_share
        else ""
    )
    if cluster.num_devices == target.num_devices:
        reason = f"all {domains:,} x {domain}: the fastest step of the {len(tried)} counts tried"
    else:
        idle = 1 - cluster.num_devices / target.num_devices
        against = (
            f"{whole.step_time_s:.3g} s (MFU {whole.mfu:.1%}) on all {target.num_systems:,}"
            if whole is not None and whole.step_time_s is not None and whole.mfu is not None
            else f"no plan at this batch divides all {target.num_systems:,}"
        )
        reason = (
            f"{domains:,} of {target.num_systems:,} x {domain} ({idle:.1%} idle): {step:.3g} s per step (MFU "
            f"{_mfu(tried, cluster.num_devices):.1%}) vs {against}{wider}"
        )
    return cluster, _sizing(target, cluster, idle_share, tried, reason)


def _sizing(target: Cluster, chosen: Cluster, idle_share: float, tried: list[SizingTry], reason: str) -> Sizing:
    return Sizing(
        target_devices=target.num_devices,
        chosen_devices=chosen.num_devices,
        idle_share=idle_share,
        reason=reason,
        tried=tuple(tried),
    )


def _mfu(tried: list[SizingTry], devices: int) -> float:
    return next(t.mfu for t in tried if t.devices == devices and t.mfu is not None)


def _mw(value: float) -> str:
    """Megawatts to three significant figures below 100 (0.0584, 58.8), whole above (456)."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
