"""The step model over arrays of plans: one code path for the scalar estimate, the search and the fit.

Two phases. :func:`prepare` turns plans into arrays that do not depend on the fitted efficiencies: message sizes,
collective slopes at full link rate, link loads, layer-pass times as linear forms over the inverse efficiencies
(``perf.compute``), the pipeline's rank rows, memory and FLOPs. :func:`assemble` applies an
:class:`~rainier.perf.efficiency.Efficiency` and does the rest. ``perf.step.estimate`` runs both on a single plan,
the search on chunks of plans, and the fit prepares every validation case once and re-assembles all of them
together for each trial of the efficiencies (:meth:`Prepared.concat`). What depends on only a few columns (pass
forms, placed groups, pipeline rank rows, activation bytes) comes from per-key tables (``perf.keys``) that
:func:`evaluate` finds once for the whole batch and every chunk gathers from. Where numba is installed,
:func:`evaluate` runs ``prepare`` and ``assemble`` of each chunk as one compiled pass per plan (``perf.fused``),
with the same results to the bit.

**Windows.** One micro-batch on one pipeline rank is a forward window and a backward window. In each, compute
runs; some communication blocks it (tensor-parallel collectives without overlap, the expert all-to-all without
overlap, pipeline sends of the non-overlapping schedules, the part of the context-parallel exchange attention
cannot hide); other transfers run beside it (overlapped TP, CP and EP traffic, FSDP gathers, overlapped pipeline
sends). Every transfer also loads the link classes it uses (``perf.links``). A window lasts

    T = max(compute + blocking communication, busiest link's load, longest overlapped transfer)

so transfers that run at the same time share each link's bandwidth, and no window is shorter than its busiest
link. The data-parallel gradient reduction joins the last backward window of each rank (Megatron
``overlap_grad_reduce``), the parameter all-gather its first forward window (``overlap_param_gather``); what
they lengthen those windows by, less the rank's lead in the pipeline drain, is the exposed data-parallel time.
The pipeline (``perf.schedule``) turns per-rank micro-batch times into the steady state and the schedule's
bubble. Finally the step can never be shorter than any rank's whole-step load on any link class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rainier.parallel.plan import RECOMPUTE_MODULES, Recompute, Schedule
from rainier.perf import fused, kernel
from rainier.perf.batch_result import BREAKDOWN_FIELDS, BatchResult
from rainier.perf.columns import (
    PRECISION_CODES,
    RECOMPUTE_CODES,
    SCHEDULE_CODES,
    PlanColumns,
    recompute_share,
    shard_groups,
)
from rainier.perf.compute import ACTIVATION_BYTES, LORA_FLOP_FRACTION, inverse_efficiencies
from rainier.perf.context import StepContext
from rainier.perf.efficiency import Efficiency
from rainier.perf.keys import COMM_KINDS, PlanKeys, plan_keys
from rainier.perf.memory import MEMORY_FIELDS, RESERVE_BYTES, RESERVE_FRACTION, memory_per_rank, row_params
from rainier.perf.offload import offload_time, prepare_offload
from rainier.perf.parts import (
    GRAD_ACCUM_BYTES_PER_PARAM,
    GRAD_BYTES,
    OPTIMIZER_BYTES_PER_PARAM,
    PARAM_BYTES,
    window_parts,
)
from rainier.perf.schedule import in_flight, parameter_copies, pipeline_time

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Schedules whose pipeline sends overlap compute, by schedule code.
OVERLAPPED_P2P = np.isin(
    np.arange(len(SCHEDULE_CODES)),
    [SCHEDULE_CODES[Schedule.INTERLEAVED], SCHEDULE_CODES[Schedule.ZB_V], SCHEDULE_CODES[Schedule.DUALPIPE]],
)
DUALPIPE = SCHEDULE_CODES[Schedule.DUALPIPE]
FULL_CODE = RECOMPUTE_CODES[Recompute.FULL]
# Bit i of every selective-recompute mask (perf.columns.recompute_mask), as floats: (modules x masks).
RECOMPUTE_BITS = ((np.arange(1 << len(RECOMPUTE_MODULES)) >> np.arange(len(RECOMPUTE_MODULES))[:, None]) & 1).astype(
    np.float64
)


# ----------------------------------------------------------------------------------------------------------------
# Prepared plans
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    """Plans turned into efficiency-free arrays (see the module docstring).

    ``plan`` arrays have one value per plan, ``rows`` one per plan and pipeline rank row (padded with zero-count
    rows), ``links`` one per plan and link class (padded with zero loads), ``passes`` is a table of pass forms
    (unique keys x layer kinds x :data:`PASS_FIELDS` x forms) indexed by ``pass_index``.
    """

    plan: dict[str, FloatArray]
    rows: dict[str, FloatArray]
    links: dict[str, FloatArray]
    passes: FloatArray
    pass_index: IntArray
    memory: dict[str, FloatArray]
    link_names: tuple[str, ...]
    # Collectives (COMM_KINDS) per distinct placed group: (slope up, slope out, intercept) and per-link loads,
    # and each plan's index into them.
    comm_slopes: dict[str, FloatArray]
    comm_loads: dict[str, FloatArray]
    comm_index: dict[str, IntArray]

    def __len__(self) -> int:
        return len(self.pass_index)

    def gathered(self) -> tuple[dict[str, FloatArray], dict[str, FloatArray]]:
        """``plan`` and ``links`` with every plan's collective slopes (``<kind>_up/_out/_icpt``) and loads."""
        plan, links = dict(self.plan), dict(self.links)
        for name in COMM_KINDS:
            index = self.comm_index[name]
            table = self.comm_slopes[name][index]
            plan[f"{name}_up"], plan[f"{name}_out"], plan[f"{name}_icpt"] = table[:, 0], table[:, 1], table[:, 2]
            links[name] = self.comm_loads[name][index]
        return plan, links

    @classmethod
    def concat(cls, items: list[Prepared]) -> Prepared:
        """Several prepared batches as one (rows and link classes padded), e.g. every validation case."""
        width = max(next(iter(p.rows.values())).shape[1] for p in items)
        links = max(next(iter(p.links.values())).shape[1] for p in items)

        def pad(x: FloatArray, size: int) -> FloatArray:
            if x.shape[1] == size:
                return x
            out = np.zeros((x.shape[0], size), dtype=x.dtype)
            out[:, : x.shape[1]] = x
            return out

        offsets = np.cumsum([0] + [len(p.passes) for p in items[:-1]])

        def stacked(name: str) -> tuple[FloatArray, FloatArray, IntArray]:
            starts = np.cumsum([0] + [len(p.comm_slopes[name]) for p in items[:-1]])
            return (
                np.concatenate([p.comm_slopes[name] for p in items]),
                np.concatenate([pad(p.comm_loads[name], links) for p in items]),
                np.concatenate([p.comm_index[name] + o for p, o in zip(items, starts, strict=True)]),
            )

        comms = {name: stacked(name) for name in COMM_KINDS}
        return cls(
            plan={k: np.concatenate([p.plan[k] for p in items]) for k in items[0].plan},
            rows={k: np.concatenate([pad(p.rows[k], width) for p in items]) for k in items[0].rows},
            links={k: np.concatenate([pad(p.links[k], links) for p in items]) for k in items[0].links},
            passes=np.concatenate([p.passes for p in items]),
            pass_index=np.concatenate([p.pass_index + o for p, o in zip(items, offsets, strict=True)]),
            memory={k: np.concatenate([p.memory[k] for p in items]) for k in items[0].memory},
            link_names=(),
            comm_slopes={name: c[0] for name, c in comms.items()},
            comm_loads={name: c[1] for name, c in comms.items()},
            comm_index={name: c[2] for name, c in comms.items()},
        )


