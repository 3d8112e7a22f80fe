"""Strict YAML reading for catalog files: duplicate keys, unknown keys, types and sources are checked."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from rainier.errors import InputError, UnknownNameError, clip, quote

T = TypeVar("T")
E = TypeVar("E")

SOURCES_KEY = "sources"
ESTIMATED_KEY = "estimated"
DEFAULT_SOURCE = "default"


class CatalogError(InputError):
    """A catalog or user data file is malformed: the message names the file, the entry and the field."""


# libyaml's parser where PyYAML was built with it (about 8x faster than the pure-Python one on large files).
_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SafeBase):  # type: ignore[valid-type,misc]
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):  # a list or mapping as a key ("? [a]")
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be text or a number, not a {type(key).__name__}", key_node.start_mark
            )
        if key in mapping:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# Bounds on one YAML document, so that a typo or a hostile file costs a clear error, not minutes or gigabytes.
# The largest file rainier reads (validation/training.yaml) is 0.6 MB and 23,000 nodes; at these bounds the
# slowest accepted file parses in a few seconds.
MAX_YAML_BYTES = 4 * 2**20  # 4 MiB of text
MAX_YAML_NODES = 1_000_000  # nodes after alias expansion ("billion laughs" grows far past this)
MAX_YAML_DEPTH = 64  # nesting of mappings and sequences
MAX_EXACT_INT = 2**53 - 1  # the largest integer a float holds exactly: no count in any input is near it


def _check_budget(node: yaml.Node, where: str) -> None:
    """Refuse a composed document whose alias expansion or nesting exceeds the bounds above.

    Aliases share node objects, so each distinct node's expanded size is computed once (iteratively: no
    recursion on hostile depth) and a node reached again through an alias counts its whole subtree again.
    """
    expanded: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(node, 1, False)]
    while stack:
        current, depth, done = stack.pop()
        if depth > MAX_YAML_DEPTH:
            raise CatalogError(f"{where}: YAML nested deeper than {MAX_YAML_DEPTH} levels")
        key = id(current)
        if key in expanded:
            continue
        children = _children(current)
        if done or not children:
            expanded[key] = 1 + sum(expanded[id(child)] for child in children)
            if expanded[key] > MAX_YAML_NODES:
                raise CatalogError(
                    f"{where}: YAML has more than {MAX_YAML_NODES:,} values once its aliases are expanded"
                )
            continue
        stack.append((current, depth, True))
        stack.extend((child, depth + 1, False) for child in children if id(child) not in expanded)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def parse_yaml(source: str, where: str) -> Any:
    """Parse one YAML document strictly and within bounds: duplicate keys, size, alias expansion, depth.

    ``where`` names the input in messages (a path, or a form field). Every problem is one
    :class:`CatalogError` line; the CLI and the web app read user YAML through this function.
    """
    size = len(source.encode("utf-8", errors="replace")) if len(source) * 4 > MAX_YAML_BYTES else len(source)
    if size > MAX_YAML_BYTES:
        raise CatalogError(f"{where}: file too large ({size:,} bytes; at most {MAX_YAML_BYTES:,})")
    loader = _StrictLoader(source)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_budget(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CatalogError(f"{where}:{at}: malformed YAML: {clip(str(problem))}") from None
    except RecursionError:
        raise CatalogError(f"{where}: YAML nested deeper than {MAX_YAML_DEPTH} levels") from None
    finally:
        loader.dispose()


def load_yaml(path: Path | str, text: str | None = None) -> Any:
    """Read and parse one YAML file (or ``text`` on its behalf) with :func:`parse_yaml`'s checks."""
    path = Path(path)
    if text is None:
        try:
            if path.stat().st_size > MAX_YAML_BYTES:
                raise CatalogError(
                    f"{path}: file too large ({path.stat().st_size:,} bytes; at most {MAX_YAML_BYTES:,})"
                )
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogError(f"{path}: cannot read file ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise CatalogError(f"{path}: not UTF-8 text (expected a YAML file)") from None
    return parse_yaml(text, str(path))


def catalog_file(name: str) -> Path:
    """Path of a YAML file shipped in ``rainier/catalog``."""
    return Path(str(resources.files("rainier.catalog").joinpath(name)))


@dataclass(frozen=True, slots=True)
class SourceIndex:
    """Citations by id (``sources.yaml``): each id maps to a title and, where one exists, a URL."""

    titles: Mapping[str, str]
    urls: Mapping[str, str]

    def is_known(self, source: str) -> bool:
        return source in self.titles or source.startswith(("http://", "https://"))

    def describe(self, source: str) -> str:
        if source in self.titles:
            url = self.urls.get(source, "")
            return f"{self.titles[source]}{' <' + url + '>' if url else ''}"
        return source


@functools.cache
def source_index() -> SourceIndex:
    """Load every ``sources*.yaml`` in the catalog once (hardware and model citations live in separate files)."""
    titles: dict[str, str] = {}
    urls: dict[str, str] = {}
    folder = catalog_file("sources.yaml").parent
    for path in sorted(folder.glob("sources*.yaml")):
        raw = load_yaml(path)
        if not isinstance(raw, dict) or not isinstance(raw.get("sources"), list) or set(raw) != {"sources"}:
            raise CatalogError(f"{path}: expected exactly one top-level 'sources' list")
        for index, item in enumerate(raw["sources"]):
            fields = Fields(item, path=path, where=f"sources[{index}]", sources=None)
            source_id = fields.string("id")
            if source_id in titles:
                raise CatalogError(f"{path}: sources[{index}]: duplicate id {source_id!r}")
            titles[source_id] = fields.string("title")
            url = fields.string("url", required=False)
            if url:
                urls[source_id] = url
            fields.string("note", required=False)
            fields.finish()
    return SourceIndex(titles=titles, urls=urls)


class Fields:
    """A checked view of one YAML mapping (one catalog entry or one user file section).

    Each accessor pops a key, checks its type and range, and returns it; :meth:`finish` then rejects any key
    that was not read. When ``sources`` is given, every number read must be covered by the entry's
    ``sources`` mapping (by field name, dotted sub-key, or ``default``), and every source id must be known.
    """

    def __init__(
        self,
        data: Any,
        *,
        path: Path | str,
        where: str,
        sources: SourceIndex | None,
    ) -> None:
        self.path = str(path)
        self.where = where
        if not isinstance(data, Mapping):
            raise self.error(f"expected a mapping, got {type(data).__name__}")
        self._data: dict[str, Any] = {str(k): v for k, v in data.items()}
        self._consumed: set[str] = set()
        self._numeric: list[str] = []
        self._index = sources
        self.source_map: dict[str, str] = {}
        self.estimated: frozenset[str] = frozenset()
        if sources is not None:
            raw_sources = self._data.get(SOURCES_KEY, {})
            if not isinstance(raw_sources, Mapping):
                raise self.error(f"'{SOURCES_KEY}' must map field names to source ids")
            self._consumed.add(SOURCES_KEY)
            for key, value in raw_sources.items():
                if not isinstance(value, str) or not sources.is_known(value):
                    raise self.error(f"{SOURCES_KEY}.{key}={value!r} is not a known source id or URL")
                self.source_map[str(key)] = value
            raw_est = self._data.get(ESTIMATED_KEY, [])
            if not isinstance(raw_est, list) or not all(isinstance(x, str) for x in raw_est):
                raise self.error(f"'{ESTIMATED_KEY}' must be a list of field names")
            self._consumed.add(ESTIMATED_KEY)
            self.estimated = frozenset(raw_est)

    # -- errors ---------------------------------------------------------------------------------------
    def error(self, message: str) -> CatalogError:
        return CatalogError(f"{self.path}: {self.where}: {message}")

    def _field_error(self, key: str, value: Any, allowed: str) -> CatalogError:
        return self.error(f"{key}={quote(value)} is invalid: {allowed}")

    # -- accessors ------------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self._data and self._data[key] is not None

    def peek(self, key: str) -> Any:
        """The raw value of ``key`` without reading it (to choose how to read a field of several forms)."""
        return self._data.get(key)

    def _take(self, key: str, required: bool) -> Any:
        self._consumed.add(key)
        value = self._data.get(key)
        if value is None and required:
            raise self.error(f"missing required field '{key}'")
        return value

    def string(self, key: str, *, required: bool = True, default: str = "") -> str:
        value = self._take(key, required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._field_error(key, value, "expected text")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], *, required: bool = True, default: str = "") -> str:
        value = self.string(key, required=required, default=default)
        if value not in allowed and (required or value != default):
            raise self._field_error(key, value, f"allowed: {', '.join(allowed)}")
        return value

    def boolean(self, key: str, *, required: bool = True, default: bool = False) -> bool:
        value = self._take(key, required)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._field_error(key, value, "expected true or false")
        return value

    def number(
        self,
        key: str,
        *,
        required: bool = True,
        default: float | None = None,
        minimum: float = 0.0,
        exclusive_minimum: bool = True,
        maximum: float = math.inf,
        sourced: bool = True,
    ) -> float:
        """A finite number in range; by default strictly positive and covered by a source."""
        value = self._take(key, required)
        if value is None:
            if default is None:
                raise self.error(f"missing required field '{key}'")
            return default
        return self._check_number(key, value, minimum, exclusive_minimum, maximum, sourced)

    def optional_number(self, key: str, **kwargs: Any) -> float | None:
        """A number that may be absent (``None``), e.g. an unpublished power figure."""
        if not self.has(key):
            self._consumed.add(key)
            return None
        return self.number(key, **kwargs)

    def integer(
        self,
        key: str,
        *,
        required: bool = True,
        default: int | None = None,
        minimum: int = 1,
        maximum: int = MAX_EXACT_INT,
        sourced: bool = True,
    ) -> int:
        """An integer in ``[minimum, maximum]`` (by default at most 2^53 - 1: exact as a float, finite in numpy)."""
        value = self._take(key, required)
        if value is None:
            if default is None:
                raise self.error(f"missing required field '{key}'")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._field_error(key, value, "expected an integer")
        if value < minimum:
            raise self._field_error(key, value, f"must be >= {minimum}")
        if value > maximum:
            raise self._field_error(key, value, f"must be <= {maximum:,}")
        if sourced:
            self._note_number(key)
        return value

    def number_map(
        self, key: str, allowed_keys: tuple[str, ...], *, required: bool = True, sourced: bool = True
    ) -> dict[str, float]:
        """A mapping of named positive numbers, e.g. peak FLOP/s per precision."""
        value = self._take(key, required)
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not value:
            raise self._field_error(key, value, f"expected a mapping with keys from {', '.join(allowed_keys)}")
        result: dict[str, float] = {}
        for sub, raw in value.items():
            if sub not in allowed_keys:
                raise self._field_error(f"{key}.{sub}", raw, f"unknown key; allowed: {', '.join(allowed_keys)}")
            result[str(sub)] = self._check_number(f"{key}.{sub}", raw, 0.0, True, math.inf, sourced)
        return result

    def mapping(self, key: str, *, required: bool = True) -> dict[str, Any]:
        value = self._take(key, required)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self._field_error(key, value, "expected a mapping")
        return {str(k): v for k, v in value.items()}

    def items(self, key: str, *, required: bool = True) -> list[Any]:
        value = self._take(key, required)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._field_error(key, value, "expected a list")
        return value

    def sub(self, key: str, *, required: bool = True) -> Fields | None:
        """A nested mapping read with the same rules; its numbers are sourced by ``key.field`` or default."""
        value = self._take(key, required)
        if value is None:
            return None
        child = Fields(value, path=self.path, where=f"{self.where}.{key}", sources=None)
        child._index = self._index
        child.source_map = {k[len(key) + 1 :]: v for k, v in self.source_map.items() if k.startswith(key + ".")}
        if key in self.source_map:
            child.source_map.setdefault(DEFAULT_SOURCE, self.source_map[key])
        elif DEFAULT_SOURCE in self.source_map:
            child.source_map.setdefault(DEFAULT_SOURCE, self.source_map[DEFAULT_SOURCE])
        return child

    # -- checks ---------------------------------------------------------------------------------------
    def _check_number(
        self, key: str, value: Any, minimum: float, exclusive: bool, maximum: float, sourced: bool
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._field_error(key, value, "expected a number")
        number = float(value)
        if not math.isfinite(number):
            raise self._field_error(key, value, "must be finite")
        if (number <= minimum if exclusive else number < minimum) or number > maximum:
            low = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
            high = f" and <= {maximum:g}" if math.isfinite(maximum) else ""
            raise self._field_error(key, value, f"must be {low}{high}")
        if sourced:
            self._note_number(key)
        return number

    def _note_number(self, key: str) -> None:
        self._numeric.append(key)

    def source_of(self, key: str) -> str | None:
        """The source id covering a field (exact, parent of a dotted key, or default)."""
        if key in self.source_map:
            return self.source_map[key]
        parent = key.split(".", 1)[0]
        if parent in self.source_map:
            return self.source_map[parent]
        return self.source_map.get(DEFAULT_SOURCE)

    def finish(self) -> None:
        """Reject unknown keys and numbers without a source."""
        unknown = sorted(set(self._data) - self._consumed)
        if unknown:
            raise self.error(f"unknown field(s): {', '.join(unknown)}")
        if self._index is not None:
            missing = [k for k in self._numeric if self.source_of(k) is None]
            if missing:
                raise self.error(f"no source for {', '.join(missing)} (add it under '{SOURCES_KEY}')")
            stray = sorted(set(self.estimated) - {k.split(".", 1)[0] for k in self._numeric} - set(self._numeric))
            if stray:
                raise self.error(f"'{ESTIMATED_KEY}' names field(s) not present: {', '.join(stray)}")


class Registry(Generic[T]):
    """Objects of one kind by id, with 'did you mean' errors for unknown names."""

    def __init__(self, kind: str, items: Mapping[str, T]) -> None:
        self.kind = kind
        self._items = dict(items)

    def get(self, name: str) -> T:
        key = name.strip().lower()
        try:
            return self._items[key]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._items) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def ids(self) -> list[str]:
        return list(self._items)


