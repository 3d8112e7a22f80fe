"""``rainier fleet ...``: whole runs, comparisons, sites, capacity growth, goodput under failures, scenarios.

Registered on the main app by ``rainier.cli`` (imported at the end of that module). Each command parses its
options, calls one function of ``rainier.api.fleet`` and renders with ``rainier.report.fleet_view``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from rainier.cli import (
    AcceleratorOption,
    ClusterOption,
    JsonOption,
    ReportOption,
    SeqLenOption,
    SpaceOption,
    _out,
    _print_tables,
    _progress,
    _write_extras,
    app,
    emit_json,
    user_errors,
)

fleet_app = typer.Typer(
    help="Fleets: whole training runs, power, energy, cost, sites, failures and capacity growth.",
    no_args_is_help=True,
)
app.add_typer(fleet_app, name="fleet")

ModelOption = Annotated[str, typer.Option("--model", help="Catalog model name or Hugging Face config.json.")]
TokensOption = Annotated[float, typer.Option("--tokens", help="Training tokens, e.g. 15e12.")]
FleetPriceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--price",
        help="USD per device-hour: one number, or per accelerator trn2=1.2,h100-sxm=4.9 (repeatable; each "
        "accelerator once; default: the catalog's price where public).",
    ),
]
GbsOption = Annotated[int | None, typer.Option("--gbs", help="Global batch in sequences (exact).")]
BatchTokensOption = Annotated[
    float | None,
    typer.Option(
        "--batch-tokens",
        help="Global batch target in tokens; each plan runs the largest batch within --gbs-tolerance that it can "
        "split, as train search does (default: DeepSeek LLM's batch law for the run's compute).",
    ),
]
GbsToleranceOption = Annotated[
    float | None,
    typer.Option(
        "--gbs-tolerance",
        help="Relative tolerance of the batch target (--batch-tokens or the batch law); 0.05 = +-5% (default).",
    ),
]
FailuresOption = Annotated[
    bool,
    typer.Option("--failures/--no-failures", help="Stretch the wall clock by the expected goodput under failures."),
]


@fleet_app.command("plan")
@user_errors
def fleet_plan(
    model: ModelOption,
    tokens: TokensOption,
    cluster: ClusterOption = None,
    accelerator: AcceleratorOption = None,
    count: Annotated[
        int | None,
        typer.Option("--count", help="Devices (with --accelerator), in the accelerator's fleet building block."),
    ] = None,
    deadline_days: Annotated[
        float | None,
        typer.Option(
            "--deadline-days", help="Find the smallest cluster (of --accelerator or --cluster) that meets it."
        ),
    ] = None,
    plan: Annotated[str | None, typer.Option("--plan", help="A fixed plan (default: search for the fastest).")] = None,
    gbs: GbsOption = None,
    batch_tokens: BatchTokensOption = None,
    gbs_tolerance: GbsToleranceOption = None,
    seq_len: SeqLenOption = None,
    price: FleetPriceOption = None,
    compare: Annotated[
        str | None,
        typer.Option("--compare", help="Also run it on these accelerators: trn2,trn3,h100-sxm,h200-sxm,b200,gb200."),
    ] = None,
    compare_at: Annotated[
        str, typer.Option("--compare-at", help="Size compared clusters at equal facility power or equal devices.")
    ] = "power",
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help="Training precision of the run and the compared rows: bf16, fp8 or best (default: the search's for "
            "the run, each chip's best for compared rows).",
        ),
    ] = None,
    idle_share: Annotated[
        float,
        typer.Option(
            "--idle-share", help="Compared rows may leave up to this share of devices idle for a better count."
        ),
    ] = 0.05,
    failures: FailuresOption = True,
    space: SpaceOption = None,
    sensitivity: Annotated[
        bool,
        typer.Option(
            "--sensitivity", help="Also rank the uncertain inputs by how far each moves the days (a tornado table)."
        ),
    ] = False,
    hot_spares: Annotated[
        bool, typer.Option("--hot-spares", help="Recover with running standbys; healthy ranks restart in place.")
    ] = False,
    in_memory_checkpoint: Annotated[
        bool, typer.Option("--in-memory-checkpoint", help="Checkpoint to a peer server's host memory over the NICs.")
    ] = False,
    report_path: ReportOption = None,
    as_json: JsonOption = False,
) -> None:
    """A whole training run: best plan, days, devices, servers, racks, MW, MWh, cost, tokens per joule."""
    from rainier.api.fleet import run_fleet_compare, run_fleet_plan
    from rainier.report.fleet_view import compare_tables, run_tables

    with _progress("planning", as_json) as progress:
        run = run_fleet_plan(
            model=model,
            tokens=tokens,
            cluster=cluster,
            accelerator=accelerator,
            count=count,
            deadline_days=deadline_days,
            plan=plan,
            gbs=gbs,
            batch_tokens=batch_tokens,
            gbs_tolerance=gbs_tolerance,
            seq_len=seq_len,
            price=price,
            failures=failures,
            space=str(space) if space else None,
            progress=progress,
            hot_spares=hot_spares,
            in_memory_checkpoint=in_memory_checkpoint,
            precision=precision,
        )
        comparison = None
        if compare is not None:
            comparison = run_fleet_compare(
                model=model,
                tokens=tokens,
                compare=compare,
                cluster=cluster if deadline_days is None else None,
                accelerator=None if deadline_days is None and cluster is not None else run.accelerator,
                count=None if deadline_days is None and cluster is not None else run.footprint.devices,
                at=compare_at,
                gbs=gbs,
                batch_tokens=batch_tokens,
                seq_len=seq_len,
                price=price,
                failures=failures,
                precision=precision,
                idle_share=idle_share,
                hot_spares=hot_spares,
                in_memory_checkpoint=in_memory_checkpoint,
            )
    document = run.to_dict()
    _write_extras(report_path, None, run)
    if as_json:
        emit_json(document if comparison is None else {**document, "comparison": comparison.to_dict()})
        return
    _print_tables(run_tables(document, sensitivity=sensitivity))
    if comparison is not None:
        _print_tables(compare_tables(comparison.to_dict()))


@fleet_app.command("sites")
@user_errors
def fleet_sites(
    model: ModelOption,
    cluster: Annotated[str, typer.Option("--cluster", help="A named cluster with sites joined by WAN links.")],
    plan: Annotated[str | None, typer.Option("--plan", help="A fixed plan (default: the fastest few).")] = None,
    tokens: Annotated[float, typer.Option("--tokens", help="Training tokens (sets the default batch).")] = 15e12,
    gbs: GbsOption = None,
    batch_tokens: BatchTokensOption = None,
    gbs_tolerance: GbsToleranceOption = None,
    seq_len: SeqLenOption = None,
    slowdown: Annotated[
        float, typer.Option("--slowdown", help="Target step-time ratio for the minimum WAN bandwidth.")
    ] = 1.05,
    as_json: JsonOption = False,
) -> None:
    """Training across sites: dp or pp across the WAN vs one site, the best split, the WAN bandwidth needed."""
    from rainier.api.fleet import run_fleet_sites
    from rainier.report.fleet_view import sites_tables

    analysis = run_fleet_sites(
        model=model,
        cluster=cluster,
        plan=plan,
        tokens=tokens,
        gbs=gbs,
        batch_tokens=batch_tokens,
        gbs_tolerance=gbs_tolerance,
        seq_len=seq_len,
        slowdown=slowdown,
    )
    document = analysis.to_dict()
    if as_json:
        emit_json(document)
    else:
        _out.print(f"plan: {analysis.one_site.plan.describe()}")
        _print_tables(sites_tables(document))


@fleet_app.command("grow")
@user_errors
def fleet_grow(
    power_schedule: Annotated[
        str,
        typer.Option("--power-schedule", help='Facility power by quarter: "2025Q4:1GW,2026Q4:+1GW@trn3,...".'),
    ],
    mix: Annotated[
        str, typer.Option("--mix", help="Accelerators filling new power: trn2,trn3 (equal) or trn2:0.3,trn3:0.7.")
    ] = "trn2",
    model: Annotated[str | None, typer.Option("--model", help="Also count training runs of this model.")] = None,
    tokens: Annotated[
        float | None, typer.Option("--tokens", help="Tokens per run (default: 20 per parameter).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Devices online per quarter from a power schedule, and training runs of a model per quarter."""
    from rainier.api.fleet import run_fleet_grow
    from rainier.report.fleet_view import grow_tables

    result = run_fleet_grow(power_schedule=power_schedule, mix=mix, model=model, tokens=tokens)
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_tables(grow_tables(result.to_dict()))


