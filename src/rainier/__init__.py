"""rainier: a software twin of hyperscale AI computers.

Given a model, a cluster and a goal, rainier estimates training step time, whole-run time and cost,
serving fleet size and the effect of new chip generations, with every hardware number cited.

The Python API mirrors the CLI; every call takes names and strings as the CLI does and returns a typed result
with ``.to_dict()`` (the CLI's ``--json``) and, for tables of numbers, ``.to_frame()`` (pandas)::

    import rainier

    step = rainier.estimate(model="llama-3-70b", accelerator="h100-sxm", count=64, plan="tp=8,pp=2,gbs=512")
    best = rainier.search_plans(model="llama-3-70b", accelerator="h100-sxm", count=1024, gbs=1024)
    run = rainier.fleet_plan(model="frontier-2t-moe", tokens=15e12, cluster="rainier-trn2-500k")
    served = rainier.serve_estimate(model="llama-3-70b", accelerator="h100-sxm", count=8, tp=8, batch=64)

Functions (each documented where it lives): ``estimate``, ``search_plans``, ``scale`` (``rainier.api``);
``fleet_plan``, ``compare``, ``sites``, ``grow``, ``goodput``, ``scenario`` (``rainier.api.fleet``);
``serve_estimate``, ``serve_simulate``, ``serve_size`` (``rainier.api.serve``, ``rainier.api.serve_sim``);
``scenario_report`` (a scenario file -> an HTML report, ``rainier.api.report``). They are imported on first use,
so ``import rainier`` stays fast. (The names avoid those of rainier's subpackages, ``rainier.search`` and
``rainier.report``.)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "estimate": ("rainier.api", "run_estimate"),
    "simulate": ("rainier.api", "run_simulate"),
    "search_plans": ("rainier.api", "run_search"),
    "scale": ("rainier.api", "run_scale"),
    "fleet_plan": ("rainier.api.fleet", "run_fleet_plan"),
    "compare": ("rainier.api.fleet", "run_fleet_compare"),
    "sites": ("rainier.api.fleet", "run_fleet_sites"),
    "grow": ("rainier.api.fleet", "run_fleet_grow"),
    "goodput": ("rainier.api.fleet", "run_fleet_goodput"),
    "scenario": ("rainier.api.fleet", "run_fleet_scenario"),
    "serve_estimate": ("rainier.api.serve", "run_serve_estimate"),
    "serve_simulate": ("rainier.api.serve_sim", "run_serve_simulate"),
    "serve_size": ("rainier.api.serve", "run_serve_size"),
    "scenario_report": ("rainier.api.report", "scenario_report"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import an API function on first use (PEP 562)."""
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rainier' has no attribute {name!r}")
