"""Fleet commands under bad or extreme input: strict JSON, infeasible answers, ranges, duplicate prices, scenarios.

Every refusal is exit code 2 with one line naming the field and what is allowed (never a traceback or an
``internal error``); every ``--json`` document parses without NaN or Infinity, and says why a quantity is null.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rainier.api.fleet import StepFinder, run_fleet_goodput, run_fleet_plan, run_fleet_sites
from rainier.cli import app
from rainier.errors import InputError
from rainier.fleet.limits import MAX_DEVICES, MAX_GBS, MAX_TOKENS, MAX_USD_PER_DEVICE_HOUR, check_tokens
from rainier.fleet.multisite import SiteAnalysis, WanRing, infeasible_split
from rainier.fleet.plan import Price, parse_price_text, plan_run
from rainier.fleet.power import fleet_cluster
from rainier.hardware import get_cluster
from rainier.perf.result import StepEstimate
from rainier.workload import get_model

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
FRONTIER = str(ROOT / "examples" / "rainier-frontier.yaml")
PRICE_RANGE = f"above 0 to {MAX_USD_PER_DEVICE_HOUR:g}"
SMALL_RUN = ["--model", "llama-3-8b", "--tokens", "1e12", "--accelerator", "h100-sxm", "--count", "64"]


def _no_constants(name: str) -> Any:
    raise AssertionError(f"non-standard JSON constant {name} in a --json document")


def _strict_json(args: list[str]) -> dict[str, Any]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout, parse_constant=_no_constants)
    assert isinstance(document, dict)
    return document


def _refused(args: list[str], *needles: str) -> str:
    """Run ``args``: exit 2 with exactly one line on stderr that contains every needle."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "internal error" not in lines[0] and "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _splits(sites: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {split["split"]: split for split in sites["splits"]}


# ---------------------------------------------------------------------------------------------------------------
# 1. No Infinity: an impossible split across sites is infeasible, with a reason and null quantities
# ---------------------------------------------------------------------------------------------------------------


def _check_infeasible_pp_split(sites: dict[str, Any]) -> None:
    pp = _splits(sites)["pp-across-sites"]
    assert pp["feasible"] is False and "do not tile the sites" in pp["reason"]
    assert pp["step_time_s"] is None and pp["wan_time_s"] is None and pp["slowdown"] is None
    assert pp["tokens_per_s"] is None  # no step, so no throughput (not 0 tokens/s)
    for split in sites["splits"]:
        assert split["feasible"] == (split["reason"] is None)
        if split["feasible"]:
            assert split["step_time_s"] > 0 and split["slowdown"] > 0


def test_frontier_scenario_json_is_strict_and_explains_the_infeasible_split() -> None:
    doc = _strict_json(["fleet", "scenario", FRONTIER])
    assert "null_reasons" not in doc  # the domain says why, the generic fallback is not needed
    _check_infeasible_pp_split(doc["run"]["sites"])
    assert doc["run"]["cost_usd"] is None and doc["run"]["wall_clock_days"] > 0  # no public trn2 price


def test_fleet_plan_json_on_rainier_is_strict() -> None:
    doc = _strict_json(
        ["fleet", "plan", "--model", "frontier-2t-moe", "--tokens", "15e12", "--cluster", "rainier-trn2-500k"]
    )
    assert "null_reasons" not in doc
    _check_infeasible_pp_split(doc["sites"])
    assert doc["sites"]["feasible"] is True and doc["sites"]["best_split"] is not None


def test_fleet_sites_json_and_table_say_infeasible() -> None:
    # at 7,812 sequences the fastest plan has pp=3 stages that do not tile the sites' sizes
    args = ["fleet", "sites", "--model", "frontier-2t-moe", "--cluster", "rainier-trn2-500k", "--gbs", "7812"]
    doc = _strict_json(args)
    assert "null_reasons" not in doc
    _check_infeasible_pp_split(doc)
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "infeasible: pp=3 stages" in result.stdout
    assert " inf " not in f" {' '.join(result.stdout.split())} ".lower()


def _analysis_with_no_feasible_split() -> tuple[SiteAnalysis, StepEstimate]:
    cluster = get_cluster("rainier-trn2-500k")
    estimate = StepFinder(get_model("llama-3-8b"), 1e12, gbs=512)(fleet_cluster("h100-sxm", 64))
    assert isinstance(estimate, StepEstimate)
    splits = (
        infeasible_split("dp-across-sites", cluster.num_devices, "dp=1 < 3 sites: a replica would span the WAN"),
        infeasible_split("pp-across-sites", cluster.num_devices, "pp=1 < 3 sites: a site without a stage"),
        infeasible_split("largest-site-only", 249_984, "no plan fits new-carlisle-indiana alone"),
    )
    analysis = SiteAnalysis(
        cluster=cluster.id,
        sites=tuple((s.name, s.num_systems * cluster.system.num_devices) for s in cluster.sites),
        ring=WanRing(order=("a", "b", "c"), bw_bytes_per_s=1e12, latency_s=0.008),
        one_site=estimate,
        splits=splits,
        target_slowdown=1.05,
        min_wan_bw_bytes_per_s=None,
    )
    return analysis, estimate


def test_no_feasible_split_is_an_answer_in_json_and_an_error_for_a_run() -> None:
    analysis, estimate = _analysis_with_no_feasible_split()
    assert analysis.best is None and analysis.best_spanning is None
    doc = json.loads(json.dumps(analysis.to_dict(), allow_nan=False))
    assert doc["feasible"] is False and doc["best_split"] is None and doc["slowdown"] is None
    assert "a replica would span the WAN" in doc["reason"]
    with pytest.raises(InputError, match=r"no way to run llama-3-8b on rainier-trn2-500k across its 3 sites: dp-"):
        plan_run(
            get_model("llama-3-8b"),
            get_cluster("rainier-trn2-500k"),
            1e12,
            step_on=lambda _cluster: estimate,
            price=Price(usd_per_device_hour=None, source="none"),
            sites=lambda _cluster, _estimate: analysis,
        )


def test_a_run_that_cannot_finish_under_failures_is_not_priced() -> None:
    shape = get_model("llama-3-8b")
    finder = StepFinder(shape, 1e12, gbs=512)
    with pytest.raises(InputError, match=r"effective training time ratio 0.001 < 1%"):
        plan_run(
            shape,
            fleet_cluster("h100-sxm", 64),
            1e12,
            step_on=finder,
            price=Price(usd_per_device_hour=2.0, source="test"),
            goodput=lambda _cluster, _shape, _hours: 0.001,
        )


def test_millions_of_devices_under_failures_are_refused_not_priced() -> None:
    line = _refused(
        ["fleet", "plan", "--model", "llama-3-8b", "--tokens", "1e12", "--accelerator", "trn2", "--count", "5000000"],
        "finishes under failures",
        "--no-failures",
    )
    assert "$" not in line


# ---------------------------------------------------------------------------------------------------------------
# 2. A plan that does not fit, or no valid plan, is refused in every command, never priced
# ---------------------------------------------------------------------------------------------------------------

NO_FIT = ["--model", "llama-3-405b", "--tokens", "1e12", "--accelerator", "h100-sxm", "--count", "64"]


def test_given_plan_that_does_not_fit_is_refused_with_memory_and_capacity() -> None:
    line = _refused(
        ["fleet", "plan", *NO_FIT, "--plan", "tp=1,pp=1,gbs=64"],
        "plan='tp=1,pp=1,gbs=64' is invalid: does not fit in memory",
        "2,225.2 GiB needed per device > 74.5 GiB",
        "h100-sxm",
    )
    assert "days" not in line and "$" not in line


def test_given_plan_that_does_not_fit_is_refused_by_the_scenario_and_the_api(tmp_path: Path) -> None:
    path = tmp_path / "no-fit.yaml"
    path.write_text(
        "model: llama-3-405b\ntokens: 1e12\naccelerator: h100-sxm\ncount: 64\nplan: tp=1,pp=1,gbs=64\n"
        "failures: {enabled: false}\n"
    )
    _refused(["fleet", "scenario", str(path)], str(path), "does not fit in memory", "74.5 GiB")
    with pytest.raises(InputError, match="does not fit in memory"):
        run_fleet_goodput(model="llama-3-405b", accelerator="h100-sxm", count=64, tokens=1e12, plan="tp=1,pp=1,gbs=64")


def test_given_plan_that_does_not_fit_is_refused_by_sites() -> None:
    with pytest.raises(InputError, match=r"plan='tp=1,pp=1,gbs=499968' is invalid: does not fit in memory"):
        run_fleet_sites(model="frontier-2t-moe", cluster="rainier-trn2-500k", plan="tp=1,pp=1,gbs=499968")


def test_search_without_a_feasible_plan_names_the_binding_constraint() -> None:
    base = ["fleet", "plan", "--model", "llama-3-405b", "--tokens", "1e12", "--accelerator", "h100-sxm"]
    _refused([*base, "--count", "8"], "no valid plan for llama-3-405b", "memory: smallest need", "> 74.5 GiB")
    _refused([*base, "--count", "8", "--deadline-days", "30"], "deadline-days", "memory: smallest need")


# ---------------------------------------------------------------------------------------------------------------
# 3. Every number has the range a real run can have
# ---------------------------------------------------------------------------------------------------------------

PLAN = ["fleet", "plan", "--model", "llama-3-8b", "--accelerator", "h100-sxm"]
GOODPUT = ["fleet", "goodput", "--accelerator", "h100-sxm", "--count", "64"]
SITES = ["fleet", "sites", "--model", "llama-3-8b", "--cluster", "rainier-trn2-500k"]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ([*PLAN, "--count", "64", "--tokens", "1e-300"], ("tokens=1e-300", "from 1 to 1e+16")),
        ([*PLAN, "--count", "64", "--tokens", "0.5"], ("tokens=0.5",)),
        ([*PLAN, "--count", "64", "--tokens", "1e300"], ("tokens=1e+300", "1e+16")),
        ([*PLAN, "--count", "64", "--tokens", "1e400"], ("tokens=inf",)),
        ([*PLAN, "--count", "64", "--tokens", "nan"], ("tokens=nan",)),
        ([*PLAN, "--tokens", "1e12", "--count", "0"], ("count=0", f"{MAX_DEVICES:,}")),
        ([*PLAN, "--tokens", "1e12", "--count", "20000000"], ("count=20000000",)),
        ([*PLAN, "--tokens", "1e12", "--count", "99999999999999999999"], ("count=99999999999999999999",)),
        (
            [*PLAN, "--tokens", "1e12", "--count", "64", "--price", "0"],
            ("price='0'", PRICE_RANGE),
        ),
        ([*PLAN, "--tokens", "1e12", "--count", "64", "--price", "1e308"], ("price='1e308'",)),
        ([*PLAN, "--tokens", "1e12", "--count", "64", "--price", "h100-sxm=nan"], ("price='h100-sxm=nan'",)),
        ([*PLAN, "--tokens", "1e12", "--deadline-days", "1e308"], ("deadline-days=1e+308", "3650")),
        ([*PLAN, "--tokens", "1e12", "--deadline-days", "0"], ("deadline-days=0.0",)),
        ([*PLAN, "--tokens", "1e12", "--count", "64", "--gbs", "0"], ("gbs=0", f"{MAX_GBS:,}")),
        ([*PLAN, "--tokens", "1e12", "--count", "64", "--gbs", "9999999999999"], ("gbs=9999999999999",)),
        ([*PLAN, "--tokens", "1e12", "--count", "64", "--batch-tokens", "1e300"], ("batch-tokens=1e+300", "1e+10")),
        ([*PLAN, "--tokens", "1e12", "--count", "64", "--batch-tokens", "10"], ("batch-tokens=10.0", "8192")),
        ([*SITES, "--slowdown", "1"], ("slowdown=1.0", "above 1")),
        ([*SITES, "--slowdown", "1e9"], ("slowdown=1000000000.0", "at most 10")),
        ([*SITES, "--tokens", "1e-300"], ("tokens=1e-300",)),
        ([*GOODPUT, "--days", "0"], ("days=0.0", "above 0 to 3650")),
        ([*GOODPUT, "--days", "1e300"], ("days=1e+300",)),
        ([*GOODPUT, "--days", "10", "--seed", "-1"], ("seed=-1",)),
        ([*GOODPUT, "--days", "10", "--seed", "99999999999999999999999"], ("seed=99999999999999999999999",)),
        ([*GOODPUT, "--days", "10", "--checkpoint-gib", "1e300"], ("checkpoint-gib=1e+300",)),
        ([*GOODPUT, "--days", "10", "--interval-min", "0"], ("interval-min=0.0",)),
        ([*GOODPUT, "--days", "10", "--restart-min", "1e9"], ("restart-min=1000000000.0", "10080")),
        ([*GOODPUT, "--days", "10", "--spares", "-1"], ("spares=-1",)),
        ([*GOODPUT, "--days", "10", "--repair-hours", "nan"], ("repair-hours=nan",)),
        (["fleet", "goodput", "--accelerator", "h100-sxm", "--count", "20000000", "--days", "1"], ("count=",)),
        (["fleet", "grow", "--power-schedule", "2025Q4:" + "9" * 400 + "GW"], ("power-schedule=", "1,000 GW")),
        (["fleet", "grow", "--power-schedule", "2025Q4:1GW", "--mix", "trn2:1e300"], ("mix='trn2:1e300'",)),
        (["fleet", "grow", "--power-schedule", "2025Q4:1GW", "--model", "llama-3-8b", "--tokens", "1e-3"], ("tokens",)),
    ],
)
def test_numbers_out_of_range_are_one_line_exit_2(args: list[str], needles: tuple[str, ...]) -> None:
    line = _refused(args, *needles)
    assert len(line) < 400  # the value is clipped, never echoed whole


