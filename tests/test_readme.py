"""The README's examples run, and the output lines it shows are what the commands print (golden examples)."""

from __future__ import annotations

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
    import os

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
