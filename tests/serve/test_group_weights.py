"""The serving fit: every published source weighs alike (serve.fitting.group_weights); calibrate says how far it is."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rainier.calibrate.cases import Trust
from rainier.serve.fitting import group_weights


@dataclass(frozen=True)
class _Case:
    group: str
    trust: Trust = Trust.A


@dataclass(frozen=True)
class _Item:
    """What group_weights reads of a prepared case: its group, trust and targets, and whether it steers."""

    case: _Case
    targets: tuple[tuple[str, float], ...]
    fitted: bool = True
    linearised: bool = False
    consistent: bool = True


def _items(sizes: dict[str, int], **kw: Any) -> list[Any]:
    return [cast(Any, _Item(_Case(group), (("tpot_ms", 1.0),) * n, **kw)) for group, n in sizes.items()]


def test_a_large_source_weighs_as_much_as_a_small_one() -> None:
    weights = group_weights(_items({"big table": 96, "one tutorial": 6}))
    total = {g: n * weights[g] ** 2 for g, n in {"big table": 96, "one tutorial": 6}.items()}
    assert total["big table"] == pytest.approx(total["one tutorial"])
    assert weights["one tutorial"] / weights["big table"] == pytest.approx(4.0)  # sqrt(96 / 6)


def test_sources_that_steer_nothing_are_not_counted() -> None:
    steering = _items({"a": 4, "b": 16})
    scored_only = [cast(Any, _Item(_Case("c"), (("ttft_ms", 1.0),) * 40, fitted=False))]
    untrusted = [cast(Any, _Item(_Case("d", Trust.C), (("ttft_ms", 1.0),) * 40))]
    assert group_weights(steering + scored_only + untrusted) == group_weights(steering)
    assert group_weights(scored_only) == {}


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.integers(1, 200), min_size=1, max_size=12))
def test_weights_keep_the_total_and_equalise_the_groups(sizes: dict[str, int]) -> None:
    weights = group_weights(_items(sizes))
    per_group = [n * weights[g] ** 2 for g, n in sizes.items()]
    assert all(math.isclose(w, per_group[0]) for w in per_group)
    # the squared weights sum to the number of targets: the fit's scale against its priors is unchanged
    assert sum(per_group) == pytest.approx(sum(sizes.values()))


def test_the_calibrate_tables_list_each_sources_weight() -> None:
    from rainier.report.serve_view import serve_fit_tables

    stats = ("median", "mean", "p90", "max")
    summary: dict[str, float] = {"count": 2, "skipped": 0, **{f"{s}_abs_error_pct": 5.0 for s in stats}}
    result = {
        "entries": {"default": {"compute": 0.5}},
        "group_weights": {"big table": 0.5, "one tutorial": 2.0},
        "before": summary,
        "after": {"summary": summary},
        "written": None,
    }
    titles = [str(t.title) for t in serve_fit_tables(result)]
    assert any("weight per source" in t for t in titles)
    table = next(t for t in serve_fit_tables(result) if "weight per source" in str(t.title))
    assert table.row_count == 2


def test_calibrate_reports_its_progress_fold_by_fold(tmp_path: Path) -> None:
    """A serving calibration with leave-one-group-out (minutes on the four files) says what it is doing."""
    from rainier.serve.fitting import calibrate_inference_file

    said: list[str] = []
    cases = Path(__file__).resolve().parents[2] / "validation" / "inference-trn2.yaml"
    calibrate_inference_file(cases, dry_run=True, cross_validate=True, score_prior=False, progress=said.append)
    folds = [m for m in said if "fold" in m]
    assert said[0] == "preparing the inference cases" and any(m.startswith("fitting ") for m in said)
    assert len(folds) >= 2 and folds[0].startswith("leave-one-group-out: fold 1/")
    assert folds[-1].startswith(f"leave-one-group-out: fold {len(folds)}/{len(folds)}, holding out ")
