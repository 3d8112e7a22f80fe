"""Every command that prints ``--json``, with small fast invocations: the source of the published JSON Schemas
(``docs/schemas/``) and the templates the fuzz test mutates.

``python -m tests.json_commands`` rewrites the schemas from these invocations (run it when an output gains a
key, and review the diff: a removed or retyped key is a broken contract).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = ROOT / "docs" / "schemas"
EXAMPLES = ROOT / "examples"

H100_64 = ["--accelerator", "h100-sxm", "--count", "64"]
SIMULATE = ["serve", "simulate", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "1", "--rate", "2",
            "--duration", "10"]  # fmt: skip
MOE_ADP = ["serve", "simulate", "--model", "mixtral-8x7b", "--accelerator", "h100-sxm", "--count", "8", "--ep", "8",
           "--dp-attention", "8"]  # fmt: skip

# command name (the schema's file name) -> invocations whose --json outputs the schema must describe
COMMANDS: dict[str, list[list[str]]] = {
    "catalog-accelerators": [["catalog", "accelerators"]],
    "catalog-systems": [["catalog", "systems"]],
    "catalog-fabrics": [["catalog", "fabrics"]],
    "catalog-clusters": [["catalog", "clusters"]],
    "catalog-sources": [["catalog", "sources"]],
    "catalog-models": [["catalog", "models"]],
    "catalog-datasets": [["catalog", "datasets"]],
    "model-show": [["model", "show", "llama-3-8b"], ["model", "show", "deepseek-v3", "--accelerator", "trn2"]],
    "train-estimate": [
        ["train", "estimate", "--model", "llama-3-8b", *H100_64, "--plan", "tp=2,pp=2,gbs=64"],
        ["train", "estimate", "--model", "mixtral-8x7b", *H100_64, "--plan", "tp=2,ep=4,gbs=64"],
    ],
    "train-simulate": [
        ["train", "simulate", "--model", "llama-3-8b", *H100_64, "--plan", "tp=2,pp=2,gbs=64"],
        ["train", "simulate", "--model", "mixtral-8x7b", *H100_64, "--plan", "tp=2,pp=2,ep=4,gbs=64,schedule=zb-h1"],
    ],
    "train-search": [
        ["train", "search", "--model", "llama-3-8b", *H100_64, "--gbs", "64", "--top", "2"],
        ["train", "search", "--model", "llama-3-8b", *H100_64, "--gbs", "64", "--top", "2", "--verify", "2"],
        ["train", "search", "--model", "llama-3-8b", *H100_64, "--gbs", "~60", "--top", "2"],
    ],
    "train-scale": [
        ["train", "scale", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--counts", "8,64", "--gbs", "64"]
    ],
    "fleet-plan": [
        ["fleet", "plan", "--model", "llama-3-8b", "--tokens", "1e11", *H100_64, "--gbs", "64"],
        ["fleet", "plan", "--model", "llama-3-8b", "--tokens", "1e11", *H100_64, "--gbs", "64", "--no-failures"],
    ],
    # 499,968 = 256 x 1,953 devices: every dp is a multiple of 1,953, out of +-5% of the batch law's 2,321 sequences
    "fleet-sites": [["fleet", "sites", "--model", "llama-3-8b", "--cluster", "rainier-trn2-500k", "--gbs", "3906"]],
    "fleet-goodput": [["fleet", "goodput", "--model", "llama-3-8b", *H100_64, "--days", "2", "--seed", "1"]],
    "fleet-grow": [
        [
            "fleet",
            "grow",
            "--power-schedule",
            "2025Q4:100MW",
            "--mix",
            "trn2",
            "--model",
            "llama-3-8b",
            "--tokens",
            "1e12",
        ]
    ],
    "fleet-scenario": [["fleet", "scenario", str(EXAMPLES / "rainier-frontier.yaml")]],
    "serve-estimate": [
        ["serve", "estimate", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "1", "--batch", "4"],
        [
            "serve",
            "estimate",
            "--model",
            "mixtral-8x7b",
            "--accelerator",
            "h100-sxm",
            "--count",
            "8",
            "--tp",
            "8",
            "--ep",
            "8",
            "--batch",
            "4",
            "--speculative",
            "eagle3:k=3,accept=0.7",
            "--attention",
            "per-head-decode",
        ],
    ],
    "serve-simulate": [
        [*SIMULATE, "--seed", "1"],
        [*SIMULATE, "--speculative", "mtp:k=1,len=1.8"],
        [*SIMULATE, "--lengths", "mlperf-llama2-70b"],
        [*MOE_ADP, "--rate", "4", "--duration", "10", "--adp-balance", "3,9"],
    ],
    "serve-size": [
        [
            "serve",
            "size",
            "--models",
            "llama-3-8b:5",
            "--slo",
            "ttft_p99_ms=2000,tpot_p99_ms=60",
            "--accelerators",
            "h100-sxm",
            "--no-simulate",
        ]
    ],
    "validate": [
        ["validate", str(ROOT / "validation" / "training.yaml"), "--group", "Narayanan2021_Table1"],
        ["validate", str(ROOT / "validation" / "training.yaml"), "--group", "torchtitan_docs_2024", "--simulate"],
    ],
    "import": [
        ["import", str(ROOT / "tests" / "launch" / "configs" / "nxd_megatron_llama_7B_config.yaml")],
        ["import", str(ROOT / "tests" / "launch" / "configs" / "nxd_hf_llama3_8B_config.yaml")],
        ["import", str(ROOT / "tests" / "launch" / "configs" / "vllm_llama31_405b_tp8_pp2.sh")],
        ["import", str(ROOT / "tests" / "launch" / "configs" / "trtllm_curated_llama-3.3-70b.yaml")],
        ["import", str(ROOT / "tests" / "launch" / "configs" / "sglang_dsv3_two_h20_nodes.sh")],
        [
            "import",
            str(ROOT / "tests" / "launch" / "configs" / "mbridge_llama3_8b_sft_gb200_fp8_mx_v1.yaml"),
            "--devices",
            "8",
        ],
    ],
}


def invocations() -> Iterator[tuple[str, list[str]]]:
    for name, runs in COMMANDS.items():
        for args in runs:
            yield name, [*args, "--json"]


def strict_loads(text: str) -> Any:
    """``json.loads`` that refuses NaN and infinities, as JavaScript, Go and jq do."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


