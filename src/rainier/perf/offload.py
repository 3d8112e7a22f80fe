"""Offload to host memory: what leaves device HBM, what must fit the host, and the time the host link adds.

Three things may live in host DRAM, reached over the device's host link (PCIe, NVLink-C2C; per direction, from
the accelerator catalog):

- **optimizer state** (ZeRO-Offload, Ren et al. 2021; Megatron-Core ``--optimizer-cpu-offload``): the fp32 master
  weights and Adam moments leave HBM. The step model streams the rank's state in and the updated state back out
  over the link once per step, the two directions at once, before the update runs on the device: ``optimizer
  bytes / link bandwidth``, none of it hidden behind compute. This is conservative: ZeRO-Offload instead moves
  only the gradients out and the new weights in and runs Adam on the host CPU, overlapped with the next step
  (rainier has no CPU rates to time that).
- **weights** (ZeRO-Infinity parameter offload, Rajbhandari et al. 2021): the rank's weights (its ZeRO-3 shard
  under zero=3) stay in host memory and stream in for every micro-batch's forward and again for its backward,
  ``2 m W`` bytes host-to-device per step. The device keeps :data:`PREFETCH_LAYERS` layers (the one in use and
  the one arriving).
- **activations** (Megatron-Core ``--cpu-offloading``): a layer's saved activations move out during the forward
  and back in during the backward, ``m x`` one micro-batch's activations each way per step. The device keeps
  :data:`PREFETCH_LAYERS` layers' share of them.

Weight and activation transfers run beside compute, phase by phase: what moves during the forward hides behind
the forward's compute (a third of the step's compute), what moves during the backward behind the backward and
the recompute; only the rest is exposed, and the optimizer stream adds in full. The link is taken as the
device's own: where devices share a PCIe switch's uplink to the CPU, or the GPU's PCIe link also carries its
NIC's GPUDirect traffic, the real rate is lower (not modelled: an optimistic side of this model). The named
``offload`` part of the step breakdown is that exposed time. Gradients, buffers and the logits stay on the device.
One function applies the memory rule (:func:`offloaded_memory`), for the step model and for the search's
choice of which plans to retry with offload, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from rainier.parallel.plan import OFFLOAD_KINDS
from rainier.perf.compute import FORWARD_SHARE

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

OPTIMIZER, WEIGHTS, ACTIVATIONS = (1 << OFFLOAD_KINDS.index(k) for k in ("optimizer", "weights", "activations"))
ALL = OPTIMIZER | WEIGHTS | ACTIVATIONS
# Layers an offloading rank keeps on the device: the layer being computed and the next one being fetched
# (double buffering, as ZeRO-Infinity's prefetch and Megatron's offload handler do).
PREFETCH_LAYERS = 2.0
LINK_FIELDS = ("offload_forward_in", "offload_forward_out", "offload_backward_in", "offload_step")


def offload_mask(kinds: tuple[str, ...]) -> int:
    """The offloaded kinds as a bit mask (bit i = ``OFFLOAD_KINDS[i]``)."""
    return sum(1 << OFFLOAD_KINDS.index(k) for k in kinds)


def offload_kinds(mask: int) -> tuple[str, ...]:
    return tuple(k for i, k in enumerate(OFFLOAD_KINDS) if mask >> i & 1)


def keep_share(layers_per_rank: FloatArray) -> FloatArray:
    """The share of a rank's offloaded weights or activations that stays on the device (prefetch buffers)."""
    out: FloatArray = np.minimum(1.0, PREFETCH_LAYERS / np.maximum(layers_per_rank, 1.0))
    return out


def fewest_layers(rows: Mapping[str, FloatArray]) -> FloatArray:
    """The fewest layers any rank of a plan holds (inf where no row holds a layer), from its rank rows."""
    layers = rows["num_dense"] + rows["num_moe"]
    held = (rows["count"] > 0) & (layers > 0)
    out: FloatArray = np.where(held, layers, np.inf).min(axis=1) if layers.shape[1] else np.ones(len(layers))
    return out


def offloaded_memory(
    memory: Mapping[str, FloatArray], mask: IntArray, *, reserve_bytes: float, reserve_fraction: float
) -> dict[str, FloatArray]:
    """Device memory by kind once ``mask``'s kinds move to the host, and ``host``: the bytes the host holds.

    ``memory`` is the step model's memory without offload (``weights``, ``gradients``, ``optimizer``,
    ``activations``, ``buffers``) plus ``keep_share``; the reserve (``buffers``) is recomputed on what stays.
    """
    weights, optimizer, activations = memory["weights"], memory["optimizer"], memory["activations"]
    keep = memory["keep_share"]
    on_weights = (mask & WEIGHTS) > 0
    on_optimizer = (mask & OPTIMIZER) > 0
    on_activations = (mask & ACTIVATIONS) > 0
    device_weights = np.where(on_weights, weights * keep, weights)
    device_optimizer = np.where(on_optimizer, 0.0, optimizer)
    device_activations = np.where(on_activations, activations * keep, activations)
    subtotal = device_weights + memory["gradients"] + device_optimizer + device_activations
    buffers = np.where(mask > 0, reserve_bytes + reserve_fraction * subtotal, memory["buffers"])
    host = (weights - device_weights) + (optimizer - device_optimizer) + (activations - device_activations)
    return {
        "weights": device_weights,
        "gradients": memory["gradients"],
        "optimizer": device_optimizer,
        "activations": device_activations,
        "buffers": buffers,
        "host": host,
        "keep_share": keep,
    }


