"""The global batch a plan may run: exactly the batch asked for, or any batch within a tolerance of a target.

A plan of data-parallel degree ``dp`` and micro-batch ``mbs`` runs a whole number ``m`` of micro-batches per
pipeline per step, so its global batch is ``m * dp * mbs`` sequences. An exact batch (``--gbs 2520``) admits
only plans whose ``dp * mbs`` divides it; a target (``--gbs ~2520``, ``--batch-tokens T``) admits every plan with
some multiple of ``dp * mbs`` inside ``[target * (1 - tolerance), target * (1 + tolerance)]`` (default +-5%),
and the plan takes the largest such batch: under the step model more micro-batches per step never cost more
time per token (the pipeline bubble, the gradient synchronisation and the optimizer step are paid once per
step and spread over more tokens). DualPipe runs only an even micro-batch count, so it takes the largest even
count in the window. The search also tries smaller batches in the window where activation memory still grows
with the count (few micro-batches, or GPipe), since those may fit where the largest does not.

This one rule serves every command that searches plans (``train search``, and the fleet commands, which should
pass ``BatchTarget(sequences=gbs, tolerance=DEFAULT_TOLERANCE)`` instead of their former round-up-to-2x rule),
and :meth:`BatchTarget.describe` is the one line they print about it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rainier.errors import InputError, field_error
from rainier.limits import MAX_GLOBAL_BATCH, check_int_range

DEFAULT_TOLERANCE = 0.05  # a batch target admits batches within +-5% unless told otherwise
MAX_TOLERANCE = 0.5  # wider than +-50% is no longer a target
MAX_DIGITS = 40  # longer numbers are refused before they are converted
TARGET_PREFIX = "~"  # ``--gbs ~2520``: a target, not an exact batch


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchTarget:
    """A global batch in sequences: exact (``tolerance`` 0) or a target with a relative tolerance."""

    sequences: int
    tolerance: float = 0.0

    def __post_init__(self) -> None:
        check_int_range("gbs", self.sequences, 1, MAX_GLOBAL_BATCH, "a whole number of sequences per step")
        tol = self.tolerance
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 <= tol <= MAX_TOLERANCE:
            raise field_error("gbs-tolerance", tol, f"a fraction from 0 to {MAX_TOLERANCE} (0.05 = +-5%)")

    @property
    def exact(self) -> bool:
        return self.tolerance == 0

    @property
    def low(self) -> int:
        """The smallest batch admitted (sequences)."""
        return max(1, math.ceil(self.sequences * (1 - self.tolerance) - 1e-9))

    @property
    def high(self) -> int:
        """The largest batch admitted (sequences)."""
        return min(MAX_GLOBAL_BATCH, math.floor(self.sequences * (1 + self.tolerance) + 1e-9))

    def microbatches(self, unit: NDArray[np.int64], even: NDArray[np.bool_] | None = None) -> NDArray[np.int64]:
        """Micro-batches per step for plans of ``unit = dp * mbs`` sequences per round; 0 where none fits the window.

        The largest count whose batch lies in ``[low, high]`` (the largest even count where ``even``).
        """
        unit = np.maximum(unit, 1)
        top = self.high // unit
        if even is not None:
            top = np.where(even, top - top % 2, top)
        return np.where(top * unit >= self.low, top, 0).astype(np.int64)

    def nearest(self, units: Iterable[int]) -> tuple[int | None, int | None]:
        """The closest batches below ``low`` and above ``high`` that one of ``units`` (``dp * mbs``) divides."""
        below: int | None = None
        above: int | None = None
        for unit in set(units):
            if unit < 1:
                continue
            under = (self.low - 1) // unit * unit
            if under >= 1 and (below is None or under > below):
                below = under
            over = -(-(self.high + 1) // unit) * unit
            if over <= MAX_GLOBAL_BATCH and (above is None or over < above):
                above = over
        return below, above

    def describe(self) -> str:
        """One line stating the rule, for the tables and the JSON notes."""
        if self.exact:
            return f"exactly {self.sequences:,} sequences: dp*mbs must divide it"
        return (
            f"target {self.sequences:,} +-{self.tolerance:.0%} ({self.low:,} to {self.high:,} sequences): "
            "each plan runs the largest batch there that dp*mbs divides"
        )

    def to_dict(self) -> dict[str, object]:
        return {"sequences": self.sequences, "tolerance": self.tolerance, "low": self.low, "high": self.high}


def parse_batch_target(
    gbs: str | int | None,
    *,
    seq_len: int,
    tolerance: float | None = None,
    batch_tokens: float | None = None,
) -> BatchTarget:
    """``--gbs N`` (exact), ``--gbs ~N`` or ``--batch-tokens T`` (targets, +-``tolerance``, default 5%).

    ``tolerance`` with a plain ``N`` makes ``N`` a target too (asking for a tolerance means accepting one).
    """
    if (gbs is None) == (batch_tokens is None):
        raise InputError("give --gbs N (sequences; ~N for a target) or --batch-tokens T, one of the two")
    if batch_tokens is not None:
        if isinstance(batch_tokens, bool) or not math.isfinite(batch_tokens) or batch_tokens < seq_len:
            raise field_error("batch-tokens", batch_tokens, f"at least one sequence ({seq_len:,} tokens)")
        sequences = round(batch_tokens / seq_len)
        return BatchTarget(sequences=sequences, tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance)
    text = str(gbs).strip().replace(",", "").replace("_", "")
    target = text.startswith(TARGET_PREFIX)
    digits = text.removeprefix(TARGET_PREFIX).strip()
    if len(digits) > MAX_DIGITS:  # int() of thousands of digits is slow, and no batch is that large
        raise field_error("gbs", gbs, f"at most {MAX_GLOBAL_BATCH:,} sequences")
    try:
        sequences = int(digits)  # a sign is read here and refused by BatchTarget's range check
    except ValueError:
        raise field_error("gbs", gbs, "a whole number of sequences (N exact, ~N within --gbs-tolerance)") from None
    if target or tolerance is not None:
        return BatchTarget(sequences=sequences, tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance)
    return BatchTarget(sequences=sequences)
