"""Fitting the step model's efficiency parameters on published runs: a default and one set per family.

Entries form a hierarchy: one per efficiency family (``Accelerator.efficiency_family``: A100, Hopper,
Blackwell, TPU, Trainium ...) that has at least ``MIN_CASES_PER_FAMILY`` cases, each fitted on its own cases and
shrunk towards a ``default`` entry, which is the families' centre (partial pooling: a fit on every case starts
it; then, ``POOL_ROUNDS`` times, the families are fitted towards it and it becomes their geometric mean). Fields
in ``SHARED_FIELDS`` are fitted once on every case. A family with fewer cases borrows a named family's values
(``BORROWS``, written into the file). The free
:class:`~rainier.perf.efficiency.Efficiency` fields minimise

    sum_i  w_i * log(t_pred,i / t_meas,i)^2  +  PRIOR_WEIGHT * sum_j  log(p_j / p_j,prior)^2

with ``scipy.optimize.least_squares`` (trust-region reflective, bounds) in log-parameter space. Comparing step
times in log space makes every metric equivalent (each is proportional to step time or to its inverse,
validation/README.md "Metrics") and errors relative. ``w_i`` is the trust weight times the basis weight
(README "Trust tiers": A 1.0, B 0.7, C 0.3; "Metrics": measured 1.0, derived 0.8). The weak prior keeps
parameters that the data barely constrain at physical values. A field is fitted for a set of cases only if
those cases exercise it: changing it by 2x moves some predicted step time by more than
``SENSITIVITY_THRESHOLD`` (and ``gemm_8bit`` only where an 8-bit case exists); otherwise a family keeps the
``default`` entry's value and ``default`` keeps the prior.

Speed: every case is prepared once (``perf.batch.prepare``, efficiency-free arrays) and all cases of a fit are
re-assembled together for each trial of the parameters, so a residual costs one numpy pass over every case.
Which side of the roofline each GEMM sits on is decided when preparing; the fit prepares again at its result
and refits until that no longer changes the answer (``CLASSIFY_ROUNDS``).
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
    error_pct,
    eval_seconds,
    metric_from_step_time,
    predicted_step_time,
    run_validation,
    step_time_from_metric,
)
from rainier.calibrate.summary import error_stats
from rainier.errors import InputError, UnknownNameError
from rainier.hardware.accelerator import FAMILY_LENDERS, EfficiencyFamily
from rainier.perf import kernel
from rainier.perf.batch import Prepared, assemble, prepare
from rainier.perf.columns import PlanColumns
from rainier.perf.compute import Side, same_sides
from rainier.perf.efficiency import (
    BOUNDS,
    DEFAULT_KEY,
    FRACTION_FIELDS,
    Efficiency,
    EfficiencyTable,
    measured_fractions,
)
from rainier.perf.step import flops_per_token_table, plan_problem, step_context
from rainier.precision import Precision

FREE_FIELDS: tuple[str, ...] = (
    "gemm",
    "gemm_8bit",
    "attention",
    "memory",
    "scale_up",
    "scale_out",
    "layer_overhead_s",
    "step_overhead_s",
    "moe_imbalance",
)
# Fitted on every case only (the default entry), never per family: how unevenly a router spreads tokens is a
# property of the model and its training, not of the chip.
SHARED_FIELDS = ("moe_imbalance",)
MIN_CASES_PER_FAMILY = 4  # a family gets its own entry only with this many cases; else it borrows (BORROWS)
# Whose values a family without enough cases uses: the nearest generation of the same vendor and software
# stack, else the default fit.
BORROWS: dict[str, str] = {
    EfficiencyFamily.NVIDIA_AMPERE.value: EfficiencyFamily.NVIDIA_HOPPER.value,
    EfficiencyFamily.NVIDIA_HOPPER.value: DEFAULT_KEY,
    EfficiencyFamily.NVIDIA_BLACKWELL.value: EfficiencyFamily.NVIDIA_HOPPER.value,
    EfficiencyFamily.TPU.value: DEFAULT_KEY,
    EfficiencyFamily.TPU_TRILLIUM.value: EfficiencyFamily.TPU.value,
    EfficiencyFamily.TRAINIUM.value: DEFAULT_KEY,
    # a vendor family that runs another's cores and software stack (Inferentia2: Trainium's)
    **{family.value: lender.value for family, lender in FAMILY_LENDERS.items()},
}
POOL_ROUNDS = 2  # family fits / default-as-their-centre rounds (see _pooled)
CLASSIFY_ROUNDS = 3  # prepare / fit rounds (each re-decides which GEMMs are memory-bound at the last fit)
TRUST_WEIGHT = {Trust.A: 1.0, Trust.B: 0.7, Trust.C: 0.3}
BASIS_WEIGHT = {Basis.MEASURED: 1.0, Basis.DERIVED: 0.8}
PRIOR_WEIGHT = 0.05  # per parameter, on log(p / p_prior)^2; small against ~50 case residuals
SENSITIVITY_THRESHOLD = 1e-3  # |change of log step time| under a 2x parameter change that counts as exercised
INFEASIBLE_PENALTY = math.log(10.0)  # residual of a case the estimator cannot time at some trial parameters
TOLERANCE = 1e-6  # least_squares ftol/xtol/gtol: 1e-6 in log space is far below the data's scatter
MAX_EVALUATIONS = 400  # residual evaluations per fit (each one estimate per case)
# Robust loss: published runs include software-limited outliers (a first port of a model to a new chip), so the
# fit uses scipy's soft-L1 loss, quadratic for log errors below ~LOSS_SCALE and linear beyond (a Huber-like
# M-estimator): one 3x outlier cannot drag a family's efficiencies. The scale is the scatter of repeated
# measurements of one configuration (MLPerf result files of one submission, successive releases of a
# performance table: a few percent), so only errors beyond that are treated as outliers.
LOSS = "soft_l1"
LOSS_SCALE = 0.05

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
    measured: tuple[str, ...] = ()  # held at published kernel benchmarks' values (measured_fractions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.key,
            "parameters": self.efficiency.to_dict(),
            "fitted": list(self.fitted),
            "measured": list(self.measured),
            "cases": len(self.case_ids),
            "groups": list(self.groups),
            "median_abs_error_pct": self.median_abs_error_pct,
            "p90_abs_error_pct": self.p90_abs_error_pct,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FitResult:
    """Fitted entries (``default`` first, then families) and the validation errors before and after."""

    entries: tuple[FitEntry, ...]
    borrows: dict[str, str]
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
            borrows=dict(self.borrows),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cases_file": self.cases_path,
            "groups_used": list(self.groups_used),
            "groups_excluded": list(self.groups_excluded),
            "num_cases": self.num_cases,
            "entries": [e.to_dict() for e in self.entries],
            "borrows": dict(self.borrows),
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


Timer = Callable[[Efficiency], NDArray[np.float64]]  # efficiencies -> log predicted step time per case


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


class CaseBank:
    """Every case of a fit prepared once (``perf.batch.prepare``); re-timed together for any efficiencies.

    ``classify`` decides which side of the roofline each GEMM sits on (see the module docstring). Cases whose
    plan the step model refuses time as NaN.
    """

    def __init__(self, cases: Sequence[TrainingCase], classify: Efficiency) -> None:
        self.size = len(cases)
        self.classify = classify
        preps: list[Prepared] = []
        self.index: list[int] = []
        for i, case in enumerate(cases):
            prepared = _prepared(case, classify)
            if prepared is not None:
                preps.append(prepared)
                self.index.append(i)
        self.prepared = Prepared.concat(preps) if preps else None
        self.eval_share = np.array([cases[i].eval_per_train_sequence for i in self.index])

    def __call__(self, efficiency: Efficiency) -> NDArray[np.float64]:
        out = np.full(self.size, math.nan)
        if self.prepared is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                # compiled even for a family's few cases: a fit times them hundreds of times (perf.kernel)
                result = assemble(self.prepared, efficiency, compiled=kernel.AVAILABLE)
                steps = result.step_time_s + eval_seconds(self.eval_share, result.breakdown["compute"])
                out[self.index] = np.where(steps > 0, np.log(steps), math.nan)
        return out


_PREPARED: dict[tuple[TrainingCase, Efficiency], Prepared | None] = {}
# Each case's preparations with the GEMM sides decided for them (perf.compute.same_sides): a preparation is the
# same under any efficiencies that decide those sides alike, so a fit's later rounds and leave-one-group-out's
# folds, which classify at nearby values, reuse it instead of preparing the case again.
_BY_SIDES: dict[TrainingCase, list[tuple[list[Side], Prepared | None]]] = {}
PREPARED_CACHE = 50_000  # prepared cases kept across fits (leave-one-group-out refits the same cases)


def _prepared(case: TrainingCase, classify: Efficiency) -> Prepared | None:
    """One case prepared for the step model under ``classify`` (None if the model refuses its plan); cached."""
    key = (case, classify)
    if key in _PREPARED:
        return _PREPARED[key]
    if len(_PREPARED) >= PREPARED_CACHE:
        _PREPARED.clear()
        _BY_SIDES.clear()
    earlier = _BY_SIDES.setdefault(case, [])
    for decided, prepared in earlier:
        if same_sides(decided, classify):
            _PREPARED[key] = prepared
            return prepared
    shape = case.shape.with_seq_len(case.seq_len)
    found: Prepared | None = None
    sides: list[Side] = []  # a plan the model refuses is refused under any efficiencies
    if plan_problem(shape, case.plan, case.cluster) is None:
        ctx = step_context(shape, case.cluster, classify, case.plan.degrees_unit)
        model_flops, hardware_flops = flops_per_token_table(shape)
        found = prepare(
            ctx,
            PlanColumns.from_plans([case.plan]),
            model_flops_per_token=model_flops,
            hardware_flops_per_token=hardware_flops,
        )
        sides = ctx.gemm_sides  # every side decided for the case's model and chip at classify (a superset of its own)
    earlier.append((sides, found))
    _PREPARED[key] = found
    return found


def _timer(cases: Sequence[TrainingCase], classify: Efficiency, estimator: Estimator | None) -> Timer:
    if estimator is not None:
        return lambda efficiency: _log_steps(cases, efficiency, estimator)
    return CaseBank(cases, classify)


def _trial(name: str, value: float) -> float:
    """A 2x move of a parameter inside its bounds: fractions halved, overheads and the imbalance doubled."""
    low, high = BOUNDS[name]
    return max(low, value / 2) if name in FRACTION_FIELDS else min(high, value * 2)


def _eight_bit(case: TrainingCase) -> bool:
    return case.plan.precision in (Precision.FP8, Precision.INT8)


def exercised_fields(
    cases: Sequence[TrainingCase], base: Efficiency, *, estimator: Estimator | None = None, timer: Timer | None = None
) -> tuple[str, ...]:
    """The free fields whose 2x change moves some case's predicted step time (see the module docstring)."""
    timer = timer or _timer(cases, base, estimator)
    reference = timer(base)
    has_8bit = any(_eight_bit(c) for c in cases)
    found = []
    for name in FREE_FIELDS:
        if name == "gemm_8bit" and not has_8bit:
            continue
        moved = timer(base.with_(**{name: _trial(name, getattr(base, name))}))
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
    x = np.clip(x_prior, lower, upper)
    prior_scale = math.sqrt(prior_weight)

    def efficiency_at(v: NDArray[np.float64]) -> Efficiency:
        values = {n: float(np.clip(math.exp(e), *BOUNDS[n])) for n, e in zip(free, v, strict=True)}
        return base.with_(**values)

    classify = base
    for _ in range(1 if estimator is not None else CLASSIFY_ROUNDS):
        timer = _timer(cases, classify, estimator)

        def residuals(v: NDArray[np.float64], timer: Timer = timer) -> NDArray[np.float64]:
            diff = timer(efficiency_at(v)) - measured
            diff = np.where(np.isfinite(diff), diff, INFEASIBLE_PENALTY)
            return np.concatenate([sqrt_w * diff, prior_scale * (v - x_prior)])

        solution = least_squares(
            residuals,
            x,
            bounds=(lower, upper),
            method="trf",
            loss=LOSS,
            f_scale=LOSS_SCALE,
            diff_step=1e-3,
            ftol=TOLERANCE,
            xtol=TOLERANCE,
            gtol=TOLERANCE,
            max_nfev=MAX_EVALUATIONS,
        )
        moved = float(np.max(np.abs(solution.x - x), initial=0.0))
        x = solution.x
        classify = efficiency_at(x)
        if moved < 1e-4:
            break
    return efficiency_at(x)


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
    key: str,
    cases: Sequence[TrainingCase],
    efficiency: Efficiency,
    fitted: Sequence[str],
    estimator: Estimator | None,
    measured: Sequence[str] = (),
) -> FitEntry:
    # Errors of the entry on its own cases, from the same timer the fit used (an error of the metric, which is
    # proportional to the step time or to its inverse: README "Metrics").
    logs = _timer(cases, efficiency, estimator)(efficiency)
    errors = []
    for case, log_step in zip(cases, logs, strict=True):
        if np.isfinite(log_step):
            errors.append(error_pct(metric_from_step_time(case, math.exp(log_step)), case.value))
    stats = error_stats(errors)
    return FitEntry(
        key=key,
        efficiency=efficiency,
        fitted=tuple(fitted),
        case_ids=tuple(c.id for c in cases),
        groups=tuple(dict.fromkeys(c.group for c in cases)),
        median_abs_error_pct=stats.median_abs_error_pct,
        p90_abs_error_pct=stats.p90_abs_error_pct,
        measured=tuple(measured),
    )


