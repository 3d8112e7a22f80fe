"""``rainier train ...``: one step's estimate, the plan search and scaling.

Registered on the main app by ``rainier.cli`` (imported at the end of that module); each command parses its
options, calls one ``rainier.api`` function and renders with ``rainier.report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rainier.cli import (
    AcceleratorOption,
    ClusterOption,
    DocumentLenOption,
    JsonOption,
    ObjectiveOption,
    PriceOption,
    ReportOption,
    SeqLenOption,
    SpaceOption,
    TraceOption,
    _out,
    _print_tables,
    _progress,
    _write_extras,
    emit_json,
    train_app,
    user_errors,
)


@train_app.command("estimate")
@user_errors
def train_estimate(
    model: Annotated[str, typer.Option("--model", help="Catalog model name or Hugging Face config.json.")],
    plan: Annotated[
        str,
        typer.Option(
            "--plan",
            help="Parallel plan, e.g. tp=8,pp=8,dp=64,mbs=1,gbs=1024,recompute=selective,precision=bf16 "
            "(dp may be left out; keys: tp pp dp cp ep vpp sp zero fsdp mbs gbs recompute precision schedule "
            "unit lora; options: pp_first pp_last etp tp_overlap a2a_overlap capacity imbalance fp8_recipe flash "
            "fp8_attention flash2 (FlashAttention-2's kernels) ep_domains ep_dedup recompute_modules recompute_layers "
            "(full recompute of the first N "
            "layers per chunk) offload (host memory: optimizer+weights+activations, or none) shard (HSDP: ZeRO "
            "over groups of N dp ranks; hsdp=N also sets zero=3); schedules: 1f1b "
            "interleaved zb-h1 zb-v dualpipe gpipe).",
        ),
    ],
    cluster: Annotated[str | None, typer.Option("--cluster", help="Named cluster (rainier catalog clusters).")] = None,
    accelerator: Annotated[
        str | None, typer.Option("--accelerator", help="Accelerator id, with --count, instead of --cluster.")
    ] = None,
    count: Annotated[int | None, typer.Option("--count", help="Number of devices (with --accelerator).")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", min=1, help="Sequence length (default: model's).")] = None,
    document_len: DocumentLenOption = None,
    efficiency: Annotated[
        Path | None, typer.Option("--efficiency", help="Efficiency file (default: the committed fit).")
    ] = None,
    report_path: ReportOption = None,
    trace_path: TraceOption = None,
    trace_max_events: Annotated[
        int | None,
        typer.Option(
            "--trace-max-events", min=1, help="Most events a --trace may hold (default 500,000, about 90 MB)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Estimate one training step: time, throughput, MFU, where the time goes, memory per device, placement."""
    from rainier.api import run_estimate
    from rainier.perf.efficiency import load_efficiency
    from rainier.report.step_view import step_tables

    result = run_estimate(
        model=model,
        plan=plan,
        cluster=cluster,
        accelerator=accelerator,
        count=count,
        seq_len=seq_len,
        efficiency=load_efficiency(efficiency) if efficiency is not None else None,
        document_len=document_len,
    )
    document = result.to_dict()
    _write_extras(report_path, trace_path, result, (model, efficiency), trace_max_events=trace_max_events)
    if as_json:
        emit_json(document)
    else:
        _print_tables(step_tables(document))


