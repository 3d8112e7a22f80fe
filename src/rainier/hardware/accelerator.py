"""Accelerator chips: the per-device numbers (peak FLOP/s, HBM, cores, power) every cost model starts from."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rainier.errors import field_error
from rainier.hardware._checks import (
    FrozenMap,
    check_count,
    check_enum,
    check_id,
    check_optional_positive,
    check_positive,
    check_sources,
    check_text,
    jsonable,
)
from rainier.precision import Precision


class Vendor(enum.StrEnum):
    """Who designs the chip."""

    AWS = "aws"
    NVIDIA = "nvidia"
    GOOGLE = "google"


class Family(enum.StrEnum):
    """Chip family; decides e.g. whether parallel degrees count devices or NeuronCores."""

    TRAINIUM = "trainium"
    INFERENTIA = "inferentia"
    NVIDIA_GPU = "nvidia-gpu"
    TPU = "tpu"


class EfficiencyFamily(enum.StrEnum):
    """Chips whose kernels and collectives reach similar fractions of their peaks: the unit the step model's
    efficiencies are fitted per (one architecture generation and its software stack)."""

    NVIDIA_AMPERE = "nvidia-ampere"
    NVIDIA_HOPPER = "nvidia-hopper"
    NVIDIA_BLACKWELL = "nvidia-blackwell"
    TPU = "tpu"
    TPU_TRILLIUM = "tpu-trillium"
    TRAINIUM = "trainium"
    INFERENTIA = "inferentia"


# The vendor family whose fitted efficiencies a family without its own fit uses: one running the same cores and
# the same software stack. Inferentia2 and Trainium1 both carry NeuronCore-v2 and run the same Neuron SDK
# (compiler, runtime, collectives, transformers-neuronx / NxD Inference; AWS Neuron docs, "Inferentia2
# Architecture" and "Trainium Architecture"), so an Inf2 run is predicted from the Neuron cases, not from a
# default fitted mostly on CUDA engines.
FAMILY_LENDERS: Mapping[Family, Family] = FrozenMap({Family.INFERENTIA: Family.TRAINIUM})


@dataclass(frozen=True, slots=True, kw_only=True)
class Accelerator:
    """One accelerator chip as software sees it: a GPU, a Trainium or Inferentia device, or a TPU chip.

    Quantities are SI. ``peak_dense_flop_per_s`` holds dense (never sparse) peaks for the precisions the chip
    runs natively. ``num_cores`` counts physical cores software can address separately (NeuronCores, TPU
    TensorCores; 1 for an NVIDIA GPU) and ``num_logical_cores`` the ranks the runtime exposes per device (4 for
    Trn2 at the default LNC=2). ``sources`` maps catalog field names (or ``default``) to source ids and
    ``estimated`` names the fields that are estimates, both as written in ``accelerators.yaml``.

    ``matmul_tile`` is the (rows, columns) output tile a large GEMM is cut into and ``matmul_units`` the number
    of units the tiles are spread over (streaming multiprocessors of a GPU; systolic arrays of a TPU or a
    NeuronCore): together they give tile and wave quantisation (NVIDIA, "Matrix Multiplication Background
    User's Guide", sec. 3). ``microscaling`` says the matrix units apply OCP MX block scales in hardware
    (MXFP8 on Blackwell and NeuronCore-v4). ``exp_per_s`` is the rate of the special-function units that
    evaluate the softmax exponentials of attention (NVIDIA MUFU.EX2; None where unpublished): a FlashAttention
    kernel can run no faster than its exponentials. ``host_link_bw_bytes_per_s`` (per direction) and
    ``host_memory_bytes`` (the server's DRAM per device) are what offloading to host memory uses (None where
    unpublished: such a chip refuses offload). ``efficiency_family`` (default: ``family``) keys the fitted
    efficiencies.
    """

    id: str
    name: str
    vendor: Vendor
    family: Family
    peak_dense_flop_per_s: Mapping[Precision, float]
    hbm_bytes: float
    hbm_bw_bytes_per_s: float
    sram_bytes: float | None = None
    num_cores: int = 1
    num_logical_cores: int = 1
    power_w: float | None = None
    efficiency_family: EfficiencyFamily | None = None
    matmul_tile: tuple[int, int] = (128, 128)
    matmul_units: int = 1
    microscaling: bool = False
    exp_per_s: float | None = None
    host_link_bw_bytes_per_s: float | None = None  # per direction, device <-> host memory (PCIe, NVLink-C2C)
    host_memory_bytes: float | None = None  # host DRAM per device (the server's memory / its devices)
    notes: str = ""
    sources: Mapping[str, str] = field(default_factory=FrozenMap)
    estimated: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        check_id("id", self.id)
        check_text("name", self.name)
        object.__setattr__(self, "vendor", check_enum("vendor", Vendor, self.vendor))
        object.__setattr__(self, "family", check_enum("family", Family, self.family))
        if not isinstance(self.peak_dense_flop_per_s, Mapping) or not self.peak_dense_flop_per_s:
            raise field_error("peak_dense_flop_per_s", self.peak_dense_flop_per_s, "expected at least one precision")
        peaks = {
            check_enum("peak_dense_flop_per_s", Precision, key): check_positive(f"peak_dense_flop_per_s.{key}", value)
            for key, value in self.peak_dense_flop_per_s.items()
        }
        object.__setattr__(self, "peak_dense_flop_per_s", FrozenMap(peaks))
        check_positive("hbm_bytes", self.hbm_bytes)
        check_positive("hbm_bw_bytes_per_s", self.hbm_bw_bytes_per_s)
        check_optional_positive("sram_bytes", self.sram_bytes)
        check_optional_positive("power_w", self.power_w)
        check_count("num_cores", self.num_cores)
        check_count("num_logical_cores", self.num_logical_cores)
        if self.num_logical_cores > self.num_cores or self.num_cores % self.num_logical_cores:
            raise field_error("num_logical_cores", self.num_logical_cores, f"must divide num_cores={self.num_cores}")
        family = self.efficiency_family if self.efficiency_family is not None else self.family.value
        object.__setattr__(self, "efficiency_family", check_enum("efficiency_family", EfficiencyFamily, family))
        tile = tuple(self.matmul_tile)
        if len(tile) != 2:
            raise field_error("matmul_tile", self.matmul_tile, "two positive integers (rows, columns)")
        for value in tile:
            check_count("matmul_tile", value)
        object.__setattr__(self, "matmul_tile", tile)
        check_count("matmul_units", self.matmul_units)
        if not isinstance(self.microscaling, bool):
            raise field_error("microscaling", self.microscaling, "true or false")
        check_optional_positive("exp_per_s", self.exp_per_s)
        check_optional_positive("host_link_bw_bytes_per_s", self.host_link_bw_bytes_per_s)
        check_optional_positive("host_memory_bytes", self.host_memory_bytes)
        check_text("notes", self.notes, allow_empty=True)
        object.__setattr__(self, "sources", check_sources("sources", self.sources))
        object.__setattr__(self, "estimated", frozenset(self.estimated))

    @property
    def precisions(self) -> tuple[Precision, ...]:
        """Precisions with a published dense peak, in :class:`Precision` order (widest first)."""
        return tuple(p for p in Precision if p in self.peak_dense_flop_per_s)

    def supports(self, precision: Precision) -> bool:
        return precision in self.peak_dense_flop_per_s

    def peak_flop_per_s(self, precision: Precision) -> float:
        """Dense peak FLOP/s (OP/s for int8) at ``precision``; an ``InputError`` if the chip has no such rate."""
        try:
            return self.peak_dense_flop_per_s[precision]
        except KeyError:
            supported = ", ".join(p.value for p in self.precisions)
            raise field_error("precision", str(precision), f"{self.id} supports {supported}") from None

    @property
    def efficiency_keys(self) -> tuple[str, ...]:
        """Keys of fitted efficiency entries that apply to this chip, most specific first: its id, its efficiency
        family (the generation: nvidia-hopper, ...), its vendor family, then the family it borrows from
        (``FAMILY_LENDERS``: same cores, same software stack); ``default`` is every table's last resort."""
        lender = FAMILY_LENDERS.get(self.family)
        own = (self.id, str(self.efficiency_family), self.family.value)
        return own if lender is None else (*own, lender.value)

    @property
    def cores_per_logical_core(self) -> int:
        """Physical cores fused into one logical core (Trn2 LNC=2 -> 2)."""
        return self.num_cores // self.num_logical_cores

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (SI units), keyed as the dataclass fields."""
        return {
            "id": self.id,
            "name": self.name,
            "vendor": self.vendor.value,
            "family": self.family.value,
            "peak_dense_flop_per_s": {p.value: self.peak_dense_flop_per_s[p] for p in self.precisions},
            "hbm_bytes": self.hbm_bytes,
            "hbm_bw_bytes_per_s": self.hbm_bw_bytes_per_s,
            "sram_bytes": self.sram_bytes,
            "num_cores": self.num_cores,
            "num_logical_cores": self.num_logical_cores,
            "power_w": self.power_w,
            "efficiency_family": str(self.efficiency_family),
            "matmul_tile": list(self.matmul_tile),
            "matmul_units": self.matmul_units,
            "microscaling": self.microscaling,
            "exp_per_s": self.exp_per_s,
            "host_link_bw_bytes_per_s": self.host_link_bw_bytes_per_s,
            "host_memory_bytes": self.host_memory_bytes,
            "notes": self.notes,
            "sources": jsonable(self.sources),
            "estimated": jsonable(self.estimated),
        }
