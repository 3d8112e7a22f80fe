"""The fleet commands' building blocks: prices, the cluster a command names, the step finder (plan search or a given
plan) every fleet command times its runs with, and the per-site helpers of multi-site plans."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from rainier.api import resolve_cluster
from rainier.errors import InputError, field_error
from rainier.fleet.limits import (
    check_batch_tokens,
    check_devices,
    check_gbs,
)
from rainier.fleet.multisite import SiteAnalysis, analyse_sites
from rainier.fleet.plan import (
    GoodputModel,
    Price,
    PriceText,
    RunPlan,
    default_batch_sequences,
    does_not_fit,
    parse_price_text,
)
from rainier.fleet.power import fleet_cluster
from rainier.hardware import Cluster
from rainier.parallel.batch_target import DEFAULT_TOLERANCE, BatchTarget
from rainier.parallel.plan import DegreeUnit, Infeasible, InfeasibleKind, Plan, parse_plan
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate
from rainier.precision import Precision
from rainier.search.engine import Rates, search
from rainier.search.space import SearchSpace
from rainier.workload import resolve_model
from rainier.workload.shape import TransformerShape

CHINCHILLA_TOKENS_PER_PARAM = 20.0


@dataclass(frozen=True, slots=True)
class PriceSpec:
    """``--price``: one USD per device-hour for every accelerator, and/or per accelerator (``trn2=1.2,...``)."""

    default: float | None = None
    per_accelerator: dict[str, float] = field(default_factory=dict)

    def for_cluster(self, cluster: Cluster) -> Price:
        given = self.per_accelerator.get(cluster.accelerator.id, self.default)
        if given is not None:
            return Price(usd_per_device_hour=given, source="--price")
        rates = Rates.of(cluster)
        return Price(usd_per_device_hour=rates.usd_per_device_hour, source=rates.price_source or "none")


def parse_prices(text: PriceText) -> PriceSpec:
    """``2.5`` or ``"trn2=1.2,h100-sxm=4.9"`` (USD per device-hour) -> :class:`PriceSpec` (see ``parse_price_text``).

    A sequence holds the texts of repeated ``--price`` flags; an accelerator priced twice is refused.
    """
    default, per_accelerator = parse_price_text(text)
    return PriceSpec(default=default, per_accelerator=per_accelerator)


def fleet_target(cluster: str | None, accelerator: str | None, count: int | None) -> Cluster:
    """A named cluster, or ``count`` devices of ``accelerator`` in its fleet building block (whole systems)."""
    if count is not None:
        check_devices(count)
    if cluster is None and accelerator is not None and count is not None:
        return fleet_cluster(accelerator, count)
    return resolve_cluster(cluster, accelerator, count)


class StepFinder:
    """The step on a cluster: ``plan`` there, else the fastest plans at the batch (given, or DeepSeek LLM's law).

    Calling it gives the best estimate, or an ``Infeasible`` naming the search's binding constraint when no plan
    fits; :meth:`candidates` gives the fastest few, for choices the step model does not see (the WAN between
    sites). A given ``plan`` that cannot run there (it does not divide the cluster, or does not fit in memory) is
    bad input: an ``InputError`` naming the plan, the memory it needs and the capacity.
    """

    def __init__(
        self,
        shape: TransformerShape,
        tokens: float,
        *,
        plan: str | None = None,
        gbs: int | None = None,
        batch_tokens: float | None = None,
        gbs_tolerance: float | None = None,
        space: SearchSpace | None = None,
        efficiency: Efficiency | EfficiencyTable | None = None,
    ) -> None:
        if gbs is not None and batch_tokens is not None:
            raise InputError("give --gbs (sequences) or --batch-tokens, not both")
        if gbs is not None:
            check_gbs(gbs)
            if gbs_tolerance is not None:
                raise InputError("--gbs is an exact batch: give --gbs-tolerance with --batch-tokens or the batch law")
        if batch_tokens is not None:
            check_batch_tokens(batch_tokens, shape.seq_len)
        self.shape = shape
        self.plan = plan
        self.space = space
        self.efficiency = efficiency
        self.exact = gbs is not None
        self.gbs = gbs or (
            max(1, round(batch_tokens / shape.seq_len)) if batch_tokens else default_batch_sequences(shape, tokens)
        )
        # train search's rule (parallel.batch_target): an exact batch, or a target each plan meets within the
        # tolerance with the largest batch its dp x mbs divides
        self.target = (
            BatchTarget(sequences=self.gbs)
            if self.exact
            else BatchTarget(
                sequences=self.gbs, tolerance=DEFAULT_TOLERANCE if gbs_tolerance is None else gbs_tolerance
            )
        )
        self.source = "--gbs" if self.exact else "--batch-tokens" if batch_tokens else "DeepSeek LLM's batch law"

    def __call__(self, cluster: Cluster) -> StepEstimate | Infeasible:
        try:
            found = self.candidates(cluster, 1, strict=True)
        except NoPlan as none:
            return none.infeasible
        return found[0]

    def precisions(self, cluster: Cluster) -> tuple[Precision, ...]:
        """The precisions the search space lets a plan on ``cluster`` train in (``fleet.plan.peak_floor_days`` keeps
        those the chip supports); none for a given plan, whose single estimate per size needs no bound."""
        if self.plan is not None:
            return ()
        return tuple((self.space or SearchSpace()).precision)

    def candidates(self, cluster: Cluster, count: int, *, strict: bool = False) -> list[StepEstimate]:
        """The fastest ``count`` estimates on ``cluster`` (the given plan's alone); ``[]`` when the search finds none.

        With ``strict`` an empty search raises ``NoPlan`` carrying its binding constraint instead.
        """
        if self.plan is not None:
            return [self.given(cluster)]
        try:
            try:
                found = search(
                    self.shape, cluster, gbs=self.target, top_k=count, space=self.space, efficiency=self.efficiency
                )
            except InputError as exc:
                if self.exact or "lies in the batch range" not in str(exc):
                    raise
                # No dp x mbs of this cluster lands in the window (499,968 Trn2 = 256 x 1,953 against a few
                # thousand sequences): the target rounds up to the nearest batch a plan divides, at most 2x, and
                # batch_note says so.
                found = search(
                    self.shape,
                    cluster,
                    gbs=self.gbs,
                    top_k=count,
                    space=self.space,
                    efficiency=self.efficiency,
                    round_gbs=True,
                )
        except InputError as exc:
            if strict:
                raise NoPlan(search_infeasible(str(exc))) from None
            return []
        return [ranked.estimate for ranked in found.top]

    def given(self, cluster: Cluster) -> StepEstimate:
        """The given plan's estimate on ``cluster``; ``InputError`` when it does not divide it or fit in memory."""
        assert self.plan is not None
        parsed = parse_plan(
            self.plan, num_devices=cluster.num_devices, cores_per_device=cluster.accelerator.num_logical_cores
        )
        result = estimate(self.shape, parsed, cluster, efficiency=self.efficiency)
        if isinstance(result, Infeasible):
            unit = " (NeuronCore degrees)" if parsed.degrees_unit is DegreeUnit.CORE else ""
            raise InputError(f"plan{unit}: {result.reason}")
        if not result.fits:
            raise field_error("plan", self.plan, does_not_fit(result))
        return result


class NoPlan(Exception):
    """The plan search found nothing on a cluster (internal: :meth:`StepFinder.__call__` returns its reason)."""

    def __init__(self, infeasible: Infeasible) -> None:
        super().__init__(infeasible.reason)
        self.infeasible = infeasible


_SEARCH_KIND = re.compile(r"^no valid plan: (?P<kind>[a-z]+):")


def search_infeasible(message: str) -> Infeasible:
    """The search's one-line binding constraint as an ``Infeasible`` (its kind read from the message)."""
    match = _SEARCH_KIND.match(message)
    kinds = {k.value: k for k in InfeasibleKind}
    kind = kinds.get(match["kind"], InfeasibleKind.DIVISIBILITY) if match else InfeasibleKind.DIVISIBILITY
    reason = message.removeprefix("no valid plan: ")
    return Infeasible(
        kind, "no plan in the search space runs" if reason == "no valid plan in the search space" else reason
    )


def goodput_model(
    enabled: bool, *, hot_spares: bool = False, in_memory_checkpoint: bool = False
) -> GoodputModel | None:
    """Expected effective training time ratio under the catalog failure model (``fleet.goodput``), if enabled.

    ``hot_spares`` and ``in_memory_checkpoint`` choose the recovery (``fleet.goodput.build_scenario``); every row
    of a comparison gets the same.
    """
    if not enabled:
        return None
    from functools import partial

    from rainier.fleet.goodput import expected_ettr_for_run

    return partial(expected_ettr_for_run, hot_spares=hot_spares, in_memory_checkpoint=in_memory_checkpoint)


def recovery_text(failures: bool, *, hot_spares: bool, in_memory_checkpoint: bool) -> str:
    """How every row of a comparison recovers from failures, in words (for the footing line)."""
    if not failures:
        return "no failures modelled"
    restart = "hot spares, in-place restarts" if hot_spares else "cold restarts"
    where = "checkpoints in peer host memory" if in_memory_checkpoint else "checkpoints to shared storage"
    return f"{restart}, {where}"


SITE_CANDIDATES = 10  # fastest one-network plans re-ranked with the WAN counted


def fixed_step(result: StepEstimate) -> Callable[[Plan, Cluster], StepEstimate]:
    """A step function that returns an estimate already made (the search evaluated it)."""

    def step(_plan: Plan, _cluster: Cluster) -> StepEstimate:
        return result

    return step


def sites_model(shape: TransformerShape, finder: StepFinder) -> Callable[[Cluster, StepEstimate], SiteAnalysis]:
    """Multi-site analysis that re-ranks the fastest plans by their throughput once the WAN is counted."""

    def sites(cluster: Cluster, first: StepEstimate) -> SiteAnalysis:
        best_on = best_on_sites(finder)
        options = finder.candidates(cluster, SITE_CANDIDATES) or [first]
        analyses = [
            analyse_sites(shape, cluster, option.plan, step=fixed_step(option), best_on=best_on) for option in options
        ]
        return most_throughput(analyses)

    return sites


def best_on_sites(finder: StepFinder) -> Callable[[Cluster], StepEstimate | Infeasible]:
    """The best step on each site alone, searched once per site size (the splits of every plan share them)."""
    alone: dict[int, StepEstimate | Infeasible] = {}

    def best_on(site: Cluster) -> StepEstimate | Infeasible:
        if site.num_devices not in alone:
            alone[site.num_devices] = on_site(finder, site)
        return alone[site.num_devices]

    return best_on


def on_site(finder: StepFinder, site: Cluster) -> StepEstimate | Infeasible:
    """The step on one site alone; a given plan that cannot run there makes that split infeasible, not the run."""
    try:
        return finder(site)
    except InputError as exc:
        return Infeasible(InfeasibleKind.DIVISIBILITY, str(exc))


def most_throughput(analyses: list[SiteAnalysis]) -> SiteAnalysis:
    """The analysis whose best split across all sites trains fastest (any split, when none spans them)."""
    return max(
        analyses,
        key=lambda a: (a.spanning_tokens_per_s, 0.0 if a.best is None else a.best.tokens_per_s or 0.0),
    )


def cached_finder(
    finder: Callable[[Cluster], StepEstimate | Infeasible],
) -> Callable[[Cluster], StepEstimate | Infeasible]:
    """``finder`` remembering its answer per cluster (sizing and the run ask about the chosen count twice)."""
    seen: dict[tuple[str, int], StepEstimate | Infeasible] = {}

    def step_on(cluster: Cluster) -> StepEstimate | Infeasible:
        key = (cluster.id, cluster.num_devices)
        if key not in seen:
            seen[key] = finder(cluster)
        return seen[key]

    return step_on


def model_shape(model: str, seq_len: int | None) -> TransformerShape:
    shape = resolve_model(model)
    if seq_len is not None:
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len <= 0:
            raise field_error("seq-len", seq_len, "a positive number of tokens")
        shape = shape.with_seq_len(seq_len)
    return shape


def resized_to_run(cluster: Cluster, run: RunPlan) -> Cluster:
    """The cluster a run actually used (one site alone, or a size plans divide)."""
    from rainier.hardware import resize_cluster

    return resize_cluster(cluster, run.footprint.devices // cluster.system.num_devices)


def batch_rule_note(step_on: StepFinder, used: int, devices: int) -> str:
    """The batch rule and the batch a plan on ``devices`` used, in one line (``train search``'s rule)."""
    target = step_on.target
    if target.exact:
        return f"batch: {target.sequences:,} sequences exact ({step_on.source}): used {used:,}"
    rule = (
        f"batch: {target.sequences:,} sequences target ({step_on.source}), \u00b1{target.tolerance:.0%} "
        f"({target.low:,} to {target.high:,})"
    )
    if target.low <= used <= target.high:
        return f"{rule}: used {used:,}"
    return (
        f"{rule}: no plan's dp x mbs lands in that range on {devices:,} devices, so the target "
        f"rounds up to the nearest batch a plan divides: used {used:,} (x{used / target.sequences:.2f})"
    )
