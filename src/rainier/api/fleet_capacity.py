"""The fleet commands that split or stretch a run: multi-site splits (``fleet sites``), capacity growth
(``fleet grow``) and goodput under failures (``fleet goodput``)."""

from __future__ import annotations

from dataclasses import replace

from rainier.api.fleet_steps import (
    CHINCHILLA_TOKENS_PER_PARAM,
    SITE_CANDIDATES,
    NoPlan,
    StepFinder,
    batch_rule_note,
    fixed_step,
    fleet_target,
    model_shape,
    most_throughput,
    resized_to_run,
)
from rainier.errors import InputError, field_error
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
    check_seed,
    check_tokens,
    integer_in,
    number_in,
)
from rainier.fleet.multisite import DEFAULT_TARGET_SLOWDOWN, SiteAnalysis, analyse_sites
from rainier.fleet.plan import (
    Price,
    plan_run,
)
from rainier.hardware import Cluster, get_cluster
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.perf.result import StepEstimate
from rainier.units import GIB
from rainier.workload import count_params


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
    shape = model_shape(model, seq_len)
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
    except NoPlan as none:
        raise InputError(
            f"no valid plan for {shape.name} on {target.id} ({target.num_devices:,} devices): {none.infeasible.reason}"
        ) from None
    analyses = [
        analyse_sites(shape, target, o.plan, step=fixed_step(o), best_on=best, target_slowdown=slowdown)
        for o in options
    ]
    chosen = most_throughput(analyses)
    note = batch_rule_note(finder, chosen.one_site.plan.gbs, target.num_devices)
    return replace(chosen, notes=(*chosen.notes, note))


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
    shape = model_shape(model, seq_len)
    run_tokens = check_tokens(tokens if tokens is not None else CHINCHILLA_TOKENS_PER_PARAM * count_params(shape).total)
    step_on = StepFinder(shape, run_tokens, efficiency=efficiency)

    def rate(cluster: Cluster) -> float | None:
        found = step_on(cluster)
        return found.tokens_per_s if isinstance(found, StepEstimate) else None

    return grow(steps, tokens_per_run=run_tokens, model=shape.name, rate_of=rate)


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
    shape = model_shape(model, None) if model is not None else None
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
            target = resized_to_run(target, run)
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
