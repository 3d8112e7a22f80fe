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
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from rainier import __version__
from rainier.report.console import FittingConsole

P = ParamSpec("P")
R = TypeVar("R")

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C

app = typer.Typer(
    name="rainier",
    help="Software twin of hyperscale AI computers: Trainium, GPU and TPU clusters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
catalog_app = typer.Typer(help="List the cited hardware and model catalog.", no_args_is_help=True)
model_app = typer.Typer(help="Model shapes: parameters, FLOPs, memory, KV cache.", no_args_is_help=True)
train_app = typer.Typer(help="Training: step-time estimates, plan search, scaling.", no_args_is_help=True)
results_app = typer.Typer(help="Stored sweep results (the DuckDB file of `rainier sweep`).", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(model_app, name="model")
app.add_typer(train_app, name="train")
app.add_typer(results_app, name="results")

# Piped output keeps a wide layout instead of rich's 80-column default; a terminal's (or COLUMNS') width is read
# again when each command starts (``_root``), so tables fit the window the command runs in.
PIPED_WIDTH = 160


def _terminal_width() -> int:
    return shutil.get_terminal_size((PIPED_WIDTH, 40)).columns


# Names are not markup or emoji ("neuronlink-v3:x:", "[...]"): views style cells with rich Text, never markup.
_out = FittingConsole(soft_wrap=False, width=_terminal_width(), emoji=False, markup=False)
_err = Console(stderr=True, emoji=False)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn bad input into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ValueError as exc:  # InputError and config validation errors
            if kwargs.get("as_json") is True:  # a script reading --json gets the error as JSON too (on stderr)
                sys.stderr.write(json.dumps({"error": str(exc), "exit_code": EXIT_BAD_INPUT}) + "\n")
            else:
                _err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except KeyboardInterrupt:
            _err.print("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def emit_json(document: Any) -> None:
    """Print one strict JSON document on stdout (no NaN or infinity: ``null`` with ``null_reasons``)."""
    from rainier.report.jsondoc import dumps

    sys.stdout.write(dumps(document, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file (its storage header)


def _is_duckdb(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(12)[8:12] == DUCKDB_MAGIC
    except OSError:
        return False


def check_output(path: Path | None, option: str, *inputs: Path | str | None) -> None:
    """Refuse (exit 2) to write ``path`` over one of the command's ``inputs``, a results database or a folder."""
    from rainier.errors import InputError, clip_path

    if path is None:
        return
    shown = clip_path(path)
    if path.is_dir():
        raise InputError(f"{option} {shown}: is a folder; give a file name")
    if not path.exists():
        return
    for source in inputs:
        if source is not None and Path(source).exists() and path.samefile(source):
            raise InputError(f"{option} {shown}: is also an input of this command; refusing to write over it")
    if _is_duckdb(path):
        raise InputError(f"{option} {shown}: is a rainier results database; refusing to write over it")


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
ReportOption = Annotated[
    Path | None, typer.Option("--report", help="Also write a self-contained HTML report (plots) to this file.")
]
TraceOption = Annotated[
    Path | None, typer.Option("--trace", help="Also write a Chrome/Perfetto trace (JSON) to this file.")
]


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


# --------------------------------------------------------------------------------------------- sweep
DbOption = Annotated[
    Path | None, typer.Option("--db", help="Results database, a DuckDB file (default: rainier-results.duckdb).")
]


@contextlib.contextmanager
def _progress(label: str, quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr for a terminal; nothing for --json or pipes."""
    if quiet or not _err.is_terminal:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=_err, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


ClusterOption = Annotated[str | None, typer.Option("--cluster", help="Named cluster (rainier catalog clusters).")]
AcceleratorOption = Annotated[
    str | None, typer.Option("--accelerator", help="Accelerator id, with --count, instead of --cluster.")
]
SeqLenOption = Annotated[int | None, typer.Option("--seq-len", min=1, help="Sequence length (default: model's).")]
DocumentLenOption = Annotated[
    int | None,
    typer.Option(
        "--document-len",
        min=1,
        help="Packed sequences: mean tokens per document (each attends only within itself); default: unpacked.",
    ),
]
ObjectiveOption = Annotated[str, typer.Option("--objective", help="Minimise per token: time, cost or energy.")]
SpaceOption = Annotated[Path | None, typer.Option("--space", help="YAML file narrowing or widening the plan space.")]
PriceOption = Annotated[
    float | None, typer.Option("--price", help="USD per device-hour (default: the catalog's, where public).")
]


@app.command("sweep")
@user_errors
def sweep(
    spec: Annotated[
        Path,
        typer.Argument(help="Sweep file (YAML): models, clusters, gbs; optional seq_len, objective, top."),
    ],
    db: DbOption = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip the cells already stored in --db and run the rest.")
    ] = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Run the cells as Ray tasks on an existing Ray cluster: auto or ADDRESS "
            "(needs the ray extra: pip install 'rainier\\[ray]').",
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Local worker processes (default: every core).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Search every cell of a grid of models x clusters x batch sizes; each result is stored as it finishes."""
    from rainier.errors import InputError
    from rainier.report.sweep_view import SweepLog, SweepProgressBar, results_table
    from rainier.search.runner import SweepObserver, run_sweep
    from rainier.search.store import DEFAULT_DB, read_rows
    from rainier.search.sweep import load_sweep_spec

    if ray is not None and workers is not None:
        raise InputError("give --workers (local processes) or --ray (Ray schedules the cells), not both")
    parsed = load_sweep_spec(spec)
    path = db if db is not None else DEFAULT_DB
    if path.exists() and path.samefile(spec):
        raise InputError(f"--db {path}: is the sweep file; refusing to write over it")
    observer: SweepObserver | None = None
    display: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if not as_json and _err.is_terminal:
        observer = bar = SweepProgressBar(_err)
        display = bar
    elif not as_json:
        observer = SweepLog(_err)
    with display:
        summary = run_sweep(parsed, db=path, resume=resume, workers=workers, ray_address=ray, observer=observer)
    if as_json:
        emit_json(summary.to_dict())
        return
    rows = read_rows(path, {cell.cell_id for cell in parsed.cells()})
    _out.print(results_table(rows, title=f"sweep {spec.name}: best plan per cell ({parsed.objective.value})"))
    _out.print(
        f"{summary.done} ok, {summary.failed} failed, {summary.skipped_existing} already stored; "
        f"{len(rows)} rows in {path}",
        highlight=False,
    )


@results_app.command("export")
@user_errors
def results_export(
    out: Annotated[Path, typer.Option("-o", "--out", help="File to write (one row per cell).")],
    file_format: Annotated[
        str | None, typer.Option("--format", help="csv or parquet (default: from the -o suffix).")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write every stored sweep row (inputs, status, best plan, metrics, full search JSON) to CSV or Parquet."""
    from rainier.errors import field_error
    from rainier.search.store import DEFAULT_DB, ExportFormat, export_results

    text = file_format if file_format is not None else out.suffix.lstrip(".").lower()
    allowed = tuple(f.value for f in ExportFormat)
    if text not in allowed:
        raise field_error("format", text, f"one of {', '.join(allowed)} (or an -o name ending .csv or .parquet)")
    path = db if db is not None else DEFAULT_DB
    check_output(out, "--out", path)
    count = export_results(path, out, ExportFormat(text))
    if as_json:
        emit_json({"db": path, "out": out, "format": text, "rows": count})
    else:
        _out.print(f"wrote {count} rows from {path} to {out} ({text})", highlight=False)


# --------------------------------------------------------------------------------------------- catalog
def _catalog_rows(kind: str) -> list[dict[str, Any]]:
    from rainier import hardware
    from rainier.catalog import source_index

    if kind == "sources":
        index = source_index()
        return [{"id": k, "title": t, "url": index.urls.get(k)} for k, t in index.titles.items()]
    if kind == "datasets":
        from rainier.serve.datasets import dataset_registry

        return [d.describe() for d in dataset_registry()]
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
_catalog_command("datasets", "Benchmark request-length mixes (serve simulate --lengths, a case's serving.lengths).")


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
    list[Path],
    typer.Argument(
        help="A validation cases file (validation/training.yaml or inference.yaml); inference files may be several "
        "(validation/inference*.yaml), scored and fitted together."
    ),
]


def _one_kind(cases: list[Path]) -> tuple[Path, bool]:
    """The first cases file and whether the files hold inference cases; several files must all be inference."""
    from rainier.errors import InputError

    inference = [_is_inference(path) for path in cases]
    if len(cases) > 1 and not all(inference):
        raise InputError("several cases files are read together only for inference cases; give one training file")
    return cases[0], inference[0]


@app.command("report")
@user_errors
def report(
    scenario: Annotated[
        Path, typer.Argument(help="A scenario file (examples/*.yaml): kind fleet (default), training or serve.")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="The HTML file to write.")] = Path("report.html"),
    plotly: Annotated[
        str,
        typer.Option(
            "--plotly",
            help="inline: plotly.js in the file once (~5 MB, opens without a network); cdn: a script tag (small).",
        ),
    ] = "inline",
    as_json: JsonOption = False,
) -> None:
    """Run a scenario and write one self-contained HTML report with plots (opens without a network)."""
    from rainier.api.report import scenario_report
    from rainier.errors import InputError
    from rainier.report.html import PLOTLY_MODES

    if plotly not in PLOTLY_MODES:
        raise InputError(f"--plotly {plotly!r} is invalid: {' or '.join(PLOTLY_MODES)}")
    check_output(out, "--out", scenario)
    with _progress("running the scenario", as_json):
        page, document = scenario_report(scenario)
    written = page.write(out, plotly=plotly)
    if as_json:
        emit_json({"report": str(written), **document})
    else:
        _out.print(f"wrote {written}")


@app.command("validate")
@user_errors
def validate(
    cases: CasesArgument,
    group: Annotated[str | None, typer.Option("--group", help="Only the cases of this group.")] = None,
    efficiency: Annotated[
        Path | None,
        typer.Option("--efficiency", help="Efficiency file to predict with (default: the committed fit)."),
    ] = None,
    simulate: Annotated[
        bool,
        typer.Option(
            "--simulate", help="Also simulate every training case; report the simulation's error beside the estimate's."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Predict every published case and compare: per-case error, median / mean / p90 |error|."""
    from rainier.calibrate import validate_file
    from rainier.report.calibrate_view import validation_tables

    first, inference = _one_kind(cases)
    if simulate and inference:
        from rainier.errors import InputError

        raise InputError("--simulate: the step simulator predicts training cases, not inference cases")
    if simulate:
        from rainier.api.validation import validate_with_simulation

        with _progress("simulating cases", as_json) as progress:
            report = validate_with_simulation(first, group=group, efficiency_path=efficiency, progress=progress)
    elif inference:
        from rainier.serve.validate import validate_inference_file

        served = validate_inference_file(cases, group=group, efficiency_path=efficiency)
        files = ", ".join(str(path) for path in cases)
        report = {**served.to_dict(), "summary": {**served.summary, "kind": "inference", "cases_file": files}}
    else:
        report = validate_file(first, group=group, efficiency_path=efficiency).to_dict()
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
    """Fit efficiency parameters on published runs: the step model's, or the serving model's for inference."""
    from rainier.calibrate import calibrate_file
    from rainier.report.calibrate_view import fit_tables

    first, inference = _one_kind(cases)
    check_output(out, "--out", *cases)
    excluded = tuple(exclude_group or ())
    show_status = not as_json and _err.is_terminal
    with _err.status("fitting ...") if show_status else contextlib.nullcontext() as status:
        progress = status.update if status is not None else None
        if inference:
            from rainier.serve.fitting import calibrate_inference_file

            command = " ".join(["rainier calibrate", *(shlex.quote(str(path)) for path in cases)])
            result = calibrate_inference_file(
                cases, out=out, dry_run=dry_run, cross_validate=leave_one_group_out, command=command, progress=progress
            )
        else:
            command = " ".join(
                ["rainier calibrate", shlex.quote(str(first))]
                + [f"--exclude-group {shlex.quote(g)}" for g in excluded]
                + ([f"--out {shlex.quote(str(out))}"] if out is not None else [])
            )
            run = calibrate_file(
                first,
                exclude_groups=excluded,
                out=out,
                dry_run=dry_run,
                cross_validate=leave_one_group_out,
                command=command,
                progress=progress,
            )
    if inference:
        from rainier.report.serve_view import serve_fit_tables

        if as_json:
            emit_json(result)
        else:
            _print_tables(serve_fit_tables(result))
        return
    doc = run.to_dict()
    if as_json:
        emit_json(doc)
        return
    _print_tables(fit_tables(doc))
    _out.print(f"wrote {run.written}" if run.written is not None else "dry run: nothing written")
    if run.residuals_written is not None:
        _out.print(f"wrote {run.residuals_written} (held-out errors: the fleet commands' intervals)")


def _write_extras(
    report_path: Path | None,
    trace_path: Path | None,
    result: Any,
    inputs: tuple[Path | str | None, ...] = (),
    *,
    trace_max_events: int | None = None,
) -> None:
    """``--report`` and ``--trace`` of a command's result (each only where it applies), never over ``inputs``."""
    check_output(report_path, "--report", *inputs)
    check_output(trace_path, "--trace", *inputs, report_path)
    if report_path is not None:
        from rainier.api.report import report_of

        report_of(result).write(report_path)
        _err.print(f"wrote {report_path}")
    if trace_path is not None:
        from rainier.api.report import trace_of

        trace_of(result, trace_path, max_events=trace_max_events)
        _err.print(f"wrote {trace_path}")


def _is_inference(path: Path) -> bool:
    """Whether a validation file holds inference cases (they are scored by the serving model)."""
    from rainier.calibrate.cases import CaseKind, load_cases

    return load_cases(path).kind is CaseKind.INFERENCE


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
    _out.width = _terminal_width()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:  # Ctrl-C outside a command's own handler (while importing, between phases)
        _err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # an internal bug: say so in one line unless debugging
        if os.environ.get("RAINIER_DEBUG"):
            raise
        _err.print(f"internal error: {type(exc).__name__}: {exc} (set RAINIER_DEBUG=1 for the traceback)")
        sys.exit(EXIT_INTERNAL)


# Command groups in their own modules register themselves on ``app`` (they import the helpers above).
from rainier.cli import fleet as _fleet  # noqa: E402
from rainier.cli import launch as _launch  # noqa: E402
from rainier.cli import serve as _serve  # noqa: E402
from rainier.cli import train as _train  # noqa: E402
from rainier.cli import web as _web  # noqa: E402

__all__ = ["_fleet", "_launch", "_serve", "_train", "_web", "app", "main"]

if __name__ == "__main__":
    main()
