"""The step model over arrays of plans: one code path for the scalar estimate, the search and the fit.

Two phases. :func:`prepare` turns plans into arrays that do not depend on the fitted efficiencies: message sizes,
collective slopes at full link rate, link loads, layer-pass times as linear forms over the inverse efficiencies
(``perf.compute``), the pipeline's rank rows, memory and FLOPs. :func:`assemble` applies an
:class:`~rainier.perf.efficiency.Efficiency` and does the rest. ``perf.step.estimate`` runs both on a single plan,
the search on chunks of plans, and the fit prepares every validation case once and re-assembles all of them
together for each trial of the efficiencies (:meth:`Prepared.concat`).

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

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rainier.parallel.plan import RECOMPUTE_MODULES, Recompute, Schedule
from rainier.perf import kernel
from rainier.perf.columns import PRECISION_CODES, RECOMPUTE_CODES, SCHEDULE_CODES, PlanColumns
from rainier.perf.compute import ACTIVATION_BYTES, FLASH_BACKWARD_FACTOR, PassForms, inverse_efficiencies
from rainier.perf.context import Placed, StepContext
from rainier.perf.efficiency import Efficiency
from rainier.perf.memory import MEMORY_FIELDS, memory_per_rank, row_params
from rainier.perf.schedule import in_flight, parameter_copies, pipeline_time

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

GRAD_BYTES = 2.0  # gradients reduced in 16 bits
PARAM_BYTES = 2.0  # 16-bit weights gathered (ZeRO-1 parameter all-gather, FSDP)
GRAD_ACCUM_BYTES_PER_PARAM = 10.0  # fp32 main-gradient accumulation: read 4 + read 2 + write 4 bytes
# Mixed-precision Adam step per local parameter (Megatron-LM's optimizer): read the fp32 main gradient twice
# (inf/NaN check, global norm) = 8; Adam reads master, gradient, m, v and writes master, m, v = 28; copy the
# fp32 master into the 16-bit model weight = 6 (Micikevicius et al. 2018; Rajbhandari et al. 2020 sec. 3).
OPTIMIZER_BYTES_PER_PARAM = 42.0
LORA_FLOP_FRACTION = 2.0 / 3.0  # forward (2N) + input gradients (2N) of full training's 6N (Hu et al. 2021)

OVERLAPPED_P2P = (
    SCHEDULE_CODES[Schedule.INTERLEAVED],
    SCHEDULE_CODES[Schedule.ZB_V],
    SCHEDULE_CODES[Schedule.DUALPIPE],
)
DUALPIPE = SCHEDULE_CODES[Schedule.DUALPIPE]
PASS_FIELDS = kernel.PASS_FIELDS  # the quantities of a pass table (perf.compute.PassForms fields)
LAYER_KINDS = ("dense", "moe", "head")
COMM_KINDS = kernel.COMM_FIELDS
BREAKDOWN_FIELDS = kernel.BREAKDOWN_FIELDS


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-plan arrays: step time, its breakdown, memory per rank, FLOPs per step, and the link loads."""

    step_time_s: FloatArray
    breakdown: dict[str, FloatArray]
    memory: dict[str, FloatArray]
    capacity_bytes: FloatArray
    model_flops_per_step: FloatArray
    hardware_flops_per_step: FloatArray
    link_load_s: FloatArray  # (plans x link classes): the most loaded rank's seconds of each link per step
    link_names: tuple[str, ...] = ()

    @property
    def memory_total(self) -> FloatArray:
        return sum((self.memory[k] for k in MEMORY_FIELDS), start=np.zeros_like(self.step_time_s))

    @classmethod
    def concat(cls, parts: list[BatchResult]) -> BatchResult:
        """Results of consecutive chunks of plans as one."""

        def joined(values: list[FloatArray]) -> FloatArray:
            return np.concatenate(values)

        return cls(
            step_time_s=joined([r.step_time_s for r in parts]),
            breakdown={k: joined([r.breakdown[k] for r in parts]) for k in parts[0].breakdown},
            memory={k: joined([r.memory[k] for r in parts]) for k in parts[0].memory},
            capacity_bytes=joined([r.capacity_bytes for r in parts]),
            model_flops_per_step=joined([r.model_flops_per_step for r in parts]),
            hardware_flops_per_step=joined([r.hardware_flops_per_step for r in parts]),
            link_load_s=joined([r.link_load_s for r in parts]),
            link_names=parts[0].link_names,
        )

    @property
    def fits(self) -> NDArray[np.bool_]:
        return self.memory_total <= self.capacity_bytes