def _child_entry(
    key: str, cases: Sequence[TrainingCase], parent: Efficiency, estimator: Estimator | None, prior_weight: float
) -> FitEntry:
    """Fit ``key``'s entry on its cases, starting from and shrunk towards its parent's values.

    Fields the cases do not exercise keep the parent's values, except a GEMM precision the family's cases never
    train in (:func:`tie_gemm_precisions`). Fields that published kernel benchmarks measure for this family
    (``catalog/kernel-efficiency.yaml``) are held at those values, not fitted.
    """
    measured = dict(measured_fractions().get(key, {}))
    start = parent.with_(**measured)
    exercised = exercised_fields(cases, start, estimator=estimator)
    free = tuple(f for f in exercised if f not in SHARED_FIELDS and f not in measured)
    efficiency = fit_entry(cases, free, base=start, prior=start, estimator=estimator, prior_weight=prior_weight)
    return _entry(key, cases, tie_gemm_precisions(efficiency, start, free), free, estimator, tuple(measured))


GEMM_PRECISIONS = ("gemm", "gemm_8bit")


def tie_gemm_precisions(efficiency: Efficiency, parent: Efficiency, fitted: Sequence[str]) -> Efficiency:
    """A family fitted at one GEMM precision only gets the other at its parent's 8-bit-to-16-bit ratio.

    Both run on the same matrix units with the same tiling and data movement, so what lowers a chip's achieved
    fraction of peak at 16 bits (clock under load, memory stalls, the compiler) lowers it at 8 bits alike; the
    ratio between the two (scaling, casts and layout work, already charged separately as memory traffic, aside)
    is the part that carries across families. Without this, a family's unexercised precision would keep the
    pooled value of other chips, unrelated to the fraction its own chip was just fitted to reach.
    """
    trained = [name for name in GEMM_PRECISIONS if name in fitted]
    if len(trained) != 1:
        return efficiency
    known = trained[0]
    other = GEMM_PRECISIONS[1 - GEMM_PRECISIONS.index(known)]
    value = getattr(efficiency, known) * getattr(parent, other) / getattr(parent, known)
    return efficiency.with_(**{other: float(np.clip(value, *BOUNDS[other]))})