def test_range_edges_are_accepted() -> None:
    assert check_tokens(1) == 1.0 and check_tokens(MAX_TOKENS) == MAX_TOKENS
    run = run_fleet_plan(model="llama-3-8b", tokens=1, accelerator="h100-sxm", count=64, failures=False)
    assert run.num_steps == 1 and run.wall_clock_days > 0
    with pytest.raises(InputError, match="count"):
        run_fleet_plan(model="llama-3-8b", tokens=1e12, accelerator="h100-sxm", count=MAX_DEVICES + 1)


# ---------------------------------------------------------------------------------------------------------------
# 4. --price: each accelerator once, one price for all at most once
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prices", "needles"),
    [
        (["h100-sxm=2", "h100-sxm=3"], ("price='h100-sxm=3'", "one price per accelerator", "already 2")),
        (["H100-SXM=2,h100-sxm=3"], ("price='h100-sxm=3'", "one price per accelerator")),
        (["2", "3"], ("price='3'", "one price for every accelerator")),
    ],
)
def test_repeated_price_keys_are_refused(prices: list[str], needles: tuple[str, ...]) -> None:
    flags = [item for price in prices for item in ("--price", price)]
    _refused(["fleet", "plan", *SMALL_RUN, *flags], *needles)


def test_a_default_price_and_a_per_accelerator_price_combine() -> None:
    doc = _strict_json(["fleet", "plan", *SMALL_RUN, "--no-failures", "--price", "2", "--price", "h100-sxm=3"])
    assert doc["price_usd_per_device_hour"] == 3.0 and doc["price_source"] == "--price"
    assert parse_price_text(["2", "trn2=1.5"]) == (2.0, {"trn2": 1.5})


