"""Error statistics of a validation run: median, mean and 90th percentile of |error|, overall and by slice.

Trust tiers are reported separately and A+B together (validation/README.md, "Trust tiers": C cases are sanity
checks only). The Korthikanti et al. 2022 group (Table 5, measured iteration times with every degree published)
gets its own mean |error|, the number most step-time models quote (e.g. Calculon, Isaev et al. 2023).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

KORTHIKANTI_GROUP = "Korthikanti2022_Table5"
P90 = 90.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorStats:
    """|error| statistics (percent) of a set of predicted cases, with the number skipped beside them."""

    count: int
    skipped: int
    median_abs_error_pct: float | None
    mean_abs_error_pct: float | None
    p90_abs_error_pct: float | None
    max_abs_error_pct: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "skipped": self.skipped,
            "median_abs_error_pct": self.median_abs_error_pct,
            "mean_abs_error_pct": self.mean_abs_error_pct,
            "p90_abs_error_pct": self.p90_abs_error_pct,
            "max_abs_error_pct": self.max_abs_error_pct,
        }


def error_stats(errors_pct: Iterable[float], *, skipped: int = 0) -> ErrorStats:
    """Statistics of signed percent errors (taken in absolute value); ``None`` where there are none."""
    values = np.abs(np.asarray(list(errors_pct), dtype=float))
    if values.size == 0:
        return ErrorStats(
            count=0,
            skipped=skipped,
            median_abs_error_pct=None,
            mean_abs_error_pct=None,
            p90_abs_error_pct=None,
            max_abs_error_pct=None,
        )
    return ErrorStats(
        count=int(values.size),
        skipped=skipped,
        median_abs_error_pct=float(np.median(values)),
        mean_abs_error_pct=float(np.mean(values)),
        p90_abs_error_pct=float(np.percentile(values, P90)),  # linear interpolation between order statistics
        max_abs_error_pct=float(np.max(values)),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Scored:
    """The part of a result row the statistics need."""

    group: str
    trust: str
    error_pct: float | None  # None when the case was skipped


def summarize(rows: Sequence[Scored]) -> dict[str, Any]:
    """Overall, per-group and per-trust-tier statistics, and the Korthikanti Table 5 mean |error|."""

    def stats(selected: list[Scored]) -> dict[str, Any]:
        errors = [r.error_pct for r in selected if r.error_pct is not None]
        return error_stats(errors, skipped=sum(r.error_pct is None for r in selected)).to_dict()

    overall = stats(list(rows))
    groups = dict.fromkeys(r.group for r in rows)
    by_group = {g: stats([r for r in rows if r.group == g]) for g in groups}
    by_trust = {tier: stats([r for r in rows if r.trust == tier]) for tier in ("A", "B", "C")}
    by_trust["A+B"] = stats([r for r in rows if r.trust in ("A", "B")])
    korthikanti = by_group.get(KORTHIKANTI_GROUP, {}).get("mean_abs_error_pct")
    return {
        "count": len(rows),
        "predicted": overall["count"],
        "skipped": overall["skipped"],
        "median_abs_error_pct": overall["median_abs_error_pct"],
        "mean_abs_error_pct": overall["mean_abs_error_pct"],
        "p90_abs_error_pct": overall["p90_abs_error_pct"],
        "max_abs_error_pct": overall["max_abs_error_pct"],
        "korthikanti2022_table5_mean_abs_error_pct": korthikanti,
        "by_group": by_group,
        "by_trust": by_trust,
    }
