"""Achieved-efficiency parameters of the serving cost model, per accelerator family, fitted on published runs.

Inference kernels differ from training ones (small decode GEMMs, paged attention, one launch per layer per
token), so serving has its own numbers: fractions of peak FLOP/s, of HBM bandwidth for weights and for the KV
cache, and of link bandwidth; fixed per-layer and per-iteration overheads. What the attention kernels move (KV
read once per group or once per query head, scores kept on chip or written to HBM) is not fitted: it follows
from the engine's kernels (``serve.cost.AttentionKernels``). They live
in ``catalog/serve-efficiency.yaml`` as ``default``, per vendor family, per generation (the accelerator's
efficiency family) and per accelerator (with at least ``serve.fitting.MIN_CASES_PER_ACCELERATOR`` published
cases); an accelerator takes the most specific entry there is. Written by ``rainier calibrate
validation/inference.yaml``; nothing is tuned per case.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from rainier.catalog.loader import CatalogError, Fields, catalog_file, load_yaml
from rainier.errors import field_error
from rainier.hardware import Accelerator

SERVE_EFFICIENCY_FILE = "serve-efficiency.yaml"
DEFAULT_KEY = "default"
FRACTIONS = ("compute", "memory", "kv_memory", "comm")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeEfficiency:
    """Fractions of peak reached by serving kernels, and fixed overheads (priors before a fit)."""

    compute: float = 0.6  # weight and attention GEMMs, fraction of dense peak at the matmul precision
    memory: float = 0.7  # weight reads (GEMM operands), fraction of HBM bandwidth
    kv_memory: float = 0.5  # KV-cache reads by (paged) attention, fraction of HBM bandwidth
    comm: float = 0.5  # tensor-parallel all-reduce bus bandwidth, fraction of link bandwidth
    collective_latency_s: float = 10e-6  # fixed cost of one collective call: launch and synchronisation of the ranks
    iteration_overhead_s: float = 1e-3  # per iteration: sampling, scheduling, host work
    # per running request per iteration: the engine's host work for each request that the GPU waits for
    # (scheduling it, preparing its inputs, sampling and processing its output); one value for every engine and
    # chip, fitted on every case (``serve.fitting.GLOBAL_PARAMETERS``)
    sequence_overhead_s: float = 10e-6

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in FRACTIONS:
                if not isinstance(value, int | float) or not 0 < value <= 1:
                    raise field_error(f"serve-efficiency.{f.name}", value, "a fraction in (0, 1]")
            elif not isinstance(value, int | float) or value < 0:
                raise field_error(f"serve-efficiency.{f.name}", value, "a number >= 0")

    def with_(self, **changes: float) -> ServeEfficiency:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


PARAMETERS: tuple[str, ...] = tuple(f.name for f in fields(ServeEfficiency))
# Parameters a file written before they existed may lack: such an entry takes the prior (the field's default).
OPTIONAL = frozenset({"sequence_overhead_s"})


@dataclass(frozen=True, slots=True)
class ServeEfficiencyTable:
    """Efficiencies by key (``default``, a family, an accelerator id) and the fit's provenance."""

    entries: dict[str, ServeEfficiency]
    provenance: dict[str, Any]

    def key_for(self, accelerator: Accelerator) -> str:
        for key in accelerator.efficiency_keys:
            if key in self.entries:
                return key
        return DEFAULT_KEY

    def for_accelerator(self, accelerator: Accelerator) -> ServeEfficiency:
        return self.entries.get(self.key_for(accelerator), self.entries.get(DEFAULT_KEY, ServeEfficiency()))


def _build(raw: Any, path: Path) -> ServeEfficiencyTable:
    reader = Fields(raw if raw is not None else {}, path=path, where="serve-efficiency", sources=None)
    provenance = reader.mapping("provenance", required=False)
    entries: dict[str, ServeEfficiency] = {}
    for key, block in reader.mapping("entries").items():
        item = Fields(block, path=path, where=f"entries.{key}", sources=None)
        values: dict[str, float] = {}
        for name in PARAMETERS:
            read = item.optional_number if name in OPTIONAL else item.number
            value = read(name, minimum=0.0, exclusive_minimum=False, sourced=False)
            if value is not None:
                values[name] = value
        item.finish()
        try:
            entries[key] = ServeEfficiency(**values)
        except ValueError as exc:
            raise CatalogError(f"{path}: entries.{key}: {exc}") from None
    reader.finish()
    if DEFAULT_KEY not in entries:
        raise CatalogError(f"{path}: entries: missing '{DEFAULT_KEY}'")
    return ServeEfficiencyTable(entries=entries, provenance=provenance)


def load_serve_efficiency(path: Path | str | None = None) -> ServeEfficiencyTable:
    """Read a serving efficiency file (default: the committed fit)."""
    target = Path(path) if path is not None else catalog_file(SERVE_EFFICIENCY_FILE)
    return _build(load_yaml(target), target)


@functools.cache
def committed_serve_efficiency() -> ServeEfficiencyTable:
    """The committed fit, or the priors alone when the file does not exist yet."""
    target = catalog_file(SERVE_EFFICIENCY_FILE)
    if not target.exists():
        return ServeEfficiencyTable(entries={DEFAULT_KEY: ServeEfficiency()}, provenance={"note": "priors, no fit"})
    return load_serve_efficiency(target)