def prepare(
    ctx: StepContext,
    cols: PlanColumns,
    *,
    model_flops_per_token: float,
    hardware_flops_per_token: dict[int, float],
    keys: PlanKeys | None = None,
) -> Prepared:
    """The efficiency-free arrays of every plan of ``cols`` (all assumed valid: ``search.space`` checks).

    ``keys``: the per-key tables of ``cols`` (``perf.keys.plan_keys``; by default found here).
    """
    keys = keys if keys is not None else plan_keys(ctx, cols)
    shape = ctx.shape
    n = len(cols)
    f64 = np.float64
    tp, pp, dp, cp, mbs = (getattr(cols, k).astype(f64) for k in ("tp", "pp", "dp", "cp", "mbs"))
    chunks_i = cols.chunks
    etp_i = cols.expert_tp
    h = float(shape.hidden_dim)
    tokens = mbs * np.floor_divide(shape.seq_len, cols.cp)
    norm_tokens = np.where(cols.sp, tokens / tp, tokens)
    moe = shape.moe
    top_k = float(moe.top_k) if moe is not None else 0.0

    plan: dict[str, FloatArray] = {}
    links: dict[str, FloatArray] = {}
    edp = np.maximum(np.floor_divide(cols.tp * cols.dp * cols.cp, etp_i * cols.ep), 1)
    dshard, eshard = shard_groups(cols.dp, cols.cp, edp, cols.shard)
    links["scale_out"] = np.broadcast_to(ctx.scale_out_mask, (n, len(ctx.link_names))).copy()

    # Message sizes (bytes, per rank) and flags.
    activation = ACTIVATION_BYTES * tokens * h
    plan["activation"] = activation
    plan["routed"] = top_k * activation * etp_i / tp  # expert-TP pair over the routed tokens (times the load)
    plan["ep_bytes"] = ACTIVATION_BYTES * norm_tokens * top_k * h  # one all-to-all (times the expert load)
    # Scale-out share of the dispatch: plainly, top_k copies of which (D-1)/D leave the domain; deduplicated
    # (DeepEP, or node-limited routing as in DeepSeek-V3), one copy per distinct remote domain, of which a token
    # reaches (D-1)(1 - (1 - 1/D)^top_k) on average with uniform routing, at most the routing limit.
    # (Per expert-parallel group, then gathered; 1 wherever no plan deduplicates.)
    dedup = cols.ep_dedup | (cols.ep_domains > 0)
    if top_k > 0 and dedup.any():
        domains = np.maximum(keys.ep_domains, 1.0)
        plain_g = top_k * (domains - 1.0) / domains
        distinct_g = (domains - 1.0) * (1.0 - (1.0 - 1.0 / domains) ** top_k)
        ep_index = keys.comm_index["ep_a2a"]
        plain, distinct = plain_g.take(ep_index), distinct_g.take(ep_index)
        limit = np.where(cols.ep_domains > 0, cols.ep_domains.astype(f64), np.inf)
        plan["ep_dedup"] = np.where(
            (plain > 0) & dedup, np.minimum(1.0, np.minimum(distinct, limit) / np.maximum(plain, 1e-9)), 1.0
        )
    else:
        plan["ep_dedup"] = np.ones(n)
    if shape.mla is not None:  # MLA keys and values travel expanded, per local head (ring attention over K, V)
        kv_bytes = ACTIVATION_BYTES * tokens * (shape.num_heads / tp) * (shape.qk_head_dim + shape.v_head_dim)
    else:
        kv_heads = np.maximum(np.floor_divide(shape.num_kv_heads, cols.tp), 1)
        kv_bytes = ACTIVATION_BYTES * tokens * kv_heads * 2.0 * shape.head_dim
    plan["kv_bytes"] = kv_bytes
    plan["pp_bytes"] = activation / tp  # scatter/gather: 1/tp of the boundary activation per rank
    plan.update(
        m=np.floor_divide(cols.gbs, cols.dp * cols.mbs).astype(f64),
        tp=tp,
        pp=pp,
        cp=cp,
        dp=dp,
        edp=edp.astype(f64),
        dshard=dshard.astype(f64),
        eshard=eshard.astype(f64),
        hsdp=cols.hsdp.astype(f64),
        chunks=chunks_i.astype(f64),
        schedule=cols.schedule.astype(f64),
        moe=np.full(n, 1.0 if moe is not None else 0.0),
        shared=np.full(n, 1.0 if moe is not None and moe.num_shared_experts else 0.0),
        etp_on=((etp_i > 1) & (moe is not None)).astype(f64),
        ep_on=(cols.ep > 1).astype(f64),
        cp_on=(cols.cp > 1).astype(f64),
        pp_on=(cols.pp > 1).astype(f64),
        sp=cols.sp.astype(f64),
        full=(cols.recompute == FULL_CODE).astype(f64),
        selective=(cols.recompute == RECOMPUTE_CODES[Recompute.SELECTIVE]).astype(f64),
        **{f"rc_{m}": RECOMPUTE_BITS[i].take(cols.recompute_mask) for i, m in enumerate(RECOMPUTE_MODULES)},
        tp_overlap=cols.tp_overlap.astype(f64),
        a2a_overlap=(cols.a2a_overlap | (cols.schedule == DUALPIPE)).astype(f64),
        pp_blocking=((cols.pp > 1) & ~OVERLAPPED_P2P.take(cols.schedule)).astype(f64),
        fsdp=((cols.zero == 3) & ~cols.lora).astype(f64),
        zero=cols.zero.astype(f64),
        lora=cols.lora.astype(f64),
        capacity=cols.capacity.astype(f64, copy=False),
        imbalance=cols.imbalance.astype(f64, copy=False),
        hbm_bw=np.full(n, ctx.cluster.accelerator.hbm_bw_bytes_per_s / ctx.cores),
        capacity_bytes=np.full(n, ctx.cluster.accelerator.hbm_bytes / ctx.cores),
    )
    rows = {name: np.take(table, keys.row_index, axis=0) for name, table in keys.rows.items()}
    rows["recompute_share"] = recompute_share(cols, rows)
    tokens_per_step = cols.gbs * float(shape.seq_len)
    lora_factor = np.where(cols.lora, LORA_FLOP_FRACTION, 1.0)
    hardware_per_token = np.array([hardware_flops_per_token[int(r)] for r in range(3)]).take(cols.recompute)
    partial = cols.recompute_layers > 0
    if partial.any():
        # Recompute of N layers per chunk executes that share of full recompute's extra forward FLOPs.
        layers = rows["num_dense"] + rows["num_moe"]
        held = (rows["count"] * layers).sum(axis=1)
        share = (rows["count"] * layers * rows["recompute_share"]).sum(axis=1) / np.maximum(held, 1.0)
        none, full = hardware_flops_per_token[RECOMPUTE_CODES[Recompute.NONE]], hardware_flops_per_token[FULL_CODE]
        hardware_per_token = np.where(partial, none + share * (full - none), hardware_per_token)
    plan["model_flops"] = np.asarray(model_flops_per_token * tokens_per_step * lora_factor, dtype=f64)
    plan["hardware_flops"] = hardware_per_token * tokens_per_step * lora_factor

    sums = tuple(np.take(table, keys.row_index, axis=0) for table in keys.param_sums)
    params_dense, params_expert = row_params(ctx.counts, cols, rows, sums=(sums[0], sums[1]))
    rows["params_dense"], rows["params_expert"] = params_dense, params_expert
    layer_bytes = _per_layer(keys.activations, keys.activation_index)
    kept_bytes = _per_layer(keys.kept, keys.kept_index)
    memory = memory_per_rank(
        shape,
        cols,
        rows,
        params_dense,
        params_expert,
        plan["m"],
        layer_bytes,
        plan["chunks"],
        kept_bytes=kept_bytes,
        in_flight=in_flight,
        copies=parameter_copies(cols.schedule),
        known=plan,
    )
    accelerator = ctx.cluster.accelerator
    memory, offload_arrays = prepare_offload(
        cols.offload,
        rows,
        memory,
        layer_bytes,
        kept_bytes,
        plan["m"],
        host_bw=(accelerator.host_link_bw_bytes_per_s or 0.0) / ctx.cores,
        host_capacity=(accelerator.host_memory_bytes or 0.0) / ctx.cores,
        reserve_bytes=RESERVE_BYTES,
        reserve_fraction=RESERVE_FRACTION,
        fewest=keys.fewest.take(keys.row_index),
    )
    plan.update(offload_arrays)
    return Prepared(
        plan=plan,
        rows=rows,
        links=links,
        passes=keys.passes,
        pass_index=keys.pass_index,
        memory=memory,
        link_names=ctx.link_names,
        comm_slopes=keys.comm_slopes,
        comm_loads=keys.comm_loads,
        comm_index=keys.comm_index,
    )


