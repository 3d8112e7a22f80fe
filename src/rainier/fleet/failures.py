"""Failure rates per component, read from ``catalog/failures.yaml`` (the Llama 3 405B interruption record).

A synchronous training job stops whenever any of its devices, hosts, NICs, links or its software fails; the
job-level interruption rate is the sum of every component's rate times the device count (independent failures,
formulas.md "Failures and checkpoints"). The only large public record is Meta's Llama 3 405B pre-training: 419
unexpected interruptions in 54 days on 16,384 H100 (Llama 3 paper, Table 5). Its 18 root-cause rows are grouped
into six :class:`Component`\\ s; each rate is ``count / (16,384 x 54 x 24)`` per device-hour. Components that take
hardware out (accelerator, HBM, host, NIC) send a server to repair and need a spare; the others (a switch or
cable the fabric routes around, software) only need a restart.

An accelerator may override the defaults (``overrides:`` in the YAML: rate multipliers and repair times per
component). Trainium has no published failure data, so its entries apply the GPU-derived defaults unchanged.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rainier.catalog.loader import CatalogError, Fields, catalog_file, load_yaml, source_index
from rainier.errors import field_error
from rainier.hardware import accelerators
from rainier.units import SECONDS_PER_HOUR, tb_per_s

FAILURES_FILE = "failures.yaml"
HOURS_PER_DAY = 24.0
BILLION = 1e9
DEFAULT_MODEL_NAME = "default"
TOP_KEYS = ("reference_run", "recovery", "components", "overrides")


class Component(enum.StrEnum):
    """What failed, grouped from the Llama 3 root-cause table (hardware.md section 9)."""

    ACCELERATOR = "accelerator"
    HBM = "hbm"
    HOST = "host"
    NIC = "nic"
    SWITCH_LINK = "switch_link"
    SOFTWARE = "software"


COMPONENT_ORDER: tuple[Component, ...] = tuple(Component)


# ----------------------------------------------------------------------------------------------------------------
# The failure model used by the simulation
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentFailure:
    """One component's failures: a rate per device-hour, whether it takes a server out, and its repair time."""

    component: Component
    rate_per_device_hour: float
    """Interruptions per device-hour (times the device count: the job's rate)."""
    takes_hardware_out: bool
    """True when the failed part needs a spare server and a repair; False when a restart is enough."""
    repair_s: float = 0.0
    """Time the failed server is out of the pool (0 for components that do not take hardware out)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "component", _component(self.component, "component"))
        rate = self.rate_per_device_hour
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not (math.isfinite(rate) and rate >= 0):
            raise field_error(f"{self.component}.rate_per_device_hour", rate, "must be a finite number >= 0")
        repair = self.repair_s
        if (
            isinstance(repair, bool)
            or not isinstance(repair, int | float)
            or not (math.isfinite(repair) and repair >= 0)
        ):
            raise field_error(f"{self.component}.repair_s", repair, "must be a finite number of seconds >= 0")
        if not isinstance(self.takes_hardware_out, bool):
            raise field_error(f"{self.component}.takes_hardware_out", self.takes_hardware_out, "expected true or false")

    def to_dict(self) -> dict[str, Any]:
        return {
            "component": self.component.value,
            "rate_per_device_hour": self.rate_per_device_hour,
            "takes_hardware_out": self.takes_hardware_out,
            "repair_s": self.repair_s,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureModel:
    """Failure rates of every component for one kind of accelerator (``name``: an accelerator id or ``default``).

    Components appear once each, in :class:`Component` order; at least one rate must be positive.
    """

    name: str
    components: tuple[ComponentFailure, ...]

    def __post_init__(self) -> None:
        items = tuple(self.components)
        if not items or not all(isinstance(c, ComponentFailure) for c in items):
            raise field_error("components", self.components, "expected a non-empty sequence of ComponentFailure")
        kinds = [c.component for c in items]
        if len(set(kinds)) != len(kinds):
            raise field_error("components", [k.value for k in kinds], "each component may appear only once")
        order = {component: index for index, component in enumerate(COMPONENT_ORDER)}
        items = tuple(sorted(items, key=lambda c: order[c.component]))
        object.__setattr__(self, "components", items)
        if not sum(c.rate_per_device_hour for c in items) > 0:
            raise field_error("components", "all rates 0", "at least one component needs a rate > 0")

    @property
    def rate_per_device_hour(self) -> float:
        """All components together: interruptions per device-hour."""
        return sum(c.rate_per_device_hour for c in self.components)

    def component(self, kind: Component | str) -> ComponentFailure:
        wanted = _component(kind, "component")
        for item in self.components:
            if item.component is wanted:
                return item
        raise field_error("component", kind, f"not in failure model {self.name!r}")

    def job_rate_per_hour(self, num_devices: int) -> float:
        """Expected interruptions per hour of a job on ``num_devices`` (superposition of independent failures)."""
        return self.rate_per_device_hour * num_devices

    def job_mtbf_hours(self, num_devices: int) -> float:
        """Mean time between interruptions of the whole job, in hours."""
        return 1.0 / self.job_rate_per_hour(num_devices)

    def scaled(self, factor: float) -> FailureModel:
        """Every rate times ``factor`` (> 0): a what-if for more or less reliable hardware."""
        if (
            isinstance(factor, bool)
            or not isinstance(factor, int | float)
            or not (math.isfinite(factor) and factor > 0)
        ):
            raise field_error("factor", factor, "must be a finite number > 0")
        return replace(
            self,
            components=tuple(replace(c, rate_per_device_hour=c.rate_per_device_hour * factor) for c in self.components),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rate_per_device_hour": self.rate_per_device_hour,
            "components": [c.to_dict() for c in self.components],
        }


def _check_number(name: str, value: object, *, positive: bool) -> None:
    number = value if not isinstance(value, bool) and isinstance(value, int | float) else math.nan
    if not math.isfinite(number) or (number <= 0 if positive else number < 0):
        raise field_error(name, value, f"must be a finite number {'> 0' if positive else '>= 0'}")


def _component(value: object, name: str) -> Component:
    if isinstance(value, Component):
        return value
    try:
        return Component(str(value))
    except ValueError:
        raise field_error(name, value, f"allowed: {', '.join(c.value for c in Component)}") from None


# ----------------------------------------------------------------------------------------------------------------
# Catalog records
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceRun:
    """The published run the defaults come from (Llama 3 405B pre-training, 54-day snapshot)."""

    id: str
    accelerator: str
    num_devices: int
    devices_per_server: int
    days: float
    interruptions_unexpected: int
    interruptions_planned: int
    effective_training_time_ratio_min: float
    model_params: float
    storage_write_bytes_per_s: float
    storage_read_bytes_per_s: float
    notes: str = ""
    sources: tuple[tuple[str, str], ...] = ()

    @property
    def exposure_device_hours(self) -> float:
        """Device-hours the interruptions were counted over: devices x days x 24."""
        return self.num_devices * self.days * HOURS_PER_DAY

    @property
    def job_mtbf_hours(self) -> float:
        """54 x 24 / 419 = 3.09 h for Llama 3 (hardware.md section 9, derived)."""
        return self.days * HOURS_PER_DAY / self.interruptions_unexpected


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartParts:
    """The parts of one restart (before the checkpoint restore), in seconds; which apply depends on the mode."""

    detection_s: float
    reschedule_s: float
    """Drain, allocate a spare server, start its containers (0 with hot spares)."""
    process_start_s: float
    """Imports, device runtime, model construction on every rank (0 with hot spares: in-process restart)."""
    swap_in_s: float
    """A running standby joins in place of the failed server (hot spares only)."""
    communicator_init_s: float
    """Rendezvous and communicator set-up over all ranks: ``init_s_per_doubling * log2(ranks)``."""

    @property
    def total_s(self) -> float:
        return self.detection_s + self.reschedule_s + self.process_start_s + self.swap_in_s + self.communicator_init_s

    def to_dict(self) -> dict[str, float]:
        return {
            "detection_s": self.detection_s,
            "reschedule_s": self.reschedule_s,
            "process_start_s": self.process_start_s,
            "swap_in_s": self.swap_in_s,
            "communicator_init_s": self.communicator_init_s,
            "total_s": self.total_s,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryDefaults:
    """How a job recovers: the parts of a restart, spare servers, and the storage ceiling per site.

    A cold restart relaunches the job: detection, rescheduling onto a spare, process start and communicator
    set-up, which grows with ``log2`` of the rank count. With hot spares and in-process restart (NVIDIA Resiliency
    Extension) the healthy ranks keep their processes and a running standby swaps in: detection, swap-in and
    communicator set-up only.
    """

    detection_s: float
    reschedule_s: float
    process_start_s: float
    init_s_per_doubling: float
    hot_spare_swap_s: float
    spare_fraction: float
    storage_ceiling_write_bytes_per_s: float
    """Checkpoint write bandwidth one site's storage can give a job, however large."""
    storage_ceiling_read_bytes_per_s: float
    notes: str = ""
    estimated: frozenset[str] = frozenset()

    def restart_parts(self, num_ranks: int, *, hot_spares: bool = False) -> RestartParts:
        """The restart of a job of ``num_ranks`` ranks, cold or with hot spares (see the class doc)."""
        if isinstance(num_ranks, bool) or not isinstance(num_ranks, int) or num_ranks < 1:
            raise field_error("num_devices", num_ranks, "must be an integer >= 1")
        init = self.init_s_per_doubling * math.log2(num_ranks) if num_ranks > 1 else 0.0
        return RestartParts(
            detection_s=self.detection_s,
            reschedule_s=0.0 if hot_spares else self.reschedule_s,
            process_start_s=0.0 if hot_spares else self.process_start_s,
            swap_in_s=self.hot_spare_swap_s if hot_spares else 0.0,
            communicator_init_s=init,
        )

    def restart_s(self, num_ranks: int, *, hot_spares: bool = False) -> float:
        """Seconds from an interruption to computing again, before the checkpoint restore."""
        return self.restart_parts(num_ranks, hot_spares=hot_spares).total_s


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentRecord:
    """A component's catalog entry: the Llama 3 rows grouped into it, and what its failure needs."""

    component: Component
    name: str
    takes_hardware_out: bool
    repair_s: float
    interruptions_by_cause: tuple[tuple[str, int], ...]
    notes: str = ""
    estimated: frozenset[str] = frozenset()

    @property
    def count(self) -> int:
        return sum(n for _, n in self.interruptions_by_cause)


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureOverride:
    """Per-accelerator changes: a factor on each listed component's rate, and repair times."""

    accelerator: str
    rate_multipliers: tuple[tuple[Component, float], ...] = ()
    repair_s: tuple[tuple[Component, float], ...] = ()
    notes: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureCatalog:
    """Everything in ``failures.yaml``: the reference run, recovery defaults, components and overrides."""

    reference: ReferenceRun
    recovery: RecoveryDefaults
    components: tuple[ComponentRecord, ...]
    overrides: Mapping[str, FailureOverride] = field(default_factory=dict)

    def default_model(self) -> FailureModel:
        """Rates from the reference run: each component's count / (devices x days x 24) per device-hour."""
        exposure = self.reference.exposure_device_hours
        return FailureModel(
            name=DEFAULT_MODEL_NAME,
            components=tuple(
                ComponentFailure(
                    component=record.component,
                    # Llama 3 paper Table 5 counts over 16,384 GPUs x 54 days (hardware.md section 9)
                    rate_per_device_hour=record.count / exposure,
                    takes_hardware_out=record.takes_hardware_out,
                    repair_s=record.repair_s if record.takes_hardware_out else 0.0,
                )
                for record in self.components
            ),
        )

    def model_for(self, accelerator: str | None = None) -> FailureModel:
        """The failure model of an accelerator: its override applied to the defaults (the defaults if none)."""
        base = self.default_model()
        key = (accelerator or "").strip().lower()
        override = self.overrides.get(key)
        if override is None:
            return base
        multipliers = dict(override.rate_multipliers)
        repairs = dict(override.repair_s)
        return FailureModel(
            name=key,
            components=tuple(
                replace(
                    c,
                    rate_per_device_hour=c.rate_per_device_hour * multipliers.get(c.component, 1.0),
                    repair_s=repairs.get(c.component, c.repair_s),
                )
                for c in base.components
            ),
        )


