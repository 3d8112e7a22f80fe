"""Writing ``catalog/residuals.yaml``: every held-out case's measured/predicted step time, by family.

The step model's error on runs it was not fitted on (leave-one-group-out) is what a user's headline inherits;
:mod:`rainier.perf.residuals` reads the file back and :mod:`rainier.fleet.uncertainty` turns it into intervals.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from rainier.calibrate.cases import Case, Metric, TrainingCase
from rainier.calibrate.crossval import CrossValidationReport
from rainier.errors import InputError
from rainier.perf.residuals import ALL_KEY, RESIDUALS_FILE, committed_residuals, load_residuals

HEADER = (
    "# Held-out errors of the step model: measured / predicted step time of every public case, predicted by a fit\n"
    "# without its group (leave-one-group-out), by efficiency family. rainier.perf.residuals reads it; the fleet\n"
    "# commands turn it into intervals. Generated file: re-run the command in `fit.command` instead of editing it.\n"
)


def step_ratio(metric: str, measured: float, predicted: float) -> float:
    """Measured over predicted step time from a case's metric (a step time, or a rate inverse to it)."""
    if Metric(metric) is Metric.STEP_TIME_S:
        return measured / predicted
    return predicted / measured


def families_of(cases: Sequence[Case]) -> dict[str, str]:
    """Each training case's efficiency family, by case id."""
    return {c.id: c.family for c in cases if isinstance(c, TrainingCase)}


def residual_document(
    report: CrossValidationReport, family: Mapping[str, str], *, command: str | None = None
) -> dict[str, Any]:
    """The file's content: each family's held-out ratios (and ``all``), sorted, with provenance.

    ``family`` maps case ids to efficiency families (:func:`families_of`).
    """
    ratios: dict[str, list[float]] = defaultdict(list)
    for row in report.rows:
        if row.error_pct is None or row.measured is None or row.predicted is None or row.id not in family:
            continue
        ratio = round(step_ratio(row.metric, row.measured, row.predicted), 5)
        ratios[family[row.id]].append(ratio)
        ratios[ALL_KEY].append(ratio)
    if not ratios:
        raise InputError("no held-out case was scored: nothing to write to residuals.yaml")
    return {
        "fit": {
            "command": command or "rainier calibrate validation/training.yaml --leave-one-group-out",
            "date": datetime.date.today().isoformat(),
            "held_out_cases": len(ratios[ALL_KEY]),
        },
        "families": {name: {"n": len(values), "ratios": sorted(values)} for name, values in sorted(ratios.items())},
    }


def write_residuals(
    report: CrossValidationReport, family: Mapping[str, str], path: Path | str, *, command: str | None = None
) -> Path:
    """Write the held-out ratios to ``path`` and check that they load back."""
    target = write_generated(path, HEADER, residual_document(report, family, command=command))
    load_residuals(target)
    committed_residuals.cache_clear()
    return target


def write_generated(path: Path | str, header: str, document: dict[str, Any]) -> Path:
    """Write a generated catalog file: its header comment, then the document (lists of numbers kept inline)."""
    target = Path(path)
    text = header + yaml.safe_dump(document, sort_keys=False, width=116, default_flow_style=None)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return target


def residuals_path_beside(efficiency_path: Path) -> Path:
    """Where the residuals go when the fit is written to ``efficiency_path``: the same folder."""
    return efficiency_path.with_name(RESIDUALS_FILE)
