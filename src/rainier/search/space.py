"""The space of plans a search enumerates, and its YAML form (``--space SPACE.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass

from rainier.parallel.plan import Schedule
from rainier.precision import Precision
from rainier.workload.memory import Recompute


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchSpace:
    """Allowed values per plan dimension; ``None`` means every value that divides (powers of two up to limits)."""

    tp: tuple[int, ...] | None = None
    pp: tuple[int, ...] | None = None
    vpp: tuple[int, ...] = (1, 2, 4)
    cp: tuple[int, ...] | None = None
    ep: tuple[int, ...] | None = None
    mbs: tuple[int, ...] = (1, 2, 4, 8)
    recompute: tuple[Recompute, ...] = (Recompute.NONE, Recompute.SELECTIVE, Recompute.FULL)
    zero: tuple[int, ...] = (1, 3)
    sp: tuple[bool, ...] = (True,)
    precision: tuple[Precision, ...] = (Precision.BF16,)
    schedule: tuple[Schedule, ...] = (Schedule.ONE_F_ONE_B, Schedule.INTERLEAVED)
    max_tp: int = 64
    max_pp: int = 128
    max_cp: int = 32