def _pooled(default: Efficiency, families: Sequence[FitEntry]) -> Efficiency:
    """The centre of the family entries: per field, the geometric mean over the families that fitted it.

    Partial pooling (empirical Bayes): families are shrunk towards the default and the default is the families'
    centre, so a pooled fit over unlike chips cannot drag the default to the edge of a range. Fields no family
    fitted, and the shared ones, keep ``default``'s value.
    """
    changes: dict[str, float] = {}
    for name in FREE_FIELDS:
        if name in SHARED_FIELDS:
            continue
        values = [getattr(e.efficiency, name) for e in families if name in e.fitted]
        if values:
            changes[name] = float(np.exp(np.mean(np.log(values))))
    return default.with_(**changes)


def family_borrows(fitted: Sequence[str]) -> dict[str, str]:
    """The lender of every family without an entry of its own (``BORROWS``, followed to a fitted family)."""
    out: dict[str, str] = {}
    for family in (f.value for f in EfficiencyFamily):
        if family in fitted:
            continue
        lender = BORROWS.get(family, DEFAULT_KEY)
        seen = {family}
        while lender != DEFAULT_KEY and lender not in fitted and lender not in seen:
            seen.add(lender)
            lender = BORROWS.get(lender, DEFAULT_KEY)
        out[family] = lender if lender in fitted or lender == DEFAULT_KEY else DEFAULT_KEY
    return out


