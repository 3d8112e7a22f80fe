"""The compiled assembly (perf.kernel) computes what the numpy reference computes, plan by plan; the fused pass
(perf.fused) gives prepare + the compiled assembly's very bits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rainier.calibrate import load_cases
from rainier.calibrate.fit import CaseBank
from rainier.hardware import cluster_of
from rainier.parallel import Schedule
from rainier.parallel.plan import DegreeUnit
from rainier.perf import batch, kernel, keys, memory
from rainier.perf.efficiency import committed_efficiency
from rainier.perf.step import flops_per_token_table, resolve_efficiency, step_context
from rainier.precision import Precision
from rainier.search.space import SearchSpace, enumerate_plans
from rainier.workload import get_model

pytestmark = pytest.mark.skipif(not kernel.AVAILABLE, reason="numba not installed: the numpy path is the only one")

SETUPS = [
    ("llama-3-70b", "h100-sxm", 1024, 1024),
    ("deepseek-v3", "gb200", 576, 1152),
    ("mixtral-8x7b", "trn2", 256, 256),
    ("llama-3-8b", "tpu-v5p", 512, 512),
]


# The options test_fused_pass_gives_the_same_bits draws at random per plan that are not structure columns
# (perf.keys.STRUCTURE_COLUMNS: runs of plans listed in order stay runs).
PER_PLAN_OPTIONS = ("tp_overlap", "a2a_overlap", "capacity", "imbalance", "ep_dedup", "ep_domains", "recompute_mask")


def _wide_space(**options: object) -> SearchSpace:
    """Every schedule and ZeRO stage (ZeRO 1-3 also over HSDP shard groups of 2, 4, 8), two micro-batch sizes, bf16
    and fp8, and ``options``."""
    return SearchSpace(
        schedules=tuple(Schedule), zero=(0, 1, 2, 3), mbs=(1, 2), precision=(Precision.BF16, Precision.FP8),
        hsdp=(2, 4, 8), **options,  # type: ignore[arg-type]
    )  # fmt: skip


def _agree(prep: batch.Prepared, eff: object) -> None:
    fast = batch.assemble(prep, eff, compiled=True)  # type: ignore[arg-type]
    slow = batch.assemble_reference(prep, eff)  # type: ignore[arg-type]
    np.testing.assert_allclose(fast.step_time_s, slow.step_time_s, rtol=1e-12)
    np.testing.assert_allclose(fast.link_load_s, slow.link_load_s, rtol=1e-12, atol=1e-15)
    for name in batch.BREAKDOWN_FIELDS:
        gap = np.abs(fast.breakdown[name] - slow.breakdown[name])
        assert np.all(gap <= 1e-9 * slow.step_time_s), name


@pytest.mark.parametrize(("model", "accelerator", "devices", "gbs"), SETUPS)
def test_kernel_matches_the_numpy_reference(model: str, accelerator: str, devices: int, gbs: int) -> None:
    shape, cluster = get_model(model), cluster_of(accelerator, devices)
    space = _wide_space(recompute_layers=(1, 3))
    cols = enumerate_plans(shape, cluster, gbs, space, round_gbs=True).valid
    cols = cols.take(np.random.default_rng(3).choice(len(cols), size=min(4000, len(cols)), replace=False))
    eff, _ = resolve_efficiency(cluster, None)
    ctx = step_context(shape, cluster, eff, DegreeUnit.DEVICE)
    model_flops, hardware_flops = flops_per_token_table(shape)
    assert (cols.recompute_layers > 0).sum() > 100  # full recompute of N layers per chunk is in the sample
    assert cols.hsdp.sum() > 100  # and HSDP
    prep = batch.prepare(ctx, cols, model_flops_per_token=model_flops, hardware_flops_per_token=hardware_flops)
    _agree(prep, eff)
    rows = dict(prep.rows)

    def per_layer(kept: bool) -> tuple[np.ndarray, np.ndarray]:
        index, table = keys.layer_activations(ctx, cols, kept=kept)
        return table[index, 0], table[index, 1]

    def memory_of(compiled: bool) -> dict[str, np.ndarray]:
        return memory.memory_per_rank(
            shape,
            cols,
            {k: v for k, v in rows.items() if k not in ("params_dense", "params_expert")},
            rows["params_dense"],
            rows["params_expert"],
            prep.plan["m"],
            per_layer(False),
            prep.plan["chunks"],
            in_flight=batch.in_flight,
            copies=batch.parameter_copies(cols.schedule),
            kept_bytes=per_layer(True),
            compiled=compiled,
        )

    fast, slow = memory_of(True), memory_of(False)
    for name in memory.MEMORY_FIELDS:
        np.testing.assert_allclose(fast[name], slow[name], rtol=1e-12)


def test_kernel_matches_on_every_validation_case() -> None:
    """The fit's path: every case prepared once and concatenated (padded rows and link classes)."""
    cases = load_cases("validation/training.yaml")
    table = committed_efficiency()
    for key in ("default", "nvidia-hopper", "tpu"):
        eff = table.entries[key]
        bank = CaseBank(cases.training, eff)
        assert bank.prepared is not None
        _agree(bank.prepared, eff)


