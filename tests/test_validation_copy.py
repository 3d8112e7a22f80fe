"""The vendored validation cases equal the shared ones (when the shared folder is beside the checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "validation"


@pytest.mark.parametrize("name", ["README.md", "training.yaml", "inference.yaml"])
def test_vendored_copy_matches_shared(name: str) -> None:
    ours = ROOT / "validation" / name
    assert ours.is_file()
    shared = SHARED / name
    if shared.is_file():
        assert ours.read_bytes() == shared.read_bytes(), f"validation/{name} differs from {shared}: copy it again"
