"""``train search --verify K``: the best K plans re-ranked by simulation, and where the order changed.

The search ranks plans with the closed-form step model; the step simulator (``sim.training``) runs each of the
best ``K`` with its schedule's order and links shared max-min fairly. Cost and energy per token are proportional
to the step time for a plan on a fixed cluster, so each plan's objective is scaled by simulated / estimated
step time and the plans are sorted again (ties keep the search's order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rainier.hardware import Cluster
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.search.result import Objective, RankedPlan, SearchResult
from rainier.sim.training import SimulatedStep, simulate
from rainier.workload.shape import TransformerShape


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedPlan:
    """One of the best plans: its rank by the estimate and by the simulation, both step times, the cause."""

    plan_text: str
    estimate_rank: int  # 1 = best
    simulated_rank: int
    estimate_step_time_s: float
    simulated_step_time_s: float
    objective_estimate: float
    objective_simulated: float
    cause: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_text": self.plan_text,
            "estimate_rank": self.estimate_rank,
            "simulated_rank": self.simulated_rank,
            "estimate_step_time_s": self.estimate_step_time_s,
            "simulated_step_time_s": self.simulated_step_time_s,
            "difference": self.simulated_step_time_s / self.estimate_step_time_s - 1.0,
            "objective_estimate": self.objective_estimate,
            "objective_simulated": self.objective_simulated,
            "cause": self.cause,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Verification:
    """The best plans in the simulation's order, and the moves against the search's order."""

    objective: Objective
    plans: tuple[VerifiedPlan, ...]  # in simulated order

    @property
    def order_changed(self) -> bool:
        return any(p.estimate_rank != p.simulated_rank for p in self.plans)

    def moves(self) -> list[str]:
        """One line per plan whose place changed."""
        return [
            f"#{p.estimate_rank} -> #{p.simulated_rank}: {p.plan_text} ({p.cause})"
            for p in self.plans
            if p.estimate_rank != p.simulated_rank
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "objective": self.objective.value,
            "order_changed": self.order_changed,
            "moves": self.moves(),
            "plans": [p.to_dict() for p in self.plans],
        }


def _objective(plan: RankedPlan, objective: Objective) -> float:
    value = {
        Objective.TIME: plan.seconds_per_token,
        Objective.COST: plan.dollars_per_token,
        Objective.ENERGY: plan.joules_per_token,
    }[objective]
    return float(value) if value is not None else plan.seconds_per_token


def verify_top(
    shape: TransformerShape,
    cluster: Cluster,
    result: SearchResult,
    k: int,
    *,
    efficiency: Efficiency | EfficiencyTable | None = None,
) -> Verification:
    """Simulate the best ``k`` plans of ``result`` (``shape`` at the search's sequence length) and re-rank them."""
    rows = []
    for rank, ranked in enumerate(result.top[:k], start=1):
        sim = simulate(shape, ranked.estimate.plan, cluster, efficiency=efficiency, seq_len=result.seq_len)
        if not isinstance(sim, SimulatedStep):  # the search only keeps feasible plans
            raise AssertionError(f"plan {ranked.estimate.plan.describe()} became infeasible: {sim.reason}")
        value = _objective(ranked, result.objective)
        rows.append((value * sim.step_time_s / ranked.estimate.step_time_s, rank, ranked, sim, value))
    order = sorted(rows, key=lambda row: (row[0], row[1]))
    plans = tuple(
        VerifiedPlan(
            plan_text=ranked.estimate.plan.describe(),
            estimate_rank=rank,
            simulated_rank=position,
            estimate_step_time_s=ranked.estimate.step_time_s,
            simulated_step_time_s=sim.step_time_s,
            objective_estimate=value,
            objective_simulated=simulated,
            cause=sim.cause(),
        )
        for position, (simulated, rank, ranked, sim, value) in enumerate(order, start=1)
    )
    return Verification(objective=result.objective, plans=plans)
