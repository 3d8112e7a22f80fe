"""Discrete-event simulation: a small, deterministic kernel shared by the fleet and serving simulators.

- :mod:`~rainier.sim.kernel`: :class:`Environment` (clock, event heap, sequence counter, random generator) and
  :class:`Event`. Models schedule callbacks on it; ties break by ``(time, priority, seq)`` and all randomness
  comes from the ``numpy.random.Generator`` it is given, so the same seed gives the same event log.
"""

from rainier.sim.kernel import NORMAL, URGENT, Environment, Event, EventCallback

__all__ = ["NORMAL", "URGENT", "Environment", "Event", "EventCallback"]
