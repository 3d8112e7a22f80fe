"""What a framework's launch configuration says, in rainier's terms, and the pieces every reader and writer shares.

An import yields one :class:`LaunchConfig`: the model (when the file states it fully, or names a catalog model),
the training :class:`~rainier.parallel.Plan` or the serving :class:`~rainier.serve.estimate.ServeConfig`, the
cluster size where the file states it, and two honest lists: ``notes`` (what was assumed: a framework default,
an approximate mapping) and ``ignored`` (keys read but not modelled: learning rates, paths, logging). Nothing in
a file is dropped without appearing in one of them or in the result.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from rainier.errors import InputError, UnknownNameError, clip, field_error
from rainier.parallel.plan import Plan
from rainier.serve.estimate import ServeConfig
from rainier.workload.registry import get_model
from rainier.workload.shape import TransformerShape


class Framework(enum.StrEnum):
    """The frameworks whose launch configurations rainier writes and reads (the ``--to`` / ``--from`` names)."""

    MEGATRON = "megatron"  # NVIDIA Megatron-LM pretrain_gpt.py arguments
    NEMO = "nemo"  # NeMo recipe YAML (NeMo 1's megatron_gpt_config keys)
    MAXTEXT = "maxtext"  # Google MaxText config YAML
    NXD = "nxd"  # AWS neuronx-distributed-training config YAML
    VLLM = "vllm"  # vllm serve arguments
    TRTLLM = "trtllm"  # TensorRT-LLM LLM API options YAML (trtllm-serve --extra_llm_api_options) or trtllm-serve flags
    BRIDGE = "bridge"  # Megatron-Bridge (NeMo 2) ConfigContainer YAML, as its recipes dump it
    SGLANG = "sglang"  # python -m sglang.launch_server arguments

    @property
    def serving(self) -> bool:
        return self in (Framework.VLLM, Framework.TRTLLM, Framework.SGLANG)

    @classmethod
    def parse(cls, text: str, field: str = "to") -> Framework:
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise field_error(field, text, f"one of {', '.join(f.value for f in cls)}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatedCluster:
    """The devices a launch configuration states: nodes x devices per node (GPUs, TPU chips or NeuronCores)."""

    num_nodes: int
    devices_per_node: int
    unit: str = "device"  # "core" for NeuronCores (NxD's trainer.devices)

    @property
    def num_devices(self) -> int:
        return self.num_nodes * self.devices_per_node

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_nodes": self.num_nodes,
            "devices_per_node": self.devices_per_node,
            "num_devices": self.num_devices,
            "unit": self.unit,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class LaunchConfig:
    """One imported launch configuration: model, plan or serving layout, cluster where stated, and what was not read."""

    framework: Framework
    source: str
    model: TransformerShape | None
    model_name: str | None  # the name or path the file gives for the model (a HF id, a MaxText model_name ...)
    model_missing: tuple[str, ...] = ()  # shape fields the file does not state (when ``model`` is None)
    plan: Plan | None = None
    serve: ServeConfig | None = None
    cluster: StatedCluster | None = None
    notes: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework.value,
            "source": self.source,
            "model_name": self.model_name,
            "model": self.model.to_dict() if self.model is not None else None,
            "model_missing": list(self.model_missing),
            "plan": self.plan.describe() if self.plan is not None else None,
            "serve": self.serve.to_dict() if self.serve is not None else None,
            "cluster": self.cluster.to_dict() if self.cluster is not None else None,
            "notes": list(self.notes),
            "ignored": list(self.ignored),
        }


def not_expressible(framework: Framework, field: str, value: object, why: str) -> InputError:
    """The one-line refusal of a plan field that ``framework`` cannot express."""
    return InputError(f"{field}={clip(repr(value))} cannot be written for {framework.value}: {why}")


_SUFFIXES = ("-instruct", "-chat", "-hf", "-fp8", "-fp4", "-base")


def catalog_model_for(name: str) -> TransformerShape | None:
    """The catalog model a framework's model name denotes, or ``None``: exact ids and aliases first, then the id
    spelled the way Hugging Face repositories and MaxText name models (``meta-llama/Meta-Llama-3.1-70B-Instruct``,
    ``llama3-8b``), with the organisation, a ``Meta-`` prefix and instruct/precision suffixes taken off."""
    candidates = [name]
    base = name.rsplit("/", 1)[-1].lower()
    for _ in range(3):
        for suffix in _SUFFIXES:
            base = base.removesuffix(suffix)
    base = base.removeprefix("meta-")
    candidates += [base, re.sub(r"^(llama|mixtral|qwen)(\d)", r"\1-\2", base)]
    for candidate in candidates:
        try:
            return get_model(candidate)
        except UnknownNameError:
            continue
    return None


_MATCH_FIELDS = ("num_layers", "hidden_dim", "num_heads", "num_kv_heads", "ffn_hidden_dim")


def match_catalog(stated: dict[str, int]) -> tuple[TransformerShape | None, str]:
    """The one catalog model whose layers, width, heads, KV heads and MLP width equal those ``stated``, and a note.

    Frameworks that take the vocabulary from a tokenizer file (NeMo, Megatron with a BPE vocab file) do not state
    it; a unique catalog match supplies it, and the note says so. Several or no matches leave the model open.
    """
    from rainier.workload.registry import models

    registry = models()
    experts = stated.get("num_experts", 0)
    hits = [
        shape
        for name in registry.ids()
        if all(getattr(shape := registry.get(name), f) == stated[f] for f in _MATCH_FIELDS if f in stated)
        and (shape.moe.num_experts if shape.moe is not None else 0) == experts
    ]
    if len(hits) == 1:
        return hits[0], f"vocabulary not stated; the other dimensions match catalog model {hits[0].name}, used"
    if hits:
        names = ", ".join(h.name for h in hits[:4])
        return None, f"vocabulary not stated; the dimensions match several catalog models ({names}): give --model"
    return None, "vocabulary not stated and no catalog model has these dimensions: give --model"


def refuse_options(framework: Framework, plan: Plan, supported: set[str], why: str) -> None:
    """Refuse (one line naming the option) any plan option away from its default that ``framework`` cannot say."""
    from rainier.parallel.plan import OPTION_DEFAULTS

    for key, value in plan.to_dict().items():
        if key in OPTION_DEFAULTS and key not in supported and value != OPTION_DEFAULTS[key]:
            raise not_expressible(framework, key, value, why)


def check_stated(plan: Plan, shape: TransformerShape | None, notes: list[str]) -> None:
    """Note (not refuse) a stated plan that does not divide the stated model: the file says what it says."""
    if shape is None:
        return
    from rainier.parallel.plan import check_plan

    problem = check_plan(
        plan, shape, plan.num_ranks, num_experts=shape.moe.num_experts if shape.moe is not None else None
    )
    if problem is not None:
        notes.append(f"as stated the plan cannot run this model: {problem.reason}")
