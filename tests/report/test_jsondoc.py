"""Strict JSON: no NaN or infinity reaches a --json document; each becomes null with its reason."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rainier.report.jsondoc import NULL_REASONS_KEY, dumps, strict_document
from tests.json_commands import strict_loads


def test_non_finite_values_become_null_with_reasons() -> None:
    doc = strict_document({"a": 1.0, "b": [math.inf, {"c/d": math.nan}], "e": -math.inf})
    assert doc["b"][0] is None and doc["b"][1]["c/d"] is None and doc["e"] is None
    assert doc[NULL_REASONS_KEY] == {
        "/b/0": "infinite (unbounded)",
        "/b/1/c~1d": "not a number (undefined)",
        "/e": "minus infinite (unbounded)",
    }


def test_finite_documents_are_unchanged() -> None:
    doc = {"x": 1.5, "y": [1, "s", None, True]}
    assert strict_document(doc) == doc and NULL_REASONS_KEY not in strict_document(doc)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(json_values)
def test_dumps_is_always_strict_json(value: Any) -> None:
    strict_loads(dumps(value))
