"""The failure catalog: Llama 3 counts grouped into components, rates per device-hour, overrides, strict loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rainier.catalog import CatalogError
from rainier.catalog.loader import catalog_file
from rainier.fleet.failures import (
    Component,
    ComponentFailure,
    FailureModel,
    committed_failures,
    failure_model,
    load_failures,
)

EXPOSURE_DEVICE_HOURS = 16384 * 54 * 24  # Llama 3: 16,384 H100 for 54 days
GROUPED = {"accelerator": 196, "hbm": 72, "host": 46, "nic": 7, "switch_link": 35, "software": 63}


def test_llama3_rows_group_into_six_components_summing_to_419() -> None:
    catalog = committed_failures()
    counts = {r.component.value: r.count for r in catalog.components}
    assert counts == GROUPED
    assert sum(counts.values()) == 419 == catalog.reference.interruptions_unexpected
    assert len([c for r in catalog.components for c in r.interruptions_by_cause]) == 18  # the table's 18 rows


def test_default_rates_are_counts_over_exposure() -> None:
    model = failure_model()
    assert model.name == "default"
    for item in model.components:
        assert item.rate_per_device_hour == pytest.approx(GROUPED[item.component.value] / EXPOSURE_DEVICE_HOURS)
    assert model.rate_per_device_hour == pytest.approx(419 / EXPOSURE_DEVICE_HOURS)
    # one unexpected interruption every ~3.1 h at 16,384 GPUs (hardware.md section 9)
    assert model.job_mtbf_hours(16384) == pytest.approx(54 * 24 / 419)
    assert model.job_rate_per_hour(1_000_000) == pytest.approx(419 / (54 * 24) * 1_000_000 / 16384)


def test_hardware_components_need_repair_restart_only_components_do_not() -> None:
    model = failure_model()
    out = {c.component.value for c in model.components if c.takes_hardware_out}
    assert out == {"accelerator", "hbm", "host", "nic"}
    assert model.component("accelerator").repair_s == 48 * 3600
    assert model.component(Component.HOST).repair_s == 24 * 3600
    assert model.component("software").repair_s == 0.0
    assert model.component("switch_link").repair_s == 0.0


def test_reference_run_and_recovery_defaults() -> None:
    catalog = committed_failures()
    ref = catalog.reference
    assert (ref.num_devices, ref.devices_per_server, ref.days) == (16384, 8, 54)
    assert ref.storage_write_bytes_per_s == 2e12 and ref.storage_read_bytes_per_s == 7e12
    assert ref.model_params == 405e9
    assert ref.job_mtbf_hours == pytest.approx(3.093, abs=1e-3)
    # the parts of a cold restart add up to the 5 minutes rainier assumed before it had parts, at Llama 3's size
    assert catalog.recovery.restart_s(16384) == pytest.approx(300.0, abs=1.0)
    assert catalog.recovery.spare_fraction == 0.05
    assert {"detection_s", "reschedule_s", "init_s_per_doubling"} <= catalog.recovery.estimated
    assert all("repair_hours" in r.estimated for r in catalog.components if r.takes_hardware_out)


def test_trainium_uses_gpu_derived_defaults() -> None:
    default = failure_model()
    for accelerator in ("trn2", "trn3", "TRN2"):
        model = failure_model(accelerator)
        assert model.name == accelerator.lower()
        assert model.components == default.components
    assert "No published failure rates" in committed_failures().overrides["trn2"].notes
    assert failure_model("h100-sxm") == default  # no override: the defaults themselves


def _catalog_data() -> dict[str, object]:
    data = yaml.safe_load(catalog_file("failures.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _write(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "failures.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_override_multipliers_and_repair_times(tmp_path: Path) -> None:
    data = _catalog_data()
    data["overrides"] = [
        {
            "id": "a100-80gb",
            "rate_multipliers": {"hbm": 0.5, "accelerator": 2},
            "repair_hours": {"host": 6},
            "sources": {"default": "rainier-est"},
        }
    ]
    catalog = load_failures(_write(tmp_path, data), known_accelerators=frozenset({"a100-80gb"}))
    base = catalog.default_model()
    model = catalog.model_for("a100-80gb")
    assert model.component("hbm").rate_per_device_hour == pytest.approx(
        0.5 * base.component("hbm").rate_per_device_hour
    )
    acc = model.component("accelerator").rate_per_device_hour
    assert acc == pytest.approx(2 * base.component("accelerator").rate_per_device_hour)
    assert model.component("nic") == base.component("nic")
    assert model.component("host").repair_s == 6 * 3600


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["overrides"].append({"id": "not-a-chip", "notes": "x"}), "not an accelerator"),
        (
            lambda d: d["overrides"].append(
                {"id": "trn1", "rate_multipliers": {"gpu": 2}, "sources": {"default": "rainier-est"}}
            ),
            r"rate_multipliers\.gpu=2 is invalid: unknown key",
        ),
        (
            lambda d: d["overrides"].append({"id": "trn1", "rate_multipliers": {"hbm": 2}}),
            "no source for rate_multipliers",
        ),
        (lambda d: d["overrides"].append({"id": "trn2"}), "duplicate id 'trn2'"),
        (lambda d: d["components"][0]["interruptions_by_cause"].update(faulty_gpu=149), "sum to 420"),
        (lambda d: d["components"].pop(), "each of accelerator, hbm, host, nic, switch_link, software once"),
        (
            lambda d: d["components"][0].update(colour="red"),
            r"components\[0\] \(accelerator\): unknown field\(s\): colour",
        ),
        (lambda d: d["components"][4].update(repair_hours=3), "repair_hours only applies"),
        (lambda d: d["components"][0].pop("repair_hours"), "repair_hours is required"),
        (lambda d: d["components"][5]["interruptions_by_cause"].update(cosmic_ray=-1), "cosmic_ray=-1 is invalid"),
        (lambda d: d["reference_run"].update(days=0), "days=0 is invalid"),
        (lambda d: d["recovery"]["sources"].pop("detection_s"), "no source for detection_s"),
        (lambda d: d.update(extra=[]), "expected top-level keys"),
    ],
)
def test_malformed_failure_files_are_rejected(tmp_path: Path, edit: object, match: str) -> None:
    data = _catalog_data()
    edit(data)  # type: ignore[operator]
    with pytest.raises(CatalogError, match=match):
        load_failures(_write(tmp_path, data), known_accelerators=frozenset({"trn1", "trn2", "trn3"}))


def test_failure_model_validation() -> None:
    part = ComponentFailure(component=Component.HBM, rate_per_device_hour=1e-5, takes_hardware_out=True, repair_s=60)
    with pytest.raises(ValueError, match="each component may appear only once"):
        FailureModel(name="x", components=(part, part))
    with pytest.raises(ValueError, match="at least one component needs a rate > 0"):
        FailureModel(
            name="x", components=(ComponentFailure(component="nic", rate_per_device_hour=0, takes_hardware_out=False),)
        )
    with pytest.raises(ValueError, match=r"hbm\.rate_per_device_hour=-1 is invalid"):
        ComponentFailure(component=Component.HBM, rate_per_device_hour=-1, takes_hardware_out=True)
    with pytest.raises(ValueError, match="component='gpu' is invalid: allowed: accelerator"):
        ComponentFailure(component="gpu", rate_per_device_hour=1, takes_hardware_out=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="factor=0 is invalid"):
        failure_model().scaled(0)


def test_scaled_multiplies_every_rate_and_keeps_order() -> None:
    base = failure_model()
    double = base.scaled(2.0)
    assert double.rate_per_device_hour == pytest.approx(2 * base.rate_per_device_hour)
    assert [c.component for c in double.components] == list(Component)
    shuffled = FailureModel(name="s", components=tuple(reversed(base.components)))
    assert [c.component for c in shuffled.components] == list(Component)
    assert shuffled.to_dict()["components"][0]["component"] == "accelerator"