def _per_layer(table: FloatArray, index: IntArray) -> tuple[FloatArray, FloatArray]:
    """A dense and a MoE layer's activation bytes of every plan from a (keys x 2) table."""
    return table[:, 0].take(index), table[:, 1].take(index)


# ----------------------------------------------------------------------------------------------------------------
# Assembly under an efficiency set
# ----------------------------------------------------------------------------------------------------------------


def _max_last(values: FloatArray) -> FloatArray:
    """``values.max(axis=-1)`` for a short last axis (link classes, pipeline rows): elementwise maxima of its
    slices, several times faster than numpy's strided reduction over an axis of 2-8. An empty axis (one
    device: no links) gives zeros."""
    if values.shape[-1] == 0:
        return np.zeros(values.shape[:-1])
    out: FloatArray = values[..., 0].copy()
    for i in range(1, values.shape[-1]):
        np.maximum(out, values[..., i], out=out)
    return out


def _window(compute: FloatArray, blocking: FloatArray, loads: FloatArray, overlapped: FloatArray) -> FloatArray:
    """A window's length: compute plus blocking transfers, the busiest link, the longest overlapped transfer."""
    out: FloatArray = np.maximum(np.maximum(compute + blocking, _max_last(loads)), overlapped)
    return out


LinkRates = fused.LinkRates


