"""The vendored validation cases hold the shared ones unchanged (when the shared folder is beside the checkout).

``validation/training.yaml`` grows the shared public set (issue 11): it must start with the shared file's cases,
byte for byte, and may add more after them. The inference file is a plain copy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "validation"


@pytest.mark.parametrize("name", ["inference.yaml", "inference-trn2.yaml"])
def test_vendored_inference_copy_matches_shared(name: str) -> None:
    ours = ROOT / "validation" / name
    assert ours.is_file()
    shared = SHARED / name
    if shared.is_file():
        assert ours.read_bytes() == shared.read_bytes(), f"validation/{name} differs from {shared}"


def test_public_inference_set_breadth() -> None:
    """Issue 13: >= 200 targets in >= 10 groups, with in-flight batching, H200/B200, MoE, speculation, Trainium2."""
    cases = []
    for name in ("inference.yaml", "inference-trn2.yaml", "inference-mlperf.yaml", "inference-open.yaml"):
        cases += yaml.safe_load((ROOT / "validation" / name).read_text(encoding="utf-8"))["cases"]
    accelerators = {c["system"]["accelerator"] for c in cases}
    assert sum(len(c["targets"]) for c in cases) >= 200
    assert len({c["group"] for c in cases}) >= 10
    assert any(c["serving"].get("batch") is None for c in cases)
    assert {"h200-sxm", "b200", "trn2"} <= accelerators
    assert any(c["model"].get("arch") == "moe" for c in cases)
    assert any(c["serving"].get("speculative") for c in cases)


def test_training_cases_start_with_the_shared_ones_unchanged() -> None:
    ours = (ROOT / "validation" / "training.yaml").read_text(encoding="utf-8")
    shared_path = SHARED / "training.yaml"
    if not shared_path.is_file():
        pytest.skip("shared/validation is not beside this checkout")
    shared = shared_path.read_text(encoding="utf-8").rstrip("\n")
    assert ours.startswith(shared), "validation/training.yaml must begin with shared/validation/training.yaml"
    ours_ids = [c["id"] for c in yaml.safe_load(ours)["cases"]]
    shared_ids = [c["id"] for c in yaml.safe_load(shared)["cases"]]
    assert ours_ids[: len(shared_ids)] == shared_ids
    assert len(set(ours_ids)) == len(ours_ids), "case ids must be unique"


def test_public_set_breadth() -> None:
    """Issue 11: >= 120 cases in >= 14 groups, with MoE, Blackwell, H200, TPU, Trainium and >= 4,096 devices."""
    cases = yaml.safe_load((ROOT / "validation" / "training.yaml").read_text(encoding="utf-8"))["cases"]
    groups = {c["group"] for c in cases}
    accelerators = {c["system"]["accelerator"] for c in cases}
    assert len(cases) >= 120
    assert len(groups) >= 14
    assert any(c["model"].get("arch") == "moe" for c in cases)
    assert {"b200", "gb200"} <= accelerators
    assert "h200-sxm" in accelerators
    assert accelerators & {"tpu-v5p", "tpu-v6e"}
    assert accelerators & {"trn1", "trn2"}
    assert any((c["system"].get("count") or 0) >= 4096 for c in cases)
