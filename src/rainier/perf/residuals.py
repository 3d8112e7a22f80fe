"""How far to trust a step time: the step model's held-out errors per accelerator family.

``rainier calibrate validation/training.yaml --leave-one-group-out`` fits the efficiencies without each group of
published runs in turn, predicts that group, and writes every held-out case's ratio of measured to predicted
step time into ``catalog/residuals.yaml``, by efficiency family. Those ratios are the error a user meets on a run
the model was not fitted on, so a headline step time ``t`` is reported with the band ``t * ratio`` between the
``LOW_QUANTILE`` and ``HIGH_QUANTILE`` of its family's ratios (a central 80% interval), and the Monte Carlo of
:mod:`rainier.fleet.uncertainty` draws from the ratios themselves. A family with fewer than ``MIN_CASES`` held-out
cases uses the ratios of all families together.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rainier.catalog.loader import CatalogError, catalog_file, load_yaml
from rainier.errors import clip_path

RESIDUALS_FILE = "residuals.yaml"
ALL_KEY = "all"
LOW_QUANTILE = 0.1
HIGH_QUANTILE = 0.9
MIN_CASES = 8  # fewer held-out cases than this give no usable 10th/90th percentile: use all families' ratios


@dataclass(frozen=True, slots=True, kw_only=True)
class ResidualBand:
    """Held-out ratios of measured to predicted step time for one family (or all), and their central band."""

    family: str
    ratios: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.ratios or not all(math.isfinite(r) and r > 0 for r in self.ratios):
            raise CatalogError(f"residuals for {self.family}: ratios must be positive numbers, at least one")

    @property
    def n(self) -> int:
        return len(self.ratios)

    def quantile(self, q: float) -> float:
        return float(np.exp(np.quantile(np.log(self.ratios), q)))

    @property
    def low(self) -> float:
        """Measured/predicted at the 10th percentile: the true step time is above ``t * low`` 90% of the time."""
        return self.quantile(LOW_QUANTILE)

    @property
    def high(self) -> float:
        return self.quantile(HIGH_QUANTILE)

    @property
    def median(self) -> float:
        return self.quantile(0.5)

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "n": self.n, "low": self.low, "median": self.median, "high": self.high}


@dataclass(frozen=True, slots=True, kw_only=True)
class Residuals:
    """Every family's band, ``all`` included, with the command that produced them."""

    bands: dict[str, ResidualBand]
    command: str = ""

    def for_family(self, family: str) -> ResidualBand:
        """The family's band, or all families' when it has fewer than ``MIN_CASES`` held-out cases."""
        band = self.bands.get(family)
        if band is not None and band.n >= MIN_CASES:
            return band
        return self.bands[ALL_KEY]


def load_residuals(path: Path | str | None = None) -> Residuals | None:
    """``catalog/residuals.yaml`` (or ``path``); None when the package has none yet."""
    target = Path(path) if path is not None else catalog_file(RESIDUALS_FILE)
    if not target.is_file():
        if path is not None:
            raise CatalogError(f"{clip_path(path)}: no such residuals file")
        return None
    raw = load_yaml(target)
    if not isinstance(raw, dict) or not isinstance(raw.get("families"), dict):
        raise CatalogError(f"{target}: expected a mapping with 'families'")
    bands = {}
    for family, entry in raw["families"].items():
        ratios = entry.get("ratios") if isinstance(entry, dict) else None
        if not isinstance(ratios, list):
            raise CatalogError(f"{target}: families.{family}.ratios must be a list of numbers")
        bands[str(family)] = ResidualBand(family=str(family), ratios=tuple(float(r) for r in ratios))
    if ALL_KEY not in bands:
        raise CatalogError(f"{target}: families must include '{ALL_KEY}'")
    fit = raw.get("fit")
    command = fit.get("command", "") if isinstance(fit, dict) else ""
    return Residuals(bands=bands, command=str(command))


@functools.cache
def committed_residuals() -> Residuals | None:
    """The committed held-out residuals, loaded once."""
    return load_residuals()
