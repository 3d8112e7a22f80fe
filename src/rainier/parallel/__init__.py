"""Parallel execution plans: degrees, batch, sharding, recompute, precision, schedule; their validity."""

from rainier.parallel.plan import (
    DegreeUnit,
    Infeasible,
    InfeasibleKind,
    Plan,
    Schedule,
    check_plan,
    parse_plan,
)

__all__ = ["DegreeUnit", "Infeasible", "InfeasibleKind", "Plan", "Schedule", "check_plan", "parse_plan"]
