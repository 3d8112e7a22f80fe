"""Fitting: known efficiencies are recovered from synthetic cases made by a fake step model, per family."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rainier.calibrate import (
    FREE_FIELDS,
    Basis,
    Case,
    CaseFile,
    TrainingCase,
    Trust,
    case_weight,
    exercised_fields,
    fit,
    leave_one_group_out,
    metric_from_step_time,
    predicted_step_time,
    write_efficiency,
)
from rainier.errors import InputError
from rainier.parallel.plan import Infeasible, InfeasibleKind
from rainier.perf.efficiency import Efficiency, load_efficiency, measured_fractions
from rainier.perf.result import StepEstimate
from tests.calibrate.fakes import USED_FIELDS, fake_estimate

PRIOR = Efficiency()
TRUTH = {
    "nvidia-ampere": Efficiency(gemm=0.62, scale_up=0.7, step_overhead_s=0.2),
    "nvidia-hopper": Efficiency(gemm=0.58, gemm_8bit=0.45, scale_up=0.72, step_overhead_s=0.15),
    "trainium": Efficiency(gemm=0.4, scale_up=0.55, step_overhead_s=0.5),
}
GPU_FIELDS = {"nvidia-ampere": ("gemm", "scale_up", "step_overhead_s"), "nvidia-hopper": USED_FIELDS}
TRN_GROUP = "AWS_Neuron_Trn1_training"


def synthetic(cases: CaseFile | list[TrainingCase], truth: dict[str, Efficiency] = TRUTH) -> list[Case]:
    """The shipped cases with their targets replaced by the fake model's metric under known efficiencies."""
    out: list[Case] = []
    for case in cases.cases if isinstance(cases, CaseFile) else cases:
        if isinstance(case, TrainingCase):
            step = predicted_step_time(case, truth[case.family], estimator=fake_estimate)
            case = replace(case, value=metric_from_step_time(case, step))
        out.append(case)
    return out


def _close(found: Efficiency, expected: Efficiency, names: tuple[str, ...], rel: float) -> None:
    for name in names:
        assert getattr(found, name) == pytest.approx(getattr(expected, name), rel=rel), name


def test_weights_follow_trust_and_basis(shared51: CaseFile) -> None:
    case = shared51.training[0]
    assert case_weight(replace(case, trust=Trust.A, basis=Basis.MEASURED)) == 1.0
    assert case_weight(replace(case, trust=Trust.B, basis=Basis.MEASURED)) == 0.7
    assert case_weight(replace(case, trust=Trust.C, basis=Basis.DERIVED)) == pytest.approx(0.3 * 0.8)


def test_only_exercised_fields_are_free(shared51: CaseFile) -> None:
    assert set(USED_FIELDS) <= set(FREE_FIELDS)
    assert exercised_fields(shared51.training, PRIOR, estimator=fake_estimate) == USED_FIELDS
    trainium = [c for c in shared51.training if c.family == "trainium"]  # no 8-bit case
    assert exercised_fields(trainium, PRIOR, estimator=fake_estimate) == ("gemm", "scale_up", "step_overhead_s")


def test_fit_recovers_known_parameters_per_family(shared51: CaseFile) -> None:
    result = fit(synthetic(shared51), estimator=fake_estimate, prior_weight=1e-12)
    entries = {e.key: e for e in result.entries}
    assert list(entries) == ["default", "nvidia-ampere", "nvidia-hopper", "trainium"]
    default = entries["default"]
    for family, fields in GPU_FIELDS.items():
        entry = entries[family]
        assert entry.fitted == fields
        _close(entry.efficiency, TRUTH[family], fields, rel=1e-3)
        for name in set(FREE_FIELDS) - set(USED_FIELDS) - set(entry.measured):
            assert getattr(entry.efficiency, name) == getattr(PRIOR, name) == getattr(default.efficiency, name)
        for name in entry.measured:  # held at kernel benchmarks' value (catalog/kernel-efficiency.yaml)
            assert getattr(entry.efficiency, name) == measured_fractions()[family][name]
    assert len(entries["nvidia-ampere"].case_ids) == 18 and len(entries["nvidia-hopper"].case_ids) == 27
    trn = entries["trainium"]
    assert trn.fitted == ("gemm", "scale_up", "step_overhead_s") and trn.groups == (TRN_GROUP,)
    _close(trn.efficiency, TRUTH["trainium"], trn.fitted, rel=1e-3)
    # Only Hopper fitted the 8-bit GEMM, so the default (the families' centre) has Hopper's value; trainium and
    # ampere, fitted at 16 bits only, get theirs at the default's 8-bit-to-16-bit ratio.
    hopper_8bit = entries["nvidia-hopper"].efficiency.gemm_8bit
    assert default.efficiency.gemm_8bit == pytest.approx(hopper_8bit, rel=1e-6)
    ratio = default.efficiency.gemm_8bit / default.efficiency.gemm
    for entry in (trn, entries["nvidia-ampere"]):
        assert entry.efficiency.gemm_8bit == pytest.approx(entry.efficiency.gemm * ratio, rel=1e-6)
    # Families without cases borrow a named family (issue 11), never silently the default.
    assert result.borrows["nvidia-blackwell"] == "nvidia-hopper" and result.borrows["inferentia"] == "trainium"
    assert result.after.summary["p90_abs_error_pct"] < 0.1
    assert result.before.summary["median_abs_error_pct"] > 10
    assert result.num_cases == 51 and result.groups_excluded == () and not result.not_used