# ------------------------------------------------------------------------------------------------ schema inference
# Objects keyed by data rather than by field name (group names, link classes, accelerator ids, source fields):
# described by their values' schema, with no required keys. Keys that are not identifiers mark them too.
MAP_KEYS = {"sources", "by_group", "by_trust", "link_load_s", "infeasible", "null_reasons", "price", "estimated"}
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


def infer(samples: list[Any], key: str = "") -> dict[str, Any]:
    """A JSON Schema (2020-12) that every sample satisfies: types per key, keys present in every sample required.

    Numbers also admit null (a non-finite value is written as null with ``null_reasons``); a key seen only as
    null may take any type; objects stay open to new keys (adding keys is allowed by the output contract,
    removing or retyping one is not); maps keyed by data (``MAP_KEYS``) constrain only their values.
    """
    kinds = {_kind(s) for s in samples}
    if kinds <= {"null"}:
        return {}  # seen only as null here: another run may give a value of any type
    types = set(kinds) | ({"null"} if "number" in kinds else set())
    schema: dict[str, Any] = {}
    objects = [s for s in samples if isinstance(s, dict)]
    arrays = [s for s in samples if isinstance(s, list)]
    if objects:
        keys = sorted({k for o in objects for k in o})
        if key in MAP_KEYS or any(not _IDENTIFIER.match(k) for k in keys):
            values = [v for o in objects for v in o.values()]
            if values:
                schema["additionalProperties"] = infer(values)
        else:
            schema["properties"] = {k: infer([o[k] for o in objects if k in o], k) for k in keys}
            schema["required"] = sorted(k for k in keys if all(k in o for o in objects))
    if arrays:
        items = [item for a in arrays for item in a]
        if items:
            schema["items"] = infer(items, key)
    ordered = [t for t in ("object", "array", "string", "number", "boolean", "null") if t in types]
    return {"type": ordered[0] if len(ordered) == 1 else ordered, **schema}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "number"  # an integer field may carry a float in another run (counts vs. fractions)
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def schema_path(name: str) -> Path:
    return SCHEMA_DIR / f"{name}.schema.json"


def write_schemas() -> None:
    from typer.testing import CliRunner

    from rainier.cli import app

    runner = CliRunner()
    outputs: dict[str, list[Any]] = {}
    for name, args in invocations():
        result = runner.invoke(app, args)
        if result.exit_code != 0:
            raise SystemExit(f"{' '.join(args)}: exit {result.exit_code}: {result.output[-500:]}")
        outputs.setdefault(name, []).append(strict_loads(result.stdout))
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for name, samples in outputs.items():
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://rainier.invalid/schemas/{name}.schema.json",
            "title": f"rainier {name.replace('-', ' ', 1)} --json",
            "description": "Generated by `python -m tests.json_commands` from the invocations listed there.",
            **infer(samples),
        }
        schema_path(name).write_text(json.dumps(schema, indent=1, sort_keys=False) + "\n")
        print(f"wrote {schema_path(name).relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    write_schemas()
