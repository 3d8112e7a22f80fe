"""Sweeps without a database file: the rows ``rainier sweep`` stores, for the web app (and scripts).

``rainier sweep FILE --db PATH`` runs every cell (a plan search of one model on one cluster at one global batch)
on local processes and stores each row in a DuckDB file; ``rainier results export`` writes those rows out. Here
the same cells run one after another in the caller's thread, into an in-memory table
(:func:`rainier.search.runner.run_sweep_in_memory`), and come back as one JSON document: the same rows and
numbers, in the same order, without the full search JSON of each cell or its timestamps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rainier.report.sweep_view import cell_label, compact_plan
from rainier.search.runner import SearchFn, run_sweep_in_memory
from rainier.search.store import COLUMNS, CellStatus
from rainier.search.sweep import SweepSpec, sweep_spec_from_mapping

# Row columns left out of the answer: each cell's full search JSON (ten plans) and when it ran.
_LEFT_OUT = frozenset({"result_json", "started_at", "finished_at"})
ROW_KEYS = tuple(c for c in COLUMNS if c not in _LEFT_OUT)


def sweep_spec(raw: Mapping[str, Any], *, path: str = "request") -> SweepSpec:
    """A sweep from a mapping of a sweep file's keys (``kind: sweep`` and ``version`` optional)."""
    return sweep_spec_from_mapping(dict(raw), path)


def run_sweep_document(spec: SweepSpec, *, search_fn: SearchFn | None = None) -> dict[str, Any]:
    """Run every cell of ``spec`` in memory: ``{"cells", "ok", "failed", "objective", "top", "rows"}``.

    Each row has the stored columns of ``rainier results export`` (:data:`ROW_KEYS`), the cell's label and its
    plan as the results table shows it (``plan``: the always-shown keys and those off their defaults).
    """
    rows = run_sweep_in_memory(spec, search_fn=search_fn)
    shown = [
        {
            **{key: row[key] for key in ROW_KEYS},
            "label": cell_label(row),
            "plan": compact_plan(row["best_plan_json"]) if row["best_plan_json"] else None,
        }
        for row in rows
    ]
    ok = sum(row["status"] == CellStatus.OK.value for row in rows)
    return {
        "cells": len(rows),
        "ok": ok,
        "failed": len(rows) - ok,
        "objective": spec.objective.value,
        "top": spec.top_k,
        "rows": shown,
    }
