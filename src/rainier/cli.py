"""rainier command line: a thin typer app.

Each command parses its arguments, calls one library function and renders the result with ``rainier.report``.
User mistakes (``InputError``, a ``ValueError``) become one line on stderr and exit code 2; no traceback.
Set ``RAINIER_DEBUG=1`` to see the traceback of an unexpected error.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from rainier import __version__

P = ParamSpec("P")
R = TypeVar("R")

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1

app = typer.Typer(
    name="rainier",
    help="Software twin of hyperscale AI computers: Trainium, GPU and TPU clusters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
catalog_app = typer.Typer(help="List the cited hardware and model catalog.", no_args_is_help=True)
model_app = typer.Typer(help="Model shapes: parameters, FLOPs, memory, KV cache.", no_args_is_help=True)
train_app = typer.Typer(help="Training: step-time estimates.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(model_app, name="model")
app.add_typer(train_app, name="train")

# Piped output keeps a wide layout instead of rich's 80-column default.
_WIDTH = shutil.get_terminal_size((160, 40)).columns
_out = Console(soft_wrap=False, width=_WIDTH)
_err = Console(stderr=True)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn bad input into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ValueError as exc:  # InputError and config validation errors
            _err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except KeyboardInterrupt:
            _err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout (no rich markup, no wrapping)."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]


def _print_tables(tables: list[Any]) -> None:
    for table in tables:
        _out.print(table)


# --------------------------------------------------------------------------------------------- model
@model_app.command("show")
@user_errors
def model_show(
    model: Annotated[str, typer.Argument(help="A catalog model name, or a Hugging Face config.json (or its folder).")],
    seq_len: Annotated[
        int | None, typer.Option("--seq-len", min=1, help="Sequence length (default: the model's own).")
    ] = None,
    kv_precision: Annotated[str, typer.Option("--kv-precision", help="KV-cache element type.")] = "bf16",
    accelerator: Annotated[
        str | None,
        typer.Option("--accelerator", help="Also show memory floors and the peak-rate bound on this accelerator."),
    ] = None,
    precision: Annotated[str, typer.Option("--precision", help="Matmul precision for the peak-rate bound.")] = "bf16",
    as_json: JsonOption = False,
) -> None:
    """Parameters (total, active), FLOPs per token, training-state bytes by group and KV bytes per token."""
    from rainier.hardware import get_accelerator
    from rainier.perf.fit import device_fit
    from rainier.precision import Precision
    from rainier.report.model_view import fit_table, model_tables
    from rainier.workload import resolve_model, summarize

    shape = resolve_model(model)
    if seq_len is not None:
        shape = shape.with_seq_len(seq_len)
    summary = summarize(shape, kv_precision=Precision.parse(kv_precision, "kv-precision")).to_dict()
    fit = None
    if accelerator is not None:
        fit = device_fit(shape, get_accelerator(accelerator), precision=Precision.parse(precision)).to_dict()
        summary["device_fit"] = fit
    if as_json:
        emit_json(summary)
        return
    _print_tables(model_tables(summary))
    if fit is not None:
        _out.print(fit_table(fit))


# --------------------------------------------------------------------------------------------- train
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
            "unit lora).",
        ),
    ],
    cluster: Annotated[str | None, typer.Option("--cluster", help="Named cluster (rainier catalog clusters).")] = None,
    accelerator: Annotated[
        str | None, typer.Option("--accelerator", help="Accelerator id, with --count, instead of --cluster.")
    ] = None,
    count: Annotated[int | None, typer.Option("--count", help="Number of devices (with --accelerator).")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", min=1, help="Sequence length (default: model's).")] = None,
    efficiency: Annotated[
        Path | None, typer.Option("--efficiency", help="Efficiency file (default: the committed fit).")
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
    )
    document = result.to_dict()
    if as_json:
        emit_json(document)
    else:
        _print_tables(step_tables(document))


# --------------------------------------------------------------------------------------------- catalog
def _catalog_rows(kind: str) -> list[dict[str, Any]]:
    from rainier import hardware
    from rainier.catalog import source_index

    if kind == "sources":
        index = source_index()
        return [{"id": k, "title": t, "url": index.urls.get(k)} for k, t in index.titles.items()]
    if kind == "accelerators":
        return [a.to_dict() for a in hardware.accelerators()]
    if kind == "systems":
        return [s.to_dict() for s in hardware.systems()]
    if kind == "fabrics":
        return [f.to_dict() for f in hardware.fabrics()]
    return [c.to_dict() for c in hardware.clusters()]


def _catalog_command(kind: str, doc: str) -> None:
    @user_errors
    def command(as_json: JsonOption = False) -> None:
        from rainier.report.catalog_view import TABLES

        rows = _catalog_rows(kind)
        if as_json:
            emit_json(rows)
        else:
            _out.print(TABLES[kind](rows))

    command.__doc__ = doc
    catalog_app.command(kind)(command)


_catalog_command("accelerators", "Accelerators: dense peak FLOP/s per precision, HBM, SRAM, cores, power.")
_catalog_command("systems", "Servers and scale-up domains: devices, topology, links per axis, host NICs.")
_catalog_command("fabrics", "Interconnects: bandwidth per device (stated and per direction), latency.")
_catalog_command("clusters", "Named clusters: systems, devices, sites, network tiers, power, prices.")
_catalog_command("sources", "Every citation the catalog refers to.")


@catalog_app.command("models")
@user_errors
def catalog_models(as_json: JsonOption = False) -> None:
    """Named models (with their aliases and sources)."""
    from rainier.report.model_view import models_table
    from rainier.workload import catalog_model_rows

    rows = catalog_model_rows()
    if as_json:
        emit_json(rows)
    else:
        _out.print(models_table(rows))


# --------------------------------------------------------------------------------------------- validation
CasesArgument = Annotated[
    Path, typer.Argument(help="A validation cases file (validation/training.yaml or inference.yaml).")
]


@app.command("validate")
@user_errors
def validate(
    cases: CasesArgument,
    group: Annotated[str | None, typer.Option("--group", help="Only the cases of this group.")] = None,
    efficiency: Annotated[
        Path | None,
        typer.Option("--efficiency", help="Efficiency file to predict with (default: the committed fit)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Predict every published case and compare: per-case error, median / mean / p90 |error|."""
    from rainier.calibrate import validate_file
    from rainier.report.calibrate_view import validation_tables

    report = validate_file(cases, group=group, efficiency_path=efficiency).to_dict()
    if as_json:
        emit_json(report)
    else:
        _print_tables(validation_tables(report))


