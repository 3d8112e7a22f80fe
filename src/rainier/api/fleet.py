"""The fleet commands' Python API: whole runs, comparisons, multi-site splits, capacity growth and goodput.

``run_fleet_plan(model="frontier-2t-moe", tokens=15e12, cluster="rainier-trn2-500k")`` returns a
:class:`~rainier.fleet.plan.RunPlan` (``.to_dict()`` is the CLI's JSON). Names and strings are resolved here;
the step comes from the plan search (or a given ``plan``) through ``rainier.search``, which the fleet layer
itself does not import.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from rainier.api import resolve_cluster
from rainier.errors import InputError, field_error
from rainier.fleet.compare import CompareAt, Comparison, compare_runs, parse_accelerators
from rainier.fleet.goodput import GoodputResult
from rainier.fleet.grow import GrowthPlan, grow, parse_power_schedule
from rainier.fleet.multisite import DEFAULT_TARGET_SLOWDOWN, SiteAnalysis, analyse_sites
from rainier.fleet.plan import (
    GoodputModel,
    Price,
    RunPlan,
    check_tokens,
    default_batch_sequences,
    plan_run,
    smallest_for_deadline,
)
from rainier.fleet.power import fleet_cluster
from rainier.fleet.scenario import ScenarioResult, load_scenario
from rainier.hardware import Cluster, get_cluster
from rainier.parallel.plan import DegreeUnit, Infeasible, Plan, parse_plan
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate
from rainier.search.engine import Rates, search
from rainier.search.space import SearchSpace, load_space
from rainier.workload import count_params, resolve_model
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


def parse_prices(text: str | float | None) -> PriceSpec:
    """``2.5`` or ``"trn2=1.2,h100-sxm=4.9"`` (USD per device-hour) -> :class:`PriceSpec`."""
    if text is None:
        return PriceSpec()
    if isinstance(text, int | float):
        return PriceSpec(default=_positive_price(str(text), float(text)))
    spec = PriceSpec()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        try:
            number = float(value if sep else name)
        except ValueError:
            raise field_error("price", part, "USD per device-hour, e.g. 2.5 or trn2=1.2,h100-sxm=4.9") from None
        _positive_price(part, number)
        if sep:
            from rainier.hardware import get_accelerator

            spec.per_accelerator[get_accelerator(name.strip()).id] = number
        else:
            spec = PriceSpec(default=number, per_accelerator=spec.per_accelerator)
    return spec


def _positive_price(text: str, value: float) -> float:
    if not value > 0 or not math.isfinite(value):
        raise field_error("price", text, "a positive price in USD per device-hour")
    return value


def fleet_target(cluster: str | None, accelerator: str | None, count: int | None) -> Cluster:
    """A named cluster, or ``count`` devices of ``accelerator`` in its fleet building block (whole systems)."""
    if cluster is None and accelerator is not None and count is not None:
        if count <= 0:
            raise field_error("count", count, "a positive number of devices")
        return fleet_cluster(accelerator, count)
    return resolve_cluster(cluster, accelerator, count)


class StepFinder:
    """The step on a cluster: ``plan`` there, else the fastest plans at the batch (given, or DeepSeek LLM's law).

    Calling it gives the best estimate (or ``None`` when nothing fits); :meth:`candidates` gives the fastest few,
    for choices the step model does not see (the WAN between sites).
    """

    def __init__(
        self,
        shape: TransformerShape,
        tokens: float,
        *,
        plan: str | None = None,
        gbs: int | None = None,
        batch_tokens: float | None = None,
        space: SearchSpace | None = None,
        efficiency: Efficiency | EfficiencyTable | None = None,
    ) -> None:
        if gbs is not None and batch_tokens is not None:
            raise InputError("give --gbs (sequences) or --batch-tokens, not both")
        if gbs is not None and gbs <= 0:
            raise field_error("gbs", gbs, "a positive number of sequences per step")
        if batch_tokens is not None and not batch_tokens >= shape.seq_len:
            raise field_error("batch-tokens", batch_tokens, f"at least one sequence ({shape.seq_len} tokens)")
        self.shape = shape
        self.plan = plan
        self.space = space
        self.efficiency = efficiency
        self.exact = gbs is not None
        self.gbs = gbs or (
            max(1, round(batch_tokens / shape.seq_len)) if batch_tokens else default_batch_sequences(shape, tokens)
        )

    def __call__(self, cluster: Cluster) -> StepEstimate | None:
        found = self.candidates(cluster, 1)
        return found[0] if found else None

    def candidates(self, cluster: Cluster, count: int) -> list[StepEstimate]:
        if self.plan is not None:
            parsed = parse_plan(
                self.plan, num_devices=cluster.num_devices, cores_per_device=cluster.accelerator.num_logical_cores
            )
            result = estimate(self.shape, parsed, cluster, efficiency=self.efficiency)
            if isinstance(result, Infeasible):
                unit = " (NeuronCore degrees)" if parsed.degrees_unit is DegreeUnit.CORE else ""
                raise InputError(f"plan{unit}: {result.reason}")
            return [result]
        try:
            found = search(
                self.shape,
                cluster,
                gbs=self.gbs,
                top_k=count,
                space=self.space,
                efficiency=self.efficiency,
                round_gbs=not self.exact,
            )
        except InputError:
            return []
        return [ranked.estimate for ranked in found.top]


def goodput_model(enabled: bool) -> GoodputModel | None:
    """Expected effective training time ratio under the catalog failure model (``fleet.goodput``), if enabled."""
    if not enabled:
        return None
    from rainier.fleet.goodput import expected_ettr_for_run

    return expected_ettr_for_run


SITE_CANDIDATES = 10  # fastest one-network plans re-ranked with the WAN counted


def _fixed(result: StepEstimate) -> Callable[[Plan, Cluster], StepEstimate]:
    """A step function that returns an estimate already made (the search evaluated it)."""

    def step(_plan: Plan, _cluster: Cluster) -> StepEstimate:
        return result

    return step


def _sites_model(shape: TransformerShape, finder: StepFinder) -> Callable[[Cluster, StepEstimate], SiteAnalysis]:
    """Multi-site analysis that re-ranks the fastest plans by their throughput once the WAN is counted."""

    def sites(cluster: Cluster, first: StepEstimate) -> SiteAnalysis:
        alone: dict[int, StepEstimate | None] = {}

        def best_on(site: Cluster) -> StepEstimate | None:
            if site.num_devices not in alone:
                alone[site.num_devices] = finder(site)
            return alone[site.num_devices]

        options = finder.candidates(cluster, SITE_CANDIDATES) or [first]
        analyses = [
            analyse_sites(shape, cluster, option.plan, step=_fixed(option), best_on=best_on) for option in options
        ]
        return max(analyses, key=lambda a: a.best_spanning.tokens_per_s)

    return sites


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
    seq_len: int | None = None,
    price: str | float | None = None,
    failures: bool = True,
    space: str | None = None,
    efficiency: Efficiency | EfficiencyTable | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunPlan:
    """``rainier fleet plan``: a whole run on a cluster, or on the smallest cluster that meets a deadline."""
    shape = _shape(model, seq_len)
    tokens = check_tokens(tokens)
    prices = parse_prices(price)
    step_on = StepFinder(
        shape,
        tokens,
        plan=plan,
        gbs=gbs,
        batch_tokens=batch_tokens,
        space=load_space(space) if space else None,
        efficiency=efficiency,
    )
    if deadline_days is not None:
        if plan is not None:
            raise InputError("--deadline-days searches cluster sizes, so it takes no --plan")
        if cluster is not None and (accelerator is not None or count is not None):
            raise InputError("give either --cluster, or --accelerator (with an optional --count limit), not both")
        if cluster is not None:
            base = get_cluster(cluster)
            limit: int | None = base.num_devices
        elif accelerator is not None:
            if count is not None and count <= 0:
                raise field_error("count", count, "a positive upper limit on devices")
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
            goodput=goodput_model(failures),
            limit_devices=limit,
            progress=progress,
        )
    target = fleet_target(cluster, accelerator, count)
    return plan_run(
        shape,
        target,
        tokens,
        step_on=step_on,
        price=prices.for_cluster(target),
        goodput=goodput_model(failures),
        sites=_sites_model(shape, step_on),
    )


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
    price: str | float | None = None,
    failures: bool = True,
    efficiency: Efficiency | EfficiencyTable | None = None,
) -> Comparison:
    """``rainier fleet plan --compare trn2,trn3,...``: the same run on clusters of equal power (or devices)."""
    shape = _shape(model, seq_len)
    tokens = check_tokens(tokens)
    prices = parse_prices(price)
    try:
        compare_at = CompareAt(at.strip().lower())
    except ValueError:
        raise field_error("compare-at", at, "power or devices") from None
    accelerators = parse_accelerators(compare)
    base = fleet_target(cluster, accelerator, count)
    step_on = StepFinder(shape, tokens, gbs=gbs, batch_tokens=batch_tokens, efficiency=efficiency)
    goodput = goodput_model(failures)
    sites = _sites_model(shape, step_on)

    def run_on(target: Cluster) -> RunPlan:
        return plan_run(
            shape, target, tokens, step_on=step_on, price=prices.for_cluster(target), goodput=goodput, sites=sites
        )

    return compare_runs(base, accelerators, at=compare_at, run_on=run_on)


def run_fleet_sites(
    *,
    model: str,
    cluster: str,
    plan: str | None = None,
    tokens: float = 15e12,
    gbs: int | None = None,
    batch_tokens: float | None = None,
    seq_len: int | None = None,
    slowdown: float = DEFAULT_TARGET_SLOWDOWN,
    efficiency: Efficiency | EfficiencyTable | None = None,
) -> SiteAnalysis:
    """``rainier fleet sites``: a plan across the sites of a multi-site cluster, each split, the WAN needed."""
    shape = _shape(model, seq_len)
    target = get_cluster(cluster)
    finder = StepFinder(
        shape, check_tokens(tokens), plan=plan, gbs=gbs, batch_tokens=batch_tokens, efficiency=efficiency
    )
    best = StepFinder(shape, tokens, gbs=gbs, batch_tokens=batch_tokens, efficiency=efficiency)
    if not target.wan_links:
        raise InputError(f"cluster {target.id} has no WAN links between sites: nothing to place across sites")
    options = finder.candidates(target, 1 if plan is not None else SITE_CANDIDATES)
    if not options:
        raise InputError(f"no valid plan for {shape.name} on {target.id}")
    analyses = [
        analyse_sites(shape, target, o.plan, step=_fixed(o), best_on=best, target_slowdown=slowdown) for o in options
    ]
    return max(analyses, key=lambda a: a.best_spanning.tokens_per_s)


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
        return None if found is None else found.tokens_per_s

    return grow(steps, tokens_per_run=run_tokens, model=shape.name, rate_of=rate)


def _shape(model: str, seq_len: int | None) -> TransformerShape:
    shape = resolve_model(model)
    if seq_len is not None:
        if seq_len <= 0:
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
) -> GoodputResult:
    """``rainier fleet goodput``: a seeded simulation of a whole job under failures and checkpoints.

    ``days`` simulates a fixed window; ``tokens`` (with ``model``) simulates until the run's failure-free hours
    (from the step model) are done. Without a model the checkpoint is ``checkpoint_gib`` or the default size.
    """
    from rainier.fleet.goodput import build_scenario, simulate_goodput
    from rainier.units import GIB, SECONDS_PER_HOUR, SECONDS_PER_MINUTE

    if (days is None) == (tokens is None):
        raise InputError("give --days D (a fixed window) or --tokens T with --model (run until trained), not both")
    if tokens is not None and model is None:
        raise InputError("--tokens needs --model (how long is a step?)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise field_error("seed", seed, "a non-negative integer")
    for name, value in (
        ("days", days),
        ("checkpoint-gib", checkpoint_gib),
        ("checkpoint-interval-min", checkpoint_interval_min),
        ("repair-hours", repair_hours),
    ):
        if value is not None and (not value > 0 or not math.isfinite(value)):
            raise field_error(name, value, "a positive number")
    if restart_min is not None and (not restart_min >= 0 or not math.isfinite(restart_min)):
        raise field_error("restart-min", restart_min, "a non-negative number of minutes")
    if spare_servers is not None and spare_servers < 0:
        raise field_error("spares", spare_servers, "a non-negative number of servers")
    target = fleet_target(cluster, accelerator, count)
    shape = _shape(model, None) if model is not None else None
    work_hours = None
    if tokens is not None:
        assert shape is not None
        finder = StepFinder(
            shape, check_tokens(tokens), plan=plan, gbs=gbs, batch_tokens=batch_tokens, efficiency=efficiency
        )
        run = plan_run(shape, target, tokens, step_on=finder, price=Price(usd_per_device_hour=None, source="none"))
        work_hours = run.compute_days * 24.0
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
    )
    return simulate_goodput(scenario)


def _resized(cluster: Cluster, run: RunPlan) -> Cluster:
    """The cluster a run actually used (one site alone, or a size plans divide)."""
    from rainier.hardware import resize_cluster

    return resize_cluster(cluster, run.footprint.devices // cluster.system.num_devices)


def run_fleet_scenario(path: str, *, efficiency: Efficiency | EfficiencyTable | None = None) -> ScenarioResult:
    """``rainier fleet scenario FILE``: the run, its seeded failure simulation and the comparison of a scenario."""
    from dataclasses import replace

    scenario = load_scenario(path)
    run = run_fleet_plan(
        model=scenario.model,
        tokens=scenario.tokens,
        cluster=scenario.cluster,
        accelerator=scenario.accelerator,
        count=scenario.count,
        plan=scenario.plan,
        gbs=scenario.gbs,
        batch_tokens=scenario.batch_tokens,
        price=scenario.price,
        failures=scenario.failures,
        efficiency=efficiency,
    )
    goodput = None
    if scenario.failures:
        from rainier.fleet.goodput import build_scenario, simulate_goodput
        from rainier.units import SECONDS_PER_MINUTE

        interval = scenario.checkpoint_interval_min
        used = run.footprint
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
            )
        )
        if scenario.simulate_days is None:
            run = replace(
                run,
                effective_training_time_ratio=goodput.effective_training_time_ratio,
                notes=(*run.notes, f"wall clock from the seeded failure simulation (seed {scenario.seed})"),
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
        )
    return ScenarioResult(scenario=scenario, run=run, goodput=goodput, comparison=comparison)
