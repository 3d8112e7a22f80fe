"""Fitting the step model's efficiency parameters on published runs: default, per family, per accelerator.

Entries form a hierarchy, each fitted on its own cases and shrunk towards its parent: a ``default`` entry on
every case (towards the priors), one per accelerator family (``Accelerator.family``: ``nvidia-gpu``,
``trainium`` ...; towards ``default``), and one per accelerator that has at least ``MIN_CASES_PER_ACCELERATOR``
cases in a family of several (towards its family). The step model looks entries up in the reverse order, so an
accelerator without data of its own uses its family's values, and a family without data the default. The free
:class:`~rainier.perf.efficiency.Efficiency` fields minimise

    sum_i  w_i * log(t_pred,i / t_meas,i)^2  +  PRIOR_WEIGHT * sum_j  log(p_j / p_j,prior)^2

with ``scipy.optimize.least_squares`` (trust-region reflective, bounds) in log-parameter space. Comparing step
times in log space makes every metric equivalent (each is proportional to step time or to its inverse,
validation/README.md "Metrics") and errors relative. ``w_i`` is the trust weight times the basis weight
(README "Trust tiers": A 1.0, B 0.7, C 0.3; "Metrics": measured 1.0, derived 0.8). The weak prior keeps
parameters that the data barely constrain at physical values. A field is fitted for a set of cases only if
those cases exercise it: changing it by 2x moves some predicted step time by more than
``SENSITIVITY_THRESHOLD`` (and ``gemm_fp8`` only where an FP8 case exists); otherwise a family keeps the
``default`` entry's value and ``default`` keeps the prior.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares

from rainier.calibrate.cases import Basis, Case, CaseFile, SkippedCase, TrainingCase, Trust
from rainier.calibrate.score import (
    Estimator,
    Unpredictable,
    ValidationReport,
    predicted_step_time,
    run_validation,
    step_time_from_metric,
)
from rainier.calibrate.summary import error_stats
from rainier.errors import InputError, UnknownNameError
from rainier.perf.efficiency import DEFAULT_KEY, FRACTION_FIELDS, Efficiency, EfficiencyTable
from rainier.precision import Precision

FREE_FIELDS: tuple[str, ...] = (
    "gemm",
    "gemm_fp8",
    "attention",
    "memory",
    "scale_up",
    "scale_out",
    "layer_overhead_s",
    "step_overhead_s",
    "gemm_size_knee",
    "tp_comm_exposed",
    "attention_score_bytes",
)
MIN_CASES_PER_ACCELERATOR = 5  # an accelerator gets its own entry only with this many cases
MIN_FRACTION = 0.05  # no kernel or collective runs below 5% of its peak in a tuned published run
# Upper bounds of the non-fraction fields: generous physical limits, not targets.
BOUNDS: dict[str, tuple[float, float]] = {
    **{name: (MIN_FRACTION, FRACTION_FIELDS[name]) for name in FREE_FIELDS if name in FRACTION_FIELDS},
    "layer_overhead_s": (1e-7, 1e-3),  # per layer per micro-batch pass: kernel launches are ~5-10 us each
    "step_overhead_s": (1e-4, 5.0),  # per step: optimizer launch, data loading, logging
    "gemm_size_knee": (1.0, 2048.0),  # GEMM dimension at half efficiency
    "attention_score_bytes": (0.01, 64.0),  # unfused attention moves ~13 bytes per score (Korthikanti 2022)
    # Compute kernels never sustain their datasheet peak: the best published large-GEMM results are ~80-90% of
    # dense peak (cuBLAS on A100/H100), fused attention below that, streaming kernels ~90-95% of HBM bandwidth.
    # Collectives keep 1.0: in-network reduction (NVLink SHARP, InfiniBand SHARP) lets them reach line rate.
    "gemm": (MIN_FRACTION, 0.9),
    "gemm_fp8": (MIN_FRACTION, 0.9),
    "attention": (MIN_FRACTION, 0.85),
    "memory": (MIN_FRACTION, 0.95),
}
TRUST_WEIGHT = {Trust.A: 1.0, Trust.B: 0.7, Trust.C: 0.3}
BASIS_WEIGHT = {Basis.MEASURED: 1.0, Basis.DERIVED: 0.8}
PRIOR_WEIGHT = 0.05  # per parameter, on log(p / p_prior)^2; small against ~50 case residuals
SENSITIVITY_THRESHOLD = 1e-3  # |change of log step time| under a 2x parameter change that counts as exercised
INFEASIBLE_PENALTY = math.log(10.0)  # residual of a case the estimator cannot time at some trial parameters
TOLERANCE = 1e-6  # least_squares ftol/xtol/gtol: 1e-6 in log space is far below the data's scatter
MAX_EVALUATIONS = 400  # residual evaluations per fit (each one estimate per case)

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class FitEntry:
    """One fitted efficiency set: its key, values, which fields were fitted, and on what."""

    key: str
    efficiency: Efficiency
    fitted: tuple[str, ...]
    case_ids: tuple[str, ...]
    groups: tuple[str, ...]
    median_abs_error_pct: float | None
    p90_abs_error_pct: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.key,
            "parameters": self.efficiency.to_dict(),
            "fitted": list(self.fitted),
            "cases": len(self.case_ids),
            "groups": list(self.groups),
            "median_abs_error_pct": self.median_abs_error_pct,
            "p90_abs_error_pct": self.p90_abs_error_pct,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FitResult:
    """Fitted entries (``default`` first, then families) and the validation errors before and after."""

    entries: tuple[FitEntry, ...]
    cases_path: str | None
    groups_used: tuple[str, ...]
    groups_excluded: tuple[str, ...]
    num_cases: int
    before: ValidationReport  # under the Efficiency() priors the fit starts from
    after: ValidationReport  # under the fitted table, on the cases used
    held_out: ValidationReport | None = None  # under the fitted table, on the excluded groups
    not_used: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (case id, reason)

    @property
    def table(self) -> EfficiencyTable:
        """The fitted entries as the step model reads them (per family, then ``default``)."""
        return EfficiencyTable(
            entries={e.key: e.efficiency for e in self.entries},
            provenance={e.key: {"cases": len(e.case_ids), "groups": list(e.groups)} for e in self.entries},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cases_file": self.cases_path,
            "groups_used": list(self.groups_used),
            "groups_excluded": list(self.groups_excluded),
            "num_cases": self.num_cases,
            "entries": [e.to_dict() for e in self.entries],
            "before": self.before.summary,
            "after": self.after.summary,
            "held_out": self.held_out.summary if self.held_out is not None else None,
            "not_used": [{"id": i, "reason": r} for i, r in self.not_used],
        }


# ----------------------------------------------------------------------------------------------------------------
# One least-squares fit
# ----------------------------------------------------------------------------------------------------------------


def case_weight(case: TrainingCase) -> float:
    """Trust tier x basis weight (validation/README.md, "Trust tiers" and "Metrics")."""
    return TRUST_WEIGHT[case.trust] * BASIS_WEIGHT[case.basis]


def _log_steps(
    cases: Sequence[TrainingCase], efficiency: Efficiency, estimator: Estimator | None
) -> NDArray[np.float64]:
    out = np.empty(len(cases))
    for i, case in enumerate(cases):
        try:
            out[i] = math.log(predicted_step_time(case, efficiency, estimator=estimator))
        except Unpredictable:
            out[i] = math.nan
    return out


def _trial(name: str, value: float) -> float:
    """A 2x move of a parameter inside its bounds: fractions halved, overheads and the knee doubled."""
    low, high = BOUNDS[name]
    return max(low, value / 2) if name in FRACTION_FIELDS else min(high, value * 2)


def exercised_fields(
    cases: Sequence[TrainingCase], base: Efficiency, *, estimator: Estimator | None = None
) -> tuple[str, ...]:
    """The free fields whose 2x change moves some case's predicted step time (see the module docstring)."""
    reference = _log_steps(cases, base, estimator)
    has_fp8 = any(c.plan.precision is Precision.FP8 for c in cases)
    found = []
    for name in FREE_FIELDS:
        if name == "gemm_fp8" and not has_fp8:
            continue
        moved = _log_steps(cases, base.with_(**{name: _trial(name, getattr(base, name))}), estimator)
        change = np.abs(moved - reference)
        if np.nanmax(change, initial=0.0) > SENSITIVITY_THRESHOLD:
            found.append(name)
    return tuple(found)


