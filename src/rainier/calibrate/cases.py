"""Validation cases: published training and inference runs read from ``validation/*.yaml`` into typed objects.

The schema is that of ``validation/README.md`` ("Training case", "Inference case", "Conventions"). A file is
read strictly: ``schema_version: 1``, ``kind: training|inference`` and a ``cases`` list; a malformed file or a
case missing a required field is one :class:`~rainier.errors.InputError` line naming the file, the case and
the field. A well-formed case that rainier cannot express (an unknown accelerator, a plan whose degrees do
not divide the model) becomes a :class:`SkippedCase` with its reason, never silently dropped. Where the file
leaves a plan field ``null`` the value assumed is recorded in the case's ``assumptions`` and shown in reports.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rainier.calibrate.plan_block import LORA_ASSUMPTION, Assumption, ParallelBlock, is_lora, read_parallel
from rainier.catalog.loader import CatalogError, Fields, load_yaml
from rainier.errors import InputError, UnknownNameError
from rainier.hardware import Accelerator, Cluster, cluster_of, get_accelerator
from rainier.parallel import DegreeUnit, Plan, check_plan
from rainier.precision import Precision
from rainier.workload import TransformerShape, shape_from_validation_model

SCHEMA_VERSION = 1


class CaseKind(enum.StrEnum):
    """What a cases file holds (validation/README.md, top of file)."""

    TRAINING = "training"
    INFERENCE = "inference"


class Trust(enum.StrEnum):
    """Trust tier of a case (validation/README.md, "Trust tiers")."""

    A = "A"  # full configuration published and a measured number
    B = "B"  # good configuration with gaps, simulated with stated assumptions
    C = "C"  # coarse: sanity checks only


class Metric(enum.StrEnum):
    """Training target metrics (validation/README.md, "Metrics")."""

    STEP_TIME_S = "step_time_s"
    TOKENS_PER_S_PER_DEVICE = "tokens_per_s_per_device"
    MODEL_TFLOPS_PER_DEVICE = "model_tflops_per_device"
    MFU = "mfu"


class Basis(enum.StrEnum):
    """Whether a target is the published number or computed from published numbers (README, "Metrics")."""

    MEASURED = "measured"
    DERIVED = "derived"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingCase:
    """One published training run: model shape, accelerator and count, plan, and the measured target."""

    id: str
    group: str
    trust: Trust
    source: str
    shape: TransformerShape
    accelerator: str
    count: int
    plan: Plan
    metric: Metric
    value: float
    basis: Basis
    assumptions: tuple[Assumption, ...] = ()
    # Forward-only evaluation sequences per training sequence that the measured time includes (``target.
    # eval_per_train_sequence``): a derived step time whose timed block ends only after an evaluation pass.
    eval_per_train_sequence: float = 0.0

    @property
    def device(self) -> Accelerator:
        return get_accelerator(self.accelerator)

    @property
    def family(self) -> str:
        """The accelerator's efficiency family (``nvidia-hopper``, ``tpu`` ...), the key of its fitted efficiencies."""
        return str(self.device.efficiency_family)

    @property
    def cluster(self) -> Cluster:
        """An ad-hoc cluster of ``count`` devices of the accelerator's default system (built once)."""
        return _cluster(self.accelerator, self.count)

    @property
    def seq_len(self) -> int:
        return self.shape.seq_len


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceCase:
    """One published inference run, its fields kept as read (no serving model consumes them yet)."""

    id: str
    group: str
    trust: Trust
    source: str
    model: Mapping[str, Any]
    system: Mapping[str, Any]
    serving: Mapping[str, Any]
    targets: tuple[Mapping[str, Any], ...]
    notes: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SkippedCase:
    """A well-formed case that rainier cannot evaluate, and why."""

    id: str
    group: str
    trust: Trust
    reason: str