def group_link_rates(prep: Prepared, eff: Efficiency) -> LinkRates:
    """Each placed group's seconds per byte under ``eff`` as the compiled loop reads them (``fused.link_rates``)."""
    return fused.link_rates(prep.comm_slopes, prep.comm_loads, eff)


def assemble(
    prep: Prepared, eff: Efficiency, *, compiled: bool | None = None, link_rates: LinkRates | None = None
) -> BatchResult:
    """Step times and breakdowns of prepared plans under ``eff`` (see the module docstring).

    Runs the compiled loop of ``perf.kernel`` (``compiled``; by default where numba is installed and the batch
    has at least ``kernel.COMPILED_MIN_PLANS`` plans), else :func:`assemble_reference`. ``link_rates``:
    :func:`group_link_rates` of ``prep`` and ``eff`` where already known (the chunks of :func:`evaluate`).
    """
    if compiled is None:
        compiled = kernel.AVAILABLE and len(prep) >= kernel.COMPILED_MIN_PLANS
    if not compiled or len(prep) == 0:
        return assemble_reference(prep, eff)
    n = len(prep)
    p, rows, lk = prep.plan, prep.rows, prep.links

    def floats(value: FloatArray) -> FloatArray:
        return np.ascontiguousarray(value, dtype=np.float64)

    plan = tuple(floats(p[name]) for name in kernel.PLAN_FIELDS)
    rates, loads = link_rates if link_rates is not None else group_link_rates(prep, eff)
    index = tuple(np.ascontiguousarray(prep.comm_index[name], dtype=np.int64) for name in kernel.COMM_FIELDS)
    row_cols = tuple(floats(rows[name]) for name in kernel.ROW_FIELDS)
    num_links = lk["scale_out"].shape[1]
    x = inverse_efficiencies(eff)
    seconds = np.ascontiguousarray(prep.passes @ x)
    effv = np.array([getattr(eff, name) for name in kernel.EFF_FIELDS], dtype=np.float64)
    consts = np.array([GRAD_BYTES, PARAM_BYTES, GRAD_ACCUM_BYTES_PER_PARAM, OPTIMIZER_BYTES_PER_PARAM])
    step = np.empty(n)
    breakdown = np.empty((n, len(BREAKDOWN_FIELDS)))
    link_load = np.empty((n, num_links))
    kernel.assemble_kernel(
        plan,
        rates,
        loads,
        index,
        floats(lk["scale_out"]),
        row_cols,
        seconds,
        prep.pass_index.astype(np.int64),
        effv,
        consts,
        step,
        breakdown,
        link_load,
    )
    return _result(prep, step, {name: breakdown[:, j] for j, name in enumerate(BREAKDOWN_FIELDS)}, link_load)


