"""Request traces for the serving simulator: CSV or JSON Lines rows of ``arrival_s, input_len, output_len``.

The format follows the file's extension: ``.csv`` (a header row naming the three columns, in any order; other
columns are ignored) or ``.jsonl`` / ``.ndjson`` (one JSON object per line with those keys). Rows that cannot be
used (a missing or non-numeric field, a negative arrival, a length below 1) are skipped and reported as
``"line N: ..."`` warnings, so that one bad row does not throw away a day of traffic; blank lines are ignored.
A file with no usable row at all is an :class:`~rainier.errors.InputError` naming the file. Rows are kept in file
order; the simulator serves them in arrival order.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

from rainier.errors import InputError, clip, clip_path, quote
from rainier.serve.limits import MAX_REQUESTS, budget_error
from rainier.serve.simulate import Request

COLUMNS = ("arrival_s", "input_len", "output_len")
CSV_SUFFIXES = frozenset({".csv"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
MAX_WARNINGS = 100
"""Bad rows reported one by one; beyond this many, one summary line counts the rest."""


def _length(name: str, value: object) -> int:
    if isinstance(value, str):
        value = value.strip()
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{name}={quote(value)} is not a number") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}={quote(value)} is not a whole number")
    if value < 1:
        raise ValueError(f"{name}={quote(value)} must be >= 1")
    return value


def _arrival(value: object) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"arrival_s={quote(value)} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"arrival_s={quote(value)} is not a number")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"arrival_s={quote(value)} must be a finite time >= 0")
    return float(value)


def _request(row: Mapping[str, object]) -> Request:
    missing = [c for c in COLUMNS if row.get(c) in (None, "")]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    return Request(
        arrival_s=_arrival(row["arrival_s"]),
        input_len=_length("input_len", row["input_len"]),
        output_len=_length("output_len", row["output_len"]),
    )


def _csv_rows(path: Path) -> Iterator[tuple[int, Mapping[str, object] | str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise InputError(
                f"trace {clip_path(path)}: the CSV header must name {', '.join(COLUMNS)}; missing {', '.join(missing)}"
            )
        reader.fieldnames = header
        for row in reader:
            if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
                continue
            extra = row.get(None)  # DictReader puts surplus fields under None
            yield reader.line_num, (f"more fields than the header ({len(extra)} extra)" if extra else row)


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Mapping[str, object] | str]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, f"not JSON ({exc.msg})"
                continue
            yield number, (row if isinstance(row, dict) else "expected a JSON object")


def load_trace(path: str | Path, limit: int | None = None) -> tuple[list[Request], list[str]]:
    """Requests of the trace at ``path`` and a warning per skipped row ("line N: reason").

    With ``limit``, a trace of more usable rows is refused as soon as the row after the limit is read (the
    simulation's ``max_requests`` budget), before the whole file is held in memory.
    """
    path = Path(path)
    where = clip_path(path)
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        rows = _csv_rows(path)
    elif suffix in JSONL_SUFFIXES:
        rows = _jsonl_rows(path)
    else:
        raise InputError(f"trace {where}: unknown format {quote(suffix)}; allowed: .csv, .jsonl, .ndjson")
    if not path.is_file():
        raise InputError(f"trace {where}: no such file")
    requests: list[Request] = []
    warnings: list[str] = []
    bad = 0
    try:
        for number, row in rows:
            try:
                if isinstance(row, str):
                    raise ValueError(row)
                requests.append(_request(row))
            except ValueError as exc:
                bad += 1
                if bad <= MAX_WARNINGS:
                    warnings.append(f"line {number}: {exc}")
            if limit is not None and len(requests) > limit:
                raise budget_error(
                    f"trace {where}: requests", len(requests), limit, "--max-requests",
                    MAX_REQUESTS, "simulate a slice of the trace",
                )  # fmt: skip
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"trace {where}: cannot be read ({clip(str(exc))})") from None
    if bad > MAX_WARNINGS:
        warnings.append(f"... and {bad - MAX_WARNINGS:,} more bad rows ({bad:,} skipped in all)")
    if not requests:
        detail = f" ({bad:,} bad rows; first: {warnings[0]})" if warnings else " (no rows)"
        raise InputError(f"trace {where}: no usable request{detail}")
    return requests, warnings
