"""A validation case's ``parallel`` block as a :class:`~rainier.parallel.Plan`, with the assumptions it needs.

Field meanings are those of validation/README.md ("Training case", conventions 1-7, and the optional fields).
Where the block says ``null`` (not published) a value is supplied and recorded as an :class:`Assumption` that
reports show: ``micro_batch`` -> 1, ``vpp`` -> 1 (plain 1F1B), ``sequence_parallel`` -> off,
``zero_stage``/``fsdp`` -> 0 (``fsdp: true`` -> 3, convention 5), ``recompute`` -> none, ``precision`` -> fp8
when the notes say FP8 else bf16; ``cp``/``ep`` default to 1. The schedule is read from the block's free-text
``schedule`` (DualPipe, ZB-V, zero bubble / ZB-H1, GPipe), else interleaved when ``vpp > 1``, else 1F1B
(convention 4). ``sequence_parallel: true`` with ``tp = 1`` (Megatron accepts the flag and does nothing) is read
as off. NeuronCore degrees stay in core units (``DegreeUnit.CORE``, convention 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rainier.catalog.loader import Fields
from rainier.parallel import DegreeUnit, Schedule
from rainier.parallel.plan import Fp8Recipe
from rainier.precision import Precision
from rainier.workload import Recompute


@dataclass(frozen=True, slots=True, kw_only=True)
class Assumption:
    """A value rainier supplies where the case leaves it open: the field, and a sentence saying what and why."""

    field: str
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "text": self.text}


# validation/README.md, "Training case": degrees_unit device|neuroncore (convention 1).
UNITS = {"device": DegreeUnit.DEVICE, "neuroncore": DegreeUnit.CORE}
RECOMPUTE = tuple(r.value for r in Recompute)
# Trainium-/Neuron-style weight-only quantisation is recorded as bf16 (convention 7); int8 matmul training is
# not a plan rainier models, so such a case is skipped rather than rejected.
PRECISIONS = ("bf16", "fp16", "fp8", "int8")
FP8_RECIPES = tuple(r.value for r in Fp8Recipe)
# fp8: fused, with FP8 matmuls (TE FP8 DPA); flash2: fused, FlashAttention-2's kernels (PyTorch SDPA's flash backend)
ATTENTION_KERNELS = ("fused", "unfused", "fp8", "flash2")
# Free-text schedule names, most specific first (the README keeps the source's wording in `schedule`).
SCHEDULE_WORDS: tuple[tuple[tuple[str, ...], Schedule], ...] = (
    (("dualpipe", "dual-pipe", "dual pipe"), Schedule.DUALPIPE),
    (("zb-v", "zbv", "zero bubble v", "zero-bubble-v", "v-shape"), Schedule.ZB_V),
    (("zb-h1", "zbh1", "zb1p", "zero bubble", "zero-bubble", "zerobubble"), Schedule.ZERO_BUBBLE),
    (("gpipe",), Schedule.GPIPE),
)


def schedule_from_text(text: str, vpp: int) -> Schedule:
    """The schedule a case's free-text ``schedule`` names, else interleaved (vpp > 1) or 1F1B."""
    low = text.lower()
    for words, schedule in SCHEDULE_WORDS:
        if any(w in low for w in words):
            return schedule
    return Schedule.INTERLEAVED if vpp > 1 else Schedule.ONE_F_ONE_B


LORA_MARKER = "lora"


@dataclass(frozen=True, slots=True, kw_only=True)
class ParallelBlock:
    """A case's ``parallel`` block as read, before it becomes a :class:`Plan`."""

    values: dict[str, Any]
    assumptions: tuple[Assumption, ...]
    attention: str = ""  # "fused", "unfused", "fp8" (fused FP8), or "" when the case does not say