def _zeros(like: FloatArray) -> FloatArray:
    return np.zeros_like(like)


def _result(prep: Prepared, step: FloatArray, breakdown: dict[str, FloatArray], link_load: FloatArray) -> BatchResult:
    p = prep.plan
    offloading = bool(prep.memory["host"].any())
    offload = (
        offload_time(p, p["host_bw"], breakdown["compute"], breakdown["recompute"]) if offloading else _zeros(step)
    )
    breakdown["offload"] = offload
    step = step + offload
    return BatchResult(
        step_time_s=step,
        breakdown=breakdown,
        memory=prep.memory,
        capacity_bytes=prep.plan["capacity_bytes"],
        model_flops_per_step=prep.plan["model_flops"],
        hardware_flops_per_step=prep.plan["hardware_flops"],
        link_load_s=link_load,
        link_names=prep.link_names,
        host_bytes=prep.memory["host"],
        host_capacity_bytes=p["host_capacity_bytes"],
    )


def assemble_reference(prep: Prepared, eff: Efficiency) -> BatchResult:
    """:func:`assemble` in numpy array operations: the reference the compiled loop is checked against."""
    q = window_parts(prep, eff)
    n = len(prep)
    m, pp, chunks, count, first_rank = q.m, q.pp, q.chunks, q.count, q.first_rank
    fwd_c, bwd_c, fwd_block, bwd_block = q.fwd_c, q.bwd_c, q.fwd_block, q.bwd_block
    fwd_load, bwd_load, fsdp_dur, fsdp_load, z2_dur = q.fwd_load, q.bwd_load, q.fsdp_dur, q.fsdp_load, q.z2_dur
    buckets, bwd_weight, full, share = q.buckets, q.bwd_weight, q.full, q.recompute_share
    reduce_dur, reduce_load, gather_dur, gather_load = q.reduce_dur, q.reduce_load, q.gather_dur, q.gather_load
    fwd_compute, bwd_input, recompute_compute = q.fwd_compute, q.bwd_input, q.recompute_compute
    tp_fwd, tp_bwd, ep_fwd, cp_fwd, cp_bwd, pp_fwd = q.tp_fwd, q.tp_bwd, q.ep_fwd, q.cp_fwd, q.cp_bwd, q.pp_fwd

    def col(v: NDArray[Any]) -> NDArray[Any]:
        return v[:, None]

    t_fwd = _window(fwd_c, fwd_block + fsdp_dur / buckets, fwd_load + fsdp_load, fsdp_dur)
    t_bwd = _window(
        bwd_c, bwd_block + (fsdp_dur + z2_dur) / buckets, bwd_load + 2.0 * fsdp_load, 2.0 * fsdp_dur + z2_dur
    )
    contention = (t_fwd - fwd_c - fwd_block) + (t_bwd - bwd_c - bwd_block)

    # Zero-bubble schedules move the weight-gradient pass; it takes its share of the backward window.
    w_share = np.where(bwd_c > 0, bwd_weight / np.maximum(bwd_c, 1e-30), 0.0)
    t_w = t_bwd * w_share
    schedule = q.schedule.astype(np.int64)
    steady, bubble, slowest = pipeline_time(schedule, pp, chunks, m, t_fwd, t_bwd - t_w, t_w, count)

    # With v interleaved chunks a chunk's gradients are final once the last micro-batches' backward of that chunk
    # is done; Megatron's cool-down runs the chunks in turn over groups of pp micro-batches, so the reduction of
    # the earlier-finished chunks overlaps about pp*(v-1)/v more micro-batch backwards (and the parameter gather,
    # symmetrically, the warm-up's forwards).
    spread = col(np.where(q.schedule == SCHEDULE_CODES[Schedule.INTERLEAVED], 1.0 + pp * (chunks - 1.0) / chunks, 1.0))
    last_bwd = _window(
        spread * bwd_c,
        spread * bwd_block + reduce_dur / buckets,
        spread[..., None] * bwd_load + reduce_load,
        reduce_dur,
    )
    first_fwd = _window(
        spread * fwd_c,
        spread * fwd_block + gather_dur / buckets,
        spread[..., None] * fwd_load + gather_load,
        gather_dur,
    )
    dp_rows = np.maximum(last_bwd - spread * t_bwd, 0.0) + np.maximum(first_fwd - spread * t_fwd, 0.0)
    lead = first_rank * t_bwd  # rank i ends its last backward i backward passes before the first rank does
    dp_exposed = np.maximum(_max_last(np.where(count > 0, dp_rows - lead, -np.inf)), 0.0)

    optimizer_rows = q.optimizer_rows
    optimizer = _max_last(np.where(count > 0, optimizer_rows, 0.0))

    step = steady + bubble + dp_exposed + optimizer + eff.step_overhead_s
    # No step is shorter than any rank's whole-step load on any link class.
    step_load = col(m)[..., None] * (fwd_load + bwd_load + 3.0 * fsdp_load) + reduce_load + gather_load
    step_load = np.where((count > 0)[..., None], step_load, 0.0)
    link_load = _max_last(np.moveaxis(step_load, 1, -1))
    extra = np.maximum(_max_last(link_load) - step, 0.0)
    step = step + extra

    def at_slowest(v: FloatArray) -> FloatArray:
        return np.take_along_axis(v, slowest[:, None], axis=1)[:, 0]

    breakdown = {
        "compute": m * at_slowest(fwd_compute + bwd_input + bwd_weight),
        "recompute": m * at_slowest(recompute_compute),
        "tp_comm": m * at_slowest(tp_fwd + 2.0 * tp_bwd + np.where(col(full), share * tp_fwd, 0.0)),
        "cp_comm": m * at_slowest(cp_fwd + cp_bwd + np.where(col(full), share * cp_fwd, 0.0)),
        "ep_comm": m * at_slowest(3.0 * ep_fwd + np.where(col(full), share * ep_fwd, 0.0)),
        "dp_comm_exposed": dp_exposed,
        "pp_comm": m * at_slowest(2.0 * pp_fwd),
        "link_contention": m * at_slowest(contention) + extra,
        "pipeline_bubble": bubble,
        "optimizer": optimizer,
        "other": np.full(n, eff.step_overhead_s),
    }
    return _result(prep, step, breakdown, link_load)


