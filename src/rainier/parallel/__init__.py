"""Parallel execution plans: degrees, batch, sharding, recompute, precision, schedule; their validity."""

from rainier.parallel.plan import Infeasible, InfeasibleKind, Plan, Schedule, check_plan, parse_plan

__all__ = ["Infeasible", "InfeasibleKind", "Plan", "Schedule", "check_plan", "parse_plan"]
