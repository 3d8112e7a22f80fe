"""The web app's fleet and serving questions, and scenario uploads of every kind, through the CLI's api functions.

- A fleet question is a ``kind: fleet`` scenario as JSON (the file's keys; :mod:`rainier.fleet.scenario`), run by
  :func:`rainier.api.fleet.run_fleet_scenario` (``rainier fleet scenario FILE``): the run's plan, its seeded
  failure simulation (goodput) and the comparison across accelerators. The answer's ``result`` is the CLI's
  ``--json`` document.
- A serving question is a ``kind: serve`` scenario as JSON (:class:`rainier.api.scenario.ServeFile`), run by
  :func:`rainier.api.report.run_serve_file` (``rainier serve size``, and ``serve simulate`` when it has a
  ``simulate:`` block); ``result`` is what ``rainier report FILE --json`` prints besides the report's path.
- A sweep question is a ``kind: sweep`` file's keys as JSON (:mod:`rainier.search.sweep`), run in memory by
  :func:`rainier.api.sweep.run_sweep_document`: the rows ``rainier sweep`` would store (``rainier results
  export``), at most ``MAX_SWEEP_CELLS`` cells (:mod:`rainier.web.limits`).
- An upload is read by the one scenario loader (:func:`rainier.api.scenario.load_scenario_text`) and answered
  with its kind and its fields, which fill the page's tab of that kind.

A problem is a :class:`~rainier.api.training_scenario.FieldError` naming the form field it belongs to where the
message says (``failures.seed``), else the form as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rainier.api.training_scenario import FieldError
from rainier.workload.registry import catalog_names_only

# "request: scenario.failures: seed=-1 is invalid" / "scenario: missing required field 'tokens'"
_FILE_FIELD = re.compile(r"\bscenario(?:\.([\w.]+))?: (?:([A-Za-z_]\w*)=|missing required field '(\w+)')")
_LEADING_NAME = re.compile(r"^-{0,2}([A-Za-z_][\w-]*)\s*[=:]")
_UNKNOWN = {"unknown model": "model", "unknown cluster": "cluster", "unknown accelerator": "accelerator"}
_WHOLE = "scenario"  # the field of a problem with the question as a whole


def fleet_answer(raw: object) -> dict[str, Any]:
    """The answer to a fleet question (module docstring)."""
    from rainier.api.fleet import run_fleet_scenario
    from rainier.fleet.scenario import scenario_from_mapping

    with _blame(raw), catalog_names_only():
        scenario = scenario_from_mapping(_mapping(raw), path="request")
        result = run_fleet_scenario(scenario)
    return {"kind": "fleet", "result": result.to_dict()}


def serve_answer(raw: object) -> dict[str, Any]:
    """The answer to a serving question (module docstring)."""
    from rainier.api.report import run_serve_file, serve_document
    from rainier.api.scenario import serve_file_from_mapping

    with _blame(raw), catalog_names_only():
        serve = serve_file_from_mapping({"kind": "serve", **_mapping(raw)}, path="request")
        if serve.simulate is not None and serve.simulate.get("trace") is not None:
            raise FieldError(
                "simulate.trace: this page reads no files of the server; replay a request trace with"
                " rainier serve simulate --trace FILE",
                "simulate.trace",
            )
        sizing, _, simulation = run_serve_file(serve)
    return {"kind": "serve", "result": serve_document(sizing, simulation)}


def sweep_answer(raw: object) -> dict[str, Any]:
    """The answer to a sweep question: a ``kind: sweep`` file's keys as JSON -> ``{"kind": "sweep", "result": the
    rows rainier sweep stores}`` (:func:`rainier.api.sweep.run_sweep_document`), run in memory. A grid of more
    than ``MAX_SWEEP_CELLS`` cells is refused before any cell runs, naming its largest axis."""
    from rainier.api.sweep import run_sweep_document, sweep_spec
    from rainier.web.limits import MAX_SWEEP_CELLS

    fields = _mapping(raw)
    with _blame_sweep(fields), catalog_names_only():
        spec = sweep_spec({"kind": "sweep", **fields})
        cells = spec.cells()
        if len(cells) > MAX_SWEEP_CELLS:
            axes = {
                "models": len(spec.models),
                "clusters": len({(c.cluster, c.accelerator, c.count) for c in cells}),
                "gbs": len(spec.gbs),
                "seq_len": len(spec.seq_len),
            }
            largest = max(axes, key=lambda name: axes[name])
            grid = " x ".join(f"{count} {name}" for name, count in axes.items())
            raise FieldError(
                f"{largest}: the sweep has {len(cells)} cells ({grid}); this page runs at most {MAX_SWEEP_CELLS}:"
                " give fewer values, or run it with rainier sweep FILE --db results.duckdb",
                largest,
            )
        return {"kind": "sweep", "result": run_sweep_document(spec)}


def question_yaml(raw: dict[str, Any]) -> str:
    """A fleet, serving or sweep tab's fields (with their ``kind``) as a scenario file: checked by that kind's
    reader first, so the file downloaded is one ``rainier fleet scenario`` / ``rainier report`` / ``rainier sweep``
    accept; ``version: 1``."""
    import yaml

    from rainier.api.scenario import VERSION, serve_file_from_mapping
    from rainier.fleet.scenario import scenario_from_mapping

    kind = raw["kind"]
    fields = {k: v for k, v in _mapping(raw).items() if k not in ("kind", "version")}
    document = {"kind": kind, "version": VERSION, **fields}
    with _blame(raw):
        if kind == "fleet":
            scenario_from_mapping(document, path="request")
        elif kind == "serve":
            serve_file_from_mapping(document, path="request")
    if kind == "sweep":
        from rainier.api.sweep import sweep_spec

        with _blame_sweep(fields), catalog_names_only():
            sweep_spec(document)
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def upload_answer(data: bytes | str) -> dict[str, Any]:
    """An uploaded scenario file of any kind: ``{"kind": ..., "scenario": its fields}`` (a training scenario's as
    the step form takes them; a fleet or serving scenario's as the file has them)."""
    from rainier.api.scenario import load_scenario_mapping, scenario_kind
    from rainier.api.training_scenario import MAX_SCENARIO_BYTES, TrainingScenario
    from rainier.catalog.loader import CatalogError, parse_yaml

    size = len(data if isinstance(data, bytes) else data.encode("utf-8", errors="replace"))
    if size > MAX_SCENARIO_BYTES:
        raise FieldError(f"scenario: file too large ({size:,} bytes; at most {MAX_SCENARIO_BYTES:,})", _WHOLE)
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise FieldError("scenario: not UTF-8 text (expected a YAML file)", _WHOLE) from None
    try:
        raw = parse_yaml(data, "scenario")
        if scenario_kind(raw, path="scenario") == "sweep":  # its models by catalog name only (no server files)
            from rainier.api.sweep import sweep_spec

            with catalog_names_only():
                sweep_spec(raw, path="scenario")
            return {"kind": "sweep", "scenario": {str(k): v for k, v in raw.items() if k not in ("kind", "version")}}
        loaded = load_scenario_mapping(raw, text=data)
    except (CatalogError, FieldError) as exc:  # the file did not load: its problem is shown beside the upload
        raise FieldError(str(exc), _WHOLE) from None
    except ValueError as exc:
        raise FieldError(str(exc), _WHOLE) from None
    if isinstance(loaded.value, TrainingScenario):
        return {"kind": "training", "scenario": loaded.value.to_fields()}
    fields = {str(k): v for k, v in raw.items() if k not in ("kind", "version")}
    return {"kind": loaded.kind, "scenario": fields}


def _mapping(raw: object) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise FieldError(f"request: expected a mapping of scenario fields, got {type(raw).__name__}", _WHOLE)
    return {str(k): v for k, v in raw.items() if v is not None and v != ""}


# "request: clusters[0]: unknown accelerator ..." / "request: top level: objective='x' is invalid"
_SWEEP_FIELD = re.compile(r"^request: (?:top level: (?:([A-Za-z_]\w*)=|missing required field '(\w+)')|(\w+)[\[:.])")


@contextmanager
def _blame_sweep(fields: Mapping[str, Any]) -> Iterator[None]:
    """A sweep's problems (``request: gbs[0]: ...``) as a FieldError naming its key (else the whole form)."""
    try:
        yield
    except FieldError:
        raise
    except ValueError as exc:
        found = _SWEEP_FIELD.match(str(exc))
        name = next((group for group in found.groups() if group), None) if found else None
        raise FieldError(str(exc), name if name in set(fields) | {"gbs", "models", "clusters"} else _WHOLE) from None


@contextmanager
def _blame(raw: object) -> Iterator[None]:
    """Turn a ValueError into a FieldError naming the form field the message is about (or the whole form)."""
    try:
        yield
    except FieldError:
        raise
    except ValueError as exc:
        keys = {str(key) for key in raw} if isinstance(raw, Mapping) else set()
        raise FieldError(str(exc), field_of(str(exc), keys)) from None


def field_of(message: str, keys: set[str]) -> str:
    """The form field a one-line message is about: ``failures.seed`` from ``scenario.failures: seed=...``,
    ``tokens`` from ``scenario: tokens=...`` or ``missing required field 'tokens'``, ``model`` from ``unknown
    model``, a leading ``count=``; else the whole form."""
    found = _FILE_FIELD.search(message)
    if found:
        prefix, name, missing = found.groups()
        name = name or missing
        return f"{prefix}.{name}" if prefix else name
    text = message.split(": ", 1)[1] if message.startswith("request: ") else message
    for start, field in _UNKNOWN.items():
        if text.startswith(start):
            plural = f"{field}s"  # a serving question names its models in one field, ``models``
            return field if field in keys or plural not in keys else plural
    leading = _LEADING_NAME.match(text)
    if leading:
        name = leading.group(1).replace("-", "_")
        if name in keys:
            return name
    return _WHOLE
