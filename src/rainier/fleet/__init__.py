"""The fleet layer: whole training runs on whole clusters — length, power, cost, growth, sites and goodput.

- :mod:`~rainier.fleet.failures`: failure rates per component from the Llama 3 405B record (``failures.yaml``).
- :mod:`~rainier.fleet.checkpoint`: checkpoint size, write/restore times, Young and Daly intervals.
- :mod:`~rainier.fleet.goodput`: seeded discrete-event simulation of a job under failures, and its analytic check.
"""
