"""HSDP in the step model: ZeRO's state over the shard group, its collectives on the shard group's links, and one
all-reduce of the gradient shard across the replicas (PyTorch FSDP HYBRID_SHARD, Zhao et al. 2023 sec. 3.2.2)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainier.hardware import cluster_of
from rainier.parallel.plan import DegreeUnit, Plan, parse_plan
from rainier.perf.columns import PlanColumns, shard_groups
from rainier.perf.keys import plan_keys
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate, resolve_efficiency, step_context
from rainier.workload import get_model
from rainier.workload.memory import model_state_bytes

SHAPE, CLUSTER = get_model("llama-3-8b"), cluster_of("h100-sxm", 64)  # eight nodes of eight H100


def _estimate(text: str) -> StepEstimate:
    found = estimate(SHAPE, parse_plan(text), CLUSTER)
    assert isinstance(found, StepEstimate), found
    return found


def _state(found: StepEstimate) -> tuple[float, float, float]:
    return found.memory.weights, found.memory.gradients, found.memory.optimizer


def test_hsdp_memory_lies_between_zero_over_all_dp_and_no_zero() -> None:
    plain = _state(_estimate("tp=1,dp=64,zero=3,mbs=1,gbs=64"))
    hybrid = _state(_estimate("tp=1,dp=64,zero=3,shard=8,mbs=1,gbs=64"))
    none = _state(_estimate("tp=1,dp=64,zero=0,mbs=1,gbs=64"))
    for p, h, n in zip(plain, hybrid, none, strict=True):
        assert p < h < n
        assert h == pytest.approx(8 * p)  # sharded over 8 ranks instead of 64


def test_model_state_bytes_shards_over_the_shard_group() -> None:
    whole = model_state_bytes(8e9, dp_degree=64, zero_stage=3)
    hybrid = model_state_bytes(8e9, dp_degree=64, zero_stage=3, shard_degree=8)
    assert hybrid.total_bytes == pytest.approx(8 * whole.total_bytes)
    with pytest.raises(ValueError, match=r"^shard_degree=3 is invalid: a divisor of dp_degree=64"):
        model_state_bytes(8e9, dp_degree=64, zero_stage=3, shard_degree=3)


def test_shard_collectives_stay_in_the_node_and_the_replica_all_reduce_crosses_it() -> None:
    """tp=1, s=8: the shard group is one node (NVLink only); the 8 replicas sit a node apart (InfiniBand only)."""
    eff, _ = resolve_efficiency(CLUSTER, None)
    ctx = step_context(SHAPE, CLUSTER, eff, DegreeUnit.DEVICE)
    plan = parse_plan("tp=1,dp=64,zero=3,shard=8,mbs=1,gbs=512")
    keys = plan_keys(ctx, PlanColumns.from_plans([plan]))
    nvlink, ib = (ctx.link_index[name] for name in ctx.link_names)
    shard = keys.comm_loads["dp_rs"][keys.comm_index["dp_rs"][0]]
    replica = keys.comm_loads["dpr_ar"][keys.comm_index["dpr_ar"][0]]
    assert shard[nvlink] > 0 and shard[ib] == 0
    assert replica[ib] > 0 and replica[nvlink] == 0
    found = _estimate(plan.describe())
    axes = {a.axis: a for a in found.placement}
    assert [level.scale_out for level in axes["dp_shard"].levels] == [False]
    assert [level.scale_out for level in axes["dp_replica"].levels] == [True]
    fsdp = _estimate("tp=1,dp=64,zero=3,mbs=1,gbs=512")
    # FSDP gathers and reduce-scatters each of the 8 micro-batches over InfiniBand too (1/8 of each crosses the
    # nodes: 24 x 7/64 of the weights' bytes); HSDP sends one all-reduce of the shard there (14/64)
    assert 0 < found.link_load_s[ctx.link_names[ib]] < fsdp.link_load_s[ctx.link_names[ib]] / 5
    # the shard's all-reduce completes the gradients after the last backward, where FSDP has nothing left to send
    assert found.breakdown.dp_comm_exposed > fsdp.breakdown.dp_comm_exposed == 0


def test_replica_all_reduce_is_exposed_data_parallel_time_under_zero_1() -> None:
    """ZeRO-1 over the node, replicated across nodes: reduce-scatter in the node, then the shard's all-reduce."""
    plain = _estimate("tp=1,dp=64,zero=1,mbs=1,gbs=64")
    hybrid = _estimate("tp=1,dp=64,zero=1,shard=8,mbs=1,gbs=64")
    assert hybrid.breakdown.dp_comm_exposed > 0 and plain.breakdown.dp_comm_exposed > 0
    for found in (plain, hybrid):
        assert max(found.link_load_s.values()) <= found.step_time_s * (1 + 1e-9)


