"""A training execution plan and its validity checks.

Degrees follow Megatron-LM conventions (Narayanan et al. 2021; Korthikanti et al. 2022): the device count is
``tp * pp * dp * cp``; expert parallelism ``ep`` is carved out of the data-parallel ranks (and, as in
Megatron-Core, may span the context-parallel ranks too), so it does not enter the product. ``vpp`` is the
number of interleaved virtual stages per pipeline rank.

Pipelines may be uneven: ``first_stage_layers`` / ``last_stage_layers`` are Megatron-LM's
``--decoder-first-pipeline-num-layers`` / ``--decoder-last-pipeline-num-layers``; without them a layer count
that ``pp`` does not divide is split by the step model (``parallel.pipeline``). Schedules: 1F1B and
interleaved 1F1B (Narayanan et al. 2021), ZB-H1 and ZB-V (Qi et al. 2023, 2024), DualPipe (DeepSeek-AI,
github.com/deepseek-ai/DualPipe) and GPipe (Huang et al. 2019).

ZeRO (Rajbhandari et al. 2020) shards the model state over the whole data-parallel group; ``shard_degree``
narrows that to groups of ``s`` data-parallel ranks, replicated ``dp / s`` times: hybrid sharded data
parallelism (HSDP; PyTorch FSDP ``HYBRID_SHARD``, Zhao et al. 2023 sec. 3.2.2; ZeRO++ hpZ, Wang et al. 2023
sec. 3.2; MiCS, Zhang et al. 2022).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

from rainier.errors import InputError, field_error, quote
from rainier.limits import MAX_DEVICES, MAX_GLOBAL_BATCH, check_int_range
from rainier.parallel.pipeline import pipeline_problem
from rainier.precision import Precision
from rainier.workload.memory import Recompute

__all__ = [
    "OFFLOAD_KINDS",
    "DegreeUnit",
    "Fp8Recipe",
    "Infeasible",
    "InfeasibleKind",
    "Plan",
    "Recompute",
    "Schedule",
    "check_plan",
    "describe_plan_dict",
    "parse_plan",
]

MATMUL_PRECISIONS = (
    Precision.BF16,
    Precision.FP16,
    Precision.FP8,
    Precision.INT8,
    Precision.FP32,
    Precision.TF32,
)


class Schedule(enum.StrEnum):
    """Pipeline schedule."""

    ONE_F_ONE_B = "1f1b"  # Narayanan et al. 2021, sec. 2.2.1 (PipeDream-Flush)
    INTERLEAVED = "interleaved"  # Narayanan et al. 2021, sec. 2.2.2
    ZERO_BUBBLE = "zero-bubble"  # Qi et al. 2023, ZB-H1 (ZB1P): W passes fill the cool-down bubble
    ZB_V = "zb-v"  # Qi et al. 2024, "Pipeline Parallelism with Controllable Memory": two chunks per rank, V order
    DUALPIPE = "dualpipe"  # DeepSeek-AI DualPipe: two directions, two stages per rank, F&B overlap
    GPIPE = "gpipe"  # Huang et al. 2019: all forwards, then all backwards

    @property
    def chunks_implied(self) -> int:
        """Model chunks per pipeline rank the schedule itself implies (interleaving takes ``vpp`` instead)."""
        return 2 if self in (Schedule.ZB_V, Schedule.DUALPIPE) else 1


SCHEDULE_ALIASES = {
    "1f1b": Schedule.ONE_F_ONE_B,
    "interleaved": Schedule.INTERLEAVED,
    "interleave": Schedule.INTERLEAVED,
    "zero-bubble": Schedule.ZERO_BUBBLE,
    "zb-h1": Schedule.ZERO_BUBBLE,
    "zbh1": Schedule.ZERO_BUBBLE,
    "zb1p": Schedule.ZERO_BUBBLE,
    "zb-v": Schedule.ZB_V,
    "zbv": Schedule.ZB_V,
    "dualpipe": Schedule.DUALPIPE,
    "dual-pipe": Schedule.DUALPIPE,
    "gpipe": Schedule.GPIPE,
}


# Megatron-Core's --recompute-modules (selective recomputation): what each selective plan recomputes.
RECOMPUTE_MODULES = ("core_attn", "layernorm", "moe_act", "mlp", "moe", "shared_experts", "mla_up_proj")
DEFAULT_RECOMPUTE_MODULES = ("core_attn",)

# What a plan may keep in host memory instead of device HBM: the optimizer state (ZeRO-Offload, Ren et al. 2021;
# Megatron-Core --optimizer-cpu-offload), the weights (ZeRO-Infinity parameter offload, Rajbhandari et al. 2021)
# and the activations saved for the backward (Megatron-Core --cpu-offloading). Written joined by '+'.
OFFLOAD_KINDS = ("optimizer", "weights", "activations")


class Fp8Recipe(enum.StrEnum):
    """How FP8 GEMM operands are scaled (Transformer Engine recipes; Micikevicius et al. 2022; OCP MX 1.0)."""

    TENSORWISE = "tensorwise"  # one scale per tensor, from the current amax
    DELAYED = "delayed"  # one scale per tensor, from an amax history
    BLOCKWISE = "blockwise"  # 1x128 activation / 128x128 weight blocks, scaled in software (DeepSeek-style)
    MXFP8 = "mxfp8"  # 32-element blocks with E8M0 scales applied by the matrix units (Blackwell, Trainium3)


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
    first. ``zero_stage`` 3 is FSDP; with ``shard_degree`` it is HSDP (ZeRO 1-3 over groups of that many
    data-parallel ranks, replicated across the rest). ``mbs`` and ``gbs`` count sequences.
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
    first_stage_layers: int | None = None  # Megatron --decoder-first-pipeline-num-layers
    last_stage_layers: int | None = None  # Megatron --decoder-last-pipeline-num-layers
    expert_tp_degree: int | None = None  # tensor parallelism inside the experts (Megatron ETP); None = tp
    tp_comm_overlap: bool = False  # TP collectives overlapped with their GEMMs (Megatron --tp-comm-overlap)
    moe_a2a_overlap: bool = False  # expert all-to-all overlapped with another micro-batch's compute
    capacity_factor: float | None = None  # tokens per expert capped at this x the mean; None = dropless
    routing_imbalance: float | None = None  # busiest expert's tokens / mean (dropless); None = fitted default
    fp8_recipe: Fp8Recipe | None = None  # None: the chip's native recipe (MXFP8 where supported)
    flash_attention: bool = True  # fused attention (FlashAttention); false = scores written to HBM
    fp8_attention: bool = False  # the fused attention's matmuls in FP8 (Transformer Engine FP8 DPA)
    # The fused attention runs FlashAttention-2's kernels (PyTorch SDPA's flash backend, torchtitan on Hopper)
    # instead of the vendor's (cuDNN, FlashAttention-3): slower where the chip has newer matrix instructions.
    flash2_attention: bool = False
    ep_domain_limit: int | None = None  # node-limited routing: a token reaches at most this many domains
    ep_dedup: bool = False  # DeepEP-style dispatch: a token crosses to each remote domain once, then fans out
    recompute_modules: tuple[str, ...] = DEFAULT_RECOMPUTE_MODULES  # what recompute=selective recomputes
    # recompute=full on the first N layers of every chunk only (Megatron --recompute-method block
    # --recompute-num-layers N); None = every layer. N past a chunk's layers recomputes the whole chunk.
    recompute_layers: int | None = None
    # What lives in host memory over the host link (some of OFFLOAD_KINDS); () = nothing offloaded.
    offload: tuple[str, ...] = ()
    # HSDP: ZeRO shards over groups of this many data-parallel ranks (the innermost ones), replicated dp/s times
    # (PyTorch FSDP HYBRID_SHARD, Zhao et al. 2023 sec. 3.2.2; ZeRO++ hpZ); None = the whole dp group.
    shard_degree: int | None = None

    def __post_init__(self) -> None:
        for name in ("tp_degree", "pp_degree", "dp_degree", "cp_degree", "ep_degree", "vpp_degree"):
            check_int_range(name, getattr(self, name), 1, MAX_DEVICES, "a whole number of devices")
        for name in ("mbs", "gbs"):
            check_int_range(name, getattr(self, name), 1, MAX_GLOBAL_BATCH, "a whole number of sequences")
        for name in ("expert_tp_degree", "ep_domain_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise field_error(name, value, "a positive integer or null")
        for name in ("first_stage_layers", "last_stage_layers"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise field_error(name, value, "a non-negative integer or null")
                if self.pp_degree == 1:
                    raise field_error(name, value, "null when pp=1 (one stage holds every layer)")
        if self.capacity_factor is not None and (
            isinstance(self.capacity_factor, bool)
            or not isinstance(self.capacity_factor, int | float)
            or not 0 < self.capacity_factor <= 64
        ):
            raise field_error("capacity_factor", self.capacity_factor, "a number in (0, 64] or null (dropless)")
        if self.routing_imbalance is not None and (
            isinstance(self.routing_imbalance, bool)
            or not isinstance(self.routing_imbalance, int | float)
            or not 1 <= self.routing_imbalance <= 64
        ):
            raise field_error("routing_imbalance", self.routing_imbalance, "a number in [1, 64] or null")
        for flag in (
            "sequence_parallel",
            "lora",
            "tp_comm_overlap",
            "moe_a2a_overlap",
            "flash_attention",
            "fp8_attention",
            "flash2_attention",
            "ep_dedup",
        ):
            if not isinstance(getattr(self, flag), bool):
                raise field_error(flag, getattr(self, flag), "true or false")
        if self.zero_stage not in (0, 1, 2, 3):
            raise field_error("zero_stage", self.zero_stage, "0, 1, 2 or 3 (3 = FSDP)")
        if self.shard_degree is not None:
            s = self.shard_degree
            if isinstance(s, bool) or not isinstance(s, int) or s < 1 or self.dp_degree % s:
                raise field_error(
                    "shard_degree", s, f"a divisor of dp={self.dp_degree} (data-parallel ranks per shard group) or null"
                )
            if self.zero_stage == 0:
                raise field_error("shard_degree", s, "null with zero=0 (HSDP shards ZeRO 1-3 state)")
        if self.precision not in MATMUL_PRECISIONS:
            allowed = ", ".join(p.value for p in MATMUL_PRECISIONS)
            raise field_error("precision", self.precision.value, f"a training matmul precision: {allowed}")
        if self.vpp_degree > 1 and self.pp_degree == 1:
            raise field_error("vpp", self.vpp_degree, "1 when pp=1 (interleaving needs a pipeline)")
        if self.vpp_degree > 1 and self.schedule is not Schedule.INTERLEAVED:
            raise field_error(
                "vpp", self.vpp_degree, f"1 with schedule={self.schedule.value} (vpp > 1 is the interleaved schedule)"
            )
        if self.schedule in (Schedule.ZB_V, Schedule.DUALPIPE, Schedule.ZERO_BUBBLE) and self.pp_degree == 1:
            raise field_error("schedule", self.schedule.value, "a pipeline (pp > 1)")
        if self.schedule is Schedule.DUALPIPE and self.pp_degree % 2:
            raise field_error("pp", self.pp_degree, "an even number with schedule=dualpipe (ranks pair up)")
        if self.sequence_parallel and self.tp_degree == 1:
            raise field_error("sp", True, "false when tp=1 (sequence parallelism splits over the TP group)")
        if self.tp_comm_overlap and self.tp_degree == 1:
            raise field_error("tp_overlap", True, "false when tp=1 (no tensor-parallel collectives to overlap)")
        modules = tuple(self.recompute_modules)
        if not modules or any(m not in RECOMPUTE_MODULES for m in modules):
            raise field_error(
                "recompute_modules", "+".join(map(str, modules)), f"some of {', '.join(RECOMPUTE_MODULES)}"
            )
        object.__setattr__(self, "recompute_modules", tuple(sorted(set(modules), key=RECOMPUTE_MODULES.index)))
        if self.recompute_layers is not None:
            n = self.recompute_layers
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise field_error("recompute_layers", n, "a positive integer (layers per chunk) or null (every layer)")
            if self.recompute is not Recompute.FULL:
                raise field_error("recompute_layers", n, "only with recompute=full")
        offload = tuple(self.offload)
        if any(k not in OFFLOAD_KINDS for k in offload):
            raise field_error("offload", "+".join(map(str, offload)), f"some of {', '.join(OFFLOAD_KINDS)}, or none")
        object.__setattr__(self, "offload", tuple(sorted(set(offload), key=OFFLOAD_KINDS.index)))
        if self.fp8_recipe is not None and self.precision is not Precision.FP8:
            raise field_error("fp8_recipe", self.fp8_recipe.value, "only with precision=fp8")
        if self.fp8_attention and (self.precision is not Precision.FP8 or not self.flash_attention):
            raise field_error("fp8_attention", True, "only with precision=fp8 and fused attention (flash=true)")
        if self.flash2_attention and (not self.flash_attention or self.fp8_attention):
            raise field_error("flash2", True, "only with fused 16-bit attention (flash=true, fp8_attention=false)")

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

    @property
    def chunks_per_rank(self) -> int:
        """Model chunks (virtual stages) each pipeline rank holds: vpp, or 2 for ZB-V and DualPipe."""
        return self.vpp_degree if self.schedule is Schedule.INTERLEAVED else self.schedule.chunks_implied

    @property
    def expert_tp(self) -> int:
        """Tensor parallelism inside the experts (the plan's ``expert_tp_degree``, else ``tp``)."""
        return self.expert_tp_degree if self.expert_tp_degree is not None else self.tp_degree

    def with_(self, **changes: Any) -> Plan:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif f.name == "offload":
                value = "+".join(value) or "none"
            elif isinstance(value, tuple):
                value = "+".join(value)
            out[_SHORT.get(f.name, f.name)] = value
        return out

    def describe(self) -> str:
        """The plan in the same ``key=value`` syntax :func:`parse_plan` reads (options at their default left out)."""
        return describe_plan_dict(self.to_dict())


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
    "first_stage_layers": "pp_first",
    "last_stage_layers": "pp_last",
    "expert_tp_degree": "etp",
    "tp_comm_overlap": "tp_overlap",
    "moe_a2a_overlap": "a2a_overlap",
    "capacity_factor": "capacity",
    "routing_imbalance": "imbalance",
    "flash_attention": "flash",
    "fp8_attention": "fp8_attention",
    "flash2_attention": "flash2",
    "ep_domain_limit": "ep_domains",
    "ep_dedup": "ep_dedup",
    "recompute_modules": "recompute_modules",
    "shard_degree": "shard",
}
# Options that describe() leaves out at their default (the degrees, batch and precision are always written).
OPTION_DEFAULTS: dict[str, Any] = {
    "pp_first": None,
    "pp_last": None,
    "etp": None,
    "tp_overlap": False,
    "a2a_overlap": False,
    "capacity": None,
    "imbalance": None,
    "fp8_recipe": None,
    "flash": True,
    "fp8_attention": False,
    "flash2": False,
    "ep_domains": None,
    "ep_dedup": False,
    "recompute_modules": "+".join(DEFAULT_RECOMPUTE_MODULES),
    "recompute_layers": None,
    "offload": "none",
    "lora": False,
    "shard": None,
}