@train_app.command("simulate")
@user_errors
def train_simulate(
    model: Annotated[str, typer.Option("--model", help="Catalog model name or Hugging Face config.json.")],
    plan: Annotated[str, typer.Option("--plan", help="Parallel plan, as for `train estimate`.")],
    cluster: ClusterOption = None,
    accelerator: AcceleratorOption = None,
    count: Annotated[int | None, typer.Option("--count", help="Number of devices (with --accelerator).")] = None,
    seq_len: SeqLenOption = None,
    document_len: DocumentLenOption = None,
    efficiency: Annotated[
        Path | None, typer.Option("--efficiency", help="Efficiency file (default: the committed fit).")
    ] = None,
    no_sharing: Annotated[
        bool, typer.Option("--no-sharing", help="Let every transfer run at its own speed (no link contention).")
    ] = False,
    report_path: ReportOption = None,
    trace_path: TraceOption = None,
    trace_max_events: Annotated[
        int | None,
        typer.Option(
            "--trace-max-events", min=1, help="Most events a --trace may hold (default 500,000, about 90 MB)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Simulate one training step (op graph, schedule order, links shared max-min fairly) beside the estimate."""
    from rainier.api import run_simulate
    from rainier.perf.efficiency import load_efficiency
    from rainier.report.sim_view import simulate_tables

    result = run_simulate(
        model=model,
        plan=plan,
        cluster=cluster,
        accelerator=accelerator,
        count=count,
        seq_len=seq_len,
        efficiency=load_efficiency(efficiency) if efficiency is not None else None,
        sharing=not no_sharing,
        trace=trace_path is not None,
        document_len=document_len,
    )
    _write_extras(report_path, trace_path, result, (model, efficiency), trace_max_events=trace_max_events)
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_tables(simulate_tables(result.to_dict()))


@train_app.command("search")
@user_errors
def train_search(
    model: Annotated[str, typer.Option("--model", help="Catalog model name or Hugging Face config.json.")],
    gbs: Annotated[
        str | None,
        typer.Option(
            "--gbs",
            help="Global batch in sequences per step: N exactly (dp*mbs must divide it), or ~N for any batch "
            "within --gbs-tolerance of N (each plan runs the largest such batch it can split evenly).",
        ),
    ] = None,
    gbs_tolerance: Annotated[
        float | None,
        typer.Option("--gbs-tolerance", help="Relative tolerance of a batch target (~N, --batch-tokens); 0.05 = +-5%."),
    ] = None,
    batch_tokens: Annotated[
        float | None,
        typer.Option("--batch-tokens", help="Global batch target in tokens instead of --gbs (within --gbs-tolerance)."),
    ] = None,
    cluster: ClusterOption = None,
    accelerator: AcceleratorOption = None,
    count: Annotated[
        str | None,
        typer.Option("--count", help="Devices (with --accelerator); a range 1024..1048576 or list with --pareto."),
    ] = None,
    seq_len: SeqLenOption = None,
    document_len: DocumentLenOption = None,
    objective: ObjectiveOption = "time",
    top: Annotated[int, typer.Option("--top", min=1, help="How many best plans to show.")] = 10,
    space: SpaceOption = None,
    price: PriceOption = None,
    pareto: Annotated[
        str | None, typer.Option("--pareto", help="time,cost or time,energy: the front over cluster sizes.")
    ] = None,
    verify: Annotated[
        int | None,
        typer.Option("--verify", min=1, help="Re-rank the best K plans by simulation and say where the order changed."),
    ] = None,
    report_path: ReportOption = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate every valid parallel plan (vectorised) and rank them; or a Pareto front over cluster sizes."""
    from rainier import api
    from rainier.report.search_view import scale_table, search_tables
    from rainier.search.scaling import pareto_front, parse_count, parse_pareto

    if pareto is not None:
        axes = parse_pareto(pareto)
        if gbs is None or batch_tokens is not None or gbs_tolerance is not None or gbs.strip().startswith("~"):
            raise ValueError("--pareto takes an exact --gbs N (batch targets are for one cluster's search)")
        if accelerator is None or count is None or cluster is not None:
            raise ValueError("--pareto needs --accelerator and --count (a range like 1024..1048576 or a list)")
        with _progress("searching cluster sizes", as_json) as progress:
            points = api.run_scale(
                model=model,
                accelerator=accelerator,
                counts=count,
                gbs=api.parse_int_option("gbs", gbs),
                seq_len=seq_len,
                document_len=document_len,
                objective=objective,
                space=str(space) if space else None,
                price=price,
                progress=progress,
            )
        front = pareto_front(points, axes)
        rows = [p.to_dict() for p in points]
        if as_json:
            emit_json({"pareto": list(axes), "points": rows, "front": front, "front_points": [rows[i] for i in front]})
        else:
            _out.print(scale_table(f"Pareto front of {axes[0]} vs {axes[1]} per token (* = on the front)", rows, front))
        return
    devices = parse_count(count, "count") if count is not None else None
    with _progress("evaluating plans", as_json) as progress:
        result = api.run_search(
            model=model,
            gbs=gbs,
            gbs_tolerance=gbs_tolerance,
            batch_tokens=batch_tokens,
            cluster=cluster,
            accelerator=accelerator,
            count=devices,
            seq_len=seq_len,
            objective=objective,
            top=top,
            space=str(space) if space else None,
            price=price,
            progress=progress,
            document_len=document_len,
            verify=verify,
        )
    _write_extras(report_path, None, result)
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_tables(search_tables(result.to_dict()))
        if result.verification is not None:
            from rainier.report.search_view import verification_table

            _out.print(verification_table(result.verification.to_dict()))


@train_app.command("scale")
@user_errors
def train_scale(
    model: Annotated[str, typer.Option("--model", help="Catalog model name or Hugging Face config.json.")],
    accelerator: Annotated[str, typer.Option("--accelerator", help="Accelerator id.")],
    counts: Annotated[str, typer.Option("--counts", help="Device counts: 1k,4k,1M or a range 1024..1048576.")],
    gbs_per_device: Annotated[
        float | None, typer.Option("--gbs-per-device", help="Weak scaling: sequences per device per step.")
    ] = None,
    gbs: Annotated[int | None, typer.Option("--gbs", help="Strong scaling: fixed global batch (sequences).")] = None,
    seq_len: SeqLenOption = None,
    objective: ObjectiveOption = "time",
    space: SpaceOption = None,
    price: PriceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Best plan, step time and MFU at each cluster size (a scaling curve)."""
    from rainier import api
    from rainier.report.search_view import scale_table

    with _progress("searching cluster sizes", as_json) as progress:
        points = api.run_scale(
            model=model,
            accelerator=accelerator,
            counts=counts,
            gbs=gbs,
            gbs_per_device=gbs_per_device,
            seq_len=seq_len,
            objective=objective,
            space=str(space) if space else None,
            price=price,
            progress=progress,
        )
    rows = [p.to_dict() for p in points]
    if as_json:
        emit_json({"points": rows})
    else:
        _out.print(scale_table(f"scaling of {model} on {accelerator}", rows))
