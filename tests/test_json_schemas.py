"""Every command's ``--json`` output is strict JSON and matches its published schema (``docs/schemas/``)."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from rainier.cli import app
from tests.json_commands import COMMANDS, SCHEMA_DIR, infer, invocations, schema_path, strict_loads

runner = CliRunner()


# Schemas of input files rather than of a command's --json output (tests/api/test_scenario.py checks them).
FILE_FORMAT_SCHEMAS = {"scenario"}


def test_every_command_has_a_published_schema() -> None:
    published = {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")}
    assert published - FILE_FORMAT_SCHEMAS == set(COMMANDS)
    for name in COMMANDS:
        Draft202012Validator.check_schema(json.loads(schema_path(name).read_text()))


@pytest.mark.parametrize(("name", "args"), list(invocations()), ids=lambda v: v if isinstance(v, str) else None)
def test_json_output_matches_its_schema(name: str, args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output[-2000:]
    document = strict_loads(result.stdout)
    validator = Draft202012Validator(json.loads(schema_path(name).read_text()))
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message[:200]}" for e in errors[:10])


def test_inferred_schemas_require_what_every_sample_has_and_admit_null_numbers() -> None:
    schema = infer([{"a": 1, "b": [1.5]}, {"a": 2.5, "b": [], "c": "x"}])
    assert schema["required"] == ["a", "b"]
    assert schema["properties"]["a"]["type"] == ["number", "null"]
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"a": None, "b": [None], "new": True})  # null numbers, new keys: allowed
    assert not validator.is_valid({"a": "1", "b": []})  # a retyped key is a broken contract
    assert not validator.is_valid({"b": []})  # and so is a removed one