def describe_plan_dict(plan: dict[str, Any]) -> str:
    """A plan's ``to_dict()`` in :func:`parse_plan` syntax, options at their default left out."""
    parts = []
    for key, value in plan.items():
        if key in OPTION_DEFAULTS and value == OPTION_DEFAULTS[key]:
            continue
        parts.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    return ",".join(parts)


_INT_KEYS = {"tp", "pp", "dp", "cp", "ep", "vpp", "mbs", "gbs", "etp", "ep_domains", "recompute_layers", "shard"}
_COUNT_KEYS = {"pp_first", "pp_last"}  # non-negative integers
_FLOAT_KEYS = {"capacity", "imbalance"}
_BOOL_KEYS = {
    "sp": "sequence_parallel",
    "lora": "lora",
    "tp_overlap": "tp_comm_overlap",
    "a2a_overlap": "moe_a2a_overlap",
    "flash": "flash_attention",
    "fp8_attention": "fp8_attention",
    "flash2": "flash2_attention",
    "ep_dedup": "ep_dedup",
}
_ALLOWED_KEYS = (
    *sorted(_INT_KEYS),
    *sorted(_COUNT_KEYS),
    *sorted(_FLOAT_KEYS),
    *sorted(_BOOL_KEYS),
    "zero",
    "fsdp",
    "recompute",
    "precision",
    "fp8_recipe",
    "recompute_modules",
    "offload",
    "schedule",
    "unit",
)
_KEY_ALIASES = {
    "first_stage_layers": "pp_first",
    "last_stage_layers": "pp_last",
    "expert_tp": "etp",
    "shard_degree": "shard",
    "hsdp": "shard",
}
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

    ``shard=N`` (alias ``shard_degree``) is HSDP's shard group in data-parallel ranks; ``hsdp=N`` is the same and,
    without ``zero`` or ``fsdp``, also sets ``zero=3`` (PyTorch FSDP's ``HYBRID_SHARD``).
    ``dp`` may be left out when ``num_devices`` is known: it is then ``ranks / (tp*pp*cp)``, ranks being devices
    (or ``num_devices * cores_per_device`` when ``unit=core``). Unknown
    keys, repeated keys and malformed values are one-line :class:`InputError` s naming the key.
    """
    values: dict[str, Any] = {}
    seen: set[str] = set()
    hsdp = False  # written as hsdp=N (FSDP's hybrid shard): ZeRO-3 unless zero or fsdp say otherwise
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key, raw = key.strip().lower(), raw.strip()
        hsdp = hsdp or key == "hsdp"
        key = _KEY_ALIASES.get(key, key)
        if not sep or not raw:
            raise InputError(f"plan: {quote(part)} is not key=value (keys: {', '.join(_ALLOWED_KEYS)})")
        if key not in _ALLOWED_KEYS:
            raise field_error(f"plan.{key}", raw, f"unknown key; allowed: {', '.join(_ALLOWED_KEYS)}")
        if key in seen:
            raise field_error(f"plan.{key}", raw, "each key once")
        seen.add(key)
        if key in _INT_KEYS or key in _COUNT_KEYS:
            lowest = 0 if key in _COUNT_KEYS else 1
            what = "a non-negative integer" if lowest == 0 else "a positive integer"
            try:
                number = int(raw)
            except ValueError:
                raise field_error(key, raw, what) from None
            if number < lowest:
                raise field_error(key, raw, what)
            values[_LONG.get(key, key)] = number
        elif key in _FLOAT_KEYS:
            try:
                real = float(raw)
            except ValueError:
                raise field_error(key, raw, "a number") from None
            if not math.isfinite(real):
                raise field_error(key, raw, "a finite number")
            values[_LONG.get(key, key)] = real
        elif key in _BOOL_KEYS:
            values[_BOOL_KEYS[key]] = _parse_bool(key, raw)
        elif key == "fp8_recipe":
            values["fp8_recipe"] = _parse_enum(Fp8Recipe, key, raw)
        elif key == "recompute_modules":
            modules = tuple(m.strip().lower() for m in raw.replace("+", " ").split() if m.strip())
            if not modules or any(m not in RECOMPUTE_MODULES for m in modules):
                raise field_error(key, raw, f"modules joined by '+', from {', '.join(RECOMPUTE_MODULES)}")
            values["recompute_modules"] = modules
        elif key == "offload":
            kinds = tuple(k.strip().lower() for k in raw.replace("+", " ").split() if k.strip())
            if kinds == ("none",):
                kinds = ()
            if (not kinds and raw.lower() != "none") or any(k not in OFFLOAD_KINDS for k in kinds):
                raise field_error(key, raw, f"none, or kinds joined by '+', from {', '.join(OFFLOAD_KINDS)}")
            values["offload"] = kinds
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
            if raw.lower() not in SCHEDULE_ALIASES:
                raise field_error(key, raw, f"allowed: {', '.join(m.value for m in Schedule)}")
            values["schedule"] = SCHEDULE_ALIASES[raw.lower()]
    if hsdp and "zero" not in seen and "fsdp" not in seen:
        values["zero_stage"] = 3
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
    plan = Plan(**values)
    if "gbs" not in seen:  # never a silent batch of one sequence
        raise field_error("plan.gbs", "missing", "gbs=N, the global batch in sequences (a multiple of dp*mbs)")
    return plan


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
    layout_problem = pipeline_problem(
        shape.num_layers,
        plan.pp_degree,
        plan.chunks_per_rank,
        first=plan.first_stage_layers,
        last=plan.last_stage_layers,
    )
    if layout_problem is not None:
        return bad(layout_problem)
    if plan.gbs % (plan.dp_degree * plan.mbs):
        return bad(f"gbs {plan.gbs} not divisible by dp*mbs={plan.dp_degree * plan.mbs}")
    m = plan.num_microbatches
    if plan.schedule is Schedule.INTERLEAVED and m < plan.pp_degree:
        # Megatron-Core runs the interleaved schedule with any micro-batch count of at least pp (groups of
        # microbatch_group_size_per_vp_stage = pp; the last group may be short); fewer cannot fill the pipeline.
        return bad(f"interleaved schedule needs at least pp={plan.pp_degree} micro-batches, got {m}")
    if plan.schedule is Schedule.DUALPIPE and (m % 2 or m < 2 * plan.pp_degree):
        # DualPipe.step asserts an even micro-batch count of at least twice the ranks (deepseek-ai/DualPipe).
        return bad(f"dualpipe needs an even micro-batch count >= 2*pp={2 * plan.pp_degree}, got {m}")
    if plan.schedule is Schedule.ZB_V and m < plan.pp_degree:
        return bad(f"zb-v needs at least pp={plan.pp_degree} micro-batches, got {m}")
    if num_experts is None:
        if plan.ep_degree > 1:
            return bad(f"ep={plan.ep_degree} needs a mixture-of-experts model")
    else:
        if num_experts % plan.ep_degree:
            return bad(f"experts {num_experts} not divisible by ep={plan.ep_degree}")
        etp = plan.expert_tp
        if (plan.tp_degree * plan.dp_degree * plan.cp_degree) % (etp * plan.ep_degree):
            # Megatron-Core regroups the same ranks for the expert layers as etp x ep x expert-dp ("MoE parallel
            # folding"); with etp = tp this is the classic rule that ep divides dp*cp.
            return bad(f"etp*ep={etp * plan.ep_degree} must divide tp*dp*cp={plan.num_ranks // plan.pp_degree}")
    if num_experts is None and plan.expert_tp_degree is not None and plan.expert_tp_degree != plan.tp_degree:
        return bad(f"etp={plan.expert_tp_degree} needs a mixture-of-experts model")
    return None
