"""The training step model: one pure function of (workload, plan, system) -> StepEstimate.

Per micro-batch and pipeline rank: the forward, input-gradient and weight-gradient passes of the rank's layers
(``perf.compute``: GEMMs by shape, attention, memory-bound kernels), each layer's tensor-parallel collectives
(two all-reduces, or all-gather + reduce-scatter with sequence parallelism, per direction: Shoeybi et al. 2019,
Korthikanti et al. 2022 sec. 4.2.2), the context-parallel ring exchange of keys and values behind attention
(Liu et al. 2023), the expert-parallel all-to-all dispatch and combine (Lepikhin et al. 2020), activation
recomputation and the point-to-point transfers between stages, all laid on the links they use and sharing them
(``perf.links``, ``perf.batch``). Then the step: the slowest rank's ``m`` micro-batches plus the schedule's
bubble (``perf.schedule``: 1F1B, interleaved, ZB-H1, ZB-V, DualPipe, GPipe), the data-parallel traffic not
hidden, the optimizer, a fixed per-step overhead, and never less than the busiest link's load.

The arithmetic lives in ``perf.batch`` and runs on arrays of plans; a single estimate is a batch of one, so the
scalar answer and the vectorised search's answer are the same computation.
"""

from __future__ import annotations

import functools

from rainier.hardware import Cluster
from rainier.parallel.placement import place, ranks_per_device
from rainier.parallel.plan import DegreeUnit, Fp8Recipe, Infeasible, InfeasibleKind, Plan, check_plan
from rainier.perf.batch import BREAKDOWN_FIELDS, MEMORY_FIELDS, BatchResult, evaluate
from rainier.perf.columns import RECOMPUTE_CODES, PlanColumns
from rainier.perf.context import StepContext
from rainier.perf.efficiency import Efficiency, EfficiencyTable, committed_efficiency
from rainier.perf.result import MemoryBreakdown, StepBreakdown, StepEstimate
from rainier.workload.flops import hardware_flops_per_token, model_flops_per_token
from rainier.workload.shape import TransformerShape


def resolve_efficiency(cluster: Cluster, efficiency: Efficiency | EfficiencyTable | None) -> tuple[Efficiency, str]:
    """The efficiency set for ``cluster``'s accelerator and the catalog key it came from."""
    if isinstance(efficiency, Efficiency):
        return efficiency, "given"
    table = efficiency if efficiency is not None else committed_efficiency()
    return table.for_accelerator(cluster.accelerator), table.key_for(cluster.accelerator)


def plan_problem(shape: TransformerShape, plan: Plan, cluster: Cluster) -> Infeasible | None:
    """Why ``plan`` cannot run ``shape`` on ``cluster`` (divisibility, precision), or ``None``."""
    cores = ranks_per_device(plan, cluster)
    num_experts = shape.moe.num_experts if shape.moe is not None else None
    problem = check_plan(plan, shape, cluster.num_devices * cores, num_experts=num_experts)
    if problem is not None:
        return problem
    if shape.seq_len % plan.cp_degree:
        return Infeasible(InfeasibleKind.DIVISIBILITY, f"seq_len {shape.seq_len} not divisible by cp={plan.cp_degree}")
    if not cluster.accelerator.supports(plan.precision):
        supported = ", ".join(p.value for p in cluster.accelerator.precisions)
        return Infeasible(
            InfeasibleKind.UNSUPPORTED,
            f"{cluster.accelerator.id} has no {plan.precision.value} matmuls (has {supported})",
        )
    if plan.offload:
        missing = [
            name
            for name, value in (
                ("host link bandwidth", cluster.accelerator.host_link_bw_bytes_per_s),
                ("host memory", cluster.accelerator.host_memory_bytes),
            )
            if value is None
        ]
        if missing:
            return Infeasible(
                InfeasibleKind.UNSUPPORTED,
                f"offload={'+'.join(plan.offload)} needs the host link of {cluster.accelerator.id}, but the catalog "
                f"has no cited {' or '.join(missing)} for it; use offload=none",
            )
    if plan.fp8_recipe is Fp8Recipe.MXFP8 and not cluster.accelerator.microscaling:
        return Infeasible(
            InfeasibleKind.UNSUPPORTED,
            f"{cluster.accelerator.id} has no MX (microscaling) matmuls: fp8_recipe=mxfp8 needs Blackwell or "
            "Trainium3; use tensorwise, delayed or blockwise",
        )
    return None


