"""Memory per rank at the peak of a training step: model state, activations in flight, buffers.

Model state is mixed-precision Adam, 2 + 2 + 12 bytes per parameter, sharded by ZeRO over the data-parallel
group (Rajbhandari et al. 2020, sec. 5), or under HSDP over the shard group only (Zhao et al. 2023 sec. 3.2.2);
expert weights are split over ``ep x etp`` and sharded over the expert data-parallel group (or its part in one
shard group). Activations follow Korthikanti et al. 2022 (eqs. 1-5, generalised in
``rainier.workload.memory``) times the micro-batches a rank keeps in flight under its schedule
(``perf.schedule.in_flight``). Every pipeline rank row is evaluated (uneven stages move the peak) and the
fullest is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from rainier.perf import kernel, memory_loop
from rainier.units import GIB
from rainier.workload.memory import StateBytesPerParam
from rainier.workload.params import ParamCounts

if TYPE_CHECKING:
    from rainier.perf.columns import PlanColumns
    from rainier.workload.shape import TransformerShape

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Framework reserve: CUDA/Neuron runtime context, allocator fragmentation and collective buffers. A fixed
# 1 GiB plus 5% of everything else is a common rule of thumb for PyTorch training jobs (stated assumption).
RESERVE_BYTES = 1.0 * GIB
RESERVE_FRACTION = 0.05
LOGIT_BYTES = 4.0  # fp32 logits kept for the loss's backward
MEMORY_FIELDS = ("weights", "gradients", "optimizer", "activations", "buffers")


def row_params(
    counts: ParamCounts,
    cols: PlanColumns,
    rows: dict[str, FloatArray],
    sums: tuple[FloatArray, FloatArray] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Per-rank parameters of each pipeline rank row: (dense parameters, expert parameters), (plans x rows).

    Tensor parallelism splits every matrix (Shoeybi et al. 2019; norms are replicated but small); the input
    embedding sits on the first rank, the output head and final norm on the last; experts are split over
    ``ep x etp``. ``sums``: :func:`row_param_sums` of ``rows`` where already known (e.g. gathered per layout).
    """
    tp = cols.tp.astype(np.float64)[:, None]
    etp = np.where(cols.etp > 0, cols.etp, cols.tp).astype(np.float64)[:, None]
    ep = cols.ep.astype(np.float64)[:, None]
    dense, expert = sums if sums is not None else row_param_sums(counts, rows)
    return dense / tp, expert / (ep * etp)


def row_param_sums(counts: ParamCounts, rows: dict[str, FloatArray]) -> tuple[FloatArray, FloatArray]:
    """The dense and the expert parameters of each pipeline rank row before tensor and expert parallelism split
    them (:func:`row_params`); a function of the rows alone."""
    moe = counts.moe_layer
    expert_per_layer = float(moe.mlp) if moe is not None else 0.0
    moe_dense = float(moe.total - moe.mlp) if moe is not None else 0.0
    inputs = float(counts.embedding + counts.position_embedding)
    outputs = float(counts.output_head + counts.final_norm)
    dense = (
        rows["num_dense"] * counts.dense_layer.total
        + rows["num_moe"] * moe_dense
        + rows["embedding"] * inputs
        + rows["head"] * outputs
    )
    return dense, rows["num_moe"] * expert_per_layer


