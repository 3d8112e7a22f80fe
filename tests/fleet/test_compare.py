"""Comparisons across accelerators: cluster choice, break-even price, Trn3-vs-Trn2 ratios."""

from __future__ import annotations

import pytest

from rainier.api.fleet import run_fleet_compare
from rainier.fleet.compare import CompareAt, comparison_cluster, parse_accelerators
from rainier.fleet.power import footprint
from rainier.hardware import get_cluster


def test_comparison_clusters() -> None:
    base = get_cluster("rainier-trn2-500k")
    assert comparison_cluster(base, "trn2", CompareAt.POWER) is base
    assert comparison_cluster(base, "trn3", CompareAt.POWER).id == "rainier-trn3-144"
    assert comparison_cluster(base, "h100-sxm", CompareAt.POWER).id == "h100-p5-equal-power"
    at_devices = comparison_cluster(base, "trn3", CompareAt.DEVICES)
    assert abs(at_devices.num_devices - base.num_devices) <= 144
    b200 = footprint(comparison_cluster(base, "b200", CompareAt.POWER)).facility_power_w
    assert b200 is not None and base.facility_power_w is not None
    assert b200 <= base.facility_power_w < b200 * 1.01


def test_parse_accelerators_rejects_unknown_names() -> None:
    assert parse_accelerators("trn2, TRN3,trn2") == ["trn2", "trn3"]
    with pytest.raises(ValueError, match="h100"):
        parse_accelerators("trn2,h100")


def test_compare_break_even_and_ratios() -> None:
    comparison = run_fleet_compare(
        model="llama-3-70b",
        tokens=2e12,
        compare="trn2,trn3,h100-sxm",
        accelerator="trn2",
        count=4096,
        at="devices",
        failures=False,
    )
    rows = {r.accelerator: r for r in comparison.rows}
    h100 = rows["h100-sxm"].run
    trn2 = rows["trn2"].run
    assert h100 is not None and trn2 is not None and h100.cost_usd is not None
    assert rows["trn2"].break_even_against == "h100-sxm"
    # at the break-even price trn2's cost per token equals h100's
    price = rows["trn2"].break_even_usd_per_device_hour
    assert price is not None
    assert price * trn2.device_hours / trn2.trained_tokens == pytest.approx(h100.cost_usd / h100.trained_tokens)
    ratios = comparison.trn3_vs_trn2
    assert ratios is not None
    assert ratios["compute"]["rainier"] == pytest.approx(362.4 / 83.2, rel=0.01)  # AWS: 4.4x (AIW-trn3)
    assert ratios["memory_bandwidth"]["rainier"] == pytest.approx(705.6 / 185.6, rel=0.01)  # "nearly 4x"


def test_compare_at_must_be_known() -> None:
    with pytest.raises(ValueError, match="compare-at"):
        run_fleet_compare(model="llama-3-8b", tokens=1e12, compare="trn2", accelerator="trn2", count=64, at="money")
