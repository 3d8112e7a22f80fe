"""Accuracy of the step model against the public validation cases, with the committed fit (issues 3 and 11).

These bounds can fail: a change to the step model that makes predictions worse (or a fit that is not refreshed
after one) fails CI. Issue 11's targets over the public set (validation/training.yaml, >= 120 cases):
all cases median |error| <= 5%; leave-one-group-out median <= 8%, p90 <= 20%, every family's median <= 12%; at
most 5% of the cases skipped; every fitted family from at least 4 cases (else it names the family it borrows);
no committed parameter at a bound of its physical range. The leave-one-group-out fold is computed once per
session (under a minute).

The bounds below are regression guards at what the model reaches today, a little above the measured values
(all cases: median 4.8%, p90 16.6%; leave-one-group-out: median 7.0%, p90 19.3%, worst family 9.6%), and at
issue 11's targets (``ISSUE_TARGETS``) where those are tighter. Lower a guard whenever the model improves.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from rainier.calibrate import CaseFile, CrossValidationReport, fit, leave_one_group_out, run_validation
from rainier.calibrate.fit import MIN_CASES_PER_FAMILY
from rainier.hardware.accelerator import EfficiencyFamily
from rainier.perf.efficiency import BOUNDS, PARAMETER_NAMES, committed_efficiency, measured_fractions

KORTHIKANTI_TARGET_PCT = 3.65  # Calculon on the same 8 cases
ALL_CASES_MEDIAN_PCT = 5.0
ALL_CASES_P90_PCT = 18.0
LOGO_MEDIAN_PCT = 8.0
LOGO_P90_PCT = 20.0
FAMILY_LOGO_MEDIAN_PCT = 11.0
ISSUE_TARGETS = {"all_median": 5.0, "logo_median": 8.0, "logo_p90": 20.0, "family_logo_median": 12.0}
BOUND_MARGIN = 0.01  # a committed value within 1% of a bound counts as at the bound


@pytest.fixture(scope="session")
def logo(training: CaseFile) -> CrossValidationReport:
    return leave_one_group_out(training)


def test_all_cases_within_bounds(training: CaseFile) -> None:
    report = run_validation(training.cases, committed_efficiency())
    summary = report.summary
    assert summary["skipped"] <= 0.05 * summary["count"]
    assert summary["median_abs_error_pct"] <= ALL_CASES_MEDIAN_PCT
    assert summary["p90_abs_error_pct"] <= ALL_CASES_P90_PCT
    assert summary["korthikanti2022_table5_mean_abs_error_pct"] <= KORTHIKANTI_TARGET_PCT


def test_every_group_is_predicted_within_a_third(training: CaseFile) -> None:
    report = run_validation(training.cases, committed_efficiency())
    for group, stats in report.summary["by_group"].items():
        if stats["median_abs_error_pct"] is not None:  # None: every case of the group skipped
            assert stats["median_abs_error_pct"] <= 33.0, group


def test_leave_one_group_out_within_bounds(logo: CrossValidationReport, training: CaseFile) -> None:
    assert logo.summary["median_abs_error_pct"] <= LOGO_MEDIAN_PCT
    assert logo.summary["p90_abs_error_pct"] <= LOGO_P90_PCT
    families: dict[str, list[float]] = defaultdict(list)
    by_id = {c.id: c for c in training.training}
    for row in logo.rows:
        if row.error_pct is not None:
            families[by_id[row.id].family].append(abs(row.error_pct))
    for family, errors in families.items():
        assert float(np.median(errors)) <= FAMILY_LOGO_MEDIAN_PCT, family


def test_committed_fit_is_what_calibrate_produces(training: CaseFile) -> None:
    """`rainier calibrate validation/training.yaml` reproduces catalog/efficiency.yaml (rerunnable fit)."""
    committed = committed_efficiency()
    result = fit(training)
    assert dict(result.borrows) == dict(committed.borrows)
    for entry in result.entries:
        ours = committed.entries[entry.key]
        for name in PARAMETER_NAMES:
            assert getattr(entry.efficiency, name) == pytest.approx(getattr(ours, name), rel=2e-3), (entry.key, name)


def test_families_fitted_on_enough_cases_or_borrowing() -> None:
    """Issue 11: a family is fitted on >= 4 cases, or the file says which family it borrows from."""
    committed = committed_efficiency()
    for family in EfficiencyFamily:
        key = family.value
        if key in committed.entries:
            assert committed.provenance[key]["cases"] >= MIN_CASES_PER_FAMILY, key
        else:
            assert key in committed.borrows, f"{key}: neither fitted nor borrowing"


def test_no_committed_parameter_at_a_bound() -> None:
    """A fitted value at the edge of its physical range is the fit absorbing structure the model lacks."""
    committed = committed_efficiency()
    at_bound = []
    for key, entry in committed.entries.items():
        fitted = set(committed.provenance[key].get("fitted", PARAMETER_NAMES))
        for name in fitted:
            low, high = BOUNDS[name]
            value = getattr(entry, name)
            if value <= low * (1 + BOUND_MARGIN) or value >= high * (1 - BOUND_MARGIN):
                at_bound.append(f"{key}.{name}={value:g}")
    assert not at_bound, at_bound


def test_korthikanti_target_when_fitted_on_its_own_group(training: CaseFile) -> None:
    others = tuple(g for g in training.groups if g != "Korthikanti2022_Table5")
    result = fit(training, exclude_groups=others)
    assert result.after.summary["korthikanti2022_table5_mean_abs_error_pct"] <= KORTHIKANTI_TARGET_PCT


def test_measured_fractions_are_held_not_fitted() -> None:
    """A fraction kernel benchmarks measure (catalog/kernel-efficiency.yaml) is committed at that value, unfitted."""
    committed = committed_efficiency()
    measured = measured_fractions()
    assert measured, "kernel-efficiency.yaml lists no measured fraction"
    for family, values in measured.items():
        provenance = committed.provenance[family]
        for name, value in values.items():
            assert getattr(committed.entries[family], name) == pytest.approx(value, rel=1e-6), (family, name)
            assert name in provenance["measured"] and name not in provenance["fitted"], (family, name)
