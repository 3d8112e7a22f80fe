"""Memory per rank at the peak of a training step: model state, activations in flight, buffers.

Model state is mixed-precision Adam, 2 + 2 + 12 bytes per parameter, sharded by ZeRO over the data-parallel
group (Rajbhandari et al. 2020, sec. 5); expert weights are split over ``ep`` and sharded over the expert
data-parallel group ``dp*cp/ep``. Activations follow Korthikanti et al. 2022 (eqs. 1-5, generalised in
``rainier.workload.memory``) with FlashAttention, times the micro-batches a stage keeps in flight: the first
stage of 1F1B holds ``min(p, m)`` (Narayanan et al. 2021, sec. 2.2), the interleaved schedule
``(1 + (p-1)/(p*v))`` times more per layer held (Korthikanti et al. 2022, sec. 4.2.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from rainier.units import GIB
from rainier.workload.memory import StateBytesPerParam
from rainier.workload.params import ParamCounts

if TYPE_CHECKING:
    from rainier.perf.batch import PlanColumns
    from rainier.workload.shape import TransformerShape

FloatArray = NDArray[np.float64]
INTERLEAVED = 1  # perf.batch.SCHEDULE_CODES[Schedule.INTERLEAVED]
GPIPE = 3  # perf.batch.SCHEDULE_CODES[Schedule.GPIPE]

# Framework reserve: CUDA/Neuron runtime context, allocator fragmentation and collective buffers. A fixed
# 1 GiB plus 5% of everything else is a common rule of thumb for PyTorch training jobs (stated assumption).
RESERVE_BYTES = 1.0 * GIB
RESERVE_FRACTION = 0.05
LOGIT_BYTES = 4.0  # fp32 logits kept for the loss's backward


def stage_params(counts: ParamCounts, cols: PlanColumns) -> tuple[FloatArray, FloatArray]:
    """Per-rank parameters of one pipeline stage: layers split evenly, embeddings on the end stages.

    The first stage holds the input embedding, the last the output head; the larger end is charged (with
    ``pp=1`` both). Tensor parallelism splits every matrix (Shoeybi et al. 2019); norms are replicated but small.
    Returns (dense parameters replicated over data parallelism, expert parameters split by ep and tp).
    """
    pp = cols.pp.astype(np.float64)
    tp = cols.tp.astype(np.float64)
    moe = counts.moe_layer
    expert_per_layer = moe.mlp if moe is not None else 0
    moe_dense = (moe.total - moe.mlp) if moe is not None else 0
    per_stage = (counts.num_dense_layers * counts.dense_layer.total + counts.num_moe_layers * moe_dense) / pp
    inputs = float(counts.embedding + counts.position_embedding)
    outputs = float(counts.output_head + counts.final_norm)
    ends = np.where(cols.pp == 1, inputs + outputs, max(inputs, outputs))
    expert = counts.num_moe_layers * expert_per_layer / pp / (cols.ep * tp)
    return (per_stage + ends) / tp, expert


def memory_per_rank(
    shape: TransformerShape,
    cols: PlanColumns,
    dense: FloatArray,
    expert: FloatArray,
    m: FloatArray,
    dense_layer: FloatArray,
    moe_layer: FloatArray,
) -> dict[str, FloatArray]:
    """Peak bytes per rank on the first pipeline stage, by kind, for every plan of ``cols``.

    ``dense`` and ``expert`` are the stage's parameters per rank (:func:`stage_params`), ``m`` the micro-batches
    per step, ``dense_layer`` and ``moe_layer`` one layer's activation bytes for one micro-batch.
    """
    state = StateBytesPerParam.mixed_precision_adam()
    dense_dp = (cols.dp * cols.cp).astype(np.float64)
    expert_dp = np.maximum(np.floor_divide(cols.dp * cols.cp, cols.ep), 1).astype(np.float64)

    def shard(num: FloatArray, group: FloatArray, stage: int) -> FloatArray:
        return np.where(cols.zero >= stage, num / group, num)

    weights = state.weight * (shard(dense, dense_dp, 3) + shard(expert, expert_dp, 3))
    gradients = np.where(cols.lora, 0.0, state.gradient * (shard(dense, dense_dp, 2) + shard(expert, expert_dp, 2)))
    optimizer = np.where(cols.lora, 0.0, state.optimizer * (shard(dense, dense_dp, 1) + shard(expert, expert_dp, 1)))
    pp = cols.pp.astype(np.float64)
    per_stage = (shape.num_dense_layers * dense_layer + shape.num_moe_layers * moe_layer) / pp
    held = np.minimum(pp, m)
    interleaved = (cols.schedule == INTERLEAVED) & (cols.pp > 1)
    held = np.where(interleaved, held * (1 + (pp - 1) / (pp * cols.vpp)), held)
    held = np.where(cols.schedule == GPIPE, m, held)
    activations = per_stage * held
    seq_local = np.floor_divide(shape.seq_len, cols.cp)
    logits = LOGIT_BYTES * cols.mbs * seq_local * shape.vocab_size / cols.tp
    activations = activations + np.where(cols.pp == 1, logits, 0.0)
    subtotal = weights + gradients + optimizer + activations
    return {
        "weights": weights,
        "gradients": gradients,
        "optimizer": optimizer,
        "activations": activations,
        "buffers": RESERVE_BYTES + RESERVE_FRACTION * subtotal,
    }