DENSE_KEYS = 1 << 22  # key spaces up to this size are deduplicated with a lookup table instead of a sort


def _gather(keys: list[IntArray], compute: Any) -> tuple[IntArray, list[Any]]:
    """Unique combinations of the key columns ``keys`` (non-negative integers, one array per column),
    ``compute`` of each, and each plan's index into them.

    Columns are packed into one mixed-radix integer per plan; a small code space is deduplicated through a
    presence table (linear time), a larger one with ``np.unique``; a single plan skips both.
    """
    if len(keys[0]) == 1:
        return np.zeros(1, dtype=np.int64), [compute(*(int(k[0]) for k in keys))]
    radix = [int(k.max()) + 1 for k in keys]
    size = math.prod(radix)
    if size >= 2**62:
        rows, inverse = np.unique(np.stack(keys, axis=1), axis=0, return_inverse=True)
        return inverse.reshape(-1), [compute(*(int(v) for v in row)) for row in rows]
    codes = keys[0].astype(np.int64)
    for column, r in zip(keys[1:], radix[1:], strict=True):
        codes = codes * r + column
    if size <= max(DENSE_KEYS, 4 * len(codes)):
        present = np.zeros(size, dtype=bool)
        present[codes] = True
        unique_codes = np.flatnonzero(present)
        lookup = np.empty(size, dtype=np.int64)
        lookup[unique_codes] = np.arange(len(unique_codes))
        inverse = lookup[codes]
    else:
        unique_codes, inverse = np.unique(codes, return_inverse=True)
    values: list[list[int]] = [[] for _ in keys]
    rest = unique_codes
    for j in range(len(keys) - 1, -1, -1):
        rest, digit = np.divmod(rest, radix[j])
        values[j] = digit.tolist()
    return inverse.reshape(-1), [compute(*row) for row in zip(*values, strict=True)]


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


def _pass_table(ctx: StepContext, key: tuple[Any, ...]) -> FloatArray:
    """The pass forms of ``ctx.passes(key)`` as one array (layer kinds x PASS_FIELDS x forms), cached."""
    found: FloatArray | None = ctx.tables.get(key)
    if found is None:
        found = _forms_table(ctx.passes(key))
        ctx.tables[key] = found
    return found


def _forms_table(forms: tuple[PassForms, PassForms | None, PassForms]) -> FloatArray:
    table = np.zeros((len(LAYER_KINDS), len(PASS_FIELDS), 4))
    for k, item in enumerate(forms):
        if item is not None:
            for q, name in enumerate(PASS_FIELDS):
                table[k, q] = getattr(item, name)
    return table


def _groups(ctx: StepContext, axis: str, degree: IntArray, stride: IntArray) -> tuple[IntArray, list[Placed]]:
    return _gather([degree, stride], lambda d, s: ctx.group(axis, d, s))


def _comm_table(placed: list[Placed], kind: str) -> tuple[FloatArray, FloatArray]:
    """A collective's (slope up, slope out, intercept) and per-link loads for each distinct placed group."""
    items = [getattr(p.links, kind) for p in placed]
    return np.array([[c.slope_up, c.slope_out, c.intercept] for c in items]), np.stack([c.loads for c in items])


def _row_arrays(ctx: StepContext, cols: PlanColumns, chunks: IntArray) -> dict[str, FloatArray]:
    """Each plan's pipeline rank rows as (plans x rows) arrays, padded with zero-count rows."""
    keys = [cols.pp, chunks, cols.pp_first + 1, cols.pp_last + 1]
    inverse, layouts = _gather(keys, lambda p, c, f, last: ctx.rows(p, c, f - 1, last - 1))
    width = max(len(layout) for layout in layouts)
    names = ("num_dense", "num_moe", "embedding", "head", "count", "first_rank")
    table = {name: np.zeros((len(layouts), width)) for name in names}
    for u, layout in enumerate(layouts):
        for r, row in enumerate(layout):
            for name in names:
                table[name][u, r] = float(getattr(row, name))
    return {name: values[inverse] for name, values in table.items()}


