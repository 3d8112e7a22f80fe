"""Number formatting shared by every table."""

from __future__ import annotations

from rainier.units import GIB


def count(value: float) -> str:
    """A large count with a scale word: 70.55B, 12.9M."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:,.2f}{suffix}"
    return f"{value:,.0f}"


def si(value: float, unit: str) -> str:
    """Value with an SI prefix: 1.30 PFLOP/s, 2.9 TB/s."""
    for scale, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:,.3g} {prefix}{unit}"
    return f"{value:,.3g} {unit}"


def gib(num_bytes: float) -> str:
    """Bytes as GiB (or TiB when large)."""
    if abs(num_bytes) >= 1024 * GIB:
        return f"{num_bytes / (1024 * GIB):,.2f} TiB"
    if abs(num_bytes) >= GIB:
        return f"{num_bytes / GIB:,.1f} GiB"
    return f"{num_bytes / 2**20:,.2f} MiB"


def kib(num_bytes: float) -> str:
    return f"{num_bytes / 1024:,.1f} KiB"


def binary(num_bytes: float) -> str:
    """Bytes in the largest binary unit they reach, up to MiB: 512.0 MiB, 256.0 KiB, 96 B."""
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if num_bytes >= size:
            return f"{num_bytes / size:,.1f} {unit}"
    return f"{num_bytes:,.0f} B"


def duration(seconds: float) -> str:
    """A time in the unit that reads best: 2.86 s, 12.4 min, 3.10 h."""
    if seconds >= 3600:
        return f"{seconds / 3600:,.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds:,.2f} s"


def maybe(value: float | None, render: str) -> str:
    return "—" if value is None else render