Case = TrainingCase | InferenceCase | SkippedCase


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseFile:
    """The cases of one file, in file order; skipped ones included."""

    path: str
    kind: CaseKind
    cases: tuple[Case, ...] = field(default_factory=tuple)

    @property
    def training(self) -> tuple[TrainingCase, ...]:
        return tuple(c for c in self.cases if isinstance(c, TrainingCase))

    @property
    def skipped(self) -> tuple[SkippedCase, ...]:
        return tuple(c for c in self.cases if isinstance(c, SkippedCase))

    @property
    def groups(self) -> tuple[str, ...]:
        """Group names in order of first appearance."""
        return tuple(dict.fromkeys(c.group for c in self.cases))


@functools.cache
def _cluster(accelerator: str, count: int) -> Cluster:
    return cluster_of(accelerator, count)


# ----------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------


def load_cases(path: Path | str) -> CaseFile:
    """Read a validation cases file (training or inference) strictly; see the module docstring."""
    path = Path(path)
    raw = load_yaml(path)
    if not isinstance(raw, Mapping) or set(raw) != {"schema_version", "kind", "cases"}:
        found = sorted(map(str, raw)) if isinstance(raw, Mapping) else type(raw).__name__
        raise CatalogError(f"{path}: expected top-level keys schema_version, kind, cases; found {found}")
    if raw["schema_version"] != SCHEMA_VERSION:
        raise CatalogError(f"{path}: schema_version={raw['schema_version']!r} is invalid: allowed: {SCHEMA_VERSION}")
    kinds = tuple(k.value for k in CaseKind)
    if raw["kind"] not in kinds:
        raise CatalogError(f"{path}: kind={raw['kind']!r} is invalid: allowed: {', '.join(kinds)}")
    kind = CaseKind(raw["kind"])
    items = raw["cases"]
    if not isinstance(items, list) or not items:
        raise CatalogError(f"{path}: 'cases' must be a non-empty list")
    cases: list[Case] = []
    seen: set[str] = set()
    for position, item in enumerate(items):
        label = item.get("id") if isinstance(item, Mapping) else None
        where = f"case {label}" if isinstance(label, str) and label else f"cases[{position}]"
        reader = Fields(item, path=path, where=where, sources=None)
        try:
            case = _read_training(reader, path) if kind is CaseKind.TRAINING else _read_inference(reader)
        except (InputError, CatalogError, ValueError) as exc:
            # A case that cannot be read never aborts the file: it is skipped with its reason (issue 11).
            case = _unreadable(item, position, str(exc))
        if case.id in seen:
            case = SkippedCase(
                id=f"{case.id}#{position}", group=case.group, trust=case.trust, reason=f"duplicate id {case.id!r}"
            )
        seen.add(case.id)
        cases.append(case)
    return CaseFile(path=str(path), kind=kind, cases=tuple(cases))


def _unreadable(item: Any, position: int, reason: str) -> SkippedCase:
    """A skipped stand-in for a case that could not be read (its id, group and trust where they can be told)."""
    raw = item if isinstance(item, Mapping) else {}
    case_id = raw.get("id") if isinstance(raw.get("id"), str) and raw.get("id") else f"cases[{position}]"
    group = raw.get("group") if isinstance(raw.get("group"), str) and raw.get("group") else "(unreadable)"
    trust_text = raw.get("trust")
    trust = Trust(trust_text) if trust_text in tuple(t.value for t in Trust) else Trust.C
    return SkippedCase(id=str(case_id), group=str(group), trust=trust, reason=f"cannot be read: {reason}")


@dataclass(frozen=True, slots=True)
class _Header:
    id: str
    group: str
    trust: Trust
    source: str
    notes: str


def _header(reader: Fields) -> _Header:
    return _Header(
        id=reader.string("id").strip(),
        group=reader.string("group").strip(),
        trust=Trust(reader.choice("trust", tuple(t.value for t in Trust))),
        source=reader.string("source"),
        notes=reader.string("notes", required=False),
    )


