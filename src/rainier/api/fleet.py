"""The fleet commands' Python API: whole runs, comparisons, multi-site splits, capacity growth and goodput.

``run_fleet_plan(model="frontier-2t-moe", tokens=15e12, cluster="rainier-trn2-500k")`` returns a
:class:`~rainier.fleet.plan.RunPlan` (``.to_dict()`` is the CLI's JSON). Names and strings are resolved here;
the step comes from the plan search (or a given ``plan``) through ``rainier.search``, which the fleet layer
itself does not import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rainier.api.fleet_capacity import run_fleet_goodput, run_fleet_grow, run_fleet_sites
from rainier.api.fleet_steps import (
    CHINCHILLA_TOKENS_PER_PARAM,
    PriceSpec,
    StepFinder,
    batch_rule_note,
    best_on_sites,
    cached_finder,
    fixed_step,
    fleet_target,
    goodput_model,
    model_shape,
    parse_prices,
    recovery_text,
    resized_to_run,
    sites_model,
)
from rainier.errors import InputError, clip_path, field_error
from rainier.fleet.compare import CompareAt, Comparison, compare_runs, parse_accelerators
from rainier.fleet.footing import (
    DEFAULT_IDLE_SHARE,
    Footing,
    best_training_precision,
    check_idle_share,
    common_batch_sequences,
)
from rainier.fleet.limits import (
    check_batch_tokens,
    check_days,
    check_devices,
    check_gbs,
    check_tokens,
)
from rainier.fleet.multisite import analyse_sites
from rainier.fleet.plan import (
    PriceText,
    RunPlan,
    critical_batch_tokens,
    peak_floor_days,
    plan_run,
    smallest_for_deadline,
)
from rainier.fleet.power import fleet_cluster, footprint
from rainier.fleet.scenario import Scenario, ScenarioResult
from rainier.hardware import Cluster, get_accelerator, get_cluster
from rainier.parallel.plan import Infeasible
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate
from rainier.precision import Precision
from rainier.search.space import SearchSpace, load_space
from rainier.workload.flops import model_flops_per_token
from rainier.workload.shape import TransformerShape


# Compute-optimal tokens per parameter when --tokens is not given (Hoffmann et al. 2022, "Chinchilla", ~20).
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
    shape = model_shape(model, seq_len)
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
            floor_days=peak_floor_days(shape, tokens, step_on.precisions),
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
        sites=sites_model(shape, step_on),
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
    shape = model_shape(scenario.model, None)
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
    used = target if run.footprint.devices == target.num_devices else resized_to_run(target, run)
    options = finder.candidates(used, count)
    if run.sites is None or not used.wan_links:
        return [(option, option.step_time_s) for option in options]
    best_on = best_on_sites(finder)
    rows = []
    for option in options:
        analysis = analyse_sites(shape, used, option.plan, step=fixed_step(option), best_on=best_on)
        spanning = analysis.best_spanning
        if spanning is not None and spanning.step_time_s is not None:
            rows.append((option, spanning.step_time_s))
    return sorted(rows, key=lambda row: row[0].plan.gbs / row[1], reverse=True)


def batch_note(step_on: StepFinder, run: RunPlan) -> str:
    """The batch rule and the batch the run's plan used, in one line (``train search``'s rule)."""
    return batch_rule_note(step_on, run.estimate.plan.gbs, run.footprint.devices)


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

    used = cluster if run.footprint.devices == cluster.num_devices else resized_to_run(cluster, run)
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
    shape = model_shape(model, seq_len)
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
            finders[key] = cached_finder(finder)
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
        on = target if used.devices == target.num_devices else resized_to_run(target, run)
        goodput = simulate_goodput(
            build_scenario(
                num_devices=used.devices,
                devices_per_server=used.devices // used.servers,
                accelerator=run.accelerator,
                shape=model_shape(scenario.model, None),
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
                model_shape(scenario.model, None),
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


__all__ = [
    "CHINCHILLA_TOKENS_PER_PARAM",
    "PriceSpec",
    "StepFinder",
    "batch_note",
    "compare_footing",
    "fleet_scenario_file",
    "fleet_target",
    "goodput_model",
    "parse_prices",
    "recovery_text",
    "rounding_note",
    "run_candidates",
    "run_fleet_compare",
    "run_fleet_goodput",
    "run_fleet_grow",
    "run_fleet_plan",
    "run_fleet_scenario",
    "run_fleet_sites",
    "run_step_finder",
    "with_uncertainty",
]
