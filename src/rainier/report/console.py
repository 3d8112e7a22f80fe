"""The terminal the CLI prints to: tables at the console's width, never cutting an id or a number.

rich fits a table that is too wide by narrowing its columns, and a column narrower than its longest word cuts
the word with an ellipsis: at 80 columns a cluster id became "raini…" and a device count "499,9…" (issue 15).
:class:`FittingConsole` renders each table off-screen first; when rich would cut anything, it prints the table
as records instead, one field per line (``header: value``; long values fold onto the next line, nothing is cut).
Tables without headers (key/value panels) fold their long values instead of cutting them.
"""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

ELLIPSIS = "…"  # what rich writes where it cuts text


def plain(renderable: Any) -> str:
    """The text of a cell, header or title (``Text`` or ``str``; other renderables as empty)."""
    if isinstance(renderable, Text):
        return renderable.plain
    return renderable if isinstance(renderable, str) else ""


def _sources(table: Table) -> list[str]:
    texts = [plain(table.title), plain(table.caption)]
    for column in table.columns:
        texts.append(plain(column.header))
        texts.extend(plain(cell) for cell in column.cells)
    return texts


def cuts(table: Table, console: Console) -> bool:
    """Whether ``table`` printed on ``console`` would have text cut with an ellipsis."""
    buffer = io.StringIO()
    probe = Console(
        width=console.width,
        file=buffer,
        color_system=None,
        markup=console._markup,  # cells that are strings render as the console would render them
        emoji=False,
        highlight=False,
    )
    probe.print(table)
    rendered = buffer.getvalue()
    return rendered.count(ELLIPSIS) > sum(text.count(ELLIPSIS) for text in _sources(table))


def records(table: Table) -> RenderableType:
    """``table`` one row per block and one field per line (``header: value``), empty fields left out."""
    headers = [" ".join(plain(column.header).split()) for column in table.columns]
    cells = [list(column.cells) for column in table.columns]
    parts: list[RenderableType] = []
    if table.title:
        parts.append(Text(table.title, style="bold") if isinstance(table.title, str) else table.title)
    for row in range(table.row_count):
        block = Table.grid(padding=(0, 1))
        block.add_column(no_wrap=True, style="dim")
        block.add_column(overflow="fold")
        for header, column in zip(headers, cells, strict=True):
            if plain(column[row]).strip() or not isinstance(column[row], str | Text):
                block.add_row(Text(f"{header}:" if header else ""), column[row])
        parts.append(block)
        if row < table.row_count - 1:
            parts.append(Text(""))
    if table.caption:
        parts.append(Text(table.caption, style="dim") if isinstance(table.caption, str) else table.caption)
    return Group(*parts)


def folded(table: Table) -> Table:
    """``table`` with every column folding long words onto the next line instead of cutting them."""
    for column in table.columns:
        column.overflow = "fold"
        column.no_wrap = False
    return table


def fit(table: Table, console: Console) -> RenderableType:
    """``table`` as is when it fits ``console``, else as records (or folded, when it has no headers)."""
    if not cuts(table, console):
        return table
    return records(table) if table.show_header else folded(table)


class FittingConsole(Console):
    """A rich console whose tables never cut text: each is printed as is, as records, or folded (see ``fit``)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(fit(o, self) if isinstance(o, Table) else o for o in objects), **kwargs)
