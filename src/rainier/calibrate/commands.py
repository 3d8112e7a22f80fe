"""The two entry points the CLI calls: validate a cases file, and calibrate (fit, write, cross-validate)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rainier.calibrate.cases import load_cases
from rainier.calibrate.crossval import CrossValidationReport, leave_one_group_out
from rainier.calibrate.efficiency_file import default_efficiency_path, write_efficiency
from rainier.calibrate.fit import FitResult, Progress, fit
from rainier.calibrate.residuals_file import families_of, residuals_path_beside, write_residuals
from rainier.calibrate.score import Estimator, ValidationReport, run_validation
from rainier.errors import InputError
from rainier.perf.efficiency import EfficiencyTable, committed_efficiency, load_efficiency


def efficiency_table(path: Path | str | None) -> tuple[EfficiencyTable, str]:
    """The table to validate with, and a description of where it came from."""
    if path is None:
        table = committed_efficiency()
        where = str(default_efficiency_path()) if table.entries else "priors (no committed efficiency.yaml)"
        return table, where
    target = Path(path)
    if not target.is_file():
        raise InputError(f"{target}: no such efficiency file")
    return load_efficiency(target), str(target)


def validate_file(
    path: Path | str,
    *,
    group: str | None = None,
    efficiency_path: Path | str | None = None,
    estimator: Estimator | None = None,
) -> ValidationReport:
    """Load a cases file and score every case (of ``group``) under an efficiency table (default: committed)."""
    cases = load_cases(path)
    table, where = efficiency_table(efficiency_path)
    report = run_validation(cases, table, group, estimator=estimator)
    summary = {**report.summary, "efficiency": where, "cases_file": str(path), "kind": cases.kind.value}
    return replace(report, summary=summary)


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationRun:
    """A fit, where it was written (``None`` on a dry run), and the cross-validation if asked for."""

    result: FitResult
    written: Path | None
    cross_validation: CrossValidationReport | None = None
    residuals_written: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fit": self.result.to_dict(),
            "written": str(self.written) if self.written is not None else None,
            "residuals_written": str(self.residuals_written) if self.residuals_written is not None else None,
            "leave_one_group_out": self.cross_validation.to_dict() if self.cross_validation is not None else None,
        }


def calibrate_file(
    path: Path | str,
    *,
    exclude_groups: Sequence[str] = (),
    out: Path | str | None = None,
    dry_run: bool = False,
    cross_validate: bool = False,
    command: str | None = None,
    estimator: Estimator | None = None,
    progress: Progress | None = None,
) -> CalibrationRun:
    """Fit on a training cases file, write ``efficiency.yaml`` (unless ``dry_run``), optionally cross-validate.

    A cross-validation over every group (none excluded, not a dry run, the committed model) also writes the
    held-out errors to ``residuals.yaml`` beside the fit: the intervals of the fleet commands come from them.
    """
    cases = load_cases(path)
    result = fit(cases, exclude_groups=exclude_groups, estimator=estimator, progress=progress)
    written = None if dry_run else write_efficiency(result, out, command=command)
    folds = None
    residuals = None
    if cross_validate:
        kept = [c for c in cases.cases if c.group not in exclude_groups]
        folds = leave_one_group_out(kept, estimator=estimator, progress=progress)
        if written is not None and not exclude_groups and estimator is None:
            residuals = write_residuals(
                folds,
                families_of(kept),
                residuals_path_beside(written),
                command=None if command is None else f"{command} --leave-one-group-out",
            )
    return CalibrationRun(result=result, written=written, cross_validation=folds, residuals_written=residuals)