def test_family_with_too_few_cases_borrows(shared51: CaseFile) -> None:
    few = [c for c in shared51.training if c.family != "trainium"] + [
        c for c in shared51.training if c.family == "trainium"
    ][:3]
    result = fit(synthetic(few), estimator=fake_estimate)
    assert "trainium" not in {e.key for e in result.entries}
    assert result.borrows["trainium"] == "default"


def test_default_entry_recovers_a_shared_truth(shared51: CaseFile) -> None:
    shared = TRUTH["nvidia-hopper"]
    truth = dict.fromkeys(TRUTH, shared)
    result = fit(synthetic(shared51, truth), estimator=fake_estimate)
    # With the default weak prior the data dominate the well-determined fractions (within 2% of the truth);
    # the step overhead, small against most step times, is pulled part of the way towards its 0.05 s prior.
    found = result.entries[0].efficiency
    _close(found, shared, ("gemm", "gemm_8bit", "scale_up"), rel=0.02)
    assert PRIOR.step_overhead_s < found.step_overhead_s <= shared.step_overhead_s * 1.01


def test_fit_is_deterministic(shared51: CaseFile) -> None:
    cases = synthetic(shared51)
    first = fit(cases, estimator=fake_estimate)
    second = fit(cases, estimator=fake_estimate)
    assert [e.efficiency for e in first.entries] == [e.efficiency for e in second.entries]


def test_excluded_groups_are_scored_as_held_out(shared51: CaseFile) -> None:
    result = fit(synthetic(shared51), exclude_groups=["Korthikanti2022_Table5"], estimator=fake_estimate)
    assert result.num_cases == 43 and "Korthikanti2022_Table5" not in result.groups_used
    assert result.held_out is not None and len(result.held_out.rows) == 8
    with pytest.raises(InputError, match="unknown group 'Korthikanti'"):
        fit(shared51, exclude_groups=["Korthikanti"], estimator=fake_estimate)
    with pytest.raises(InputError, match="no training case left"):
        fit(shared51, exclude_groups=shared51.groups, estimator=fake_estimate)


def test_family_filter(shared51: CaseFile) -> None:
    result = fit(synthetic(shared51), families=["trainium"], estimator=fake_estimate)
    assert [e.key for e in result.entries] == ["default", "trainium"]
    with pytest.raises(InputError, match="unknown family"):
        fit(shared51, families=["tpu"], estimator=fake_estimate)


def test_inference_file_cannot_be_fitted(inference: CaseFile) -> None:
    with pytest.raises(InputError, match="nothing to fit"):
        fit(inference, estimator=fake_estimate)


def test_cases_the_estimator_cannot_time_are_left_out(shared51: CaseFile) -> None:
    def partly_infeasible(shape: Any, plan: Any, cluster: Any, **kwargs: Any) -> StepEstimate | Infeasible:
        if plan.pp_degree == 64:
            return Infeasible(InfeasibleKind.MEMORY, "too big")
        return fake_estimate(shape, plan, cluster, **kwargs)

    result = fit(synthetic(shared51), estimator=partly_infeasible)
    assert {i for i, _ in result.not_used} == {"nar21-1008b", "kor22-1t-full", "kor22-1t-seqsel"}
    assert result.num_cases == 48 and all("too big" in reason for _, reason in result.not_used)


def test_written_file_loads_back(shared51: CaseFile, tmp_path: Path) -> None:
    result = fit(synthetic(shared51), estimator=fake_estimate)
    path = write_efficiency(result, tmp_path / "efficiency.yaml", command="rainier calibrate test")
    table = load_efficiency(path)
    assert set(table.entries) == {"default", "nvidia-ampere", "nvidia-hopper", "trainium"}
    assert table.borrows == result.borrows and "borrows: nvidia-hopper" in path.read_text()
    for entry in result.entries:
        _close(table.entries[entry.key], entry.efficiency, FREE_FIELDS, rel=1e-5)
        assert table.provenance[entry.key]["cases"] == len(entry.case_ids)
        assert table.provenance[entry.key]["groups"] == list(entry.groups)
        assert "median_abs_error_pct" in table.provenance[entry.key]
    text = path.read_text()
    assert text.startswith("# Efficiency parameters") and "command: rainier calibrate test" in text
    for key in ("date:", "rainier_version:", "cases_file:", "groups_used:", "groups_excluded:", "num_cases: 51"):
        assert key in text, key
    assert "p90_abs_error_pct:" in text


