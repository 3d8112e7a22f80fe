"""Command lines in and out: the flags of a launch script or argument list, and shell-quoted argument lists.

Frameworks that take their settings as flags (Megatron-LM's ``pretrain_gpt.py``, ``vllm serve``, ``trtllm-serve``)
are launched from shell scripts that build the flags in variables and arrays. :func:`read_flags` reads such a
script without running it:

- ``#`` comments are dropped and the text is split as a POSIX shell would (``shlex``);
- plain assignments ``NAME=VALUE`` (also ``export NAME=VALUE`` and ``NAME=${VAR:-default}``, which takes the
  default) are remembered in order, and ``$NAME`` / ``${NAME}`` in later words are replaced by them;
  ``$((A*B))`` of integers is evaluated;
- a quoted word holding several words (``"--fp8-format hybrid"`` in an array) is split again;
- every ``--flag`` then takes the words after it up to the next flag as its values (none: a switch); array
  brackets, ``${ARRAY[@]}`` and a program name (``pretrain_gpt.py``) end a flag's values.

Limits, stated so that nothing is silently wrong: a script's ``if`` branches are all read (a flag set in two
branches to different values is refused when an importer reads it); variables the script does not assign stay
unresolved and a flag whose value still holds a ``$`` is reported as unresolved, never guessed. ``--flag=value``
is split at the first ``=``. YAML flag maps (``--tensor-model-parallel-size: 8``, Megatron-MoE-ModelZoo's files)
are read by :func:`flags_from_mapping`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rainier.errors import InputError, clip

_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_ARITH = re.compile(r"\$\(\(([0-9+*\-/ ()]+)\)\)")
_ARITH_SAFE = re.compile(r"^[0-9+*\-/ ()]+$")
MAX_SCRIPT_WORDS = 100_000  # a launch script has hundreds of words; refuse anything absurd


@dataclass(frozen=True, slots=True)
class Flags:
    """The flags of a command line: ``--name`` -> its values (an empty tuple for a switch), and the other words.

    ``unresolved`` flags kept a ``$VARIABLE`` the script does not assign; ``conflicts`` flags were given more than
    once with different values (two branches of an ``if``). An importer refuses either only if it reads the flag.
    """

    values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    words: tuple[str, ...] = ()  # positional words (program names, a model id) in order
    unresolved: tuple[str, ...] = ()
    conflicts: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.values

    def names(self) -> set[str]:
        return set(self.values)

    def get(self, name: str, where: str) -> tuple[str, ...] | None:
        """The values of ``name`` (``None`` when absent); an unresolved or conflicting flag is an error naming it."""
        if name not in self.values:
            return None
        if name in self.conflicts:
            shown = " / ".join(" ".join(v) or "(switch)" for v in self.conflicts[name])
            raise InputError(f"{where}: {name} is given more than once with different values: {clip(shown)}")
        if name in self.unresolved:
            raise InputError(
                f"{where}: {name} {clip(' '.join(self.values[name]))} uses a variable the file does not set"
            )
        return self.values[name]


def _substitute(word: str, env: Mapping[str, str]) -> str:
    def var(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name in env:
            return env[name]
        if match.group(2) is not None:  # ${NAME:-default}: the default when the script does not set NAME
            return match.group(2).strip("\"'")
        return match.group(0)

    text = _VAR.sub(var, word)

    def arith(match: re.Match[str]) -> str:
        expr = match.group(1)
        if not _ARITH_SAFE.match(expr) or "**" in expr:
            return match.group(0)
        try:
            return str(int(eval(expr, {"__builtins__": {}}, {})))
        except (ArithmeticError, SyntaxError):
            return match.group(0)

    return _ARITH.sub(arith, text)


def _words(text: str, where: str) -> list[str]:
    lexer = shlex.shlex(text.replace("\\\n", " "), posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        words = list(lexer)
    except ValueError as exc:  # unbalanced quotes
        raise InputError(f"{where}: cannot split into shell words ({exc})") from None
    if len(words) > MAX_SCRIPT_WORDS:
        raise InputError(f"{where}: {len(words):,} words; at most {MAX_SCRIPT_WORDS:,} in a launch script")
    return words


def read_flags(text: str, where: str) -> Flags:
    """The flags of a launch script or argument list (see the module docstring for what is and is not read)."""
    env: dict[str, str] = {}
    expanded: list[str] = []
    for raw in _words(text, where):
        if raw == "export":
            continue
        assign = _ASSIGN.match(raw)
        if assign and not raw.startswith("-"):
            name, value = assign.groups()
            if value.endswith(")") and value.startswith("("):  # NAME=( ... ) arrays: read their words below
                expanded.extend(_substitute(value[1:-1], env).split())
                continue
            env[name] = _substitute(value, env)
            continue
        word = _substitute(raw, env)
        # "--fp8-format hybrid" quoted inside an array is two words once the shell expands the array unquoted
        expanded.extend(word.split() if word.startswith("--") and " " in word else [word])
    return _collect(expanded, where)


_ARRAY_USE = re.compile(r"^\$\{?[A-Za-z_][A-Za-z0-9_]*\[[@*]\]\}?$")


def _ends_flag(word: str) -> bool:
    """Words that are never a flag's value: array brackets, ``${ARRAY[@]}``, a program (``pretrain_gpt.py``)."""
    return word in ("(", ")", "\\", ";", "&&", "|") or bool(_ARRAY_USE.match(word)) or word.endswith(".py")