def read_parallel(reader: Fields, notes: str = "") -> ParallelBlock:
    """Plan keyword arguments from a case's ``parallel`` block; each null filled is recorded as an Assumption."""
    assumed: list[Assumption] = []
    unit = UNITS[reader.choice("degrees_unit", tuple(UNITS))]
    tp, pp, dp = reader.integer("tp"), reader.integer("pp"), reader.integer("dp")
    cp = reader.integer("cp", required=False, default=1)
    ep = reader.integer("ep", required=False, default=1)
    gbs = reader.integer("global_batch")
    if reader.has("vpp"):
        vpp = reader.integer("vpp")
    else:
        reader.integer("vpp", required=False, default=1)
        vpp = 1
        if pp > 1:  # README convention 4: null = not stated; 1 (plain 1F1B) is the conservative reading
            assumed.append(Assumption(field="vpp", text="vpp null: non-interleaved 1F1B (vpp=1) assumed"))
    if reader.has("micro_batch"):
        mbs = reader.integer("micro_batch")
    else:
        reader.integer("micro_batch", required=False, default=1)
        mbs = 1
        assumed.append(Assumption(field="micro_batch", text="micro_batch null: 1 sequence per micro-batch assumed"))
    sp = reader.boolean("sequence_parallel", required=False)
    if not reader.has("sequence_parallel") and tp > 1:
        assumed.append(Assumption(field="sequence_parallel", text="sequence_parallel null: off assumed"))
    if sp and tp == 1:
        sp = False
        assumed.append(
            Assumption(
                field="sequence_parallel", text="sequence_parallel true with tp=1: a no-op in Megatron, read as off"
            )
        )
    fsdp = reader.boolean("fsdp", required=False)
    zero = reader.integer("zero_stage", required=False, default=-1, minimum=0)
    if fsdp:  # README convention 5: fsdp true implies ZeRO stage 3
        if zero not in (-1, 3):
            raise reader.error(f"zero_stage={zero} is invalid: 3 (or null) when fsdp is true")
        zero = 3
    elif zero == -1:
        zero = 0
        assumed.append(Assumption(field="zero_stage", text="zero_stage null: optimizer state not sharded (ZeRO-0)"))
    recompute_text = reader.choice("recompute", RECOMPUTE, required=False)
    if not recompute_text:
        assumed.append(Assumption(field="recompute", text="recompute null: no activation recomputation assumed"))
    precision_text = reader.choice("precision", PRECISIONS, required=False)
    if not precision_text:
        precision_text = "fp8" if "fp8" in notes.lower() else "bf16"
        assumed.append(
            Assumption(field="precision", text=f"precision null: {precision_text} assumed (from the case's notes)")
        )
    schedule_text = reader.string("schedule", required=False)
    first = _optional_count(reader, "first_stage_layers")
    last = _optional_count(reader, "last_stage_layers")
    etp = reader.integer("expert_tp", required=False, default=0, minimum=0) or None
    recipe = reader.choice("fp8_recipe", FP8_RECIPES, required=False)
    capacity = reader.optional_number("moe_capacity_factor", sourced=False)
    imbalance = reader.optional_number("routing_imbalance", sourced=False)
    a2a = reader.boolean("a2a_overlap", required=False, default=False)
    attention = reader.choice("attention", ATTENTION_KERNELS, required=False)
    modules = reader.items("recompute_modules", required=False)
    offload = reader.string("offload", required=False)
    if offload:
        assumed.append(Assumption(field="offload", text=f"offload ({offload}): not modelled, ignored"))
    reader.finish()
    schedule = schedule_from_text(schedule_text, vpp)
    if schedule is not Schedule.INTERLEAVED and vpp > 1:
        schedule = Schedule.INTERLEAVED
    values: dict[str, Any] = {
        "tp_degree": tp,
        "pp_degree": pp,
        "dp_degree": dp,
        "cp_degree": cp,
        "ep_degree": ep,
        "vpp_degree": vpp,
        "sequence_parallel": sp,
        "zero_stage": zero,
        "mbs": mbs,
        "gbs": gbs,
        "recompute": Recompute(recompute_text or Recompute.NONE.value),
        "precision": Precision.parse(precision_text),
        "schedule": schedule,
        "degrees_unit": unit,
        "first_stage_layers": first if pp > 1 else None,
        "last_stage_layers": last if pp > 1 else None,
        "expert_tp_degree": etp if ep > 1 or etp not in (None, tp) else None,
        "fp8_recipe": Fp8Recipe(recipe) if recipe and precision_text == "fp8" else None,
        "capacity_factor": capacity,
        "routing_imbalance": imbalance,
        **({"recompute_modules": tuple(str(m) for m in modules)} if modules else {}),
        "moe_a2a_overlap": a2a or schedule is Schedule.DUALPIPE,
    }
    return ParallelBlock(values=values, assumptions=tuple(assumed), attention=attention)


def _optional_count(reader: Fields, key: str) -> int | None:
    value = reader.integer(key, required=False, default=-1, minimum=0)
    return None if value < 0 else value


def is_lora(case_id: str, group: str) -> bool:
    """MLPerf Llama 2 70B LoRA fine-tuning (README, "Sources"): the only fine-tuning cases, named as such."""
    return LORA_MARKER in group.lower() or LORA_MARKER in case_id.lower()


LORA_ASSUMPTION = Assumption(
    field="lora",
    text="LoRA fine-tuning timed with the plan's lora option (frozen base weights: no weight-gradient GEMMs, "
    "gradient reduction or optimizer for them); the adapters' own FLOPs and memory are neglected",
)
