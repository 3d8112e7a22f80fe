"""The whole step model of a large batch as one compiled pass per plan (numba): ``perf.batch.prepare``, the
assembly and memory loops of ``perf.kernel``, offload (``perf.offload``) and the result arrays, fused.

``perf.batch.evaluate`` of a million plans used to spend as long building per-plan numpy columns (``prepare``)
and copying results chunk by chunk as the compiled assembly itself took. Here every plan is read from its raw
columns and its indices into the per-key tables of ``perf.keys`` and taken through every stage in registers and a
few small scratch arrays, and its results are written straight into the :class:`~rainier.perf.batch_result.BatchResult`
arrays. Each quantity is the same IEEE operations in the same order as in the numpy ``prepare`` and the
``perf.kernel`` loops (sums over pipeline rows in numpy's pairwise order), so both paths give the same bits;
``tests/perf/test_kernel.py`` checks it. Where numpy decides per chunk of :data:`~rainier.perf.batch.EVALUATE_CHUNK`
plans (whether any plan of a chunk offloads) the loop does too. numba is imported on the first call.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from rainier.parallel.plan import RECOMPUTE_MODULES, Recompute
from rainier.perf import kernel
from rainier.perf.batch_result import BREAKDOWN_FIELDS, BatchResult
from rainier.perf.columns import RECOMPUTE_CODES, PlanColumns
from rainier.perf.compute import inverse_efficiencies
from rainier.perf.context import StepContext
from rainier.perf.efficiency import Efficiency
from rainier.perf.fused_rows import PAIRWISE_BLOCK
from rainier.perf.keys import PlanKeys
from rainier.perf.memory import RESERVE_BYTES, RESERVE_FRACTION
from rainier.perf.offload import keep_share
from rainier.perf.parts import GRAD_ACCUM_BYTES_PER_PARAM, GRAD_BYTES, OPTIMIZER_BYTES_PER_PARAM, PARAM_BYTES
from rainier.workload.memory import StateBytesPerParam

FloatArray = NDArray[np.float64]

# Plan columns as the loop reads them (int64 and bool arrays), in these orders: those of a plan's run
# (perf.keys.Runs: one value per run), and the plan's own.
RUN_COLUMNS = ("tp", "pp", "dp", "cp", "ep", "etp", "vpp", "mbs", "schedule", "shard")
RUN_FLAGS = ("sp", "lora")
INT_COLUMNS = ("gbs", "zero", "recompute", "ep_domains", "recompute_mask", "recompute_layers", "offload")
FLAG_COLUMNS = ("tp_overlap", "a2a_overlap", "ep_dedup")
RUN_KEYS = ("pass", "row", "dp", "pp")  # a run's rows of the pass, layout, with-dp and with-pp keys (perf.keys)
COMM_SOURCES = ("pass", "dp", "pp")  # the keys collectives go by (perf.keys.PlanKeys.comm_source)
# Per-layout pipeline rank row tables (perf.keys.PlanKeys.rows and param_sums), in this order.
LAYOUT_TABLES = ("num_dense", "num_moe", "head", "count", "first_rank", "sums_dense", "sums_expert")
# Float scalars of the model, the chip and the batch, in this order.
SCALARS = (
    "hidden",
    "top_k",
    "moe",
    "shared",
    "mla",
    "num_heads",
    "mla_head_dim",
    "head_dim",
    "vocab",
    "model_flops",
    "hbm_bw",
    "host_bw",
    "reserve_bytes",
    "reserve_fraction",
)
S_HIDDEN, S_TOP_K, S_MOE, S_SHARED, S_MLA, S_NUM_HEADS, S_MLA_HEAD_DIM, S_HEAD_DIM, S_VOCAB = range(9)
S_MODEL_FLOPS, S_HBM_BW, S_HOST_BW, S_RESERVE_BYTES, S_RESERVE_FRACTION = range(9, 14)
INT_SCALARS = ("seq_len", "num_kv_heads")
I_SEQ_LEN, I_NUM_KV_HEADS = range(2)
# Memory rows of the output, in this order (perf.batch's memory dict).
MEMORY_ROWS = ("weights", "gradients", "optimizer", "activations", "buffers", "keep_share", "host")
FULL_CODE = RECOMPUTE_CODES[Recompute.FULL]
SELECTIVE_CODE = RECOMPUTE_CODES[Recompute.SELECTIVE]
NONE_CODE = RECOMPUTE_CODES[Recompute.NONE]
# Bits of the selective-recompute modules in perf.columns.recompute_mask.
BIT_CORE_ATTN, BIT_LAYERNORM, BIT_MOE_ACT, BIT_MLP, BIT_SHARED, BIT_MOE, BIT_MLA = (
    RECOMPUTE_MODULES.index(m)
    for m in ("core_attn", "layernorm", "moe_act", "mlp", "shared_experts", "moe", "mla_up_proj")
)

LinkRates = tuple[tuple[FloatArray, ...], tuple[FloatArray, ...]]


def link_rates(comm_slopes: dict[str, FloatArray], comm_loads: dict[str, FloatArray], eff: Efficiency) -> LinkRates:
    """Each placed group's seconds per byte under ``eff`` as the compiled loops read them (``rates``, ``loads``
    of ``perf.kernel._assemble``): a function of the groups' tables alone, shared by the chunks of one batch."""
    up, out = eff.scale_up, eff.scale_out
    rates = tuple(
        np.ascontiguousarray(np.stack([s[:, 0] / up + s[:, 1] / out, s[:, 1] / out, s[:, 2]], axis=1))
        for s in (comm_slopes[name] for name in kernel.COMM_FIELDS)
    )
    loads = tuple(np.stack([g, g / up, g / out]) for g in (comm_loads[name] for name in kernel.COMM_FIELDS))
    return rates, loads


