"""``rainier validate CASES --simulate``: the simulation's error on every public case next to the estimate's.

Each training case is predicted twice from the same inputs: by the closed-form step model (``perf.step``) and by
the step simulator (``sim.training``). Rows gain ``simulated``, ``sim_error_pct`` and whether any link was asked
for more than its capacity during the simulated step (``sim_contended``); the summary gains the simulation's
error statistics (``simulation``) and the agreement of the two where no transfer slowed another
(``agreement``: the largest |simulated / estimated - 1| over those cases, and how many there were).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rainier.calibrate.cases import TrainingCase, load_cases
from rainier.calibrate.commands import efficiency_table
from rainier.calibrate.score import error_pct, metric_from_step_time, run_validation, select_group
from rainier.calibrate.summary import Scored, summarize
from rainier.sim.training import SimulatedStep, simulate

AGREEMENT_BOUND = 0.02  # issue 16: without shared links, simulation and estimate within 2%


def validate_with_simulation(
    path: Path | str,
    *,
    group: str | None = None,
    efficiency_path: Path | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The validation document of ``path`` with the simulation's prediction beside each estimate."""
    cases = load_cases(path)
    table, where = efficiency_table(efficiency_path)
    report = run_validation(cases, table, group)
    by_id = {c.id: c for c in select_group(cases, group) if isinstance(c, TrainingCase)}
    rows = []
    scored = []
    agree_max, agree_count, contended_count = 0.0, 0, 0
    selected = [r for r in report.rows]
    for done, row in enumerate(selected):
        out = row.to_dict()
        case = by_id.get(row.id)
        if row.skipped is None and case is not None and row.measured is not None:
            sim = simulate(case.shape, case.plan, case.cluster, efficiency=table, seq_len=case.seq_len)
            if isinstance(sim, SimulatedStep):
                predicted = metric_from_step_time(case, sim.step_time_s)
                out["simulated"] = predicted
                out["sim_error_pct"] = error_pct(predicted, row.measured)
                out["sim_contended"] = sim.contended_s > 0.0
                out["sim_vs_estimate_pct"] = 100.0 * sim.difference
                scored.append(Scored(group=row.group, trust=row.trust, error_pct=out["sim_error_pct"]))
                if sim.contended_s > 0.0:
                    contended_count += 1
                else:
                    agree_count += 1
                    agree_max = max(agree_max, abs(sim.difference))
        rows.append(out)
        if progress is not None:
            progress(done + 1, len(selected))
    summary = {**report.summary, "efficiency": where, "cases_file": str(path), "kind": cases.kind.value}
    summary["simulation"] = summarize(scored)
    summary["agreement"] = {
        "cases_without_contention": agree_count,
        "cases_with_contention": contended_count,
        "max_abs_difference_pct": 100.0 * agree_max,
        "bound_pct": 100.0 * AGREEMENT_BOUND,
        "within_bound": agree_max <= AGREEMENT_BOUND,
    }
    return {"cases": rows, "summary": summary}
