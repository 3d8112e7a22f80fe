"""Fitting the serving model's efficiencies on published inference runs, and ``rainier calibrate`` for them.

``fit_serving`` fits the :class:`ServeEfficiency` numbers as a hierarchy -- ``default`` on every case, each
vendor family (nvidia-gpu, trainium) on its cases pulled towards the default, each generation (the training fit's
efficiency family: nvidia-hopper, nvidia-blackwell) towards its vendor's entry, each accelerator towards its
generation's, a vendor family from ``MIN_CASES_PER_VENDOR`` fitted cases and every entry below it from
``MIN_CASES_PER_ACCELERATOR`` -- by least
squares on log errors with physical bounds and a soft-L1 loss (a few Neuron long-context rows contradict their own
TTFT and TPOT: 8,192 output tokens at the published median TPOT would take half the published time; a robust loss
keeps them from pulling every other case) with every source weighed alike (``group_weights``), except the
``GLOBAL_PARAMETERS``, fitted once on every case between two
fits of the hierarchy; ``leave_one_group_out`` refits without each source in turn and predicts it.

Static cases enter the fit by their own predictions (``serve.estimate``, microseconds each). In-flight cases
under an offline or closed-loop load (``Prepared.linearised``) enter by their simulated response
(``serve.response``): each family and accelerator level expands them around its parent's values, so a fit costs
``1 + len(PARAMETERS)`` simulations per in-flight case and expansion, not one per residual evaluation. An
expansion serves every level and round whose point lies within ``EXPANSION_REACH`` of it (a level whose parent
sits near the level above reuses that level's expansions), and a fit that moves further from it expands again
around the result. They steer the
family and accelerator entries, not ``default``: the default is what a family without cases of its own gets, and
the in-flight cases all run NVIDIA engines, so fitting them there would make it an NVIDIA entry (a Trainium1
group held out, predicted from the default through the Trainium2 cases, went from 16% to 24% that way).
Leave-one-group-out reuses the expansions of the full fit for its folds (the expansion point, not the data, comes
from the full fit) and simulates the held-out cases to score them.
"""

from __future__ import annotations

import datetime
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.optimize import least_squares

from rainier import __version__
from rainier.calibrate.cases import Trust
from rainier.calibrate.fit import TRUST_WEIGHT, Progress
from rainier.calibrate.score import CaseResult, ValidationReport
from rainier.calibrate.summary import summarize
from rainier.catalog.loader import catalog_file
from rainier.errors import InputError
from rainier.serve.efficiency import (
    DEFAULT_KEY,
    PARAMETERS,
    SERVE_EFFICIENCY_FILE,
    ServeEfficiency,
    ServeEfficiencyTable,
    committed_serve_efficiency,
    load_serve_efficiency,
)
from rainier.serve.response import Response, coordinates, linearise
from rainier.serve.validate import Paths, Prepared, _lookup, _prepared, load_inference_cases, predict_metrics, score