# ----------------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------------


def _source_pairs(fields: Fields) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(fields.source_map.items()))


def _reference(fields: Fields) -> ReferenceRun:
    run = ReferenceRun(
        id=fields.string("id"),
        accelerator=fields.string("accelerator"),
        num_devices=fields.integer("num_devices"),
        devices_per_server=fields.integer("devices_per_server"),
        days=fields.number("days"),
        interruptions_unexpected=fields.integer("interruptions_unexpected"),
        interruptions_planned=fields.integer("interruptions_planned", minimum=0),
        effective_training_time_ratio_min=fields.number("effective_training_time_ratio_min", maximum=1.0),
        model_params=fields.number("model_params_billion") * BILLION,
        storage_write_bytes_per_s=tb_per_s(fields.number("storage_write_tb_per_s")),
        storage_read_bytes_per_s=tb_per_s(fields.number("storage_read_tb_per_s")),
        notes=fields.string("notes", required=False),
        sources=_source_pairs(fields),
    )
    fields.finish()
    return run


def _recovery(fields: Fields) -> RecoveryDefaults:
    def seconds(key: str) -> float:
        return fields.number(key, minimum=0.0, exclusive_minimum=False)

    recovery = RecoveryDefaults(
        detection_s=seconds("detection_s"),
        reschedule_s=seconds("reschedule_s"),
        process_start_s=seconds("process_start_s"),
        init_s_per_doubling=seconds("init_s_per_doubling"),
        hot_spare_swap_s=seconds("hot_spare_swap_s"),
        spare_fraction=fields.number("spare_fraction", minimum=0.0, exclusive_minimum=False, maximum=1.0),
        storage_ceiling_write_bytes_per_s=tb_per_s(fields.number("storage_ceiling_write_tb_per_s")),
        storage_ceiling_read_bytes_per_s=tb_per_s(fields.number("storage_ceiling_read_tb_per_s")),
        notes=fields.string("notes", required=False),
        estimated=fields.estimated,
    )
    fields.finish()
    return recovery


