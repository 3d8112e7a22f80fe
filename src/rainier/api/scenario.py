"""One scenario format for the CLI, the web app and reports: a versioned YAML file whose ``kind`` says the question.

Every scenario file is one YAML mapping with an optional ``version: 1`` (the only version so far; written on
output) and a ``kind``:

- ``fleet`` (the default when ``kind`` is absent: ``examples/rainier-frontier.yaml``, ``examples/trn3-vs-gpu.yaml``):
  a whole training run, its failures and the same run on other chips (:mod:`rainier.fleet.scenario`);
  ``rainier fleet scenario FILE``, ``rainier report FILE``, the web app's fleet tab.
- ``training``: one training step (a plan) or a plan search (``plan: search``) of a model on a cluster
  (:mod:`rainier.api.training_scenario`); the web app's step tab and its downloads, ``rainier report FILE``.
- ``serve`` (``examples/serving-fleet.yaml``): traffic, p99 latency targets and accelerators to size serving
  fleets for, and optionally one configuration to simulate (:class:`ServeFile`); ``rainier report FILE``, the
  web app's serving tab.
- ``sweep`` (``examples/sweep.yaml``): a grid of plan searches into a DuckDB file (:mod:`rainier.search.sweep`);
  ``rainier sweep FILE``. A file without ``kind`` that has ``clusters`` (older sweep files) is a sweep.

:func:`load_scenario_file` and :func:`load_scenario_text` are the one loader: they parse the YAML with the CLI's
bounded parser (:func:`rainier.catalog.loader.parse_yaml`), read ``kind`` and hand the mapping to that kind's
reader, whose one-line errors name the field. :func:`scenario_schema` is the JSON Schema of the format, built
from the same readers' key lists (``docs/schemas/scenario.schema.json``; a test checks the file, and that every
example validates and loads).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rainier.catalog.loader import CatalogError, Fields, load_yaml, parse_yaml
from rainier.errors import clip_path, quote
from rainier.parallel.batch_target import MAX_TOLERANCE

if TYPE_CHECKING:
    from rainier.api.training_scenario import TrainingScenario
    from rainier.fleet.scenario import Scenario
    from rainier.search.sweep import SweepSpec

VERSION = 1
KINDS = ("fleet", "training", "serve", "sweep")
DEFAULT_KIND = "fleet"  # a file without ``kind`` (today's fleet examples)
SERVE_KEYS = (
    "kind",
    "version",
    "title",
    "models",
    "slo",
    "accelerators",
    "input_len",
    "output_len",
    "price",
    "speculative",
    "prefix_hit",
    "lengths",
    "simulate",
)
SLO_KEYS = ("ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms")
SCHEMA_ID = "https://rainier.invalid/schemas/scenario.schema.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeFile:
    """A ``kind: serve`` scenario: the ``rainier serve size`` question, and a ``rainier serve simulate`` one.

    Each field is the text the CLI flag takes (``models: llama-3-70b:20,llama-3-8b:100``), so the file runs
    through the same api functions and checks as the command line.
    """

    title: str
    models: str  # NAME:REQUESTS_PER_S,...
    slo: str  # ttft_p99_ms=...,tpot_p99_ms=...
    accelerators: str  # trn2,h100-sxm
    input_len: int | None = None  # None: 1024, or the length mix's mean (rainier serve size's defaults)
    output_len: int | None = None  # None: 256, or the length mix's mean
    price: str | None = None  # USD per device-hour: 2.5 or trn2=2.0,trn3=4.0
    speculative: str | None = None  # the sized replicas' speculative decoding: eagle3:k=3,accept=0.74
    prefix_hit: float = 0.0  # share of each prompt found in the prefix cache
    lengths: str | None = None  # a benchmark's length mix for the simulated check (rainier catalog datasets)
    simulate: Mapping[str, Any] | None = None  # the keywords of api.serve_sim.simulation_scenario


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedScenario:
    """A scenario file read and checked: its kind, the kind's typed value, and the text it came from."""

    kind: str
    value: Scenario | TrainingScenario | ServeFile | SweepSpec
    text: str
    path: str


def load_scenario_file(path: Path | str, *, expect: str | None = None) -> LoadedScenario:
    """Read a scenario file of any kind (or of kind ``expect`` only); every problem is one line naming the file
    and the field."""
    text = _read(path)
    return load_scenario_text(text, path=str(path), expect=expect)


def load_scenario_text(text: str, *, path: str = "scenario", expect: str | None = None) -> LoadedScenario:
    """A scenario from its YAML text (an upload); ``path`` names it in messages. With ``expect``, another kind is
    refused before its fields are read."""
    return load_scenario_mapping(parse_yaml(text, clip_path(path)), text=text, path=path, expect=expect)


