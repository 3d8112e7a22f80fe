"""Scaling questions: the best plan at each cluster size, and the Pareto front of time against cost or energy.

``scale`` runs one search per device count (strong scaling at a fixed global batch, or weak scaling at a fixed
batch per device) and keeps each size's best plan. Across sizes, faster is dearer: more devices finish a token
sooner but at lower efficiency, so each spends more device-hours (dollars, joules) per token. ``pareto_front``
keeps the sizes no other size beats on both axes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rainier.errors import InputError, field_error
from rainier.hardware import cluster_of, get_accelerator
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.search.engine import search
from rainier.search.result import Objective, RankedPlan
from rainier.search.space import SearchSpace
from rainier.workload.shape import TransformerShape

_SUFFIX = {"": 1, "k": 1_000, "K": 1_024, "m": 1_000_000, "M": 1_048_576}
MAX_SIZES = 64


def parse_count(text: str, field: str = "counts") -> int:
    """``4096``, ``4k`` (4,000), ``4K`` (4,096), ``1m`` (10^6) or ``1M`` (2^20)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not match:
        raise field_error(field, text, "a device count like 4096, 4k (4,000), 4K (4,096), 1m (10^6) or 1M (2^20)")
    value = float(match.group(1)) * _SUFFIX[match.group(2)]
    if value < 1 or value != int(value):
        raise field_error(field, text, "a positive whole number of devices")
    return int(value)


def parse_counts(text: str, field: str = "counts") -> list[int]:
    """A list (``1k,4k,1M``) or a doubling range (``1024..1048576``) of device counts."""
    if ".." in text:
        low_text, _, high_text = text.partition("..")
        low, high = parse_count(low_text, field), parse_count(high_text, field)
        if high < low:
            raise field_error(field, text, "a range LOW..HIGH with LOW <= HIGH")
        counts = [low * 2**i for i in range(int(math.log2(high / low)) + 1)]
    else:
        counts = [parse_count(part, field) for part in text.split(",") if part.strip()]
    if not counts:
        raise field_error(field, text, "at least one device count")
    if len(counts) > MAX_SIZES:
        raise field_error(field, text, f"at most {MAX_SIZES} sizes")
    return sorted(set(counts))


@dataclass(frozen=True, slots=True, kw_only=True)
class SizePoint:
    """The best plan at one cluster size, or why there is none."""

    num_devices: int
    gbs: int
    best: RankedPlan | None
    error: str = ""
    evaluated: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"num_devices": self.num_devices, "gbs": self.gbs, "evaluated": self.evaluated}
        if self.best is None:
            out["error"] = self.error
            return out
        est = self.best.estimate
        out.update(
            {
                "plan": est.plan.to_dict(),
                "step_time_s": est.step_time_s,
                "tokens_per_s": est.tokens_per_s,
                "tokens_per_s_per_device": est.tokens_per_s_per_device,
                "mfu": est.mfu,
                "seconds_per_million_tokens": self.best.seconds_per_token * 1e6,
                "dollars_per_million_tokens": None
                if self.best.dollars_per_token is None
                else self.best.dollars_per_token * 1e6,
                "joules_per_token": self.best.joules_per_token,
            }
        )
        return out


def scale(
    shape: TransformerShape,
    accelerator: str,
    counts: Sequence[int],
    *,
    gbs: int | None = None,
    gbs_per_device: float | None = None,
    seq_len: int | None = None,
    objective: Objective = Objective.TIME,
    space: SearchSpace | None = None,
    efficiency: Efficiency | EfficiencyTable | None = None,
    price: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[SizePoint]:
    """Best plan at each device count: fixed ``gbs`` (strong scaling) or ``gbs_per_device`` (weak scaling)."""
    if (gbs is None) == (gbs_per_device is None):
        raise InputError("give exactly one of --gbs (strong scaling) or --gbs-per-device (weak scaling)")
    if gbs_per_device is not None and not gbs_per_device > 0:
        raise field_error("gbs-per-device", gbs_per_device, "a positive number of sequences per device")
    get_accelerator(accelerator)  # an unknown name is bad input for every size, not a row's note
    points = []
    for done, count in enumerate(counts):
        batch = gbs if gbs is not None else max(1, round(count * (gbs_per_device or 0)))
        try:
            result = search(
                shape,
                cluster_of(accelerator, count),
                gbs=batch,
                seq_len=seq_len,
                objective=objective,
                top_k=1,
                space=space,
                efficiency=efficiency,
                price=price,
            )
            points.append(SizePoint(num_devices=count, gbs=batch, best=result.top[0], evaluated=result.evaluated))
        except InputError as exc:
            points.append(SizePoint(num_devices=count, gbs=batch, best=None, error=str(exc)))
        if progress is not None:
            progress(done + 1, len(counts))
    if points and all(point.best is None for point in points):  # nothing to scale: bad input, as in search
        raise InputError(f"no valid plan at any size; at {points[0].num_devices:,} devices: {points[0].error}")
    return points


def _axis_value(point: SizePoint, axis: str) -> float | None:
    best = point.best
    if best is None:
        return None
    if axis == "time":
        return best.seconds_per_token
    if axis == "cost":
        return best.dollars_per_token
    return best.joules_per_token


def parse_pareto(text: str) -> tuple[str, str]:
    """``time,cost`` or ``time,energy``."""
    parts = tuple(p.strip().lower() for p in text.split(","))
    if parts not in (("time", "cost"), ("time", "energy")):
        raise field_error("pareto", text, "time,cost or time,energy")
    return parts[0], parts[1]


def pareto_front(points: Sequence[SizePoint], axes: tuple[str, str]) -> list[int]:
    """Indices of the points no other point beats on both axes (both minimised), sorted by the first axis."""
    scored = [(i, _axis_value(p, axes[0]), _axis_value(p, axes[1])) for i, p in enumerate(points)]
    usable = [(i, x, y) for i, x, y in scored if x is not None and y is not None]
    if not usable and any(p.best is not None for p in points):
        what = "price per device-hour (pass --price)" if axes[1] == "cost" else "power per device"
        raise InputError(f"pareto={axes[0]},{axes[1]}: the catalog has no {what} for this accelerator")
    front = []
    for i, x, y in usable:
        dominated = any(ox <= x and oy <= y and (ox < x or oy < y) for _, ox, oy in usable)
        if not dominated:
            front.append((x, i))
    return [i for _, i in sorted(front)]