def prepare_offload(
    mask: IntArray,
    rows: Mapping[str, FloatArray],
    memory: Mapping[str, FloatArray],
    layer_bytes: tuple[FloatArray, FloatArray],
    kept_bytes: tuple[FloatArray, FloatArray],
    m: FloatArray,
    *,
    host_bw: float,
    host_capacity: float,
    reserve_bytes: float,
    reserve_fraction: float,
    fewest: FloatArray | None = None,
) -> tuple[dict[str, FloatArray], dict[str, FloatArray]]:
    """The step model's memory with offload applied, and the per-plan arrays :func:`offload_time` needs.

    ``rows`` are the plans' pipeline rank rows; the fewest layers any rank holds sets the prefetch share
    (conservative: a rank with more layers keeps a smaller share); ``layer_bytes``/``kept_bytes`` are a dense
    and a MoE layer's activations with and without the plan's recompute (``perf.memory.memory_per_rank``);
    ``fewest``: :func:`fewest_layers` of ``rows`` where already known.
    """
    n = len(mask)
    fewest = fewest if fewest is not None else fewest_layers(rows)
    base = dict(memory, keep_share=keep_share(np.where(np.isfinite(fewest), fewest, 1.0)))
    zeros = np.zeros(n)  # shared by the fields no plan of the batch uses (read only)
    extras = {
        "host_bw": np.full(n, host_bw),
        "host_capacity_bytes": np.full(n, host_capacity),
        **dict.fromkeys(LINK_FIELDS, zeros),
    }
    if not (mask > 0).any():
        return dict(base, host=zeros), extras
    per_micro_batch = np.zeros(n)
    if ((mask & ACTIVATIONS) > 0).any():
        share = rows["recompute_share"]
        dense = share * layer_bytes[0][:, None] + (1.0 - share) * kept_bytes[0][:, None]
        moe = share * layer_bytes[1][:, None] + (1.0 - share) * kept_bytes[1][:, None]
        per_row = rows["num_dense"] * dense + rows["num_moe"] * moe
        per_micro_batch = np.where(rows["count"] > 0, per_row, 0.0).max(axis=1)
    extras.update(link_bytes(base, mask, m, per_micro_batch))
    out = offloaded_memory(base, mask, reserve_bytes=reserve_bytes, reserve_fraction=reserve_fraction)
    return out, extras


def link_bytes(
    memory: Mapping[str, FloatArray], mask: IntArray, m: FloatArray, activation_per_micro_batch: FloatArray
) -> dict[str, FloatArray]:
    """Host-link bytes per step by phase and direction (``memory`` is the memory *without* offload).

    ``forward_in`` (weights arriving for the forward), ``forward_out`` (activations leaving), ``backward_in``
    (weights again and the activations coming back) and ``step`` (the optimizer state, in and out at once).
    """
    weights = np.where((mask & WEIGHTS) > 0, m * memory["weights"], 0.0)
    activations = np.where((mask & ACTIVATIONS) > 0, m * activation_per_micro_batch, 0.0)
    return {
        "offload_forward_in": weights,
        "offload_forward_out": activations,
        "offload_backward_in": weights + activations,
        "offload_step": np.where((mask & OPTIMIZER) > 0, memory["optimizer"], 0.0),
    }


def offload_time(
    link: Mapping[str, FloatArray], host_bw: FloatArray, compute_s: FloatArray, recompute_s: FloatArray
) -> FloatArray:
    """Exposed seconds of the host link (``host_bw`` bytes/s per direction; 0 where the chip has none, and then
    nothing moves). In the forward the weights come in while the activations go out (opposite directions, the
    longer counts) behind the forward compute; in the backward weights and activations both come in behind the
    backward compute and the recompute; the optimizer stream is never hidden."""
    rate = np.where(host_bw > 0, host_bw, np.inf)
    forward = np.maximum(link["offload_forward_in"], link["offload_forward_out"]) / rate - FORWARD_SHARE * compute_s
    backward = link["offload_backward_in"] / rate - (1.0 - FORWARD_SHARE) * compute_s - recompute_s
    out: FloatArray = np.maximum(forward, 0.0) + np.maximum(backward, 0.0) + link["offload_step"] / rate
    return out


__all__ = [
    "ACTIVATIONS",
    "ALL",
    "OPTIMIZER",
    "PREFETCH_LAYERS",
    "WEIGHTS",
    "fewest_layers",
    "keep_share",
    "link_bytes",
    "offload_kinds",
    "offload_mask",
    "offload_time",
    "offloaded_memory",
    "prepare_offload",
]
