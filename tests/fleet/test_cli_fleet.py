"""CLI: rainier fleet plan / sites / grow / scenario — JSON contracts and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rainier.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _json(args: list[str]) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_fleet_plan_json_contract() -> None:
    doc = _json(
        ["fleet", "plan", "--model", "llama-3-8b", "--tokens", "1e12", "--accelerator", "h100-sxm", "--count", "256"]
    )
    for key in (
        "devices",
        "wall_clock_days",
        "it_power_mw",
        "facility_power_mw",
        "energy_mwh",
        "cost_usd",
        "tokens_per_joule",
        "servers",
        "scale_up_domains",
        "racks",
        "device_hours",
        "usd_per_million_tokens",
        "effective_training_time_ratio",
    ):
        assert key in doc, key
    assert doc["devices"] == 256 and doc["cost_usd"] > 0 and 0 < doc["effective_training_time_ratio"] <= 1


def test_fleet_plan_compare_and_deadline() -> None:
    doc = _json(
        [
            "fleet",
            "plan",
            "--model",
            "llama-3-8b",
            "--tokens",
            "1e12",
            "--accelerator",
            "trn2",
            "--deadline-days",
            "30",
            "--compare",
            "trn2,trn3,h100-sxm",
            "--no-failures",
        ]
    )
    assert doc["wall_clock_days"] <= 30
    rows = doc["comparison"]["rows"]
    assert [r["accelerator"] for r in rows] == ["trn2", "trn3", "h100-sxm"]
    assert all(r["run"] is not None for r in rows), [r["error"] for r in rows]
    assert doc["comparison"]["trn3_vs_trn2"]["compute"]["aws_claim"] == 4.4


def test_fleet_plan_table_renders() -> None:
    result = runner.invoke(
        app, ["fleet", "plan", "--model", "llama-3-8b", "--tokens", "1e12", "--cluster", "rainier-trn2-500k"]
    )
    assert result.exit_code == 0, result.output
    assert "training run" in result.stdout and "MW facility" in result.stdout


def test_fleet_grow_json() -> None:
    doc = _json(["fleet", "grow", "--power-schedule", "2025Q4:1GW,2026Q4:+1GW@trn3", "--mix", "trn2"])
    assert [q["quarter"] for q in doc["quarters"]] == ["2025Q4", "2026Q4"]
    assert doc["quarters"][1]["devices"]["trn3"] > 0


def test_fleet_sites_json() -> None:
    doc = _json(["fleet", "sites", "--model", "llama-3-70b", "--cluster", "rainier-trn2-500k"])
    assert doc["best_split"] in {"dp-across-sites", "pp-across-sites", "largest-site-only"}
    assert doc["wan_ring"]["bw_bytes_per_s"] > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["fleet", "plan", "--model", "llama-3-8b", "--tokens", "0", "--accelerator", "trn2", "--count", "64"],
            "tokens",
        ),
        (
            ["fleet", "plan", "--model", "llama-3-8b", "--tokens", "1e12", "--accelerator", "trn2", "--count", "-5"],
            "count",
        ),
        (
            [
                "fleet",
                "plan",
                "--model",
                "llama-3-8b",
                "--tokens",
                "1e12",
                "--cluster",
                "rainier-trn2-500k",
                "--price",
                "-1",
            ],
            "price",
        ),
        (["fleet", "plan", "--model", "nope-7b", "--tokens", "1e12", "--cluster", "rainier-trn2-500k"], "nope-7b"),
        (
            [
                "fleet",
                "plan",
                "--model",
                "llama-3-8b",
                "--tokens",
                "1e12",
                "--accelerator",
                "trn2",
                "--deadline-days",
                "0.001",
            ],
            "deadline-days",
        ),
        (["fleet", "grow", "--power-schedule", "2025Q4:1GW,2025Q1:2GW"], "power-schedule"),
        (["fleet", "grow", "--power-schedule", "2025Q4:-1GW"], "power-schedule"),
        (["fleet", "sites", "--model", "llama-3-8b", "--cluster", "h100-p5-equal-power"], "WAN"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr
