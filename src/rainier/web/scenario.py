"""The web app's scenario: the form's fields as one typed value, read from JSON requests and YAML files.

A training scenario names a model (a catalog name, or a pasted Hugging Face ``config.json``), a cluster (a named
one, or an accelerator and a device count, as the CLI's ``--accelerator ID --count N``), a plan
(``tp=8,pp=2,gbs=512``) or ``search`` with a global batch, and optionally a sequence length. The same fields
fill the form, travel as the JSON body of ``POST /api/estimate`` and are written to and read from a YAML file
(``kind: training``), so a downloaded scenario uploads again unchanged.

Only types are checked here; names, plans and values are resolved by ``rainier.api``, whose one-line messages
the form shows beside the field they belong to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from rainier.catalog.loader import CatalogError, parse_yaml
from rainier.errors import InputError, field_error, quote

KIND = "training"
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
        document: dict[str, Any] = {"kind": KIND}
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
    unknown = [str(key) for key in raw if key not in FIELDS and key != "kind"]
    if unknown:
        allowed = ", ".join(("kind", *FIELDS))
        raise FieldError(f"{where}: unknown key {quote(unknown[0])}; allowed: {allowed}", whole_field)
    kind = raw.get("kind", KIND)
    if kind != KIND:
        raise FieldError(f"kind={quote(kind)} is invalid: {KIND} (this app runs training scenarios)", whole_field)
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
