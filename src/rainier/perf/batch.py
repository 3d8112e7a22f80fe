"""The step model over arrays of plans: one code path for the scalar estimate and the vectorised search.

The model splits in two. Quantities that depend on a few plan fields only (one layer's pass times for a given
``tp, cp, ep, mbs, sp, precision, lora``; the activation bytes of a layer; the cost of a collective over a
placed group) are computed once per distinct key with the scalar functions of ``perf.compute``,
``perf.comm`` and ``workload.memory``, and gathered into arrays. Everything else (layers per stage, micro-batch
counts, recompute, pipeline bubble, data-parallel overlap, ZeRO sharding, memory) is numpy arithmetic over
all plans at once. ``perf.step.estimate`` calls this with a single plan, so the scalar and vectorised answers
are the same computation.

Every collective of ``perf.comm`` is linear in its message size once the group's levels are fixed (ring and
tree all-reduce share the bandwidth term and differ only in latency), so a placed group is summarised by
slope/intercept pairs (:class:`GroupCost`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rainier.hardware import Cluster
from rainier.parallel.placement import _machine_levels, place_axis
from rainier.parallel.plan import DegreeUnit, Plan, Recompute, Schedule
from rainier.perf.collectives import Level
from rainier.perf.comm import GroupCost, effective_levels, group_cost
from rainier.perf.compute import ACTIVATION_BYTES, PassTimes, Rank, head_pass, layer_pass
from rainier.perf.efficiency import Efficiency
from rainier.perf.memory import memory_per_rank, stage_params
from rainier.precision import Precision
from rainier.workload.flops import model_gemms
from rainier.workload.memory import layer_activation_bytes
from rainier.workload.params import ParamCounts, count_params
from rainier.workload.shape import TransformerShape

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

ZERO_BUBBLE_FRACTION = 1.0 / 3.0  # ZB-H1 leaves about a third of 1F1B's bubble (Qi et al. 2023, sec. 3)
GRAD_BYTES = 2.0  # gradients reduced in 16 bits
GRAD_ACCUM_BYTES_PER_PARAM = 10.0  # fp32 main-gradient accumulation: read 4 + read 2 + write 4 bytes
# Mixed-precision Adam step per local parameter (Megatron-LM's optimizer): read the fp32 main gradient twice
# (inf/NaN check, global norm) = 8; Adam reads master, gradient, m, v and writes master, m, v = 28; copy the
# fp32 master into the 16-bit model weight = 6 (Micikevicius et al. 2018; Rajbhandari et al. 2020 sec. 3).
OPTIMIZER_BYTES_PER_PARAM = 42.0
LORA_FLOP_FRACTION = 2.0 / 3.0  # forward (2N) + input gradients (2N) of full training's 6N (Hu et al. 2021)

RECOMPUTE_CODES = {Recompute.NONE: 0, Recompute.SELECTIVE: 1, Recompute.FULL: 2}
SCHEDULE_CODES = {Schedule.ONE_F_ONE_B: 0, Schedule.INTERLEAVED: 1, Schedule.ZERO_BUBBLE: 2, Schedule.GPIPE: 3}
PRECISION_CODES = {p: i for i, p in enumerate(Precision)}
_RECOMPUTES = {v: k for k, v in RECOMPUTE_CODES.items()}
_SCHEDULES = {v: k for k, v in SCHEDULE_CODES.items()}
_PRECISIONS = {v: k for k, v in PRECISION_CODES.items()}


@dataclass(frozen=True, slots=True)
class PlanColumns:
    """Plans as columns of equal length (integer codes for enums): the vectorised form of :class:`Plan`."""

    tp: IntArray
    pp: IntArray
    dp: IntArray
    cp: IntArray
    ep: IntArray
    vpp: IntArray
    mbs: IntArray
    gbs: IntArray
    sp: NDArray[np.bool_]
    zero: IntArray
    recompute: IntArray
    precision: IntArray
    schedule: IntArray
    lora: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.tp)

    @classmethod
    def from_plans(cls, plans: Sequence[Plan]) -> PlanColumns:
        def ints(values: list[int]) -> IntArray:
            return np.asarray(values, dtype=np.int64)

        return cls(
            tp=ints([p.tp_degree for p in plans]),
            pp=ints([p.pp_degree for p in plans]),
            dp=ints([p.dp_degree for p in plans]),
            cp=ints([p.cp_degree for p in plans]),
            ep=ints([p.ep_degree for p in plans]),
            vpp=ints([p.vpp_degree for p in plans]),
            mbs=ints([p.mbs for p in plans]),
            gbs=ints([p.gbs for p in plans]),
            sp=np.asarray([p.sequence_parallel for p in plans], dtype=bool),
            zero=ints([p.zero_stage for p in plans]),
            recompute=ints([RECOMPUTE_CODES[p.recompute] for p in plans]),
            precision=ints([PRECISION_CODES[p.precision] for p in plans]),
            schedule=ints([SCHEDULE_CODES[p.schedule] for p in plans]),
            lora=np.asarray([p.lora for p in plans], dtype=bool),
        )

    def take(self, index: IntArray | NDArray[np.bool_]) -> PlanColumns:
        """The plans selected by an index or mask."""
        return PlanColumns(**{name: getattr(self, name)[index] for name in self.__slots__})

    def plan_at(self, i: int, unit: DegreeUnit = DegreeUnit.DEVICE) -> Plan:
        """Row ``i`` as a :class:`Plan`."""
        return Plan(
            tp_degree=int(self.tp[i]),
            pp_degree=int(self.pp[i]),
            dp_degree=int(self.dp[i]),
            cp_degree=int(self.cp[i]),
            ep_degree=int(self.ep[i]),
            vpp_degree=int(self.vpp[i]),
            sequence_parallel=bool(self.sp[i]),
            zero_stage=int(self.zero[i]),
            mbs=int(self.mbs[i]),
            gbs=int(self.gbs[i]),
            recompute=_RECOMPUTES[int(self.recompute[i])],
            precision=_PRECISIONS[int(self.precision[i])],
            schedule=_SCHEDULES[int(self.schedule[i])],
            degrees_unit=unit,
            lora=bool(self.lora[i]),
        )


@dataclass(slots=True)
class StepContext:
    """What stays fixed while plans vary: model, cluster, efficiencies, and caches of per-key results."""

    shape: TransformerShape
    cluster: Cluster
    eff: Efficiency
    unit: DegreeUnit = DegreeUnit.DEVICE
    counts: ParamCounts = field(init=False)
    cores: int = field(init=False)
    _levels: list[Any] = field(init=False)
    _groups: dict[tuple[str, int, int], GroupCost] = field(init=False, default_factory=dict)
    _grad_groups: dict[tuple[int, int, int], GroupCost] = field(init=False, default_factory=dict)
    _passes: dict[tuple[int, ...], tuple[PassTimes, PassTimes | None, PassTimes]] = field(
        init=False, default_factory=dict
    )
    _activations: dict[tuple[int, ...], tuple[float, float]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = count_params(self.shape)
        self.cores = self.cluster.accelerator.num_logical_cores if self.unit is DegreeUnit.CORE else 1
        self._levels = _machine_levels(self.cluster, self.cores)

    # -- per-key scalar pieces -----------------------------------------------------------------------------
    def axis_levels(self, axis: str, degree: int, stride: int) -> list[Level]:
        placed = place_axis(axis, degree, stride, self._levels, self.cluster, self.cores)
        return effective_levels(placed.levels, self.eff)

    def group(self, axis: str, degree: int, stride: int) -> GroupCost:
        key = (axis, degree, stride)
        cost = self._groups.get(key)
        if cost is None:
            cost = group_cost(self.axis_levels(axis, degree, stride))
            self._groups[key] = cost
        return cost

    def grad_group(self, tp: int, cp: int, dp: int) -> GroupCost:
        """The gradient-reduction group: the context-parallel levels, then the data-parallel ones."""
        key = (tp, cp, dp)
        cost = self._grad_groups.get(key)
        if cost is None:
            cost = group_cost(self.axis_levels("cp", cp, tp) + self.axis_levels("dp", dp, tp * cp))
            self._grad_groups[key] = cost
        return cost

    def rank(self, precision: Precision) -> Rank:
        accelerator = self.cluster.accelerator
        peak16 = accelerator.peak_flop_per_s(Precision.BF16 if accelerator.supports(Precision.BF16) else Precision.FP16)
        return Rank(
            peak_16bit_flop_per_s=peak16 / self.cores,
            peak_matmul_flop_per_s=accelerator.peak_flop_per_s(precision) / self.cores,
            hbm_bw_bytes_per_s=accelerator.hbm_bw_bytes_per_s / self.cores,
            fp8=precision is Precision.FP8,
        )

    def passes(
        self, tp: int, cp: int, ep: int, mbs: int, sp: bool, precision: int, lora: bool
    ) -> tuple[PassTimes, PassTimes | None, PassTimes]:
        """Forward pass times of a dense layer, a MoE layer (or None) and the head for one micro-batch."""
        key = (tp, cp, ep, mbs, int(sp), precision, int(lora))
        found = self._passes.get(key)
        if found is not None:
            return found
        shape = self.shape
        seq_local = shape.seq_len // cp
        tokens = mbs * seq_local
        norm_tokens = tokens / tp if sp else float(tokens)
        rank = self.rank(_PRECISIONS[precision])
        gemms = model_gemms(shape, micro_batch=mbs, seq_len=seq_local, tp_degree=tp, ep_degree=ep)

        def timed(layer: Any) -> PassTimes:
            return layer_pass(
                shape,
                layer,
                rank=rank,
                eff=self.eff,
                tokens=tokens,
                norm_tokens=norm_tokens,
                tp_degree=tp,
                cp_degree=cp,
                weight_gradients=not lora,
            )

        result = (
            timed(gemms.dense_layer),
            timed(gemms.moe_layer) if gemms.moe_layer else None,
            head_pass(gemms.head, rank=rank, eff=self.eff, weight_gradients=not lora),
        )
        self._passes[key] = result
        return result

    def activations(self, tp: int, cp: int, mbs: int, sp: bool, recompute: int) -> tuple[float, float]:
        """Activation bytes of one dense and one MoE layer for one micro-batch (Korthikanti et al. 2022)."""
        key = (tp, cp, mbs, int(sp), recompute)
        found = self._activations.get(key)
        if found is None:
            shape = self.shape
            kwargs: dict[str, Any] = {
                "micro_batch": mbs,
                "seq_len": shape.seq_len // cp,
                "tp_degree": tp,
                "sequence_parallel": sp,
                "recompute": _RECOMPUTES[recompute],
                "flash_attention": True,
            }
            dense = layer_activation_bytes(shape, **kwargs).total_bytes
            moe = layer_activation_bytes(shape, moe_layer=True, **kwargs).total_bytes if shape.moe else 0.0
            found = (dense, moe)
            self._activations[key] = found
        return found


def _gather(keys: NDArray[np.int64], compute: Any) -> tuple[IntArray, list[Any]]:
    """Unique rows of ``keys``, the value of ``compute`` for each, and each plan's row index into them.

    Rows are encoded as one mixed-radix integer per plan so that a one-dimensional ``np.unique`` suffices
    (row-wise unique is several times slower); a single plan skips the sort altogether.
    """
    if len(keys) == 1:
        return np.zeros(1, dtype=np.int64), [compute(*(int(v) for v in keys[0]))]
    radix = keys.max(axis=0) + 1
    if float(np.prod(radix.astype(np.float64))) < 2.0**62:
        codes = np.ravel_multi_index(tuple(keys.T), tuple(int(r) for r in radix))
        unique_codes, inverse = np.unique(codes, return_inverse=True)
        rows = np.stack(np.unravel_index(unique_codes, tuple(int(r) for r in radix)), axis=1)
    else:
        rows, inverse = np.unique(keys, axis=0, return_inverse=True)
    return inverse.reshape(-1), [compute(*(int(v) for v in row)) for row in rows]


def _linear(costs: list[GroupCost], inverse: IntArray, kind: str) -> tuple[FloatArray, FloatArray]:
    slope = np.array([getattr(c, kind)[0] for c in costs])[inverse]
    intercept = np.array([getattr(c, kind)[1] for c in costs])[inverse]
    return slope, intercept


def _cost(coefficients: tuple[FloatArray, FloatArray], size: FloatArray) -> FloatArray:
    slope, intercept = coefficients
    return np.where(size > 0, slope * size + intercept, 0.0) * (slope > 0)


def _exposed(comm: FloatArray, window: FloatArray, buckets: FloatArray) -> FloatArray:
    """Part of a bucketed collective not hidden behind ``window`` of compute: at least its last bucket."""
    return np.where(comm > 0, np.maximum(comm - window, comm / buckets), 0.0)


BREAKDOWN_FIELDS = (
    "compute",
    "recompute",
    "tp_comm",
    "cp_comm",
    "ep_comm",
    "dp_comm_exposed",
    "pp_comm",
    "pipeline_bubble",
    "optimizer",
    "other",
)
MEMORY_FIELDS = ("weights", "gradients", "optimizer", "activations", "buffers")


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-plan arrays: step time, its breakdown, memory per rank, and FLOPs per step."""

    step_time_s: FloatArray
    breakdown: dict[str, FloatArray]
    memory: dict[str, FloatArray]
    capacity_bytes: float
    model_flops_per_step: FloatArray
    hardware_flops_per_step: FloatArray

    @property
    def memory_total(self) -> FloatArray:
        return sum((self.memory[k] for k in MEMORY_FIELDS), start=np.zeros_like(self.step_time_s))

    @property
    def fits(self) -> NDArray[np.bool_]:
        return self.memory_total <= self.capacity_bytes


