"""Tables on an 80-column terminal: as is when they fit, else one field per line; nothing cut, markup literal."""

from __future__ import annotations

import io

from rich.table import Table

from rainier.report.console import FittingConsole, cuts


def _console(width: int) -> tuple[FittingConsole, io.StringIO]:
    buffer = io.StringIO()
    return FittingConsole(file=buffer, width=width, color_system=None, markup=False, emoji=False), buffer


def _clusters() -> Table:
    table = Table(title="clusters")
    for header in ("id", "system", "devices", "facility power", "$/device-hour"):
        table.add_column(header, justify="left" if header in ("id", "system") else "right")
    table.add_row("rainier-trn2-500k", "trn2-ultraserver", "499,968", "456 MW", "—")
    table.add_row("h100-p5-equal-power-x37312", "p5.48xlarge", "298,496", "456 MW", "$4.916")
    return table


def test_a_table_that_fits_prints_as_a_table() -> None:
    console, buffer = _console(160)
    console.print(_clusters())
    text = buffer.getvalue()
    assert "┃ id " in text and "…" not in text


def test_a_table_rich_would_cut_prints_one_field_per_line() -> None:
    narrow, _ = _console(50)
    assert cuts(_clusters(), narrow)  # rich alone would write "raini…"
    console, buffer = _console(50)
    console.print(_clusters())
    lines = buffer.getvalue().splitlines()
    assert "…" not in buffer.getvalue()
    assert lines[0] == "clusters"
    fields = [" ".join(line.split()) for line in lines if line.strip()]
    assert fields[1:6] == [
        "id: rainier-trn2-500k",
        "system: trn2-ultraserver",
        "devices: 499,968",
        "facility power: 456 MW",
        "$/device-hour: —",
    ]
    assert "id: h100-p5-equal-power-x37312" in fields
    assert max(len(line) for line in lines) <= 50


def test_names_are_not_markup_or_emoji() -> None:
    console, buffer = _console(80)
    table = Table("fabric", "note")
    table.add_row("neuronlink-v3:x:", "[bold]not bold[/] :smile:")
    console.print(table)
    console.print("wrote [red]out.html")
    text = buffer.getvalue()
    assert "neuronlink-v3:x:" in text and "[bold]not bold[/] :smile:" in text and "wrote [red]out.html" in text