def fits(keys: PlanKeys) -> bool:
    """Whether the fused loop takes plans of these tables: numba installed, pipeline layouts of at most
    :data:`PAIRWISE_BLOCK` row slots (numpy's summation order is reproduced up to there)."""
    return kernel.AVAILABLE and keys.rows["count"].shape[1] <= PAIRWISE_BLOCK


def evaluate_fused(
    ctx: StepContext,
    cols: PlanColumns,
    keys: PlanKeys,
    eff: Efficiency,
    *,
    model_flops_per_token: float,
    hardware_flops_per_token: dict[int, float],
    chunk: int,
) -> BatchResult:
    """``perf.batch.evaluate`` of ``cols`` (with its per-key tables ``keys``) in one compiled pass (see the
    module docstring); ``chunk``: the plans numpy would take at once (offload is decided per chunk)."""
    n = len(cols)
    shape, accelerator = ctx.shape, ctx.cluster.accelerator
    moe, mla = shape.moe, shape.mla

    ints = tuple(np.ascontiguousarray(getattr(cols, name), dtype=np.int64) for name in INT_COLUMNS)
    flags = tuple(np.ascontiguousarray(getattr(cols, name), dtype=np.bool_) for name in FLAG_COLUMNS)
    runs = keys.runs
    run_ints = tuple(np.ascontiguousarray(runs.columns[name], dtype=np.int64) for name in RUN_COLUMNS)
    run_flags = tuple(np.ascontiguousarray(runs.columns[name], dtype=np.bool_) for name in RUN_FLAGS)
    run_keys = tuple(
        np.ascontiguousarray(k, dtype=np.int64) for k in (runs.pass_index, runs.row_index, runs.dp_index, runs.pp_index)
    )
    comm_local = tuple(np.ascontiguousarray(keys.comm_local[name], dtype=np.int64) for name in kernel.COMM_FIELDS)
    comm_by = np.array([COMM_SOURCES.index(keys.comm_source[name]) for name in kernel.COMM_FIELDS], dtype=np.int64)
    keyidx = tuple(np.ascontiguousarray(k, dtype=np.int64) for k in (keys.activation_index, keys.kept_index))
    rates, loads = link_rates(keys.comm_slopes, keys.comm_loads, eff)
    tables = {**keys.rows, "sums_dense": keys.param_sums[0], "sums_expert": keys.param_sums[1]}
    top_k = float(moe.top_k) if moe is not None else 0.0
    domains = np.maximum(keys.ep_domains, 1.0)  # as perf.batch.prepare finds them
    plain = top_k * (domains - 1.0) / domains
    distinct = (domains - 1.0) * (1.0 - (1.0 - 1.0 / domains) ** top_k)
    scalars = {
        "hidden": float(shape.hidden_dim),
        "top_k": top_k,
        "moe": 1.0 if moe is not None else 0.0,
        "shared": 1.0 if moe is not None and moe.num_shared_experts else 0.0,
        "mla": 1.0 if mla is not None else 0.0,
        "num_heads": float(shape.num_heads),
        "mla_head_dim": float(shape.qk_head_dim + shape.v_head_dim) if mla is not None else 0.0,
        "head_dim": float(shape.head_dim),
        "vocab": float(shape.vocab_size),
        "model_flops": float(model_flops_per_token),
        "hbm_bw": accelerator.hbm_bw_bytes_per_s / ctx.cores,
        "host_bw": (accelerator.host_link_bw_bytes_per_s or 0.0) / ctx.cores,
        "reserve_bytes": RESERVE_BYTES,
        "reserve_fraction": RESERVE_FRACTION,
    }
    state = StateBytesPerParam.mixed_precision_adam()
    step = np.empty(n)
    breakdown = np.empty((len(BREAKDOWN_FIELDS), n))
    memory = np.empty((len(MEMORY_ROWS), n))
    flops = np.empty((2, n))
    link_load = np.empty((n, len(ctx.link_names)))
    from rainier.perf.fused_loop import evaluate_kernel  # the loop imports this module's layout

    evaluate_kernel(
        np.ascontiguousarray(runs.run_of, dtype=np.int64),
        run_ints,
        run_flags,
        run_keys,
        ints,
        flags,
        np.ascontiguousarray(cols.capacity, dtype=np.float64),
        np.ascontiguousarray(cols.imbalance, dtype=np.float64),
        comm_local,
        comm_by,
        keyidx,
        np.ascontiguousarray(keys.passes @ inverse_efficiencies(eff)),
        rates,
        loads,
        np.ascontiguousarray(ctx.scale_out_mask, dtype=np.float64),
        tuple(np.ascontiguousarray(tables[name], dtype=np.float64) for name in LAYOUT_TABLES),
        keep_share(np.where(np.isfinite(keys.fewest), keys.fewest, 1.0)),
        np.ascontiguousarray(keys.activations, dtype=np.float64),
        np.ascontiguousarray(keys.kept, dtype=np.float64),
        np.ascontiguousarray(plain),
        np.ascontiguousarray(distinct),
        np.array([hardware_flops_per_token[r] for r in range(3)], dtype=np.float64),
        np.array([scalars[name] for name in SCALARS], dtype=np.float64),
        np.array([shape.seq_len, shape.num_kv_heads], dtype=np.int64),
        np.array([getattr(eff, name) for name in kernel.EFF_FIELDS], dtype=np.float64),
        np.array([GRAD_BYTES, PARAM_BYTES, GRAD_ACCUM_BYTES_PER_PARAM, OPTIMIZER_BYTES_PER_PARAM]),
        np.array([state.weight, state.gradient, state.optimizer], dtype=np.float64),
        chunk,
        step,
        breakdown,
        memory,
        flops,
        link_load,
    )
    # perf.batch's memory dict lists host before keep_share where its first chunk offloads
    offloads = bool((cols.offload[:chunk] > 0).any())
    order = (*MEMORY_ROWS[:5], "host", "keep_share") if offloads else MEMORY_ROWS

    def constant(value: float) -> FloatArray:
        """One value for every plan, as a read-only view of a single float: the same values as ``np.full``
        without writing (and first touching) n floats, which for a million plans had cost ~2% of the pass."""
        return np.broadcast_to(np.float64(value), (n,))

    return BatchResult(
        step_time_s=step,
        breakdown={name: breakdown[j] for j, name in enumerate(BREAKDOWN_FIELDS)},
        memory={name: memory[MEMORY_ROWS.index(name)] for name in order},
        capacity_bytes=constant(accelerator.hbm_bytes / ctx.cores),
        model_flops_per_step=flops[0],
        hardware_flops_per_step=flops[1],
        link_load_s=link_load,
        link_names=ctx.link_names,
        host_bytes=memory[MEMORY_ROWS.index("host")],
        host_capacity_bytes=constant((accelerator.host_memory_bytes or 0.0) / ctx.cores),
    )
