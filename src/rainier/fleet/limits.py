"""The ranges a real training run can have: every number a user gives the fleet layer is checked against them.

A number outside its range is bad input, never a result: ``--tokens 1e-300`` would price a run of no tokens and
``--tokens 1e300`` overflows the step arithmetic. Each check raises :class:`~rainier.errors.InputError` naming
the field (the CLI flag, or the scenario key), the value (clipped) and the range, so the CLI exits with code 2
and one line. The bounds are generous (one to three orders of magnitude beyond the largest public runs) so that
no real study meets them; they only keep the arithmetic finite and the answers meaningful.
"""

from __future__ import annotations

import math

import rainier.limits as shared
from rainier.errors import field_error

# Training tokens per run: at least one token; at most the project's run limit (1e16, ~650x Llama 3's 15.6T).
MIN_TOKENS = 1.0
MAX_TOKENS = shared.MAX_RUN_TOKENS
# Devices in one run (or one deadline search): the project's cluster limit (2^24, 16x a 1M-chip Rainier).
MAX_DEVICES = shared.MAX_DEVICES
# USD per device-hour: public prices are $1-15 (shared/reference/hardware.md); the project's limit catches typos.
MAX_USD_PER_DEVICE_HOUR = shared.MAX_PRICE_PER_DEVICE_HOUR
# Wall-clock windows and deadlines: ten years.
MAX_DAYS = 3_650.0
# Global batch: sequences per step (exact; the project's limit, 2^24), or tokens per step (target); Llama 3 405B
# trained at 16M tokens per step.
MAX_GBS = shared.MAX_GLOBAL_BATCH
MAX_BATCH_TOKENS = 1e10
# Target step-time ratio for the WAN bandwidth (fleet sites --slowdown): above 1, at most 10x one site.
MAX_SLOWDOWN = 10.0
# Checkpoint size: ~10 PiB (a 2T-parameter model's weights and Adam state are ~26,000 GiB).
MAX_CHECKPOINT_GIB = 1e7
# Checkpoint interval (compute between checkpoints): a year of minutes.
MAX_CHECKPOINT_INTERVAL_MIN = 525_600.0
# Restart after a failure: a week of minutes; server repair: a year of hours.
MAX_RESTART_MIN = 10_080.0
MAX_REPAIR_HOURS = 8_760.0
# Hot-spare servers: no more than the largest run's devices.
MAX_SPARE_SERVERS = MAX_DEVICES
# Random seeds: what numpy's generator takes without surprise (a signed 64-bit integer).
MAX_SEED = 2**63 - 1
# Facility power of a growth schedule: 1 TW (a third of the world's average electricity generation).
MAX_FACILITY_POWER_W = 1e12
# Relative power shares of a chip mix (trn2:0.3,trn3:0.7): normalised, so only their ratios matter.
MAX_MIX_SHARE = 1e6
# Below this effective training time ratio a run spends its time restarting after failures: it is refused,
# not priced (a synchronous job on millions of devices is interrupted every few seconds; fleet.goodput).
MIN_EFFECTIVE_TRAINING_TIME_RATIO = 0.01


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def number_in(
    field: str,
    value: object,
    low: float,
    high: float,
    *,
    what: str,
    low_open: bool = False,
) -> float:
    """``value`` as a float when it is a finite number in ``[low, high]`` (``(low, high]`` with ``low_open``).

    ``what`` says what the number is ("training tokens"); the error reads ``field=value is invalid: what from
    low to high``.
    """
    number = float(value) if _is_number(value) else math.nan  # type: ignore[arg-type]
    below = number <= low if low_open else number < low
    if not math.isfinite(number) or below or number > high:
        lower = f"above {low:g}" if low_open else f"from {low:g}"
        raise field_error(field, value, f"{what} {lower} to {high:g}")
    return number


def integer_in(field: str, value: object, low: int, high: int, *, what: str) -> int:
    """``value`` when it is an integer in ``[low, high]``; otherwise an error naming the field and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise field_error(field, value, f"{what}: an integer from {low:,} to {high:,}")
    return value


def check_tokens(tokens: object, field: str = "tokens") -> float:
    """Training tokens of a run, in range (``MIN_TOKENS`` .. ``MAX_TOKENS``)."""
    return number_in(field, tokens, MIN_TOKENS, MAX_TOKENS, what="training tokens")


def check_devices(count: object, field: str = "count") -> int:
    """A device count, 1 .. ``MAX_DEVICES``."""
    return integer_in(field, count, 1, MAX_DEVICES, what="devices")


def check_price(price: object, field: str = "price") -> float:
    """USD per device-hour: above 0, at most ``MAX_USD_PER_DEVICE_HOUR``."""
    return number_in(field, price, 0.0, MAX_USD_PER_DEVICE_HOUR, what="USD per device-hour", low_open=True)


def check_days(days: object, field: str) -> float:
    """A number of days: above 0, at most ``MAX_DAYS``."""
    return number_in(field, days, 0.0, MAX_DAYS, what="days", low_open=True)


def check_gbs(gbs: object, field: str = "gbs") -> int:
    """A global batch in sequences, 1 .. ``MAX_GBS``."""
    return integer_in(field, gbs, 1, MAX_GBS, what="sequences per step")


def check_batch_tokens(tokens: object, seq_len: int, field: str = "batch-tokens") -> float:
    """A global batch target in tokens: at least one sequence, at most ``MAX_BATCH_TOKENS``."""
    return number_in(field, tokens, float(seq_len), MAX_BATCH_TOKENS, what="tokens per step (at least one sequence)")


def check_seed(seed: object, field: str = "seed") -> int:
    """A random seed, 0 .. ``MAX_SEED``."""
    return integer_in(field, seed, 0, MAX_SEED, what="random seed")
