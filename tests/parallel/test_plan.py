"""Plan parsing and divisibility checks."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainier.errors import InputError
from rainier.parallel import InfeasibleKind, Plan, Schedule, check_plan, parse_plan
from rainier.precision import Precision
from rainier.workload import Recompute, get_model


def test_parse_full_plan() -> None:
    plan = parse_plan("tp=8,pp=8,dp=64,mbs=1,gbs=1024,recompute=selective,precision=bf16")
    assert (plan.tp_degree, plan.pp_degree, plan.dp_degree) == (8, 8, 64)
    assert plan.recompute is Recompute.SELECTIVE and plan.precision is Precision.BF16
    assert plan.num_devices == 4096 and plan.num_microbatches == 16


def test_dp_inferred_from_device_count_and_vpp_implies_interleaved() -> None:
    plan = parse_plan("tp=4,pp=4,vpp=5,cp=2,gbs=128", num_devices=64)
    assert plan.dp_degree == 2 and plan.schedule is Schedule.INTERLEAVED


def test_fsdp_means_zero_3_and_describe_round_trips() -> None:
    plan = parse_plan("tp=2,dp=4,fsdp=true,sp=true,gbs=64,precision=fp8")
    assert plan.zero_stage == 3
    assert parse_plan(plan.describe()) == plan


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("tp=0", "tp='0' is invalid: a positive integer"),
        ("tp=eight", "tp='eight' is invalid"),
        ("tq=8", r"plan\.tq='8' is invalid: unknown key"),
        ("tp=8,tp=4", "each key once"),
        ("recompute=some", "recompute='some' is invalid: allowed: none, selective, full"),
        ("precision=int4", "precision='int4' is invalid"),
        ("zero=5", "zero='5' is invalid"),
        ("tp8", "is not key=value"),
        ("pp=1,vpp=2", "vpp=2 is invalid"),
        ("sp=true", "sp=True is invalid"),
        ("precision=fp4", "a training matmul precision"),
        ("schedule=zb-v,pp=1", "a pipeline"),
        ("tp=2,pp=2,schedule=dualpipe,vpp=2", "vpp=2 is invalid"),
        ("pp=3,schedule=dualpipe", "an even number"),
        ("recompute_modules=core_attn+foo", "recompute_modules"),
        ("recompute=full,recompute_layers=0", "recompute_layers='0' is invalid: a positive integer"),
        ("recompute=selective,recompute_layers=2", "recompute_layers=2 is invalid: only with recompute=full"),
        ("recompute_layers=2", "recompute_layers=2 is invalid: only with recompute=full"),
    ],
)
def test_malformed_plans_are_one_line_errors(text: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_plan(text)


def test_dp_cannot_be_inferred_when_not_dividing() -> None:
    with pytest.raises(InputError, match="must divide the rank count 100"):
        parse_plan("tp=8", num_devices=100)


def test_check_plan_reports_divisibility() -> None:
    shape = get_model("gpt3-175b")  # 96 layers, 96 heads
    ok = Plan(tp_degree=8, pp_degree=8, dp_degree=2, mbs=1, gbs=64)
    assert check_plan(ok, shape, 128) is None
    cases = [
        (ok, 64, "must equal the device count 64"),
        (ok.with_(tp_degree=5, dp_degree=1), 40, "heads 96 not divisible by tp=5"),
        (ok.with_(pp_degree=100, dp_degree=1), 800, "pp=100 exceeds the 96 layers"),
        (ok.with_(pp_degree=4, dp_degree=4, first_stage_layers=60, last_stage_layers=40), 128, "exceed the 96 layers"),
        (ok.with_(gbs=63), 128, "gbs 63 not divisible by dp\\*mbs=2"),
        (ok.with_(ep_degree=2), 128, "ep=2 needs a mixture-of-experts model"),
    ]
    for plan, devices, match in cases:
        verdict = check_plan(plan, shape, devices)
        assert verdict is not None and verdict.kind is InfeasibleKind.DIVISIBILITY
        assert re.search(match, verdict.reason), verdict.reason


def test_expert_parallel_must_divide_experts_and_dp() -> None:
    shape = get_model("mixtral-8x7b")
    plan = Plan(tp_degree=2, dp_degree=8, ep_degree=8, gbs=64)
    assert check_plan(plan, shape, 16, num_experts=8) is None
    bad = check_plan(plan.with_(ep_degree=16, dp_degree=16), shape, 32, num_experts=8)
    assert bad is not None and "experts 8 not divisible by ep=16" in bad.reason


@settings(max_examples=300, deadline=None)
@given(
    degrees=st.tuples(*(st.sampled_from([1, 2, 3, 4, 8, 16]) for _ in range(5))),
    vpp=st.sampled_from([1, 2, 3, 7]),
    mbs=st.integers(1, 8),
    micro=st.integers(1, 64),
    sp=st.booleans(),
    zero=st.integers(0, 3),
    recompute=st.sampled_from(list(Recompute)),
    precision=st.sampled_from([Precision.BF16, Precision.FP8]),
    schedule=st.sampled_from(list(Schedule)),
    overlap=st.booleans(),
    capacity=st.sampled_from([None, 1.25]),
    recompute_layers=st.sampled_from([None, 1, 2, 5]),
    offload=st.sampled_from([(), ("optimizer",), ("activations", "weights"), ("optimizer", "weights", "activations")]),
    shard=st.sampled_from([None, 1, 2, 4]),
)
def test_every_printed_plan_is_read_back_unchanged(
    degrees: tuple[int, ...],
    vpp: int,
    mbs: int,
    micro: int,
    sp: bool,
    zero: int,
    recompute: Recompute,
    precision: Precision,
    schedule: Schedule,
    overlap: bool,
    capacity: float | None,
    recompute_layers: int | None,
    offload: tuple[str, ...],
    shard: int | None,
) -> None:
    """What rainier prints as a plan (search, sweep, fleet, estimate) is exact ``--plan`` syntax, gbs included."""
    tp, pp, dp, cp, ep = degrees
    try:
        plan = Plan(
            tp_degree=tp,
            pp_degree=pp,
            dp_degree=dp,
            cp_degree=cp,
            ep_degree=ep,
            vpp_degree=vpp,
            sequence_parallel=sp,
            zero_stage=zero,
            mbs=mbs,
            gbs=dp * mbs * micro,
            recompute=recompute,
            precision=precision,
            schedule=schedule,
            tp_comm_overlap=overlap,
            capacity_factor=capacity,
            recompute_layers=recompute_layers if recompute is Recompute.FULL else None,
            offload=offload,
            shard_degree=shard,
        )
    except InputError:
        return  # not a plan rainier would print
    text = plan.describe()
    assert "gbs=" in text
    assert parse_plan(text) == plan


def test_a_plan_without_a_batch_is_refused() -> None:
    with pytest.raises(InputError, match=r"plan\.gbs='missing' is invalid: gbs=N, the global batch in sequences"):
        parse_plan("tp=8,pp=2,dp=4")


def test_recompute_layers_is_written_and_read_only_with_full_recompute() -> None:
    plan = parse_plan("tp=8,pp=4,dp=2,mbs=1,gbs=64,recompute=full,recompute_layers=3")
    assert plan.recompute_layers == 3
    assert plan.describe().endswith(",recompute_layers=3")
    assert "recompute_layers" not in parse_plan("tp=8,gbs=8,recompute=full").describe()
    with pytest.raises(InputError, match="recompute_layers=True is invalid"):
        Plan(recompute=Recompute.FULL, recompute_layers=True)  # type: ignore[arg-type]


def test_offload_is_written_joined_by_plus_and_read_back() -> None:
    plan = parse_plan("tp=8,dp=2,gbs=64,offload=activations+optimizer")
    assert plan.offload == ("optimizer", "activations")  # kept in the order of OFFLOAD_KINDS
    assert plan.describe().endswith(",offload=optimizer+activations")
    assert plan.to_dict()["offload"] == "optimizer+activations"
    assert parse_plan("tp=8,gbs=8,offload=none").offload == ()
    assert "offload" not in parse_plan("tp=8,gbs=8").describe()
    assert parse_plan("tp=8,gbs=8").to_dict()["offload"] == "none"
    with pytest.raises(InputError, match=r"offload='gradients' is invalid: none, or kinds joined by '\+'"):
        parse_plan("tp=8,gbs=8,offload=gradients")