MIN_CASES_PER_ACCELERATOR = 5
# A vendor family (the first level: its own chips and software stack, CUDA engines or Neuron) gets an entry from
# fewer fitted cases than a generation or an accelerator inside it: without one its chips fall back on the
# cross-vendor default, three quarters NVIDIA cases, a worse prior for another vendor's chips than a few of its own
# (pulled towards the default by PRIOR_WEIGHT, so a small family cannot stray far). Chosen with the Trainium1
# group held out in view: Trainium2 has three fitted cases, and the training fit's 4 (its MIN_CASES_PER_FAMILY)
# would leave Trainium1 predicted from the default (22% median) instead of from Neuron's own cases (13.6%).
MIN_CASES_PER_VENDOR = 3
# Residual weight per trust tier (validation/README.md): A and B as the training fit weighs them; C rows ("sanity
# checks only": community ports, a statistic over 10 requests) are scored but do not steer the fit.
FIT_WEIGHT = {Trust.A: TRUST_WEIGHT[Trust.A], Trust.B: TRUST_WEIGHT[Trust.B], Trust.C: 0.0}
PRIOR_WEIGHT = 0.3  # pull of a family (accelerator) entry towards its parent, per parameter, in log units
_BOUNDS = {  # name: (lower, upper, scale)
    "compute": (0.05, 1.0, 0.1),
    "memory": (0.05, 1.0, 0.1),
    "kv_memory": (0.05, 1.0, 0.1),
    "comm": (0.02, 1.0, 0.1),
    # NCCL's base latency of one all-reduce is 4-7 us on NVLink (src/graph/tuning.cc baseLat, LL/LL128/Simple);
    # 100 us bounds a software collective that synchronises dozens of ranks
    "collective_latency_s": (1e-6, 1e-4, 1e-5),
    "iteration_overhead_s": (0.0, 0.2, 1e-3),
    # host work per running request per step; 100 us per request would be 0.1 s a step for a batch of 1,000
    "sequence_overhead_s": (0.0, 1e-4, 1e-5),
}
LOWER = {name: b[0] for name, b in _BOUNDS.items()}
UPPER = {name: b[1] for name, b in _BOUNDS.items()}
SCALE = {name: b[2] for name, b in _BOUNDS.items()}
# Parameters fitted once, on every steering case, instead of per entry: the engines' host work per running request
# shows only where a small model runs thousands of requests at once (MLPerf's Llama 3.1 8B, large in-flight
# batches), a handful of cases per family at most, and not at all in the small static batches that fit
# ``default``; as an entry's own parameter it would follow that entry's few cases, or its parent's nothing. The
# hierarchy is fitted with them held, they are fitted on all cases under the hierarchy's entries, and the hierarchy
# is fitted again with the result (``GLOBAL_ROUNDS`` times).
GLOBAL_PARAMETERS: tuple[str, ...] = ("sequence_overhead_s",)
GLOBAL_ROUNDS = 1


def _vector(eff: ServeEfficiency, names: Sequence[str] = PARAMETERS) -> np.ndarray:
    return np.array([getattr(eff, name) / SCALE[name] for name in names])


def _efficiency(
    x: np.ndarray, names: Sequence[str] = PARAMETERS, held: Mapping[str, float] | None = None
) -> ServeEfficiency:
    return ServeEfficiency(**{name: float(x[i]) * SCALE[name] for i, name in enumerate(names)}, **(held or {}))


Responses = Mapping[str, Response]
# The hierarchy's levels below ``default``: the vendor's family, the generation (the accelerator's efficiency family,
# as the training fit keys it: nvidia-ampere, -hopper, -blackwell), the accelerator.
LEVELS: tuple[Callable[[Prepared], str], ...] = (
    lambda item: item.family,
    lambda item: item.generation,
    lambda item: item.accelerator,
)
# An expansion is used for points within this of where it was made (largest change of a coordinate of
# ``serve.response.coordinates``: log of a fraction, scale units of a time); a fit that moves an entry further
# from its in-flight cases' expansions expands them again there and refits, at most ``EXPANSION_ROUNDS`` times: a
# fraction that triples (comm 0.32 -> 1.0) leaves a first-order expansion 16% off on MLPerf Offline throughput,
# one within 20% about 1%.
EXPANSION_REACH, EXPANSION_ROUNDS = math.log(1.2), 3


def _steers(item: Prepared) -> bool:
    """Whether ``item`` enters a fit (its own predictions or its response) with a weight above zero: a case whose
    published numbers disagree with each other (``validate._self_consistency``) is scored only."""
    return (item.fitted or item.linearised) and FIT_WEIGHT[item.case.trust] > 0 and item.consistent


