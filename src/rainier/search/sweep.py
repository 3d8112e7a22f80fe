"""Sweep specifications: a grid of models x clusters x global batch sizes x sequence lengths, one search per cell.

A sweep file (``rainier sweep SPEC.yaml``) reads::

    models: [llama-3-70b, deepseek-v3]          # catalog names or config.json paths
    clusters:
      - {accelerator: h100-sxm, count: [1024, 4096]}
      - {cluster: rainier-trn2-500k}
    gbs: [1024, 2048]                            # global batch, sequences
    seq_len: [8192]                              # optional; absent = each model's own
    objective: time                              # optional: time | cost | energy
    top: 10                                      # optional: best plans kept per cell

It is read strictly (unknown keys, duplicate keys, wrong types, non-positive sizes, duplicate values and unknown
names are one-line :class:`~rainier.catalog.loader.CatalogError` naming the file and the field) and every name is
resolved once here, so a typo fails before any worker starts. Each :class:`SweepCell` holds plain strings and
integers only: workers (local processes or Ray tasks) resolve the names themselves, and the cell's
:attr:`SweepCell.cell_id`, a hash of its inputs, is what makes a sweep resumable.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rainier.catalog.loader import CatalogError, Fields, load_yaml
from rainier.errors import InputError
from rainier.hardware import get_accelerator, get_cluster, systems
from rainier.limits import MAX_DEVICES, MAX_GLOBAL_BATCH, check_int_range
from rainier.search.result import Objective
from rainier.workload import resolve_model
from rainier.workload.shape import MAX_INT

DEFAULT_TOP_K = 10
CELL_ID_HEX_DIGITS = 16  # 64 bits of SHA-256: collisions are out of reach for any sweep that fits in a file
# Keys whose value may be one item or a list of items.
_LIST_KEYS = ("models", "gbs", "seq_len")
SWEEP_KIND = "sweep"  # ``kind:`` of a sweep file in the one scenario format (rainier.api.scenario)
SCENARIO_VERSION = 1
SWEEP_KEYS = ("kind", "version", "models", "clusters", "gbs", "seq_len", "objective", "top")  # what the loader reads


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepCell:
    """One search of a sweep: a model on a cluster (named, or ``count`` x ``accelerator``) at one batch size."""

    model: str  # catalog name (lower case) or config.json path, as written in the spec
    cluster: str | None  # a named cluster, or None for an ad-hoc one of ``count`` x ``accelerator``
    accelerator: str | None
    count: int | None
    gbs: int
    seq_len: int | None  # None: the model's own sequence length
    objective: Objective
    top_k: int

    def __post_init__(self) -> None:
        if (self.cluster is None) == (self.accelerator is None) or (self.accelerator is None) != (self.count is None):
            raise InputError("a sweep cell needs either cluster, or accelerator with count")
        for name, high in (("gbs", MAX_GLOBAL_BATCH), ("seq_len", MAX_INT), ("count", MAX_DEVICES), ("top_k", 1000)):
            value = getattr(self, name)
            if value is not None:
                check_int_range(name, value, 1, high)

    @property
    def cluster_label(self) -> str:
        """The named cluster, or ``accelerator x count``."""
        return self.cluster if self.cluster is not None else f"{self.accelerator} x{self.count}"

    def inputs(self) -> dict[str, Any]:
        """The cell's inputs as plain JSON values (what :attr:`cell_id` hashes)."""
        return {
            "model": self.model,
            "cluster": self.cluster,
            "accelerator": self.accelerator,
            "count": self.count,
            "gbs": self.gbs,
            "seq_len": self.seq_len,
            "objective": self.objective.value,
            "top_k": self.top_k,
        }

    @property
    def cell_id(self) -> str:
        """A stable hash of the inputs: the same cell in any spec, on any run, has the same id."""
        canonical = json.dumps(self.inputs(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:CELL_ID_HEX_DIGITS]

    def describe(self) -> str:
        seq = f" seq_len={self.seq_len}" if self.seq_len is not None else ""
        return f"{self.model} on {self.cluster_label} gbs={self.gbs}{seq}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterChoice:
    """One entry of the spec's ``clusters`` list: a named cluster, or an accelerator at one or more counts."""

    cluster: str | None = None
    accelerator: str | None = None
    counts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if (self.cluster is None) == (self.accelerator is None):
            raise InputError("a cluster entry needs either 'cluster' or 'accelerator' (with 'count'), not both")
        if self.accelerator is not None and not self.counts:
            raise InputError("an 'accelerator' entry needs 'count'")
        if self.cluster is not None and self.counts:
            raise InputError("a named 'cluster' entry takes no 'count'")

    def expand(self) -> tuple[tuple[str | None, str | None, int | None], ...]:
        """(cluster, accelerator, count) for each concrete cluster of this entry."""
        if self.cluster is not None:
            return ((self.cluster, None, None),)
        return tuple((None, self.accelerator, count) for count in self.counts)


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepSpec:
    """A whole sweep: the grid's axes, the objective and how many plans to keep per cell."""

    models: tuple[str, ...]
    clusters: tuple[ClusterChoice, ...]
    gbs: tuple[int, ...]
    seq_len: tuple[int | None, ...] = (None,)
    objective: Objective = Objective.TIME
    top_k: int = DEFAULT_TOP_K

    def __post_init__(self) -> None:
        for name in ("models", "clusters", "gbs", "seq_len"):
            if not getattr(self, name):
                raise InputError(f"{name}: empty; give at least one value")
        if self.top_k < 1:
            raise InputError(f"top={self.top_k!r} is invalid: a positive integer")

    def cells(self) -> tuple[SweepCell, ...]:
        """Every cell, models outermost, in the spec's order (the order of the table and of the progress)."""
        concrete = [c for choice in self.clusters for c in choice.expand()]
        return tuple(
            SweepCell(
                model=model,
                cluster=cluster,
                accelerator=accelerator,
                count=count,
                gbs=gbs,
                seq_len=seq_len,
                objective=self.objective,
                top_k=self.top_k,
            )
            for model, (cluster, accelerator, count), gbs, seq_len in itertools.product(
                self.models, concrete, self.gbs, self.seq_len
            )
        )


# ----------------------------------------------------------------------------------------------------------------
# Reading a spec file
# ----------------------------------------------------------------------------------------------------------------


def load_sweep_spec(path: Path | str, text: str | None = None) -> SweepSpec:
    """Read and check a sweep file; every problem is a one-line :class:`CatalogError` naming the field."""
    path = Path(path)
    return sweep_spec_from_mapping(load_yaml(path, text), path)


def sweep_spec_from_mapping(raw: Any, path: Path | str) -> SweepSpec:
    """A sweep from its parsed keys (a YAML file's, or a web request's JSON); problems name ``path`` and the field."""
    path = Path(path)
    if raw is None:
        raise CatalogError(f"{path}: empty sweep spec; expected a mapping with models, clusters and gbs")
    if isinstance(raw, Mapping):
        raw = {str(k): _as_list(v) if k in _LIST_KEYS else v for k, v in raw.items()}
    fields = Fields(raw, path=path, where="top level", sources=None)
    fields.choice("kind", (SWEEP_KIND,), required=False)  # the scenario format's kind and version (optional)
    fields.integer(
        "version", required=False, default=SCENARIO_VERSION, minimum=1, maximum=SCENARIO_VERSION, sourced=False
    )
    models = _models(path, fields.items("models"))
    clusters = _clusters(path, fields.items("clusters"))
    gbs = _positive_ints(path, "gbs", fields.items("gbs"))
    seq_lens = _positive_ints(path, "seq_len", fields.items("seq_len", required=False), required=False)
    seq_len: tuple[int | None, ...] = seq_lens or (None,)  # absent: each model's own
    objective = Objective(
        fields.choice("objective", tuple(o.value for o in Objective), required=False, default=Objective.TIME.value)
    )
    top_k = fields.integer("top", required=False, default=DEFAULT_TOP_K, sourced=False)
    fields.finish()
    return SweepSpec(models=models, clusters=clusters, gbs=gbs, seq_len=seq_len, objective=objective, top_k=top_k)


def _as_list(value: Any) -> Any:
    """A single value where a list is allowed stands for a list of one (``gbs: 1024``)."""
    return value if value is None or isinstance(value, list) else [value]


def _error(path: Path, field: str, message: str) -> CatalogError:
    return CatalogError(f"{path}: {field}: {message}")


def _nonempty(path: Path, field: str, values: Sequence[Any]) -> None:
    if not values:
        raise _error(path, field, "empty list; give at least one value")


def _reject_repeats(path: Path, field: str, values: Sequence[Any]) -> None:
    seen: set[Any] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise _error(path, f"{field}[{index}]", f"{value!r} is listed twice")
        seen.add(value)


def _positive_ints(path: Path, field: str, values: Sequence[Any], *, required: bool = True) -> tuple[int, ...]:
    if required:
        _nonempty(path, field, values)
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _error(path, f"{field}[{index}]", f"{value!r} is invalid: a positive integer")
    _reject_repeats(path, field, values)
    return tuple(values)


def _models(path: Path, values: Sequence[Any]) -> tuple[str, ...]:
    """Catalog ids (an alias becomes its model's id) or config.json paths (kept as written); each must resolve now."""
    _nonempty(path, "models", values)
    names: list[str] = []
    for index, value in enumerate(values):
        field = f"models[{index}]"
        if not isinstance(value, str) or not value.strip():
            raise _error(path, field, f"{value!r} is invalid: a catalog model name or a config.json path")
        text = value.strip()
        try:
            shape = resolve_model(text)
        except InputError as exc:
            raise _error(path, field, str(exc)) from None
        names.append(text if Path(text).expanduser().exists() else shape.name)
    _reject_repeats(path, "models", names)
    return tuple(names)


def _clusters(path: Path, values: Sequence[Any]) -> tuple[ClusterChoice, ...]:
    _nonempty(path, "clusters", values)
    choices = [_cluster_choice(path, index, value) for index, value in enumerate(values)]
    concrete = [c for choice in choices for c in choice.expand()]
    for index, item in enumerate(concrete):
        if item in concrete[:index]:
            name = item[0] if item[0] is not None else f"{item[1]} x{item[2]}"
            raise _error(path, "clusters", f"{name} is listed twice")
    return tuple(choices)


def _cluster_choice(path: Path, index: int, value: Any) -> ClusterChoice:
    where = f"clusters[{index}]"
    if isinstance(value, Mapping) and "count" in value:
        value = {**value, "count": _as_list(value["count"])}
    fields = Fields(value, path=path, where=where, sources=None)
    cluster = fields.string("cluster", required=False) or None
    accelerator = fields.string("accelerator", required=False) or None
    counts = _positive_ints(path, f"{where}.count", fields.items("count", required=False), required=False)
    fields.finish()
    try:
        choice = ClusterChoice(
            cluster=cluster.strip().lower() if cluster else None,
            accelerator=accelerator.strip().lower() if accelerator else None,
            counts=counts,
        )
        if choice.cluster is not None:
            get_cluster(choice.cluster)
        elif choice.accelerator is not None:
            accel = get_accelerator(choice.accelerator)
            if not any(s.default_for_accelerator and s.accelerator.id == accel.id for s in systems()):
                raise InputError(f"accelerator {accel.id!r} has no default system; use a named cluster instead")
    except CatalogError:
        raise
    except InputError as exc:
        raise _error(path, where, str(exc)) from None
    return choice
