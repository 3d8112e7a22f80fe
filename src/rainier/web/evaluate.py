"""Run a form's scenario through ``rainier.api``, the path the CLI takes, and name the field a problem is in.

A scenario with a plan is ``rainier.api.run_estimate`` (``rainier train estimate``); with ``plan: search`` it is
``rainier.api.run_search`` (``rainier train search``) and the best plan's estimate. The model and the cluster are
resolved first, each on its own, so that an error is shown beside the field it comes from; the messages are the
API's, word for word. A pasted ``config.json`` is written to a temporary folder and passed by path, as
``--model path/config.json`` would be; its path in messages is replaced by ``config.json``.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rainier import api
from rainier.api.explain import dominant_loss
from rainier.perf.result import StepEstimate
from rainier.report import html as figures
from rainier.report.jsondoc import strict_document
from rainier.search.result import SearchResult
from rainier.web.scenario import FieldError, TrainingScenario
from rainier.workload import get_model, load_hf_config
from rainier.workload.hf_import import CONFIG_FILE

SEARCH_TOP = 5  # plans shown by a search (``rainier train search --top 5``)
CONFIG_LABEL = "config.json"  # how a pasted config is named in messages
DEFAULT_CONFIG_NAME = "pasted-config"  # the model's name when the config does not say (``_name_or_path``)
_NAME_OR_PATH = "_name_or_path"
_LEADING_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*)\s*[=:]")


@dataclass(frozen=True, slots=True)
class Outcome:
    """A scenario's result: the step estimate shown, and the search it is the best plan of (if any)."""

    scenario: TrainingScenario
    estimate: StepEstimate
    search: SearchResult | None = None

    @property
    def result(self) -> StepEstimate | SearchResult:
        """What the CLI's ``--json`` and ``--report`` are made from."""
        return self.search if self.search is not None else self.estimate


def run_scenario(scenario: TrainingScenario) -> Outcome:
    """The estimate (or best searched plan) of a scenario; user errors are :class:`FieldError` s."""
    with _model_argument(scenario) as model:
        _check_cluster(scenario)
        if scenario.plan is None:
            raise FieldError("plan: give a plan (e.g. tp=8,pp=2,gbs=512) or search", "plan")
        with _blame_run(scenario):
            if scenario.is_search:
                if scenario.gbs is None:
                    raise FieldError("gbs: give the global batch (sequences per step) to search plans for", "gbs")
                found = api.run_search(
                    model=model,
                    gbs=scenario.gbs,
                    cluster=scenario.cluster,
                    accelerator=scenario.accelerator,
                    count=scenario.count,
                    seq_len=scenario.seq_len,
                    top=SEARCH_TOP,
                )
                if not found.top:
                    raise FieldError(f"no valid plan: {found.binding_constraint or 'every candidate failed'}", "plan")
                return Outcome(scenario, found.top[0].estimate, found)
            if scenario.gbs is not None:
                raise FieldError("gbs: used with plan search only; in a plan, write gbs=N", "gbs")
            estimate = api.run_estimate(
                model=model,
                plan=scenario.plan,
                cluster=scenario.cluster,
                accelerator=scenario.accelerator,
                count=scenario.count,
                seq_len=scenario.seq_len,
            )
            return Outcome(scenario, estimate)


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


# ------------------------------------------------------------------------------------------------ resolution
@contextmanager
def _model_argument(scenario: TrainingScenario) -> Iterator[str]:
    """The ``model`` argument of the API: a checked catalog name, or the path of the pasted config.json."""
    if scenario.config is not None and scenario.model is not None:
        raise FieldError("give either a catalog model or a pasted config.json, not both", "model")
    if scenario.config is None:
        if scenario.model is None:
            raise FieldError("model: choose a catalog model, or paste a config.json", "model")
        try:
            get_model(scenario.model)  # the web app reads no server paths: names only
        except ValueError as exc:
            raise FieldError(str(exc), "model") from None
        yield scenario.model
        return
    with tempfile.TemporaryDirectory(prefix="rainier-web-") as folder:
        path = Path(folder) / _config_name(scenario.config) / CONFIG_FILE
        path.parent.mkdir()
        path.write_text(scenario.config, encoding="utf-8")
        try:
            load_hf_config(path)
        except ValueError as exc:
            raise FieldError(_relabel(str(exc), path), "config") from None
        try:
            yield str(path)
        except FieldError as exc:
            raise FieldError(_relabel(str(exc), path), exc.field) from None


def _config_name(text: str) -> str:
    """The folder a pasted config is written to, which names the model (as a Hub snapshot's folder does)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return DEFAULT_CONFIG_NAME
    value = data.get(_NAME_OR_PATH) if isinstance(data, dict) else None
    if not isinstance(value, str):
        return DEFAULT_CONFIG_NAME
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", value.rstrip("/").rsplit("/", 1)[-1])[:80].strip(".-")
    return name or DEFAULT_CONFIG_NAME


def _relabel(message: str, path: Path) -> str:
    return message.replace(str(path), CONFIG_LABEL)


def _check_cluster(scenario: TrainingScenario) -> None:
    try:
        api.resolve_cluster(scenario.cluster, scenario.accelerator, scenario.count)
    except ValueError as exc:
        raise FieldError(str(exc), _cluster_field(str(exc), scenario)) from None


def _cluster_field(message: str, scenario: TrainingScenario) -> str:
    if message.startswith("count="):
        return "count"
    if message.startswith("unknown cluster"):
        return "cluster"
    if message.startswith(("unknown accelerator", "unknown system")):
        return "accelerator"
    if scenario.cluster is not None:
        return "cluster"
    return "accelerator" if scenario.accelerator is None else "count"


@contextmanager
def _blame_run(scenario: TrainingScenario) -> Iterator[None]:
    """Errors of the run itself belong to the plan, unless they name the sequence length or the batch."""
    try:
        yield
    except FieldError:
        raise
    except ValueError as exc:
        message = str(exc)
        match = _LEADING_NAME.match(message)
        name = match.group(1) if match else ""
        if name in ("seq-len", "seq_len"):
            field = "seq_len"
        elif name == "gbs" and scenario.is_search:
            field = "gbs"
        elif message.startswith("unknown model"):
            field = "model"
        else:
            field = "plan"
        raise FieldError(message, field) from None