def _reach(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """The largest change of a coordinate between two expansion points (``serve.response.coordinates``)."""
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def _responses(items: Sequence[Prepared], at: ServeEfficiency, known: dict[str, list[Response]]) -> dict[str, Response]:
    """The responses of ``items``' in-flight cases near ``at``: an expansion already made for a case (``known``
    keeps them across the levels and rounds of one fit) where one lies within ``EXPANSION_REACH`` of ``at``, the
    nearest, else a new one around ``at``."""
    out: dict[str, Response] = {}
    point = coordinates(at)
    for item in items:
        if not (item.linearised and _steers(item)):
            continue
        made = known.setdefault(item.case.id, [])
        near = min(made, key=lambda r: _reach(r.at, point), default=None)
        if near is None or _reach(near.at, point) > EXPANSION_REACH:
            metrics = tuple(m for m, _ in item.targets)
            near = linearise(functools.partial(predict_metrics, item), at, metrics)
            made.append(near)
        out[item.case.id] = near
    return out


def group_weights(items: Sequence[Prepared]) -> dict[str, float]:
    """A residual weight per group (one published source) that gives every group of steering cases the same total
    squared weight, sqrt(mean targets per group / the group's targets): a fit that predicts sources it has not
    seen is the product (leave-one-group-out), and a source's many rows are its one benchmark setup, engine and
    software release measured many times, not that many independent looks at the chips. Weighed by row, the
    Trainium1 table's 96 steering rows from one CSV of one release would set the Trainium family alone, and NIM's
    27-point sweep would outweigh MLPerf v4.1's five Offline rows (its Server rows are scored, not fitted) more
    than five to one. Groups without steering cases get no entry and weigh nothing."""
    counts: dict[str, int] = {}
    for item in items:
        if _steers(item):
            counts[item.case.group] = counts.get(item.case.group, 0) + len(item.targets)
    if not counts:
        return {}
    mean = sum(counts.values()) / len(counts)
    return {group: math.sqrt(mean / n) for group, n in counts.items()}


def _log_errors(item: Prepared, predicted: Mapping[str, float], weights: Mapping[str, float]) -> list[float]:
    weight = FIT_WEIGHT[item.case.trust] * weights.get(item.case.group, 1.0)
    return [weight * math.log(predicted[m] / v) for m, v in item.targets]


def _least_squares(
    residuals: Callable[[np.ndarray], np.ndarray], start: np.ndarray, names: Sequence[str]
) -> np.ndarray:
    """The robust least-squares fit every entry (and the global parameters) shares: bounds in scale units, a
    soft-L1 loss (the module docstring)."""
    lower = np.array([LOWER[n] / SCALE[n] for n in names])
    upper = np.array([UPPER[n] / SCALE[n] for n in names])
    start = np.clip(start, lower + 1e-9, upper)
    result = least_squares(
        lambda x: residuals(np.maximum(x, lower + 1e-12)), start, bounds=(lower, upper), method="trf",
        x_scale="jac", max_nfev=400, loss="soft_l1", f_scale=0.3,
    )  # fmt: skip
    fitted: np.ndarray = result.x
    return fitted


def _fit_entry(
    items: Sequence[Prepared],
    parent: ServeEfficiency | None,
    responses: Responses,
    held: Mapping[str, float],
    weights: Mapping[str, float],
) -> ServeEfficiency:
    """Least squares on log errors of ``items``' targets (each group's weighed by ``weights``), pulled towards
    ``parent`` when given; the ``held`` parameters (``GLOBAL_PARAMETERS``) keep their values."""
    names = tuple(n for n in PARAMETERS if n not in held)
    anchor = _vector(parent, names) if parent is not None else None
    used = [i for i in items if _steers(i) and (i.fitted or i.case.id in responses)]

    def residuals(x: np.ndarray) -> np.ndarray:
        eff = _efficiency(x, names, held)
        out: list[float] = []
        for item in used:
            predicted = predict_metrics(item, eff) if item.fitted else responses[item.case.id].predict(eff)
            out.extend(_log_errors(item, predicted, weights))
        if anchor is not None:
            out.extend(PRIOR_WEIGHT * (np.log(x + 1e-2) - np.log(anchor + 1e-2)))
        return np.array(out)

    return _efficiency(_least_squares(residuals, _vector(parent or ServeEfficiency(), names), names), names, held)


def _fit_global(
    items: Sequence[Prepared],
    table: ServeEfficiencyTable,
    responses: Responses,
    held: Mapping[str, float],
    weights: Mapping[str, float],
) -> dict[str, float]:
    """The ``GLOBAL_PARAMETERS`` on every steering case, each under its own entry of ``table``."""
    names = tuple(held)
    lookup = _lookup(table)
    used = [(i, lookup(i)) for i in items if _steers(i) and (i.fitted or i.case.id in responses)]

    def residuals(x: np.ndarray) -> np.ndarray:
        values = {name: float(x[k]) * SCALE[name] for k, name in enumerate(names)}
        out: list[float] = []
        for item, entry in used:
            eff = entry.with_(**values)
            predicted = predict_metrics(item, eff) if item.fitted else responses[item.case.id].predict(eff)
            out.extend(_log_errors(item, predicted, weights))
        return np.array(out)

    x = _least_squares(residuals, np.array([held[n] / SCALE[n] for n in names]), names)
    return {name: float(x[k]) * SCALE[name] for k, name in enumerate(names)}


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeFit:
    """A fitted table, its report on the cases it used, the cases per entry, and the in-flight cases' responses
    around the values their deepest level started from (what leave-one-group-out reuses)."""

    table: ServeEfficiencyTable
    before: ValidationReport | None  # None where the priors' scores were not asked for
    after: ValidationReport
    cases_per_entry: dict[str, int]
    responses: Responses


def fit_table(
    items: Sequence[Prepared], *, responses: Responses | None = None
) -> tuple[ServeEfficiencyTable, dict[str, int], dict[str, Response]]:
    """The hierarchical fit of the module docstring on ``items``: the table, cases per entry, and the responses used
    at each in-flight case's deepest level. Given ``responses``, every level uses those instead of expanding anew."""
    if not items:
        raise InputError("no inference cases to fit")
    known: dict[str, list[Response]] = {}
    deepest: dict[str, Response] = {}
    held = {name: getattr(ServeEfficiency(), name) for name in GLOBAL_PARAMETERS}
    weights = group_weights(items)

    def fitted(mine: Sequence[Prepared], parent: ServeEfficiency) -> ServeEfficiency:
        if responses is not None:
            return _fit_entry(mine, parent, responses, held, weights)
        at = parent
        for _ in range(EXPANSION_ROUNDS):  # re-expand where the fit moved far from the expansion points
            local = _responses(mine, at, known)
            deepest.update(local)
            entry = _fit_entry(mine, parent, local, held, weights)
            point = coordinates(entry)
            if all(_reach(r.at, point) <= EXPANSION_REACH for r in local.values()):
                break
            at = entry
        return entry

    def hierarchy() -> tuple[dict[str, ServeEfficiency], dict[str, int]]:
        # static cases only: see the module docstring
        entries = {DEFAULT_KEY: _fit_entry(items, None, {}, held, weights)}
        counts = {DEFAULT_KEY: len(items)}

        def below(mine: Sequence[Prepared], parent: str, depth: int) -> None:
            """Fit the entries under ``parent`` at ``LEVELS[depth]`` and below: a key with enough cases of its own,
            fewer than its parent's, pulled towards the parent."""
            if depth == len(LEVELS):
                return
            for key in sorted({LEVELS[depth](i) for i in mine}):
                own = [i for i in mine if LEVELS[depth](i) == key]
                if key == parent or (len(own) == len(mine) and parent != DEFAULT_KEY):
                    below(own, parent, depth + 1)  # the same cases as the parent's: nothing to fit at this level
                elif sum(map(_steers, own)) >= (MIN_CASES_PER_VENDOR if depth == 0 else MIN_CASES_PER_ACCELERATOR):
                    entries[key] = fitted(own, entries[parent])
                    counts[key] = len(own)
                    below(own, key, depth + 1)

        below(items, DEFAULT_KEY, 0)
        return entries, counts

    entries, counts = hierarchy()
    for _ in range(GLOBAL_ROUNDS):  # the global parameters on every case, then the hierarchy under them
        table = ServeEfficiencyTable(entries=entries, provenance={})
        held = _fit_global(items, table, responses if responses is not None else deepest, held, weights)
        entries, counts = hierarchy()
    return ServeEfficiencyTable(entries=entries, provenance={}), counts, deepest


def fit_serving(items: Sequence[Prepared], *, score_prior: bool = True) -> ServeFit:
    """The hierarchical fit, with every case scored before (priors; ``score_prior``) and after it."""
    table, counts, responses = fit_table(items)
    before = score(items, lambda _item: ServeEfficiency()) if score_prior else None
    after = score(items, _lookup(table))
    return ServeFit(table=table, before=before, after=after, cases_per_entry=counts, responses=responses)


def leave_one_group_out(
    items: Sequence[Prepared], responses: Responses | None = None, *, progress: Progress | None = None
) -> ValidationReport:
    """Each group predicted by a fit on the other groups, its in-flight cases entering through ``responses`` (the
    full fit's, by default expanded anew); folds with the same fitted cases share one fit. ``progress`` hears of
    each fold as it starts."""
    if responses is None:
        responses = fit_table(items)[2]
    rows: list[CaseResult] = []
    fits: dict[frozenset[str], ServeEfficiencyTable] = {}
    groups = tuple(dict.fromkeys(i.case.group for i in items))
    for number, group in enumerate(groups, start=1):
        if progress is not None:
            progress(f"leave-one-group-out: fold {number}/{len(groups)}, holding out {group}")
        train = [i for i in items if i.case.group != group]
        held = [i for i in items if i.case.group == group]
        key = frozenset(i.case.id for i in train if _steers(i))
        if key not in fits:
            fits[key] = fit_table(train, responses=responses)[0]
        rows.extend(score(held, _lookup(fits[key])).rows)
    return ValidationReport(rows=tuple(rows), summary=summarize([r.scored() for r in rows]))


def calibrate_inference_file(
    path: Paths,
    *,
    out: Path | str | None = None,
    dry_run: bool = False,
    cross_validate: bool = False,
    command: str = "rainier calibrate validation/inference.yaml",
    score_prior: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``rainier calibrate inference.yaml [more.yaml ...]``: fit, report before/after (and LOGO), write the fit.

    ``score_prior=False`` leaves out the priors' report (``before`` is None), which for the in-flight MLPerf Server
    cases is a rate search per case more and steers nothing: the suite's reproduction of the fit skips it."""
    say = progress or (lambda _message: None)
    say("preparing the inference cases")
    items, _ = _prepared(load_inference_cases(path))
    say(f"fitting {len(items)} cases (in-flight cases simulated)")
    fit = fit_serving(items, score_prior=score_prior)
    document = {
        "provenance": {
            "command": command,
            "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
            "rainier_version": __version__,
            "num_cases": len(items),
            "num_targets": sum(len(i.targets) for i in items),
            "median_abs_error_pct": round(fit.after.summary["median_abs_error_pct"], 3),
            "p90_abs_error_pct": round(fit.after.summary["p90_abs_error_pct"], 3),
            "cases_per_entry": fit.cases_per_entry,
            "prior_weight": PRIOR_WEIGHT,
            # each steering group's residual weight (group_weights): every source carries the same total
            "group_weights": {group: round(w, 4) for group, w in sorted(group_weights(items).items())},
        },
        "entries": {
            key: {name: float(f"{getattr(eff, name):.6g}") for name in PARAMETERS}
            for key, eff in fit.table.entries.items()
        },
    }
    written = None
    if not dry_run:
        target = Path(out) if out is not None else catalog_file(SERVE_EFFICIENCY_FILE)
        header = (
            "# Efficiency parameters of the serving model, fitted by `rainier calibrate` on published runs.\n"
            "# Generated file: re-run the command in `provenance.command` instead of editing it by hand.\n"
        )
        target.write_text(header + yaml.safe_dump(document, sort_keys=False, width=120), encoding="utf-8")
        load_serve_efficiency(target)
        committed_serve_efficiency.cache_clear()
        written = str(target)
    result: dict[str, Any] = {
        "before": fit.before.summary if fit.before is not None else None,
        "after": fit.after.to_dict(),
        "entries": document["entries"],
        "group_weights": document["provenance"]["group_weights"],
        "written": written,
    }
    if cross_validate:
        held_out = leave_one_group_out(items, fit.responses, progress=progress)
        result["leave_one_group_out"] = held_out.summary
        # every target as its group's fold predicted it: which rows a group's held-out median stands on
        result["leave_one_group_out_cases"] = [row.to_dict() for row in held_out.rows]
        if written is not None:
            from rainier.serve.residuals import SERVE_RESIDUALS_FILE, write_serve_residuals

            family = {i.case.id: i.family for i in items}
            in_flight = frozenset(i.case.id for i in items if i.in_flight is not None)
            where = Path(written).with_name(SERVE_RESIDUALS_FILE)
            result["residuals_written"] = str(
                write_serve_residuals(held_out.rows, family, where, f"{command} --leave-one-group-out", in_flight)
            )
    return result