def test_leave_one_group_out(shared51: CaseFile) -> None:
    report = leave_one_group_out(synthetic(shared51), estimator=fake_estimate, prior_weight=1e-12)
    assert [f.group for f in report.folds] == list(shared51.groups)
    assert sum(len(f.rows) for f in report.folds) == 51 and report.summary["predicted"] == 51
    for fold in report.folds:
        assert {r.group for r in fold.rows} == {fold.group} and fold.num_fit_cases == 51 - len(fold.rows)
        worst = max(abs(r.error_pct or 0.0) for r in fold.rows)
        if fold.group == TRN_GROUP:  # no trainium case left to fit: the GPU-dominated default predicts them
            assert worst > 10
        else:  # every other group is predicted by its family's entry, fitted exactly on its siblings
            assert worst < 0.5
    doc = report.to_dict()
    assert set(doc) == {"folds", "cases", "summary"} and len(doc["cases"]) == 51


def test_leave_one_group_out_needs_two_groups(shared51: CaseFile) -> None:
    one_group = [c for c in shared51.cases if c.group == TRN_GROUP]
    with pytest.raises(InputError, match="at least two groups"):
        leave_one_group_out(one_group, estimator=fake_estimate)


def test_a_measured_fraction_is_held_at_its_value(shared51: CaseFile, monkeypatch: pytest.MonkeyPatch) -> None:
    """A family's fraction from kernel benchmarks is not fitted: the entry keeps it and lists it as measured."""
    fit_module = sys.modules["rainier.calibrate.fit"]  # the package exports the function `fit` under that name
    measured = {"nvidia-hopper": {"scale_up": 0.9}}
    monkeypatch.setattr(fit_module, "measured_fractions", lambda: measured)
    entries = {e.key: e for e in fit(synthetic(shared51), estimator=fake_estimate, prior_weight=1e-12).entries}
    hopper = entries["nvidia-hopper"]
    assert hopper.efficiency.scale_up == 0.9 and hopper.measured == ("scale_up",)
    assert "scale_up" not in hopper.fitted
    _close(hopper.efficiency, TRUTH["nvidia-hopper"], ("gemm", "gemm_8bit"), rel=0.2)  # the rest still fitted
    assert entries["nvidia-ampere"].measured == () and "scale_up" in entries["nvidia-ampere"].fitted


def test_a_preparation_is_reused_exactly_where_every_gemm_side_stays() -> None:
    """A case prepared at one set of efficiencies serves another only if that one puts every GEMM on the same
    side of the roofline; it then times exactly as a fresh preparation would."""
    import importlib

    import numpy as np

    from rainier.calibrate import load_cases
    from rainier.perf import context, step
    from rainier.perf.batch import assemble
    from rainier.perf.compute import same_sides
    from rainier.perf.efficiency import BOUNDS, committed_efficiency

    fitting = importlib.import_module("rainier.calibrate.fit")  # the module (the package exports the function)
    cases = load_cases(Path(__file__).resolve().parents[2] / "validation" / "training.yaml").training
    base = committed_efficiency().entries["default"]
    near = base.with_(gemm=base.gemm * 1.001)
    # GEMMs at their slowest and memory at its fastest: the GEMMs near the ridge turn compute-bound
    flipped = base.with_(gemm=BOUNDS["gemm"][0], gemm_8bit=BOUNDS["gemm_8bit"][0], memory=BOUNDS["memory"][1])
    moved = 0
    for case in cases[:12]:
        first = fitting._prepared(case, base)
        if first is None:
            continue
        assert fitting._prepared(case, near) is first
        (decided, _), *_ = fitting._BY_SIDES[case]
        if not same_sides(decided, flipped):
            moved += 1
            assert fitting._prepared(case, flipped) is not first
        fitting._PREPARED.clear()
        fitting._BY_SIDES.clear()
        context._SHARED.clear()
        step.step_context.cache_clear()
        fresh = fitting._prepared(case, near)
        assert fresh is not None and fresh is not first
        for eff in (near, base):
            assert np.array_equal(assemble(first, eff).step_time_s, assemble(fresh, eff).step_time_s)
    assert moved > 0


def test_gemm_sides_are_recorded_per_thread() -> None:
    """Two threads recording side by side (the web app's workers form passes at once), their blocks ending out of
    order: each thread's decisions go to its own list, never to the other's."""
    import threading

    from rainier.perf.compute import Rank, Side, gemm_form, recording_sides
    from rainier.perf.efficiency import committed_efficiency
    from rainier.workload.flops import Gemm, GemmKind

    entered, left = threading.Event(), threading.Event()
    other: list[Side] = []

    def record_and_leave_first() -> None:
        with recording_sides(other):
            entered.set()
            left.wait()

    rank = Rank(peak_16bit_flop_per_s=1e15, peak_matmul_flop_per_s=1e15, hbm_bw_bytes_per_s=3e12, bits8=False)
    classify = committed_efficiency().entries["default"]
    mine: list[Side] = []
    worker = threading.Thread(target=record_and_leave_first)
    worker.start()
    entered.wait()
    with recording_sides(mine):
        left.set()
        worker.join()  # the worker's block ends inside this one
        gemm_form(Gemm(kind=GemmKind.MLP_UP, m=4096, n=4096, k=4096), rank, classify)
    assert len(mine) == 1 and other == []