@app.command("calibrate")
@user_errors
def calibrate(
    cases: CasesArgument,
    exclude_group: Annotated[
        list[str] | None, typer.Option("--exclude-group", help="Leave a group out of the fit (repeatable).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the fit (default: the package's efficiency.yaml).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Fit and report, but write nothing.")] = False,
    leave_one_group_out: Annotated[
        bool, typer.Option("--leave-one-group-out", help="Also cross-validate: fit without each group, predict it.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Fit the step model's efficiency parameters per accelerator family on published runs."""
    from rainier.calibrate import calibrate_file
    from rainier.report.calibrate_view import fit_tables

    excluded = tuple(exclude_group or ())
    command = " ".join(
        ["rainier calibrate", shlex.quote(str(cases))]
        + [f"--exclude-group {shlex.quote(g)}" for g in excluded]
        + ([f"--out {shlex.quote(str(out))}"] if out is not None else [])
    )
    show_status = not as_json and _err.is_terminal
    with _err.status("fitting ...") if show_status else contextlib.nullcontext() as status:
        run = calibrate_file(
            cases,
            exclude_groups=excluded,
            out=out,
            dry_run=dry_run,
            cross_validate=leave_one_group_out,
            command=command,
            progress=status.update if status is not None else None,
        )
    doc = run.to_dict()
    if as_json:
        emit_json(doc)
        return
    _print_tables(fit_tables(doc))
    _out.print(f"wrote {run.written}" if run.written is not None else "dry run: nothing written")


def _version(value: bool) -> None:
    if value:
        _out.print(f"rainier {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Software twin of hyperscale AI computers."""


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # an internal bug: say so in one line unless debugging
        if os.environ.get("RAINIER_DEBUG"):
            raise
        _err.print(f"internal error: {type(exc).__name__}: {exc} (set RAINIER_DEBUG=1 for the traceback)")
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