def load_scenario_mapping(
    raw: object, *, text: str, path: str = "scenario", expect: str | None = None
) -> LoadedScenario:
    """A scenario from its parsed YAML ``raw`` (and the ``text`` it was parsed from: a sweep reads it again)."""
    kind = scenario_kind(raw, path=path)
    if expect is not None and kind != expect:
        runs = "rainier sweep FILE" if kind == "sweep" else "rainier report FILE"
        where = clip_path(path)
        raise CatalogError(f"{where}: scenario: kind={quote(kind)} is invalid here: {expect} ({runs} runs it)")
    value: Scenario | TrainingScenario | ServeFile | SweepSpec
    if kind == "fleet":
        from rainier.fleet.scenario import scenario_from_mapping

        value = scenario_from_mapping(raw, path=path)
    elif kind == "training":
        from rainier.api.training_scenario import scenario_from_mapping as training_from_mapping

        value = training_from_mapping(raw, where=clip_path(path), whole_field="scenario")
    elif kind == "serve":
        value = serve_file_from_mapping(raw, path=path)
    else:
        from rainier.search.sweep import load_sweep_spec

        value = load_sweep_spec(path, text)
    return LoadedScenario(kind=kind, value=value, text=text, path=path)


def scenario_kind(raw: object, *, path: str) -> str:
    """The ``kind`` of a parsed scenario (``fleet`` when absent), checked against :data:`KINDS`."""
    where = clip_path(path)
    if raw is None:
        raise CatalogError(f"{where}: scenario: empty file; expected a mapping with kind ({', '.join(KINDS)})")
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{where}: scenario: expected a mapping of scenario fields, got {type(raw).__name__}")
    # Without ``kind`` a file is a fleet scenario, or a sweep where it has ``clusters`` (a key only a sweep has).
    kind = raw.get("kind", "sweep" if "clusters" in raw else DEFAULT_KIND)
    if kind not in KINDS:
        raise CatalogError(f"{where}: scenario: kind={quote(kind)} is invalid: {', '.join(KINDS)}")
    return str(kind)


def serve_file_from_mapping(raw: object, *, path: str) -> ServeFile:
    """A ``kind: serve`` mapping read field by field (:class:`ServeFile`); unknown keys are refused."""
    reader = Fields(raw, path=clip_path(path), where="scenario", sources=None)
    reader.choice("kind", ("serve",))
    reader.integer("version", required=False, default=VERSION, minimum=VERSION, maximum=VERSION, sourced=False)
    title = reader.string("title", required=False) or "Serving fleet"
    models = reader.peek("models")
    if isinstance(models, Mapping):
        reader.mapping("models")
        models_text = ",".join(f"{k}:{v}" for k, v in models.items())
    else:
        models_text = reader.string("models")
    slo = reader.peek("slo")
    if isinstance(slo, Mapping):
        slo_fields = reader.sub("slo")
        assert slo_fields is not None
        targets = {key: slo_fields.optional_number(key, sourced=False) for key in SLO_KEYS}
        slo_fields.finish()
        slo_text = ",".join(f"{k}={v:g}" for k, v in targets.items() if v is not None)
    else:
        slo_text = reader.string("slo")
    accelerators = reader.peek("accelerators")
    if isinstance(accelerators, list):
        accelerators_text = ",".join(str(a) for a in reader.items("accelerators"))
    else:
        accelerators_text = reader.string("accelerators")
    input_len = reader.integer("input_len", required=False, default=0, sourced=False) or None
    output_len = reader.integer("output_len", required=False, default=0, sourced=False) or None
    price = reader.peek("price")
    price_text: str | None
    if isinstance(price, Mapping):
        price_text = ",".join(f"{k}={v}" for k, v in reader.mapping("price").items())
    elif isinstance(price, int | float) and not isinstance(price, bool):
        price_text = repr(reader.number("price", sourced=False))
    else:
        price_text = reader.string("price", required=False) or None
    speculative = reader.string("speculative", required=False) or None
    prefix_hit = reader.optional_number("prefix_hit", sourced=False)
    lengths = reader.string("lengths", required=False) or None
    simulate = reader.mapping("simulate", required=False)
    reader.finish()
    return ServeFile(
        title=title,
        models=models_text,
        slo=slo_text,
        accelerators=accelerators_text,
        input_len=input_len,
        output_len=output_len,
        price=price_text,
        speculative=speculative,
        prefix_hit=0.0 if prefix_hit is None else float(prefix_hit),
        lengths=lengths,
        simulate=simulate or None,
    )


def _read(path: Path | str) -> str:
    """The file's text, read as :func:`rainier.catalog.loader.load_yaml` reads it (size bound, one-line errors)."""
    load_yaml(path)  # the checks and messages of the one YAML reader: missing file, size, encoding, syntax
    return Path(path).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ schema
