"""Shared helpers: the shipped case files, and temp case files built from a shipped case with changes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from rainier.calibrate import CaseFile, load_cases

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ROOT / "validation" / "training.yaml"
INFERENCE = ROOT / "validation" / "inference.yaml"


@pytest.fixture(scope="session")
def training() -> CaseFile:
    return load_cases(TRAINING)


SHARED_CASES = 51  # the first cases of validation/training.yaml are shared/validation's public set


@pytest.fixture(scope="session")
def shared51(training: CaseFile) -> CaseFile:
    """The 51 shared public cases (7 groups, 3 efficiency families): a small fixed set for fitting tests."""
    return CaseFile(path=training.path, kind=training.kind, cases=training.cases[:SHARED_CASES])


@pytest.fixture(scope="session")
def inference() -> CaseFile:
    return load_cases(INFERENCE)


def raw_case(case_id: str, path: Path = TRAINING) -> dict[str, Any]:
    """A deep copy of one shipped case's raw mapping."""
    raw = yaml.safe_load(path.read_text())
    return copy.deepcopy(next(c for c in raw["cases"] if c["id"] == case_id))


def write_cases(tmp_path: Path, cases: list[dict[str, Any]], *, kind: str = "training", **top: Any) -> Path:
    """A cases file holding ``cases`` (top-level keys overridable, e.g. ``schema_version=2``)."""
    document = {"schema_version": 1, "kind": kind, "cases": cases, **top}
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
