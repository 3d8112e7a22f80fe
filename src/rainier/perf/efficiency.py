"""Achieved-efficiency parameters of the cost models: the only fitted numbers in rainier.

Datasheet peaks are never reached: large GEMMs run at a fraction of peak FLOP/s, memory-bound kernels at a
fraction of HBM bandwidth, collectives at a fraction of link bandwidth ("bus bandwidth" in NCCL's tests).
Those fractions live here, one set per accelerator family (with an optional per-accelerator override and a
``default`` for families without data), in ``catalog/efficiency.yaml``. ``rainier calibrate`` fits them on
published measured runs and writes that file with the fit's provenance; nothing is tuned per case.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rainier.catalog.loader import CatalogError, Fields, catalog_file, load_yaml, source_index
from rainier.errors import clip_path, field_error
from rainier.hardware import Accelerator
from rainier.hardware.accelerator import EfficiencyFamily

EFFICIENCY_FILE = "efficiency.yaml"
MEASURED_FILE = "kernel-efficiency.yaml"
DEFAULT_KEY = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class Efficiency:
    """Fractions of peak that real kernels and collectives reach, and fixed overheads: each one physical.

    - ``gemm`` / ``gemm_8bit``: a large, well-shaped GEMM's achieved fraction of the dense peak at 16 and at 8
      bits (FP8 or INT8; scaling and casts are charged separately as memory traffic). Shape effects (tile and
      wave quantisation, memory-bound skinny GEMMs) come from the GEMM's dimensions, not from these numbers.
      Published large-GEMM results reach 70-90% of dense peak (cuBLAS, CUTLASS, XLA, NKI).
    - ``attention``: fused (FlashAttention-style) attention, fraction of the 16-bit dense peak; FlashAttention-2
      reaches 50-73% on A100/H100 (Dao 2023), FlashAttention-3 up to 75% on H100 (Shah et al. 2024).
    - ``memory``: memory-bound kernels (norms, activations, casts, optimizer), fraction of HBM bandwidth.
    - ``scale_up`` / ``scale_out``: collective bus bandwidth as a fraction of the link rate per direction (NCCL's
      "bus bandwidth"); in-network reduction (NVLink SHARP, InfiniBand SHARP) can take an all-reduce above 1.
    - ``layer_overhead_s``: fixed time per layer per micro-batch pass (kernel launches, synchronisation).
    - ``step_overhead_s``: fixed time per step (optimizer launch, data loading, logging).
    - ``moe_imbalance``: in dropless MoE, the busiest local expert group's tokens over the mean (the straggler
      every rank waits for); 1 is perfect balance.
    """

    gemm: float = 0.75
    gemm_8bit: float = 0.65
    attention: float = 0.5
    memory: float = 0.7
    scale_up: float = 0.8
    scale_out: float = 0.75
    layer_overhead_s: float = 20e-6
    step_overhead_s: float = 0.05
    moe_imbalance: float = 1.2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            low, high = BOUNDS[f.name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise field_error(f"efficiency.{f.name}", value, f"a number in [{low:g}, {high:g}]")

    def with_(self, **changes: float) -> Efficiency:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Physical bounds of each parameter: what any real kernel, collective or runtime can reach. A fit that ends at
# a bound is absorbing structure the model lacks (tests refuse a committed value within 1% of one).
BOUNDS: dict[str, tuple[float, float]] = {
    "gemm": (0.3, 0.95),
    "gemm_8bit": (0.3, 0.95),
    "attention": (0.15, 0.9),
    "memory": (0.3, 0.95),
    "scale_up": (0.2, 1.25),
    "scale_out": (0.2, 1.25),
    "layer_overhead_s": (1e-7, 3e-4),
    "step_overhead_s": (1e-4, 5.0),
    "moe_imbalance": (1.0, 3.0),
}
FRACTION_FIELDS: dict[str, float] = {
    name: high
    for name, (_, high) in BOUNDS.items()
    if name not in ("layer_overhead_s", "step_overhead_s", "moe_imbalance")
}
PARAMETER_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Efficiency))


@dataclass(frozen=True, slots=True)
class EfficiencyTable:
    """Efficiency sets by key (accelerator id, efficiency family, or ``default``) with their fit provenance.

    ``borrows`` maps a family fitted on too few cases to the family whose values it uses (stated in the file).
    """

    entries: Mapping[str, Efficiency]
    provenance: Mapping[str, Mapping[str, Any]]
    borrows: Mapping[str, str] = field(default_factory=dict)

    def _keys(self, accelerator: Accelerator) -> tuple[str, ...]:
        return (*accelerator.efficiency_keys, DEFAULT_KEY)

    def _resolve(self, key: str) -> str | None:
        seen: set[str] = set()
        while key in self.borrows and key not in seen:
            seen.add(key)
            key = self.borrows[key]
        return key if key in self.entries else None

    def for_accelerator(self, accelerator: Accelerator) -> Efficiency:
        """Per-accelerator entry, else its efficiency family's (or the family it borrows), else ``default``."""
        key = self.key_for(accelerator)
        return self.entries[key] if key in self.entries else Efficiency()

    def key_for(self, accelerator: Accelerator) -> str:
        for key in self._keys(accelerator):
            found = self._resolve(key)
            if found is not None:
                return found
        return "prior"


