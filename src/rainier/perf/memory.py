"""Memory per rank at the peak of a training step: model state, activations in flight, buffers.

Model state is mixed-precision Adam, 2 + 2 + 12 bytes per parameter, sharded by ZeRO over the data-parallel
group (Rajbhandari et al. 2020, sec. 5); expert weights are split over ``ep`` and sharded over the expert
data-parallel group ``dp*cp/ep``. Activations follow Korthikanti et al. 2022 (eqs. 1-5, generalised in
``rainier.workload.memory``) with FlashAttention, times the micro-batches a stage keeps in flight: the first
stage of 1F1B holds ``min(p, m)`` (Narayanan et al. 2021, sec. 2.2), the interleaved schedule
``(1 + (p-1)/(p*v))`` times more per layer held (Korthikanti et al. 2022, sec. 4.2.3).
"""

from __future__ import annotations

from dataclasses import dataclass

from rainier.parallel.plan import Plan, Schedule
from rainier.perf.result import MemoryBreakdown
from rainier.units import GIB
from rainier.workload.memory import StateBytesPerParam, layer_activation_bytes
from rainier.workload.params import ParamCounts
from rainier.workload.shape import TransformerShape

# Framework reserve: CUDA/Neuron runtime context, allocator fragmentation and collective buffers. A fixed
# 1 GiB plus 5% of everything else is a common rule of thumb for PyTorch training jobs (stated assumption).
RESERVE_BYTES = 1.0 * GIB
RESERVE_FRACTION = 0.05
LOGIT_BYTES = 4.0  # fp32 logits kept for the loss's backward


@dataclass(frozen=True, slots=True)
class StageParams:
    """Parameters one rank holds on the most loaded (first) pipeline stage, split into dense and expert."""

    dense: float  # replicated over data parallelism (split by tp)
    expert: float  # split by ep (and expert tp = tp)


def stage_params(counts: ParamCounts, plan: Plan) -> StageParams:
    """Per-rank parameters of one pipeline stage: layers split evenly, embeddings on the end stages.

    The first stage holds the input embedding, the last the output head; the larger end is charged (with
    ``pp=1`` both). Tensor parallelism splits every matrix (Shoeybi et al. 2019); norms are replicated but small.
    """
    pp, tp = plan.pp_degree, plan.tp_degree
    dense_layers = counts.num_dense_layers * counts.dense_layer.total
    moe = counts.moe_layer
    expert_per_layer = moe.mlp if moe is not None else 0
    moe_dense = (moe.total - moe.mlp) if moe is not None else 0
    per_stage_dense = (dense_layers + counts.num_moe_layers * moe_dense) / pp
    ends = counts.embedding + counts.position_embedding
    if pp == 1:
        ends += counts.output_head + counts.final_norm
    else:
        ends = max(ends, counts.output_head + counts.final_norm)
    expert = counts.num_moe_layers * expert_per_layer / pp / (plan.ep_degree * tp)
    return StageParams(dense=(per_stage_dense + ends) / tp, expert=expert)


def in_flight_factor(plan: Plan) -> float:
    """How many micro-batches' activations the first stage holds at once."""
    p, v = plan.pp_degree, plan.vpp_degree
    held = float(min(p, plan.num_microbatches))
    if plan.schedule is Schedule.INTERLEAVED and p > 1:
        held *= 1 + (p - 1) / (p * v)
    elif plan.schedule is Schedule.GPIPE:
        held = float(plan.num_microbatches)
    return held


def memory_per_rank(
    shape: TransformerShape,
    counts: ParamCounts,
    plan: Plan,
    *,
    capacity_bytes: float,
) -> MemoryBreakdown:
    """Peak bytes on one rank of the first pipeline stage."""
    params = stage_params(counts, plan)
    state = StateBytesPerParam.mixed_precision_adam()
    dense_dp = plan.dp_degree * plan.cp_degree  # CP ranks hold replicas of the same weights
    expert_dp = max(dense_dp // plan.ep_degree, 1)
    zero = plan.zero_stage

    def shard(num: float, group: int, stage_needed: int) -> float:
        return num / group if zero >= stage_needed else num

    weights = state.weight * (shard(params.dense, dense_dp, 3) + shard(params.expert, expert_dp, 3))
    gradients = state.gradient * (shard(params.dense, dense_dp, 2) + shard(params.expert, expert_dp, 2))
    optimizer = state.optimizer * (shard(params.dense, dense_dp, 1) + shard(params.expert, expert_dp, 1))
    if plan.lora:  # frozen base weights: no gradients or optimizer state (adapters are negligible)
        gradients = optimizer = 0.0

    seq_local = shape.seq_len // plan.cp_degree
    common = {
        "micro_batch": plan.mbs,
        "seq_len": seq_local,
        "tp_degree": plan.tp_degree,
        "sequence_parallel": plan.sequence_parallel,
        "recompute": plan.recompute,
        "flash_attention": True,
    }
    per_layer_dense = layer_activation_bytes(shape, **common).total_bytes  # type: ignore[arg-type]
    per_layer_moe = (
        layer_activation_bytes(shape, moe_layer=True, **common).total_bytes  # type: ignore[arg-type]
        if shape.moe is not None
        else 0.0
    )
    layers = (shape.num_dense_layers * per_layer_dense + shape.num_moe_layers * per_layer_moe) / plan.pp_degree
    activations = layers * in_flight_factor(plan)
    if plan.pp_degree == 1:  # the loss's fp32 logits of the micro-batch being processed
        activations += LOGIT_BYTES * plan.mbs * seq_local * shape.vocab_size / plan.tp_degree
    subtotal = weights + gradients + optimizer + activations
    return MemoryBreakdown(
        weights=weights,
        gradients=gradients,
        optimizer=optimizer,
        activations=activations,
        buffers=RESERVE_BYTES + RESERVE_FRACTION * subtotal,
        capacity=capacity_bytes,
    )
