"""The web app's answers: a training scenario run through ``rainier.api`` (the path the CLI takes), as JSON.

Running a form's scenario (:func:`rainier.api.training_scenario.run_training`, ``run_scenario`` here) is in the
api, so that ``rainier report`` runs a downloaded ``kind: training`` file the same way; this module turns its
outcome into the page's JSON (the CLI's JSON, the plan as text, the report's figures).
"""

from __future__ import annotations

import json
from typing import Any

from rainier.api.explain import dominant_loss
from rainier.api.training_scenario import SEARCH_TOP, Outcome
from rainier.api.training_scenario import run_training as run_scenario
from rainier.report import html as figures
from rainier.report.jsondoc import strict_document

__all__ = ["SEARCH_TOP", "Outcome", "finite_json", "response_document", "run_scenario"]


def response_document(outcome: Outcome) -> dict[str, Any]:
    """The JSON answer of ``POST /api/estimate``: the CLI's JSON, the plan as text, and the report's figures."""
    doc = outcome.estimate.to_dict()
    breakdown = figures.step_breakdown_figure(doc)
    memory = figures.memory_figure(doc)
    for figure in (breakdown, memory):  # the layout HtmlReport.add_figure gives the same figures
        figure.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 60, "b": 60})
    document: dict[str, Any] = finite_json(
        {
            "mode": "search" if outcome.search is not None else "estimate",
            "scenario": outcome.scenario.to_fields(),
            "plan_text": outcome.estimate.plan.describe(),
            "why": dominant_loss(outcome.estimate).text,  # the step's largest loss in words (the reports' "why")
            "estimate": doc,
            "search": outcome.search.to_dict() if outcome.search is not None else None,
            "figures": {"breakdown": json.loads(breakdown.to_json()), "memory": json.loads(memory.to_json())},
        }
    )
    return document


def finite_json(value: Any) -> Any:
    """``value`` as strict JSON: infinities and NaNs as ``null``, with ``null_reasons`` (as the CLI writes it)."""
    return strict_document(value)