def _read_inference(reader: Fields) -> InferenceCase:
    head = _header(reader)
    model = reader.mapping("model")
    system = reader.mapping("system")
    serving = reader.mapping("serving")
    targets = reader.items("targets")
    if not targets or not all(isinstance(t, Mapping) for t in targets):
        raise reader.error("targets must be a non-empty list of {metric, value, basis, note}")
    reader.finish()
    return InferenceCase(
        id=head.id,
        group=head.group,
        trust=head.trust,
        source=head.source,
        model=model,
        system=system,
        serving=serving,
        targets=tuple(dict(t) for t in targets),
        notes=head.notes,
    )


MAX_EVAL_PER_TRAIN_SEQUENCE = 10.0  # evaluation sequences per training sequence folded into a timed block


def _read_target(reader: Fields) -> tuple[Metric, float, Basis, float]:
    metric = Metric(reader.choice("metric", tuple(m.value for m in Metric)))
    value = reader.number("value", sourced=False)
    basis = Basis(reader.choice("basis", tuple(b.value for b in Basis)))
    reader.string("note", required=False)
    eval_share = reader.number(
        "eval_per_train_sequence", required=False, default=0.0, exclusive_minimum=False,
        maximum=MAX_EVAL_PER_TRAIN_SEQUENCE, sourced=False,
    )  # fmt: skip
    reader.finish()
    return metric, value, basis, eval_share


def _read_system(reader: Fields) -> tuple[str, int]:
    accelerator = reader.string("accelerator").strip().lower()
    if not reader.has("count"):
        raise reader.error("count null: the device count is not published, so the run cannot be timed")
    count = reader.integer("count", sourced=False)
    reader.integer("devices_per_node", required=False, default=1, sourced=False)
    reader.string("scale_up", required=False)
    reader.string("scale_out", required=False)
    reader.finish()
    return accelerator, count


def _sub(reader: Fields, key: str) -> Fields:
    sub = reader.sub(key)
    assert sub is not None  # required=True raises instead of returning None
    return sub


# Framework options a case's notes may name, and what they imply for a field the structured block leaves null.
# Megatron-LM accepts --tp-comm-overlap only with --sequence-parallel (arguments.py); "distributed optimizer"
# is recorded as zero_stage 1 by the validation README (convention 5).
TP_COMM_OVERLAP_MARKERS = ("tp-comm-overlap", "tp comm overlap", "tp_comm_overlap", "async tp", "asynctp", "async-tp")
NEGATIONS = ("off", "false", "not set", "disabled", "=0", "none")
NEGATION_WINDOW = 24  # characters after a marker searched for a negation ("TP comm overlap off")


def mentions_on(text: str, markers: tuple[str, ...]) -> bool:
    """Whether ``text`` names an option (any of ``markers``) without negating it right after ("... off")."""
    low = text.lower()
    found = False
    for marker in markers:
        start = low.find(marker)
        while start >= 0:
            after = low[start + len(marker) : start + len(marker) + NEGATION_WINDOW]
            if any(word in after for word in NEGATIONS):
                return False
            found = True
            start = low.find(marker, start + 1)
    return found


