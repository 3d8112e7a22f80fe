"""Oracle (issue 17): the vectorised search equals an exhaustive scalar loop over the whole space.

The loop builds every combination of the space's values as a :class:`Plan` and times it with the scalar
``perf.step.estimate``, trying every batch the rule admits (a target's whole range, not only the largest batch
the search picks). So it checks the enumeration (the same plans fit, none missed), the batch rule (each plan's
time per token is its best over the range) and the ranking (the same best) together. The space holds odd
micro-batches (3, 5), an uneven pipeline (40 layers on pp=3, and on 9 interleaved chunks), every ZeRO stage,
every recompute policy and all six pipeline schedules; on 12 H100 a 13B model fits some plans and not others,
and over a wide batch range some plans fit only at a smaller batch than the largest they can split (memory grows
with the micro-batches in flight).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from rainier.cli import app
from rainier.errors import InputError
from rainier.hardware import cluster_of
from rainier.parallel import Plan, Schedule
from rainier.parallel.batch_target import BatchTarget
from rainier.parallel.plan import OFFLOAD_KINDS, DegreeUnit
from rainier.perf.batch import evaluate
from rainier.perf.offload import offload_mask
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate, flops_per_token_table, resolve_efficiency, step_context
from rainier.precision import Precision
from rainier.search.engine import search
from rainier.search.offload import with_offload
from rainier.search.space import SearchSpace, enumerate_plans
from rainier.workload import Recompute, get_model

DEVICES = 12
TP, CP, PP, VPP = (1, 2), (1, 2), (1, 3, 4), (1, 2, 3)
MAX_MBS = 6
ZERO = (0, 1, 2, 3)
SCHEDULES = tuple(Schedule)  # 1F1B, interleaved, ZB-H1, GPipe, ZB-V, DualPipe
SPACE = SearchSpace(tp=TP, cp=CP, pp=PP, vpp=VPP, max_mbs=MAX_MBS, zero=ZERO, schedules=SCHEDULES, offload=())
# Offload: every set of kinds (none included) on a narrower space, as the scalar loop times each plan eight times.
OFFLOADS = tuple(
    kinds for size in range(len(OFFLOAD_KINDS) + 1) for kinds in itertools.combinations(OFFLOAD_KINDS, size)
)
OFFLOAD_AXES = {
    "tp": (1, 2),
    "cp": (1,),
    "pp": (1, 3),
    "vpp": (1, 3),
    "schedules": (Schedule.ONE_F_ONE_B, Schedule.INTERLEAVED),
}


# HSDP: shard groups of 2 and 3 data-parallel ranks (ZeRO 1-3) on a narrower space.
HSDP_SHARDS = (2, 3)
HSDP_AXES = {"tp": (1, 2), "cp": (1,), "pp": (1, 3), "vpp": (1,), "schedules": (Schedule.ONE_F_ONE_B,)}


Key = tuple[int, int, int, int, int, int, int, str, str, str, int]  # a plan without its batch


def _key(plan: Plan) -> Key:
    return (
        plan.tp_degree,
        plan.pp_degree,
        plan.dp_degree,
        plan.cp_degree,
        plan.vpp_degree,
        plan.mbs,
        plan.zero_stage,
        plan.recompute.value,
        plan.schedule.value,
        "+".join(plan.offload),
        plan.shard_degree or 0,
    )


def _scalar_loop(
    target: BatchTarget,
    offloads: tuple[tuple[str, ...], ...] = ((),),
    shards: tuple[int | None, ...] = (None,),
    **axes: tuple[Any, ...],
) -> dict[Key, float]:
    """Every plan of the space (``SPACE``'s axes, or ``axes``) that fits, each offload set of ``offloads`` and HSDP
    shard degree of ``shards`` (None: plain ZeRO), with its lowest step time per token over the batches ``target``
    admits."""
    shape, cluster = get_model("llama-2-13b"), cluster_of("h100-sxm", DEVICES)
    best: dict[Key, float] = {}
    tps, cps, pps, vpps = (axes.get(k, v) for k, v in (("tp", TP), ("cp", CP), ("pp", PP), ("vpp", VPP)))
    schedules = axes.get("schedules", SCHEDULES)
    for tp, cp, pp, vpp, mbs, schedule in itertools.product(tps, cps, pps, vpps, range(1, MAX_MBS + 1), schedules):
        if DEVICES % (tp * cp * pp) or (vpp > 1) != (schedule is Schedule.INTERLEAVED):
            continue  # interleaving with one chunk per rank is 1F1B, which the space holds already
        if pp == 1 and schedule is not Schedule.ONE_F_ONE_B:
            continue  # without a pipeline every schedule is the same plan: the space holds it as 1F1B
        dp = DEVICES // (tp * cp * pp)
        for gbs in range(target.low, target.high + 1):
            if gbs % (dp * mbs):
                continue
            for recompute, zero, offload, shard in itertools.product(Recompute, ZERO, offloads, shards):
                if shard is not None and shard >= dp:
                    continue  # a shard group of all dp ranks is plain ZeRO, already in the loop
                try:
                    plan = Plan(
                        tp_degree=tp,
                        pp_degree=pp,
                        cp_degree=cp,
                        dp_degree=dp,
                        vpp_degree=vpp,
                        mbs=mbs,
                        gbs=gbs,
                        recompute=recompute,
                        zero_stage=zero,
                        sequence_parallel=tp > 1,
                        schedule=schedule,
                        offload=offload,
                        shard_degree=shard,
                    )
                except ValueError:  # e.g. vpp > 1 with a schedule other than interleaved, or zero=0 with a shard
                    continue
                result = estimate(shape, plan, cluster)
                if not isinstance(result, StepEstimate) or not result.fits:
                    continue
                per_token = result.step_time_s / (gbs * shape.seq_len)
                key = _key(plan)
                best[key] = min(best.get(key, per_token), per_token)
    return best


def _vectorised(target: BatchTarget, space: SearchSpace = SPACE) -> dict[Key, float]:
    """The search's own enumeration and vectorised step model: each fitting plan's step time per token."""
    shape, cluster = get_model("llama-2-13b"), cluster_of("h100-sxm", DEVICES)
    cols = enumerate_plans(shape, cluster, target, space).valid
    if space.offload:
        cols = with_offload(cols, space.offload)
    eff, _ = resolve_efficiency(cluster, None)
    model_flops, hardware_flops = flops_per_token_table(shape)
    batch = evaluate(
        step_context(shape, cluster, eff, DegreeUnit.DEVICE),
        cols,
        model_flops_per_token=model_flops,
        hardware_flops_per_token=hardware_flops,
    )
    per_token = batch.step_time_s / (cols.gbs * shape.seq_len)
    fits = batch.fits
    best: dict[Key, float] = {}
    for i in np.flatnonzero(fits):  # a plan may be tried at several batches (the memory-bound ones)
        key = _key(cols.plan_at(int(i)))
        best[key] = min(best.get(key, float(per_token[i])), float(per_token[i]))
    return best


@pytest.mark.parametrize(
    "target",
    [
        BatchTarget(sequences=36),
        BatchTarget(sequences=36, tolerance=0.1),
        BatchTarget(sequences=25, tolerance=0.1),
        BatchTarget(sequences=12, tolerance=0.5),  # 6-18: 46 plans fit only below the largest batch they can run
    ],
    ids=["exact-36", "target-36", "target-25", "target-12-wide"],
)
def test_vectorised_search_equals_exhaustive_scalar_loop(target: BatchTarget) -> None:
    scalar = _scalar_loop(target)
    vectorised = _vectorised(target)
    assert set(vectorised) == set(scalar)  # the same plans fit: none missed, none extra
    for key, value in scalar.items():  # each at the best batch the rule admits
        assert vectorised[key] == pytest.approx(value, rel=1e-9), key
    keys = list(scalar)
    assert any(k[5] in (3, 5) for k in keys) and any(k[1] == 3 for k in keys)  # odd mbs, uneven pipelines
    assert any(k[4] == 3 for k in keys)  # 40 layers on 3 x 3 interleaved chunks
    shape, cluster = get_model("llama-2-13b"), cluster_of("h100-sxm", DEVICES)
    found = search(shape, cluster, gbs=target, space=SPACE, top_k=1)
    best = found.top[0]
    assert best.seconds_per_token == pytest.approx(min(scalar.values()), rel=1e-9)
    assert target.low <= best.estimate.plan.gbs <= target.high
    assert found.to_dict()["top"][0]["gbs"] == best.estimate.plan.gbs


def test_search_with_offload_equals_exhaustive_scalar_loop_over_every_offload_set() -> None:
    """Every plan with each of the eight offload sets, timed one by one: the space file's explicit list evaluates
    them all alike, and the default search (offload only for plans that do not fit without it, with the fewest
    kinds that make them fit) finds the same best plan, which here needs offload."""
    target = BatchTarget(sequences=24, tolerance=0.05)
    scalar = _scalar_loop(target, OFFLOADS, **OFFLOAD_AXES)
    every = SearchSpace(**OFFLOAD_AXES, max_mbs=MAX_MBS, zero=ZERO, offload=tuple(offload_mask(k) for k in OFFLOADS))
    vectorised = _vectorised(target, every)
    assert set(vectorised) == set(scalar)
    for key, value in scalar.items():
        assert vectorised[key] == pytest.approx(value, rel=1e-9), key
    fits_without = [v for k, v in scalar.items() if not k[9]]
    assert min(scalar.values()) < min(fits_without)  # offload makes a faster plan fit
    shape, cluster = get_model("llama-2-13b"), cluster_of("h100-sxm", DEVICES)
    default = SearchSpace(**OFFLOAD_AXES, max_mbs=MAX_MBS, zero=ZERO)
    found = search(shape, cluster, gbs=target, space=default, top_k=3)
    assert found.top[0].seconds_per_token == pytest.approx(min(scalar.values()), rel=1e-9)
    assert found.top[0].estimate.plan.offload
    assert found.evaluated < len(enumerate_plans(shape, cluster, target, default).valid) * 1.1  # few retries


def test_search_with_hsdp_equals_exhaustive_scalar_loop() -> None:
    """HSDP shard groups (ZeRO 1-3 over 2 or 3 of the data-parallel ranks, replicated across the rest) enumerate,
    fit and rank as the scalar estimate of each plan says, and the search's best plan is the loop's."""
    target = BatchTarget(sequences=36, tolerance=0.1)
    scalar = _scalar_loop(target, shards=(None, *HSDP_SHARDS), **HSDP_AXES)
    space = SearchSpace(**HSDP_AXES, max_mbs=MAX_MBS, zero=ZERO, hsdp=HSDP_SHARDS, offload=())
    vectorised = _vectorised(target, space)
    assert set(vectorised) == set(scalar)
    for key, value in scalar.items():
        assert vectorised[key] == pytest.approx(value, rel=1e-9), key
    assert {k[10] for k in scalar} == {0, *HSDP_SHARDS}  # both shard degrees fit somewhere
    shape, cluster = get_model("llama-2-13b"), cluster_of("h100-sxm", DEVICES)
    found = search(shape, cluster, gbs=target, space=space, top_k=1)
    assert found.top[0].seconds_per_token == pytest.approx(min(scalar.values()), rel=1e-9)


def test_refusals_name_the_batch_rule_and_the_nearest_batches() -> None:
    """Issue 17's example: 2,520 sequences cannot split over 5,128 A100 (every dp is a multiple of 641)."""
    shape, cluster = get_model("korthikanti-gpt-530b"), cluster_of("a100-80gb", 5128)
    with pytest.raises(
        InputError,
        match=r"^no valid plan: divisibility: gbs 2,520 must divide by dp\*mbs: nearest "
        r"batches that do: 1,923 and 2,564 \(or --gbs ~2520 for any batch within 5%\)$",
    ):
        search(shape, cluster, gbs=2520)
    with pytest.raises(InputError, match=r"batch range 95 to 105: nearest batches that do: 641 \(or a wider"):
        search(shape, cluster, gbs=BatchTarget(sequences=100, tolerance=0.05))
    only_fp8 = SearchSpace(precision=(Precision.FP8,))  # nothing is built: the kind that rejected most is named
    with pytest.raises(InputError, match=r"^no valid plan: unsupported: a100-80gb has no fp8 matmuls$"):
        search(shape, cluster, gbs=1923, space=only_fp8)
    found = search(shape, cluster, gbs=BatchTarget(sequences=2520, tolerance=0.05), top_k=1)
    assert found.top[0].estimate.plan.gbs == 2564 and "2,394 to 2,646" in found.to_dict()["batch_rule"]


def test_cli_batch_target_and_refusal() -> None:
    base = ["train", "search", "--model", "korthikanti-gpt-530b", "--accelerator", "a100-80gb", "--count", "5128"]
    refused = CliRunner().invoke(app, [*base, "--gbs", "2519"])  # 11 x 229: no dp of 5,128 or 5,120 devices
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert "nearest batches that do: 1,923 and 2,564" in refused.output
    # 2,520 exactly runs on 640 of the 641 servers (8 of 5,128 devices idle, within fleet.power's 2%)
    idle = CliRunner().invoke(app, [*base, "--gbs", "2520", "--top", "1", "--json"])
    assert idle.exit_code == 0, idle.output
    exact = json.loads(idle.stdout)
    assert exact["num_devices"] == 5120 and exact["top"][0]["gbs"] == 2520
    assert exact["notes"][0].startswith("using 5,120 of 5,128 devices (8 idle): no plan splits gbs 2,520")
    done = CliRunner().invoke(app, [*base, "--gbs", "~2520", "--top", "1", "--json"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["top"][0]["gbs"] == 2564 and doc["batch_target"]["tolerance"] == 0.05
    tokens = CliRunner().invoke(app, [*base, "--batch-tokens", str(2520 * 2048), "--gbs-tolerance", "0.02", "--json"])
    assert tokens.exit_code == 0, tokens.output
    assert json.loads(tokens.stdout)["batch_target"] == {
        "sequences": 2520,
        "tolerance": 0.02,
        "low": 2470,
        "high": 2570,
    }
