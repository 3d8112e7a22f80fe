"""rainier command line: a thin typer app.

Each command parses its arguments, calls one library function and renders the result with ``rainier.report``.
User mistakes (``InputError``, a ``ValueError``) become one line on stderr and exit code 2; no traceback.
Set ``RAINIER_DEBUG=1`` to see the traceback of an unexpected error.
"""

from __future__ import annotations

import functools
import json
import os
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
app.add_typer(catalog_app, name="catalog")
app.add_typer(model_app, name="model")

_out = Console(soft_wrap=False)
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
