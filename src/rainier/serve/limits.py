"""The range of every number a serving input can hold, and the checks that hold inputs to it.

A real serving workload has bounds: no fleet has more devices than ``rainier.limits.MAX_DEVICES`` (the bound
training and the hardware catalog share), no model a context of more than ten million tokens (the longest
published window, Llama 4 Scout's), no engine a batch of more than a million sequences. Numbers beyond them are
typing mistakes, and left unchecked they overflow numpy's int64 or a float deep inside the cost model or the
simulator, or ask for more memory than the machine has. Each check raises an :class:`~rainier.errors.InputError`
that names the field, quotes the value and states the range, so the CLI answers with one line and exit code 2.
"""

from __future__ import annotations

import math

import numpy as np

from rainier.errors import InputError, field_error
from rainier.limits import MAX_DEVICES

__all__ = [  # MAX_DEVICES is rainier.limits', re-exported beside the serving ranges
    "DEFAULT_MAX_ITERATIONS",
    "DEFAULT_MAX_REQUESTS",
    "MAX_BATCH",
    "MAX_DEGREE",
    "MAX_DEVICES",
    "MAX_DURATION_S",
    "MAX_ITERATIONS",
    "MAX_LATENCY_MS",
    "MAX_RATE_PER_S",
    "MAX_REQUESTS",
    "MAX_SEED",
    "MAX_TOKENS",
    "MIN_RATE_PER_S",
    "budget_error",
    "check_flag",
    "check_float",
    "check_int",
    "check_text",
]

MAX_DEGREE = 65_536
"""A tensor-, pipeline- or expert-parallel degree (larger than any scale-up domain or pipeline built)."""
MAX_BATCH = 1_048_576
"""Sequences in one replica's batch."""
MAX_TOKENS = 10_000_000
"""Tokens of one prompt or one output (Llama 4 Scout's 10M-token context window, Meta 2025)."""
MAX_RATE_PER_S = 10_000_000.0
"""Requests per second arriving at one deployment (more than a large consumer service's peak)."""
MIN_RATE_PER_S = 1e-6
"""Slowest Poisson arrival rate: one request in about 12 days (slower gaps overflow the arrival clock)."""
MAX_DURATION_S = 365 * 86_400.0
"""Seconds of arrivals simulated: one year."""
MAX_LATENCY_MS = 86_400_000.0
"""A latency target: one day, in milliseconds."""
MAX_SEED = 2**63 - 1
"""Largest random seed (a 64-bit signed integer, as numpy's generators and JSON consumers take it)."""

# Budgets of one serving simulation (``serve.simulate``), measured on one core with the real cost model.
MAX_REQUESTS = 20_000_000
"""Ceiling of ``max_requests``: per-request state is kept in memory, ~330 bytes a request (6.6 GB here)."""
DEFAULT_MAX_REQUESTS = 1_000_000
"""Requests a run may simulate unless raised (``--max-requests``): ~330 MB and ~15 s."""
MAX_ITERATIONS = 1_000_000_000
"""Ceiling of ``max_iterations``: about an hour of wall time."""
DEFAULT_MAX_ITERATIONS = 10_000_000
"""Engine iterations a run may simulate unless raised (``--max-iterations``): ~30 s at ~3 us each."""


def check_int(field: str, value: object, low: int, high: int, unit: str) -> int:
    """``value`` as an ``int`` if it is a whole number in ``[low, high]``; else an ``InputError`` stating the range."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= value <= high:
        of = f" of {unit}" if unit else ""
        raise field_error(field, value, f"a whole number{of} from {low:,} to {high:,}")
    return int(value)


def check_float(field: str, value: object, high: float, unit: str, *, zero: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite number in ``(0, high]`` (``[0, high]`` with ``zero``)."""
    number = math.nan
    if not isinstance(value, bool) and isinstance(value, int | float | np.number):
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            number = math.inf
    low_ok = number >= 0 if zero else number > 0
    if not (low_ok and number <= high):  # NaN fails both comparisons
        low = "from 0" if zero else "above 0"
        top = f"{high:,.0f}" if high.is_integer() else f"{high:,g}"
        of = f" ({unit})" if unit else ""
        raise field_error(field, value, f"a number {low} and at most {top}{of}")
    return number


def check_share(
    field: str, value: object, allowed: str = "a share of prompt tokens from 0 up to (not including) 1"
) -> float:
    """``value`` as a ``float`` if it is a share in ``[0, 1)`` (a prefix-cache hit rate: one prompt token is
    always computed; a spread of lengths around their means); ``allowed`` says what the share is of."""
    ok = not isinstance(value, bool) and isinstance(value, int | float | np.number) and 0.0 <= float(value) < 1.0
    if not ok:
        raise field_error(field, value, allowed)
    return float(value)  # type: ignore[arg-type]


SPREAD_ALLOWED = "a share of the mean lengths from 0 up to (not including) 1"


def check_text(field: str, value: object, allowed: str) -> str:
    """``value`` if it is a string; else an ``InputError`` saying what the string names."""
    if not isinstance(value, str):
        raise field_error(field, value, f"a string: {allowed}")
    return value


def check_flag(field: str, value: object) -> bool:
    """``value`` if it is a boolean (YAML ``true``/``false``)."""
    if not isinstance(value, bool):
        raise field_error(field, value, "true or false")
    return value


def budget_error(what: str, needed: int, limit: int, flag: str, ceiling: int, hint: str) -> InputError:
    """The one line for work over a budget: what it needs, the budget, the option that raises it (a CLI flag such as
    ``--max-requests``; the same name with underscores in a scenario's ``simulate:`` block) and its ceiling."""
    key = flag.lstrip("-").replace("-", "_")
    return InputError(
        f"{what}: {needed:,} is over the budget of {limit:,}; raise {flag} ({key}, at most {ceiling:,}) or {hint}"
    )