@functools.lru_cache(maxsize=64)
def step_context(shape: TransformerShape, cluster: Cluster, eff: Efficiency, unit: DegreeUnit) -> StepContext:
    """A context with its per-key caches, reused across estimates of the same model, cluster and efficiencies."""
    return StepContext(shape=shape, cluster=cluster, eff=eff, unit=unit)


@functools.lru_cache(maxsize=64)
def flops_per_token_table(shape: TransformerShape) -> tuple[float, dict[int, float]]:
    """Model FLOPs per token and hardware FLOPs per token by recompute code (Megatron's full-matrix counting)."""
    model = model_flops_per_token(shape, causal=False)
    hardware = {code: hardware_flops_per_token(shape, causal=False, recompute=r) for r, code in RECOMPUTE_CODES.items()}
    return model, hardware


def estimate(
    shape: TransformerShape,
    plan: Plan,
    cluster: Cluster,
    *,
    efficiency: Efficiency | EfficiencyTable | None = None,
    seq_len: int | None = None,
) -> StepEstimate | Infeasible:
    """Estimate one training step of ``shape`` under ``plan`` on all of ``cluster``'s devices.

    Returns :class:`Infeasible` for plans that do not divide the model or the cluster, or that ask for a
    precision the accelerator lacks; a plan that does not fit in memory is still estimated (``fits`` false).
    """
    if seq_len is not None:
        shape = shape.with_seq_len(seq_len)
    problem = plan_problem(shape, plan, cluster)
    if problem is not None:
        return problem
    eff, eff_key = resolve_efficiency(cluster, efficiency)
    ctx = step_context(shape, cluster, eff, plan.degrees_unit)
    model_flops, hardware_flops = flops_per_token_table(shape)
    batch = evaluate(
        ctx, PlanColumns.from_plans([plan]), model_flops_per_token=model_flops, hardware_flops_per_token=hardware_flops
    )
    return estimate_from_batch(batch, 0, shape=shape, plan=plan, cluster=cluster, eff_key=eff_key)


def estimate_from_batch(
    batch: BatchResult, i: int, *, shape: TransformerShape, plan: Plan, cluster: Cluster, eff_key: str
) -> StepEstimate:
    """Row ``i`` of a batch evaluation as a full :class:`StepEstimate` (with placement and warnings)."""
    step = float(batch.step_time_s[i])
    breakdown = StepBreakdown(**{k: float(batch.breakdown[k][i]) for k in BREAKDOWN_FIELDS})
    loads = {name: float(batch.link_load_s[i, j]) for j, name in enumerate(batch.link_names)}
    memory = MemoryBreakdown(
        **{k: float(batch.memory[k][i]) for k in MEMORY_FIELDS},
        capacity=float(batch.capacity_bytes[i]),
        host=float(batch.host_offloaded[i]),
        host_capacity=float(batch.host_capacity[i]),
    )
    placement = place(plan, cluster)
    tokens_per_step = plan.gbs * shape.seq_len
    devices = cluster.num_devices
    peak = cluster.accelerator.peak_flop_per_s(plan.precision)
    model_flops = float(batch.model_flops_per_step[i])
    hardware_flops = float(batch.hardware_flops_per_step[i])
    warnings = tuple(a.warning for a in placement if a.warning)
    if cluster.wan_links:
        warnings += (
            f"{cluster.id} spans {len(cluster.sites)} sites: this step treats them as one network; "
            "`rainier fleet sites` adds the WAN",
        )
    if memory.total > memory.capacity:
        warnings += (
            f"does not fit: {memory.total / 2**30:.1f} GiB needed per rank > {memory.capacity / 2**30:.1f} GiB",
        )
    if memory.host > memory.host_capacity:
        warnings += (
            f"offload does not fit the host: {memory.host / 2**30:.1f} GiB per rank > "
            f"{memory.host_capacity / 2**30:.1f} GiB of host memory",
        )
    return StepEstimate(
        model=shape.name,
        cluster=cluster.id,
        accelerator=cluster.accelerator.id,
        num_devices=devices,
        plan=plan,
        seq_len=shape.seq_len,
        step_time_s=step,
        tokens_per_s=tokens_per_step / step,
        tokens_per_s_per_device=tokens_per_step / step / devices,
        model_flops_per_step=model_flops,
        hardware_flops_per_step=hardware_flops,
        model_flops_per_s_per_device=model_flops / step / devices,
        mfu=model_flops / step / devices / peak,
        hfu=hardware_flops / step / devices / peak,
        peak_flop_per_s_per_device=peak,
        breakdown=breakdown,
        memory=memory,
        placement=placement,
        efficiency_key=eff_key,
        link_load_s=loads,
        warnings=warnings,
    )