def _component_record(fields: Fields) -> ComponentRecord:
    component = Component(fields.choice("id", tuple(c.value for c in Component)))
    takes_out = fields.boolean("takes_hardware_out")
    repair_hours = fields.optional_number("repair_hours", minimum=0.0, exclusive_minimum=False)
    if takes_out and repair_hours is None:
        raise fields.error("repair_hours is required when takes_hardware_out is true")
    if not takes_out and repair_hours is not None:
        raise fields.error("repair_hours only applies when takes_hardware_out is true")
    cause_names = list(fields.mapping("interruptions_by_cause"))
    causes = fields.sub("interruptions_by_cause")
    assert causes is not None  # required above
    counts = tuple((name, causes.integer(name, minimum=0)) for name in cause_names)
    causes.finish()
    if not counts:
        raise fields.error("interruptions_by_cause must list at least one cause")
    record = ComponentRecord(
        component=component,
        name=fields.string("name"),
        takes_hardware_out=takes_out,
        repair_s=(repair_hours or 0.0) * SECONDS_PER_HOUR,
        interruptions_by_cause=counts,
        notes=fields.string("notes", required=False),
        estimated=fields.estimated,
    )
    fields.finish()
    return record


def _per_component(fields: Fields, key: str, scale: float) -> tuple[tuple[Component, float], ...]:
    allowed = tuple(c.value for c in Component)
    values = fields.number_map(key, allowed, required=False)
    return tuple((Component(name), value * scale) for name, value in sorted(values.items()))


