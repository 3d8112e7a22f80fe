"""Checkpoints: how big, how long to write and restore, and how often to take them.

A training checkpoint holds what a restart needs: the weights and the optimizer state. With mixed-precision Adam
that is 2 bytes of bf16 weights plus 12 bytes of fp32 master weights, momentum and variance per parameter, 14
bytes in all (Rajbhandari et al. 2020, sec. 3.1; gradients are recomputed, not saved). Write and restore times
are that size over the storage bandwidth. Without a model, the default size per device is Llama 3 405B's state
spread over its 16,384 GPUs (405e9 x 14 B / 16,384 = 0.35 GB per device, inside the paper's 1 MB-4 GB per GPU),
and the default storage is each device's share of Llama 3's Tectonic file system (2 TB/s sustained write, 7 TB/s
peak read for 16,384 GPUs): storage is assumed to grow with the cluster, which keeps the write time of the default
checkpoint near 2.8 s at any scale. Both defaults are estimates and say so.

The checkpoint interval trades the write time ``delta`` against the work lost per interruption (``tau / 2`` on
average); with job mean time between interruptions ``M``: Young 1974, ``tau = sqrt(2 delta M)``; Daly 2006,
``tau = sqrt(2 delta M) - delta`` for ``delta < M / 2``, else ``M`` (formulas.md, "Failures and checkpoints").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rainier.errors import field_error
from rainier.fleet.failures import RecoveryDefaults, ReferenceRun, committed_failures
from rainier.precision import Precision
from rainier.workload.memory import ADAM_OPTIMIZER_BYTES_PER_PARAM
from rainier.workload.params import count_params
from rainier.workload.shape import TransformerShape

# bf16 weights (2 B) + fp32 master weights, Adam momentum and variance (12 B) per parameter
# (Rajbhandari et al. 2020, "ZeRO", sec. 3.1): 14 bytes. Gradients are not part of a checkpoint.
CHECKPOINT_BYTES_PER_PARAM = Precision.BF16.bytes_per_element + ADAM_OPTIMIZER_BYTES_PER_PARAM


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise field_error(name, value, "must be a finite number > 0")
    return float(value)


def _non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value >= 0):
        raise field_error(name, value, "must be a finite number >= 0")
    return float(value)


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise field_error(name, value, "must be an integer >= 1")
    return value


# ----------------------------------------------------------------------------------------------------------------
# Size
# ----------------------------------------------------------------------------------------------------------------


def checkpoint_bytes_for_params(num_params: float) -> float:
    """Bytes of weights + optimizer state for ``num_params`` parameters (14 B each, see the module doc)."""
    return _positive("num_params", num_params) * CHECKPOINT_BYTES_PER_PARAM


def checkpoint_bytes(shape: TransformerShape) -> float:
    """Checkpoint size of a model: all its parameters (MoE experts included) at 14 bytes each."""
    return checkpoint_bytes_for_params(count_params(shape).total)


def default_checkpoint_bytes_per_device(reference: ReferenceRun | None = None) -> float:
    """Llama 3 405B's checkpoint spread over its GPUs: 405e9 x 14 B / 16,384 = 0.346 GB (an estimate).

    The Llama 3 paper (sec. 3.3) gives 1 MB to 4 GB of checkpoint state per GPU; this is the average of a
    405B-parameter mixed-precision Adam state over the run's 16,384 GPUs.
    """
    ref = reference or committed_failures().reference
    return checkpoint_bytes_for_params(ref.model_params) / ref.num_devices


def default_checkpoint_bytes(num_devices: int, reference: ReferenceRun | None = None) -> float:
    """Checkpoint size of a job on ``num_devices`` when no model is given: the per-device default times the count."""
    return default_checkpoint_bytes_per_device(reference) * _count("num_devices", num_devices)


# ----------------------------------------------------------------------------------------------------------------
# Storage and times
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageBandwidth:
    """Aggregate storage bandwidth a job sees when it writes or reads a checkpoint."""

    write_bytes_per_s: float
    read_bytes_per_s: float
    estimated: bool = False
    """True when scaled from the reference run rather than given."""

    def __post_init__(self) -> None:
        _positive("write_bytes_per_s", self.write_bytes_per_s)
        _positive("read_bytes_per_s", self.read_bytes_per_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "write_bytes_per_s": self.write_bytes_per_s,
            "read_bytes_per_s": self.read_bytes_per_s,
            "estimated": self.estimated,
        }


def default_storage(
    num_devices: int, reference: ReferenceRun | None = None, *, sites: int = 1, recovery: RecoveryDefaults | None = None
) -> StorageBandwidth:
    """Storage scaled with the cluster, up to a ceiling per site (both estimates).

    ``num_devices`` x Tectonic's bandwidth per Llama 3 GPU: 2 TB/s sustained write and 7 TB/s peak read for 16,384
    GPUs (Llama 3 paper sec. 3.3.1) are 122 MB/s and 427 MB/s per device. One site's file system does not grow
    without limit: the job gets at most ``sites`` times the catalog's ceiling per site (``failures.yaml``
    ``recovery.storage_ceiling_*``), which binds above ~82,000 devices per site for writes (10 TB/s against
    122 MB/s per device).
    """
    catalog = committed_failures()
    ref = reference or catalog.reference
    limits = recovery or catalog.recovery
    share = _count("num_devices", num_devices) / ref.num_devices
    _count("sites", sites)
    return StorageBandwidth(
        write_bytes_per_s=min(ref.storage_write_bytes_per_s * share, limits.storage_ceiling_write_bytes_per_s * sites),
        read_bytes_per_s=min(ref.storage_read_bytes_per_s * share, limits.storage_ceiling_read_bytes_per_s * sites),
        estimated=True,
    )


def peer_memory_storage(num_devices: int, nic_bytes_per_s_per_device: float) -> StorageBandwidth:
    """In-memory checkpoints (Gemini, SOSP '23; NVRx local checkpointing): each device's shard to a peer's host memory.

    Every device sends its shard of the state to the host memory of a server other than its own (so one failed
    server's state survives) over its NIC, and a restarted job reads the shards back the same way: the aggregate
    bandwidth is the device count times the per-device NIC bandwidth, each way. Charged as blocking (Gemini hides
    much of it in the network's idle time between collectives, so this is conservative); the copy to durable
    storage is taken from host memory off the critical path.
    """
    aggregate = _count("num_devices", num_devices) * _positive("nic_bytes_per_s_per_device", nic_bytes_per_s_per_device)
    return StorageBandwidth(write_bytes_per_s=aggregate, read_bytes_per_s=aggregate, estimated=False)


def write_time_s(size_bytes: float, write_bytes_per_s: float) -> float:
    """Seconds to write a checkpoint: size / write bandwidth (training blocks while it is written)."""
    return _positive("checkpoint_bytes", size_bytes) / _positive("write_bytes_per_s", write_bytes_per_s)


def restore_time_s(size_bytes: float, read_bytes_per_s: float) -> float:
    """Seconds to read a checkpoint back after a restart: size / read bandwidth."""
    return _positive("checkpoint_bytes", size_bytes) / _positive("read_bytes_per_s", read_bytes_per_s)


# ----------------------------------------------------------------------------------------------------------------
# Interval
# ----------------------------------------------------------------------------------------------------------------


def young_interval_s(write_s: float, mtbf_s: float) -> float:
    """Young 1974's optimum compute time between checkpoints: ``sqrt(2 delta M)``."""
    return math.sqrt(2.0 * _non_negative("write_s", write_s) * _positive("mtbf_s", mtbf_s))


def daly_interval_s(write_s: float, mtbf_s: float) -> float:
    """Daly 2006's refinement: ``sqrt(2 delta M) - delta`` when ``delta < M / 2``, else ``M``."""
    delta = _non_negative("write_s", write_s)
    mtbf = _positive("mtbf_s", mtbf_s)
    if delta >= mtbf / 2:
        return mtbf
    return math.sqrt(2.0 * delta * mtbf) - delta


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointPlan:
    """A job's checkpoint: size, write and restore times, the Young and Daly optima and the interval used."""

    checkpoint_bytes: float
    write_s: float
    restore_s: float
    young_interval_s: float
    daly_interval_s: float
    interval_s: float
    """Compute time between checkpoints: the given interval, else Daly's optimum."""

    @property
    def overhead(self) -> float:
        """Share of failure-free time spent writing checkpoints: ``delta / (tau + delta)``."""
        return self.write_s / (self.interval_s + self.write_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint_bytes": self.checkpoint_bytes,
            "write_s": self.write_s,
            "restore_s": self.restore_s,
            "young_interval_s": self.young_interval_s,
            "daly_interval_s": self.daly_interval_s,
            "interval_s": self.interval_s,
        }


def checkpoint_plan(
    *,
    size_bytes: float,
    storage: StorageBandwidth,
    job_mtbf_s: float,
    interval_s: float | None = None,
    min_interval_s: float | None = None,
) -> CheckpointPlan:
    """Write/restore times and intervals for a checkpoint of ``size_bytes`` on ``storage``.

    Without a given interval the job checkpoints at Daly's optimum, but not more often than ``min_interval_s``
    (one training step: a checkpoint is taken between steps).
    """
    write = write_time_s(size_bytes, storage.write_bytes_per_s)
    daly = daly_interval_s(write, job_mtbf_s)
    if interval_s is None and min_interval_s is not None:
        interval_s = max(daly, _positive("min_checkpoint_interval_s", min_interval_s))
    return CheckpointPlan(
        checkpoint_bytes=float(size_bytes),
        write_s=write,
        restore_s=restore_time_s(size_bytes, storage.read_bytes_per_s),
        young_interval_s=young_interval_s(write, job_mtbf_s),
        daly_interval_s=daly,
        interval_s=daly if interval_s is None else _positive("checkpoint_interval_s", interval_s),
    )