@fleet_app.command("goodput")
@user_errors
def fleet_goodput(
    model: Annotated[
        str | None, typer.Option("--model", help="Model (checkpoint size; with --tokens, the run's length).")
    ] = None,
    cluster: ClusterOption = None,
    accelerator: AcceleratorOption = None,
    count: Annotated[int | None, typer.Option("--count", help="Devices (with --accelerator).")] = None,
    days: Annotated[float | None, typer.Option("--days", help="Simulate a fixed wall-clock window.")] = None,
    tokens: Annotated[
        float | None, typer.Option("--tokens", help="Simulate until this many tokens are trained (needs --model).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same output.")] = 0,
    checkpoint_gib: Annotated[
        float | None, typer.Option("--checkpoint-gib", help="Checkpoint size (default: from the model, or a default).")
    ] = None,
    interval_min: Annotated[
        float | None, typer.Option("--interval-min", help="Checkpoint interval (default: Young/Daly optimum).")
    ] = None,
    restart_min: Annotated[float | None, typer.Option("--restart-min", help="Restart time after a failure.")] = None,
    spares: Annotated[
        int | None, typer.Option("--spares", help="Spare servers (default: a fraction of the job's).")
    ] = None,
    repair_hours: Annotated[float | None, typer.Option("--repair-hours", help="Time to repair a server.")] = None,
    hot_spares: Annotated[
        bool,
        typer.Option("--hot-spares", help="Spares run as standby processes; healthy ranks restart in place."),
    ] = False,
    in_memory_checkpoint: Annotated[
        bool,
        typer.Option("--in-memory-checkpoint", help="Checkpoint to a peer server's host memory over the NICs."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Simulate a whole job under failures: interruptions by cause, lost work, checkpoints, restarts, goodput."""
    from rainier.api.fleet import run_fleet_goodput
    from rainier.report.goodput_view import goodput_tables

    result = run_fleet_goodput(
        model=model,
        cluster=cluster,
        accelerator=accelerator,
        count=count,
        days=days,
        tokens=tokens,
        seed=seed,
        checkpoint_gib=checkpoint_gib,
        checkpoint_interval_min=interval_min,
        restart_min=restart_min,
        spare_servers=spares,
        repair_hours=repair_hours,
        hot_spares=hot_spares,
        in_memory_checkpoint=in_memory_checkpoint,
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_tables(goodput_tables(result))


@fleet_app.command("scenario")
@user_errors
def fleet_scenario(
    path: Annotated[str, typer.Argument(help="Scenario YAML file (see examples/rainier-frontier.yaml).")],
    report_path: ReportOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a scenario file: the best plan, days with simulated failures, MW, MWh, cost, and the comparison."""
    from rainier.api.fleet import run_fleet_scenario
    from rainier.report.fleet_view import scenario_tables

    with _progress("running the scenario", as_json):
        result = run_fleet_scenario(path)
    if report_path is not None:
        from rainier.api.report import fleet_report

        with open(path, encoding="utf-8") as handle:
            fleet_report(result, inputs=handle.read()).write(report_path)
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_tables(scenario_tables(result.to_dict()))
