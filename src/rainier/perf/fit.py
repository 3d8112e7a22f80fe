"""First-order fit of a model on an accelerator: how many devices its state needs, and the peak-rate bound.

These are floors, not estimates: memory counts only weights or the full mixed-precision Adam state (no
activations, buffers or fragmentation), and the throughput bound assumes every FLOP runs at dense peak.
The step-time model (``rainier train estimate``) gives the real answer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from rainier.hardware import Accelerator
from rainier.precision import Precision
from rainier.workload import StateBytesPerParam, count_params, model_flops_per_token
from rainier.workload.shape import TransformerShape


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceFit:
    """Memory floors and the peak-FLOP/s throughput bound of one model on one accelerator."""

    accelerator: str
    hbm_bytes: float
    weight_bytes: float
    training_state_bytes: float
    min_devices_for_weights: int
    min_devices_for_training_state: int
    peak_flop_per_s: float
    precision: str
    training_flop_per_token: float
    max_training_tokens_per_s_per_device: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_fit(
    shape: TransformerShape, accelerator: Accelerator, *, precision: Precision = Precision.BF16
) -> DeviceFit:
    """Floors for ``shape`` on ``accelerator`` at ``precision`` matmuls (weights stored in 16 bits)."""
    params = count_params(shape).total
    per_param = StateBytesPerParam.mixed_precision_adam(Precision.BF16, Precision.BF16)
    weight_bytes = params * per_param.weight
    state_bytes = params * per_param.total  # Rajbhandari et al. 2020, sec. 3: 2 + 2 + 12 bytes per parameter
    # Training FLOPs per token: forward + backward (3x forward) with causal attention (formulas.md, "FLOPs").
    flop_per_token = model_flops_per_token(shape, causal=True)
    peak = accelerator.peak_flop_per_s(precision)
    return DeviceFit(
        accelerator=accelerator.id,
        hbm_bytes=accelerator.hbm_bytes,
        weight_bytes=weight_bytes,
        training_state_bytes=state_bytes,
        min_devices_for_weights=math.ceil(weight_bytes / accelerator.hbm_bytes),
        min_devices_for_training_state=math.ceil(state_bytes / accelerator.hbm_bytes),
        peak_flop_per_s=peak,
        precision=precision.value,
        training_flop_per_token=flop_per_token,
        max_training_tokens_per_s_per_device=peak / flop_per_token,
    )
