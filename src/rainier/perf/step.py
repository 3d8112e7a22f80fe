"""The training step model: one pure function of (workload, plan, system) -> StepEstimate.

Per micro-batch and pipeline stage: the forward and backward of the stage's layers (``perf.compute``), each
layer's tensor-parallel collectives on the critical path (two all-reduces, or all-gather + reduce-scatter with
sequence parallelism, in each direction: Shoeybi et al. 2019, Korthikanti et al. 2022 sec. 4.2.2), context-
parallel ring exchange of keys and values not hidden behind attention (Liu et al. 2023, ring attention),
expert-parallel all-to-all dispatch and combine (Lepikhin et al. 2020), activation recomputation, and the
point-to-point transfers between stages. Then the step: ``m`` micro-batches plus the schedule's bubble of
``(p-1)/v`` micro-batch times (Narayanan et al. 2021, sec. 2.2), the data-parallel gradient reduction not
hidden behind the last backward, the optimizer, and a fixed per-step overhead.
"""

from __future__ import annotations

from rainier.hardware import Cluster
from rainier.parallel.placement import AxisPlacement, place, ranks_per_device
from rainier.parallel.plan import Infeasible, InfeasibleKind, Plan, Recompute, Schedule, check_plan
from rainier.perf.comm import all_reduce_s, all_to_all_hier_s, effective_levels, p2p_s, reduce_scatter_s
from rainier.perf.compute import ACTIVATION_BYTES, PassTimes, Rank, head_pass, layer_pass
from rainier.perf.efficiency import Efficiency, EfficiencyTable, committed_efficiency
from rainier.perf.memory import memory_per_rank, stage_params
from rainier.perf.result import StepBreakdown, StepEstimate
from rainier.precision import Precision
from rainier.workload.flops import Gemm, hardware_flops_per_token, model_flops_per_token, model_gemms
from rainier.workload.params import count_params
from rainier.workload.shape import TransformerShape

ZERO_BUBBLE_FRACTION = 1.0 / 3.0  # ZB-H1 leaves about a third of 1F1B's bubble (Qi et al. 2023, sec. 3)
# Mixed-precision Adam step per local parameter (Megatron-LM's optimizer): read the fp32 main gradient twice
# (inf/NaN check, global norm) = 8; Adam reads master, gradient, m, v and writes master, m, v = 28; copy the
# fp32 master into the 16-bit model weight = 6 (Micikevicius et al. 2018; Rajbhandari et al. 2020 sec. 3).
OPTIMIZER_BYTES_PER_PARAM = 42.0
GRAD_BYTES = 2.0  # gradients reduced in 16 bits
GRAD_ACCUM_BYTES_PER_PARAM = 10.0  # fp32 main-gradient accumulation: read 4 + read 2 + write 4 bytes
LORA_FLOP_FRACTION = 2.0 / 3.0  # forward (2N) + input gradients (2N) of full training's 6N (Hu et al. 2021)


def _exposed(comm_s: float, window_s: float, buckets: float) -> float:
    """Part of a bucketed collective not hidden behind ``window_s`` of compute: at least its last bucket."""
    if comm_s <= 0.0:
        return 0.0
    return max(comm_s - window_s, comm_s / buckets)


def _efficiency(cluster: Cluster, efficiency: Efficiency | EfficiencyTable | None) -> tuple[Efficiency, str]:
    if isinstance(efficiency, Efficiency):
        return efficiency, "given"
    table = efficiency if efficiency is not None else committed_efficiency()
    return table.for_accelerator(cluster.accelerator), table.key_for(cluster.accelerator)


def _rank(cluster: Cluster, plan: Plan, cores: int) -> Rank:
    accelerator = cluster.accelerator
    peak16 = accelerator.peak_flop_per_s(Precision.BF16 if accelerator.supports(Precision.BF16) else Precision.FP16)
    return Rank(
        peak_16bit_flop_per_s=peak16 / cores,
        peak_matmul_flop_per_s=accelerator.peak_flop_per_s(plan.precision) / cores,
        hbm_bw_bytes_per_s=accelerator.hbm_bw_bytes_per_s / cores,
        fp8=plan.precision is Precision.FP8,
    )


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
    eff, eff_key = _efficiency(cluster, efficiency)
    rank = _rank(cluster, plan, cores)
    placement = place(plan, cluster)
    return _estimate(shape, plan, cluster, eff, eff_key, rank, placement, cores)