def prepare(
    ctx: StepContext, cols: PlanColumns, *, model_flops_per_token: float, hardware_flops_per_token: dict[int, float]
) -> Prepared:
    """The efficiency-free arrays of every plan of ``cols`` (all assumed valid: ``search.space`` checks)."""
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

    # Layer passes as forms, per distinct key.
    pass_keys = [
        cols.tp,
        cols.cp,
        cols.ep,
        etp_i,
        cols.mbs,
        cols.sp.astype(np.int64),
        cols.precision,
        cols.lora.astype(np.int64),
        cols.flash,
        cols.fp8_recipe + 1,
    ]
    pass_index, pass_tables = _gather(pass_keys, lambda *k: _pass_table(ctx, (*k[:9], k[9] - 1)))
    passes = np.stack(pass_tables)

    # Placed groups and their collectives.
    plan: dict[str, FloatArray] = {}
    links: dict[str, FloatArray] = {}
    comm_slopes: dict[str, FloatArray] = {}
    comm_loads: dict[str, FloatArray] = {}
    comm_index: dict[str, IntArray] = {}
    ones = np.ones_like(cols.tp)
    ep_stride = np.where(etp_i == cols.tp, cols.tp * cols.cp, etp_i)
    edp = np.maximum(np.floor_divide(cols.tp * cols.dp * cols.cp, etp_i * cols.ep), 1)
    groups = {
        "tp": _groups(ctx, "tp", cols.tp, ones),
        "etp": _groups(ctx, "tp", etp_i, ones),
        "cp": _groups(ctx, "cp", cols.cp, cols.tp),
        "ep": _groups(ctx, "ep", cols.ep, ep_stride),
        "pp": _groups(ctx, "pp", cols.pp, cols.tp * cols.cp * cols.dp),
        "dp": _groups(ctx, "dp", cols.dp * cols.cp, cols.tp),  # dense gradients: over dp x cp
        "edp": _groups(ctx, "dp", edp, etp_i * cols.ep),  # expert gradients: the expert-dp group
    }
    for name, group, kind in (
        ("tp_ar", "tp", "all_reduce"),
        ("tp_rs", "tp", "reduce_scatter"),
        ("etp_ar", "etp", "all_reduce"),
        ("cp_step", "cp", "ring_step"),
        ("ep_a2a", "ep", "all_to_all"),
        ("pp_p2p", "pp", "p2p"),
        ("dp_ar", "dp", "all_reduce"),
        ("dp_rs", "dp", "reduce_scatter"),
        ("edp_ar", "edp", "all_reduce"),
        ("edp_rs", "edp", "reduce_scatter"),
    ):
        inverse, placed = groups[group]
        comm_slopes[name], comm_loads[name] = _comm_table(placed, kind)
        comm_index[name] = inverse
    links["scale_out"] = np.broadcast_to(ctx.scale_out_mask, (n, len(ctx.link_names))).copy()
    ep_inverse, ep_placed = groups["ep"]
    ep_domains = np.array([g.domains for g in ep_placed], dtype=f64)[ep_inverse]

    # Message sizes (bytes, per rank) and flags.
    activation = ACTIVATION_BYTES * tokens * h
    plan["activation"] = activation
    plan["routed"] = top_k * activation * etp_i / tp  # expert-TP pair over the routed tokens (times the load)
    plan["ep_bytes"] = ACTIVATION_BYTES * norm_tokens * top_k * h  # one all-to-all (times the expert load)
    # Scale-out share of the dispatch: plainly, top_k copies of which (D-1)/D leave the domain; deduplicated
    # (DeepEP, or node-limited routing as in DeepSeek-V3), one copy per distinct remote domain, of which a token
    # reaches (D-1)(1 - (1 - 1/D)^top_k) on average with uniform routing, at most the routing limit.
    domains = np.maximum(ep_domains, 1.0)
    plain = top_k * (domains - 1.0) / domains
    distinct = (domains - 1.0) * (1.0 - (1.0 - 1.0 / domains) ** top_k)
    limit = np.where(cols.ep_domains > 0, cols.ep_domains.astype(f64), np.inf)
    dedup = cols.ep_dedup | (cols.ep_domains > 0)
    plan["ep_dedup"] = np.where(
        (plain > 0) & dedup, np.minimum(1.0, np.minimum(distinct, limit) / np.maximum(plain, 1e-9)), 1.0
    )
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
        chunks=chunks_i.astype(f64),
        schedule=cols.schedule.astype(f64),
        moe=np.full(n, 1.0 if moe is not None else 0.0),
        shared=np.full(n, 1.0 if moe is not None and moe.num_shared_experts else 0.0),
        etp_on=((etp_i > 1) & (moe is not None)).astype(f64),
        ep_on=(cols.ep > 1).astype(f64),
        cp_on=(cols.cp > 1).astype(f64),
        pp_on=(cols.pp > 1).astype(f64),
        sp=cols.sp.astype(f64),
        full=(cols.recompute == RECOMPUTE_CODES[Recompute.FULL]).astype(f64),
        selective=(cols.recompute == RECOMPUTE_CODES[Recompute.SELECTIVE]).astype(f64),
        **{f"rc_{m}": ((cols.recompute_mask >> i) & 1).astype(f64) for i, m in enumerate(RECOMPUTE_MODULES)},
        tp_overlap=cols.tp_overlap.astype(f64),
        a2a_overlap=(cols.a2a_overlap | (cols.schedule == DUALPIPE)).astype(f64),
        pp_blocking=((cols.pp > 1) & ~np.isin(cols.schedule, OVERLAPPED_P2P)).astype(f64),
        fsdp=((cols.zero == 3) & ~cols.lora).astype(f64),
        zero=cols.zero.astype(f64),
        lora=cols.lora.astype(f64),
        capacity=cols.capacity.astype(f64),
        imbalance=cols.imbalance.astype(f64),
        hbm_bw=np.full(n, ctx.cluster.accelerator.hbm_bw_bytes_per_s / ctx.cores),
        capacity_bytes=np.full(n, ctx.cluster.accelerator.hbm_bytes / ctx.cores),
    )
    tokens_per_step = cols.gbs * float(shape.seq_len)
    lora_factor = np.where(cols.lora, LORA_FLOP_FRACTION, 1.0)
    hardware_per_token = np.array([hardware_flops_per_token[int(r)] for r in range(3)])[cols.recompute]
    plan["model_flops"] = np.asarray(model_flops_per_token * tokens_per_step * lora_factor, dtype=f64)
    plan["hardware_flops"] = hardware_per_token * tokens_per_step * lora_factor

    rows = _row_arrays(ctx, cols, chunks_i)
    params_dense, params_expert = row_params(ctx.counts, cols, rows)
    rows["params_dense"], rows["params_expert"] = params_dense, params_expert
    memory = memory_per_rank(
        shape,
        cols,
        rows,
        params_dense,
        params_expert,
        plan["m"],
        _layer_activations(ctx, cols),
        plan["chunks"],
        in_flight=in_flight,
        copies=parameter_copies(cols.schedule),
    )
    return Prepared(
        plan=plan,
        rows=rows,
        links=links,
        passes=passes,
        pass_index=pass_index,
        memory=memory,
        link_names=ctx.link_names,
        comm_slopes=comm_slopes,
        comm_loads=comm_loads,
        comm_index=comm_index,
    )


