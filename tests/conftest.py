"""Suite-wide settings.

The CLI lays tables out at the terminal's width, read from ``COLUMNS`` or the terminal, else 160 when piped. Under
pytest-xdist a worker's output is neither, and what it falls back to is the worker's business, so the suite states the
piped width once; tests of other widths pass their own ``COLUMNS``.
"""

from __future__ import annotations

import os

os.environ["COLUMNS"] = "160"