def evaluate(
    ctx: StepContext, cols: PlanColumns, *, model_flops_per_token: float, hardware_flops_per_token: dict[int, float]
) -> BatchResult:
    """The step model for every plan of ``cols`` (all assumed valid: see ``search.space`` for the checks)."""
    shape, eff = ctx.shape, ctx.eff
    tp, pp, dp, cp, vpp, mbs = (getattr(cols, n).astype(np.float64) for n in ("tp", "pp", "dp", "cp", "vpp", "mbs"))
    full = cols.recompute == RECOMPUTE_CODES[Recompute.FULL]
    selective = cols.recompute == RECOMPUTE_CODES[Recompute.SELECTIVE]
    h = float(shape.hidden_dim)
    seq = float(shape.seq_len)
    tokens = mbs * np.floor_divide(shape.seq_len, cols.cp)
    norm_tokens = np.where(cols.sp, tokens / tp, tokens)

    # Per-key layer passes, gathered.
    pass_keys = np.stack(
        [cols.tp, cols.cp, cols.ep, cols.mbs, cols.sp.astype(np.int64), cols.precision, cols.lora.astype(np.int64)],
        axis=1,
    )
    inverse, passes = _gather(pass_keys, lambda *k: ctx.passes(k[0], k[1], k[2], k[3], bool(k[4]), k[5], bool(k[6])))

    def field_of(index: int, name: str) -> FloatArray:
        values = [getattr(p[index], name) if p[index] is not None else 0.0 for p in passes]
        return np.asarray(values, dtype=np.float64)[inverse]

    dense_fwd, dense_bwd, dense_att = field_of(0, "forward_s"), field_of(0, "backward_s"), field_of(0, "attention_s")
    moe_fwd, moe_bwd, moe_att = field_of(1, "forward_s"), field_of(1, "backward_s"), field_of(1, "attention_s")
    head_mb = field_of(2, "forward_s") + field_of(2, "backward_s")

    # Placed groups, gathered.
    def groups(axis: str, degree: IntArray, stride: IntArray) -> tuple[IntArray, list[GroupCost]]:
        return _gather(np.stack([degree, stride], axis=1), lambda d, s: ctx.group(axis, d, s))

    tp_inv, tp_costs = groups("tp", cols.tp, np.ones_like(cols.tp))
    cp_inv, cp_costs = groups("cp", cols.cp, cols.tp)
    ep_inv, ep_costs = groups("ep", cols.ep, cols.tp * cols.cp)
    dp_inv, dp_costs = groups("dp", cols.dp, cols.tp * cols.cp)
    pp_inv, pp_costs = groups("pp", cols.pp, cols.tp * cols.cp * cols.dp)
    grad_inv, grad_costs = _gather(np.stack([cols.tp, cols.cp, cols.dp], axis=1), ctx.grad_group)

    # Tensor parallelism: 2 all-reduces (or AG + RS pairs) of the layer's activations per pass, minus overlap.
    activation_bytes = ACTIVATION_BYTES * tokens * h
    tp_per_pass = 2.0 * _cost(_linear(tp_costs, tp_inv, "all_reduce"), activation_bytes) * eff.tp_comm_exposed
    # Context parallelism: cp-1 ring steps of the local keys and values per pass, hidden behind attention.
    kv_heads = np.maximum(np.floor_divide(shape.num_kv_heads, cols.tp), 1)
    kv_bytes = ACTIVATION_BYTES * tokens * 2 * kv_heads * shape.head_dim
    cp_ring = np.where(cols.cp > 1, (cp - 1) * _cost(_linear(cp_costs, cp_inv, "p2p"), kv_bytes), 0.0)
    # Expert parallelism: dispatch and combine all-to-alls of top_k copies of each token, per pass.
    if shape.moe is not None:
        routed = ACTIVATION_BYTES * norm_tokens * shape.moe.top_k * h
        ep_per_pass = np.where(cols.ep > 1, 2.0 * _cost(_linear(ep_costs, ep_inv, "all_to_all"), routed), 0.0)
    else:
        ep_per_pass = np.zeros_like(tp)

    n_dense = shape.num_dense_layers / pp
    n_moe = shape.num_moe_layers / pp
    layers = n_dense + n_moe
    fwd_compute = n_dense * dense_fwd + n_moe * moe_fwd
    bwd_compute = n_dense * dense_bwd + n_moe * moe_bwd
    attention_fwd = n_dense * dense_att + n_moe * moe_att
    overhead = eff.layer_overhead_s * layers
    tp_fwd = tp_per_pass * layers
    cp_fwd = np.where(
        cols.cp > 1, n_dense * np.maximum(0.0, cp_ring - dense_att) + n_moe * np.maximum(0.0, cp_ring - moe_att), 0.0
    )
    cp_bwd = np.where(
        cols.cp > 1,
        n_dense * np.maximum(0.0, 2 * cp_ring - 2 * dense_att) + n_moe * np.maximum(0.0, 2 * cp_ring - 2 * moe_att),
        0.0,
    )
    ep_fwd = ep_per_pass * n_moe

    recompute = np.where(
        full, fwd_compute + overhead + tp_fwd + cp_fwd + ep_fwd, np.where(selective, attention_fwd, 0.0)
    )
    recompute_comm = np.where(full, tp_fwd + cp_fwd + ep_fwd, 0.0)

    params_dense, params_expert = stage_params(ctx.counts, cols)
    hbm_rate = ctx.cluster.accelerator.hbm_bw_bytes_per_s / ctx.cores * eff.memory
    # Each micro-batch's weight gradients are added into an fp32 main-gradient buffer (Megatron-LM main_grad).
    accumulate = np.where(cols.lora, 0.0, GRAD_ACCUM_BYTES_PER_PARAM * (params_dense + params_expert) / hbm_rate)
    compute_mb = fwd_compute + bwd_compute + 2 * overhead + head_mb + accumulate
    tp_mb = 2 * tp_fwd + np.where(full, tp_fwd, 0.0)
    cp_mb = cp_fwd + cp_bwd + np.where(full, cp_fwd, 0.0)
    ep_mb = 2 * ep_fwd + np.where(full, ep_fwd, 0.0)
    recompute_mb = recompute - recompute_comm
    # Each TP rank sends 1/tp of the boundary activation; receivers all-gather it over the scale-up links
    # (scatter/gather optimisation, Narayanan et al. 2021 sec. 4.1; implicit with sequence parallelism).
    regather = np.where(cols.sp, 0.0, _cost(_linear(tp_costs, tp_inv, "reduce_scatter"), activation_bytes))
    pp_mb = np.where(
        cols.pp > 1, 2.0 * vpp * (_cost(_linear(pp_costs, pp_inv, "p2p"), activation_bytes / tp) + regather), 0.0
    )
    per_mb = compute_mb + tp_mb + cp_mb + ep_mb + recompute_mb + pp_mb

    m = np.floor_divide(cols.gbs, cols.dp * cols.mbs).astype(np.float64)
    body_mb = per_mb - head_mb
    bubble = np.where(cols.pp > 1, (pp - 1) / vpp * body_mb, 0.0)
    bubble = np.where(cols.schedule == SCHEDULE_CODES[Schedule.ZERO_BUBBLE], bubble * ZERO_BUBBLE_FRACTION, bubble)

    # Data parallelism: reduce-scatter behind the last backward, weight all-gather behind the next first forward
    # (ZeRO >= 1; Megatron-Core overlap-grad-reduce / overlap-param-gather), the last bucket always exposed;
    # FSDP also gathers weights for every micro-batch, behind all compute.
    dense_bytes = GRAD_BYTES * params_dense
    expert_bytes = GRAD_BYTES * params_expert
    grad_ar = _linear(grad_costs, grad_inv, "all_reduce")
    grad_rs = _linear(grad_costs, grad_inv, "reduce_scatter")
    dp_ar = _linear(dp_costs, dp_inv, "all_reduce")
    dp_rs = _linear(dp_costs, dp_inv, "reduce_scatter")
    zero0 = cols.zero == 0
    reduce = np.where(
        zero0,
        _cost(grad_ar, dense_bytes) + _cost(dp_ar, expert_bytes),
        _cost(grad_rs, dense_bytes) + _cost(dp_rs, expert_bytes),
    )
    reduce = np.where(cols.lora, 0.0, reduce)
    gather = np.where(zero0, 0.0, reduce)
    fwd_mb = fwd_compute + overhead + tp_fwd + cp_fwd + ep_fwd
    buckets = np.maximum(layers, 1.0)
    dp_exposed = _exposed(reduce, bwd_compute, buckets) + _exposed(gather, fwd_mb, buckets)
    fsdp = (cols.zero == 3) & ~cols.lora
    fsdp_gathers = 2.0 * _cost(grad_rs, dense_bytes + expert_bytes)
    dp_exposed = dp_exposed + np.where(fsdp, m * _exposed(fsdp_gathers, per_mb, buckets), 0.0)

    sharded = cols.zero >= 1
    opt_params = params_dense / np.where(sharded, dp * cp, 1.0) + params_expert / np.where(
        sharded, np.maximum(np.floor_divide(cols.dp * cols.cp, cols.ep), 1), 1.0
    )
    optimizer = np.where(cols.lora, 0.0, OPTIMIZER_BYTES_PER_PARAM * opt_params / hbm_rate)

    breakdown = {
        "compute": m * compute_mb,
        "recompute": m * recompute_mb,
        "tp_comm": m * tp_mb,
        "cp_comm": m * cp_mb,
        "ep_comm": m * ep_mb,
        "dp_comm_exposed": dp_exposed,
        "pp_comm": m * pp_mb,
        "pipeline_bubble": bubble,
        "optimizer": optimizer,
        "other": np.full_like(tp, eff.step_overhead_s),
    }
    step = sum((breakdown[k] for k in BREAKDOWN_FIELDS), start=np.zeros_like(tp))
    tokens_per_step = cols.gbs * seq
    lora_factor = np.where(cols.lora, LORA_FLOP_FRACTION, 1.0)
    hardware_per_token = np.array([hardware_flops_per_token[int(r)] for r in range(3)])[cols.recompute]
    return BatchResult(
        step_time_s=step,
        breakdown=breakdown,
        memory=memory_per_rank(shape, cols, params_dense, params_expert, m, *_layer_activations(ctx, cols)),
        capacity_bytes=ctx.cluster.accelerator.hbm_bytes / ctx.cores,
        model_flops_per_step=np.asarray(model_flops_per_token * tokens_per_step * lora_factor, dtype=np.float64),
        hardware_flops_per_step=hardware_per_token * tokens_per_step * lora_factor,
    )


def _layer_activations(ctx: StepContext, cols: PlanColumns) -> tuple[FloatArray, FloatArray]:
    """One dense and one MoE layer's activation bytes per micro-batch, for every plan."""
    keys = np.stack([cols.tp, cols.cp, cols.mbs, cols.sp.astype(np.int64), cols.recompute], axis=1)
    inverse, per_layer = _gather(keys, lambda t, c, b, s, r: ctx.activations(t, c, b, bool(s), r))
    return np.array([p[0] for p in per_layer])[inverse], np.array([p[1] for p in per_layer])[inverse]