def _layer_activations(ctx: StepContext, cols: PlanColumns) -> tuple[FloatArray, FloatArray]:
    """One dense and one MoE layer's activation bytes per micro-batch, for every plan."""
    keys = [cols.tp, cols.cp, cols.mbs, cols.sp.astype(np.int64), cols.recompute, (cols.flash > 0).astype(np.int64)]
    inverse, per_layer = _gather(keys, lambda t, c, b, s, r, f: ctx.activations(t, c, b, bool(s), r, bool(f)))
    return np.array([p[0] for p in per_layer])[inverse], np.array([p[1] for p in per_layer])[inverse]


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


def assemble(prep: Prepared, eff: Efficiency, *, compiled: bool | None = None) -> BatchResult:
    """Step times and breakdowns of prepared plans under ``eff`` (see the module docstring).

    Runs the compiled loop of ``perf.kernel`` (``compiled``; by default where numba is installed and the batch
    has at least ``kernel.COMPILED_MIN_PLANS`` plans), else :func:`assemble_reference`.
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
    slopes = tuple(floats(prep.comm_slopes[name]) for name in kernel.COMM_FIELDS)
    loads = tuple(floats(prep.comm_loads[name]) for name in kernel.COMM_FIELDS)
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
        slopes,
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


def _result(prep: Prepared, step: FloatArray, breakdown: dict[str, FloatArray], link_load: FloatArray) -> BatchResult:
    return BatchResult(
        step_time_s=step,
        breakdown=breakdown,
        memory=prep.memory,
        capacity_bytes=prep.plan["capacity_bytes"],
        model_flops_per_step=prep.plan["model_flops"],
        hardware_flops_per_step=prep.plan["hardware_flops"],
        link_load_s=link_load,
        link_names=prep.link_names,
    )


def assemble_reference(prep: Prepared, eff: Efficiency) -> BatchResult:
    """:func:`assemble` in numpy array operations: the reference the compiled loop is checked against."""
    (p, lk), rows = prep.gathered(), prep.rows
    n = len(prep)
    x = inverse_efficiencies(eff)
    seconds = (prep.passes @ x)[prep.pass_index]  # plans x layer kinds x PASS_FIELDS
    load = np.where(p["capacity"] > 0, p["capacity"], np.where(p["imbalance"] > 0, p["imbalance"], eff.moe_imbalance))

    def kind(k: int, name: str) -> FloatArray:
        value: FloatArray = seconds[:, k, PASS_FIELDS.index(name)]
        if name in ("forward", "input_grad", "weight_grad", "gemm"):
            value = value + load * seconds[:, k, PASS_FIELDS.index(f"expert_{name}")]
        return value

    f_d, b_d, w_d, g_d, a_d = (kind(0, q) for q in ("forward", "input_grad", "weight_grad", "gemm", "attention"))
    f_m, b_m, w_m, g_m, a_m = (kind(1, q) for q in ("forward", "input_grad", "weight_grad", "gemm", "attention"))
    e_d, e_m = kind(0, "elementwise"), kind(1, "elementwise")
    mlp_d, mlp_m = kind(0, "mlp_gemm"), kind(1, "mlp_gemm")
    expert_m = load * seconds[:, 1, PASS_FIELDS.index("expert_forward")]
    f_h, b_h, w_h = (kind(2, q) for q in ("forward", "input_grad", "weight_grad"))

    link_eff = np.where(lk["scale_out"] > 0, eff.scale_out, eff.scale_up)

    def duration(name: str, size: FloatArray) -> FloatArray:
        slope = p[f"{name}_up"] / eff.scale_up + p[f"{name}_out"] / eff.scale_out
        return np.where(size > 0, slope * size + p[f"{name}_icpt"], 0.0) * (slope > 0)

    def loads(name: str, size: FloatArray) -> FloatArray:
        return lk[name] / link_eff * size[:, None]

    tp, pp, cp, m, chunks = p["tp"], p["pp"], p["cp"], p["m"], p["chunks"]
    activation = p["activation"]
    # Tensor parallelism: two all-reduces (or all-gather + reduce-scatter pairs with SP) per dense layer; a MoE
    # layer keeps the attention's pair, the shared experts' one, and an expert-TP pair over the routed tokens.
    tp_d_dur = 2.0 * duration("tp_ar", activation)
    tp_d_load = 2.0 * loads("tp_ar", activation)
    routed = p["routed"] * load
    etp_on = p["etp_on"] > 0
    tp_m_dur = (1.0 + p["shared"]) * duration("tp_ar", activation)
    etp_dur = np.where(etp_on, duration("etp_ar", routed), 0.0)  # the token dispatcher's, never overlapped
    tp_m_load = (1.0 + p["shared"])[:, None] * loads("tp_ar", activation) + np.where(
        etp_on[:, None], loads("etp_ar", routed), 0.0
    )
    # Expert parallelism: dispatch and combine of the busiest rank's share; node-limited routing trims the
    # scale-out part.
    ep_bytes = p["ep_bytes"] * load
    ep_on = p["ep_on"] > 0
    dedup = p["ep_dedup"]
    trimmed = p["ep_a2a_out"] / eff.scale_out * ep_bytes * (1.0 - dedup)
    ep_dur = np.where(ep_on, 2.0 * (duration("ep_a2a", ep_bytes) - trimmed), 0.0)
    ep_scale = 1.0 - lk["scale_out"] * (1.0 - dedup[:, None])
    ep_load = np.where(ep_on[:, None], 2.0 * loads("ep_a2a", ep_bytes) * ep_scale, 0.0)
    # Context parallelism: cp-1 ring steps of the local keys and values per forward, twice that backward.
    cp_on = p["cp_on"] > 0
    cp_dur = np.where(cp_on, (cp - 1.0) * duration("cp_step", p["kv_bytes"]), 0.0)
    cp_load = np.where(cp_on[:, None], (cp - 1.0)[:, None] * loads("cp_step", p["kv_bytes"]), 0.0)
    # Pipeline: per chunk boundary, the send and (without SP) the receivers' all-gather over the TP group.
    pp_on = p["pp_on"] > 0
    sp = p["sp"] > 0
    regather = np.where(sp, 0.0, duration("tp_rs", activation))
    regather_load = np.where(sp[:, None], 0.0, loads("tp_rs", activation))
    pp_dur = np.where(pp_on, chunks * (duration("pp_p2p", p["pp_bytes"]) + regather), 0.0)
    pp_load = np.where(pp_on[:, None], chunks[:, None] * (loads("pp_p2p", p["pp_bytes"]) + regather_load), 0.0)

    def col(v: NDArray[Any]) -> NDArray[Any]:
        return v[:, None]

    nd, nm, head, count, first_rank = (rows[k] for k in ("num_dense", "num_moe", "head", "count", "first_rank"))
    params_dense, params_expert = rows["params_dense"], rows["params_expert"]
    layers = nd + nm
    hbm_rate = p["hbm_bw"] * eff.memory
    full, selective, lora = p["full"] > 0, p["selective"] > 0, p["lora"] > 0
    overhead = eff.layer_overhead_s * layers
    fwd_compute = nd * col(f_d) + nm * col(f_m) + head * col(f_h) + overhead
    # fp32 main-gradient accumulation per micro-batch: the whole stage's gradients under ZeRO-0/1 (Megatron's
    # main_grad buffer), only the rank's shard when gradients are reduce-scattered every micro-batch (ZeRO-2/3).
    grad_shard = np.where(col(p["zero"] >= 2), col(p["dp"] * cp), 1.0)
    accumulate = np.where(
        col(lora), 0.0, GRAD_ACCUM_BYTES_PER_PARAM * (params_dense + params_expert) / grad_shard / col(hbm_rate)
    )
    bwd_input = nd * col(b_d) + nm * col(b_m) + head * col(b_h) + overhead
    bwd_weight = nd * col(w_d) + nm * col(w_m) + head * col(w_h) + accumulate
    attention_fwd = nd * col(a_d) + nm * col(a_m)
    # Selective recompute repeats the listed modules' forward (Megatron --recompute-modules; default core_attn):
    # the attention core; the norms (~40% of the elementwise traffic), the MoE activation (~30%); the dense MLP or
    # shared experts; the routed experts; MLA's up projections (~10% of the layer's GEMMs).
    light = (
        col(p["rc_core_attn"]) * attention_fwd
        + col(p["rc_layernorm"]) * 0.4 * (nd * col(e_d) + nm * col(e_m))
        + col(p["rc_moe_act"]) * 0.3 * nm * col(e_m)
        + col(np.maximum(p["rc_mlp"], p["rc_shared_experts"])) * (nd * col(mlp_d) + nm * col(mlp_m))
        + col(p["rc_moe"]) * nm * col(expert_m)
        + col(p["rc_mla_up_proj"]) * 0.1 * (nd * col(g_d) + nm * col(g_m))
    )
    recompute_compute = np.where(col(full), fwd_compute - head * col(f_h), np.where(col(selective), light, 0.0))

    # What blocks each window (per layer, times the rank's layers).
    tp_overlap = p["tp_overlap"] > 0
    tp_d_exposed = np.where(tp_overlap, np.maximum(tp_d_dur - g_d, tp_d_dur / tp), tp_d_dur)
    # Userbuffer overlap (Megatron --tp-comm-overlap) covers the GEMMs of attention and dense MLPs; the expert
    # layer's all-gather / reduce-scatter of routed tokens belongs to the token dispatcher.
    tp_m_exposed = np.where(tp_overlap, np.maximum(tp_m_dur - g_m, tp_m_dur / tp), tp_m_dur) + etp_dur
    tp_fwd = nd * col(tp_d_exposed) + nm * col(tp_m_exposed)
    # Backward: Megatron's linear layers launch the column-parallel layers' collectives asynchronously and run
    # the weight-gradient GEMM meanwhile (LinearWithGradAccumulationAndAsyncCommunication; Korthikanti et al.
    # 2022 sec. 4.2.2), so half of the backward's TP traffic hides behind the weight gradients by default.
    half_d, half_m = 0.5 * tp_d_dur, 0.5 * tp_m_dur
    tp_d_back = np.where(tp_overlap, tp_d_exposed, half_d + np.maximum(half_d - w_d, 0.0))
    tp_m_back = np.where(tp_overlap, tp_m_exposed - etp_dur, half_m + np.maximum(half_m - w_m, 0.0)) + etp_dur
    tp_bwd = nd * col(tp_d_back) + nm * col(tp_m_back)
    ep_exposed = np.where(p["a2a_overlap"] > 0, np.maximum(ep_dur - f_m, 0.0), ep_dur)
    ep_fwd = nm * col(ep_exposed)
    cp_fwd = nd * col(np.maximum(cp_dur - a_d, 0.0)) + nm * col(np.maximum(cp_dur - a_m, 0.0))
    cp_bwd = nd * col(np.maximum(2 * cp_dur - FLASH_BACKWARD_FACTOR * a_d, 0.0)) + nm * col(
        np.maximum(2 * cp_dur - FLASH_BACKWARD_FACTOR * a_m, 0.0)
    )
    pp_fwd = np.where(col(p["pp_blocking"] > 0), col(pp_dur), 0.0) * (count > 0)
    recompute_comm = np.where(col(full), tp_fwd + ep_fwd + cp_fwd, 0.0)

    layer_load = nd[..., None] * tp_d_load[:, None, :] + nm[..., None] * tp_m_load[:, None, :]
    layer_load = layer_load + nm[..., None] * ep_load[:, None, :] + layers[..., None] * cp_load[:, None, :]
    fwd_load = layer_load + pp_load[:, None, :]
    bwd_load = 2.0 * layer_load + np.where(full[:, None, None], layer_load, 0.0) + pp_load[:, None, :]

    def rowwise(name: str, size: FloatArray) -> tuple[FloatArray, FloatArray]:
        slope = col(p[f"{name}_up"] / eff.scale_up + p[f"{name}_out"] / eff.scale_out)
        dur = np.where(size > 0, slope * size + col(p[f"{name}_icpt"]), 0.0) * (slope > 0)
        return dur, (lk[name] / link_eff)[:, None, :] * size[..., None]

    # FSDP (ZeRO-3): every micro-batch gathers the rank's weights for the forward and again for the backward,
    # and reduce-scatters the gradients in the backward, each behind the window's compute.
    fsdp = p["fsdp"] > 0
    fsdp_dur_d, fsdp_load_d = rowwise("dp_rs", PARAM_BYTES * params_dense)
    fsdp_dur_e, fsdp_load_e = rowwise("edp_rs", PARAM_BYTES * params_expert)
    fsdp_dur = np.where(col(fsdp), fsdp_dur_d + fsdp_dur_e, 0.0)
    fsdp_load = np.where(fsdp[:, None, None], fsdp_load_d + fsdp_load_e, 0.0)
    buckets = np.maximum(layers, 1.0)

    # ZeRO-2 keeps only its shard of the gradients, so every micro-batch's gradients are reduce-scattered during
    # its backward (Rajbhandari et al. 2020 sec. 5.2; DeepSpeed reduces at every micro-step), not once per step
    # as a full local gradient buffer allows (ZeRO-1, Megatron's distributed optimizer).
    zero2 = (p["zero"] == 2) & ~lora & ~fsdp
    z2_d, z2_load_d = rowwise("dp_rs", GRAD_BYTES * params_dense)
    z2_e, z2_load_e = rowwise("edp_rs", GRAD_BYTES * params_expert)
    z2_dur = np.where(col(zero2), z2_d + z2_e, 0.0)
    bwd_load = bwd_load + np.where(zero2[:, None, None], z2_load_d + z2_load_e, 0.0)

    fwd_block = tp_fwd + ep_fwd + cp_fwd + pp_fwd
    bwd_block = 2.0 * tp_bwd + 2.0 * ep_fwd + cp_bwd + pp_fwd + recompute_comm
    fwd_c = fwd_compute
    bwd_c = bwd_input + bwd_weight + recompute_compute
    t_fwd = _window(fwd_c, fwd_block + fsdp_dur / buckets, fwd_load + fsdp_load, fsdp_dur)
    t_bwd = _window(
        bwd_c, bwd_block + (fsdp_dur + z2_dur) / buckets, bwd_load + 2.0 * fsdp_load, 2.0 * fsdp_dur + z2_dur
    )
    contention = (t_fwd - fwd_c - fwd_block) + (t_bwd - bwd_c - bwd_block)

    # Zero-bubble schedules move the weight-gradient pass; it takes its share of the backward window.
    w_share = np.where(bwd_c > 0, bwd_weight / np.maximum(bwd_c, 1e-30), 0.0)
    t_w = t_bwd * w_share
    schedule = p["schedule"].astype(np.int64)
    steady, bubble, slowest = pipeline_time(schedule, pp, chunks, m, t_fwd, t_bwd - t_w, t_w, count)

    # Data parallelism: gradient reduction behind each rank's last backward, parameter gather behind its first
    # forward; a rank ahead in the pipeline drain has that much slack.
    zero0 = p["zero"] == 0
    ar_d, ar_load_d = rowwise("dp_ar", GRAD_BYTES * params_dense)
    ar_e, ar_load_e = rowwise("edp_ar", GRAD_BYTES * params_expert)
    rs_d, rs_load_d = rowwise("dp_rs", GRAD_BYTES * params_dense)
    rs_e, rs_load_e = rowwise("edp_rs", GRAD_BYTES * params_expert)
    sync = col(~lora & ~fsdp)  # FSDP reduce-scatters inside every backward window instead
    reduce_on = sync & ~col(zero2)  # ZeRO-2 reduced each micro-batch's gradients in its own backward
    reduce_dur = np.where(reduce_on, np.where(col(zero0), ar_d + ar_e, rs_d + rs_e), 0.0)
    reduce_load = np.where(
        reduce_on[..., None], np.where(zero0[:, None, None], ar_load_d + ar_load_e, rs_load_d + rs_load_e), 0.0
    )
    gather_on = sync & ~col(zero0)
    gather_dur = np.where(gather_on, (rs_d + rs_e) * PARAM_BYTES / GRAD_BYTES, 0.0)
    gather_load = np.where(gather_on[..., None], (rs_load_d + rs_load_e) * PARAM_BYTES / GRAD_BYTES, 0.0)
    # With v interleaved chunks a chunk's gradients are final once the last micro-batches' backward of that chunk
    # is done; Megatron's cool-down runs the chunks in turn over groups of pp micro-batches, so the reduction of
    # the earlier-finished chunks overlaps about pp*(v-1)/v more micro-batch backwards (and the parameter gather,
    # symmetrically, the warm-up's forwards).
    spread = col(
        np.where(p["schedule"] == SCHEDULE_CODES[Schedule.INTERLEAVED], 1.0 + pp * (chunks - 1.0) / chunks, 1.0)
    )
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

    # Optimizer: the slowest rank's update of its (ZeRO-sharded) parameters.
    sharded = col(p["zero"] >= 1)
    opt_params = params_dense / np.where(sharded, col(p["dp"] * cp), 1.0) + params_expert / np.where(
        sharded, col(p["edp"]), 1.0
    )
    optimizer_rows = np.where(col(lora), 0.0, OPTIMIZER_BYTES_PER_PARAM * opt_params / col(hbm_rate))
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
        "tp_comm": m * at_slowest(tp_fwd + 2.0 * tp_bwd + np.where(col(full), tp_fwd, 0.0)),
        "cp_comm": m * at_slowest(cp_fwd + cp_bwd + np.where(col(full), cp_fwd, 0.0)),
        "ep_comm": m * at_slowest(3.0 * ep_fwd + np.where(col(full), ep_fwd, 0.0)),
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
) -> BatchResult:
    """The step model for every plan of ``cols`` under ``eff`` (default: the context's), in chunks."""
    eff = eff if eff is not None else ctx.eff
    parts = []
    for start in range(0, max(len(cols), 1), EVALUATE_CHUNK):
        part = (
            cols if len(cols) <= EVALUATE_CHUNK else cols.take(np.arange(start, min(start + EVALUATE_CHUNK, len(cols))))
        )
        prep = prepare(
            ctx, part, model_flops_per_token=model_flops_per_token, hardware_flops_per_token=hardware_flops_per_token
        )
        parts.append(assemble(prep, eff))
    return parts[0] if len(parts) == 1 else BatchResult.concat(parts)


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
