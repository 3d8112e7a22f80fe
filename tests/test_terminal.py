"""The README tour on an 80-column terminal: no line wider than the window, nothing cut, every id and number kept.

The README's golden lines (printed at 160 columns) are the reference: each id and number they show must appear
whole in the same command's 80-column output, whatever layout the tables take there (``report.console``).
"""

from __future__ import annotations

import os
import re

from typer.testing import CliRunner

from rainier.cli import app
from tests.test_readme import README, _console_examples

WIDTH = 80
TOKEN = re.compile(r"[A-Za-z0-9$~][\w.,:$%/+~=*-]*[\w%$*]")  # ids (rainier-trn2-500k), numbers (499,968; 41.3%)
LONGEST = 30  # longer tokens are plans, which fold onto the next line at 80 columns
runner = CliRunner()


def _tokens(line: str) -> set[str]:
    return {t for t in TOKEN.findall(line) if len(t) <= LONGEST}


def test_the_readme_tour_fits_80_columns() -> None:
    os.chdir(README.parent)
    problems = []
    for argv, expected in _console_examples():
        result = runner.invoke(app, argv, env={"COLUMNS": str(WIDTH)})
        shown = result.stdout + result.stderr
        command = " ".join(argv)
        if "…" in shown:
            problems.append(f"{command}: cut text: {[line for line in shown.splitlines() if '…' in line][:3]}")
        wide = [line for line in result.stdout.splitlines() if len(line.rstrip()) > WIDTH]
        if wide:
            problems.append(f"{command}: {len(wide)} lines wider than {WIDTH}: {wide[0]!r}")
        words = set(TOKEN.findall(shown))
        missing = sorted({t for line in expected for t in _tokens(line)} - words)
        if missing:
            problems.append(f"{command}: not shown whole at {WIDTH} columns: {missing[:8]}")
    assert not problems, "\n".join(problems)
