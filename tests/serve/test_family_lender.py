"""A chip family without its own serving fit borrows the fit of the family with the same cores and software stack:
Inferentia2 (NeuronCore-v2, Neuron SDK) is predicted from the Neuron cases, not from the CUDA-heavy default."""

from __future__ import annotations

from rainier.api.serve import run_serve_estimate
from rainier.hardware.accelerator import FAMILY_LENDERS, Family
from rainier.hardware.registry import get_accelerator
from rainier.serve.efficiency import DEFAULT_KEY, committed_serve_efficiency
from rainier.serve.residuals import committed_serve_residuals


def test_inferentia_borrows_the_neuron_fit_and_its_error_band() -> None:
    table = committed_serve_efficiency()
    inf2 = get_accelerator("inf2")
    assert "inferentia" not in table.entries  # no public Inf2 case steers a fit
    assert inf2.efficiency_keys[-1] == Family.TRAINIUM.value
    assert table.key_for(inf2) == "trainium" == table.key_for(get_accelerator("trn2"))
    residuals = committed_serve_residuals()
    assert residuals is not None
    assert residuals.band(inf2.efficiency_keys, "tpot") is residuals.band("trainium", "tpot")


def test_families_with_their_own_fit_keep_it() -> None:
    table = committed_serve_efficiency()
    for chip, key in (("trn1", "trn1"), ("h100-sxm", "h100-sxm"), ("b200", "b200")):
        accelerator = get_accelerator(chip)
        assert FAMILY_LENDERS.get(accelerator.family) is None
        assert table.key_for(accelerator) == key != DEFAULT_KEY


def test_an_inf2_estimate_names_the_entry_it_used() -> None:
    result = run_serve_estimate(
        model="llama-2-13b", accelerator="inf2", count=12, tp=24, unit="core", batch=1, input_len=128, output_len=128
    )
    assert result.efficiency_key == "trainium"
    assert result.intervals["tpot_ms_low"] < result.tpot_s * 1e3 < result.intervals["tpot_ms_high"]
