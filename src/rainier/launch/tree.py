"""Typed reads of a YAML launch configuration by dotted key, remembering what was read.

Every reader of a YAML framework config (NeMo, MaxText, NxD, TensorRT-LLM options) goes through :class:`Tree`, so
each error names the file and the dotted key, and :meth:`Tree.unread` lists the leaves no reader looked at (the
"ignored" keys of an import: nothing is dropped silently).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from rainier.errors import InputError, clip
from rainier.launch.config import Framework, LaunchConfig, StatedCluster, check_stated
from rainier.parallel.plan import Plan
from rainier.workload.shape import TransformerShape

_MISSING = object()


class Tree:
    """A parsed YAML mapping read by dotted keys (``model.tensor_model_parallel_size``)."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where
        self.read: set[str] = set()

    def raw(self, key: str) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return _MISSING
            node = node[part]
        self.read.add(key)
        return node

    def has(self, key: str) -> bool:
        return self.raw(key) is not _MISSING and self.raw(key) is not None

    def error(self, key: str, value: Any, allowed: str) -> InputError:
        return InputError(f"{self.where}: {key}={clip(repr(value))} is invalid: {allowed}")

    def integer(self, key: str, *, minimum: int = 1, fill: int | None = None) -> int | None:
        """An integer at ``key`` (``None`` when absent or null); ``fill`` is a sentinel passed through (MaxText -1)."""
        value = self.raw(key)
        if value is _MISSING or value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, value, "an integer")
        if fill is not None and value == fill:
            return value
        if value < minimum:
            raise self.error(key, value, f"an integer >= {minimum}")
        return value

    def number(self, key: str) -> float | None:
        value = self.raw(key)
        if value is _MISSING or value is None:
            return None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise self.error(key, value, "a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.error(key, value, "a finite number")
        return float(value)

    def boolean(self, key: str) -> bool | None:
        value = self.raw(key)
        if value is _MISSING or value is None:
            return None
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise self.error(key, value, "true or false")
        return value

    def text(self, key: str) -> str | None:
        value = self.raw(key)
        if value is _MISSING or value is None:
            return None
        if isinstance(value, bool | Mapping | list):
            raise self.error(key, value, "a string")
        return str(value)

    def unread(self) -> list[str]:
        """Dotted keys of leaves that no read touched (a read of a mapping covers its leaves)."""
        return sorted(k for k in _leaves(self.data, "") if not any(k == r or k.startswith(r + ".") for r in self.read))


def block_recompute(t: Tree, granularity: str, notes: list[str], *, method_key: str, layers_key: str) -> int | None:
    """``Plan.recompute_layers`` from a config's recompute method and layer count (Megatron's semantics).

    ``block`` recomputes the first N layers of each pipeline chunk fully (``recompute_layers=N``); ``uniform``
    recomputes every layer (its N only sets how many layers share one checkpoint), as without the keys. Both apply
    to full recompute only; with another granularity the method is ignored, with a note.
    """
    method = t.text(method_key)
    layers = t.integer(layers_key)
    if method is None:
        return None
    name = method_key.rsplit(".", 1)[-1]
    if granularity != "full":
        notes.append(f"{name} {method} ignored: it applies to full recompute only")
        return None
    if method.lower() == "uniform":
        return None
    if method.lower() != "block":
        raise t.error(method_key, method, "null, uniform or block")
    if layers is None:
        raise t.error(layers_key, None, f"N (layers per chunk) with {name} block")
    return layers


def tree_config(
    t: Tree,
    framework: Framework,
    *,
    plan: Plan,
    shape: TransformerShape | None,
    missing: tuple[str, ...],
    model_name: str | None,
    notes: list[str],
    cluster: StatedCluster | None = None,
) -> LaunchConfig:
    """The launch config a YAML reader found: its plan noted against the stated model (``check_stated``), and
    every key it did not read listed as ignored."""
    check_stated(plan, shape, notes)
    return LaunchConfig(
        framework=framework,
        source=t.where,
        model=shape,
        model_name=model_name,
        model_missing=missing,
        plan=plan,
        cluster=cluster,
        notes=tuple(notes),
        ignored=tuple(t.unread()),
    )


def _leaves(node: Any, prefix: str) -> Iterator[str]:
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        yield prefix
