"""A validation case's ``parallel`` block as a :class:`~rainier.parallel.Plan`, with the assumptions it needs.

Field meanings are those of validation/README.md ("Training case", conventions 1-7). Where the block says
``null`` (not published) a value is supplied and recorded as an :class:`Assumption` that reports show:
``micro_batch`` -> 1, ``vpp`` -> 1 (plain 1F1B), ``sequence_parallel`` -> off, ``zero_stage``/``fsdp`` -> 0
(``fsdp: true`` -> 3, convention 5), ``recompute`` -> none; ``cp``/``ep`` default to 1. The schedule is
interleaved when ``vpp > 1``, else 1F1B (convention 4); the block's ``schedule`` text is the source's wording.
NeuronCore degrees stay in core units (``DegreeUnit.CORE``, convention 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rainier.catalog.loader import Fields
from rainier.parallel import DegreeUnit, Schedule
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
LORA_MARKER = "lora"


@dataclass(frozen=True, slots=True, kw_only=True)
class ParallelBlock:
    """A case's ``parallel`` block as read, before it becomes a :class:`Plan`."""

    values: dict[str, Any]
    assumptions: tuple[Assumption, ...]


def read_parallel(reader: Fields) -> ParallelBlock:
    """Plan keyword arguments from a case's ``parallel`` block; each null filled is recorded as an Assumption."""
    notes: list[Assumption] = []
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
            notes.append(Assumption(field="vpp", text="vpp null: non-interleaved 1F1B (vpp=1) assumed"))
    if reader.has("micro_batch"):
        mbs = reader.integer("micro_batch")
    else:
        reader.integer("micro_batch", required=False, default=1)
        mbs = 1
        notes.append(Assumption(field="micro_batch", text="micro_batch null: 1 sequence per micro-batch assumed"))
    sp = reader.boolean("sequence_parallel", required=False)
    if not reader.has("sequence_parallel") and tp > 1:
        notes.append(Assumption(field="sequence_parallel", text="sequence_parallel null: off assumed"))
    fsdp = reader.boolean("fsdp", required=False)
    zero = reader.integer("zero_stage", required=False, default=-1, minimum=0)
    if fsdp:  # README convention 5: fsdp true implies ZeRO stage 3
        if zero not in (-1, 3):
            raise reader.error(f"zero_stage={zero} is invalid: 3 (or null) when fsdp is true")
        zero = 3
    elif zero == -1:
        zero = 0
        notes.append(Assumption(field="zero_stage", text="zero_stage null: optimizer state not sharded (ZeRO-0)"))
    recompute_text = reader.choice("recompute", RECOMPUTE, required=False)
    if not recompute_text:
        notes.append(Assumption(field="recompute", text="recompute null: no activation recomputation assumed"))
    precision_text = reader.choice("precision", PRECISIONS)
    reader.string("schedule", required=False)  # free text from the source; the schedule follows vpp (below)
    reader.finish()
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
        "schedule": Schedule.INTERLEAVED if vpp > 1 else Schedule.ONE_F_ONE_B,
        "degrees_unit": unit,
    }
    return ParallelBlock(values=values, assumptions=tuple(notes))


def is_lora(case_id: str, group: str) -> bool:
    """MLPerf Llama 2 70B LoRA fine-tuning (README, "Sources"): the only fine-tuning cases, named as such."""
    return LORA_MARKER in group.lower() or LORA_MARKER in case_id.lower()


LORA_ASSUMPTION = Assumption(
    field="lora",
    text="LoRA fine-tuning timed with the plan's lora option (frozen base weights: no weight-gradient GEMMs, "
    "gradient reduction or optimizer for them); the adapters' own FLOPs and memory are neglected",
)
