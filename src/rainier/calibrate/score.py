"""Scoring the step model on validation cases: predicted metric, signed error, and the report of a whole file.

The step model predicts a step time; each case's target metric is derived from it exactly as the sources
derive theirs (validation/README.md, "Metrics" and convention 8): tokens/s per device from the global batch,
model TFLOP/s with the *full* attention matrix counted (Korthikanti et al. 2022 sec. 6; equal to
``megatron_model_flops`` for GPT shapes), and MFU against the dense peak in the case's matmul precision.
The estimator is a parameter everywhere (``None``: :func:`rainier.perf.step.estimate`, looked up when called)
so that tests and experiments can inject another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rainier.calibrate.cases import Case, CaseFile, InferenceCase, Metric, SkippedCase, TrainingCase
from rainier.calibrate.plan_block import Assumption
from rainier.calibrate.summary import Scored, summarize
from rainier.errors import UnknownNameError
from rainier.hardware import Cluster
from rainier.parallel.plan import Infeasible, Plan
from rainier.perf import step as step_model
from rainier.perf.compute import FORWARD_SHARE
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.perf.result import StepEstimate
from rainier.workload import TransformerShape, model_flops_per_token

INFERENCE_SKIP = "an inference case: scored by the serving model (rainier.serve.validate)"
TERA = 1e12


class Estimator(Protocol):
    """The signature of :func:`rainier.perf.step.estimate`."""

    def __call__(
        self,
        shape: TransformerShape,
        plan: Plan,
        cluster: Cluster,
        *,
        efficiency: Efficiency | EfficiencyTable | None = ...,
        seq_len: int | None = ...,
    ) -> StepEstimate | Infeasible: ...


class Unpredictable(Exception):
    """The estimator gave no usable step time for a case (infeasible plan, or a non-positive time)."""


# ----------------------------------------------------------------------------------------------------------------
# Metric conversions (validation/README.md, "Metrics")
# ----------------------------------------------------------------------------------------------------------------


def tokens_per_step(case: TrainingCase) -> int:
    """``global_batch * seq_len``: tokens of one optimizer step (README, "Metrics")."""
    return case.plan.gbs * case.seq_len


def model_flops_per_step(case: TrainingCase) -> float:
    """Model FLOPs of one step as the sources count them: full s x s attention, no recompute (convention 8)."""
    return model_flops_per_token(case.shape, case.seq_len, causal=False) * tokens_per_step(case)


def metric_from_step_time(case: TrainingCase, step_time_s: float) -> float:
    """The case's target metric implied by a step time."""
    if case.metric is Metric.STEP_TIME_S:
        return step_time_s
    if case.metric is Metric.TOKENS_PER_S_PER_DEVICE:
        return tokens_per_step(case) / step_time_s / case.count
    flop_per_s_per_device = model_flops_per_step(case) / step_time_s / case.count
    if case.metric is Metric.MODEL_TFLOPS_PER_DEVICE:
        return flop_per_s_per_device / TERA
    return flop_per_s_per_device / case.device.peak_flop_per_s(case.plan.precision)  # Metric.MFU


def step_time_from_metric(case: TrainingCase, value: float) -> float:
    """The step time a metric value implies (every metric is inversely proportional to step time)."""
    if case.metric is Metric.STEP_TIME_S:
        return value
    return metric_from_step_time(case, 1.0) / value


def error_pct(predicted: float, measured: float) -> float:
    """Signed percent error, ``100 * (predicted - measured) / measured``."""
    return 100.0 * (predicted - measured) / measured


def predicted_step_time(
    case: TrainingCase,
    efficiency: Efficiency | EfficiencyTable,
    *,
    estimator: Estimator | None = None,
) -> float:
    """The estimator's step time for a case; :class:`Unpredictable` if it has none."""
    run = estimator if estimator is not None else step_model.estimate
    result = run(case.shape, case.plan, case.cluster, efficiency=efficiency, seq_len=case.seq_len)
    if isinstance(result, Infeasible):
        raise Unpredictable(f"estimator: infeasible ({result.kind.value}): {result.reason}")
    step_time = result.step_time_s + eval_seconds(case.eval_per_train_sequence, result.breakdown.compute)
    if not math.isfinite(step_time) or step_time <= 0:
        raise Unpredictable(f"estimator: step time {step_time!r} is not a positive number")
    return float(step_time)


