"""Ranges a real cluster or workload can have: every count, batch and length a user gives is checked against them.

They are generous (16x the largest systems announced) and exist so that a typo (``--count 1e20``) is one clear
error rather than an overflow deep in numpy, a database column or a memory allocation.
"""

from __future__ import annotations

from rainier.errors import InputError, field_error

# Devices in one cluster: 2^24 = 16,777,216, 16x a 1M-chip Project Rainier (AWS, 2025: ~500k Trn2 heading to 1M).
MAX_DEVICES = 2**24
# Sequences in one global batch: 2^24. Published frontier runs use up to ~16k sequences (Llama 3 405B: 2,048 x
# 8k-token; Megatron's largest weak-scaling point 1,792... 16,384); 2^24 also fits the int32 columns of a results DB.
MAX_GLOBAL_BATCH = 2**24
# Price of one device for one hour, USD: list prices are a few dollars (hardware.md); 10^4 catches unit typos.
MAX_PRICE_PER_DEVICE_HOUR = 1e4
# Tokens of a whole run: 10^16, ~660x the 15T tokens of Llama 3 (Meta, 2024).
MAX_RUN_TOKENS = 1e16


def check_int_range(field: str, value: object, low: int, high: int, what: str = "an integer") -> int:
    """``value`` when it is an integer in ``[low, high]`` (bools refused); else the standard one-line error."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise field_error(field, value, f"{what} from {low:,} to {high:,}")
    return value


def check_float_range(field: str, value: object, low: float, high: float, what: str = "a number") -> float:
    """``value`` as a float when it is a finite number in ``(low, high]`` (bools refused); else the one-line error."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low < float(value) <= high:
        raise field_error(field, value, f"{what} above {low:g} and at most {high:g}")
    return float(value)


__all__ = [
    "MAX_DEVICES",
    "MAX_GLOBAL_BATCH",
    "MAX_PRICE_PER_DEVICE_HOUR",
    "MAX_RUN_TOKENS",
    "InputError",
    "check_float_range",
    "check_int_range",
]
