"""A training execution plan and its validity checks.

Degrees follow Megatron-LM conventions (Narayanan et al. 2021; Korthikanti et al. 2022): the device count is
``tp * pp * dp * cp``; expert parallelism ``ep`` is carved out of the data-parallel ranks (and, as in
Megatron-Core, may span the context-parallel ranks too), so it does not enter the product. ``vpp`` is the
number of interleaved virtual stages per pipeline rank.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

from rainier.errors import InputError, field_error
from rainier.precision import Precision
from rainier.workload.memory import Recompute

__all__ = ["DegreeUnit", "Infeasible", "InfeasibleKind", "Plan", "Recompute", "Schedule", "check_plan", "parse_plan"]

MATMUL_PRECISIONS = (Precision.BF16, Precision.FP16, Precision.FP8, Precision.FP32, Precision.TF32)


class Schedule(enum.StrEnum):
    """Pipeline schedule."""

    ONE_F_ONE_B = "1f1b"  # Narayanan et al. 2021, sec. 2.2.1 (PipeDream-Flush)
    INTERLEAVED = "interleaved"  # Narayanan et al. 2021, sec. 2.2.2
    ZERO_BUBBLE = "zero-bubble"  # Qi et al. 2023, ZB-H1
    GPIPE = "gpipe"  # Huang et al. 2019: all forwards, then all backwards


class DegreeUnit(enum.StrEnum):
    """What the parallel degrees count: whole devices, or (AWS Neuron convention) logical NeuronCores."""

    DEVICE = "device"
    CORE = "core"


class _Shape(Protocol):
    """What plan checks need from a transformer shape."""

    @property
    def num_layers(self) -> int: ...
    @property
    def num_heads(self) -> int: ...
    @property
    def num_kv_heads(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """How one training step is laid out over the devices.

    Degrees count ranks in the unit of the device (GPU, chip) unless the caller converts NeuronCore degrees
    first. ``zero_stage`` 3 is FSDP. ``mbs`` and ``gbs`` count sequences.
    """

    tp_degree: int = 1
    pp_degree: int = 1
    dp_degree: int = 1
    cp_degree: int = 1
    ep_degree: int = 1
    vpp_degree: int = 1
    sequence_parallel: bool = False
    zero_stage: int = 1
    mbs: int = 1
    gbs: int = 1
    recompute: Recompute = Recompute.NONE
    precision: Precision = Precision.BF16
    schedule: Schedule = Schedule.ONE_F_ONE_B
    degrees_unit: DegreeUnit = DegreeUnit.DEVICE
    lora: bool = False  # fine-tune low-rank adapters only: base weights frozen (Hu et al. 2021)

    def __post_init__(self) -> None:
        for name in ("tp_degree", "pp_degree", "dp_degree", "cp_degree", "ep_degree", "vpp_degree", "mbs", "gbs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise field_error(name, value, "a positive integer")
        if self.zero_stage not in (0, 1, 2, 3):
            raise field_error("zero_stage", self.zero_stage, "0, 1, 2 or 3 (3 = FSDP)")
        if self.precision not in MATMUL_PRECISIONS:
            allowed = ", ".join(p.value for p in MATMUL_PRECISIONS)
            raise field_error("precision", self.precision.value, f"a training matmul precision: {allowed}")
        if self.vpp_degree > 1 and self.pp_degree == 1:
            raise field_error("vpp", self.vpp_degree, "1 when pp=1 (interleaving needs a pipeline)")
        if self.sequence_parallel and self.tp_degree == 1:
            raise field_error("sp", True, "false when tp=1 (sequence parallelism splits over the TP group)")

    @property
    def num_ranks(self) -> int:
        """Ranks the plan occupies: tp * pp * dp * cp (ep is carved out of dp); devices or cores by the unit."""
        return self.tp_degree * self.pp_degree * self.dp_degree * self.cp_degree

    @property
    def num_devices(self) -> int:
        """Ranks, for device-unit plans (kept for readability where the unit is known to be devices)."""
        return self.num_ranks

    @property
    def num_microbatches(self) -> int:
        """Micro-batches per pipeline per step (gradient-accumulation steps)."""
        return self.gbs // (self.dp_degree * self.mbs)

    def with_(self, **changes: Any) -> Plan:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[_SHORT.get(f.name, f.name)] = value.value if isinstance(value, enum.Enum) else value
        return out

    def describe(self) -> str:
        """The plan in the same ``key=value`` syntax :func:`parse_plan` reads."""
        d = self.to_dict()
        return ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in d.items())


_SHORT = {
    "tp_degree": "tp",
    "pp_degree": "pp",
    "dp_degree": "dp",
    "cp_degree": "cp",
    "ep_degree": "ep",
    "vpp_degree": "vpp",
    "sequence_parallel": "sp",
    "zero_stage": "zero",
    "degrees_unit": "unit",
}
_INT_KEYS = {"tp", "pp", "dp", "cp", "ep", "vpp", "mbs", "gbs"}
_ALLOWED_KEYS = (*_INT_KEYS, "sp", "zero", "fsdp", "recompute", "precision", "schedule", "unit", "lora")
_UNIT_ALIASES = {
    "device": DegreeUnit.DEVICE,
    "devices": DegreeUnit.DEVICE,
    "core": DegreeUnit.CORE,
    "cores": DegreeUnit.CORE,
    "neuroncore": DegreeUnit.CORE,
    "neuroncores": DegreeUnit.CORE,
}
_LONG = {v: k for k, v in _SHORT.items()}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(key: str, text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise field_error(key, text, "true or false")


def parse_plan(text: str, *, num_devices: int | None = None, cores_per_device: int = 1) -> Plan:
    """Parse ``"tp=8,pp=8,dp=64,mbs=1,gbs=1024,recompute=selective,precision=bf16"``.

    ``dp`` may be left out when ``num_devices`` is known: it is then ``ranks / (tp*pp*cp)``, ranks being devices
    (or ``num_devices * cores_per_device`` when ``unit=core``). Unknown
    keys, repeated keys and malformed values are one-line :class:`InputError` s naming the key.
    """
    values: dict[str, Any] = {}
    seen: set[str] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key, raw = key.strip().lower(), raw.strip()
        if not sep or not raw:
            raise InputError(f"plan: {part!r} is not key=value (keys: {', '.join(_ALLOWED_KEYS)})")
        if key not in _ALLOWED_KEYS:
            raise field_error(f"plan.{key}", raw, f"unknown key; allowed: {', '.join(_ALLOWED_KEYS)}")
        if key in seen:
            raise field_error(f"plan.{key}", raw, "each key once")
        seen.add(key)
        if key in _INT_KEYS:
            try:
                number = int(raw)
            except ValueError:
                raise field_error(key, raw, "a positive integer") from None
            if number < 1:
                raise field_error(key, raw, "a positive integer")
            values[_LONG.get(key, key)] = number
        elif key == "sp":
            values["sequence_parallel"] = _parse_bool(key, raw)
        elif key == "lora":
            values["lora"] = _parse_bool(key, raw)
        elif key == "fsdp":
            if _parse_bool(key, raw):
                values["zero_stage"] = 3
        elif key == "zero":
            if raw not in {"0", "1", "2", "3"}:
                raise field_error("zero", raw, "0, 1, 2 or 3 (3 = FSDP)")
            values["zero_stage"] = int(raw)
        elif key == "recompute":
            values["recompute"] = _parse_enum(Recompute, key, raw)
        elif key == "precision":
            values["precision"] = Precision.parse(raw)
        elif key == "unit":
            if raw.lower() not in _UNIT_ALIASES:
                raise field_error("unit", raw, "device or core (NeuronCores)")
            values["degrees_unit"] = _UNIT_ALIASES[raw.lower()]
        else:
            values["schedule"] = _parse_enum(Schedule, key, raw)
    if "fsdp" in seen and "zero" in seen and values.get("zero_stage") != 3:
        raise field_error("zero", values.get("zero_stage"), "3 when fsdp=true")
    if "dp_degree" not in values and num_devices is not None:
        per_replica = values.get("tp_degree", 1) * values.get("pp_degree", 1) * values.get("cp_degree", 1)
        ranks = num_devices * (cores_per_device if values.get("degrees_unit") is DegreeUnit.CORE else 1)
        if ranks % per_replica:
            raise field_error("plan", text, f"tp*pp*cp={per_replica} must divide the rank count {ranks}")
        values["dp_degree"] = ranks // per_replica
    if values.get("vpp_degree", 1) > 1 and "schedule" not in values:
        values["schedule"] = Schedule.INTERLEAVED
    return Plan(**values)


def _parse_enum(enum_type: type[enum.StrEnum], key: str, raw: str) -> Any:
    try:
        return enum_type(raw.lower())
    except ValueError:
        raise field_error(key, raw, f"allowed: {', '.join(m.value for m in enum_type)}") from None


class InfeasibleKind(enum.StrEnum):
    """Why a plan cannot run."""

    DIVISIBILITY = "divisibility"
    MEMORY = "memory"
    TOPOLOGY = "topology"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True, slots=True)
class Infeasible:
    """A plan that cannot run, and why (an answer, not a crash: STYLE.md point 13)."""

    kind: InfeasibleKind
    reason: str


def check_plan(plan: Plan, shape: _Shape, num_ranks: int, *, num_experts: int | None = None) -> Infeasible | None:
    """Divisibility checks of a plan against a model and a rank count; ``None`` when the plan is valid.

    ``num_ranks`` is the device count, or devices x logical cores for a ``unit=core`` plan.
    """

    def bad(reason: str) -> Infeasible:
        return Infeasible(InfeasibleKind.DIVISIBILITY, reason)

    if plan.num_ranks != num_ranks:
        unit = "device" if plan.degrees_unit is DegreeUnit.DEVICE else "core"
        return bad(f"tp*pp*dp*cp = {plan.num_ranks} must equal the {unit} count {num_ranks}")
    if shape.num_heads % plan.tp_degree:
        return bad(f"attention heads {shape.num_heads} not divisible by tp={plan.tp_degree}")
    if shape.num_kv_heads % plan.tp_degree and plan.tp_degree % shape.num_kv_heads:
        return bad(f"kv heads {shape.num_kv_heads} and tp={plan.tp_degree}: one must divide the other")
    stages = plan.pp_degree * plan.vpp_degree
    if shape.num_layers % stages:
        return bad(f"layers {shape.num_layers} not divisible by pp*vpp={stages}")
    if plan.gbs % (plan.dp_degree * plan.mbs):
        return bad(f"gbs {plan.gbs} not divisible by dp*mbs={plan.dp_degree * plan.mbs}")
    if plan.schedule is Schedule.INTERLEAVED and plan.num_microbatches % plan.pp_degree:
        # Megatron-LM requires the micro-batch count to be a multiple of pp for the interleaved schedule.
        return bad(f"interleaved schedule needs micro-batches {plan.num_microbatches} divisible by pp={plan.pp_degree}")
    if num_experts is None:
        if plan.ep_degree > 1:
            return bad(f"ep={plan.ep_degree} needs a mixture-of-experts model")
    else:
        if num_experts % plan.ep_degree:
            return bad(f"experts {num_experts} not divisible by ep={plan.ep_degree}")
        if (plan.dp_degree * plan.cp_degree) % plan.ep_degree:
            return bad(f"ep={plan.ep_degree} must divide dp*cp={plan.dp_degree * plan.cp_degree}")
    return None
