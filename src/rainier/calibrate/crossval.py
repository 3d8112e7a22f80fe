"""Leave-one-group-out cross-validation of the fit: how well efficiencies transfer to an unseen source.

Each group of a cases file is one source (a paper table, a vendor page, a benchmark round; validation/README.md
"Sources"). For every group the efficiencies are fitted on all the other groups and the held-out group is
predicted with them, so no case is ever scored by parameters fitted on itself or its siblings. The summary is
over all held-out predictions together; that is the honest error to expect on a new source (the held-back
validation set is such a source).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rainier.calibrate.cases import Case, CaseFile, TrainingCase
from rainier.calibrate.fit import PRIOR_WEIGHT, Progress, fit
from rainier.calibrate.score import CaseResult, Estimator, run_validation
from rainier.calibrate.summary import summarize
from rainier.errors import InputError


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldOutFold:
    """One fold: the held-out group, the cases fitted on, and the held-out results."""

    group: str
    num_fit_cases: int
    rows: tuple[CaseResult, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "num_fit_cases": self.num_fit_cases,
            "summary": summarize([r.scored() for r in self.rows]),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class CrossValidationReport:
    """Every fold and the summary over all held-out predictions."""

    folds: tuple[HeldOutFold, ...]
    summary: dict[str, Any]

    @property
    def rows(self) -> tuple[CaseResult, ...]:
        return tuple(r for fold in self.folds for r in fold.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folds": [f.to_dict() for f in self.folds],
            "cases": [r.to_dict() for r in self.rows],
            "summary": self.summary,
        }


def leave_one_group_out(
    cases: CaseFile | Sequence[Case],
    *,
    families: Sequence[str] | None = None,
    estimator: Estimator | None = None,
    prior_weight: float = PRIOR_WEIGHT,
    progress: Progress | None = None,
) -> CrossValidationReport:
    """Fit on all groups but one and predict that one, for every group with evaluable cases."""
    items = cases.cases if isinstance(cases, CaseFile) else tuple(cases)
    groups = tuple(dict.fromkeys(c.group for c in items if isinstance(c, TrainingCase)))
    if len(groups) < 2:
        raise InputError(f"leave-one-group-out needs at least two groups with training cases, found {len(groups)}")
    folds = []
    for number, group in enumerate(groups, start=1):
        if progress is not None:
            progress(f"fold {number}/{len(groups)}: holding out {group}")
        result = fit(
            items,
            exclude_groups=(group,),
            families=None if families is None else [f for f in families if _has_family(items, f, group)],
            estimator=estimator,
            prior_weight=prior_weight,
            report=False,
        )
        held_out = run_validation([c for c in items if c.group == group], result.table, estimator=estimator)
        folds.append(HeldOutFold(group=group, num_fit_cases=result.num_cases, rows=held_out.rows))
    all_rows = [r.scored() for fold in folds for r in fold.rows]
    return CrossValidationReport(folds=tuple(folds), summary=summarize(all_rows))


def _has_family(items: Sequence[Case], family: str, held_out: str) -> bool:
    """Whether ``family`` still has cases once ``held_out`` is removed (else it gets no entry in that fold)."""
    return any(isinstance(c, TrainingCase) and c.family == family and c.group != held_out for c in items)
