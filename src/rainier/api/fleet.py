"""The fleet commands' Python API: whole runs, comparisons, multi-site splits, capacity growth and goodput.

``run_fleet_plan(model="frontier-2t-moe", tokens=15e12, cluster="rainier-trn2-500k")`` returns a
:class:`~rainier.fleet.plan.RunPlan` (``.to_dict()`` is the CLI's JSON). Names and strings are resolved here;
the step comes from the plan search (or a given ``plan``) through ``rainier.search``, which the fleet layer
itself does not import.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from rainier.api import resolve_cluster
from rainier.errors import InputError, clip_path, field_error
from rainier.fleet.compare import CompareAt, Comparison, compare_runs, parse_accelerators
from rainier.fleet.footing import (
    DEFAULT_IDLE_SHARE,
    Footing,
    best_training_precision,
    check_idle_share,
    common_batch_sequences,
)
from rainier.fleet.goodput import GoodputResult
from rainier.fleet.grow import GrowthPlan, grow, parse_power_schedule
from rainier.fleet.limits import (
    MAX_CHECKPOINT_GIB,
    MAX_CHECKPOINT_INTERVAL_MIN,
    MAX_DAYS,
    MAX_REPAIR_HOURS,
    MAX_RESTART_MIN,
    MAX_SLOWDOWN,
    MAX_SPARE_SERVERS,
    check_batch_tokens,
    check_days,
    check_devices,
    check_gbs,
    check_seed,
    check_tokens,
    integer_in,
    number_in,
)
from rainier.fleet.multisite import DEFAULT_TARGET_SLOWDOWN, SiteAnalysis, analyse_sites
from rainier.fleet.plan import (
    GoodputModel,
    Price,
    PriceText,
    RunPlan,
    critical_batch_tokens,
    default_batch_sequences,
    does_not_fit,
    parse_price_text,
    plan_run,
    smallest_for_deadline,
)
from rainier.fleet.power import fleet_cluster, footprint
from rainier.fleet.scenario import Scenario, ScenarioResult
from rainier.hardware import Cluster, get_accelerator, get_cluster
from rainier.parallel.batch_target import DEFAULT_TOLERANCE, BatchTarget
from rainier.parallel.plan import DegreeUnit, Infeasible, InfeasibleKind, Plan, parse_plan
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate
from rainier.precision import Precision
from rainier.search.engine import Rates, search
from rainier.search.space import SearchSpace, load_space
from rainier.units import GIB
from rainier.workload import count_params, resolve_model
from rainier.workload.flops import model_flops_per_token
from rainier.workload.shape import TransformerShape

# Compute-optimal tokens per parameter when --tokens is not given (Hoffmann et al. 2022, "Chinchilla", ~20).
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
        except _NoPlan as none:
            return none.infeasible
        return found[0]

    def candidates(self, cluster: Cluster, count: int, *, strict: bool = False) -> list[StepEstimate]:
        """The fastest ``count`` estimates on ``cluster`` (the given plan's alone); ``[]`` when the search finds none.

        With ``strict`` an empty search raises ``_NoPlan`` carrying its binding constraint instead.
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
                raise _NoPlan(_search_infeasible(str(exc))) from None
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


class _NoPlan(Exception):
    """The plan search found nothing on a cluster (internal: :meth:`StepFinder.__call__` returns its reason)."""

    def __init__(self, infeasible: Infeasible) -> None:
        super().__init__(infeasible.reason)
        self.infeasible = infeasible


_SEARCH_KIND = re.compile(r"^no valid plan: (?P<kind>[a-z]+):")


def _search_infeasible(message: str) -> Infeasible:
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


def _fixed(result: StepEstimate) -> Callable[[Plan, Cluster], StepEstimate]:
    """A step function that returns an estimate already made (the search evaluated it)."""

    def step(_plan: Plan, _cluster: Cluster) -> StepEstimate:
        return result

    return step


def _sites_model(shape: TransformerShape, finder: StepFinder) -> Callable[[Cluster, StepEstimate], SiteAnalysis]:
    """Multi-site analysis that re-ranks the fastest plans by their throughput once the WAN is counted."""

    def sites(cluster: Cluster, first: StepEstimate) -> SiteAnalysis:
        best_on = _best_on_sites(finder)
        options = finder.candidates(cluster, SITE_CANDIDATES) or [first]
        analyses = [
            analyse_sites(shape, cluster, option.plan, step=_fixed(option), best_on=best_on) for option in options
        ]
        return _most_throughput(analyses)

    return sites


def _best_on_sites(finder: StepFinder) -> Callable[[Cluster], StepEstimate | Infeasible]:
    """The best step on each site alone, searched once per site size (the splits of every plan share them)."""
    alone: dict[int, StepEstimate | Infeasible] = {}

    def best_on(site: Cluster) -> StepEstimate | Infeasible:
        if site.num_devices not in alone:
            alone[site.num_devices] = _on_site(finder, site)
        return alone[site.num_devices]

    return best_on


def _on_site(finder: StepFinder, site: Cluster) -> StepEstimate | Infeasible:
    """The step on one site alone; a given plan that cannot run there makes that split infeasible, not the run."""
    try:
        return finder(site)
    except InputError as exc:
        return Infeasible(InfeasibleKind.DIVISIBILITY, str(exc))


def _most_throughput(analyses: list[SiteAnalysis]) -> SiteAnalysis:
    """The analysis whose best split across all sites trains fastest (any split, when none spans them)."""
    return max(
        analyses,
        key=lambda a: (a.spanning_tokens_per_s, 0.0 if a.best is None else a.best.tokens_per_s or 0.0),
    )


def run_fleet_plan(
    *,
    model: str,
    tokens: float,
    cluster: str | None = None,
    accelerator: str | None = None,
    count: int | None = None,
    deadline_days: float | None = None,
    plan: str | None = None,
    gbs: int | None = None,
    batch_tokens: float | None = None,
    gbs_tolerance: float | None = None,
    seq_len: int | None = None,
    price: PriceText = None,
    failures: bool = True,
    space: str | None = None,
    efficiency: Efficiency | EfficiencyTable | None = None,
    progress: Callable[[int, int], None] | None = None,
    hot_spares: bool = False,
    in_memory_checkpoint: bool = False,
    precision: str | None = None,
) -> RunPlan:
    """``rainier fleet plan``: a whole run on a cluster, or on the smallest cluster that meets a deadline.

    ``hot_spares`` and ``in_memory_checkpoint`` choose how the job recovers from failures (``fleet.goodput``);
    ``precision`` limits the plan search to one training precision (``best``: the chip's best, as compared rows
    get; default: the search space's).
    """
    recovery = {"hot_spares": hot_spares, "in_memory_checkpoint": in_memory_checkpoint}
    shape = _shape(model, seq_len)
    tokens = check_tokens(tokens)
    prices = parse_prices(price)
    step_on = run_step_finder(
        shape,
        tokens,
        cluster=cluster,
        accelerator=accelerator,
        plan=plan,
        gbs=gbs,
        batch_tokens=batch_tokens,
        gbs_tolerance=gbs_tolerance,
        space=space,
        precision=precision,
        efficiency=efficiency,
    )
    if deadline_days is not None:
        check_days(deadline_days, "deadline-days")
        if plan is not None:
            raise InputError("--deadline-days searches cluster sizes, so it takes no --plan")
        if cluster is not None and (accelerator is not None or count is not None):
            raise InputError("give either --cluster, or --accelerator (with an optional --count limit), not both")
        if cluster is not None:
            base = get_cluster(cluster)
            limit: int | None = base.num_devices
        elif accelerator is not None:
            if count is not None:
                check_devices(count)
            base = fleet_cluster(accelerator, 1)
            limit = count
        else:
            raise InputError("--deadline-days needs --accelerator ID (or --cluster NAME) to size")
        return smallest_for_deadline(
            shape,
            base,
            tokens,
            deadline_days,
            step_on=step_on,
            price=prices.for_cluster(base),
            goodput=goodput_model(failures, **recovery),
            limit_devices=limit,
            progress=progress,
        )
    target = fleet_target(cluster, accelerator, count)
    rounded = rounding_note(count, target) if cluster is None else None
    run = plan_run(
        shape,
        target,
        tokens,
        step_on=step_on,
        price=prices.for_cluster(target),
        goodput=goodput_model(failures, **recovery),
        sites=_sites_model(shape, step_on),
    )
    if rounded:
        run = replace(run, notes=(rounded, *run.notes))
    if plan is None:
        run = replace(run, notes=(*run.notes, batch_note(step_on, run)))
    return with_uncertainty(run, shape, target, efficiency=efficiency, failures=failures, hot_spares=hot_spares)


def run_step_finder(
    shape: TransformerShape,
    tokens: float,
    *,
    cluster: str | None,
    accelerator: str | None,
    plan: str | None = None,
    gbs: int | None = None,
    batch_tokens: float | None = None,
    gbs_tolerance: float | None = None,
    space: str | None = None,
    precision: str | None = None,
    efficiency: Efficiency | EfficiencyTable | None = None,
) -> StepFinder:
    """How ``fleet plan`` (and a scenario's run) finds its step: the plan, batch, search space and precision given.

    ``precision`` limits the search to one training precision (``best``: the chip's best); the report's table of
    the fastest plans is made with the same finder, so it ranks the plans the run chose among.
    """
    searched = load_space(space) if space else None
    if precision is not None:
        if searched is not None:
            raise InputError("give --precision or --space (whose precision list applies), not both")
        if accelerator is None and cluster is None:
            raise InputError("--precision needs --cluster or --accelerator")
        chip = get_cluster(cluster).accelerator if cluster is not None else get_accelerator(accelerator or "")
        chosen = best_training_precision(chip) if precision.strip().lower() == "best" else Precision.parse(precision)
        searched = SearchSpace(precision=(chosen,))
    return StepFinder(
        shape,
        tokens,
        plan=plan,
        gbs=gbs,
        batch_tokens=batch_tokens,
        gbs_tolerance=gbs_tolerance,
        space=searched,
        efficiency=efficiency,
    )


def run_candidates(result: ScenarioResult, count: int) -> list[tuple[StepEstimate, float]]:
    """The fastest ``count`` plans of a scenario's run on the cluster it used, each with its step time in the run.

    The plans come from the run's own search (same batch target, search space and precision); on a cluster whose
    sites the run spans each plan's step includes the WAN (the run's site analysis), so the run's plan shows the
    run's step time. Ordered by tokens per second in the run (plans may run different batches).
    """
    scenario, run = result.scenario, result.run
    shape = _shape(scenario.model, None)
    finder = run_step_finder(
        shape,
        scenario.tokens,
        cluster=scenario.cluster,
        accelerator=scenario.accelerator,
        plan=scenario.plan,
        gbs=scenario.gbs,
        batch_tokens=scenario.batch_tokens,
        gbs_tolerance=scenario.gbs_tolerance,
        precision=scenario.precision,
    )
    target = fleet_target(scenario.cluster, scenario.accelerator, scenario.count)
    used = target if run.footprint.devices == target.num_devices else _resized(target, run)
    options = finder.candidates(used, count)
    if run.sites is None or not used.wan_links:
        return [(option, option.step_time_s) for option in options]
    best_on = _best_on_sites(finder)
    rows = []
    for option in options:
        analysis = analyse_sites(shape, used, option.plan, step=_fixed(option), best_on=best_on)
        spanning = analysis.best_spanning
        if spanning is not None and spanning.step_time_s is not None:
            rows.append((option, spanning.step_time_s))
    return sorted(rows, key=lambda row: row[0].plan.gbs / row[1], reverse=True)


def batch_note(step_on: StepFinder, run: RunPlan) -> str:
    """The batch rule and the batch the run's plan used, in one line (``train search``'s rule)."""
    used, target = run.estimate.plan.gbs, step_on.target
    if target.exact:
        return f"batch: {target.sequences:,} sequences exact ({step_on.source}): used {used:,}"
    rule = (
        f"batch: {target.sequences:,} sequences target ({step_on.source}), \u00b1{target.tolerance:.0%} "
        f"({target.low:,} to {target.high:,})"
    )
    if target.low <= used <= target.high:
        return f"{rule}: used {used:,}"
    return (
        f"{rule}: no plan's dp x mbs lands in that range on {run.footprint.devices:,} devices, so the target "
        f"rounds up to the nearest batch a plan divides: used {used:,} (x{used / target.sequences:.2f})"
    )


def rounding_note(count: int | None, target: Cluster) -> str | None:
    """Says so when ``--count`` was rounded down to whole systems (None when it was not)."""
    if count is None or count == target.num_devices:
        return None
    system = target.system
    return (
        f"--count {count:,} is not a whole number of {system.num_devices}-device {system.id} systems: "
        f"{target.num_devices:,} devices used"
    )


def with_uncertainty(
    run: RunPlan,
    shape: TransformerShape,
    cluster: Cluster,
    *,
    efficiency: Efficiency | EfficiencyTable | None,
    failures: bool,
    hot_spares: bool = False,
) -> RunPlan:
    """``run`` with the intervals of its headlines and the inputs that move them (``fleet.uncertainty``)."""
    from rainier.fleet.failures import committed_failures
    from rainier.fleet.goodput import analytic_goodput, build_scenario
    from rainier.fleet.uncertainty import run_uncertainty, scaled_failures

    used = cluster if run.footprint.devices == cluster.num_devices else _resized(cluster, run)
    plan = run.estimate.plan

    def step_on(changed: Cluster) -> StepEstimate | None:
        found = estimate(shape, plan, changed, efficiency=efficiency, seq_len=run.estimate.seq_len)
        return found if isinstance(found, StepEstimate) else None

    ettr_of = None
    if failures:
        catalog = committed_failures()
        rates = catalog.model_for(used.accelerator.id)
        restart = catalog.recovery.restart_s(used.num_devices, hot_spares=hot_spares)
        hours = run.compute_days * 24.0  # failure-free hours

        def ettr_of(restart_factor: float, rate_factor: float) -> float:
            scenario = build_scenario(
                num_devices=used.num_devices,
                devices_per_server=used.system.devices_per_server,
                shape=shape,
                work_hours=hours,
                sites=max(1, len(used.sites)),
                restart_time_s=restart * restart_factor,
                failure_model=scaled_failures(rates, rate_factor),
            )
            return analytic_goodput(scenario).effective_training_time_ratio

    family = used.accelerator.efficiency_family
    assert family is not None
    found = run_uncertainty(run, used, step_on=step_on, ettr_of=ettr_of, family=family.value)
    return run if found is None else replace(run, uncertainty=found)


def run_fleet_compare(
    *,
    model: str,
    tokens: float,
    compare: str,
    cluster: str | None = None,
    accelerator: str | None = None,
    count: int | None = None,
    at: str = "power",
    gbs: int | None = None,
    batch_tokens: float | None = None,
    seq_len: int | None = None,
    price: PriceText = None,
    failures: bool = True,
    efficiency: Efficiency | EfficiencyTable | None = None,
    precision: str | None = None,
    idle_share: float = DEFAULT_IDLE_SHARE,
    hot_spares: bool = False,
    in_memory_checkpoint: bool = False,
) -> Comparison:
    """``rainier fleet plan --compare trn2,trn3,...``: the same run on clusters of equal power (or devices).

    Every row stands on one footing (``fleet.footing``): one global batch (``gbs`` exactly, else the batch target
    rounded by ``common_batch_sequences``), each chip's best training precision (or ``precision`` for all), one
    network, and a count within ``idle_share`` of its target chosen for the fastest step.
    """
    shape = _shape(model, seq_len)
    tokens = check_tokens(tokens)
    prices = parse_prices(price)
    idle_share = check_idle_share(idle_share)
    try:
        compare_at = CompareAt(at.strip().lower())
    except ValueError:
        raise field_error("compare-at", at, "power or devices") from None
    forced = None if precision is None or precision.strip().lower() == "best" else Precision.parse(precision)
    accelerators = parse_accelerators(compare)
    base = fleet_target(cluster, accelerator, count)
    footing = compare_footing(shape, tokens, base, compare_at, gbs=gbs, batch_tokens=batch_tokens)
    footing = replace(
        footing,
        precision="best" if forced is None else forced.value,
        idle_share=idle_share,
        recovery=recovery_text(failures, hot_spares=hot_spares, in_memory_checkpoint=in_memory_checkpoint),
    )
    goodput = goodput_model(failures, hot_spares=hot_spares, in_memory_checkpoint=in_memory_checkpoint)
    finders: dict[str, Callable[[Cluster], StepEstimate | Infeasible]] = {}

    def step_for(accelerator_id: str, batch: int) -> Callable[[Cluster], StepEstimate | Infeasible]:
        key = f"{accelerator_id}@{batch}"
        if key not in finders:
            chosen = forced or best_training_precision(get_accelerator(accelerator_id))
            finder = StepFinder(shape, tokens, gbs=batch, space=SearchSpace(precision=(chosen,)), efficiency=efficiency)
            finders[key] = _cached(finder)
        return finders[key]

    def run_on(target: Cluster, step_on: Callable[[Cluster], StepEstimate | Infeasible | None]) -> RunPlan:
        run = plan_run(shape, target, tokens, step_on=step_on, price=prices.for_cluster(target), goodput=goodput)
        return with_uncertainty(run, shape, target, efficiency=efficiency, failures=failures, hot_spares=hot_spares)

    return compare_runs(
        base,
        accelerators,
        at=compare_at,
        footing=footing,
        shape=shape,
        step_for=step_for,
        run_on=run_on,
    )


def compare_footing(
    shape: TransformerShape,
    tokens: float,
    base: Cluster,
    at: CompareAt,
    *,
    gbs: int | None = None,
    batch_tokens: float | None = None,
) -> Footing:
    """The footing of a comparison with ``base``: its size constraint and the one batch every row runs."""
    if gbs is not None and batch_tokens is not None:
        raise InputError("give --gbs (sequences) or --batch-tokens, not both")
    if gbs is not None:
        target, source, batch = float(check_gbs(gbs)), "gbs", gbs
    else:
        if batch_tokens is not None:
            check_batch_tokens(batch_tokens, shape.seq_len)
            target, source = batch_tokens / shape.seq_len, "--batch-tokens"
        else:
            target = critical_batch_tokens(model_flops_per_token(shape) * tokens) / shape.seq_len
            source = "batch law"
        batch = common_batch_sequences(target)  # compare_runs may choose another that fits the rows better
    facility = footprint(base).facility_power_w
    return Footing(
        at=at.value,
        facility_power_mw=None if facility is None else facility / 1e6,
        devices=base.num_devices,
        batch_target_sequences=target,
        batch_source=source,
        gbs=batch,
        seq_len=shape.seq_len,
        precision="best",
        idle_share=DEFAULT_IDLE_SHARE,
    )


def _cached(
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


def run_fleet_sites(
    *,
    model: str,
    cluster: str,
    plan: str | None = None,
    tokens: float = 15e12,
    gbs: int | None = None,
    batch_tokens: float | None = None,
    gbs_tolerance: float | None = None,
    seq_len: int | None = None,
    slowdown: float = DEFAULT_TARGET_SLOWDOWN,
    efficiency: Efficiency | EfficiencyTable | None = None,
) -> SiteAnalysis:
    """``rainier fleet sites``: a plan across the sites of a multi-site cluster, each split, the WAN needed."""
    shape = _shape(model, seq_len)
    tokens = check_tokens(tokens)
    if isinstance(slowdown, bool) or not isinstance(slowdown, int | float) or not 1.0 < slowdown <= MAX_SLOWDOWN:
        raise field_error("slowdown", slowdown, f"a target step-time ratio above 1 and at most {MAX_SLOWDOWN:g}")
    target = get_cluster(cluster)
    finder, best = (
        StepFinder(
            shape,
            tokens,
            plan=given,
            gbs=gbs,
            batch_tokens=batch_tokens,
            gbs_tolerance=gbs_tolerance,
            efficiency=efficiency,
        )
        for given in (plan, None)
    )
    if not target.wan_links:
        raise InputError(f"cluster {target.id} has no WAN links between sites: nothing to place across sites")
    try:
        options = finder.candidates(target, 1 if plan is not None else SITE_CANDIDATES, strict=True)
    except _NoPlan as none:
        raise InputError(
            f"no valid plan for {shape.name} on {target.id} ({target.num_devices:,} devices): {none.infeasible.reason}"
        ) from None
    analyses = [
        analyse_sites(shape, target, o.plan, step=_fixed(o), best_on=best, target_slowdown=slowdown) for o in options
    ]
    return _most_throughput(analyses)


def run_fleet_grow(
    *,
    power_schedule: str,
    mix: str = "trn2",
    model: str | None = None,
    tokens: float | None = None,
    seq_len: int | None = None,
    efficiency: Efficiency | EfficiencyTable | None = None,
) -> GrowthPlan:
    """``rainier fleet grow``: devices online per quarter, and training runs of ``model`` per quarter."""
    steps = parse_power_schedule(power_schedule, mix)
    if model is None:
        if tokens is not None:
            raise InputError("--tokens needs --model (runs of which model?)")
        return grow(steps)
    shape = _shape(model, seq_len)
    run_tokens = check_tokens(tokens if tokens is not None else CHINCHILLA_TOKENS_PER_PARAM * count_params(shape).total)
    step_on = StepFinder(shape, run_tokens, efficiency=efficiency)

    def rate(cluster: Cluster) -> float | None:
        found = step_on(cluster)
        return found.tokens_per_s if isinstance(found, StepEstimate) else None

    return grow(steps, tokens_per_run=run_tokens, model=shape.name, rate_of=rate)


def _shape(model: str, seq_len: int | None) -> TransformerShape:
    shape = resolve_model(model)
    if seq_len is not None:
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len <= 0:
            raise field_error("seq-len", seq_len, "a positive number of tokens")
        shape = shape.with_seq_len(seq_len)
    return shape


def run_fleet_goodput(
    *,
    model: str | None = None,
    cluster: str | None = None,
    accelerator: str | None = None,
    count: int | None = None,
    days: float | None = None,
    tokens: float | None = None,
    seed: int = 0,
    checkpoint_gib: float | None = None,
    checkpoint_interval_min: float | None = None,
    restart_min: float | None = None,
    spare_servers: int | None = None,
    repair_hours: float | None = None,
    plan: str | None = None,
    gbs: int | None = None,
    batch_tokens: float | None = None,
    efficiency: Efficiency | EfficiencyTable | None = None,
    hot_spares: bool = False,
    in_memory_checkpoint: bool = False,
) -> GoodputResult:
    """``rainier fleet goodput``: a seeded simulation of a whole job under failures and checkpoints.

    ``days`` simulates a fixed window; ``tokens`` (with ``model``) simulates until the run's failure-free hours
    (from the step model) are done. Without a model the checkpoint is ``checkpoint_gib`` or the default size.
    ``hot_spares`` restarts in place with running standbys; ``in_memory_checkpoint`` keeps checkpoints in a peer
    server's host memory (``fleet.goodput.build_scenario``).
    """
    from rainier.fleet.goodput import build_scenario, simulate_goodput
    from rainier.units import SECONDS_PER_HOUR, SECONDS_PER_MINUTE

    if (days is None) == (tokens is None):
        raise InputError("give --days D (a fixed window) or --tokens T with --model (run until trained), not both")
    if tokens is not None and model is None:
        raise InputError("--tokens needs --model (how long is a step?)")
    check_seed(seed)
    for name, value, high, what in (
        ("days", days, MAX_DAYS, "days"),
        ("checkpoint-gib", checkpoint_gib, MAX_CHECKPOINT_GIB, "GiB"),
        ("interval-min", checkpoint_interval_min, MAX_CHECKPOINT_INTERVAL_MIN, "minutes"),
        ("repair-hours", repair_hours, MAX_REPAIR_HOURS, "hours"),
    ):
        if value is not None:
            number_in(name, value, 0.0, high, what=what, low_open=True)
    if restart_min is not None:
        number_in("restart-min", restart_min, 0.0, MAX_RESTART_MIN, what="minutes")
    if spare_servers is not None:
        integer_in("spares", spare_servers, 0, MAX_SPARE_SERVERS, what="spare servers")
    target = fleet_target(cluster, accelerator, count)
    shape = _shape(model, None) if model is not None else None
    work_hours = None
    step_time_s = None
    if tokens is not None:
        assert shape is not None
        finder = StepFinder(
            shape, check_tokens(tokens), plan=plan, gbs=gbs, batch_tokens=batch_tokens, efficiency=efficiency
        )
        run = plan_run(shape, target, tokens, step_on=finder, price=Price(usd_per_device_hour=None, source="none"))
        work_hours = run.compute_days * 24.0
        step_time_s = run.step_time_s
        if run.footprint.devices != target.num_devices:
            target = _resized(target, run)
    scenario = build_scenario(
        num_devices=target.num_devices,
        devices_per_server=target.system.devices_per_server,
        accelerator=target.accelerator.id,
        shape=shape,
        checkpoint_size_bytes=None if checkpoint_gib is None else checkpoint_gib * GIB,
        days=days,
        work_hours=work_hours,
        seed=seed,
        restart_time_s=None if restart_min is None else restart_min * SECONDS_PER_MINUTE,
        checkpoint_interval_s=None if checkpoint_interval_min is None else checkpoint_interval_min * SECONDS_PER_MINUTE,
        spare_servers=spare_servers,
        repair_time_s=None if repair_hours is None else repair_hours * SECONDS_PER_HOUR,
        hot_spares=hot_spares,
        in_memory_checkpoint=in_memory_checkpoint,
        nic_bytes_per_s_per_device=target.system.nic_bw_bytes_per_s_per_device,
        sites=max(1, len(target.sites)),
        step_time_s=step_time_s,
    )
    return simulate_goodput(scenario)


def _resized(cluster: Cluster, run: RunPlan) -> Cluster:
    """The cluster a run actually used (one site alone, or a size plans divide)."""
    from rainier.hardware import resize_cluster

    return resize_cluster(cluster, run.footprint.devices // cluster.system.num_devices)


def run_fleet_scenario(
    path: str | Path | Scenario, *, efficiency: Efficiency | EfficiencyTable | None = None
) -> ScenarioResult:
    """``rainier fleet scenario FILE``: the run, its seeded failure simulation and the comparison of a scenario.

    ``path`` is a scenario file read by the one scenario loader (:mod:`rainier.api.scenario`; ``kind: fleet``,
    the default), or a scenario already read.
    """
    if isinstance(path, Scenario):
        scenario = path
        path = scenario.path or "scenario"
    else:
        scenario = fleet_scenario_file(path)
    try:
        return _run_scenario(scenario, efficiency)
    except InputError as exc:  # name the file: the field names are the API's (flags), the values the file's
        raise InputError(f"{clip_path(path)}: {exc}") from None


def fleet_scenario_file(path: str | Path) -> Scenario:
    """A ``kind: fleet`` scenario file through the one loader; another kind is a one-line error."""
    from rainier.api.scenario import load_scenario_file

    loaded = load_scenario_file(path, expect="fleet")
    assert isinstance(loaded.value, Scenario)
    return loaded.value


def _run_scenario(scenario: Scenario, efficiency: Efficiency | EfficiencyTable | None) -> ScenarioResult:
    run = run_fleet_plan(
        model=scenario.model,
        tokens=scenario.tokens,
        cluster=scenario.cluster,
        accelerator=scenario.accelerator,
        count=scenario.count,
        plan=scenario.plan,
        gbs=scenario.gbs,
        batch_tokens=scenario.batch_tokens,
        gbs_tolerance=scenario.gbs_tolerance,
        price=scenario.price,
        failures=scenario.failures,
        efficiency=efficiency,
        hot_spares=scenario.hot_spares,
        in_memory_checkpoint=scenario.in_memory_checkpoint,
        precision=scenario.precision,
    )
    goodput = None
    if scenario.failures:
        from rainier.fleet.goodput import build_scenario, simulate_goodput
        from rainier.units import SECONDS_PER_MINUTE

        interval = scenario.checkpoint_interval_min
        used = run.footprint
        target = fleet_target(scenario.cluster, scenario.accelerator, scenario.count)
        on = target if used.devices == target.num_devices else _resized(target, run)
        goodput = simulate_goodput(
            build_scenario(
                num_devices=used.devices,
                devices_per_server=used.devices // used.servers,
                accelerator=run.accelerator,
                shape=_shape(scenario.model, None),
                days=scenario.simulate_days,
                work_hours=None if scenario.simulate_days is not None else run.compute_days * 24.0,
                seed=scenario.seed,
                checkpoint_interval_s=None if interval is None else interval * SECONDS_PER_MINUTE,
                hot_spares=scenario.hot_spares,
                in_memory_checkpoint=scenario.in_memory_checkpoint,
                nic_bytes_per_s_per_device=on.system.nic_bw_bytes_per_s_per_device,
                sites=max(1, len(on.sites)),
                step_time_s=run.step_time_s,
            )
        )
        if scenario.simulate_days is None:
            run = replace(
                run,
                effective_training_time_ratio=goodput.effective_training_time_ratio,
                notes=(*run.notes, f"wall clock from the seeded failure simulation (seed {scenario.seed})"),
            )
            # the intervals follow the simulated wall clock
            run = with_uncertainty(
                run,
                _shape(scenario.model, None),
                target,
                efficiency=efficiency,
                failures=True,
                hot_spares=scenario.hot_spares,
            )
    comparison = None
    if scenario.compare:
        accelerators = ",".join(dict.fromkeys((run.accelerator, *scenario.compare)))
        comparison = run_fleet_compare(
            model=scenario.model,
            tokens=scenario.tokens,
            compare=accelerators,
            cluster=scenario.cluster,
            accelerator=scenario.accelerator,
            count=scenario.count,
            at=scenario.compare_at,
            gbs=scenario.gbs,
            batch_tokens=scenario.batch_tokens,
            price=scenario.price,
            failures=scenario.failures,
            efficiency=efficiency,
            precision=scenario.compare_precision,
            idle_share=scenario.compare_idle_share,
            hot_spares=scenario.hot_spares,
            in_memory_checkpoint=scenario.in_memory_checkpoint,
        )
    return ScenarioResult(scenario=scenario, run=run, goodput=goodput, comparison=comparison)
