"""Strict JSON for every face: no ``Infinity`` or ``NaN``, which JSON does not have and strict parsers reject.

A non-finite number becomes ``null``, and the document says why under ``null_reasons``: a map from the
value's JSON Pointer (RFC 6901) to what it was (``"infinite (unbounded)"``, ``"not a number (undefined)"``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

NULL_REASONS_KEY = "null_reasons"


def _reason(value: float) -> str:
    if math.isnan(value):
        return "not a number (undefined)"
    return "infinite (unbounded)" if value > 0 else "minus infinite (unbounded)"


def _pointer_part(key: object) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _walk(value: Any, path: str, reasons: dict[str, str]) -> Any:
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        reasons[path or "/"] = _reason(value)
        return None
    if isinstance(value, Mapping):
        return {key: _walk(item, f"{path}/{_pointer_part(key)}", reasons) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(item, f"{path}/{index}", reasons) for index, item in enumerate(value)]
    return value


def strict_document(value: Any) -> Any:
    """``value`` with each non-finite float as ``None``; a mapping also gets ``null_reasons`` when any was."""
    reasons: dict[str, str] = {}
    out = _walk(value, "", reasons)
    if reasons and isinstance(out, dict):
        previous = out.get(NULL_REASONS_KEY)
        out[NULL_REASONS_KEY] = {**previous, **reasons} if isinstance(previous, dict) else reasons
    return out


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None, **options: Any) -> str:
    """``json.dumps`` of :func:`strict_document` (``value``), refusing any NaN or infinity that remains."""
    return json.dumps(strict_document(value), allow_nan=False, default=default, **options)
