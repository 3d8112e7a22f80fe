"""The step model: hand-computed pieces, invariants (hypothesis), infeasible plans."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainier.hardware import Cluster, cluster_of, get_cluster
from rainier.parallel import InfeasibleKind, Plan, Schedule
from rainier.parallel.placement import place
from rainier.perf.compute import Rank, gemm_time_s, shape_efficiency
from rainier.perf.efficiency import Efficiency, flash2_speed
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate
from rainier.precision import Precision
from rainier.workload import Recompute, get_model
from rainier.workload.flops import Gemm, GemmKind

EFF = Efficiency()
GPT = get_model("gpt3-175b")


def _estimate(plan: Plan, cluster: Cluster, shape: object = GPT, eff: Efficiency = EFF) -> StepEstimate:
    result = estimate(shape, plan, cluster, efficiency=eff)  # type: ignore[arg-type]
    assert isinstance(result, StepEstimate), result
    return result


def _scaled_bandwidth(cluster: Cluster, factor: float) -> Cluster:
    system = cluster.system
    axes = tuple(
        dataclasses.replace(a, link_bw_bytes_per_s_per_direction=a.link_bw_bytes_per_s_per_direction * factor)
        for a in system.axes
    )
    nic = system.nic_bw_bytes_per_s_per_device
    system = dataclasses.replace(system, axes=axes, nic_bw_bytes_per_s_per_device=None if nic is None else nic * factor)
    return dataclasses.replace(cluster, system=system)


def test_single_large_gemm_by_hand() -> None:
    # 8192^3 GEMM on a 1 PFLOP/s rank at 75%: whole 128x128 tiles, one unit, so no quantisation loss.
    rank = Rank(peak_16bit_flop_per_s=1e15, peak_matmul_flop_per_s=1e15, hbm_bw_bytes_per_s=3e12, bits8=False)
    gemm = Gemm(kind=GemmKind.MLP_UP, m=8192, n=8192, k=8192)
    assert gemm_time_s(gemm, rank, EFF) == pytest.approx(2 * 8192**3 / (1e15 * 0.75))


def test_tile_and_wave_quantisation_by_hand() -> None:
    # NVIDIA's Matrix Multiplication Background guide, sec. 3: an A100 (108 SMs, 256x128 tiles).
    # N = 1728 over 128-wide tiles: 14 tiles, 1792 computed -> 1728/1792 of the work is useful.
    assert shape_efficiency(256, 1728, 4096, 1, (256, 128), 1) == pytest.approx(1728 / 1792)
    # 108 tiles on 108 SMs: one full wave; 109 tiles need two waves, the second nearly empty.
    assert shape_efficiency(256 * 108, 128, 4096, 1, (256, 128), 108) == pytest.approx(1.0)
    assert shape_efficiency(256 * 109, 128, 4096, 1, (256, 128), 108) == pytest.approx(109 / 216)
    # Fewer tiles than units: K is split (at least 256 per slice) to fill the units.
    assert shape_efficiency(256, 128, 8192, 1, (256, 128), 108) > 0.25


def test_skinny_gemm_is_memory_bound() -> None:
    # m=1 (decode-like): 2 bytes x (8192 + 8192^2 + 8192) at 70% of 1 TB/s.
    rank = Rank(peak_16bit_flop_per_s=1e15, peak_matmul_flop_per_s=1e15, hbm_bw_bytes_per_s=1e12, bits8=False)
    gemm = Gemm(kind=GemmKind.MLP_UP, m=1, n=8192, k=8192)
    assert gemm_time_s(gemm, rank, EFF) == pytest.approx(2 * (8192 + 8192**2 + 8192) / (1e12 * 0.7))


def test_one_f_one_b_bubble_is_p_minus_1_micro_batches() -> None:
    cluster = cluster_of("a100-80gb", 64)
    plan = Plan(tp_degree=8, pp_degree=8, dp_degree=1, mbs=1, gbs=32)
    est = _estimate(plan, cluster)
    b = est.breakdown
    per_micro_batch = (b.compute + b.recompute + b.tp_comm + b.pp_comm) / plan.num_microbatches
    # (p - 1) = 7 micro-batch times of the body stages; the last stage's LM head is not in the bubble.
    assert 6.5 * per_micro_batch < b.pipeline_bubble <= 7 * per_micro_batch
    interleaved = _estimate(plan.with_(vpp_degree=3, schedule=Schedule.INTERLEAVED, gbs=64), cluster)
    assert interleaved.breakdown.pipeline_bubble / interleaved.step_time_s < b.pipeline_bubble / est.step_time_s


def test_estimate_is_independent_of_cluster_size_for_fixed_plan_shape() -> None:
    small = _estimate(Plan(tp_degree=8, pp_degree=8, dp_degree=2, gbs=64), cluster_of("h100-sxm", 128))
    assert small.tokens_per_s_per_device > 0 and small.fits


def test_breakdown_adds_up_and_mfu_is_consistent() -> None:
    est = _estimate(
        Plan(tp_degree=8, pp_degree=8, dp_degree=16, gbs=1024, recompute=Recompute.SELECTIVE, sequence_parallel=True),
        cluster_of("h100-sxm", 1024),
    )
    assert est.breakdown.total == pytest.approx(est.step_time_s)
    assert est.mfu == pytest.approx(est.model_flops_per_step / est.step_time_s / 1024 / 989e12)
    assert 0 < est.mfu <= est.hfu < 1


def test_infeasible_plans_are_answers() -> None:
    cluster = cluster_of("a100-80gb", 64)
    bad = estimate(GPT, Plan(tp_degree=5, pp_degree=1, dp_degree=12, gbs=60), cluster_of("a100-80gb", 60))
    assert not isinstance(bad, StepEstimate) and bad.kind is InfeasibleKind.DIVISIBILITY
    fp8 = estimate(GPT, Plan(tp_degree=8, pp_degree=8, gbs=64, precision=Precision.FP8), cluster)
    assert not isinstance(fp8, StepEstimate) and fp8.kind is InfeasibleKind.UNSUPPORTED


def test_plan_that_does_not_fit_is_still_estimated() -> None:
    est = _estimate(Plan(tp_degree=1, pp_degree=1, dp_degree=8, gbs=64), cluster_of("h100-sxm", 8))
    assert not est.fits and est.memory.total > est.memory.capacity and est.step_time_s > 0


def test_rainier_cluster_placement_keeps_tp_inside_the_ultraserver() -> None:
    cluster = get_cluster("rainier-trn2-500k")
    plan = Plan(tp_degree=4, pp_degree=9, dp_degree=cluster.num_devices // 36, gbs=cluster.num_devices // 36)
    tp, _, _, dp, pp = place(plan, cluster)
    assert not tp.crosses_scale_out and tp.levels[0].name.startswith("neuronlink-v3")
    assert dp.crosses_scale_out and pp.crosses_scale_out
    est = _estimate(plan, cluster, shape=get_model("llama-3-405b"))
    assert est.num_devices == 499_968


def test_tp_across_nodes_warns() -> None:
    est = _estimate(
        Plan(tp_degree=16, pp_degree=1, dp_degree=1, gbs=8), cluster_of("h100-sxm", 16), shape=get_model("llama-3-70b")
    )
    assert any("tp=16 crosses the scale-out network" in w for w in est.warnings)


PLANS = st.builds(
    lambda tp, pp, mbs, m, rc, sp: Plan(
        tp_degree=tp,
        pp_degree=pp,
        dp_degree=128 // (tp * pp),
        mbs=mbs,
        gbs=(128 // (tp * pp)) * mbs * m,
        recompute=rc,
        sequence_parallel=sp and tp > 1,
    ),
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from([1, 2, 4]),
    st.integers(1, 16),
    st.sampled_from(list(Recompute)),
    st.booleans(),
)
CLUSTER = cluster_of("h100-sxm", 128)
SHAPE = get_model("llama-2-7b")


@settings(max_examples=40, deadline=None)
@given(plan=PLANS, factor=st.floats(1.0, 16.0))
def test_more_link_bandwidth_never_slows_a_step(plan: Plan, factor: float) -> None:
    base = _estimate(plan, CLUSTER, SHAPE)
    faster = _estimate(plan, _scaled_bandwidth(CLUSTER, factor), SHAPE)
    assert faster.step_time_s <= base.step_time_s * (1 + 1e-12)


@settings(max_examples=40, deadline=None)
@given(plan=PLANS, extra=st.integers(1, 8))
def test_more_micro_batches_never_raise_the_bubble_fraction(plan: Plan, extra: int) -> None:
    more = plan.with_(gbs=plan.gbs + extra * plan.dp_degree * plan.mbs)
    a, b = _estimate(plan, CLUSTER, SHAPE), _estimate(more, CLUSTER, SHAPE)
    assert b.breakdown.pipeline_bubble / b.step_time_s <= a.breakdown.pipeline_bubble / a.step_time_s + 1e-12


@settings(max_examples=30, deadline=None)
@given(plan=PLANS)
def test_doubling_dp_at_fixed_per_rank_work_keeps_compute_time(plan: Plan) -> None:
    doubled = plan.with_(dp_degree=plan.dp_degree * 2, gbs=plan.gbs * 2)
    a = _estimate(plan, CLUSTER, SHAPE)
    b = _estimate(doubled, cluster_of("h100-sxm", 256), SHAPE)
    assert b.breakdown.compute == pytest.approx(a.breakdown.compute, rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(plan=PLANS)
def test_memory_grows_with_micro_batch(plan: Plan) -> None:
    bigger = plan.with_(mbs=plan.mbs * 2, gbs=plan.gbs * 2)
    assert _estimate(bigger, CLUSTER, SHAPE).memory.activations > _estimate(plan, CLUSTER, SHAPE).memory.activations


@settings(max_examples=30, deadline=None)
@given(plan=PLANS)
def test_full_recompute_never_uses_more_activation_memory_than_selective(plan: Plan) -> None:
    full = _estimate(plan.with_(recompute=Recompute.FULL), CLUSTER, SHAPE).memory.activations
    selective = _estimate(plan.with_(recompute=Recompute.SELECTIVE), CLUSTER, SHAPE).memory.activations
    assert full <= selective


@pytest.mark.parametrize("cp", [1, 4])
def test_packed_documents_shorten_only_attention(cp: int) -> None:
    """Packing short documents cuts the attention core (FLOPs by span/s, tiling overhead up), nothing else."""
    shape = get_model("llama-3-8b").with_seq_len(16384)
    plan = Plan(tp_degree=2, dp_degree=8 // cp, cp_degree=cp, mbs=1, gbs=64)
    cluster = cluster_of("h100-sxm", 16)
    full = _estimate(plan, cluster, shape)
    same = _estimate(plan, cluster, shape.with_documents(16384))
    packed = _estimate(plan, cluster, shape.with_documents(1024))
    assert same.step_time_s == full.step_time_s
    assert packed.step_time_s < full.step_time_s
    assert packed.memory.total == full.memory.total
    # The attention core's FLOPs fall 16x; its time falls less (per-tile overhead), and the rest is untouched.
    saved = full.step_time_s - packed.step_time_s
    assert 0 < saved < full.step_time_s * 0.5


def test_flash2_kernels_slow_only_the_attention_core_where_the_chip_has_faster_ones() -> None:
    """FlashAttention-2's kernels run at ``flash2_speed`` of the vendor's on Hopper (kernel-efficiency.yaml);
    on Ampere, where they are the fastest, a flash2 plan costs what the fused one does."""
    shape = get_model("llama-3-8b")
    fused = Plan(tp_degree=1, dp_degree=8, mbs=1, gbs=64)
    flash2 = dataclasses.replace(fused, flash2_attention=True)
    eff = Efficiency()
    h100 = cluster_of("h100-sxm", 8)
    speed = flash2_speed("nvidia-hopper")
    assert 0 < speed < 1
    base = estimate(shape, fused, h100, efficiency=eff)
    slow = estimate(shape, flash2, h100, efficiency=eff)
    attention = estimate(shape, fused, h100, efficiency=eff.with_(attention=eff.attention * speed))
    assert isinstance(base, StepEstimate) and isinstance(slow, StepEstimate) and isinstance(attention, StepEstimate)
    assert slow.step_time_s == pytest.approx(attention.step_time_s, rel=1e-9)  # attention core only
    assert slow.step_time_s > base.step_time_s and slow.memory.total == base.memory.total
    a100 = cluster_of("a100-80gb", 8)
    same, also = estimate(shape, fused, a100, efficiency=eff), estimate(shape, flash2, a100, efficiency=eff)
    assert isinstance(same, StepEstimate) and isinstance(also, StepEstimate)
    assert also.step_time_s == same.step_time_s


def test_flash2_needs_fused_16bit_attention() -> None:
    with pytest.raises(ValueError, match="flash2"):
        Plan(flash_attention=False, flash2_attention=True)
    with pytest.raises(ValueError, match="flash2"):
        Plan(precision=Precision.FP8, fp8_attention=True, flash2_attention=True)
