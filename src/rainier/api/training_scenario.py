"""A training scenario (``kind: training``): one step estimate or plan search as one typed value.

It is the web app's form, and a scenario file kind of :mod:`rainier.api.scenario` (``rainier report FILE``).

A training scenario names a model (a catalog name, or a pasted Hugging Face ``config.json``), a cluster (a named
one, or an accelerator and a device count, as the CLI's ``--accelerator ID --count N``), a plan
(``tp=8,pp=2,gbs=512``) or ``search`` with a global batch, and optionally a sequence length. The same fields
fill the form, travel as the JSON body of ``POST /api/estimate`` and are written to and read from a YAML file
(``kind: training``, ``version: 1``), so a downloaded scenario uploads again unchanged and ``rainier report``
runs it.

Only types are checked when reading; names, plans and values are resolved by :func:`run_training` through
``rainier.api`` (``run_estimate``, ``run_search``), whose one-line messages the form shows beside the field they
belong to.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from rainier.catalog.loader import CatalogError, parse_yaml
from rainier.errors import InputError, field_error, quote

if TYPE_CHECKING:
    from rainier.perf.result import StepEstimate
    from rainier.search.result import SearchResult

KIND = "training"
VERSION = 1  # the scenario format's version (rainier.api.scenario): optional on read, written on output
SEARCH = "search"
TEXT_FIELDS = ("model", "cluster", "accelerator", "plan")
INT_FIELDS = ("count", "gbs", "seq_len")
FIELDS = ("model", "config", "cluster", "accelerator", "count", "plan", "gbs", "seq_len")
# A scenario is a few lines and a pasted config.json a few KiB (the largest in tests/workload/data is 1.5 KiB).
# The bound keeps the worst parse of an upload under a second (pure-Python object building and its garbage
# collection pause every thread of the server, so a 2 MiB file of tiny flow mappings paused the others ~1 s).
MAX_SCENARIO_BYTES = 2**18
# A config.json as JSON text, however it arrived: a YAML mapping whose aliases repeat a large part many times
# stays within the parser's 1M values yet could expand to gigabytes of text.
MAX_CONFIG_CHARS = 2**20
MAX_INT_DIGITS = 18  # larger numbers are typos; int() of a huge string is also slow


class FieldError(InputError):
    """A user error and the form field it belongs to (``None``: the form as a whole)."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingScenario:
    """The fields of the form; ``None`` where a field is left empty."""

    model: str | None = None  # a catalog model name
    config: str | None = None  # the text of a pasted config.json (instead of ``model``)
    cluster: str | None = None  # a named cluster
    accelerator: str | None = None  # with ``count``, instead of ``cluster``
    count: int | None = None
    plan: str | None = None  # a plan (``tp=8,pp=2,gbs=512``) or ``search``
    gbs: int | None = None  # global batch in sequences, used with ``plan: search``
    seq_len: int | None = None

    def __post_init__(self) -> None:
        for name in (*TEXT_FIELDS, "config"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise FieldError(f"{name}={quote(value)} is invalid: text", name)
        for name in INT_FIELDS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise FieldError(f"{name}={quote(value)} is invalid: a whole number", name)

    @property
    def is_search(self) -> bool:
        return self.plan is not None and self.plan.strip().lower() == SEARCH

    def to_fields(self) -> dict[str, Any]:
        """The form's fields (empty ones left out), as ``POST /api/estimate`` takes them."""
        return {name: getattr(self, name) for name in FIELDS if getattr(self, name) is not None}

    def to_document(self) -> dict[str, Any]:
        """The YAML document: ``kind: training`` first, a pasted config.json as a mapping where it parses."""
        document: dict[str, Any] = {"kind": KIND, "version": VERSION}
        for name, value in self.to_fields().items():
            document[name] = _config_value(value) if name == "config" else value
        return document

    def to_yaml(self) -> str:
        return str(yaml.safe_dump(self.to_document(), sort_keys=False, allow_unicode=True))


def _config_value(text: str) -> Any:
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return parsed if isinstance(parsed, dict) else text


def scenario_from_mapping(raw: object, *, where: str, whole_field: str | None = None) -> TrainingScenario:
    """A scenario from the JSON of a request or a parsed YAML file.

    ``where`` names the input in messages (``request``, ``scenario``); ``whole_field`` is the form field that a
    problem with the input as a whole (not a mapping, an unknown key) is shown beside.
    """
    if not isinstance(raw, Mapping):
        raise FieldError(f"{where}: expected a mapping of scenario fields, got {type(raw).__name__}", whole_field)
    unknown = [str(key) for key in raw if key not in FIELDS and key not in ("kind", "version")]
    if unknown:
        allowed = ", ".join(("kind", "version", *FIELDS))
        raise FieldError(f"{where}: unknown key {quote(unknown[0])}; allowed: {allowed}", whole_field)
    kind = raw.get("kind", KIND)
    if kind != KIND:
        raise FieldError(f"kind={quote(kind)} is invalid: {KIND} (a training scenario)", whole_field)
    version = raw.get("version")
    if version is not None and (isinstance(version, bool) or version != VERSION):
        raise FieldError(f"version={quote(version)} is invalid: {VERSION} (the scenario format's version)", whole_field)
    values: dict[str, Any] = {name: _text(name, raw.get(name)) for name in TEXT_FIELDS}
    values.update({name: _integer(name, raw.get(name)) for name in INT_FIELDS})
    values["config"] = _config_text(raw.get("config"))
    return TrainingScenario(**values)


def scenario_from_yaml(data: bytes | str) -> TrainingScenario:
    """A scenario from an uploaded YAML file; every problem is one line, shown beside the upload field.

    The file is read as the CLI reads its YAML (:func:`rainier.catalog.loader.parse_yaml`: duplicate keys refused,
    size, alias expansion and nesting bounded), so the same file gets the same message from both.
    """
    size = len(data if isinstance(data, bytes) else data.encode("utf-8", errors="replace"))
    if size > MAX_SCENARIO_BYTES:
        raise FieldError(f"scenario: file too large ({size:,} bytes; at most {MAX_SCENARIO_BYTES:,})", "scenario")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise FieldError("scenario: not UTF-8 text (expected a YAML file)", "scenario") from None
    try:
        raw = parse_yaml(data, "scenario")
    except CatalogError as exc:
        raise FieldError(str(exc), "scenario") from None
    if raw is None:
        raise FieldError("scenario: empty file; expected kind: training and the form's fields", "scenario")
    try:
        return scenario_from_mapping(raw, where="scenario", whole_field="scenario")
    except FieldError as exc:  # the file did not load: its problem is shown beside the upload, not a field
        raise FieldError(str(exc), "scenario") from None


def _text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FieldError(field_error(name, value, "text").args[0], name)
    text = str(value).strip()
    return text or None


def _integer(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if not text:
            return None
        digits = text.removeprefix("-").removeprefix("+")
        if digits.isdigit() and digits.isascii() and len(digits) <= MAX_INT_DIGITS:
            return int(text)
    raise FieldError(field_error(name, value, "a whole number").args[0], name)


def _config_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return _bounded_json(value)
    if isinstance(value, str):
        if len(value) > MAX_CONFIG_CHARS:
            raise FieldError(
                f"config: {len(value):,} characters; a config.json has at most {MAX_CONFIG_CHARS:,}", "config"
            )
        return value if value.strip() else None
    raise FieldError(f"config: expected a config.json object or its text, got {type(value).__name__}", "config")


def _bounded_json(value: Mapping[Any, Any]) -> str:
    """``value`` as indented JSON text, refused once it passes ``MAX_CONFIG_CHARS`` (encoded piece by piece, so
    a mapping that aliases repeat a million times costs at most that much text, not its full expansion)."""
    pieces: list[str] = []
    size = 0
    encoded = json.JSONEncoder(indent=2).iterencode(value)
    while True:
        try:
            piece = next(encoded, None)
        except (TypeError, ValueError, RecursionError):
            raise FieldError("config: the mapping is not JSON data (expected a config.json object)", "config") from None
        if piece is None:
            return "".join(pieces)
        size += len(piece)
        if size > MAX_CONFIG_CHARS:
            raise FieldError(
                f"config: more than {MAX_CONFIG_CHARS:,} characters as JSON; a config.json is a few KiB"
                " (does the file repeat a part through YAML aliases?)",
                "config",
            )
        pieces.append(piece)


# ------------------------------------------------------------------------------------------------ running
SEARCH_TOP = 5  # plans shown by a search (``rainier train search --top 5``)
CONFIG_LABEL = "config.json"  # how a pasted config is named in messages
DEFAULT_CONFIG_NAME = "pasted-config"  # the model's name when the config does not say (``_name_or_path``)
_NAME_OR_PATH = "_name_or_path"
_LEADING_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*)\s*[=:]")


@dataclass(frozen=True, slots=True)
class Outcome:
    """A scenario's result: the step estimate shown, and the search it is the best plan of (if any)."""

    scenario: TrainingScenario
    estimate: StepEstimate
    search: SearchResult | None = None

    @property
    def result(self) -> StepEstimate | SearchResult:
        """What the CLI's ``--json`` and ``--report`` are made from."""
        return self.search if self.search is not None else self.estimate


def run_training(scenario: TrainingScenario) -> Outcome:
    """The estimate (or best searched plan) of a scenario; user errors are :class:`FieldError` s."""
    from rainier import api

    with _model_argument(scenario) as model:
        _check_cluster(scenario)
        if scenario.plan is None:
            raise FieldError("plan: give a plan (e.g. tp=8,pp=2,gbs=512) or search", "plan")
        with _blame_run(scenario):
            if scenario.is_search:
                if scenario.gbs is None:
                    raise FieldError("gbs: give the global batch (sequences per step) to search plans for", "gbs")
                found = api.run_search(
                    model=model,
                    gbs=scenario.gbs,
                    cluster=scenario.cluster,
                    accelerator=scenario.accelerator,
                    count=scenario.count,
                    seq_len=scenario.seq_len,
                    top=SEARCH_TOP,
                )
                if not found.top:
                    raise FieldError(f"no valid plan: {found.binding_constraint or 'every candidate failed'}", "plan")
                return Outcome(scenario, found.top[0].estimate, found)
            if scenario.gbs is not None:
                raise FieldError("gbs: used with plan search only; in a plan, write gbs=N", "gbs")
            estimate = api.run_estimate(
                model=model,
                plan=scenario.plan,
                cluster=scenario.cluster,
                accelerator=scenario.accelerator,
                count=scenario.count,
                seq_len=scenario.seq_len,
            )
            return Outcome(scenario, estimate)


# ------------------------------------------------------------------------------------------------ resolution
@contextmanager
def _model_argument(scenario: TrainingScenario) -> Iterator[str]:
    """The ``model`` argument of the API: a checked catalog name, or the path of the pasted config.json."""
    if scenario.config is not None and scenario.model is not None:
        raise FieldError("give either a catalog model or a pasted config.json, not both", "model")
    if scenario.config is None:
        if scenario.model is None:
            raise FieldError("model: choose a catalog model, or paste a config.json", "model")
        from rainier.workload import get_model

        try:
            get_model(scenario.model)  # the web app reads no server paths: names only
        except ValueError as exc:
            raise FieldError(str(exc), "model") from None
        yield scenario.model
        return
    from rainier.workload import load_hf_config
    from rainier.workload.hf_import import CONFIG_FILE

    with tempfile.TemporaryDirectory(prefix="rainier-web-") as folder:
        path = Path(folder) / _config_name(scenario.config) / CONFIG_FILE
        path.parent.mkdir()
        path.write_text(scenario.config, encoding="utf-8")
        try:
            load_hf_config(path)
        except ValueError as exc:
            raise FieldError(_relabel(str(exc), path), "config") from None
        try:
            yield str(path)
        except FieldError as exc:
            raise FieldError(_relabel(str(exc), path), exc.field) from None


def _config_name(text: str) -> str:
    """The folder a pasted config is written to, which names the model (as a Hub snapshot's folder does)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return DEFAULT_CONFIG_NAME
    value = data.get(_NAME_OR_PATH) if isinstance(data, dict) else None
    if not isinstance(value, str):
        return DEFAULT_CONFIG_NAME
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", value.rstrip("/").rsplit("/", 1)[-1])[:80].strip(".-")
    return name or DEFAULT_CONFIG_NAME


def _relabel(message: str, path: Path) -> str:
    return message.replace(str(path), CONFIG_LABEL)


def _check_cluster(scenario: TrainingScenario) -> None:
    from rainier import api

    try:
        api.resolve_cluster(scenario.cluster, scenario.accelerator, scenario.count)
    except ValueError as exc:
        raise FieldError(str(exc), _cluster_field(str(exc), scenario)) from None


def _cluster_field(message: str, scenario: TrainingScenario) -> str:
    if message.startswith("count="):
        return "count"
    if message.startswith("unknown cluster"):
        return "cluster"
    if message.startswith(("unknown accelerator", "unknown system")):
        return "accelerator"
    if scenario.cluster is not None:
        return "cluster"
    return "accelerator" if scenario.accelerator is None else "count"


@contextmanager
def _blame_run(scenario: TrainingScenario) -> Iterator[None]:
    """Errors of the run itself belong to the plan, unless they name the sequence length or the batch."""
    try:
        yield
    except FieldError:
        raise
    except ValueError as exc:
        message = str(exc)
        match = _LEADING_NAME.match(message)
        name = match.group(1) if match else ""
        if name in ("seq-len", "seq_len"):
            field = "seq_len"
        elif name == "gbs" and scenario.is_search:
            field = "gbs"
        elif message.startswith("unknown model"):
            field = "model"
        else:
            field = "plan"
        raise FieldError(message, field) from None
