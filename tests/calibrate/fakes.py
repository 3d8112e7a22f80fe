"""A fake step model with known efficiency dependence, for testing scoring and fitting without ``estimate``.

Its step time is ``compute / gemm (or gemm_8bit) + tp_comm / scale_up + step_overhead_s``, with ``compute`` the
model FLOPs per device at dense peak and ``tp_comm`` a Megatron-style TP all-reduce volume over the scale-up
bandwidth. It reads only those four fields, so the fit must find that only they are exercised.
"""

from __future__ import annotations

from rainier.hardware import Cluster
from rainier.parallel.plan import DegreeUnit, Infeasible, InfeasibleKind, Plan
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.perf.result import MemoryBreakdown, StepBreakdown, StepEstimate
from rainier.precision import Precision
from rainier.workload import TransformerShape, model_flops_per_token

USED_FIELDS = ("gemm", "gemm_8bit", "scale_up", "step_overhead_s")
BYTES_PER_ELEMENT = 2
TP_ALLREDUCES_PER_LAYER = 4  # forward and backward, attention and MLP (Narayanan et al. 2021 sec. 3.2)


def step_estimate(step_time_s: float, *, plan: Plan | None = None, num_devices: int = 8) -> StepEstimate:
    """A StepEstimate whose only meaningful number is ``step_time_s``."""
    return StepEstimate(
        model="fake",
        cluster="fake",
        accelerator="fake",
        num_devices=num_devices,
        plan=plan or Plan(),
        seq_len=1,
        step_time_s=step_time_s,
        tokens_per_s=0.0,
        tokens_per_s_per_device=0.0,
        model_flops_per_step=0.0,
        hardware_flops_per_step=0.0,
        model_flops_per_s_per_device=0.0,
        mfu=0.0,
        hfu=0.0,
        peak_flop_per_s_per_device=1.0,
        breakdown=StepBreakdown(other=step_time_s),
        memory=MemoryBreakdown(weights=0, gradients=0, optimizer=0, activations=0, buffers=0, capacity=1),
        placement=(),
        efficiency_key="fake",
    )


def fake_estimate(
    shape: TransformerShape,
    plan: Plan,
    cluster: Cluster,
    *,
    efficiency: Efficiency | EfficiencyTable | None = None,
    seq_len: int | None = None,
) -> StepEstimate | Infeasible:
    accelerator = cluster.accelerator
    if isinstance(efficiency, EfficiencyTable):
        eff = efficiency.for_accelerator(accelerator)
    else:
        eff = efficiency or Efficiency()
    s = seq_len or shape.seq_len
    tokens = plan.gbs * s
    fp8 = plan.precision is Precision.FP8
    peak = accelerator.peak_flop_per_s(plan.precision)
    compute = model_flops_per_token(shape, s, causal=True) * tokens / cluster.num_devices / peak
    tp = plan.tp_degree if plan.degrees_unit is DegreeUnit.DEVICE else max(1, plan.tp_degree // 2)
    volume = TP_ALLREDUCES_PER_LAYER * 2 * (tp - 1) / tp * tokens * shape.hidden_dim * BYTES_PER_ELEMENT
    per_device_volume = volume * shape.num_layers / (plan.dp_degree * plan.pp_degree * plan.cp_degree)
    comm = per_device_volume / cluster.system.scale_up_bw_bytes_per_s if tp > 1 else 0.0
    step = compute / (eff.gemm_8bit if fp8 else eff.gemm) + comm / eff.scale_up + eff.step_overhead_s
    return step_estimate(step, plan=plan, num_devices=cluster.num_devices)


def infeasible_estimate(
    shape: TransformerShape,
    plan: Plan,
    cluster: Cluster,
    *,
    efficiency: Efficiency | EfficiencyTable | None = None,
    seq_len: int | None = None,
) -> StepEstimate | Infeasible:
    """An estimator that finds every plan out of memory."""
    return Infeasible(InfeasibleKind.MEMORY, "does not fit")
