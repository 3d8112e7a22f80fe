"""Validation and calibration: score the step model on published runs and fit its efficiency parameters.

- :mod:`~rainier.calibrate.cases`: read ``validation/*.yaml`` (schema in validation/README.md) into typed cases.
- :mod:`~rainier.calibrate.plan_block`: a case's ``parallel`` block as a ``Plan``, with stated assumptions.
- :mod:`~rainier.calibrate.score`: predicted metric and signed error per case; the validation report.
- :mod:`~rainier.calibrate.summary`: median / mean / p90 |error|, by group and trust tier.
- :mod:`~rainier.calibrate.fit`: per-family least-squares fit of :class:`~rainier.perf.efficiency.Efficiency`.
- :mod:`~rainier.calibrate.efficiency_file`: write the fit to ``efficiency.yaml`` with its provenance.
- :mod:`~rainier.calibrate.crossval`: leave-one-group-out cross-validation.
- :mod:`~rainier.calibrate.commands`: the ``rainier validate`` / ``rainier calibrate`` entry points.
"""

from rainier.calibrate.cases import (
    Basis,
    Case,
    CaseFile,
    CaseKind,
    InferenceCase,
    Metric,
    SkippedCase,
    TrainingCase,
    Trust,
    load_cases,
    training_cases,
)
from rainier.calibrate.commands import CalibrationRun, calibrate_file, validate_file
from rainier.calibrate.crossval import CrossValidationReport, HeldOutFold, leave_one_group_out
from rainier.calibrate.efficiency_file import default_efficiency_path, efficiency_document, write_efficiency
from rainier.calibrate.fit import FREE_FIELDS, FitEntry, FitResult, case_weight, exercised_fields, fit, fit_entry
from rainier.calibrate.plan_block import Assumption, ParallelBlock, read_parallel
from rainier.calibrate.score import (
    INFERENCE_SKIP,
    CaseResult,
    Estimator,
    Unpredictable,
    ValidationReport,
    error_pct,
    metric_from_step_time,
    model_flops_per_step,
    predict,
    predicted_step_time,
    run_validation,
    score_case,
    step_time_from_metric,
)
from rainier.calibrate.summary import ErrorStats, error_stats, summarize

__all__ = [
    "FREE_FIELDS",
    "INFERENCE_SKIP",
    "Assumption",
    "Basis",
    "CalibrationRun",
    "Case",
    "CaseFile",
    "CaseKind",
    "CaseResult",
    "CrossValidationReport",
    "ErrorStats",
    "Estimator",
    "FitEntry",
    "FitResult",
    "HeldOutFold",
    "InferenceCase",
    "Metric",
    "ParallelBlock",
    "SkippedCase",
    "TrainingCase",
    "Trust",
    "Unpredictable",
    "ValidationReport",
    "calibrate_file",
    "case_weight",
    "default_efficiency_path",
    "efficiency_document",
    "error_pct",
    "error_stats",
    "exercised_fields",
    "fit",
    "fit_entry",
    "leave_one_group_out",
    "load_cases",
    "metric_from_step_time",
    "model_flops_per_step",
    "predict",
    "predicted_step_time",
    "read_parallel",
    "run_validation",
    "score_case",
    "step_time_from_metric",
    "summarize",
    "training_cases",
    "validate_file",
    "write_efficiency",
]
