"""The batch rule (issue 17): exact batches, targets within a tolerance, and the nearest batches that would work."""

from __future__ import annotations

import numpy as np
import pytest

from rainier.errors import InputError
from rainier.parallel.batch_target import DEFAULT_TOLERANCE, BatchTarget, parse_batch_target


def test_parse_exact_target_and_tokens() -> None:
    assert parse_batch_target("2520", seq_len=2048) == BatchTarget(sequences=2520)
    assert parse_batch_target(2520, seq_len=2048).exact
    assert parse_batch_target("~2,520", seq_len=2048) == BatchTarget(sequences=2520, tolerance=DEFAULT_TOLERANCE)
    assert parse_batch_target("2520", seq_len=2048, tolerance=0.1) == BatchTarget(sequences=2520, tolerance=0.1)
    assert parse_batch_target(None, seq_len=2048, batch_tokens=4 * 2**20) == BatchTarget(
        sequences=2048, tolerance=DEFAULT_TOLERANCE
    )


@pytest.mark.parametrize(
    ("gbs", "kwargs", "message"),
    [
        ("25x", {}, "gbs='25x' is invalid"),
        ("~", {}, "gbs='~' is invalid"),
        ("0", {}, "gbs=0 is invalid"),
        ("~100", {"tolerance": 0.9}, "gbs-tolerance=0.9 is invalid"),
        (None, {}, "give --gbs N"),
        ("8", {"batch_tokens": 4096.0}, "give --gbs N"),
        (None, {"batch_tokens": 10.0}, "batch-tokens=10.0 is invalid"),
    ],
)
def test_parse_refuses_bad_input(gbs: str | None, kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_batch_target(gbs, seq_len=2048, **kwargs)


def test_window_and_largest_batch_per_unit() -> None:
    target = BatchTarget(sequences=2520, tolerance=0.05)
    assert (target.low, target.high) == (2394, 2646)
    units = np.array([641, 1282, 2564, 5128, 100], dtype=np.int64)
    counts = target.microbatches(units)
    assert (counts * units).tolist() == [2564, 2564, 2564, 0, 2600]  # 5128 is past 2,646
    even = target.microbatches(np.array([100, 100]), even=np.array([False, True]))
    assert even.tolist() == [26, 26]
    odd_only = BatchTarget(sequences=30, tolerance=0.05)  # 29..31: 31 alone for unit 31, no even count
    assert odd_only.microbatches(np.array([31, 31]), even=np.array([False, True])).tolist() == [1, 0]


def test_nearest_batches_for_a_refusal() -> None:
    assert BatchTarget(sequences=2520).nearest([641, 1282, 2564]) == (1923, 2564)
    assert BatchTarget(sequences=100, tolerance=0.05).nearest([641]) == (None, 641)
    assert "dp*mbs must divide" in BatchTarget(sequences=8).describe()
    assert "2,394 to 2,646" in BatchTarget(sequences=2520, tolerance=0.05).describe()