def fit_entry(
    cases: Sequence[TrainingCase],
    free: Sequence[str],
    *,
    base: Efficiency,
    prior: Efficiency | None = None,
    estimator: Estimator | None = None,
    prior_weight: float = PRIOR_WEIGHT,
) -> Efficiency:
    """Least-squares fit of the ``free`` fields on ``cases``; other fields keep ``base``'s values."""
    if not free:
        return base
    prior = prior or Efficiency()
    measured = np.log([step_time_from_metric(c, c.value) for c in cases])
    sqrt_w = np.sqrt([case_weight(c) for c in cases])
    x_prior = np.log([getattr(prior, n) for n in free])
    lower = np.log([BOUNDS[n][0] for n in free])
    upper = np.log([BOUNDS[n][1] for n in free])
    x0 = np.clip(x_prior, lower, upper)
    prior_scale = math.sqrt(prior_weight)

    def efficiency_at(x: NDArray[np.float64]) -> Efficiency:
        values = {n: float(np.clip(math.exp(v), *BOUNDS[n])) for n, v in zip(free, x, strict=True)}
        return base.with_(**values)

    def residuals(x: NDArray[np.float64]) -> NDArray[np.float64]:
        diff = _log_steps(cases, efficiency_at(x), estimator) - measured
        diff = np.where(np.isfinite(diff), diff, INFEASIBLE_PENALTY)
        return np.concatenate([sqrt_w * diff, prior_scale * (x - x_prior)])

    solution = least_squares(
        residuals,
        x0,
        bounds=(lower, upper),
        method="trf",
        diff_step=1e-3,
        ftol=TOLERANCE,
        xtol=TOLERANCE,
        gtol=TOLERANCE,
        max_nfev=MAX_EVALUATIONS,
    )
    return efficiency_at(solution.x)


