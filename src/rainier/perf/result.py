"""Typed results of the step model: time breakdown, memory breakdown, placement, and the StepEstimate."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
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
    path (the slowest pipeline rank); ``recompute`` the extra forward work of activation recomputation;
    ``*_comm`` the exposed (blocking, or not hidden behind compute) part of each collective;
    ``link_contention`` the time a window waits because a link carries more bytes than fit beside its
    compute (transfers sharing a link); ``pipeline_bubble`` the idle time of the schedule; ``optimizer`` the
    weight update; ``other`` fixed per-step overheads; ``offload`` the host-link time not hidden behind compute
    (``perf.offload``; 0 without offload).
    """

    compute: float = 0.0
    recompute: float = 0.0
    tp_comm: float = 0.0
    cp_comm: float = 0.0
    ep_comm: float = 0.0
    dp_comm_exposed: float = 0.0
    pp_comm: float = 0.0
    link_contention: float = 0.0
    pipeline_bubble: float = 0.0
    optimizer: float = 0.0
    other: float = 0.0
    offload: float = 0.0

    @property
    def total(self) -> float:
        return float(sum(getattr(self, f.name) for f in fields(self)))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryBreakdown:
    """Bytes per device at the peak of a step (the most loaded pipeline stage), by kind; ``host``: what the plan
    offloads to host memory (``perf.offload``), which must fit ``host_capacity``."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    buffers: float
    capacity: float
    host: float = 0.0  # offloaded bytes per device in host memory (not part of ``total``)
    host_capacity: float = 0.0  # host memory per device (0: no catalog figure)

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.buffers

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity and self.host <= self.host_capacity

    def to_dict(self) -> dict[str, float]:
        out = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("capacity", "host", "host_capacity")
        }
        out["total"] = self.total
        out["capacity"] = self.capacity
        out["host"] = self.host
        out["host_capacity"] = self.host_capacity
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
    link_load_s: dict[str, float] = field(default_factory=dict)  # busiest rank's seconds per step on each link
    warnings: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        return self.memory.fits

    @property
    def busiest_link(self) -> tuple[str, float]:
        """The link class with the most load per step, and its seconds (("none", 0) without traffic)."""
        if not self.link_load_s:
            return ("none", 0.0)
        name = max(self.link_load_s, key=lambda k: self.link_load_s[k])
        return name, self.link_load_s[name]

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
            "link_load_s": dict(self.link_load_s),
            "busiest_link": {"name": self.busiest_link[0], "load_s": self.busiest_link[1]},
            "efficiency": self.efficiency_key,
            "warnings": list(self.warnings),
        }