def test_zero2_reduce_scatters_every_micro_batch() -> None:
    """ZeRO-2 shards the gradients, so each micro-batch's are reduce-scattered in its backward (ZeRO-1 reduces
    once per step): with 32 micro-batches of Llama 3 405B on 16,384 H100 the reduce-scatters over the scale-out
    network cannot hide behind the backward, and nothing is reduced again at the end of the step."""
    from rainier.parallel.plan import parse_plan
    from rainier.perf.step import estimate

    shape, cluster = get_model("llama-3-405b"), cluster_of("h100-sxm", 16384)

    def step(zero: int, gbs: int) -> tuple[float, dict[str, float]]:
        plan = parse_plan(f"tp=2,pp=16,dp=64,cp=8,mbs=1,gbs={gbs},zero={zero},sp=true,schedule=1f1b")
        found = estimate(shape, plan, cluster)
        return found.step_time_s, found.breakdown.to_dict()  # type: ignore[union-attr]

    one, one_parts = step(1, 2048)
    two, two_parts = step(2, 2048)
    assert two > 1.2 * one
    assert two_parts["link_contention"] > 10 * max(one_parts["link_contention"], 1e-3)
    assert two_parts["dp_comm_exposed"] < one_parts["dp_comm_exposed"]  # only the parameter gather is left


FUSED_SETUPS = [
    ("llama-3-70b", "h100-sxm", 1024, 1024),
    ("deepseek-v3", "gb200", 576, 1152),
    ("deepseek-v3", "h100-sxm", 2048, 4096),
    ("llama-3-8b", "tpu-v5p", 512, 512),
]


@pytest.mark.parametrize(("model", "accelerator", "devices", "gbs"), FUSED_SETUPS)
def test_fused_pass_gives_the_same_bits(model: str, accelerator: str, devices: int, gbs: int) -> None:
    """perf.fused (one compiled pass per plan) and prepare + the compiled assembly, chunk by chunk, agree exactly
    on every output array, over every schedule, ZeRO stage, HSDP shard group, recompute variant, offload set and MoE
    option: plans in random order, and plans in the order listed (runs of equal structure, perf.keys.Runs)."""
    from rainier.search.offload import with_offload

    shape, cluster = get_model(model), cluster_of(accelerator, devices)
    space = _wide_space(recompute_layers=None, zero_bubble=True)
    cols = enumerate_plans(shape, cluster, gbs, space, round_gbs=True).valid
    if cluster.accelerator.host_link_bw_bytes_per_s:
        cols = with_offload(cols, (1, 2, 4, 7))
    rng = np.random.default_rng(5)
    # two chunks and a tail the compiled loops do not take (perf.batch.EVALUATE_CHUNK, kernel.COMPILED_MIN_PLANS)
    size = min(batch.EVALUATE_CHUNK + 40, len(cols))
    one_precision = cols.take(np.flatnonzero(cols.precision == cols.precision[0]))  # listed innermost
    listed = one_precision[: min(size, len(one_precision))]
    cols = cols.take(rng.choice(len(cols), size=size, replace=False))
    n = len(cols)
    cols.tp_overlap[:] = rng.random(n) < 0.3
    cols.a2a_overlap[:] = rng.random(n) < 0.3
    cols.capacity[:] = np.where(rng.random(n) < 0.2, 1.25, 0.0)
    cols.imbalance[:] = np.where(rng.random(n) < 0.2, 1.3, 0.0)
    cols.ep_dedup[:] = rng.random(n) < 0.3
    cols.ep_domains[:] = np.where(rng.random(n) < 0.2, 4, 0)
    cols.lora[:] = rng.random(n) < 0.1
    cols.flash[:] = rng.integers(0, 3, n)
    cols.recompute_mask[:] = rng.integers(0, 128, n)
    listed = replace(listed, **{name: getattr(cols, name) for name in PER_PLAN_OPTIONS})
    eff, _ = resolve_efficiency(cluster, None)
    ctx = step_context(shape, cluster, eff, DegreeUnit.DEVICE)
    model_flops, hardware_flops = flops_per_token_table(shape)
    assert len(keys.plan_keys(ctx, listed).runs.pass_index) <= len(listed) // 2  # keyed over runs
    assert (cols.recompute_layers > 0).sum() > 10
    assert cols.hsdp.sum() > 10
    for part in (cols, cols[: batch.EVALUATE_CHUNK - 100], cols[:100], listed):
        fast, slow = (
            batch.evaluate(
                ctx, part, model_flops_per_token=model_flops, hardware_flops_per_token=hardware_flops, one_pass=one
            )
            for one in (True, False)
        )
        np.testing.assert_array_equal(fast.step_time_s, slow.step_time_s)
        np.testing.assert_array_equal(fast.link_load_s, slow.link_load_s)
        np.testing.assert_array_equal(fast.model_flops_per_step, slow.model_flops_per_step)
        np.testing.assert_array_equal(fast.hardware_flops_per_step, slow.hardware_flops_per_step)
        np.testing.assert_array_equal(fast.capacity_bytes, slow.capacity_bytes)
        np.testing.assert_array_equal(fast.host_capacity, slow.host_capacity)
        assert list(fast.breakdown) == list(slow.breakdown)
        assert list(fast.memory) == list(slow.memory)
        for name in fast.breakdown:
            np.testing.assert_array_equal(fast.breakdown[name], slow.breakdown[name], err_msg=name)
        for name in fast.memory:
            np.testing.assert_array_equal(fast.memory[name], slow.memory[name], err_msg=name)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 64, 100, 128])
def test_pairwise_sum_is_numpys(n: int) -> None:
    """perf.fused sums pipeline rows in numpy's order (``sum(axis=1)`` of plans x rows), compiled or not."""
    from rainier.perf import fused_loop, fused_rows

    fused_loop._load()
    rng = np.random.default_rng(n)
    values = rng.random((50, n)) * 10.0 ** rng.integers(0, 12, (50, n))
    expected = values.sum(axis=1)
    for row, total in zip(values, expected, strict=True):
        assert fused_rows.pairwise_sum(row, n) == total
        assert fused_loop._pairwise_sum_c(row, n) == total
