"""The README's examples run, and the output lines it shows are what the commands print (golden examples); the same
tour on an 80-column terminal: no line wider than the window, nothing cut, every id and number kept.

The README's golden lines (printed at 160 columns) are the reference: each id and number they show must appear
whole in the same command's 80-column output, whatever layout the tables take there (``report.console``). Both run
in one file, so one worker: the tour's second pass finds its plan searches kept (``search.engine``).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from rainier.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
runner = CliRunner()


def _console_examples() -> list[tuple[list[str], list[str]]]:
    """(argv, expected output lines) for every ``$ rainier ...`` line of the README's console blocks."""
    examples: list[tuple[list[str], list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ rainier "):
                examples.append((shlex.split(line[len("$ rainier ") :]), []))
            elif line.strip() and examples:
                examples[-1][1].append(line.strip())
    return examples


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text().split("##", 1)[0]
    assert "make demo" in head and "make test" in head


def test_readme_console_examples_match() -> None:
    examples = _console_examples()
    assert len(examples) >= 8

    os.chdir(README.parent)
    for argv, expected in examples:
        result = runner.invoke(app, argv, env={"COLUMNS": "160"})
        output = " ".join((result.stdout + result.stderr).split())
        is_error = any(line.startswith("error:") for line in expected)
        assert result.exit_code == (2 if is_error else 0), (argv, result.output)
        for line in expected:
            assert " ".join(line.split()) in output, (argv, line)


def test_readme_python_example_prints_what_its_comments_say(capsys: object) -> None:
    import contextlib
    import io

    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    expected = [line.split("#", 1)[1].strip() for line in code.splitlines() if line.startswith("print(")]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(code, "README.md", "exec"), {})
    assert buffer.getvalue().splitlines() == expected


WIDTH = 80
TOKEN = re.compile(r"[A-Za-z0-9$~][\w.,:$%/+~=*-]*[\w%$*]")  # ids (rainier-trn2-500k), numbers (499,968; 41.3%)
LONGEST = 30  # longer tokens are plans, which fold onto the next line at 80 columns


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