def memory_per_rank(
    shape: TransformerShape,
    cols: PlanColumns,
    rows: dict[str, FloatArray],
    dense: FloatArray,
    expert: FloatArray,
    m: FloatArray,
    layer_bytes: tuple[FloatArray, FloatArray],
    chunks: FloatArray,
    *,
    in_flight: Callable[..., FloatArray],
    copies: FloatArray,
    kept_bytes: tuple[FloatArray, FloatArray] | None = None,
    compiled: bool | None = None,
    known: Mapping[str, FloatArray] | None = None,
) -> dict[str, FloatArray]:
    """Peak bytes per rank by kind, on the fullest pipeline rank row, for every plan of ``cols``.

    ``layer_bytes`` are a dense and a MoE layer's activations under the plan's recompute mode, ``kept_bytes`` the
    same without recompute; a row's ``recompute_share`` of its layers (full recompute of N layers per chunk) holds
    the former, the rest the latter (``kept_bytes`` None: every layer holds ``layer_bytes``).

    Runs ``perf.memory_loop.memory_kernel`` where numba is installed and the batch is large enough (``compiled``:
    None decides by size, as ``perf.batch.assemble`` does), else numpy array operations. ``known``: the plan
    arrays of ``perf.batch.prepare`` (``dshard``, ``eshard``, ``zero``, ``lora``, ``schedule``, ``pp`` as floats)
    where already computed. ZeRO shards over ``columns.shard_groups`` (HSDP: the shard group, not all of dp).
    """
    state = StateBytesPerParam.mixed_precision_adam()
    if known is not None:
        dense_dp, expert_dp = known["dshard"], known["eshard"]
    else:
        dense_group, expert_group = cols.shard_groups()
        dense_dp, expert_dp = dense_group.astype(np.float64), expert_group.astype(np.float64)
    seq_local = np.floor_divide(shape.seq_len, cols.cp)
    logits = LOGIT_BYTES * cols.mbs * seq_local * shape.vocab_size / cols.tp
    dense_layer, moe_layer = layer_bytes
    dense_kept, moe_kept = layer_bytes if kept_bytes is None else kept_bytes
    rows = rows if "recompute_share" in rows else dict(rows, recompute_share=np.ones_like(rows["count"]))
    if compiled is None:
        compiled = kernel.AVAILABLE and len(cols) >= kernel.COMPILED_MIN_PLANS
    if compiled and len(cols):
        full = dict(rows, params_dense=dense, params_expert=expert)
        out = np.zeros((len(cols), len(MEMORY_FIELDS)))
        memory_loop.memory_kernel(
            tuple(np.ascontiguousarray(full[name], dtype=np.float64) for name in kernel.ROW_FIELDS),
            dense_dp,
            expert_dp,
            known["zero"] if known is not None else cols.zero.astype(np.float64),
            known["lora"] if known is not None else cols.lora.astype(np.float64),
            np.ascontiguousarray(copies, dtype=np.float64),
            np.ascontiguousarray(dense_layer, dtype=np.float64),
            np.ascontiguousarray(moe_layer, dtype=np.float64),
            np.ascontiguousarray(dense_kept, dtype=np.float64),
            np.ascontiguousarray(moe_kept, dtype=np.float64),
            known["schedule"] if known is not None else cols.schedule.astype(np.float64),
            known["pp"] if known is not None else cols.pp.astype(np.float64),
            np.ascontiguousarray(chunks, dtype=np.float64),
            np.ascontiguousarray(m, dtype=np.float64),
            np.asarray(logits, dtype=np.float64),
            np.array([state.weight, state.gradient, state.optimizer], dtype=np.float64),
            np.array([RESERVE_BYTES, RESERVE_FRACTION]),
            out,
        )
        return {name: out[:, j] for j, name in enumerate(MEMORY_FIELDS)}
    zero = cols.zero[:, None]
    lora = cols.lora[:, None]
    copy = copies[:, None]
    dense_dp, expert_dp = dense_dp[:, None], expert_dp[:, None]

    def shard(num: FloatArray, group: FloatArray, stage: int) -> FloatArray:
        return np.where(zero >= stage, num / group, num)

    weights = copy * state.weight * (shard(dense, dense_dp, 3) + shard(expert, expert_dp, 3))
    gradients = np.where(lora, 0.0, copy * state.gradient * (shard(dense, dense_dp, 2) + shard(expert, expert_dp, 2)))
    optimizer = np.where(lora, 0.0, copy * state.optimizer * (shard(dense, dense_dp, 1) + shard(expert, expert_dp, 1)))
    share = rows["recompute_share"]
    dense_row = share * dense_layer[:, None] + (1.0 - share) * dense_kept[:, None]
    moe_row = share * moe_layer[:, None] + (1.0 - share) * moe_kept[:, None]
    per_micro_batch = rows["num_dense"] * dense_row + rows["num_moe"] * moe_row
    held = in_flight(
        cols.schedule[:, None], cols.pp.astype(np.float64)[:, None], chunks[:, None], m[:, None], rows["first_rank"]
    )
    activations = per_micro_batch * held + rows["head"] * logits[:, None]
    subtotal = weights + gradients + optimizer + activations
    buffers = RESERVE_BYTES + RESERVE_FRACTION * subtotal
    total = np.where(rows["count"] > 0, subtotal + buffers, -np.inf)
    fullest = np.argmax(total, axis=1)[:, None]

    def pick(x: FloatArray) -> FloatArray:
        return np.take_along_axis(x, fullest, axis=1)[:, 0]

    return {
        "weights": pick(weights),
        "gradients": pick(gradients),
        "optimizer": pick(optimizer),
        "activations": pick(activations),
        "buffers": pick(buffers),
    }