def _build(raw: Any, path: Path) -> EfficiencyTable:
    if not isinstance(raw, Mapping) or set(raw) - {"efficiency", "fit"} or "efficiency" not in raw:
        raise CatalogError(f"{path}: expected top-level keys 'efficiency' (list) and optionally 'fit'")
    entries: dict[str, Efficiency] = {}
    provenance: dict[str, Mapping[str, Any]] = {}
    borrows: dict[str, str] = {}
    items = raw["efficiency"]
    if not isinstance(items, list):
        raise CatalogError(f"{path}: 'efficiency' must be a list")
    for position, item in enumerate(items):
        reader = Fields(item, path=path, where=f"efficiency[{position}]", sources=None)
        key = reader.string("id").lower()
        if key in entries or key in borrows:
            raise CatalogError(f"{path}: efficiency[{position}]: duplicate id {key!r}")
        lender = reader.string("borrows", required=False).lower()
        if lender:
            borrows[key] = lender
            reader.string("reason", required=False)
            reader.finish()
            continue
        values = {
            name: reader.number(
                name,
                required=False,
                default=getattr(Efficiency(), name),
                minimum=0.0,
                exclusive_minimum=False,
                sourced=False,
            )
            for name in PARAMETER_NAMES
        }
        provenance[key] = reader.mapping("fit", required=False)
        reader.finish()
        try:
            entries[key] = Efficiency(**values)
        except ValueError as exc:
            raise CatalogError(f"{path}: efficiency[{position}] ({key}): {exc}") from None
    for key, lender in borrows.items():
        if lender not in entries and lender not in borrows:
            raise CatalogError(f"{path}: {key} borrows {lender!r}, which has no entry")
    return EfficiencyTable(entries=entries, provenance=provenance, borrows=borrows)


def load_efficiency(path: Path | str | None = None) -> EfficiencyTable:
    """Read an efficiency file (default: the committed fit in the catalog; the priors where none is committed).

    A file the caller names must exist: a mistyped path never falls back to the priors silently.
    """
    target = Path(path) if path is not None else catalog_file(EFFICIENCY_FILE)
    if not target.is_file():
        if path is not None:
            raise CatalogError(f"--efficiency {clip_path(path)}: no such efficiency file")
        return EfficiencyTable(entries={}, provenance={}, borrows={})
    return _build(load_yaml(target), target)


@functools.cache
def committed_efficiency() -> EfficiencyTable:
    """The committed fit (``catalog/efficiency.yaml``), loaded once."""
    return load_efficiency()


@functools.cache
def _kernel_file() -> Mapping[str, Any]:
    path = catalog_file(MEASURED_FILE)
    raw = load_yaml(path)
    if not isinstance(raw, Mapping) or set(raw) != {"measured", "flash2"}:
        raise CatalogError(f"{path}: expected exactly the top-level lists 'measured' and 'flash2'")
    for key in ("measured", "flash2"):
        if not isinstance(raw[key], list):
            raise CatalogError(f"{path}: '{key}' must be a list")
    return raw


def _sources(reader: Fields) -> None:
    sources = reader.items("sources")
    known = source_index()
    if not sources or not all(isinstance(s, str) and known.is_known(s) for s in sources):
        raise reader.error(f"sources {sources!r}: expected a non-empty list of source ids from sources.yaml")
    reader.string("derivation")


@functools.cache
def flash2_speeds() -> Mapping[str, float]:
    """Per efficiency family, FlashAttention-2's kernels' speed relative to the vendor's fused attention.

    From ``catalog/kernel-efficiency.yaml`` (``flash2``): the two kernels' published speeds on one chip. A family
    without an entry runs FlashAttention-2 at the vendor kernel's speed (1.0): on Ampere it is the fastest
    kernel, elsewhere no comparison is published.
    """
    path = catalog_file(MEASURED_FILE)
    families = tuple(f.value for f in EfficiencyFamily)
    found: dict[str, float] = {}
    for position, item in enumerate(_kernel_file()["flash2"]):
        reader = Fields(item, path=path, where=f"flash2[{position}]", sources=None)
        family = reader.choice("family", families)
        speed = reader.number("speed", maximum=1.0, sourced=False)
        _sources(reader)
        reader.finish()
        if family in found:
            raise reader.error(f"{family} is listed twice")
        found[family] = speed
    return found


def flash2_speed(family: str) -> float:
    """FlashAttention-2's relative speed on a family's chips (:func:`flash2_speeds`; 1.0 where none is published)."""
    return flash2_speeds().get(family, 1.0)


@functools.cache
def measured_fractions() -> Mapping[str, Mapping[str, float]]:
    """Per efficiency family, the parameters published kernel benchmarks measure (``catalog/kernel-efficiency.yaml``).

    The fit holds these at their measured values instead of fitting them (``rainier.calibrate.fit``); the file
    gives each value's sources and derivation.
    """
    path = catalog_file(MEASURED_FILE)
    families = tuple(f.value for f in EfficiencyFamily)
    found: dict[str, dict[str, float]] = {}
    for position, item in enumerate(_kernel_file()["measured"]):
        reader = Fields(item, path=path, where=f"measured[{position}]", sources=None)
        family = reader.choice("family", families)
        name = reader.choice("field", PARAMETER_NAMES)
        low, high = BOUNDS[name]
        value = reader.number("value", minimum=low, exclusive_minimum=False, maximum=high, sourced=False)
        _sources(reader)
        reader.finish()
        if name in found.get(family, {}):
            raise reader.error(f"{family}.{name} is listed twice")
        found.setdefault(family, {})[name] = value
    return found
