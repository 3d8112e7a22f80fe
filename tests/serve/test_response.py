"""The local response of a simulated case to the efficiencies (``serve.response``), as the serving fit uses it."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainier.calibrate.cases import CaseFile, InferenceCase, load_cases
from rainier.hardware import get_accelerator
from rainier.serve.efficiency import DEFAULT_KEY, ServeEfficiency, ServeEfficiencyTable
from rainier.serve.response import FRACTIONS, linearise
from rainier.serve.validate import Prepared, predict_metrics, prepare

fractions = st.floats(min_value=0.1, max_value=1.0)


def _power_law(eff: ServeEfficiency) -> Mapping[str, float]:
    """A metric that is exactly a power of each fraction and exponential in each added time."""
    time_s = 2.0 * eff.compute**-1.0 * eff.memory**-0.5 * math.exp(300.0 * eff.iteration_overhead_s)
    return {"tpot_ms": time_s, "output_tokens_per_s": 1.0 / time_s}


@settings(max_examples=30, deadline=None)
@given(compute=fractions, memory=fractions, overhead=st.floats(min_value=0.0, max_value=0.01))
def test_the_expansion_is_exact_for_a_power_law(compute: float, memory: float, overhead: float) -> None:
    response = linearise(_power_law, ServeEfficiency(), ("tpot_ms", "output_tokens_per_s"))
    eff = ServeEfficiency(compute=compute, memory=memory, iteration_overhead_s=overhead)
    for metric, value in response.predict(eff).items():
        assert value == pytest.approx(_power_law(eff)[metric], rel=1e-9)


def test_the_expansion_returns_the_simulation_at_its_point() -> None:
    at = ServeEfficiency(compute=0.5, kv_memory=0.8)
    response = linearise(_power_law, at, ("tpot_ms",))
    assert response.predict(at) == {"tpot_ms": _power_law(at)["tpot_ms"]}
    assert set(FRACTIONS) < set(ServeEfficiency().to_dict())


def _offline_case() -> Prepared:
    cases = load_cases("validation/inference-mlperf.yaml")
    assert isinstance(cases, CaseFile)
    for case in cases.cases:
        serving = case.serving if isinstance(case, InferenceCase) else {}
        if isinstance(case, InferenceCase) and serving.get("batch", 0) is None and serving.get("load") == "offline":
            return prepare(case)
    raise AssertionError("no offline case in validation/inference-mlperf.yaml")


def test_an_offline_benchmark_is_predicted_near_its_expansion_point() -> None:
    """A simulated MLPerf Offline run, expanded around the priors, against the simulation 15-30% away."""
    item = _offline_case()
    assert item.linearised and not item.fitted
    metrics = tuple(m for m, _ in item.targets)
    response = linearise(lambda eff: predict_metrics(item, eff), ServeEfficiency(), metrics)
    moved = ServeEfficiency(compute=0.7, memory=0.85, kv_memory=0.6, comm=0.6, iteration_overhead_s=2e-3)
    simulated = predict_metrics(item, moved)
    for metric, value in response.predict(moved).items():
        assert value == pytest.approx(simulated[metric], rel=0.05)


def test_an_accelerator_takes_the_most_specific_serving_entry() -> None:
    """default > vendor family > generation (the efficiency family) > accelerator."""
    gb300, h100 = get_accelerator("gb300"), get_accelerator("h100-sxm")
    entries = {
        DEFAULT_KEY: ServeEfficiency(compute=0.1),
        "nvidia-gpu": ServeEfficiency(compute=0.2),
        "nvidia-blackwell": ServeEfficiency(compute=0.3),
        "h100-sxm": ServeEfficiency(compute=0.4),
    }
    table = ServeEfficiencyTable(entries=entries, provenance={})
    assert table.for_accelerator(gb300).compute == 0.3
    assert table.for_accelerator(h100).compute == 0.4
    assert table.for_accelerator(get_accelerator("a100-80gb")).compute == 0.2
    assert table.for_accelerator(get_accelerator("trn2")).compute == 0.1


def test_an_expansion_serves_every_point_within_its_reach(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fit expands an in-flight case again only where no expansion of it lies within EXPANSION_REACH."""
    from types import SimpleNamespace

    from rainier.calibrate.cases import Trust
    from rainier.serve import fitting
    from rainier.serve.response import Response, coordinates

    made: list[ServeEfficiency] = []

    def fake_linearise(_simulate: object, at: ServeEfficiency, metrics: tuple[str, ...]) -> Response:
        made.append(at)
        return Response(at=coordinates(at), base={m: 1.0 for m in metrics}, slopes={m: (0.0,) * 6 for m in metrics})

    monkeypatch.setattr(fitting, "linearise", fake_linearise)
    case = SimpleNamespace(id="c", trust=Trust.A)
    item = SimpleNamespace(
        case=case, linearised=True, fitted=False, consistent=True, targets=(("output_tokens_per_s", 1.0),)
    )
    known: dict[str, list[Response]] = {}
    base = ServeEfficiency()
    first = fitting._responses([item], base, known)["c"]  # type: ignore[list-item]
    near = base.with_(compute=base.compute * 1.1)  # log 1.1 < log 1.2: within reach
    assert fitting._responses([item], near, known)["c"] is first and len(made) == 1  # type: ignore[list-item]
    far = base.with_(compute=base.compute * 0.5)
    second = fitting._responses([item], far, known)["c"]  # type: ignore[list-item]
    assert second is not first and len(made) == 2
    assert fitting._responses([item], base.with_(compute=base.compute * 0.55), known)["c"] is second  # nearest
