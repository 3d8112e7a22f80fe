"""rainier command line (placeholder until the commands land)."""

from __future__ import annotations


def main() -> None:
    print("rainier")
