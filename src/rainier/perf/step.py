"""The training step model: one pure function of (workload, plan, system) -> StepEstimate."""

from __future__ import annotations

from rainier.hardware import Cluster
from rainier.parallel.plan import Infeasible, Plan
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.perf.result import StepEstimate
from rainier.workload.shape import TransformerShape


def estimate(
    shape: TransformerShape,
    plan: Plan,
    cluster: Cluster,
    *,
    efficiency: Efficiency | EfficiencyTable | None = None,
    seq_len: int | None = None,
) -> StepEstimate | Infeasible:
    """Estimate one training step (placeholder: the model lands in the next commit)."""
    raise NotImplementedError
