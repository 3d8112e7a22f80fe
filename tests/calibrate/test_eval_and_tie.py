"""A measured step that includes an evaluation pass, and a family fitted at one GEMM precision only."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rainier.calibrate import CaseFile, TrainingCase, load_cases
from rainier.calibrate.fit import CaseBank, tie_gemm_precisions
from rainier.calibrate.score import predicted_step_time
from rainier.perf import step
from rainier.perf.compute import FORWARD_SHARE
from rainier.perf.efficiency import BOUNDS, Efficiency
from tests.calibrate.conftest import raw_case, write_cases

CASE = "mlperf4.1-gpt3-175b-tpu-v6e-512"  # MaxText closes each timed block after an evaluation pass


def _load(tmp_path: Path, share: float | None) -> TrainingCase:
    raw = raw_case(CASE)
    raw["target"].pop("eval_per_train_sequence", None)
    if share is not None:
        raw["target"]["eval_per_train_sequence"] = share
    case = load_cases(write_cases(tmp_path, [raw])).cases[0]
    assert isinstance(case, TrainingCase)
    return case


def test_the_shipped_case_states_its_evaluation_pass(training: CaseFile) -> None:
    case = next(c for c in training.training if c.id == CASE)
    assert case.eval_per_train_sequence == pytest.approx(24_567 / 24_576, rel=1e-4)


def test_an_evaluation_pass_adds_a_forward_pass_per_evaluated_sequence(tmp_path: Path) -> None:
    efficiency = Efficiency()
    plain = _load(tmp_path, None)
    with_eval = _load(tmp_path, 0.5)
    estimate = step.estimate(plain.shape, plain.plan, plain.cluster, efficiency=efficiency, seq_len=plain.seq_len)
    added = predicted_step_time(with_eval, efficiency) - predicted_step_time(plain, efficiency)
    assert added == pytest.approx(0.5 * FORWARD_SHARE * estimate.breakdown.compute, rel=1e-9)
    assert added > 0
    # the fit's batched timing adds the same seconds
    bank = CaseBank([plain, with_eval], efficiency)
    logs = bank(efficiency)
    ratio = predicted_step_time(with_eval, efficiency) / predicted_step_time(plain, efficiency)
    assert float(logs[1] - logs[0]) == pytest.approx(math.log(ratio), rel=1e-6)


@pytest.mark.parametrize("share", [-0.1, 11.0, "half"])
def test_a_bad_evaluation_share_skips_the_case_naming_the_field(tmp_path: Path, share: object) -> None:
    raw = raw_case(CASE)
    raw["target"]["eval_per_train_sequence"] = share
    case = load_cases(write_cases(tmp_path, [raw])).cases[0]
    assert not isinstance(case, TrainingCase)
    assert "eval_per_train_sequence" in case.reason


def test_a_family_fitted_at_one_precision_gets_the_other_at_its_parents_ratio() -> None:
    parent = Efficiency(gemm=0.8, gemm_8bit=0.6)
    fitted = Efficiency(gemm=0.4, gemm_8bit=0.6)
    tied = tie_gemm_precisions(fitted, parent, ("gemm", "memory"))
    assert tied.gemm == 0.4 and tied.gemm_8bit == pytest.approx(0.3)
    back = tie_gemm_precisions(Efficiency(gemm=0.8, gemm_8bit=0.45), parent, ("gemm_8bit",))
    assert back.gemm_8bit == 0.45 and back.gemm == pytest.approx(0.6)
    # both fitted, or neither: nothing is tied
    assert tie_gemm_precisions(fitted, parent, ("gemm", "gemm_8bit")) == fitted
    assert tie_gemm_precisions(fitted, parent, ("memory",)) == fitted
    # the tied value stays inside its physical bounds
    low = tie_gemm_precisions(Efficiency(gemm=0.31, gemm_8bit=0.6), Efficiency(gemm=0.9, gemm_8bit=0.3), ("gemm",))
    assert low.gemm_8bit == BOUNDS["gemm_8bit"][0]