DISTRIBUTED_OPTIMIZER_MARKERS = ("distributed optimizer",)
DEEPEP_MARKERS = ("deepep",)
# Transformer Engine's FP8 dot-product attention (NeMo/MLPerf FP8_DPA=1, Megatron --fp8-dot-product-attention).
FP8_ATTENTION_MARKERS = ("fp8_dpa=1", "fp8 dot-product attention", "fp8-dot-product-attention")
# NVIDIA's published NeMo performance runs (performance summaries, DGX Cloud benchmarking recipes, MLPerf
# submissions built on NeMo) enable userbuffer TP comm overlap whenever TP > 1 with sequence parallelism
# (NeMo 1.0 perf configs `ub_tp_comm_overlap: true`; NeMo 2.0 `MegatronCommOverlapCallback(tp_comm_overlap=True)`).
NEMO_SOURCES = (
    "nemo",
    "megatron-bridge",
    "dgxc-benchmarking",
)  # DeepEP dispatcher: one copy of a token per remote node (deduplicated dispatch)
# FlashAttention was released in May 2022 (Dao et al., arXiv:2205.14135) and reached Megatron-LM, NeMo and
# Megatron-DeepSpeed through Transformer Engine and FlashAttention-2 in 2023. A case that does not name its
# attention kernel ran fused attention unless its source is from 2022 or earlier (unfused: scores in HBM).
LAST_UNFUSED_YEAR = 2022
_ARXIV = re.compile(r"\b(\d{2})(\d{2})\.\d{4,5}\b")
_YEAR = re.compile(r"\b(20[12]\d)\b")


def source_year(text: str) -> int | None:
    """The earliest publication year a source citation names (arXiv ids ``YYMM.NNNNN`` or 4-digit years)."""
    years = [2000 + int(m.group(1)) for m in _ARXIV.finditer(text) if 1 <= int(m.group(2)) <= 12]
    years += [int(m.group(1)) for m in _YEAR.finditer(text)]
    return min(years) if years else None


def framework_defaults(
    values: dict[str, Any], *, accelerator: Accelerator, source: str, notes: str, attention: str
) -> tuple[dict[str, Any], tuple[Assumption, ...]]:
    """Framework behaviour a case implies without a field for it, each recorded as an Assumption.

    - attention kernel: the case's ``parallel.attention`` (fused/unfused/fp8/flash2), else from its source's date;
    - XLA (every TPU run) overlaps tensor-parallel collectives with the matmuls around them (asynchronous
      collectives / collective matmul), as Megatron's ``--tp-comm-overlap`` does;
    - a DeepEP dispatcher sends each token once per remote node.
    """
    values = dict(values)
    notes_low = notes.lower()
    out: list[Assumption] = []
    if attention:
        values["flash_attention"] = attention != "unfused"
        values["fp8_attention"] = attention == "fp8"
        values["flash2_attention"] = attention == "flash2"
    else:
        year = source_year(source)
        if year is not None and year <= LAST_UNFUSED_YEAR:
            values["flash_attention"] = False
            out.append(
                Assumption(
                    field="attention",
                    text=f"attention null: unfused (source from {year}, before FlashAttention reached the frameworks)",
                )
            )
    tp_sp = values.get("tp_degree", 1) > 1 and values.get("sequence_parallel")
    negated = any(m in notes_low for m in TP_COMM_OVERLAP_MARKERS) and not mentions_on(notes, TP_COMM_OVERLAP_MARKERS)
    if tp_sp and not values.get("tp_comm_overlap") and not negated and any(w in source.lower() for w in NEMO_SOURCES):
        values["tp_comm_overlap"] = True
        out.append(
            Assumption(
                field="tp_comm_overlap",
                text="tp_comm_overlap null: on (NeMo / Megatron-Bridge performance recipes enable TP comm overlap "
                "with sequence parallelism)",
            )
        )
    if accelerator.family.value == "tpu" and values.get("tp_degree", 1) > 1 and not values.get("tp_comm_overlap"):
        values["tp_comm_overlap"] = True
        out.append(Assumption(field="tp_comm_overlap", text="TPU (XLA): tensor-parallel collectives overlapped"))
    fp8 = values.get("precision") is Precision.FP8 and values.get("flash_attention", True)
    if not attention and fp8 and mentions_on(notes, FP8_ATTENTION_MARKERS):
        values["fp8_attention"] = True
        out.append(
            Assumption(field="attention", text="attention null: fused FP8 (the notes name FP8 dot-product attention)")
        )
    if any(m in notes_low for m in DEEPEP_MARKERS) and values.get("ep_degree", 1) > 1:
        values["ep_dedup"] = True
        out.append(Assumption(field="ep_dedup", text="DeepEP dispatcher: one copy per remote node"))
    return values, tuple(out)


