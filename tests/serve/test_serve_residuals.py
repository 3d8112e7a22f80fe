"""The serving model's held-out error bands: file, kinds kept apart, intervals on estimates and fleet sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from rainier.api.serve import run_serve_estimate
from rainier.calibrate.score import CaseResult
from rainier.perf.residuals import ALL_KEY
from rainier.serve.residuals import (
    committed_serve_residuals,
    devices_interval,
    load_serve_residuals,
    residual_document,
    write_serve_residuals,
)


def _row(case: str, metric: str, measured: float, predicted: float) -> CaseResult:
    return CaseResult(
        id=f"{case}:{metric}",
        group="g",
        trust="A",
        metric=metric,
        measured=measured,
        predicted=predicted,
        error_pct=1.0,
    )


def test_kinds_keep_tails_and_in_flight_cases_apart(tmp_path: Path) -> None:
    rows = (
        _row("a", "ttft_ms", 2.0, 1.0),
        _row("a", "ttft_p99_ms", 3.0, 1.0),
        _row("b", "tpot_ms", 1.0, 2.0),
        _row("b", "output_tokens_per_s", 5.0, 4.0),
        _row("zz", "tpot_ms", 1.0, 1.0),  # a case without a family is left out
    )
    family = {"a": "nvidia-gpu", "b": "trainium"}
    doc = residual_document(rows, family, "cmd", frozenset({"b"}))
    assert doc["families"]["nvidia-gpu"] == {"ttft": [2.0], "ttft_p99": [3.0]}
    assert doc["families"]["trainium"] == {"throughput_in_flight": [1.25], "tpot_in_flight": [0.5]}
    assert doc["fit"]["held_out_targets"] == 4
    path = write_serve_residuals(rows, family, tmp_path / "serve-residuals.yaml", "cmd")
    loaded = load_serve_residuals(path)
    assert loaded is not None
    band = loaded.band("nvidia-gpu", "ttft")  # one ratio: below MIN_CASES, so all families' (the same one)
    assert band is not None and band.low == pytest.approx(2.0)


def test_committed_bands_cover_static_and_in_flight_cases() -> None:
    residuals = committed_serve_residuals()
    assert residuals is not None
    kinds = residuals.bands[ALL_KEY]
    assert {"ttft", "tpot", "throughput", "ttft_in_flight", "tpot_p99_in_flight"} <= set(kinds)
    for family in ("nvidia-gpu", "trainium"):
        band = residuals.band(family, "throughput")
        assert band is not None and band.low < 1.0 < band.high


def test_serve_estimate_carries_intervals() -> None:
    est = run_serve_estimate(model="llama-3-8b", accelerator="h100-sxm", count=1, batch=8).to_dict()
    for key in ("ttft_ms", "tpot_ms", "e2e_ms", "output_tokens_per_s"):
        assert 0 < est[f"{key}_low"] <= est[f"{key}_high"]
    # each bound is the estimate times a held-out ratio of its kind
    residuals = committed_serve_residuals()
    assert residuals is not None
    band = residuals.band("nvidia-gpu", "tpot")
    assert band is not None and est["tpot_ms_low"] == pytest.approx(est["tpot_ms"] * band.low)


def test_fleet_size_interval_moves_whole_replicas() -> None:
    interval = devices_interval(10, 4, "trainium")
    assert interval is not None
    low, high = interval
    assert low % 4 == 0 and high % 4 == 0 and low <= 40 <= high


def test_weights_that_do_not_fit_are_blamed_not_the_request() -> None:
    from rainier.errors import InputError

    with pytest.raises(InputError, match=r"tp=1 is invalid: a layout whose weights fit: llama-3-70b's take"):
        run_serve_estimate(model="llama-3-70b", accelerator="h100-sxm", count=1)
