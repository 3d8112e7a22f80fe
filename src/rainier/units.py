"""SI units and conversions.

Inside rainier every quantity is SI (seconds, bytes, FLOP, FLOP/s, bytes/s, watts, joules). Catalog files
and published sources use vendor units (TFLOP/s, GiB, TB/s, Gbps); the conversions live here and nowhere
else. Decimal prefixes are powers of ten, binary prefixes (KiB, MiB, GiB) powers of two, as the sources
write them (see shared/reference/hardware.md, "Conventions").
"""

from __future__ import annotations

# Decimal multipliers
KILO = 1e3
MEGA = 1e6
GIGA = 1e9
TERA = 1e12
PETA = 1e15
EXA = 1e18

# Binary multipliers (bytes)
KIB = 2**10
MIB = 2**20
GIB = 2**30
TIB = 2**40

BITS_PER_BYTE = 8

SECONDS_PER_MINUTE = 60.0
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86400.0
HOURS_PER_YEAR = 8766.0  # 365.25 days
MICROSECOND = 1e-6
JOULES_PER_MWH = 3.6e9


def tflop_per_s(value: float) -> float:
    """TFLOP/s (10^12 FLOP per second) to FLOP/s."""
    return value * TERA


def gib(value: float) -> float:
    """GiB to bytes."""
    return value * GIB


def gb(value: float) -> float:
    """GB (10^9 bytes) to bytes."""
    return value * GIGA


def mib(value: float) -> float:
    """MiB to bytes."""
    return value * MIB


def tb_per_s(value: float) -> float:
    """TB/s (10^12 bytes per second) to bytes/s."""
    return value * TERA


def gb_per_s(value: float) -> float:
    """GB/s (10^9 bytes per second) to bytes/s."""
    return value * GIGA


def gib_per_s(value: float) -> float:
    """GiB/s to bytes/s."""
    return value * GIB


def gbit_per_s(value: float) -> float:
    """Gbit/s (network line rate) to bytes/s."""
    return value * GIGA / BITS_PER_BYTE


def tbit_per_s(value: float) -> float:
    """Terabits per second -> bytes per second."""
    return value * TERA / BITS_PER_BYTE


def ms(value: float) -> float:
    """Milliseconds -> seconds."""
    return value * 1e-3


def us(value: float) -> float:
    """Microseconds to seconds."""
    return value * MICROSECOND


def to_gib(num_bytes: float) -> float:
    """Bytes to GiB, for display."""
    return num_bytes / GIB


def to_tflop_per_s(flop_per_s: float) -> float:
    """FLOP/s to TFLOP/s, for display."""
    return flop_per_s / TERA


def si_format(value: float, unit: str, digits: int = 3) -> str:
    """Human-readable SI string, e.g. ``si_format(1.3e15, 'FLOP/s') -> '1.30 PFLOP/s'``."""
    prefixes = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
    magnitude = abs(value)
    for scale, prefix in prefixes:
        if magnitude >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"
