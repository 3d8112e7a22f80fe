"""User-facing errors.

Every problem a user can cause (an unknown name, a malformed file, an impossible value) is raised as an
``InputError``: the CLI prints its one-line message and exits with code 2, never a traceback. It subclasses
``ValueError`` so that library callers can catch the standard exception.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(ValueError):
    """Bad input from a user: the message names the field, the value and what is allowed."""


class UnknownNameError(InputError, KeyError):
    """A name (model, accelerator, cluster ...) that is not in the catalog."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known_list = sorted(known)
        long = len(name) > 2 * MAX_QUOTE  # no catalog name is this long; matching it would only cost time
        close = [] if long else difflib.get_close_matches(name.lower(), known_list, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = "" if close else f"; known: {', '.join(known_list[:12])}{' ...' if len(known_list) > 12 else ''}"
        super().__init__(f"unknown {kind} {quote(name)}{hint}{listing}")
        self.kind = kind
        self.name = name
        self.suggestions = close

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


MAX_QUOTE = 80  # characters of a user's input an error message repeats


def clip(text: str, limit: int = MAX_QUOTE) -> str:
    """``text`` cut to ``limit`` characters (with the count of the rest), so a message never echoes a whole input."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


MAX_PATH_QUOTE = 1024  # a file name is the user's own and usually short; its directories alone can pass 80


def clip_path(path: object) -> str:
    """A file name as an error message shows it: whole, unless it is past ``MAX_PATH_QUOTE`` characters."""
    return clip(str(path), MAX_PATH_QUOTE)


def quote(value: object, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` clipped to ``limit`` characters: how an error message shows what the user gave."""
    return clip(repr(value), limit)


def field_error(field: str, value: object, allowed: str) -> InputError:
    """The standard one-line error: ``field=value is invalid: allowed ...``."""
    return InputError(f"{field}={quote(value)} is invalid: {allowed}")