# ----------------------------------------------------------------------------------------------------------------
# Per-family fit
# ----------------------------------------------------------------------------------------------------------------


def _split(
    cases: CaseFile | Sequence[Case], exclude_groups: Sequence[str]
) -> tuple[list[TrainingCase], list[TrainingCase], list[tuple[str, str]]]:
    items = cases.cases if isinstance(cases, CaseFile) else tuple(cases)
    known = tuple(dict.fromkeys(c.group for c in items))
    for group in exclude_groups:
        if group not in known:
            raise UnknownNameError("group", group, known)
    used: list[TrainingCase] = []
    excluded: list[TrainingCase] = []
    skipped = [(c.id, c.reason) for c in items if isinstance(c, SkippedCase) and c.group not in exclude_groups]
    for case in items:
        if isinstance(case, TrainingCase):
            (excluded if case.group in exclude_groups else used).append(case)
    if not used and not excluded:
        raise InputError(
            "nothing to fit: no training case rainier can evaluate (inference and skipped cases are not fitted)"
        )
    if not used:
        raise InputError(f"no training case left after excluding {', '.join(exclude_groups)}; nothing to fit")
    return used, excluded, skipped


def _entry(
    key: str, cases: Sequence[TrainingCase], efficiency: Efficiency, fitted: Sequence[str], estimator: Estimator | None
) -> FitEntry:
    report = run_validation(cases, efficiency, estimator=estimator)
    stats = error_stats(r.error_pct for r in report.rows if r.error_pct is not None)
    return FitEntry(
        key=key,
        efficiency=efficiency,
        fitted=tuple(fitted),
        case_ids=tuple(c.id for c in cases),
        groups=tuple(dict.fromkeys(c.group for c in cases)),
        median_abs_error_pct=stats.median_abs_error_pct,
        p90_abs_error_pct=stats.p90_abs_error_pct,
    )


