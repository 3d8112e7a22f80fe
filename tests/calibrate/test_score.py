"""Scoring: metric conversions against hand-computed numbers, error statistics, and whole-file reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from rainier.calibrate import (
    INFERENCE_SKIP,
    CaseFile,
    Metric,
    TrainingCase,
    Unpredictable,
    error_pct,
    error_stats,
    metric_from_step_time,
    model_flops_per_step,
    predict,
    run_validation,
    step_time_from_metric,
)
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.perf.result import StepEstimate
from rainier.workload import megatron_model_flops
from tests.calibrate.fakes import fake_estimate, infeasible_estimate, step_estimate

EFF = Efficiency()


def _case(cases: CaseFile, case_id: str) -> TrainingCase:
    return next(c for c in cases.training if c.id == case_id)


def constant(step_time_s: float) -> Callable[..., StepEstimate]:
    """An estimator that answers ``step_time_s`` for every case."""

    def estimator(*args: Any, **kwargs: Any) -> StepEstimate:
        return step_estimate(step_time_s)

    return estimator


def test_step_time_metric_is_the_step_time(training: CaseFile) -> None:
    case = _case(training, "kor22-22b-full")
    assert case.metric is Metric.STEP_TIME_S
    assert predict(case, EFF, estimator=constant(1.5)) == 1.5


def test_tokens_per_s_per_device_by_hand(training: CaseFile) -> None:
    case = _case(training, "nemo2407-h100-llama2-7b")  # gbs 128, seq 4096, 8 GPUs
    assert predict(case, EFF, estimator=constant(2.0)) == pytest.approx(128 * 4096 / 2.0 / 8)


def test_model_tflops_counts_the_full_attention_matrix(training: CaseFile) -> None:
    # Llama 2 7B per token (validation README convention 8: full s x s attention, no recompute):
    # weights (4h^2 attention + 3*h*ffn MLP) x 32 layers + LM head V*h; attention core 2*s*a*(d+d) per layer.
    case = replace(_case(training, "nemo2407-h100-llama2-7b"), metric=Metric.MODEL_TFLOPS_PER_DEVICE)
    weights = (4 * 4096**2 + 3 * 4096 * 11008) * 32 + 32000 * 4096
    per_token = 3 * (2 * weights + 2 * 4096 * 32 * 256 * 32)
    assert per_token == 46_084_915_200
    expected = per_token * 128 * 4096 / 2.0 / 8 / 1e12
    assert predict(case, EFF, estimator=constant(2.0)) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(1510.1105, rel=1e-7)


def test_gpt_model_flops_equal_the_megatron_closed_form(training: CaseFile) -> None:
    for case_id in ("kor22-175b-full", "mcore-h100-462b", "nar21-1008b"):
        case = _case(training, case_id)
        assert model_flops_per_step(case) == pytest.approx(megatron_model_flops(case.shape, case.plan.gbs), rel=1e-12)


def test_mfu_by_hand(training: CaseFile) -> None:
    case = _case(training, "mcore-h100-strong-177b-96")  # GPT 177B: l=96, h=12288, V=131072, s=4096, B=1152
    l, h, v, s, b = 96, 12288, 131072, 4096, 1152  # noqa: E741
    flops = 72 * b * s * l * h**2 * (1 + s / (6 * h) + v / (12 * l * h))  # Korthikanti et al. 2022 sec. 6
    expected = flops / 100.0 / 96 / 989e12  # 96 H100s, BF16 dense peak 989 TFLOP/s (README convention 8)
    assert expected == pytest.approx(0.55231, rel=1e-4)
    assert predict(case, EFF, estimator=constant(100.0)) == pytest.approx(expected, rel=1e-9)


def test_step_time_from_metric_inverts_every_metric(training: CaseFile) -> None:
    for case in training.training:
        assert step_time_from_metric(case, metric_from_step_time(case, 3.0)) == pytest.approx(3.0, rel=1e-12)


def test_error_pct_is_signed_relative() -> None:
    assert error_pct(110.0, 100.0) == pytest.approx(10.0)
    assert error_pct(0.9, 1.0) == pytest.approx(-10.0)


def test_error_stats_by_hand() -> None:
    stats = error_stats([-10.0, 20.0, 5.0, -40.0], skipped=2)
    assert stats.count == 4 and stats.skipped == 2
    assert stats.median_abs_error_pct == pytest.approx(15.0)
    assert stats.mean_abs_error_pct == pytest.approx(18.75)
    # numpy's linear percentile: position 0.9 * 3 = 2.7 between sorted |e| 20 and 40.
    assert stats.p90_abs_error_pct == pytest.approx(20 + 0.7 * 20)
    empty = error_stats([])
    assert empty.count == 0 and empty.median_abs_error_pct is None


def test_report_rows_and_summary(shared51: CaseFile) -> None:
    report = run_validation(shared51, EFF, estimator=fake_estimate)
    doc = report.to_dict()
    assert set(doc) == {"cases", "summary"} and len(doc["cases"]) == 51
    row = doc["cases"][0]
    assert {"id", "group", "trust", "metric", "measured", "predicted", "error_pct"} <= set(row)
    assert row["error_pct"] == pytest.approx(100 * (row["predicted"] - row["measured"]) / row["measured"])
    summary = doc["summary"]
    assert summary["count"] == 51 and summary["predicted"] == 51 and summary["skipped"] == 0
    assert set(summary["by_trust"]) == {"A", "B", "C", "A+B"}
    assert summary["by_trust"]["A"]["count"] == 48 and summary["by_trust"]["C"]["count"] == 3
    assert summary["by_group"]["Korthikanti2022_Table5"]["count"] == 8
    korthikanti = [abs(r["error_pct"]) for r in doc["cases"] if r["group"] == "Korthikanti2022_Table5"]
    assert summary["korthikanti2022_table5_mean_abs_error_pct"] == pytest.approx(sum(korthikanti) / 8)


def test_group_filter(shared51: CaseFile) -> None:
    report = run_validation(shared51, EFF, "NeMo_24.07_H100_FP8", estimator=fake_estimate)
    assert len(report.rows) == 12 and report.summary["by_group"].keys() == {"NeMo_24.07_H100_FP8"}
    with pytest.raises(ValueError, match=r"unknown group 'NeMo'"):
        run_validation(shared51, EFF, "NeMo", estimator=fake_estimate)


def test_infeasible_estimate_becomes_a_skipped_row(shared51: CaseFile) -> None:
    report = run_validation(shared51, EFF, "Korthikanti2022_Table5", estimator=infeasible_estimate)
    assert all(r.skipped == "estimator: infeasible (memory): does not fit" for r in report.rows)
    assert report.summary["skipped"] == 8 and report.summary["median_abs_error_pct"] is None
    with pytest.raises(Unpredictable):
        predict(shared51.training[0], EFF, estimator=infeasible_estimate)
    with pytest.raises(Unpredictable, match="not a positive number"):
        predict(shared51.training[0], EFF, estimator=constant(0.0))


def test_inference_cases_are_skipped_until_a_serving_model_exists(inference: CaseFile) -> None:
    doc = run_validation(inference, EFF, estimator=fake_estimate).to_dict()
    assert len(doc["cases"]) == 65
    assert all(row["skipped"] == INFERENCE_SKIP for row in doc["cases"])
    assert doc["summary"]["skipped"] == 65 and doc["summary"]["predicted"] == 0


def test_table_lookup_by_family(shared51: CaseFile) -> None:
    # The fake reads gemm from the table entry of the case's family; a slower trainium entry slows only trn1.
    table = EfficiencyTable(entries={"trainium": Efficiency(gemm=0.375)}, provenance={})
    base = run_validation(shared51, EFF, estimator=fake_estimate)
    slow = run_validation(shared51, table, estimator=fake_estimate)
    for before, after in zip(base.rows, slow.rows, strict=True):
        assert before.predicted is not None and after.predicted is not None
        if before.group == "AWS_Neuron_Trn1_training":
            assert after.predicted < before.predicted  # tokens/s fall
        else:
            assert after.predicted == before.predicted


def test_every_shipped_case_predicts_or_says_why(training: CaseFile) -> None:
    """With the real step model and the committed efficiencies."""
    report = run_validation(training, EfficiencyTable(entries={}, provenance={}))
    for row in report.rows:
        assert (row.predicted is not None and row.predicted > 0) or row.skipped, row
    assert report.summary["count"] == len(training.cases)