def _override(fields: Fields, known_accelerators: frozenset[str] | None) -> FailureOverride:
    accelerator = fields.string("id").strip().lower()
    if known_accelerators is not None and accelerator not in known_accelerators:
        raise fields.error(f"id={accelerator!r} is not an accelerator in the catalog")
    override = FailureOverride(
        accelerator=accelerator,
        rate_multipliers=_per_component(fields, "rate_multipliers", 1.0),
        repair_s=_per_component(fields, "repair_hours", SECONDS_PER_HOUR),
        notes=fields.string("notes", required=False),
    )
    fields.finish()
    return override


def _build(raw: Any, path: Path, known_accelerators: frozenset[str] | None) -> FailureCatalog:
    if not isinstance(raw, Mapping) or set(raw) != set(TOP_KEYS):
        keys = sorted(raw) if isinstance(raw, Mapping) else type(raw).__name__
        raise CatalogError(f"{path}: expected top-level keys {', '.join(TOP_KEYS)}; found {keys}")
    index = source_index()
    reference = _reference(Fields(raw["reference_run"], path=path, where="reference_run", sources=index))
    recovery = _recovery(Fields(raw["recovery"], path=path, where="recovery", sources=index))
    for key in ("components", "overrides"):
        if not isinstance(raw[key], list):
            raise CatalogError(f"{path}: '{key}' must be a list")
    records: list[ComponentRecord] = []
    for position, item in enumerate(raw["components"]):
        label = item.get("id") if isinstance(item, Mapping) else None
        where = f"components[{position}]{f' ({label})' if label else ''}"
        records.append(_component_record(Fields(item, path=path, where=where, sources=index)))
    seen = [r.component for r in records]
    if sorted(seen) != sorted(Component) or len(seen) != len(set(seen)):
        raise CatalogError(f"{path}: components must list each of {', '.join(c.value for c in Component)} once")
    total = sum(r.count for r in records)
    if total != reference.interruptions_unexpected:
        raise CatalogError(
            f"{path}: components' interruptions_by_cause sum to {total}, "
            f"reference_run.interruptions_unexpected is {reference.interruptions_unexpected}"
        )
    overrides: dict[str, FailureOverride] = {}
    for position, item in enumerate(raw["overrides"]):
        label = item.get("id") if isinstance(item, Mapping) else None
        where = f"overrides[{position}]{f' ({label})' if label else ''}"
        override = _override(Fields(item, path=path, where=where, sources=index), known_accelerators)
        if override.accelerator in overrides:
            raise CatalogError(f"{path}: {where}: duplicate id {override.accelerator!r}")
        overrides[override.accelerator] = override
    order = {c: i for i, c in enumerate(COMPONENT_ORDER)}
    return FailureCatalog(
        reference=reference,
        recovery=recovery,
        components=tuple(sorted(records, key=lambda r: order[r.component])),
        overrides=overrides,
    )


def load_failures(
    path: Path | str | None = None, *, known_accelerators: frozenset[str] | None = None
) -> FailureCatalog:
    """Read a failures file (default: the catalog's). Override ids are checked against ``known_accelerators``."""
    target = Path(path) if path is not None else catalog_file(FAILURES_FILE)
    return _build(load_yaml(target), target, known_accelerators)


@functools.cache
def committed_failures() -> FailureCatalog:
    """The catalog's ``failures.yaml``, loaded once (override ids checked against the accelerator catalog)."""
    return load_failures(known_accelerators=frozenset(accelerators().ids()))


def failure_model(accelerator: str | None = None) -> FailureModel:
    """The committed failure model for an accelerator id (the GPU-derived defaults when it has no override)."""
    return committed_failures().model_for(accelerator)
