"""Suite-wide settings.

The CLI lays tables out at the terminal's width, read from ``COLUMNS`` or the terminal, else 160 when piped. Under
pytest-xdist a worker's output is neither, and what it falls back to is the worker's business, so the suite states the
piped width once; tests of other widths pass their own ``COLUMNS``.
"""

from __future__ import annotations

import os

import pytest

os.environ["COLUMNS"] = "160"

# Files that take minutes on one worker (`pytest --durations=40`): collected first, so that xdist's file-by-file
# scheduling (--dist loadfile) starts them at once instead of leaving one to run alone at the end (longest first).
SLOW_FILES = (
    "tests/serve/test_validation.py",
    "tests/calibrate/test_accuracy.py",
    "tests/test_readme.py",
    "tests/test_fuzz.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return SLOW_FILES.index(path) if path in SLOW_FILES else len(SLOW_FILES)

    items.sort(key=rank)  # stable: every other file keeps its order
