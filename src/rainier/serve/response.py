"""How a simulated serving case's metrics respond to the efficiencies: a local model that lets a fit use it.

An in-flight batching case (``serve.inflight``) is scored by simulating its benchmark, which takes a tenth of a
second to a few seconds; a least-squares fit evaluates its residuals hundreds of times. So the fit does not
simulate: it uses each case's *response*, the metrics as a first-order expansion around an expansion point
``x0`` in the efficiencies,

    log m(x) = log m(x0) + sum_k s_k (c_k(x) - c_k(x0)),

where the coordinate ``c_k`` is ``log x_k`` for the four fractions of peak (a time spent at a fraction ``f`` of a
rate scales as ``1/f``, so a metric bound by one part is a power of it) and ``x_k / scale_k`` for the two fixed
times (collective latency, iteration overhead: they add, and may be zero). The slopes ``s_k`` are one-sided
finite differences of the simulation itself, ``1 + len(PARAMETERS)`` runs per case and point (a step of
``FRACTION_STEP`` down in each fraction, one scale unit up in each time). The expansion is exact at ``x0`` and,
the simulator's schedule being a step function of the iteration times, good to a few percent within the
parameters' usual spread around it (``tests/serve/test_response.py``); the fit expands each case at its parent
entry's values, and scoring always simulates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rainier.serve.efficiency import PARAMETERS, ServeEfficiency

FRACTIONS = ("compute", "memory", "kv_memory", "comm")  # fractions of a peak rate: log coordinates
# added times: linear coordinates, in these units
TIME_SCALES = {"collective_latency_s": 1e-5, "iteration_overhead_s": 1e-3, "sequence_overhead_s": 1e-5}
FRACTION_STEP = 0.9  # finite-difference step of a fraction (a 10% lower efficiency; always inside (0, 1])


def coordinates(eff: ServeEfficiency) -> tuple[float, ...]:
    """The expansion's coordinates of ``eff``, in ``PARAMETERS`` order."""
    return tuple(
        math.log(getattr(eff, name)) if name in FRACTIONS else getattr(eff, name) / TIME_SCALES[name]
        for name in PARAMETERS
    )


def _stepped(eff: ServeEfficiency, name: str) -> ServeEfficiency:
    if name in FRACTIONS:
        return eff.with_(**{name: getattr(eff, name) * FRACTION_STEP})
    return eff.with_(**{name: getattr(eff, name) + TIME_SCALES[name]})


@dataclass(frozen=True, slots=True)
class Response:
    """The metrics of one case near ``at``: ``base`` there and, per metric, the slopes of its log along each
    coordinate of :func:`coordinates`."""

    at: tuple[float, ...]
    base: Mapping[str, float]
    slopes: Mapping[str, tuple[float, ...]]

    def predict(self, eff: ServeEfficiency) -> dict[str, float]:
        """The metrics under ``eff`` by the first-order expansion around ``at``."""
        delta = [c - c0 for c, c0 in zip(coordinates(eff), self.at, strict=True)]
        return {
            metric: value * math.exp(sum(s * d for s, d in zip(self.slopes[metric], delta, strict=True)))
            for metric, value in self.base.items()
        }


def linearise(
    simulate: Callable[[ServeEfficiency], Mapping[str, float]], at: ServeEfficiency, metrics: tuple[str, ...]
) -> Response:
    """The response of ``metrics`` around ``at``: ``simulate`` run at ``at`` and once per parameter stepped."""
    base_run = simulate(at)
    base = {m: base_run[m] for m in metrics}
    origin = coordinates(at)
    columns: list[dict[str, float]] = []
    for i, name in enumerate(PARAMETERS):
        moved = _stepped(at, name)
        run = simulate(moved)
        step = coordinates(moved)[i] - origin[i]
        columns.append({m: math.log(run[m] / base[m]) / step if base[m] > 0 < run[m] else 0.0 for m in metrics})
    slopes = {m: tuple(column[m] for column in columns) for m in metrics}
    return Response(at=origin, base=base, slopes=slopes)
