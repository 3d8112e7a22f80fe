"""``simulate(shape, plan, cluster) -> SimulatedStep``: one training step by discrete-event simulation.

The inputs are the closed-form model's (``perf.step.estimate``) and so are the pieces: ``perf.batch.prepare``
and ``perf.parts.window_parts`` give every pass time and every collective's duration and link load; this module
builds the step's graph (``graph``), runs it on the event kernel with max-min fair link sharing (``run``,
``network``) and reads the answers off the recorded intervals: the step time, the critical path, how busy
each stream and link was, and how and why the answer differs from the estimate.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

from rainier.errors import InputError
from rainier.hardware import Cluster
from rainier.parallel.pipeline import rank_rows
from rainier.parallel.plan import Infeasible, Plan, Schedule
from rainier.perf.batch import prepare
from rainier.perf.columns import PlanColumns
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.perf.parts import window_parts
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate, flops_per_token_table, plan_problem, resolve_efficiency, step_context
from rainier.sim.training.graph import StepGraph, build_graph
from rainier.sim.training.run import Interval, StepRun, critical_path, union_length
from rainier.workload.shape import TransformerShape

# Pass visits (pipeline ranks x micro-batches x chunks) one simulation may run: about 30 s on one core (the
# largest public case, a 1T-parameter model at pp=64 with 512 micro-batches, is 32,768).
MAX_PASS_VISITS = 100_000
COMPUTE_CATEGORIES = {"forward": "compute", "backward": "compute", "weight": "compute", "recompute": "recompute"}
COMM_CATEGORIES = {"tp": "tp_comm", "ep": "ep_comm", "cp": "cp_comm", "pp": "pp_comm"}
TOP_LINKS = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class PathSegment:
    """Consecutive intervals of the critical path on one rank class and category."""

    rank: int
    category: str
    start_s: float
    end_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "category": self.category, "start_s": self.start_s, "end_s": self.end_s}


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkUse:
    """How busy one link class of one rank class was over the step (1.0 = at capacity the whole step)."""

    rank: int
    link: str
    utilisation: float

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "link": self.link, "utilisation": self.utilisation}


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedStep:
    """One simulated step next to the closed-form estimate of the same inputs."""

    estimate: StepEstimate
    step_time_s: float
    sharing: bool
    num_rank_classes: int
    ranks_per_class: int
    num_operations: int
    num_flows: int
    critical_path: tuple[PathSegment, ...]
    critical_path_s: dict[str, float]  # seconds of the critical path by category
    breakdown: dict[str, float]  # the last rank's time in the estimate's breakdown fields
    last_rank: int  # the pipeline rank whose optimizer ends the step
    stream_busy: dict[str, dict[str, float]]  # rank class -> stream -> busy fraction of the step
    busiest_links: tuple[LinkUse, ...]
    contended_s: float  # time some link was asked for more than its capacity (summed over rank classes)
    slowed_s: float  # flow-seconds transfers lost to sharing
    intervals: tuple[Interval, ...]
    link_busy_s: dict[tuple[int, str], float]
    link_samples: tuple[tuple[float, int, dict[str, float]], ...] = ()  # with record_links: rates over time

    @property
    def difference(self) -> float:
        """Simulated / estimated step time - 1."""
        return self.step_time_s / self.estimate.step_time_s - 1.0

    def cause(self) -> str:
        """The breakdown field that moves most between the estimate and the simulation, in words."""
        est = self.estimate.breakdown.to_dict()
        deltas = {k: self.breakdown.get(k, 0.0) - est.get(k, 0.0) for k in est}
        # The part that moved most in the direction of the whole difference (others may move back a little).
        same = {k: v for k, v in deltas.items() if v * self.difference > 0} or deltas
        key = max(same, key=lambda k: abs(same[k]))
        if abs(self.difference) < 1e-3:
            if self.contended_s == 0.0:
                return "agree: no link asked for more than its capacity, the schedule's order gives the closed form's"
            return "agree within 0.1%"
        sign = "more" if deltas[key] > 0 else "less"
        return (
            f"{key.replace('_', ' ')}: {abs(deltas[key]):.4g} s {sign} on the last rank to finish (pipeline rank "
            f"{self.last_rank}) than on the estimate's slowest rank"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.estimate.model,
            "cluster": self.estimate.cluster,
            "plan": self.estimate.plan.describe(),
            "step_time_s": self.step_time_s,
            "estimate_step_time_s": self.estimate.step_time_s,
            "difference": self.difference,
            "cause": self.cause(),
            "sharing": self.sharing,
            "rank_classes": self.num_rank_classes,
            "ranks_per_class": self.ranks_per_class,
            "operations": self.num_operations,
            "flows": self.num_flows,
            "critical_path_s": self.critical_path_s,
            "critical_path": [s.to_dict() for s in self.critical_path],
            "breakdown": self.breakdown,
            "last_rank": self.last_rank,
            "estimate_breakdown": self.estimate.breakdown.to_dict(),
            "stream_busy": self.stream_busy,
            "busiest_links": [u.to_dict() for u in self.busiest_links],
            "contended_s": self.contended_s,
            "slowed_s": self.slowed_s,
        }


def step_graph(
    shape: TransformerShape,
    plan: Plan,
    cluster: Cluster,
    *,
    efficiency: Efficiency | EfficiencyTable | None = None,
    max_blocks: int = 64,
) -> StepGraph:
    """The operation graph of one step (``shape`` already at its sequence length; the plan checked)."""
    eff, _ = resolve_efficiency(cluster, efficiency)
    ctx = step_context(shape, cluster, eff, plan.degrees_unit)
    model_flops, hardware_flops = flops_per_token_table(shape)
    cols = PlanColumns.from_plans([plan])
    prep = prepare(ctx, cols, model_flops_per_token=model_flops, hardware_flops_per_token=hardware_flops)
    parts = window_parts(prep, eff)
    rows = rank_rows(
        ctx.layer_is_moe,
        plan.pp_degree,
        int(cols.chunks[0]),
        first=plan.first_stage_layers,
        last=plan.last_stage_layers,
        head_weight=ctx.head_weight,
    )
    return build_graph(
        parts,
        schedule=plan.schedule,
        rank_rows=rows,
        ranks_per_stage=plan.tp_degree * plan.cp_degree * plan.dp_degree,
        link_names=ctx.link_names,
        step_overhead_s=eff.step_overhead_s,
        max_blocks=max_blocks,
    )


def simulate(
    shape: TransformerShape,
    plan: Plan,
    cluster: Cluster,
    *,
    efficiency: Efficiency | EfficiencyTable | None = None,
    seq_len: int | None = None,
    sharing: bool = True,
    max_blocks: int = 64,
    record_links: bool = False,
) -> SimulatedStep | Infeasible:
    """Simulate one step of ``shape`` under ``plan`` on ``cluster`` (the same inputs as ``perf.step.estimate``).

    Raises :class:`~rainier.errors.InputError` past :data:`MAX_PASS_VISITS` pass visits.

    ``sharing=False`` lets every transfer run at its own speed (the no-contention reference); ``max_blocks``
    caps the layer blocks a pass is cut into (one per layer by default up to 64); ``record_links`` keeps every
    link's use over time (for a trace's counters).
    """
    if seq_len is not None:
        shape = shape.with_seq_len(seq_len)
    problem = plan_problem(shape, plan, cluster)
    if problem is not None:
        return problem
    visits = plan.pp_degree * plan.num_microbatches * plan.chunks_per_rank
    if visits > MAX_PASS_VISITS:
        raise InputError(
            f"plan: simulating {visits:,} pass visits (pp x micro-batches x chunks) exceeds the simulator's budget of "
            f"{MAX_PASS_VISITS:,}; simulate a smaller gbs or a larger mbs"
        )
    fast = estimate(shape, plan, cluster, efficiency=efficiency)
    assert isinstance(fast, StepEstimate)
    graph = step_graph(shape, plan, cluster, efficiency=efficiency, max_blocks=max_blocks)
    run = StepRun(graph, sharing=sharing, record_links=record_links)
    step = run.run()
    result = _summarise(fast, graph, run, step, sharing)
    offload = fast.breakdown.offload
    if offload > 0:
        # The host link is not simulated: its exposed time (perf.offload) is added to the step as the estimate has it.
        result = replace(
            result,
            step_time_s=step + offload,
            breakdown=dict(result.breakdown, offload=offload),
            critical_path_s=dict(result.critical_path_s, offload=offload),
        )
    return result


def _summarise(fast: StepEstimate, graph: StepGraph, run: StepRun, step: float, sharing: bool) -> SimulatedStep:
    intervals = run.intervals
    path = critical_path(intervals, run.end_interval)
    by_category: dict[str, float] = defaultdict(float)
    segments: list[PathSegment] = []
    reach = 0.0
    for item in path:
        if item.start_s > reach + 1e-12:
            by_category["wait"] += item.start_s - reach
        by_category[item.category] += item.end_s - max(item.start_s, reach)
        reach = max(reach, item.end_s)
        if segments and segments[-1].rank == item.rank and segments[-1].category == item.category:
            last = segments[-1]
            segments[-1] = PathSegment(rank=last.rank, category=last.category, start_s=last.start_s, end_s=item.end_s)
        else:
            segments.append(PathSegment(rank=item.rank, category=item.category, start_s=item.start_s, end_s=item.end_s))
    by_category["other"] = graph.step_overhead_s
    end_rank = intervals[run.end_interval].rank if run.end_interval >= 0 else 0
    busy: dict[str, dict[str, float]] = {}
    lanes: dict[int, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for item in intervals:
        lanes[item.rank]["compute" if item.lane == "compute" else "communication"].append((item.start_s, item.end_s))
        if item.lane != "compute":
            lanes[item.rank][item.category].append((item.start_s, item.end_s))
    for rank, spans in sorted(lanes.items()):
        busy[str(rank)] = {lane: union_length(s) / step for lane, s in spans.items()}
    uses = sorted(
        (LinkUse(rank=int(k[0]), link=k[1], utilisation=v / step) for k, v in run.network.link_busy_s.items()),
        key=lambda u: -u.utilisation,
    )
    return SimulatedStep(
        estimate=fast,
        step_time_s=step,
        sharing=sharing,
        num_rank_classes=len(graph.ranks),
        ranks_per_class=graph.ranks[0].ranks if graph.ranks else 0,
        num_operations=len(intervals),
        num_flows=run.network.num_flows,
        critical_path=tuple(segments),
        critical_path_s=dict(by_category),
        breakdown=_rank_breakdown(intervals, end_rank, graph, step),
        last_rank=end_rank,
        stream_busy=busy,
        busiest_links=tuple(uses[:TOP_LINKS]),
        contended_s=run.network.contended_s,
        slowed_s=run.network.slowed_s,
        intervals=tuple(intervals),
        link_busy_s=dict(run.network.link_busy_s),
        link_samples=tuple(run.network.samples or ()),
    )


def _rank_breakdown(intervals: list[Interval], rank: int, graph: StepGraph, step: float) -> dict[str, float]:
    """The last rank's step in the estimate's fields: its compute, blocking transfers (their time alone; the
    rest is contention), waiting before its last pass (bubble), its gradient wait, optimizer and overhead."""
    out = dict.fromkeys(
        ("compute", "recompute", "tp_comm", "cp_comm", "ep_comm", "dp_comm_exposed", "pp_comm", "link_contention"),
        0.0,
    )
    busy_end = 0.0
    optimizer_start = optimizer_end = 0.0
    occupied = 0.0
    for item in intervals:
        if item.rank != rank or item.lane not in ("compute", "comm"):
            continue
        if item.category == "optimizer":
            optimizer_start, optimizer_end = item.start_s, item.end_s
            continue
        length = item.end_s - item.start_s
        occupied += length
        busy_end = max(busy_end, item.end_s)
        if item.lane == "compute":
            out[COMPUTE_CATEGORIES.get(item.category, "compute")] += length
        else:
            key = COMM_CATEGORIES.get(item.category, "dp_comm_exposed")
            out[key] += item.work_s
            out["link_contention"] += length - item.work_s
    out["pipeline_bubble"] = max(busy_end - occupied, 0.0)
    out["dp_comm_exposed"] += max(optimizer_start - busy_end, 0.0)
    out["optimizer"] = optimizer_end - optimizer_start
    out["other"] = graph.step_overhead_s
    return out


__all__ = ["LinkUse", "PathSegment", "Schedule", "SimulatedStep", "simulate", "step_graph"]