def load_entries(
    path: Path,
    top_key: str,
    build: Callable[[Fields], E],
    *,
    id_of: Callable[[E], str],
    sourced: bool = True,
) -> dict[str, E]:
    """Read a catalog file of the shape ``{top_key: [entry, ...]}`` into objects keyed by id.

    Duplicate ids are an error. ``build`` reads one entry's fields; ``finish`` is called for it.
    """
    raw = load_yaml(path)
    if not isinstance(raw, Mapping) or set(raw) != {top_key}:
        keys = sorted(raw) if isinstance(raw, Mapping) else type(raw).__name__
        raise CatalogError(f"{path}: expected exactly one top-level key '{top_key}', found {keys}")
    entries = raw[top_key]
    if not isinstance(entries, list):
        raise CatalogError(f"{path}: '{top_key}' must be a list")
    index = source_index() if sourced else None
    result: dict[str, E] = {}
    for position, item in enumerate(entries):
        label = item.get("id") if isinstance(item, Mapping) else None
        fields = Fields(item, path=path, where=f"{top_key}[{position}]{f' ({label})' if label else ''}", sources=index)
        obj = build(fields)
        fields.finish()
        key = id_of(obj).lower()
        if key in result:
            raise CatalogError(f"{path}: {top_key}[{position}]: duplicate id {key!r}")
        result[key] = obj
    return result