# ---------------------------------------------------------------------------------------------------------------
# 5. Scenario files: every field's type and range
# ---------------------------------------------------------------------------------------------------------------

BASE = "model: llama-3-8b\ntokens: 1e12\naccelerator: h100-sxm\ncount: 64\n"


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("", ("empty file",)),
        ("- a\n- b\n", ("expected a mapping", "got list")),
        ("42\n", ("expected a mapping", "got int")),
        (BASE + "bogus: 1\n", ("unknown field(s) 'bogus'", "allowed: kind")),
        (BASE + "x" * 500 + ": 1\n", ("unknown field(s)", "more characters")),
        ("model: [1, 2]\ntokens: 1e12\ncluster: rainier-trn2-500k\n", ("model=[1, 2]", "expected text")),
        ("tokens: 1e12\ncluster: rainier-trn2-500k\n", ("missing required field 'model'",)),
        ("model: llama-3-8b\ncluster: rainier-trn2-500k\n", ("missing required field 'tokens'",)),
        ("model: llama-3-8b\ntokens: -5\ncluster: rainier-trn2-500k\n", ("tokens=-5", "from 1 to 1e+16")),
        ("model: llama-3-8b\ntokens: 1e400\ncluster: rainier-trn2-500k\n", ("tokens='1e400'",)),
        ("model: llama-3-8b\ntokens: abc\ncluster: rainier-trn2-500k\n", ("tokens='abc'",)),
        ("model: llama-3-8b\ntokens: true\ncluster: rainier-trn2-500k\n", ("tokens=True",)),
        ("model: llama-3-8b\ntokens: 1e12\n", ("give cluster, or accelerator with count",)),
        ("model: llama-3-8b\ntokens: 1e12\ncluster: rainier-trn2-500k\naccelerator: trn2\n", ("exactly one",)),
        ("model: llama-3-8b\ntokens: 1e12\ncluster: rainier-trn2-500k\ncount: 64\n", ("count goes with",)),
        ("model: llama-3-8b\ntokens: 1e12\naccelerator: h100-sxm\n", ("accelerator needs count",)),
        (BASE.replace("count: 64", "count: -64"), ("count=-64", f"{MAX_DEVICES:,}")),
        (BASE.replace("count: 64", "count: 64.5"), ("count=64.5",)),
        (BASE.replace("count: 64", "count: 99999999999999999999999"), ("count=99999999999999999999999",)),
        (BASE + "gbs: 0\n", ("gbs=0",)),
        (BASE + "gbs: 512\nbatch_tokens: 4e6\n", ("gbs (sequences) or batch_tokens",)),
        (BASE + "batch_tokens: 1e300\n", ("batch_tokens='1e300'", "1e+10")),
        (BASE + "gbs_tolerance: 0.9\n", ("gbs_tolerance=0.9", "(0.05 = +-5%)")),
        (BASE + "gbs: 512\ngbs_tolerance: 0.1\n", ("gbs is an exact batch",)),
        (BASE + "plan: 5\n", ("plan=5", "expected text")),
        (BASE + "title: [a]\n", ("title=['a']",)),
        (BASE + "price: -1\n", ("price=-1", PRICE_RANGE)),
        (BASE + "price: 1e308\n", ("price='1e308'",)),
        (BASE + "price: [1, 2]\n", ("price=[1, 2]", "a mapping such as")),
        (BASE + "price: {}\n", ("price={}",)),
        (BASE + "price: {h100-sxm: -1}\n", ("scenario.price: h100-sxm=-1",)),
        (BASE + "price: {h100-sxm: cheap}\n", ("h100-sxm='cheap'",)),
        (BASE + "price: {H100-SXM: 2, h100-sxm: 3}\n", ("one price per accelerator",)),
        (BASE + "price: {nope: 2}\n", ("unknown accelerator 'nope'",)),
        (BASE + "failures: 3\n", ("scenario.failures: expected a mapping", "got int")),
        (BASE + "failures: {seed: -1}\n", ("seed=-1",)),
        (BASE + "failures: {seed: 1.5}\n", ("seed=1.5",)),
        (BASE + "failures: {enabled: 'yes please'}\n", ("enabled='yes please'", "true or false")),
        (BASE + "failures: {simulate_days: 1e9}\n", ("simulate_days='1e9'", "3650")),
        (BASE + "failures: {simulate_days: -1}\n", ("simulate_days=-1",)),
        (BASE + "failures: {checkpoint_interval_min: 0}\n", ("checkpoint_interval_min=0",)),
        (BASE + "failures: {typo: 1}\n", ("scenario.failures: unknown field(s) 'typo'",)),
        (BASE + "compare: {accelerators: trn3}\n", ("accelerators='trn3'", "a list")),
        (BASE + "compare: {accelerators: [1]}\n", ("accelerators=1",)),
        (BASE + "compare: {accelerators: [trn3], at: volume}\n", ("at='volume'", "power or devices")),
        (BASE + "compare: [trn3]\n", ("scenario.compare: expected a mapping",)),
        ("kind: serve\nmodel: llama-3-8b\n", ("kind='serve'",)),
        ("{{{\n", ("malformed YAML",)),
    ],
)
def test_malformed_scenarios_are_one_line_exit_2(tmp_path: Path, text: str, needles: tuple[str, ...]) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    line = _refused(["fleet", "scenario", str(path)], str(path), *needles)
    assert len(line) < 400 + len(str(path))


def test_scenario_accepts_kind_fleet_and_numeric_text(tmp_path: Path) -> None:
    from rainier.fleet.scenario import load_scenario

    path = tmp_path / "ok.yaml"
    path.write_text(
        "kind: fleet\nmodel: llama-3-8b\ntokens: 1e12\naccelerator: h100-sxm\ncount: 1e3\n"
        "price: {H100-SXM: 2.5}\nfailures: {seed: 7, simulate_days: 2}\ncompare: {accelerators: [trn2], at: devices}\n"
    )
    scenario = load_scenario(path)
    assert scenario.tokens == 1e12 and scenario.count == 1000 and scenario.price == "h100-sxm=2.5"
    assert scenario.seed == 7 and scenario.simulate_days == 2.0 and scenario.compare == ("trn2",)
