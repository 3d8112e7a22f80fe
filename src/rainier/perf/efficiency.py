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
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from rainier.catalog.loader import CatalogError, Fields, catalog_file, load_yaml
from rainier.errors import field_error
from rainier.hardware import Accelerator

EFFICIENCY_FILE = "efficiency.yaml"
DEFAULT_KEY = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class Efficiency:
    """Fractions of peak that real kernels and collectives reach, and fixed overheads.

    The defaults are priors used before any fit (typical of published kernel benchmarks: cuBLAS large-GEMM
    efficiency of 70-80% of dense peak, FlashAttention-2 forward at 50-70%, NCCL bus bandwidth at 70-90% of
    NVLink/IB line rate); fitted values replace them. ``tp_comm_exposed`` starts at 1 (no overlap, as in
    Megatron-LM before 2023); Transformer Engine's user-buffer overlap of TP collectives with the GEMMs that
    produce or consume them lowers it (Megatron-Core ``--tp-comm-overlap``). ``attention_score_bytes`` is the
    traffic of an unfused attention core, which writes the ``s x s`` scores to HBM and reads them back for the
    softmax, dropout and the value product (about 13 bytes per score in 16 bits, Korthikanti et al. 2022 sec. 4:
    the ``5as/h`` activation term); a fused FlashAttention kernel keeps them on chip (Dao et al. 2022), so its
    prior is ~0 and the fit says which kernels a chip's published runs used.
    """

    gemm: float = 0.75  # large 16-bit GEMM, fraction of dense peak
    gemm_fp8: float = 0.7  # large FP8 GEMM, fraction of FP8 dense peak (scaling and casts included)
    gemm_size_knee: float = 96.0  # smallest GEMM dimension at which efficiency is half of `gemm`
    attention: float = 0.55  # fused (flash) attention, fraction of 16-bit dense peak
    memory: float = 0.7  # memory-bound kernels, fraction of HBM bandwidth
    scale_up: float = 0.8  # collective bus bandwidth, fraction of scale-up link bandwidth per direction
    scale_out: float = 0.7  # same for the scale-out network
    tp_comm_exposed: float = 1.0  # share of tensor-parallel collective time not overlapped with GEMMs
    attention_score_bytes: float = 1.0  # HBM bytes per attention score per layer forward (~0 when fused)
    layer_overhead_s: float = 20e-6  # fixed cost per layer per micro-batch pass (launches, syncs)
    step_overhead_s: float = 0.05  # fixed cost per step (optimizer launch, data loading, logging)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            limit = FRACTION_FIELDS.get(f.name)
            if not isinstance(value, int | float) or value < 0 or (limit is not None and not 0 < value <= limit):
                allowed = f"a fraction in (0, {limit}]" if limit is not None else "a number >= 0"
                raise field_error(f"efficiency.{f.name}", value, allowed)

    def with_(self, **changes: float) -> Efficiency:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


FRACTION_FIELDS: dict[str, float] = {
    "gemm": 1.0,
    "gemm_fp8": 1.0,
    "attention": 1.0,
    "memory": 1.0,
    "scale_up": 1.0,
    "scale_out": 1.0,
    "tp_comm_exposed": 1.0,
}
PARAMETER_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Efficiency))


@dataclass(frozen=True, slots=True)
class EfficiencyTable:
    """Efficiency sets by key (accelerator id, family, or ``default``) with their fit provenance."""

    entries: Mapping[str, Efficiency]
    provenance: Mapping[str, Mapping[str, Any]]

    def for_accelerator(self, accelerator: Accelerator) -> Efficiency:
        """Per-accelerator entry, else the family's, else ``default``, else the priors."""
        for key in (accelerator.id, accelerator.family.value, DEFAULT_KEY):
            if key in self.entries:
                return self.entries[key]
        return Efficiency()

    def key_for(self, accelerator: Accelerator) -> str:
        for key in (accelerator.id, accelerator.family.value, DEFAULT_KEY):
            if key in self.entries:
                return key
        return "prior"


def _build(raw: Any, path: Path) -> EfficiencyTable:
    if not isinstance(raw, Mapping) or set(raw) - {"efficiency", "fit"} or "efficiency" not in raw:
        raise CatalogError(f"{path}: expected top-level keys 'efficiency' (list) and optionally 'fit'")
    entries: dict[str, Efficiency] = {}
    provenance: dict[str, Mapping[str, Any]] = {}
    items = raw["efficiency"]
    if not isinstance(items, list):
        raise CatalogError(f"{path}: 'efficiency' must be a list")
    for position, item in enumerate(items):
        reader = Fields(item, path=path, where=f"efficiency[{position}]", sources=None)
        key = reader.string("id").lower()
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
        if key in entries:
            raise CatalogError(f"{path}: efficiency[{position}]: duplicate id {key!r}")
        try:
            entries[key] = Efficiency(**values)
        except ValueError as exc:
            raise CatalogError(f"{path}: efficiency[{position}] ({key}): {exc}") from None
    return EfficiencyTable(entries=entries, provenance=provenance)


def load_efficiency(path: Path | str | None = None) -> EfficiencyTable:
    """Read an efficiency file (default: the committed fit in the catalog)."""
    target = Path(path) if path is not None else catalog_file(EFFICIENCY_FILE)
    if not target.exists():
        return EfficiencyTable(entries={}, provenance={})
    return _build(load_yaml(target), target)


@functools.cache
def committed_efficiency() -> EfficiencyTable:
    """The committed fit (``catalog/efficiency.yaml``), loaded once."""
    return load_efficiency()
