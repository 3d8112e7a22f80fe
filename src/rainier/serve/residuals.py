"""How far to trust a serving estimate: the serving model's held-out errors by family and quantity.

``rainier calibrate <inference files> --leave-one-group-out`` predicts every group of published serving runs
from a fit on the others and writes each held-out target's ratio of measured to predicted value into
``catalog/serve-residuals.yaml``, by efficiency family and kind of quantity (``ttft``, ``tpot``, ``e2e``,
``throughput``, and the p99 tails ``ttft_p99``, ``tpot_p99`` apart; in-flight batching cases under
``<kind>_in_flight``). ``serve estimate`` reports each quantity with the 10th-90th percentile band of its kind
(:class:`rainier.perf.residuals.ResidualBand`); ``serve size`` scales each fleet by the throughput band (a
replica that serves ``r`` times the predicted rate needs ``1/r`` times the replicas). A family with too few
held-out targets of a kind uses all families' ratios of that kind.
"""

from __future__ import annotations

import datetime
import functools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rainier.calibrate.residuals_file import write_generated
from rainier.calibrate.score import CaseResult
from rainier.catalog.loader import CatalogError, catalog_file, load_yaml
from rainier.errors import InputError
from rainier.perf.residuals import ALL_KEY, MIN_CASES, ResidualBand

SERVE_RESIDUALS_FILE = "serve-residuals.yaml"
# Each target metric of an inference case (validation/README.md) and the kind of quantity its band is kept under.
KINDS = {
    "ttft_ms": "ttft",
    "ttft_p99_ms": "ttft_p99",  # tails of in-flight benchmarks near saturation: kept apart from the means
    "tpot_ms": "tpot",
    "tpot_p99_ms": "tpot_p99",
    "e2e_latency_ms": "e2e",
    "output_tokens_per_s": "throughput",
    "output_tokens_per_s_per_device": "throughput",
}
# The quantities of a serving estimate's JSON and the kind of band each takes.
ESTIMATE_KINDS = {
    "ttft_ms": "ttft",
    "tpot_ms": "tpot",
    "e2e_ms": "e2e",
    "output_tokens_per_s": "throughput",
    "output_tokens_per_s_per_device": "throughput",
}
HEADER = (
    "# Held-out errors of the serving model: measured / predicted value of every public inference target, predicted\n"
    "# by a fit without its group (leave-one-group-out), by efficiency family and kind. rainier.serve.residuals\n"
    "# reads it. Generated file: re-run the command in `fit.command` instead of editing it.\n"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeResiduals:
    """Bands by family and kind (``all`` pools the families)."""

    bands: dict[str, dict[str, ResidualBand]]

    def band(self, family: str | Sequence[str], kind: str) -> ResidualBand | None:
        """The family's band of this kind (the first of several keys, most specific first, that has one: an
        accelerator's ``efficiency_keys``), else all families' (None when no target of the kind was held out)."""
        for key in (family,) if isinstance(family, str) else family:
            own = self.bands.get(key, {}).get(kind)
            if own is not None and own.n >= MIN_CASES:
                return own
        return self.bands.get(ALL_KEY, {}).get(kind)


def residual_document(
    rows: tuple[CaseResult, ...], family: Mapping[str, str], command: str, in_flight: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Held-out ratios by family and kind; ``family`` maps case ids to efficiency families.

    Targets of in-flight batching cases (simulated at the benchmark's load, queueing included) are kept under
    ``<kind>_in_flight``, apart from the static-batch cases that ``serve estimate`` resembles.
    """
    ratios: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        case_id = row.id.rsplit(":", 1)[0]
        kind = KINDS.get(row.metric)
        if row.error_pct is None or not row.measured or not row.predicted or kind is None or case_id not in family:
            continue
        if case_id in in_flight:
            kind = f"{kind}_in_flight"
        ratio = round(row.measured / row.predicted, 5)
        ratios[family[case_id]][kind].append(ratio)
        ratios[ALL_KEY][kind].append(ratio)
    if not ratios:
        raise InputError("no held-out inference target was scored: nothing to write to serve-residuals.yaml")
    return {
        "fit": {
            "command": command,
            "date": datetime.date.today().isoformat(),
            "held_out_targets": sum(len(v) for v in ratios[ALL_KEY].values()),
        },
        "families": {
            name: {kind: sorted(values) for kind, values in sorted(kinds.items())}
            for name, kinds in sorted(ratios.items())
        },
    }


def write_serve_residuals(
    rows: tuple[CaseResult, ...],
    family: Mapping[str, str],
    path: Path | str,
    command: str,
    in_flight: frozenset[str] = frozenset(),
) -> Path:
    """Write the held-out ratios to ``path`` and check that they load back."""
    target = write_generated(path, HEADER, residual_document(rows, family, command, in_flight))
    load_serve_residuals(target)
    committed_serve_residuals.cache_clear()
    return target


def load_serve_residuals(path: Path | str | None = None) -> ServeResiduals | None:
    """``catalog/serve-residuals.yaml`` (or ``path``); None when the package has none yet."""
    target = Path(path) if path is not None else catalog_file(SERVE_RESIDUALS_FILE)
    if not target.is_file():
        return None
    raw = load_yaml(target)
    families = raw.get("families") if isinstance(raw, dict) else None
    if not isinstance(families, dict):
        raise CatalogError(f"{target}: expected a mapping with 'families'")
    bands: dict[str, dict[str, ResidualBand]] = {}
    for family, kinds in families.items():
        if not isinstance(kinds, dict):
            raise CatalogError(f"{target}: families.{family} must map kinds to lists of ratios")
        bands[str(family)] = {
            str(kind): ResidualBand(family=f"{family}/{kind}", ratios=tuple(float(r) for r in values))
            for kind, values in kinds.items()
        }
    return ServeResiduals(bands=bands)


@functools.cache
def committed_serve_residuals() -> ServeResiduals | None:
    return load_serve_residuals()


def intervals(values: Mapping[str, Any], family: str | Sequence[str]) -> dict[str, float]:
    """``<key>_low`` / ``<key>_high`` for each quantity of a serving estimate's JSON that has a band."""
    residuals = committed_serve_residuals()
    out: dict[str, float] = {}
    if residuals is None:
        return out
    for key, kind in ESTIMATE_KINDS.items():
        value = values.get(key)
        band = residuals.band(family, kind)
        if isinstance(value, int | float) and band is not None:
            out[f"{key}_low"] = value * band.low
            out[f"{key}_high"] = value * band.high
    return out


def devices_interval(replicas: int, replica_devices: int, family: str | Sequence[str]) -> tuple[int, int] | None:
    """A fleet's device count if replicas serve the 90th / 10th percentile of the throughput band.

    A replica that serves ``r`` times the predicted rate needs ``1/r`` times the replicas (rounded up): the
    capacity-bound part of sizing; a fleet sized by its latency targets moves with the latency bands instead.
    """
    residuals = committed_serve_residuals()
    band = None if residuals is None else residuals.band(family, "throughput")
    if band is None:
        return None
    low = max(1, math.ceil(replicas / band.high)) * replica_devices
    high = max(1, math.ceil(replicas / band.low)) * replica_devices
    return low, high