def scenario_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of every scenario kind, from the key lists the readers accept."""
    from rainier.api.serve_sim import scenario_keys, simulation_scenario
    from rainier.api.training_scenario import FIELDS as TRAINING_FIELDS
    from rainier.api.training_scenario import INT_FIELDS
    from rainier.fleet.scenario import COMPARE_AT, COMPARE_KEYS, FAILURE_KEYS, TOP_KEYS
    from rainier.search.sweep import SWEEP_KEYS

    text, number, integer = {"type": "string"}, {"type": ["number", "string"]}, {"type": "integer"}
    maybe = _nullable
    # "x-pair": how the web form writes a free mapping as one line of text (price: trn2=1.5,trn3=3)
    price = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "object"}, {"type": "null"}], "x-pair": "="}
    version = {"const": VERSION, "description": "the scenario format's version (optional on read)"}

    fleet_types: dict[str, Any] = {
        "kind": {"const": "fleet"},
        "version": version,
        "title": maybe(text),
        "model": text,
        "tokens": number,
        "cluster": maybe(text),
        "accelerator": maybe(text),
        "count": maybe(integer),
        "plan": maybe(text),
        "gbs": maybe(integer),
        "batch_tokens": maybe(number),
        "gbs_tolerance": maybe({"type": "number", "minimum": 0, "maximum": MAX_TOLERANCE}),
        "price": price,
        "precision": maybe(text),
        "failures": maybe(
            _object(
                {
                    "enabled": maybe({"type": "boolean"}),
                    "seed": maybe(integer),
                    "simulate_days": maybe(number),
                    "checkpoint_interval_min": maybe(number),
                    "hot_spares": maybe({"type": "boolean"}),
                    "in_memory_checkpoint": maybe({"type": "boolean"}),
                },
                FAILURE_KEYS,
            )
        ),
        "compare": maybe(
            _object(
                {
                    "accelerators": maybe({"type": "array", "items": text}),
                    "at": maybe({"enum": list(COMPARE_AT)}),
                    "precision": maybe(text),
                    "idle_share": maybe(number),
                },
                COMPARE_KEYS,
            )
        ),
    }
    training_types: dict[str, Any] = {
        "kind": {"const": "training"},
        "version": version,
        **{name: maybe({"type": ["integer", "string"]} if name in INT_FIELDS else text) for name in TRAINING_FIELDS},
    }
    training_types["config"] = maybe({"type": ["object", "string"], "description": "a Hugging Face config.json"})
    parameters = inspect.signature(simulation_scenario).parameters
    simulate_keys = scenario_keys()
    serve_types: dict[str, Any] = {
        "kind": {"const": "serve"},
        "version": version,
        "title": maybe(text),
        "models": {
            "type": ["object", "string"],
            "description": "requests per second by model, or NAME:RATE,...",
            "x-pair": ":",
        },
        "slo": {"anyOf": [_object({key: maybe({"type": "number"}) for key in SLO_KEYS}, SLO_KEYS), text]},
        "accelerators": {"type": ["array", "string"], "items": text},
        "input_len": maybe(integer),
        "output_len": maybe(integer),
        "price": price,
        "speculative": maybe(text),
        "prefix_hit": maybe({"type": "number"}),
        "lengths": maybe(text),
        "simulate": maybe(
            _object({key: _annotation_type(str(parameters[key].annotation)) for key in simulate_keys}, simulate_keys)
        ),
    }
    sweep_types: dict[str, Any] = {
        "kind": {"const": "sweep"},
        "version": version,
        "models": {"type": ["array", "string"], "items": text},
        "clusters": {"type": "array", "items": {"type": "object"}},
        "gbs": {"type": ["array", "integer"], "items": integer},
        "seq_len": maybe({"type": ["array", "integer"], "items": integer}),
        "objective": maybe(text),
        "top": maybe(integer),
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"rainier scenario file, version {VERSION}",
        "description": "kind: fleet (the default), training, serve or sweep; see rainier.api.scenario",
        "type": "object",
        "oneOf": [
            {"$ref": "#/$defs/fleet"},
            {"$ref": "#/$defs/training"},
            {"$ref": "#/$defs/serve"},
            {"$ref": "#/$defs/sweep"},
        ],
        "$defs": {
            "fleet": {**_object(fleet_types, TOP_KEYS), "required": ["model", "tokens"]},
            "training": {**_object(training_types, ("kind", "version", *TRAINING_FIELDS)), "required": ["kind"]},
            "serve": {**_object(serve_types, SERVE_KEYS), "required": ["kind", "models", "slo", "accelerators"]},
            "sweep": {**_object(sweep_types, SWEEP_KEYS), "required": ["models", "clusters", "gbs"]},
        },
    }


def _object(properties: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """An object of exactly the reader's ``keys`` (a key the schema types but the reader does not is a bug)."""
    if tuple(properties) != tuple(keys):
        raise AssertionError(f"schema properties {tuple(properties)} differ from the reader's keys {keys}")
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _annotation_type(annotation: str) -> dict[str, Any]:
    """The JSON type of a keyword's annotation (``int``, ``float | None``, ``str``, ``bool``)."""
    types: list[str] = []
    for part in (p.strip() for p in annotation.split("|")):
        types += {"int": ["integer"], "float": ["number"], "str": ["string"], "bool": ["boolean"]}.get(part, [])
        if part == "None":
            types.append("null")
    return {"type": types} if types else {}


def schema_text() -> str:
    """The committed ``docs/schemas/scenario.schema.json`` (``python -m rainier.api.scenario > FILE`` writes it)."""
    import json

    return json.dumps(scenario_schema(), indent=2) + "\n"


if __name__ == "__main__":
    print(schema_text(), end="")
