"""Equal footing in comparisons (issue 14): one batch, one power rule, one site rule, sizing that looks around."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rainier.api.fleet import StepFinder, run_fleet_compare, run_fleet_scenario
from rainier.fleet.footing import (
    BATCH_TOLERANCE,
    batch_options,
    best_training_precision,
    candidate_domain_counts,
    check_idle_share,
    common_batch_sequences,
    fit_penalty,
    largest_dp,
    model_parallel_sizes,
    plan_divides,
    size_cluster,
)
from rainier.fleet.power import fleet_cluster
from rainier.hardware import get_accelerator, resize_cluster
from rainier.perf.result import StepEstimate
from rainier.precision import Precision
from rainier.search.space import SearchSpace
from rainier.workload import resolve_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _is_2a3b(n: int) -> bool:
    for prime in (2, 3):
        while n % prime == 0:
            n //= prime
    return n == 1


def test_batch_options_are_2a3b_within_the_tolerance_nearest_first() -> None:
    options = batch_options(5595.4)
    assert options[0] == 5832  # 2^3 x 3^6, 4% above the batch law's 5,595 sequences
    assert all(_is_2a3b(n) for n in options)
    assert all(abs(math.log(n / 5595.4)) <= math.log(1 + BATCH_TOLERANCE) + 1e-12 for n in options)
    assert common_batch_sequences(2048.0) == 2048
    # with a measure of idle devices per batch, the batch that idles least wins over the nearest
    assert common_batch_sequences(2048.0, lambda n: 0.0 if n == 1944 else 0.3) == 1944
    with pytest.raises(ValueError, match="gbs"):
        common_batch_sequences(0.0)


def test_best_training_precision_and_idle_share_limits() -> None:
    assert best_training_precision(get_accelerator("trn3")) is Precision.FP8
    assert best_training_precision(get_accelerator("h100-sxm")) is Precision.FP8
    assert best_training_precision(get_accelerator("a100-80gb")) is Precision.BF16  # no fp8 matmuls
    assert check_idle_share(0.05) == 0.05
    with pytest.raises(ValueError, match="idle-share"):
        check_idle_share(0.9)


def test_candidate_counts_stay_within_the_idle_share() -> None:
    shape = resolve_model("llama-3-405b")
    sizes = model_parallel_sizes(shape, 72)

    def penalty(n: int) -> float | None:
        return fit_penalty(n * 72, 409 * 72, 1944, sizes)

    assert candidate_domain_counts(409, 0.05, penalty) == []
    counts = candidate_domain_counts(409, 0.1, penalty)
    assert counts and all(369 <= n <= 409 for n in counts) and counts == sorted(counts, reverse=True)
    # 409 NVL72 racks (a prime) no plan divides; 384 racks = 27,648 GPUs = dp 72 x tp 8 x cp 8 x pp 6 can
    assert not plan_divides(409 * 72, 1944, sizes) and plan_divides(384 * 72, 1944, sizes)
    # a count that forces model parallelism the batch does not need fits worse: 8,192 H100 at 5,832 = 2^3 x 3^6
    # sequences leave dp at most 8, at 6,144 = 3 x 2^11 dp can reach 2,048 (the B200 row of the README's compare)
    h100 = model_parallel_sizes(resolve_model("llama-3-8b"), 8)
    assert largest_dp(8192, 5832, h100) == 8 and largest_dp(8192, 6144, h100) == 2048
    wide, narrow = fit_penalty(8192, 8192, 5832, h100), fit_penalty(8192, 8192, 6144, h100)
    assert wide is not None and narrow is not None and wide > narrow


def test_every_row_stands_on_the_same_footing() -> None:
    comparison = run_fleet_compare(
        model="llama-3-8b",
        tokens=1e12,
        compare="trn2,trn3,h100-sxm,h200-sxm,b200,gb200",
        accelerator="trn2",
        count=4096,
        at="power",
        failures=False,
    )
    doc = comparison.to_dict()
    rows = doc["rows"]
    assert doc["footing_line"].startswith("footing: equal facility power")
    assert all(row["run"] is not None and not row["error"] for row in rows), [r["error"] for r in rows]
    footings = [row["footing"] for row in rows]
    assert all(f == doc["footing"] for f in footings)  # the same footing fields, the same values, on every row
    keys = {"precision", "gbs", "tokens_per_step", "target_devices", "chosen_devices", "idle_share", "sizing_reason"}
    assert all(keys <= set(row) for row in rows)
    # the same tokens per step: every run uses the footing's batch exactly
    assert {row["run"]["tokens_per_step"] for row in rows} == {doc["footing"]["tokens_per_step"]}
    # equal power: the clusters the rows are sized to differ by under 3% in facility MW
    mw = [row["provisioned_facility_mw"] for row in rows]
    assert max(mw) < min(mw) * 1.03
    # each chip's best training precision, shown
    assert {row["accelerator"]: row["precision"] for row in rows}["trn3"] == "fp8"
    assert all(row["run"]["plan"].count(f"precision={row['precision']}") == 1 for row in rows)
    # every row keeps at least 95% of its target devices or says why it did not
    for row in rows:
        kept = row["chosen_devices"] / row["target_devices"]
        assert kept >= 0.95 or "looked down" in row["sizing_reason"]


def test_forced_precision_applies_to_every_row() -> None:
    comparison = run_fleet_compare(
        model="llama-3-8b",
        tokens=1e12,
        compare="trn2,h100-sxm",
        accelerator="trn2",
        count=1024,
        failures=False,
        precision="bf16",
    )
    assert {row.precision for row in comparison.rows} == {"bf16"}
    assert comparison.footing is not None and comparison.footing.precision == "bf16"


@pytest.mark.parametrize("name", ["rainier-frontier.yaml", "trn3-vs-gpu.yaml"])
def test_no_example_comparison_row_lacks_a_plan(name: str) -> None:
    result = run_fleet_scenario(str(EXAMPLES / name))
    assert result.comparison is not None
    for row in result.comparison.rows:
        assert row.run is not None and "no valid plan" not in row.error, row.error
        assert not any("no valid plan" in note for note in row.run.notes)
    ratios = result.comparison.trn3_vs_trn2
    if ratios is not None:  # every ratio reads "higher is better": Trn3 over Trn2 of a quantity one wants more of
        assert set(ratios) >= {"tokens_per_joule", "tokens_per_s_per_ultraserver"}
        assert result.comparison.ratio_workload.startswith(result.scenario.model)


@pytest.mark.parametrize(("model", "accelerator", "domains", "gbs"), [("llama-3-405b", "trn3", 200, 1944)])
def test_sizing_never_picks_under_half_the_best_mfu_within_the_idle_share(
    model: str, accelerator: str, domains: int, gbs: int
) -> None:
    """Every count within 5% of the target, each searched, against the count sizing picks."""
    shape = resolve_model(model)
    finder = StepFinder(shape, 15.6e12, gbs=gbs, space=SearchSpace(precision=(Precision.FP8,)))
    per_domain = fleet_cluster(accelerator, 1).system.num_devices
    target = fleet_cluster(accelerator, domains * per_domain)
    chosen, sizing = size_cluster(target, finder, 0.05, shape=shape, gbs=gbs)
    best = 0.0
    for count in range(math.ceil(0.95 * domains), domains + 1):
        found = finder(resize_cluster(target, count) if count != domains else target)
        if isinstance(found, StepEstimate):
            best = max(best, found.mfu)
    picked = finder(chosen)
    assert isinstance(picked, StepEstimate)
    assert best > 0 and picked.mfu >= 0.5 * best
    assert sizing.chosen_devices == chosen.num_devices and sizing.chosen_devices >= 0.95 * sizing.target_devices
    assert "idle" in sizing.reason


def test_scenario_compare_takes_precision_and_idle_share(tmp_path: Path) -> None:
    from rainier.catalog.loader import CatalogError
    from rainier.fleet.scenario import load_scenario

    path = tmp_path / "s.yaml"
    head = "model: llama-3-8b\ntokens: 1e12\naccelerator: trn2\ncount: 64\n"
    path.write_text(head + "compare: {accelerators: [h100-sxm], precision: BF16, idle_share: 0.1}\n")
    scenario = load_scenario(path)
    assert scenario.compare_precision == "bf16" and scenario.compare_idle_share == 0.1
    path.write_text(head + "compare: {accelerators: [h100-sxm], precision: fp7}\n")
    with pytest.raises(CatalogError, match="precision"):
        load_scenario(path)
    path.write_text(head + "compare: {accelerators: [h100-sxm], idle_share: 0.9}\n")
    with pytest.raises(CatalogError, match="idle_share"):
        load_scenario(path)
