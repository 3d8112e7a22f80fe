"""The vectorised step model's results: one array per plan and field (``perf.batch``).

:func:`~rainier.perf.batch.evaluate` fills one :meth:`BatchResult.empty` chunk by chunk; the fit and the search
join or slice them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from rainier.perf import kernel
from rainier.perf.memory import MEMORY_FIELDS

if TYPE_CHECKING:
    pass

FloatArray = NDArray[np.float64]

BREAKDOWN_FIELDS = (*kernel.BREAKDOWN_FIELDS, "offload")  # offload: exposed host-link time (perf.offload)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-plan arrays: step time, its breakdown, memory per rank, FLOPs per step, and the link loads."""

    step_time_s: FloatArray
    breakdown: dict[str, FloatArray]
    memory: dict[str, FloatArray]
    capacity_bytes: FloatArray
    model_flops_per_step: FloatArray
    hardware_flops_per_step: FloatArray
    link_load_s: FloatArray  # (plans x link classes): the most loaded rank's seconds of each link per step
    link_names: tuple[str, ...] = ()
    host_bytes: FloatArray | None = None  # offloaded bytes per rank in host memory (perf.offload)
    host_capacity_bytes: FloatArray | None = None  # host memory per rank (0: the chip has no figure)

    @property
    def memory_total(self) -> FloatArray:
        return sum((self.memory[k] for k in MEMORY_FIELDS), start=np.zeros_like(self.step_time_s))

    @classmethod
    def concat(cls, parts: list[BatchResult]) -> BatchResult:
        """Results of consecutive chunks of plans as one."""

        def joined(values: list[FloatArray]) -> FloatArray:
            return np.concatenate(values)

        return cls(
            step_time_s=joined([r.step_time_s for r in parts]),
            breakdown={k: joined([r.breakdown[k] for r in parts]) for k in parts[0].breakdown},
            memory={k: joined([r.memory[k] for r in parts]) for k in parts[0].memory},
            capacity_bytes=joined([r.capacity_bytes for r in parts]),
            model_flops_per_step=joined([r.model_flops_per_step for r in parts]),
            hardware_flops_per_step=joined([r.hardware_flops_per_step for r in parts]),
            link_load_s=joined([r.link_load_s for r in parts]),
            link_names=parts[0].link_names,
            host_bytes=joined([r.host_offloaded for r in parts]),
            host_capacity_bytes=joined([r.host_capacity for r in parts]),
        )

    @classmethod
    def empty(cls, n: int, like: BatchResult) -> BatchResult:
        """Room for ``n`` plans' results with the fields and link classes of ``like`` (filled by :meth:`put`).

        A breakdown's or memory's parts are rows of one array each, so every field is contiguous."""
        breakdown, memory = np.empty((len(like.breakdown), n)), np.empty((len(like.memory), n))
        return cls(
            step_time_s=np.empty(n),
            breakdown={k: breakdown[j] for j, k in enumerate(like.breakdown)},
            memory={k: memory[j] for j, k in enumerate(like.memory)},
            capacity_bytes=np.empty(n),
            model_flops_per_step=np.empty(n),
            hardware_flops_per_step=np.empty(n),
            link_load_s=np.empty((n, like.link_load_s.shape[1])),
            link_names=like.link_names,
            host_bytes=np.empty(n),
            host_capacity_bytes=np.empty(n),
        )

    def put(self, start: int, part: BatchResult) -> None:
        """Write the results of a chunk of plans at ``start`` (see :meth:`empty`)."""
        stop = start + len(part.step_time_s)
        self.step_time_s[start:stop] = part.step_time_s
        for k, v in part.breakdown.items():
            self.breakdown[k][start:stop] = v
        for k, v in part.memory.items():
            self.memory[k][start:stop] = v
        self.capacity_bytes[start:stop] = part.capacity_bytes
        self.model_flops_per_step[start:stop] = part.model_flops_per_step
        self.hardware_flops_per_step[start:stop] = part.hardware_flops_per_step
        self.link_load_s[start:stop] = part.link_load_s
        self.host_offloaded[start:stop] = part.host_offloaded
        self.host_capacity[start:stop] = part.host_capacity

    @property
    def host_offloaded(self) -> FloatArray:
        return self.host_bytes if self.host_bytes is not None else np.zeros_like(self.step_time_s)

    @property
    def host_capacity(self) -> FloatArray:
        return self.host_capacity_bytes if self.host_capacity_bytes is not None else np.zeros_like(self.step_time_s)

    @property
    def fits(self) -> NDArray[np.bool_]:
        """Device memory within HBM, and whatever is offloaded within the host memory per rank."""
        return (self.memory_total <= self.capacity_bytes) & (self.host_offloaded <= self.host_capacity)
