"""A static row whose published output rate disagrees with its own TTFT and TPOT is scored and does not steer the
fit (validate._self_consistency); rows that agree, and rows without all three numbers, steer as before."""

from __future__ import annotations

import pytest

from rainier.calibrate.cases import InferenceCase, Trust
from rainier.serve.fitting import _steers
from rainier.serve.validate import CONSISTENCY_BOUND, prepare


def _case(rate: float | None, *, batch: int = 1, ttft_ms: float = 100.0, tpot_ms: float = 10.0) -> InferenceCase:
    targets = [{"metric": "ttft_ms", "value": ttft_ms}, {"metric": "tpot_ms", "value": tpot_ms}]
    if rate is not None:
        targets.append({"metric": "output_tokens_per_s", "value": rate})
    return InferenceCase(
        id="x", group="g", trust=Trust.A, source="s",
        model={"name": "llama-3.1-8b", "arch": "dense", "layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 8,
               "vocab": 128256, "seq_len": 8192},
        system={"accelerator": "h100-sxm", "count": 1},
        serving={"tp": 1, "batch": batch, "input_len": 128, "output_len": 101, "precision": "bf16",
                 "framework": "vLLM 0.9.1"},
        targets=tuple(targets), notes="",
    )  # fmt: skip


def _run_rate(batch: int = 1) -> float:
    """The rate a row's own latencies give: batch x 101 tokens over 100 ms + 100 x 10 ms."""
    return batch * 101 / 1.1


@pytest.mark.parametrize("batch", [1, 8])
def test_a_row_that_agrees_with_itself_steers(batch: int) -> None:
    item = prepare(_case(_run_rate(batch) * 0.9, batch=batch))
    assert item.consistent and _steers(item)
    assert not any(a.field == "targets" for a in item.assumptions)


@pytest.mark.parametrize("share", [0.5, 2.0])
def test_a_rate_its_own_latencies_contradict_is_scored_not_fitted(share: float) -> None:
    item = prepare(_case(_run_rate() * share))
    assert not item.consistent and not _steers(item)
    (said,) = [a for a in item.assumptions if a.field == "targets"]
    assert f"{1 / share:.2f}x its published rate" in said.text and "does not steer the fit" in said.text


def test_the_bound_sits_between_the_public_rows() -> None:
    """The public rows that agree sit within 0.86-1.02 of their latencies' rate, the three that do not at 1.65+."""
    assert 1.02 < CONSISTENCY_BOUND < 1.65 and 1 / CONSISTENCY_BOUND < 0.86
    assert prepare(_case(_run_rate() / (CONSISTENCY_BOUND * 0.99))).consistent
    assert not prepare(_case(_run_rate() / (CONSISTENCY_BOUND * 1.01))).consistent


def test_a_row_without_a_rate_is_not_checked() -> None:
    assert prepare(_case(None)).consistent
