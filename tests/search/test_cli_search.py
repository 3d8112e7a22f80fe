"""CLI: train search, --pareto, train scale."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rainier.cli import app

runner = CliRunner()


def test_train_search_json_contract() -> None:
    args = [
        "train",
        "search",
        "--model",
        "llama-3-8b",
        "--accelerator",
        "h100-sxm",
        "--count",
        "64",
        "--gbs",
        "256",
        "--top",
        "2",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"evaluated", "infeasible", "plans_per_s", "top"} <= set(doc)
    assert len(doc["top"]) == 2 and doc["top"][0]["fits"]


def test_train_search_table() -> None:
    result = runner.invoke(
        app,
        ["train", "search", "--model", "llama-3-8b", "--cluster", "rainier-trn2-500k", "--gbs", "15624", "--top", "3"],
    )
    assert result.exit_code == 0, result.output
    assert "best plans" in result.stdout and "plans/s" in result.stdout


def test_pareto_over_cluster_sizes() -> None:
    args = [
        "train",
        "search",
        "--model",
        "llama-3-70b",
        "--accelerator",
        "h100-sxm",
        "--count",
        "256..2048",
        "--gbs",
        "1024",
        "--pareto",
        "time,cost",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [p["num_devices"] for p in doc["points"]] == [256, 512, 1024, 2048]
    assert doc["front"] and all(doc["points"][i]["dollars_per_million_tokens"] > 0 for i in doc["front"])


def test_train_scale_weak_scaling() -> None:
    args = [
        "train",
        "scale",
        "--model",
        "llama-3-8b",
        "--accelerator",
        "trn2",
        "--counts",
        "64,256",
        "--gbs-per-device",
        "1",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    points = json.loads(result.stdout)["points"]
    assert [p["gbs"] for p in points] == [64, 256] and all(p["mfu"] > 0 for p in points)


def test_search_bad_input_is_one_line() -> None:
    cases = [
        (
            ["--model", "llama-3-405b", "--accelerator", "h100-sxm", "--count", "8", "--gbs", "8"],
            "memory: smallest need",
        ),
        (["--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "0", "--gbs", "8"], "count="),
        (
            [
                "--model",
                "llama-3-8b",
                "--accelerator",
                "h100-sxm",
                "--count",
                "8",
                "--gbs",
                "8",
                "--objective",
                "speed",
            ],
            "objective='speed'",
        ),
        (
            ["--model", "llama-3-8b", "--accelerator", "trn2", "--count", "8", "--gbs", "8", "--objective", "cost"],
            "pass --price",
        ),
        (
            ["--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "8", "--gbs", "8", "--pareto", "x,y"],
            "pareto='x,y'",
        ),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["train", "search", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_tied_plans_show_as_one_row() -> None:
    from rainier.report.search_view import merged_ties

    def row(plan: dict[str, object], step: float, warnings: tuple[str, ...] = ()) -> dict[str, object]:
        return {"plan": plan, "step_time_s": step, "gbs": 64, "memory_bytes": {"total": 1e9}, "warnings": warnings}

    simple = row({"tp": 8, "pp": 1, "dp": 8}, 1.0)
    longer = row({"tp": 8, "pp": 1, "dp": 8, "zero": 3, "recompute": "none"}, 1.0)
    warned = row({"tp": 8}, 1.0, ("does not fit",))
    slower = row({"tp": 4, "pp": 2, "dp": 8}, 1.1)
    merged = merged_ties([longer, warned, simple, slower])
    assert merged == [(simple, 2), (slower, 0)]
