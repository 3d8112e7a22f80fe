"""Typed results of the step model: time breakdown, memory breakdown, placement, and the StepEstimate."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from rainier.frame import frame
from rainier.parallel.placement import AxisPlacement
from rainier.parallel.plan import Plan

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, slots=True, kw_only=True)
class StepBreakdown:
    """Where one step's wall time goes, in seconds; the parts add up to the step time.

    ``compute`` is forward + backward matmuls and memory-bound kernels of every micro-batch on the critical
    path; ``recompute`` the extra forward work of activation recomputation; ``*_comm`` the exposed (not hidden
    behind compute) part of each collective; ``pipeline_bubble`` the idle time of the schedule;
    ``optimizer`` the weight update; ``other`` fixed per-step overheads.
    """

    compute: float = 0.0
    recompute: float = 0.0
    tp_comm: float = 0.0
    cp_comm: float = 0.0
    ep_comm: float = 0.0
    dp_comm_exposed: float = 0.0
    pp_comm: float = 0.0
    pipeline_bubble: float = 0.0
    optimizer: float = 0.0
    other: float = 0.0

    @property
    def total(self) -> float:
        return float(sum(getattr(self, f.name) for f in fields(self)))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryBreakdown:
    """Bytes per device at the peak of a step (the most loaded pipeline stage), by kind."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    buffers: float
    capacity: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.buffers

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity

    def to_dict(self) -> dict[str, float]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "capacity"}
        out["total"] = self.total
        out["capacity"] = self.capacity
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class StepEstimate:
    """One training step of a model under a plan on a cluster: time, throughput, utilisation, memory."""

    model: str
    cluster: str
    accelerator: str
    num_devices: int
    plan: Plan
    seq_len: int
    step_time_s: float
    tokens_per_s: float
    tokens_per_s_per_device: float
    model_flops_per_step: float
    hardware_flops_per_step: float
    model_flops_per_s_per_device: float
    mfu: float
    hfu: float
    peak_flop_per_s_per_device: float
    breakdown: StepBreakdown
    memory: MemoryBreakdown
    placement: tuple[AxisPlacement, ...]
    efficiency_key: str
    warnings: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        return self.memory.fits

    def to_frame(self) -> pd.DataFrame:
        """This result as a pandas DataFrame (``rainier.frame``)."""
        return frame(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "cluster": self.cluster,
            "accelerator": self.accelerator,
            "num_devices": self.num_devices,
            "plan": self.plan.to_dict(),
            "seq_len": self.seq_len,
            "step_time_s": self.step_time_s,
            "tokens_per_s": self.tokens_per_s,
            "tokens_per_s_per_device": self.tokens_per_s_per_device,
            "model_flops_per_step": self.model_flops_per_step,
            "model_flops_per_s_per_device": self.model_flops_per_s_per_device,
            "mfu": self.mfu,
            "hfu": self.hfu,
            "peak_flop_per_s_per_device": self.peak_flop_per_s_per_device,
            "fits": self.fits,
            "memory_bytes": self.memory.to_dict(),
            "breakdown_s": self.breakdown.to_dict(),
            "placement": [p.to_dict() for p in self.placement],
            "efficiency": self.efficiency_key,
            "warnings": list(self.warnings),
        }
