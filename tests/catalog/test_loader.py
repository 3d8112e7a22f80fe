"""The strict catalog reader: duplicate keys, unknown keys, types, ranges and sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rainier.catalog import CatalogError, Fields, Registry, load_entries, load_yaml, source_index
from rainier.errors import InputError, UnknownNameError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "things.yaml"
    path.write_text(text)
    return path


def _build(fields: Fields) -> tuple[str, float]:
    return fields.string("id"), fields.number("size_gib")


def test_duplicate_mapping_key_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "a: 1\na: 2\n")
    with pytest.raises(CatalogError, match="duplicate key 'a'"):
        load_yaml(path)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "things:\n  - id: [unclosed\n")
    with pytest.raises(CatalogError, match=r"things\.yaml: line \d+: malformed YAML"):
        load_yaml(path)


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read file"):
        load_yaml(tmp_path / "nope.yaml")


def test_entries_load_with_default_source(tmp_path: Path) -> None:
    source_id = next(iter(source_index().titles))
    path = _write(tmp_path, f"things:\n  - id: x\n    size_gib: 2\n    sources: {{default: {source_id}}}\n")
    assert load_entries(path, "things", _build, id_of=lambda t: t[0]) == {"x": ("x", 2.0)}


def test_url_counts_as_a_source(tmp_path: Path) -> None:
    path = _write(tmp_path, "things:\n  - id: x\n    size_gib: 2\n    sources: {size_gib: https://example.org/spec}\n")
    assert load_entries(path, "things", _build, id_of=lambda t: t[0])["x"] == ("x", 2.0)


def test_number_without_source_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "things:\n  - id: x\n    size_gib: 2\n")
    with pytest.raises(CatalogError, match="no source for size_gib"):
        load_entries(path, "things", _build, id_of=lambda t: t[0])


def test_unknown_source_id_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "things:\n  - id: x\n    size_gib: 2\n    sources: {default: NOT-A-SOURCE}\n")
    with pytest.raises(CatalogError, match=r"sources\.default='NOT-A-SOURCE' is not a known source"):
        load_entries(path, "things", _build, id_of=lambda t: t[0])


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "things:\n  - id: x\n    size_gib: 2\n    colour: red\n    sources: {default: https://a.b}\n"
    )
    with pytest.raises(CatalogError, match=r"things\[0\] \(x\): unknown field\(s\): colour"):
        load_entries(path, "things", _build, id_of=lambda t: t[0])


def test_duplicate_id_is_rejected(tmp_path: Path) -> None:
    entry = "  - id: x\n    size_gib: 2\n    sources: {default: https://a.b}\n"
    path = _write(tmp_path, "things:\n" + entry + entry)
    with pytest.raises(CatalogError, match="duplicate id 'x'"):
        load_entries(path, "things", _build, id_of=lambda t: t[0])


def test_estimated_must_name_a_present_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "things:\n  - id: x\n    size_gib: 2\n    estimated: [power_w]\n    sources: {default: https://a.b}\n"
    )
    with pytest.raises(CatalogError, match="'estimated' names field"):
        load_entries(path, "things", _build, id_of=lambda t: t[0])


@pytest.mark.parametrize("value", ["-1", "0", "true", "'big'", ".nan", ".inf"])
def test_bad_numbers_are_rejected(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, f"things:\n  - id: x\n    size_gib: {value}\n    sources: {{default: https://a.b}}\n")
    with pytest.raises(CatalogError, match="size_gib="):
        load_entries(path, "things", _build, id_of=lambda t: t[0])


def test_sub_mapping_inherits_parent_source() -> None:
    fields = Fields(
        {"peak": {"bf16": 1.0}, "sources": {"peak": "https://x.y"}}, path="f", where="e", sources=source_index()
    )
    child = fields.sub("peak")
    assert child is not None
    assert child.number("bf16") == 1.0
    child.finish()
    fields.finish()


def test_registry_suggests_close_names() -> None:
    registry = Registry("accelerator", {"trn2": 1, "trn1": 2, "h100-sxm": 3})
    assert registry.get(" TRN2 ") == 1
    with pytest.raises(UnknownNameError, match="did you mean 'trn2'"):
        registry.get("trn-2")
    with pytest.raises(InputError, match="unknown accelerator 'zzz'; known: h100-sxm, trn1, trn2"):
        registry.get("zzz")


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=10,
    )
)
def test_fields_only_ever_raise_catalog_errors(data: object) -> None:
    try:
        fields = Fields(data, path="f", where="e", sources=source_index())
        fields.number("size_gib")
        fields.finish()
    except CatalogError:
        pass
