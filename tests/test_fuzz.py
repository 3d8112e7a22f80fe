"""Fuzzing every face in-process: hostile flag values, mutated scenario, sweep and case files, web requests.

Each case must end in exit 0 or 2 (a web answer below 500), never an escaped exception, and every ``--json``
document must be strict JSON. The examples are seeded (``derandomize``) so a failure reproduces; ``make fuzz``
runs the same tests with ``RAINIER_FUZZ_EXAMPLES=100000``; the suite's own counts (a few hundred per face) are a
smoke test sized to keep ``make test`` within CI's time.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rainier.cli import app
from tests.json_commands import COMMANDS, strict_loads

EXAMPLES = int(os.environ.get("RAINIER_FUZZ_EXAMPLES", "0")) or None
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def fuzz_settings(default: int) -> Any:
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
        database=None,
    )


HOSTILE_TEXT = [
    "-1",
    "0",
    "1",
    "1e400",
    "-1e400",
    "nan",
    "inf",
    "-inf",
    "99999999999999999999",
    "1e-300",
    "1e30",
    "",
    " ",
    "foo",
    "1.5",
    "0x10",
    "1_000",
    "1k",
    "1M",
    "\u2603",
    "tp=0",
    "tp=3",
    "tp=8,tp=8",
    "a=1",
    ",",
    "=",
    "null",
    "true",
    "/nonexistent",
    "/",
    "-",
    "--json",
    "gbs=99999999999999999999",
    "x" * 5000,
    "1..99999999999999",
    "h100-sxm=1,h100-sxm=2",
    "ttft_p99_ms=-5",
    "llama-3-8b:1e400",
    "2025Q4:1e400GW",
    "prefill=h100-sxm:0",
]
hostile_text = (
    st.sampled_from(HOSTILE_TEXT) | st.integers(-(2**70), 2**70).map(str) | st.floats().map(repr) | st.text(max_size=12)
)


def _cli_ok(args: list[str]) -> None:
    result = runner.invoke(app, args)
    if result.exit_code not in (0, 2) or (
        result.exception is not None and not isinstance(result.exception, SystemExit)
    ):
        raise AssertionError(f"{args!r} -> exit {result.exit_code}: {result.exception!r}\n{result.output[-800:]}")
    if result.exit_code == 2:
        assert "Traceback" not in result.output
    if result.exit_code == 0 and "--json" in args:
        strict_loads(result.stdout)


# Not fuzzed here: whole-file work that a mutation can blow up to minutes (`validate`, which simulates or scores
# every public case once `--group` is dropped; `fleet scenario`, whose file is the demo). Their files are fuzzed
# below (test_fuzz_files) and their flags are the other commands' flags.
TEMPLATES = [
    args
    for runs in COMMANDS.values()
    for args in runs
    if not args[0].startswith("catalog") and args[0] != "validate" and args[:2] != ["fleet", "scenario"]
]


@st.composite
def mutated_args(draw: st.DrawFn) -> list[str]:
    args = list(draw(st.sampled_from(TEMPLATES)))
    values = [i for i in range(1, len(args)) if not args[i].startswith("--") and args[i - 1].startswith("--")]
    for _ in range(draw(st.integers(1, 2))):
        action = draw(st.sampled_from(["replace", "replace", "replace", "drop", "extra"]))
        if action == "replace" and values:
            args[draw(st.sampled_from(values))] = draw(hostile_text)
        elif action == "drop" and values:
            i = draw(st.sampled_from(values))
            args = args[: i - 1] + args[i + 1 :]
            values = [j for j in range(1, len(args)) if not args[j].startswith("--") and args[j - 1].startswith("--")]
        else:
            args += [
                draw(st.sampled_from(["--seq-len", "--price", "--plan", "--gbs", "--seed", "--bogus"])),
                draw(hostile_text),
            ]
    return [*args, "--json"] if draw(st.booleans()) else args


@fuzz_settings(500)
@given(mutated_args())
def test_fuzz_cli_flags(args: list[str]) -> None:
    _cli_ok(args)


# ------------------------------------------------------------------------------------------------ files
FLEET_SCENARIO = {
    "kind": "fleet",
    "title": "fuzz",
    "model": "llama-3-8b",
    "tokens": 1e11,
    "accelerator": "h100-sxm",
    "count": 64,
    "gbs": 64,
    "price": 2.0,
    "failures": {"enabled": True, "seed": 1, "simulate_days": 2},
    "compare": {"accelerators": ["trn2"], "at": "devices"},
}
SERVE_SCENARIO = {
    "kind": "serve",
    "title": "fuzz",
    "models": {"llama-3-8b": 5},
    "slo": {"ttft_p99_ms": 2000, "tpot_p99_ms": 60},
    "accelerators": ["h100-sxm"],
    "input_len": 256,
    "output_len": 64,
    "price": {"h100-sxm": 2.0},
    "simulate": {"model": "llama-3-8b", "accelerator": "h100-sxm", "count": 1, "rate": 2, "duration": 5, "seed": 0},
}
SWEEP = {"models": ["llama-3-8b"], "clusters": [{"accelerator": "h100-sxm", "count": [8]}], "gbs": [16]}
SPACE_KEYS = {"tp": [1, 2], "pp": [1], "zero": [1]}


def _training_cases() -> list[Any]:
    cases = yaml.safe_load((ROOT / "validation" / "training.yaml").read_text())
    picked = [c for c in cases["cases"] if c["id"] in ("nar21-1.7b", "mlperf5.0-llama2-70b-lora-gb200-72")]
    return [{**cases, "cases": picked}]


def _inference_cases() -> list[Any]:
    cases = yaml.safe_load((ROOT / "validation" / "inference.yaml").read_text())
    return [{**cases, "cases": cases["cases"][:2]}]


HOSTILE_VALUES = (
    st.sampled_from(
        [
            -1,
            0,
            10**30,
            2**63,
            -(2**63),
            1e400,
            float("nan"),
            1e-300,
            "",
            "x" * 300,
            None,
            True,
            [],
            {},
            [1, 2],
            {"a": 1},
            "fp8",
            "tp=0",
            1.5,
        ]
    )
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=8)
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "delete", "unknown"]))
        if not path:
            doc = copy.deepcopy(draw(HOSTILE_VALUES)) if action == "replace" else doc
            continue
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        if action == "replace":
            parent[path[-1]] = copy.deepcopy(draw(HOSTILE_VALUES))  # never an object shared with another draw
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["bogus", "Model", "tokens_", "simulate_days"]))] = copy.deepcopy(
                draw(HOSTILE_VALUES)
            )
    return doc


def _write(tmp: Path, doc: Any) -> Path:
    path = tmp / "input.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


FILE_KINDS = {
    "fleet-scenario": (FLEET_SCENARIO, lambda p, t: ["fleet", "scenario", str(p), "--json"]),
    "serve-report": (SERVE_SCENARIO, lambda p, t: ["report", str(p), "-o", str(t / "r.html"), "--json"]),
    "sweep": (SWEEP, lambda p, t: ["sweep", str(p), "--db", str(t / "r.duckdb"), "--workers", "1", "--json"]),
    "space": (
        SPACE_KEYS,
        lambda p, t: [
            "train",
            "search",
            "--model",
            "llama-3-8b",
            "--accelerator",
            "h100-sxm",
            "--count",
            "16",
            "--gbs",
            "32",
            "--space",
            str(p),
            "--json",
        ],
    ),
    "training-cases": (_training_cases()[0], lambda p, t: ["validate", str(p), "--json"]),
    "inference-cases": (_inference_cases()[0], lambda p, t: ["validate", str(p), "--json"]),
}


FILE_EXAMPLES = {"serve-report": 40}  # sizing a fleet takes ~0.5 s: fewer of those by default


@pytest.mark.parametrize("kind", sorted(FILE_KINDS))
def test_fuzz_files(kind: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    base, command = FILE_KINDS[kind]

    @fuzz_settings(FILE_EXAMPLES.get(kind, 100))
    @given(mutated(base))
    def check(doc: Any) -> None:
        folder = tmp_path_factory.mktemp(kind)
        _cli_ok(command(_write(folder, doc), folder))

    check()


# ------------------------------------------------------------------------------------------------ web routes
WEB_FIELDS = {"model": "llama-3-8b", "accelerator": "h100-sxm", "count": "8", "plan": "search", "gbs": "16"}


@pytest.fixture(scope="module")
def web_client() -> Any:
    import warnings

    from rainier.web import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's note that it would prefer httpx2
        from starlette.testclient import TestClient

    with TestClient(create_app(allowed_hosts=["testserver"])) as client:
        yield client


def _web_ok(response: Any) -> None:
    assert response.status_code < 500 or response.status_code == 503, (response.status_code, response.text[:500])
    if response.headers.get("content-type", "").startswith("application/json"):
        strict_loads(response.text)


@fuzz_settings(600)
@given(
    fields=mutated(WEB_FIELDS),
    route=st.sampled_from(["estimate", "estimate", "upload", "download"]),
)
def test_fuzz_web_routes(web_client: Any, fields: Any, route: str) -> None:
    if route == "estimate":
        body = json.dumps(fields)  # NaN and Infinity written as JavaScript would not: hostile input too
        _web_ok(web_client.post("/api/estimate", content=body, headers={"content-type": "application/json"}))
    elif route == "upload":
        text = yaml.safe_dump({"kind": "training", **fields} if isinstance(fields, dict) else fields)
        _web_ok(web_client.post("/api/scenario", files={"file": ("s.yaml", text.encode(), "application/yaml")}))
    else:
        params = {str(k): str(v)[:200] for k, v in fields.items()} if isinstance(fields, dict) else {}
        _web_ok(web_client.get("/api/scenario.yaml", params=params))
