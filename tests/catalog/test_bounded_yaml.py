"""The one YAML boundary (``catalog.loader.parse_yaml``): size, alias expansion, depth, duplicate keys, speed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainier.catalog.loader import MAX_YAML_BYTES, MAX_YAML_DEPTH, CatalogError, load_yaml, parse_yaml


def billion_laughs(levels: int = 10, width: int = 9) -> str:
    """The classic alias bomb: ``width ** levels`` strings from a few hundred bytes."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_fast() -> None:
    text = billion_laughs()
    assert len(text) < 600
    start = time.perf_counter()
    with pytest.raises(CatalogError, match=r"more than 1,000,000 values once its aliases are expanded"):
        parse_yaml(text, "bomb.yaml")
    assert time.perf_counter() - start < 5  # a generous bound: the refusal must not expand the bomb


def test_a_few_aliases_are_fine() -> None:
    assert parse_yaml("base: &b {tp: 8}\nrun: {plan: *b}\n", "ok.yaml") == {
        "base": {"tp": 8},
        "run": {"plan": {"tp": 8}},
    }


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, "a:\n" + "".join(" " * i + "- \n" for i in range(1, 200))])
def test_deep_nesting_is_refused(text: str) -> None:
    with pytest.raises(CatalogError, match=f"nested deeper than {MAX_YAML_DEPTH} levels"):
        parse_yaml(text, "deep.yaml")


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("x: " + "y" * (MAX_YAML_BYTES + 1) + "\n")
    with pytest.raises(CatalogError, match=r"file too large \(4,194,309 bytes; at most 4,194,304\)"):
        load_yaml(path)


def test_duplicate_keys_and_python_tags_are_refused() -> None:
    with pytest.raises(CatalogError, match="line 2: malformed YAML: duplicate key 'a'"):
        parse_yaml("a: 1\na: 2\n", "dup.yaml")
    with pytest.raises(CatalogError, match="could not determine a constructor"):
        parse_yaml("a: !!python/object/apply:os.system [echo hi]\n", "tag.yaml")


def test_messages_quote_at_most_80_characters_of_the_input() -> None:
    with pytest.raises(CatalogError) as caught:
        parse_yaml("a: !!" + "x" * 100_000 + " 1\n", "tag.yaml")
    assert len(str(caught.value)) < 300


def test_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CatalogError, match="not UTF-8 text"):
        load_yaml(path)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(alphabet="ab:-[]{}&*!| \n\t'\"#%@`,?>", max_size=120))
def test_any_text_parses_or_is_one_catalog_error(text: str) -> None:
    try:
        parse_yaml(text, "fuzz.yaml")
    except CatalogError as exc:
        assert "\n" not in str(exc)
