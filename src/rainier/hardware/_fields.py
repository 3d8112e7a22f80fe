"""Generic readers on top of :class:`rainier.catalog.Fields` used by the hardware builders.

``one_of`` reads one of several unit spellings of a quantity; ``list_fields`` reads a list of mappings item by
item, extending ``Fields.sub``'s dotted-source rule to list items; ``construct`` re-raises a dataclass's own
validation error naming the file and entry; ``lookup`` resolves a cross reference with did-you-mean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from rainier.catalog import CatalogError, Fields, Registry, source_index
from rainier.catalog.loader import DEFAULT_SOURCE
from rainier.errors import InputError, UnknownNameError

T = TypeVar("T")
Converter = Callable[[float], float]


def one_of(fields: Fields, options: Mapping[str, Converter], *, required: bool = True) -> float | None:
    """The one key of ``options`` the entry gives, converted to SI; ``None`` when absent and not required."""
    present = [key for key in options if fields.has(key)]
    if len(present) > 1:
        raise fields.error(f"give only one of {', '.join(present)}")
    for key in options:
        if key not in present:
            fields.optional_number(key)  # marks an explicit `null` as read, so it is not reported as unknown
    if not present:
        if required:
            raise fields.error(f"missing required field: one of {', '.join(options)}")
        return None
    return options[present[0]](fields.number(present[0]))


def list_fields(fields: Fields, key: str, *, required: bool) -> list[Fields]:
    """Each mapping of the list ``key`` as its own :class:`Fields` (the caller finishes each one).

    An item may carry its own ``sources`` and ``estimated``; it also inherits the entry's ``key.field`` source
    keys, the entry's source for ``key`` (or its ``default``), and the entry's ``key.field`` estimated names
    for the fields it has. Those estimated names are then removed from the entry's own list (whose check only
    knows the entry's top-level numbers); a name that matches no item is an error.
    """
    raw_items = fields.items(key, required=required)
    prefix = f"{key}."
    inherited_sources = {k[len(prefix) :]: v for k, v in fields.source_map.items() if k.startswith(prefix)}
    fallback = fields.source_of(key)
    inherited_estimated = {e[len(prefix) :] for e in fields.estimated if e.startswith(prefix)}
    matched: set[str] = set()
    children = []
    index = source_index()
    for position, item in enumerate(raw_items):
        child = Fields(item, path=fields.path, where=f"{fields.where}.{key}[{position}]", sources=index)
        for sub_key, source in inherited_sources.items():
            child.source_map.setdefault(sub_key, source)
        if fallback is not None:
            child.source_map.setdefault(DEFAULT_SOURCE, fallback)
        own = {name for name in inherited_estimated if child.has(name)}
        matched |= own
        child.estimated = child.estimated | own
        children.append(child)
    unmatched = sorted(inherited_estimated - matched)
    if unmatched:
        names = ", ".join(prefix + name for name in unmatched)
        raise fields.error(f"'estimated' names {names}, but no item of '{key}' has that field")
    fields.estimated = frozenset(e for e in fields.estimated if not e.startswith(prefix))
    return children


def construct(fields: Fields, cls: Callable[..., T], **kwargs: Any) -> T:
    """Build a dataclass; its own validation error is re-raised naming the file and entry."""
    try:
        return cls(**kwargs)
    except CatalogError:
        raise
    except InputError as exc:
        raise fields.error(str(exc)) from None


def lookup(fields: Fields, key: str, registry: Registry[T]) -> T:
    """Resolve a cross reference (an id of another catalog file), with did-you-mean on failure."""
    name = fields.string(key)
    try:
        return registry.get(name)
    except UnknownNameError as exc:
        raise fields.error(f"{key}={name!r} is invalid: {exc}") from None


def optional_lookup(fields: Fields, key: str, registry: Registry[T]) -> T | None:
    if not fields.has(key):
        fields.string(key, required=False)  # marks an explicit `null` as read
        return None
    return lookup(fields, key, registry)
