"""HSDP in the plan: ``Plan.shard_degree`` (ZeRO over groups of s data-parallel ranks), its checks and its syntax."""

from __future__ import annotations

import pytest

from rainier.errors import InputError
from rainier.parallel.plan import Plan, parse_plan


def test_shard_degree_defaults_to_the_whole_data_parallel_group() -> None:
    plan = parse_plan("tp=8,dp=16,zero=3,gbs=64")
    assert plan.shard_degree is None
    assert "shard" not in plan.describe()  # an option at its default is left out of the printed plan
    assert plan.to_dict()["shard"] is None


@pytest.mark.parametrize("key", ["shard", "shard_degree", "hsdp"])
def test_shard_key_and_its_aliases(key: str) -> None:
    plan = parse_plan(f"tp=8,dp=16,zero=2,{key}=4,gbs=64")
    assert plan.shard_degree == 4 and plan.zero_stage == 2
    assert plan.describe().endswith(",shard=4")
    assert parse_plan(plan.describe()) == plan


def test_hsdp_alone_is_fsdp_hybrid_shard() -> None:
    """``hsdp=N`` without zero or fsdp is PyTorch FSDP's HYBRID_SHARD: ZeRO-3 over groups of N."""
    assert parse_plan("dp=16,hsdp=8,gbs=64").zero_stage == 3
    assert parse_plan("dp=16,shard=8,gbs=64").zero_stage == 1  # the neutral key keeps the default stage
    assert parse_plan("dp=16,hsdp=8,fsdp=true,gbs=64").zero_stage == 3
    assert parse_plan("dp=16,hsdp=8,zero=1,gbs=64").zero_stage == 1


def test_a_shard_degree_equal_to_dp_is_plain_zero() -> None:
    plan = Plan(dp_degree=16, zero_stage=3, shard_degree=16, gbs=16)
    assert plan.shard_degree == 16  # kept as written; the step model treats it as the whole group


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("dp=16,shard=3,gbs=64", r"^shard_degree=3 is invalid: a divisor of dp=16 \(data-parallel ranks per shard"),
        ("dp=16,shard=32,gbs=64", r"^shard_degree=32 is invalid: a divisor of dp=16"),
        ("dp=16,shard=4,zero=0,gbs=64", r"^shard_degree=4 is invalid: null with zero=0"),
        ("dp=16,shard=0,gbs=64", r"^shard='0' is invalid: a positive integer$"),
        ("dp=16,hsdp=two,gbs=64", r"^shard='two' is invalid: a positive integer$"),
    ],
)
def test_bad_shard_degrees_are_one_line_errors_naming_the_field(text: str, match: str) -> None:
    with pytest.raises(InputError, match=match) as caught:
        parse_plan(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("value", [0, -2, True, 2.0, "4"])
def test_the_dataclass_refuses_what_is_not_a_positive_divisor(value: object) -> None:
    with pytest.raises(ValueError, match=r"^shard_degree=.* is invalid: a divisor of dp=8"):
        Plan(dp_degree=8, zero_stage=3, shard_degree=value, gbs=8)  # type: ignore[arg-type]