EVALUATE_CHUNK = 16_384  # plans per prepare/assemble pass: keeps temporaries in cache and memory bounded


def evaluate(
    ctx: StepContext,
    cols: PlanColumns,
    *,
    model_flops_per_token: float,
    hardware_flops_per_token: dict[int, float],
    eff: Efficiency | None = None,
    one_pass: bool = True,
) -> BatchResult:
    """The step model for every plan of ``cols`` under ``eff`` (default: the context's), in chunks.

    The per-key tables (``perf.keys``) are found once for the whole batch. Where numba is installed the chunks
    the compiled loops take go through ``perf.fused`` in one pass, else (and with ``one_pass=False``, which the
    tests compare against) each chunk is prepared (:func:`prepare`) and assembled (:func:`assemble`).
    """
    eff = eff if eff is not None else ctx.eff
    keys = plan_keys(ctx, cols)
    n = len(cols)
    # The fused compiled pass (perf.fused) takes every chunk the compiled loops would; a last chunk too small
    # for them (kernel.COMPILED_MIN_PLANS) goes through prepare and the numpy reference, as before.
    tail = n % EVALUATE_CHUNK if n > EVALUATE_CHUNK else n
    head = n - tail if tail < kernel.COMPILED_MIN_PLANS else n
    fused_part: BatchResult | None = None
    if one_pass and head > 0 and fused.fits(keys):
        fused_part = fused.evaluate_fused(
            ctx,
            cols if head == n else cols[:head],
            keys if head == n else keys.part(0, head),
            eff,
            model_flops_per_token=model_flops_per_token,
            hardware_flops_per_token=hardware_flops_per_token,
            chunk=EVALUATE_CHUNK,
        )
        if head == n:
            return fused_part
    out: BatchResult | None = None
    rates: LinkRates | None = None
    first = head if fused_part is not None else 0
    for start in range(first, max(n, 1), EVALUATE_CHUNK):
        stop = min(start + EVALUATE_CHUNK, n)
        part, part_keys = (cols, keys) if n <= EVALUATE_CHUNK else (cols[start:stop], keys.part(start, stop))
        prep = prepare(
            ctx,
            part,
            model_flops_per_token=model_flops_per_token,
            hardware_flops_per_token=hardware_flops_per_token,
            keys=part_keys,
        )
        rates = rates if rates is not None else group_link_rates(prep, eff)
        result = assemble(prep, eff, link_rates=rates)
        if part is cols:
            return result
        if out is None:
            out = BatchResult.empty(n, like=fused_part if fused_part is not None else result)
            if fused_part is not None:
                out.put(0, fused_part)
        out.put(start, result)
    assert out is not None
    return out


__all__ = [
    "BREAKDOWN_FIELDS",
    "COMM_KINDS",
    "MEMORY_FIELDS",
    "PRECISION_CODES",
    "RECOMPUTE_CODES",
    "SCHEDULE_CODES",
    "BatchResult",
    "PlanColumns",
    "Prepared",
    "StepContext",
    "assemble",
    "evaluate",
    "prepare",
]