def _collect(words: Iterable[str], where: str) -> Flags:
    occurrences: dict[str, list[list[str]]] = {}
    positional: list[str] = []
    current: list[str] | None = None
    for word in words:
        if _ends_flag(word):
            current = None
            if word.endswith(".py"):
                positional.append(word)
            continue
        is_long = word.startswith("--") and len(word) > 2
        is_short = len(word) == 3 and word[0] == "-" and word[1:].isalpha()  # vLLM's -tp 8, -pp 2
        if is_long or is_short:
            name, eq, inline = word.partition("=") if is_long else (word, "", "")
            current = [inline] if eq else []
            occurrences.setdefault(name, []).append(current)
            if eq:
                current = None
            continue
        if current is not None:
            current.append(word)
        else:
            positional.append(word)
    values: dict[str, tuple[str, ...]] = {}
    conflicts: dict[str, tuple[tuple[str, ...], ...]] = {}
    for name, groups in occurrences.items():
        distinct = list(dict.fromkeys(tuple(g) for g in groups))
        values[name] = distinct[0]
        if len(distinct) > 1:
            conflicts[name] = tuple(distinct)
    unresolved = tuple(name for name, vals in values.items() if any("$" in v for v in vals))
    return Flags(values=values, words=tuple(positional), unresolved=unresolved, conflicts=conflicts)


def flags_from_mapping(mapping: Mapping[str, Any], where: str) -> Flags:
    """Flags from a YAML map of ``--flag: value`` (``true`` is a switch, ``false`` leaves the flag out)."""
    values: dict[str, tuple[str, ...]] = {}
    for key, value in mapping.items():
        name = str(key)
        if not name.startswith("--"):
            raise InputError(f"{where}: key {clip(repr(name))} is not a --flag")
        if value is False or value is None:
            continue
        if value is True:
            values[name] = ()
        elif isinstance(value, list):
            values[name] = tuple(str(v) for v in value)
        else:
            values[name] = tuple(str(value).split())
    unresolved = tuple(name for name, vals in values.items() if any("$" in v for v in vals))
    return Flags(values=values, unresolved=unresolved)


def format_command(program: Iterable[str], args: Iterable[tuple[str, tuple[str, ...]]]) -> str:
    """A shell command, one flag per continued line: ``program \\`` then ``  --flag value \\`` ..."""
    lines = [" ".join(shlex.quote(w) for w in program)]
    for name, vals in args:
        lines.append(" ".join([name, *(shlex.quote(v) for v in vals)]))
    return " \\\n    ".join(lines) + "\n"