def _child_entry(
    key: str, cases: Sequence[TrainingCase], parent: Efficiency, estimator: Estimator | None, prior_weight: float
) -> FitEntry:
    """Fit ``key``'s entry on its cases, starting from and shrunk towards its parent's values.

    Fields the cases do not exercise keep the parent's values.
    """
    free = exercised_fields(cases, parent, estimator=estimator)
    efficiency = fit_entry(cases, free, base=parent, prior=parent, estimator=estimator, prior_weight=prior_weight)
    return _entry(key, cases, efficiency, free, estimator)


def fit(
    cases: CaseFile | Sequence[Case],
    *,
    exclude_groups: Sequence[str] = (),
    families: Sequence[str] | None = None,
    estimator: Estimator | None = None,
    prior_weight: float = PRIOR_WEIGHT,
    progress: Progress | None = None,
) -> FitResult:
    """Fit a ``default`` entry on every usable case and one entry per accelerator family (see module docstring).

    ``exclude_groups`` leaves groups out of the fit (they are then scored as held out); ``families`` limits the
    per-family entries (``default`` is always fitted). Cases the estimator cannot time at the priors are left
    out and listed in ``not_used``.
    """
    say = progress or (lambda _message: None)
    used, excluded, not_used = _split(cases, exclude_groups)
    prior = Efficiency()
    usable: list[TrainingCase] = []
    for case in used:
        try:
            predicted_step_time(case, prior, estimator=estimator)
            usable.append(case)
        except Unpredictable as exc:
            not_used.append((case.id, str(exc)))
    if not usable:
        raise InputError("no case could be timed by the step model; nothing to fit")
    present = sorted({c.family for c in usable})
    if families is not None:
        unknown = [f for f in families if f not in present]
        if unknown:
            raise UnknownNameError("family (with cases)", unknown[0], present)
        present = [f for f in present if f in families]

    say(f"fitting {DEFAULT_KEY}: {len(usable)} cases")
    free = exercised_fields(usable, prior, estimator=estimator)
    default = fit_entry(usable, free, base=prior, prior=prior, estimator=estimator, prior_weight=prior_weight)
    entries = [_entry(DEFAULT_KEY, usable, default, free, estimator)]
    for family in present:
        members = [c for c in usable if c.family == family]
        say(f"fitting {family}: {len(members)} cases")
        family_fit = _child_entry(family, members, default, estimator, prior_weight)
        entries.append(family_fit)
        # Chip generations of one family differ (and so do the software eras of their published runs): an
        # accelerator with enough cases of its own gets an entry too, shrunk towards its family's values.
        devices = sorted({c.accelerator for c in members})
        for device in devices if len(devices) > 1 else ():
            own = [c for c in members if c.accelerator == device]
            if len(own) >= MIN_CASES_PER_ACCELERATOR:
                say(f"fitting {device}: {len(own)} cases")
                entries.append(_child_entry(device, own, family_fit.efficiency, estimator, prior_weight))

    table = EfficiencyTable(entries={e.key: e.efficiency for e in entries}, provenance={})
    return FitResult(
        entries=tuple(entries),
        cases_path=cases.path if isinstance(cases, CaseFile) else None,
        groups_used=tuple(dict.fromkeys(c.group for c in usable)),
        groups_excluded=tuple(exclude_groups),
        num_cases=len(usable),
        before=run_validation(usable, prior, estimator=estimator),
        after=run_validation(usable, table, estimator=estimator),
        held_out=run_validation(excluded, table, estimator=estimator) if excluded else None,
        not_used=tuple(not_used),
    )