def eval_seconds(eval_per_train_sequence: Any, compute_s: Any) -> Any:
    """Time of the forward-only evaluation a case's measured step includes (``eval_per_train_sequence``).

    An evaluation sequence costs a training sequence's forward pass: a third of the step's compute per sequence,
    at the step's own efficiency (evaluation runs the same kernels on the same shards, without the backward).
    """
    return eval_per_train_sequence * FORWARD_SHARE * compute_s


def predict(
    case: TrainingCase,
    efficiency: Efficiency | EfficiencyTable,
    *,
    estimator: Estimator | None = None,
) -> float:
    """The case's target metric as the step model predicts it under ``efficiency``."""
    return metric_from_step_time(case, predicted_step_time(case, efficiency, estimator=estimator))


# ----------------------------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    """One case of a validation run: measured and predicted metric and signed error, or why it was skipped."""

    id: str
    group: str
    trust: str
    metric: str = ""
    measured: float | None = None
    predicted: float | None = None
    error_pct: float | None = None
    skipped: str | None = None
    assumptions: tuple[Assumption, ...] = ()

    def scored(self) -> Scored:
        return Scored(group=self.group, trust=self.trust, error_pct=self.error_pct)

    def to_dict(self) -> dict[str, Any]:
        if self.skipped is not None:
            return {"id": self.id, "group": self.group, "trust": self.trust, "skipped": self.skipped}
        return {
            "id": self.id,
            "group": self.group,
            "trust": self.trust,
            "metric": self.metric,
            "measured": self.measured,
            "predicted": self.predicted,
            "error_pct": self.error_pct,
            "assumptions": [a.text for a in self.assumptions],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationReport:
    """Every case's result and the error statistics (:func:`rainier.calibrate.summary.summarize`)."""

    rows: tuple[CaseResult, ...]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def predicted(self) -> tuple[CaseResult, ...]:
        return tuple(r for r in self.rows if r.skipped is None)

    def to_dict(self) -> dict[str, Any]:
        return {"cases": [r.to_dict() for r in self.rows], "summary": self.summary}


def score_case(
    case: Case,
    efficiency: Efficiency | EfficiencyTable,
    *,
    estimator: Estimator | None = None,
) -> CaseResult:
    """Predict one case (or say why not)."""
    trust = case.trust.value
    if isinstance(case, SkippedCase):
        return CaseResult(id=case.id, group=case.group, trust=trust, skipped=case.reason)
    if isinstance(case, InferenceCase):
        return CaseResult(id=case.id, group=case.group, trust=trust, skipped=INFERENCE_SKIP)
    try:
        predicted = predict(case, efficiency, estimator=estimator)
    except Unpredictable as exc:
        return CaseResult(id=case.id, group=case.group, trust=trust, skipped=str(exc), assumptions=case.assumptions)
    return CaseResult(
        id=case.id,
        group=case.group,
        trust=trust,
        metric=case.metric.value,
        measured=case.value,
        predicted=predicted,
        error_pct=error_pct(predicted, case.value),
        assumptions=case.assumptions,
    )


def select_group(cases: CaseFile | Sequence[Case], group: str | None) -> tuple[Case, ...]:
    """The cases of one group (all when ``group`` is None); an unknown group is an error with suggestions."""
    items = cases.cases if isinstance(cases, CaseFile) else tuple(cases)
    if group is None:
        return items
    known = tuple(dict.fromkeys(c.group for c in items))
    if group not in known:
        raise UnknownNameError("group", group, known)
    return tuple(c for c in items if c.group == group)


def run_validation(
    cases: CaseFile | Sequence[Case],
    efficiency_table: Efficiency | EfficiencyTable,
    group: str | None = None,
    *,
    estimator: Estimator | None = None,
) -> ValidationReport:
    """Predict every case (of ``group``, if given) and summarise the errors.

    Inference files are read but every case is reported skipped until a serving estimator exists.
    """
    rows = tuple(score_case(c, efficiency_table, estimator=estimator) for c in select_group(cases, group))
    return ValidationReport(rows=rows, summary=summarize([r.scored() for r in rows]))
