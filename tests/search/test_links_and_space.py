"""Issue 11: the link model holds in the vectorised search, and the space enumerates only valid plans.

- No returned plan carries more bytes on any link than the link moves in the step time (a hypothesis property
  over random spaces, clusters and models).
- Every enumerated plan passes ``check_plan`` (the vectorised rules never let through what the scalar path
  refuses), including pipeline degrees that do not divide the layer count and the newer schedules.
- ``train search`` on Llama 3 405B / 16,384 H100 returns plans whose link time fits their step.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainier.hardware import cluster_of
from rainier.parallel import Schedule, check_plan
from rainier.parallel.plan import DegreeUnit, Recompute
from rainier.perf.batch import evaluate
from rainier.perf.columns import RECOMPUTE_CODES
from rainier.perf.step import flops_per_token_table, resolve_efficiency, step_context
from rainier.precision import Precision
from rainier.search.engine import search
from rainier.search.space import SearchSpace, enumerate_plans
from rainier.workload import get_model

MODELS = ("llama-3-8b", "llama-3-70b", "mixtral-8x7b", "deepseek-v3")
CLUSTERS = (("h100-sxm", 256), ("gb200", 576), ("trn2", 512), ("tpu-v5p", 1024), ("a100-80gb", 128))
SCHEDULES = tuple(Schedule)


def _evaluate(model: str, accelerator: str, devices: int, gbs: int, space: SearchSpace):  # type: ignore[no-untyped-def]
    shape, cluster = get_model(model), cluster_of(accelerator, devices)
    cols = enumerate_plans(shape, cluster, gbs, space, round_gbs=True).valid
    eff, _ = resolve_efficiency(cluster, None)
    model_flops, hardware_flops = flops_per_token_table(shape)
    batch = evaluate(
        step_context(shape, cluster, eff, DegreeUnit.DEVICE),
        cols,
        model_flops_per_token=model_flops,
        hardware_flops_per_token=hardware_flops,
    )
    return shape, cluster, cols, batch


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(MODELS),
    where=st.sampled_from(CLUSTERS),
    gbs=st.sampled_from((256, 1024, 4096)),
    schedules=st.lists(st.sampled_from(SCHEDULES), min_size=1, max_size=3, unique=True),
    zero=st.lists(st.sampled_from((0, 1, 2, 3)), min_size=1, max_size=2, unique=True),
)
def test_no_plan_moves_more_on_a_link_than_the_step_allows(
    model: str, where: tuple[str, int], gbs: int, schedules: list[Schedule], zero: list[int]
) -> None:
    accelerator, devices = where
    space = SearchSpace(
        schedules=tuple(schedules), zero=tuple(zero), mbs=(1, 2), precision=(Precision.BF16, Precision.FP8)
    )
    _, _, cols, batch = _evaluate(model, accelerator, devices, gbs, space)
    if len(cols) == 0:
        return
    busiest = batch.link_load_s.max(axis=1)
    assert np.all(busiest <= batch.step_time_s * (1 + 1e-9))
    assert np.all(batch.step_time_s > 0)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(MODELS),
    where=st.sampled_from(CLUSTERS),
    gbs=st.sampled_from((128, 512, 2048)),
    schedules=st.lists(st.sampled_from(SCHEDULES), min_size=1, max_size=4, unique=True),
    seed=st.integers(0, 2**16),
)
def test_every_enumerated_plan_passes_check_plan(
    model: str, where: tuple[str, int], gbs: int, schedules: list[Schedule], seed: int
) -> None:
    accelerator, devices = where
    shape, cluster = get_model(model), cluster_of(accelerator, devices)
    space = SearchSpace(schedules=tuple(schedules), mbs=(1, 2))
    cols = enumerate_plans(shape, cluster, gbs, space, round_gbs=True).valid
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(cols), size=min(40, len(cols)), replace=False):
        plan = cols.plan_at(int(i))
        experts = shape.moe.num_experts if shape.moe is not None else None
        assert check_plan(plan, shape, cluster.num_devices, num_experts=experts) is None, plan.describe()


def test_pipeline_degrees_need_not_divide_the_layers() -> None:
    shape, cluster = get_model("llama-3-405b"), cluster_of("h100-sxm", 16_384)
    cols = enumerate_plans(shape, cluster, 2048, SearchSpace(tp=(8,), cp=(1,), mbs=(1,)), round_gbs=True).valid
    assert shape.num_layers == 126 and 16 in set(cols.pp.tolist())  # 126 = 2 x 3^2 x 7: 16 is no divisor


def test_dualpipe_and_zbv_are_searched_when_asked() -> None:
    shape, cluster = get_model("deepseek-v3"), cluster_of("h800", 2048)
    space = SearchSpace(schedules=(Schedule.DUALPIPE, Schedule.ZB_V), tp=(1,), cp=(1,), mbs=(1,), ep=(64,))
    cols = enumerate_plans(shape, cluster, 4096, space, round_gbs=True).valid
    found = {int(s) for s in cols.schedule}
    assert len(found) == 2
    assert np.all(cols.pp > 1)


def test_llama3_405b_search_plans_fit_their_links() -> None:
    """Issue 11's example: every top plan's busiest link moves its bytes within the step."""
    result = search(get_model("llama-3-405b"), cluster_of("h100-sxm", 16_384), gbs=2048, top_k=5)
    for ranked in result.top:
        estimate = ranked.estimate
        _, load = estimate.busiest_link
        assert load <= estimate.step_time_s * (1 + 1e-9), estimate.plan.describe()


def test_block_recompute_is_searched_with_the_n_a_space_names() -> None:
    """Issue 17: each full-recompute plan is also tried with every listed N below its smallest chunk's layers."""
    shape, cluster = get_model("llama-3-8b"), cluster_of("h100-sxm", 64)  # 32 layers
    plain = SearchSpace(tp=(8,), cp=(1,), mbs=(1,), zero=(1,))
    base = enumerate_plans(shape, cluster, 64, plain).valid
    assert not base.recompute_layers.any()
    space = SearchSpace(tp=(8,), cp=(1,), mbs=(1,), zero=(1,), recompute_layers=(2, 4))
    cols = enumerate_plans(shape, cluster, 64, space).valid
    block = cols.recompute_layers > 0
    assert len(cols) - block.sum() == len(base)
    chunks = cols.chunks[block]
    assert np.all(cols.recompute_layers[block] < shape.num_layers // (cols.pp[block] * chunks))
    assert {2, 4} == set(cols.recompute_layers[block].tolist())
    full = base.recompute == RECOMPUTE_CODES[Recompute.FULL]
    deep = shape.num_layers // (base.pp * base.chunks)
    assert block.sum() == int((full & (deep > 2)).sum() + (full & (deep > 4)).sum())
    for i in np.flatnonzero(block)[:50]:
        plan = cols.plan_at(int(i))
        assert plan.recompute_layers is not None and check_plan(plan, shape, 64) is None


def test_block_recompute_quarters_tries_quarters_of_the_smallest_chunk() -> None:
    shape, cluster = get_model("llama-3-8b"), cluster_of("h100-sxm", 64)  # 32 layers
    base = enumerate_plans(shape, cluster, 64, SearchSpace(tp=(8,), mbs=(1,))).valid
    assert not base.recompute_layers.any()  # not searched by default
    cols = enumerate_plans(shape, cluster, 64, SearchSpace(tp=(8,), mbs=(1,), recompute_layers=None)).valid
    block = cols.recompute_layers > 0
    assert len(cols) - block.sum() == len(base)
    smallest = shape.num_layers // (cols.pp * cols.chunks)
    found: dict[int, set[int]] = {}
    for depth, n in zip(smallest[block].tolist(), cols.recompute_layers[block].tolist(), strict=True):
        found.setdefault(depth, set()).add(n)
    assert found[32] == {8, 16, 24}  # pp=1: one chunk of 32 layers
    assert found[4] == {1, 2, 3}
    assert found[2] == {1}  # a quarter and a half are both 1 layer; three quarters rounds to 1 as well
    assert 1 not in found  # one layer per chunk: N=1 is full recompute of every layer