def fit(
    cases: CaseFile | Sequence[Case],
    *,
    exclude_groups: Sequence[str] = (),
    families: Sequence[str] | None = None,
    estimator: Estimator | None = None,
    prior_weight: float = PRIOR_WEIGHT,
    progress: Progress | None = None,
    report: bool = True,
) -> FitResult:
    """Fit a ``default`` entry on every usable case and one entry per efficiency family (see module docstring).

    ``report=False`` skips the before/after validation reports (leave-one-group-out needs only the table).

    ``exclude_groups`` leaves groups out of the fit (they are then scored as held out); ``families`` limits the
    per-family entries (``default`` is always fitted). Cases the estimator cannot time at the priors are left
    out and listed in ``not_used``; a family with fewer than ``MIN_CASES_PER_FAMILY`` cases borrows.
    """
    say = progress or (lambda _message: None)
    used, excluded, not_used = _split(cases, exclude_groups)
    prior = Efficiency()
    usable: list[TrainingCase] = []
    timed = _timer(used, prior, estimator)(prior)
    for case, value in zip(used, timed, strict=True):
        if np.isfinite(value):
            usable.append(case)
        else:
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
    groups = {f: [c for c in usable if c.family == f] for f in present}
    for family, members in groups.items():
        if len(members) < MIN_CASES_PER_FAMILY:
            say(f"{family}: {len(members)} case(s), fewer than {MIN_CASES_PER_FAMILY}: borrows")
    fitted_families = [f for f, members in groups.items() if len(members) >= MIN_CASES_PER_FAMILY]
    family_entries: list[FitEntry] = []
    for round_number in range(POOL_ROUNDS if fitted_families else 0):
        say(f"partial pooling, round {round_number + 1}: {', '.join(fitted_families)}")
        family_entries = [
            _child_entry(family, groups[family], default, estimator, prior_weight) for family in fitted_families
        ]
        default = _pooled(default, family_entries)
    default_fitted = tuple(
        name
        for name in FREE_FIELDS
        if name in free
        and (name in SHARED_FIELDS or not family_entries or any(name in e.fitted for e in family_entries))
    )
    entries = [_entry(DEFAULT_KEY, usable, default, default_fitted, estimator), *family_entries]

    borrows = family_borrows([e.key for e in entries])
    table = EfficiencyTable(entries={e.key: e.efficiency for e in entries}, provenance={}, borrows=borrows)
    return FitResult(
        entries=tuple(entries),
        borrows=borrows,
        cases_path=cases.path if isinstance(cases, CaseFile) else None,
        groups_used=tuple(dict.fromkeys(c.group for c in usable)),
        groups_excluded=tuple(exclude_groups),
        num_cases=len(usable),
        before=run_validation(usable, prior, estimator=estimator) if report else ValidationReport(rows=()),
        after=run_validation(usable, table, estimator=estimator) if report else ValidationReport(rows=()),
        held_out=run_validation(excluded, table, estimator=estimator) if excluded and report else None,
        not_used=tuple(not_used),
    )
