"""The vectorised search: agreement with the scalar estimate, brute-force optimality, counts, bad input."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from rainier.catalog import CatalogError
from rainier.errors import InputError
from rainier.hardware import cluster_of
from rainier.parallel import Plan, Schedule
from rainier.parallel.plan import DegreeUnit
from rainier.perf.batch import evaluate
from rainier.perf.efficiency import committed_efficiency
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate, flops_per_token_table, resolve_efficiency, step_context
from rainier.precision import Precision
from rainier.search.engine import search
from rainier.search.result import Objective
from rainier.search.space import SearchSpace, enumerate_plans, load_space
from rainier.workload import Recompute, get_model


def test_vectorised_and_scalar_estimates_agree_on_random_plans() -> None:
    cases = [
        ("llama-3-70b", "h100-sxm", 512, 512),
        ("mixtral-8x7b", "trn2", 256, 256),
        ("deepseek-v3", "h100-sxm", 1024, 1024),
    ]
    rng = np.random.default_rng(7)
    for model, accelerator, devices, gbs in cases:
        shape, cluster = get_model(model), cluster_of(accelerator, devices)
        space = SearchSpace(precision=(Precision.BF16, Precision.FP8), zero=(0, 1, 2, 3), zero_bubble=True)
        cols = enumerate_plans(shape, cluster, gbs, space).valid
        eff, _ = resolve_efficiency(cluster, None)
        model_flops, hardware_flops = flops_per_token_table(shape)
        batch = evaluate(
            step_context(shape, cluster, eff, DegreeUnit.DEVICE),
            cols,
            model_flops_per_token=model_flops,
            hardware_flops_per_token=hardware_flops,
        )
        for i in rng.choice(len(cols), size=min(60, len(cols)), replace=False):
            scalar = estimate(shape, cols.plan_at(int(i)), cluster)
            assert isinstance(scalar, StepEstimate)
            assert scalar.step_time_s == pytest.approx(float(batch.step_time_s[i]), rel=1e-9)
            assert scalar.memory.total == pytest.approx(float(batch.memory_total[i]), rel=1e-9)


def test_search_best_equals_brute_force_scalar_loop() -> None:
    shape, cluster, gbs = get_model("llama-2-7b"), cluster_of("h100-sxm", 16), 64
    space = SearchSpace(tp=(1, 2, 4), pp=(1, 2, 4), cp=(1, 2), vpp=(1, 2), mbs=(1, 2), zero=(1, 3))
    result = search(shape, cluster, gbs=gbs, space=space, top_k=1)
    best = None
    for tp, pp, cp, vpp, mbs, rc, zero in itertools.product(
        (1, 2, 4), (1, 2, 4), (1, 2), (1, 2), (1, 2), list(Recompute), (1, 3)
    ):
        dp = 16 // (tp * pp * cp)
        try:
            plan = Plan(
                tp_degree=tp,
                pp_degree=pp,
                cp_degree=cp,
                dp_degree=dp,
                vpp_degree=vpp,
                mbs=mbs,
                gbs=gbs,
                recompute=rc,
                zero_stage=zero,
                sequence_parallel=tp > 1,
                schedule=Schedule.INTERLEAVED if vpp > 1 else Schedule.ONE_F_ONE_B,
            )
        except ValueError:
            continue
        if tp * pp * cp * dp != 16:
            continue
        est = estimate(shape, plan, cluster)
        if isinstance(est, StepEstimate) and est.fits and (best is None or est.step_time_s < best.step_time_s):
            best = est
    assert best is not None
    assert result.top[0].estimate.step_time_s == pytest.approx(best.step_time_s, rel=1e-12)


def test_counts_add_up_and_result_json_has_the_contract_keys() -> None:
    result = search(get_model("llama-3-8b"), cluster_of("h100-sxm", 64), gbs=256, top_k=3)
    doc = result.to_dict()
    for key in ("evaluated", "infeasible", "plans_per_s", "top"):
        assert key in doc
    rejected_before_timing = sum(v for k, v in result.infeasible.items() if k != "memory")
    assert result.candidates == result.evaluated + rejected_before_timing
    assert len(doc["top"]) == 3
    steps = [p["step_time_s"] for p in doc["top"]]
    assert steps == sorted(steps) and all(p["fits"] for p in doc["top"])


def test_no_plan_fits_names_the_binding_constraint() -> None:
    with pytest.raises(InputError, match=r"memory: smallest need [\d.]+ GiB per device > [\d.]+ GiB; try zero=3"):
        search(get_model("llama-3-405b"), cluster_of("h100-sxm", 8), gbs=8)
    with pytest.raises(InputError, match="no valid plan: divisibility"):
        search(get_model("llama-3-8b"), cluster_of("h100-sxm", 7), gbs=7, space=SearchSpace(pp=(2,)))


def test_cost_objective_needs_a_price() -> None:
    with pytest.raises(InputError, match="pass --price"):
        search(get_model("llama-3-8b"), cluster_of("trn2", 64), gbs=64, objective=Objective.COST)
    priced = search(get_model("llama-3-8b"), cluster_of("trn2", 64), gbs=64, objective=Objective.COST, price=3.0)
    assert priced.top[0].dollars_per_token is not None and priced.top[0].dollars_per_token > 0


def test_space_file(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("tp: [2, 4]\nrecompute: [selective]\nprecision: [bf16, fp8]\nmax_pp: 8\n")
    space = load_space(path)
    assert space.tp == (2, 4) and space.recompute == (Recompute.SELECTIVE,) and space.max_pp == 8
    path.write_text("tp: [2, -4]\n")
    with pytest.raises(CatalogError, match=r"space\.tp"):
        load_space(path)
    path.write_text("colour: red\n")
    with pytest.raises(CatalogError, match="unknown field"):
        load_space(path)
    path.write_text("recompute_layers: [4, 1, 4]\n")
    assert load_space(path).recompute_layers == (1, 4)
    path.write_text("recompute_layers: quarters\n")
    assert load_space(path).recompute_layers is None
    path.write_text("tp: [8]\n")
    assert load_space(path).recompute_layers == ()  # not searched unless asked
    path.write_text("recompute_layers: [0]\n")
    with pytest.raises(CatalogError, match=r"space\.recompute_layers=.* is invalid: a list of layer counts"):
        load_space(path)
    path.write_text("precision: [int4]\n")
    with pytest.raises(CatalogError, match=r"space\.precision='int4' is invalid"):
        load_space(path)


def test_unsupported_precision_is_counted() -> None:
    space = SearchSpace(precision=(Precision.BF16, Precision.FP8))
    result = search(get_model("llama-2-7b"), cluster_of("a100-80gb", 16), gbs=64, space=space)
    assert result.infeasible["unsupported"] > 0 and committed_efficiency() is not None


def test_the_same_search_asked_again_is_answered_from_the_kept_result(monkeypatch: pytest.MonkeyPatch) -> None:
    from rainier.perf.efficiency import Efficiency
    from rainier.search import engine

    shape, cluster = get_model("llama-3-8b"), cluster_of("h100-sxm", 64)
    engine._MEMO.clear()
    monkeypatch.setattr(engine, "MEMO_SEARCHES", 3)
    first = search(shape, cluster, gbs=128, top_k=3)
    again = search(shape, cluster, gbs=128, top_k=3)
    assert again.top == first.top and again.evaluated == first.evaluated and len(engine._MEMO) == 1
    slower = search(shape, cluster, gbs=128, top_k=3, efficiency=Efficiency(gemm=0.3))  # another key: searched
    assert len(engine._MEMO) == 2
    assert slower.top[0].estimate.step_time_s > first.top[0].estimate.step_time_s
    search(shape, cluster, gbs=128, top_k=3)  # asked again: now the most recent
    for gbs in (136, 144):  # the least recently asked goes first
        search(shape, cluster, gbs=gbs, top_k=1)
    kept = [key[2] for key in engine._MEMO]
    assert len(kept) == 3 and kept[0] == 128 and 136 in kept and 144 in kept
