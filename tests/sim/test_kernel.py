"""The discrete-event kernel: exact event logs, tie ordering, cancellation, run limits, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from rainier.sim import NORMAL, URGENT, Environment, Event, EventCallback


def _env(seed: int = 0) -> Environment:
    return Environment(np.random.default_rng(seed))


def _logger(env: Environment, log: list[tuple[float, str]]) -> EventCallback:
    def record(event: Event) -> None:
        log.append((env.now, event.payload))

    return record


def test_events_fire_in_time_then_priority_then_scheduling_order() -> None:
    env = _env()
    log: list[tuple[float, str]] = []
    record = _logger(env, log)
    env.schedule(2.0, record, payload="b-normal-first")
    env.schedule(1.0, record, payload="a")
    env.schedule(2.0, record, payload="b-normal-second")
    env.schedule(2.0, record, priority=URGENT, payload="b-urgent")
    env.schedule_at(0.5, record, payload="start")
    assert env.run() == 5
    assert log == [(0.5, "start"), (1.0, "a"), (2.0, "b-urgent"), (2.0, "b-normal-first"), (2.0, "b-normal-second")]
    assert env.now == 2.0
    assert env.processed == 5


def test_callbacks_can_schedule_and_same_time_events_follow_in_sequence() -> None:
    env = _env()
    log: list[tuple[float, str]] = []

    def tick(event: Event) -> None:
        log.append((env.now, event.payload))
        if event.payload == "first":
            env.schedule(0.0, tick, payload="zero-delay")
            env.schedule(1.5, tick, payload="later")

    env.schedule(1.0, tick, payload="first")
    env.schedule(1.0, tick, payload="tie-scheduled-before")
    env.run()
    assert log == [(1.0, "first"), (1.0, "tie-scheduled-before"), (1.0, "zero-delay"), (2.5, "later")]


def test_run_until_stops_strictly_before_the_limit_and_moves_the_clock() -> None:
    env = _env()
    log: list[tuple[float, str]] = []
    record = _logger(env, log)
    for t in (1.0, 3.0, 5.0):
        env.schedule(t, record, payload=f"t{t:g}")
    assert env.run(until=3.0) == 1
    assert env.now == 3.0
    assert log == [(1.0, "t1")]
    assert env.peek() == 3.0
    assert env.pending == 2
    assert env.run(until=10.0) == 2
    assert env.now == 10.0
    assert [p for _, p in log] == ["t1", "t3", "t5"]
    assert env.peek() == float("inf")


def test_cancelled_events_never_fire() -> None:
    env = _env()
    log: list[tuple[float, str]] = []
    record = _logger(env, log)
    keep = env.schedule(1.0, record, payload="keep")
    drop = env.schedule(0.5, record, payload="drop")
    drop.cancel()
    assert env.pending == 1
    assert env.peek() == 1.0
    env.run()
    assert log == [(1.0, "keep")]
    assert not keep.cancelled and drop.cancelled
    assert env.processed == 1


def test_step_and_stop() -> None:
    env = _env()
    log: list[tuple[float, str]] = []

    def halt(event: Event) -> None:
        log.append((env.now, event.payload))
        env.stop()

    record = _logger(env, log)
    env.schedule(1.0, halt, payload="halt")
    env.schedule(2.0, record, payload="after")
    env.run(until=100.0)
    assert log == [(1.0, "halt")]
    assert env.now == 1.0  # stop leaves the clock at the last event
    fired = env.step()
    assert fired is not None and fired.payload == "after" and env.now == 2.0
    assert env.step() is None


def test_event_without_callback_only_advances_the_clock() -> None:
    env = _env()
    event = env.schedule(4.0, payload="marker")
    assert env.step() is event
    assert env.now == 4.0
    assert "marker" in repr(event)


def _random_walk_log(seed: int) -> list[tuple[float, int]]:
    """A tiny model: each event draws its successor's delay and a label from env.rng."""
    env = _env(seed)
    log: list[tuple[float, int]] = []

    def hop(event: Event) -> None:
        log.append((env.now, event.payload))
        if len(log) < 50:
            env.schedule(float(env.rng.exponential(1.0)), hop, payload=int(env.rng.integers(0, 10)))

    env.schedule(0.0, hop, payload=-1)
    env.run()
    return log


def test_same_seed_same_log_different_seed_different_log() -> None:
    assert _random_walk_log(7) == _random_walk_log(7)
    assert _random_walk_log(7) != _random_walk_log(8)


def test_priorities_are_ordered() -> None:
    assert URGENT < NORMAL


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda env: env.schedule(-1.0), "delay=-1.0 is invalid"),
        (lambda env: env.schedule(float("nan")), "delay=nan is invalid"),
        (lambda env: env.schedule(1.0, priority=True), "priority=True is invalid"),
        (lambda env: env.schedule_at(-0.5), "time=-0.5 is invalid"),
        (lambda env: env.run(until=-1.0), "until=-1.0 is invalid"),
    ],
)
def test_bad_arguments_raise_value_error(call: object, match: str) -> None:
    env = _env()
    with pytest.raises(ValueError, match=match):
        call(env)  # type: ignore[operator]


def test_environment_needs_a_numpy_generator() -> None:
    with pytest.raises(ValueError, match="rng=42 is invalid"):
        Environment(42)
    with pytest.raises(ValueError, match="start_s=inf is invalid"):
        Environment(np.random.default_rng(0), start_s=float("inf"))
