"""Efficiencies the serving unit tests share."""

from __future__ import annotations

from rainier.serve.efficiency import ServeEfficiency

# Every rate at its peak and no fixed costs: what a test counts by hand is what the cost model charges.
IDEAL = ServeEfficiency(
    compute=1.0,
    memory=1.0,
    kv_memory=1.0,
    comm=1.0,
    collective_latency_s=0.0,
    iteration_overhead_s=0.0,
    sequence_overhead_s=0.0,
)
