"""The serving model against the published inference runs: accuracy bounds and a reproducible fit."""

from __future__ import annotations

from pathlib import Path

import pytest

from rainier.serve.efficiency import load_serve_efficiency
from rainier.serve.validate import calibrate_inference_file, validate_inference_file

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "validation" / "inference.yaml"


def test_every_inference_case_is_predicted_within_the_targets() -> None:
    report = validate_inference_file(CASES)
    summary = report.summary
    assert summary["skipped"] == 0 and summary["predicted"] >= 65  # every case, each of its targets
    assert summary["median_abs_error_pct"] <= 12.0
    assert summary["p90_abs_error_pct"] <= 30.0


def test_committed_fit_is_what_calibrate_produces(tmp_path: Path) -> None:
    out = tmp_path / "serve-efficiency.yaml"
    result = calibrate_inference_file(CASES, out=out)
    fresh = load_serve_efficiency(out).entries
    committed = load_serve_efficiency().entries
    assert fresh.keys() == committed.keys()
    for key, eff in committed.items():
        for name, value in eff.to_dict().items():
            assert getattr(fresh[key], name) == pytest.approx(value, rel=1e-3, abs=1e-9), (key, name)
    assert result["after"]["summary"]["median_abs_error_pct"] <= 12.0


def test_leave_one_group_out_stays_useful() -> None:
    result = calibrate_inference_file(CASES, dry_run=True, cross_validate=True)
    assert result["written"] is None
    assert result["leave_one_group_out"]["median_abs_error_pct"] <= 15.0
