"""Typed results of a plan search."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rainier.frame import frame
from rainier.parallel.batch_target import BatchTarget
from rainier.perf.result import StepEstimate

if TYPE_CHECKING:
    import pandas as pd


class Objective(enum.StrEnum):
    """What the search minimises per token trained."""

    TIME = "time"  # step time per token (equivalently: maximise tokens/s)
    COST = "cost"  # dollars per token: devices x price per device-hour x step time
    ENERGY = "energy"  # joules per token: devices x all-in power per device x step time


@dataclass(frozen=True, slots=True, kw_only=True)
class RankedPlan:
    """One evaluated plan with its full estimate and objective values."""

    estimate: StepEstimate
    seconds_per_token: float
    dollars_per_token: float | None
    joules_per_token: float | None

    def to_dict(self) -> dict[str, Any]:
        out = self.estimate.to_dict()
        out["plan_text"] = self.estimate.plan.describe()  # the plan as a ``--plan`` argument
        out["gbs"] = self.estimate.plan.gbs  # the batch this plan runs (a batch target lets it differ)
        out["objective"] = {
            "seconds_per_million_tokens": self.seconds_per_token * 1e6,
            "dollars_per_million_tokens": None if self.dollars_per_token is None else self.dollars_per_token * 1e6,
            "joules_per_token": self.joules_per_token,
        }
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchResult:
    """Outcome of one search: counts, speed, the best plans, and why the rest were rejected."""

    model: str
    cluster: str
    num_devices: int
    gbs: int  # the batch asked for (sequences): exact, or the centre of ``batch``'s range
    seq_len: int
    objective: Objective
    evaluated: int  # plans timed by the cost model
    candidates: int  # plans enumerated (evaluated + rejected before timing)
    infeasible: dict[str, int]  # rejected plans by reason kind (divisibility, memory, topology, unsupported)
    elapsed_s: float
    top: tuple[RankedPlan, ...]
    binding_constraint: str = ""  # when nothing is feasible: what stopped it, and what to try
    notes: tuple[str, ...] = field(default_factory=tuple)
    batch: BatchTarget | None = None  # the batch rule (None: a caller's own, e.g. the fleet's round-up)
    verification: Any = None  # search.verify.Verification of the best plans (``--verify K``), else None

    @property
    def plans_per_s(self) -> float:
        return self.evaluated / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def to_frame(self) -> pd.DataFrame:
        """This result as a pandas DataFrame (``rainier.frame``)."""
        return frame(self.to_dict(), self.to_dict()["top"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "cluster": self.cluster,
            "num_devices": self.num_devices,
            "gbs": self.gbs,
            "batch_target": None if self.batch is None else self.batch.to_dict(),
            "batch_rule": "" if self.batch is None else self.batch.describe(),
            "seq_len": self.seq_len,
            "objective": self.objective.value,
            "evaluated": self.evaluated,
            "candidates": self.candidates,
            "infeasible": dict(self.infeasible),
            "plans_per_s": self.plans_per_s,
            "elapsed_s": self.elapsed_s,
            "top": [p.to_dict() for p in self.top],
            "binding_constraint": self.binding_constraint,
            "notes": list(self.notes),
            **({"verification": self.verification.to_dict()} if self.verification is not None else {}),
        }