def apply_published_flags(parallel: ParallelBlock, notes: str) -> tuple[dict[str, Any], tuple[Assumption, ...]]:
    """Fill null fields from options the case's notes publish; other nulls keep their stated assumptions."""
    values = dict(parallel.values)
    text = notes.lower()
    kept: list[Assumption] = []
    overlap = mentions_on(notes, TP_COMM_OVERLAP_MARKERS)
    if overlap and values.get("tp_degree", 1) > 1:
        values["tp_comm_overlap"] = True
    for assumption in parallel.assumptions:
        if assumption.field == "sequence_parallel" and overlap:
            values["sequence_parallel"] = True
            kept.append(
                Assumption(
                    field="sequence_parallel",
                    text="sequence_parallel null: on, because the notes "
                    "list TP comm overlap, which Megatron-LM allows only with sequence parallelism",
                )
            )
        elif assumption.field == "zero_stage" and any(m in text for m in DISTRIBUTED_OPTIMIZER_MARKERS):
            values["zero_stage"] = 1
            kept.append(
                Assumption(
                    field="zero_stage",
                    text="zero_stage null: 1, because the notes name the "
                    "distributed optimizer (validation README convention 5)",
                )
            )
        else:
            kept.append(assumption)
    return values, tuple(kept)


def _read_training(reader: Fields, path: Path) -> TrainingCase | SkippedCase:
    head = _header(reader)
    case_id, group, trust = head.id, head.group, head.trust
    model_block = reader.mapping("model")
    accelerator, count = _read_system(_sub(reader, "system"))
    parallel = read_parallel(_sub(reader, "parallel"), head.notes)
    metric, value, basis, eval_share = _read_target(_sub(reader, "target"))
    reader.finish()
    shape = shape_from_validation_model(model_block, source=f"{path}: {reader.where}")

    def skipped(reason: str) -> SkippedCase:
        return SkippedCase(id=case_id, group=group, trust=trust, reason=reason)

    try:
        device = get_accelerator(accelerator)
    except UnknownNameError as exc:
        return skipped(str(exc))
    lora = is_lora(case_id, group)
    values, flag_notes = apply_published_flags(parallel, head.notes)
    values, framework_notes = framework_defaults(
        values, accelerator=device, source=head.source, notes=head.notes, attention=parallel.attention
    )
    flag_notes += framework_notes
    try:
        plan = Plan(**values, lora=lora)
    except InputError as exc:
        return skipped(f"plan cannot be expressed: {exc}")
    if not device.supports(plan.precision):
        return skipped(f"{device.id} has no {plan.precision.value} peak")
    ranks = count * (device.num_logical_cores if plan.degrees_unit is DegreeUnit.CORE else 1)
    problem = check_plan(plan, shape, ranks, num_experts=shape.moe.num_experts if shape.moe else None)
    if problem is not None:
        return skipped(f"plan does not divide ({problem.kind.value}): {problem.reason}")
    try:
        _cluster(accelerator, count)
    except InputError as exc:
        return skipped(f"no cluster of {count} x {accelerator}: {exc}")
    assumptions = flag_notes + ((LORA_ASSUMPTION,) if lora else ())
    return TrainingCase(
        id=case_id,
        group=group,
        trust=trust,
        source=head.source,
        shape=shape,
        accelerator=device.id,
        count=count,
        plan=plan,
        metric=metric,
        value=value,
        basis=basis,
        assumptions=assumptions,
        eval_per_train_sequence=eval_share,
    )


def training_cases(cases: CaseFile | Sequence[Case]) -> tuple[TrainingCase, ...]:
    """The evaluable training cases of a file or sequence."""
    items = cases.cases if isinstance(cases, CaseFile) else tuple(cases)
    return tuple(c for c in items if isinstance(c, TrainingCase))