def _estimate(
    shape: TransformerShape,
    plan: Plan,
    cluster: Cluster,
    eff: Efficiency,
    eff_key: str,
    rank: Rank,
    placement: tuple[AxisPlacement, ...],
    cores: int,
) -> StepEstimate:
    tp_axis, cp_axis, ep_axis, dp_axis, pp_axis = placement
    tp, pp, cp, v = plan.tp_degree, plan.pp_degree, plan.cp_degree, plan.vpp_degree
    seq_local = shape.seq_len // cp
    tokens = plan.mbs * seq_local
    norm_tokens = tokens / tp if plan.sequence_parallel else float(tokens)
    gemms = model_gemms(shape, micro_batch=plan.mbs, seq_len=seq_local, tp_degree=tp, ep_degree=plan.ep_degree)
    trains_weights = not plan.lora

    def timed(layer: tuple[Gemm, ...]) -> PassTimes:
        return layer_pass(
            shape,
            layer,
            rank=rank,
            eff=eff,
            tokens=tokens,
            norm_tokens=norm_tokens,
            tp_degree=tp,
            cp_degree=cp,
            weight_gradients=trains_weights,
        )

    dense = timed(gemms.dense_layer)
    moe = timed(gemms.moe_layer) if gemms.moe_layer else None
    head = head_pass(gemms.head, rank=rank, eff=eff, weight_gradients=trains_weights)

    tp_levels = effective_levels(tp_axis.levels, eff)
    cp_levels = effective_levels(cp_axis.levels, eff)
    ep_levels = effective_levels(ep_axis.levels, eff)
    dp_levels = effective_levels(dp_axis.levels, eff)
    pp_levels = effective_levels(pp_axis.levels, eff)

    # Tensor parallelism: 2 all-reduces (or AG + RS pairs) of the layer's activations per pass (Korthikanti 2022).
    activation_bytes = ACTIVATION_BYTES * tokens * shape.hidden_dim
    tp_per_pass = 2.0 * all_reduce_s(activation_bytes, tp_levels) * eff.tp_comm_exposed
    # Context parallelism: cp-1 ring steps of the local keys and values per pass, hidden behind attention.
    kv_bytes = ACTIVATION_BYTES * tokens * 2 * max(shape.num_kv_heads // tp, 1) * shape.head_dim
    cp_ring = (cp - 1) * p2p_s(kv_bytes, cp_levels) if cp > 1 else 0.0

    def cp_exposed(times: PassTimes, factor: float) -> float:
        return max(0.0, factor * cp_ring - factor * times.attention_s) if cp > 1 else 0.0

    # Expert parallelism: dispatch and combine all-to-alls of top_k copies of each token, per pass.
    ep_per_pass = 0.0
    if shape.moe is not None and plan.ep_degree > 1:
        routed_bytes = ACTIVATION_BYTES * norm_tokens * shape.moe.top_k * shape.hidden_dim
        ep_per_pass = 2.0 * all_to_all_hier_s(routed_bytes, ep_levels)

    n_dense = shape.num_dense_layers / pp
    n_moe = shape.num_moe_layers / pp
    layers = n_dense + n_moe
    fwd_compute = n_dense * dense.forward_s + (n_moe * moe.forward_s if moe else 0.0)
    bwd_compute = n_dense * dense.backward_s + (n_moe * moe.backward_s if moe else 0.0)
    attention_fwd = n_dense * dense.attention_s + (n_moe * moe.attention_s if moe else 0.0)
    overhead = eff.layer_overhead_s * layers
    tp_fwd = tp_per_pass * layers
    cp_fwd = n_dense * cp_exposed(dense, 1.0) + (n_moe * cp_exposed(moe, 1.0) if moe else 0.0)
    cp_bwd = n_dense * cp_exposed(dense, 2.0) + (n_moe * cp_exposed(moe, 2.0) if moe else 0.0)
    ep_fwd = ep_per_pass * n_moe

    if plan.recompute is Recompute.FULL:
        recompute = fwd_compute + overhead + tp_fwd + cp_fwd + ep_fwd
        recompute_comm = tp_fwd + cp_fwd + ep_fwd
    elif plan.recompute is Recompute.SELECTIVE:
        recompute, recompute_comm = attention_fwd, 0.0
    else:
        recompute, recompute_comm = 0.0, 0.0

    counts = count_params(shape)
    params = stage_params(counts, plan)
    # Each micro-batch's weight gradients are added into an fp32 main-gradient buffer (Megatron-LM's
    # main_grad; Narayanan et al. 2021): read fp32, read the 16-bit gradient, write fp32 per local parameter.
    accumulate = (
        0.0
        if plan.lora
        else GRAD_ACCUM_BYTES_PER_PARAM * (params.dense + params.expert) / (rank.hbm_bw_bytes_per_s * eff.memory)
    )
    compute_mb = fwd_compute + bwd_compute + 2 * overhead + head.forward_s + head.backward_s + accumulate
    tp_mb = 2 * tp_fwd + (recompute_comm and tp_fwd)
    cp_mb = cp_fwd + cp_bwd + (cp_fwd if plan.recompute is Recompute.FULL else 0.0)
    ep_mb = 2 * ep_fwd + (ep_fwd if plan.recompute is Recompute.FULL else 0.0)
    recompute_mb = recompute - recompute_comm
    # Each TP rank sends 1/tp of the boundary activation and the receivers all-gather it over the scale-up
    # links (scatter/gather optimisation, Narayanan et al. 2021 sec. 4.1; implicit with sequence parallelism).
    stage_activation_bytes = activation_bytes / tp
    regather = 0.0 if plan.sequence_parallel else reduce_scatter_s(activation_bytes, tp_levels)
    pp_mb = 2.0 * v * (p2p_s(stage_activation_bytes, pp_levels) + regather) if pp > 1 else 0.0
    per_mb = compute_mb + tp_mb + cp_mb + ep_mb + recompute_mb + pp_mb

    m = plan.num_microbatches
    head_mb = head.forward_s + head.backward_s
    body_mb = per_mb - head_mb
    bubble = (pp - 1) / v * body_mb if pp > 1 else 0.0
    if plan.schedule is Schedule.ZERO_BUBBLE:
        bubble *= ZERO_BUBBLE_FRACTION

    # Data parallelism: reduce the stage's gradients over dp*cp (experts over dp*cp/ep). The reduction runs
    # bucket by bucket behind the last micro-batch's backward; with ZeRO >= 1 the updated weights are all-gathered
    # behind the next step's first forward (Megatron-Core --overlap-grad-reduce / --overlap-param-gather). The
    # last bucket (one layer's worth) of each is always exposed. FSDP (ZeRO-3) also gathers weights for every
    # micro-batch's forward and backward, hidden behind all compute.
    grad_levels = cp_levels + dp_levels
    dense_bytes = GRAD_BYTES * params.dense
    expert_bytes = GRAD_BYTES * params.expert
    fwd_mb = fwd_compute + overhead + tp_fwd + cp_fwd + ep_fwd
    if plan.lora:  # frozen base: only the (negligible) adapter gradients are reduced
        reduce, gather = 0.0, 0.0
    elif plan.zero_stage == 0:
        reduce, gather = all_reduce_s(dense_bytes, grad_levels) + all_reduce_s(expert_bytes, dp_levels), 0.0
    else:
        reduce = reduce_scatter_s(dense_bytes, grad_levels) + reduce_scatter_s(expert_bytes, dp_levels)
        gather = reduce
    buckets = max(layers, 1.0)
    dp_exposed = _exposed(reduce, bwd_compute, buckets) + _exposed(gather, fwd_mb, buckets)
    if plan.zero_stage == 3:
        per_micro_batch_gathers = 2.0 * reduce_scatter_s(dense_bytes + expert_bytes, grad_levels)
        dp_exposed += m * _exposed(per_micro_batch_gathers, per_mb, buckets)

    optimizer_params = params.dense / (plan.dp_degree * cp if plan.zero_stage >= 1 else 1) + params.expert / (
        max(plan.dp_degree * cp // plan.ep_degree, 1) if plan.zero_stage >= 1 else 1
    )
    if plan.lora:
        optimizer_params = 0.0  # adapters only (Hu et al. 2021: under 1% of the weights)
    optimizer = OPTIMIZER_BYTES_PER_PARAM * optimizer_params / (rank.hbm_bw_bytes_per_s * eff.memory)

    breakdown = StepBreakdown(
        compute=m * compute_mb,
        recompute=m * recompute_mb,
        tp_comm=m * tp_mb,
        cp_comm=m * cp_mb,
        ep_comm=m * ep_mb,
        dp_comm_exposed=dp_exposed,
        pp_comm=m * pp_mb,
        pipeline_bubble=bubble,
        optimizer=optimizer,
        other=eff.step_overhead_s,
    )
    step = breakdown.total
    tokens_per_step = plan.gbs * shape.seq_len
    devices = cluster.num_devices
    # Model FLOPs as Megatron-LM and NeMo count them (full attention matrix; validation README, convention 8).
    model_flops = model_flops_per_token(shape, causal=False) * tokens_per_step
    hardware_flops = hardware_flops_per_token(shape, causal=False, recompute=plan.recompute) * tokens_per_step
    if plan.lora:  # no weight-gradient GEMMs: forward + input gradients, 2/3 of full training's matmuls
        model_flops *= LORA_FLOP_FRACTION
        hardware_flops *= LORA_FLOP_FRACTION
    peak = cluster.accelerator.peak_flop_per_s(plan.precision)
    memory = memory_per_rank(shape, counts, plan, capacity_bytes=cluster.accelerator.hbm_bytes / cores)
    warnings = tuple(a.warning for a in placement if a.warning)
    if not memory.fits:
        warnings += (
            f"does not fit: {memory.total / 2**30:.1f} GiB needed per rank > {memory.capacity / 2**30:.1f} GiB",
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
        warnings=warnings,
    )