def test_expert_shard_group_is_the_part_of_expert_dp_inside_one_shard_group() -> None:
    one = np.array([1])
    # ep=2 on dp=16, s=4: 8 expert-dp ranks, 4 replicas: each expert's state sharded over 2
    dense, expert = shard_groups(16 * one, one, 8 * one, 4 * one)
    assert (dense[0], expert[0]) == (4, 2)
    # ep=8, s=8: an expert's two copies sit in different shard groups: nothing to shard with
    assert shard_groups(16 * one, one, 2 * one, 8 * one)[1][0] == 1
    # no HSDP: the whole groups
    assert [g[0] for g in shard_groups(16 * one, 2 * one, 8 * one, 0 * one)] == [32, 8]


PLANS = st.tuples(
    st.sampled_from([1, 2, 4, 8]),  # tp
    st.sampled_from([1, 2, 4]),  # pp
    st.sampled_from([1, 2, 3]),  # zero
    st.sampled_from([1, 2]),  # mbs
    st.sampled_from([1, 2, 4]),  # micro-batches per dp rank
)


def _base_plan(plan: tuple[int, int, int, int, int]) -> Plan:
    """A plan without a shard group on the 64 devices, from a drawn (tp, pp, zero, mbs, micro-batches) tuple."""
    tp, pp, zero, mbs, micro = plan
    dp = 64 // (tp * pp)
    return Plan(
        tp_degree=tp, pp_degree=pp, dp_degree=dp, zero_stage=zero, mbs=mbs, gbs=dp * mbs * micro,
        sequence_parallel=tp > 1,
    )  # fmt: skip


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=PLANS)
def test_a_shard_degree_of_dp_is_the_same_step_as_none(plan: tuple[int, int, int, int, int]) -> None:
    base = _base_plan(plan)
    dp = base.dp_degree
    plain, whole = (estimate(SHAPE, p, CLUSTER) for p in (base, base.with_(shard_degree=dp)))
    assert isinstance(plain, StepEstimate) and isinstance(whole, StepEstimate)
    assert whole.step_time_s == plain.step_time_s
    assert whole.memory == plain.memory
    assert whole.breakdown == plain.breakdown
    assert whole.link_load_s == plain.link_load_s


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=PLANS)
def test_model_state_shrinks_as_the_shard_group_grows(plan: tuple[int, int, int, int, int]) -> None:
    base = _base_plan(plan)
    dp = base.dp_degree
    shards = [s for s in (1, 2, 4, 8, 16, 32, 64) if s <= dp]
    states = []
    for s in shards:
        found = estimate(SHAPE, base.with_(shard_degree=s), CLUSTER)
        assert isinstance(found, StepEstimate)
        states.append(sum(_state(found)))
        assert max(found.link_load_s.values(), default=0.0) <= found.step_time_s * (1 + 1e-9)
    unsharded = estimate(SHAPE, base.with_(zero_stage=0), CLUSTER)
    assert isinstance(unsharded, StepEstimate)
    assert states[0] == pytest.approx(sum(_state(unsharded)))  # s=1: every rank holds the whole state
    assert all(a >= b for a, b in itertools.pairwise(states))
    assert len(shards) == 1 or states[-1] < states[0]
