"""Writing a fit to ``efficiency.yaml``: the fitted parameters per key with the fit's provenance.

The file has the layout :func:`rainier.perf.efficiency.load_efficiency` reads: a top-level ``fit:`` mapping
(command line, date, rainier version, cases file, groups used and excluded, number of cases, resulting
median and 90th-percentile |error|) and an ``efficiency:`` list of ``{id, <parameters>, fit: {...}}``.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from rainier import __version__
from rainier.calibrate.fit import BASIS_WEIGHT, MIN_CASES_PER_FAMILY, PRIOR_WEIGHT, TRUST_WEIGHT, FitResult
from rainier.catalog.loader import catalog_file
from rainier.errors import InputError
from rainier.perf.efficiency import EFFICIENCY_FILE, PARAMETER_NAMES, committed_efficiency, load_efficiency

SIGNIFICANT_DIGITS = 6  # far below the fit's scatter; keeps the file readable
HEADER = (
    "# Efficiency parameters of the step model, fitted by `rainier calibrate` on published runs.\n"
    "# Generated file: re-run the command in `fit.command` instead of editing it by hand.\n"
)


def default_efficiency_path() -> Path:
    """The committed fit the step model reads by default (``rainier/catalog/efficiency.yaml``)."""
    return catalog_file(EFFICIENCY_FILE)


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _maybe_round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _display_path(path: str | None) -> str | None:
    """A path relative to the working directory when it lies below it (keeps the committed file portable)."""
    if path is None:
        return None
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if relative.startswith("..") else relative


def efficiency_document(result: FitResult, *, command: str | None = None) -> dict[str, Any]:
    """The YAML document of a fit (what :func:`write_efficiency` writes)."""
    after = result.after.summary
    provenance = {
        "command": command if command is not None else " ".join(["rainier", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
        "rainier_version": __version__,
        "cases_file": _display_path(result.cases_path),
        "groups_used": list(result.groups_used),
        "groups_excluded": list(result.groups_excluded),
        "num_cases": result.num_cases,
        "median_abs_error_pct": _maybe_round(after["median_abs_error_pct"]),
        "p90_abs_error_pct": _maybe_round(after["p90_abs_error_pct"]),
        "weights": {
            "trust": {tier.value: weight for tier, weight in TRUST_WEIGHT.items()},
            "basis": {basis.value: weight for basis, weight in BASIS_WEIGHT.items()},
            "prior": PRIOR_WEIGHT,
        },
    }
    entries = []
    for entry in result.entries:
        item: dict[str, Any] = {"id": entry.key}
        item.update({name: _round(getattr(entry.efficiency, name)) for name in PARAMETER_NAMES})
        item["fit"] = {
            "cases": len(entry.case_ids),
            "groups": list(entry.groups),
            "fitted": list(entry.fitted),
            "median_abs_error_pct": _maybe_round(entry.median_abs_error_pct),
        }
        if entry.measured:  # held at kernel benchmarks' values (catalog/kernel-efficiency.yaml), not fitted
            item["fit"]["measured"] = list(entry.measured)
        entries.append(item)
    for family, lender in result.borrows.items():
        entries.append(
            {
                "id": family,
                "borrows": lender,
                "reason": f"fewer than {MIN_CASES_PER_FAMILY} cases of this family in the fit",
            }
        )
    return {"fit": provenance, "efficiency": entries}


def write_efficiency(result: FitResult, path: Path | str | None = None, *, command: str | None = None) -> Path:
    """Write the fit (default: the package's ``catalog/efficiency.yaml``) and check that it loads back."""
    target = Path(path) if path is not None else default_efficiency_path()
    text = HEADER + yaml.safe_dump(efficiency_document(result, command=command), sort_keys=False, width=120)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{target}: cannot write ({exc.strerror or exc})") from None
    load_efficiency(target)  # the file must read back through the step model's loader
    committed_efficiency.cache_clear()  # this process may have cached the file just replaced
    return target
