"""Validation and serialisation helpers shared by the hardware dataclasses.

Every check raises :func:`rainier.errors.field_error` (an ``InputError``, hence a ``ValueError``) whose message
names the field, the value and what is allowed, so that a bad catalog entry or a bad hand-built object reads the
same way.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from rainier.errors import field_error

K = TypeVar("K")
V = TypeVar("V")
E = TypeVar("E", bound=enum.Enum)

#: Catalog ids: lower case, digits, dots and dashes (``trn2``, ``p5.48xlarge``, ``rainier-trn2-500k``).
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9.\-]*")


class FrozenMap(Mapping[K, V]):
    """An immutable, hashable mapping, so that frozen dataclasses holding one stay hashable (usable as cache keys)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[K, V] | None = None) -> None:
        self._data: dict[K, V] = dict(data or {})
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


def check_id(field: str, value: object) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise field_error(field, value, "expected a lower-case id of letters, digits, '.' and '-'")
    return value


def check_text(field: str, value: object, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise field_error(field, value, "expected non-empty text")
    return value


def check_positive(field: str, value: object) -> float:
    """A finite number > 0 (bools are rejected even though Python counts them as ints)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise field_error(field, value, "expected a finite number > 0")
    return float(value)


def check_optional_positive(field: str, value: object) -> float | None:
    return None if value is None else check_positive(field, value)


def check_at_least(field: str, value: object, minimum: float) -> float:
    number = check_positive(field, value)
    if number < minimum:
        raise field_error(field, value, f"must be >= {minimum:g}")
    return number


def check_count(field: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise field_error(field, value, f"expected an integer >= {minimum}")
    return value


def check_enum(field: str, cls: type[E], value: object) -> E:
    """Accept a member of ``cls`` or its string value (as written in YAML or on the command line)."""
    if isinstance(value, cls):
        return value
    for member in cls:
        if member.value == value:
            return member
    raise field_error(field, value, f"allowed: {', '.join(str(m.value) for m in cls)}")


def check_sources(field: str, value: Mapping[str, str]) -> FrozenMap[str, str]:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise field_error(field, value, "expected a mapping of field name to source id")
    return FrozenMap(value)


def jsonable(value: Any) -> Any:
    """Enums to their values, mappings to dicts, sets to sorted lists: what ``json.dumps`` accepts."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    return value
