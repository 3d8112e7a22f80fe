"""The space of plans a search enumerates, its YAML form (``--space SPACE.yaml``), and the enumeration.

By default a search tries every parallel degree that can divide the model and the cluster: tensor, context
and expert parallelism in powers of two (the sizes collective libraries and topologies are built for), as the
pipeline degree every divisor of the layer count and every power of two up to it (a count that pp does not
divide is split unevenly, balanced against the output head: ``parallel.pipeline``), interleaving 1, 2 or 4,
micro-batches 1-8, all three recompute policies, ZeRO-1 (distributed optimizer) and ZeRO-3 (FSDP), sequence
parallelism whenever tensor parallelism is on, BF16 matmuls, and the 1F1B and interleaved schedules; a space
file narrows or widens any of these (``schedule: [1f1b, interleaved, zb-h1, zb-v, dualpipe]``). The grid is
built with numpy and every rejected combination is counted by its reason; the schedule rules are
``parallel.plan.check_plan``'s (interleaved and ZB-V need at least pp micro-batches, DualPipe an even count of
at least 2*pp on an even pp).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rainier.catalog.loader import CatalogError, Fields, load_yaml
from rainier.errors import quote
from rainier.hardware import Cluster
from rainier.limits import MAX_DEVICES, MAX_GLOBAL_BATCH, check_int_range
from rainier.parallel.plan import SCHEDULE_ALIASES, InfeasibleKind, Schedule
from rainier.perf.columns import PRECISION_CODES, RECOMPUTE_CODES, SCHEDULE_CODES, PlanColumns
from rainier.precision import Precision
from rainier.workload.memory import Recompute
from rainier.workload.shape import TransformerShape

IntArray = NDArray[np.int64]
DEFAULT_MAX_TP = 64
DEFAULT_MAX_CP = 32
DEFAULT_MAX_EP = 256
PRECISION_AXIS = 8  # position of the precision values in the grid's axes


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchSpace:
    """Allowed values per plan dimension; ``None`` means every value that can divide (see module docstring)."""

    tp: tuple[int, ...] | None = None
    pp: tuple[int, ...] | None = None
    vpp: tuple[int, ...] = (1, 2, 4)
    cp: tuple[int, ...] | None = None
    ep: tuple[int, ...] | None = None
    mbs: tuple[int, ...] = (1, 2, 4, 8)
    recompute: tuple[Recompute, ...] = (Recompute.NONE, Recompute.SELECTIVE, Recompute.FULL)
    zero: tuple[int, ...] = (1, 3)
    precision: tuple[Precision, ...] = (Precision.BF16,)
    zero_bubble: bool = False  # also try the zero-bubble (ZB-H1) schedule for pipelined plans
    schedules: tuple[Schedule, ...] = (Schedule.ONE_F_ONE_B, Schedule.INTERLEAVED)
    max_tp: int = DEFAULT_MAX_TP
    max_pp: int = 128
    max_cp: int = DEFAULT_MAX_CP
    tp_within_scale_up: bool = True  # reject tensor parallelism that leaves the scale-up domain
    notes: tuple[str, ...] = field(default_factory=tuple)


def _powers_of_two(limit: int) -> list[int]:
    return [1 << i for i in range(int(math.log2(max(limit, 1))) + 1)]


def _divisors(n: int, limit: int) -> list[int]:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def _pipeline_degrees(layers: int, limit: int) -> list[int]:
    """Every divisor of the layer count and every power of two, up to ``min(layers, limit)``."""
    top = min(layers, limit)
    return sorted(set(_divisors(layers, top)) | set(_powers_of_two(top)))


@dataclass(frozen=True, slots=True)
class Enumeration:
    """The valid plans of a space (as columns) and how many candidates were rejected, by reason."""

    valid: PlanColumns
    candidates: int
    rejected: dict[str, int]
    reasons: dict[str, str]  # one example sentence per rejection kind


def enumerate_plans(
    shape: TransformerShape, cluster: Cluster, gbs: int, space: SearchSpace, *, round_gbs: bool = False
) -> Enumeration:
    """Every combination of the space's values, with the invalid ones counted by reason and removed.

    With ``round_gbs`` the global batch is a target: each plan takes the smallest multiple of its
    ``dp * mbs`` (times ``pp`` when interleaved) at or above ``gbs``, and plans that would need more than twice
    the target are rejected.
    """
    devices = cluster.num_devices
    experts = shape.moe.num_experts if shape.moe is not None else 1
    tp_values = list(space.tp) if space.tp is not None else _powers_of_two(min(space.max_tp, devices))
    cp_values = list(space.cp) if space.cp is not None else _powers_of_two(min(space.max_cp, devices))
    pp_values = (
        list(space.pp) if space.pp is not None else _pipeline_degrees(shape.num_layers, min(space.max_pp, devices))
    )
    if shape.moe is None:
        ep_values = [1]
    else:
        ep_values = list(space.ep) if space.ep is not None else _powers_of_two(min(experts, DEFAULT_MAX_EP))
    precisions = [p for p in space.precision if cluster.accelerator.supports(p)]
    unsupported = [p for p in space.precision if not cluster.accelerator.supports(p)]
    schedules = list(dict.fromkeys([*space.schedules, *([Schedule.ZERO_BUBBLE] if space.zero_bubble else [])]))
    axes = [
        tp_values,
        cp_values,
        pp_values,
        list(space.vpp),
        ep_values,
        list(space.mbs),
        [RECOMPUTE_CODES[r] for r in space.recompute],
        list(space.zero),
        [PRECISION_CODES[p] for p in precisions],
        [SCHEDULE_CODES[s] for s in schedules],
    ]
    grid = np.meshgrid(*[np.asarray(a, dtype=np.int64) for a in axes], indexing="ij")
    tp, cp, pp, vpp, ep, mbs, recompute, zero, precision, schedule = (g.reshape(-1) for g in grid)
    total = len(tp)

    rejected: dict[str, int] = {}
    reasons: dict[str, str] = {}
    keep = np.ones(total, dtype=bool)

    def reject(mask: NDArray[np.bool_], kind: InfeasibleKind, example: str) -> None:
        nonlocal keep
        hit = keep & mask
        count = int(hit.sum())
        if count:
            rejected[kind.value] = rejected.get(kind.value, 0) + count
            reasons.setdefault(kind.value, example)
        keep &= ~mask

    model_ranks = tp * cp * pp
    reject(devices % model_ranks != 0, InfeasibleKind.DIVISIBILITY, f"tp*cp*pp must divide {devices} devices")
    dp = np.where(keep, devices // np.maximum(model_ranks, 1), 1)
    reject(shape.num_heads % tp != 0, InfeasibleKind.DIVISIBILITY, f"heads {shape.num_heads} must divide by tp")
    kv = shape.num_kv_heads
    reject((kv % tp != 0) & (tp % kv != 0), InfeasibleKind.DIVISIBILITY, "kv heads and tp must divide one another")
    reject(shape.seq_len % cp != 0, InfeasibleKind.DIVISIBILITY, f"seq_len {shape.seq_len} must divide by cp")
    interleaved = schedule == SCHEDULE_CODES[Schedule.INTERLEAVED]
    two_chunk = (schedule == SCHEDULE_CODES[Schedule.ZB_V]) | (schedule == SCHEDULE_CODES[Schedule.DUALPIPE])
    dualpipe = schedule == SCHEDULE_CODES[Schedule.DUALPIPE]
    pipelined_schedule = schedule != SCHEDULE_CODES[Schedule.ONE_F_ONE_B]
    # One schedule per plan shape: interleaving exactly when vpp > 1; other pipeline schedules only with vpp = 1.
    reject((vpp > 1) != interleaved, InfeasibleKind.DIVISIBILITY, "interleaving needs vpp > 1 and vice versa")
    reject((pp == 1) & pipelined_schedule, InfeasibleKind.DIVISIBILITY, "pipeline schedules need pp > 1")
    chunks = np.where(two_chunk, 2, vpp)
    reject(
        pp * chunks > shape.num_layers,
        InfeasibleKind.DIVISIBILITY,
        f"{shape.num_layers} layers cannot fill pp*chunks virtual stages (one layer each at least)",
    )
    reject(dualpipe & (pp % 2 == 1), InfeasibleKind.DIVISIBILITY, "dualpipe pairs ranks: pp must be even")
    batch_unit = np.maximum(dp * mbs, 1)
    if round_gbs:
        plan_gbs = -(-gbs // batch_unit) * batch_unit
        reject(
            plan_gbs > 2 * gbs,
            InfeasibleKind.DIVISIBILITY,
            f"dp*mbs exceeds the batch target of {gbs} sequences",
        )
    else:
        plan_gbs = np.full(total, gbs, dtype=np.int64)
        reject(gbs % batch_unit != 0, InfeasibleKind.DIVISIBILITY, f"gbs {gbs} must divide by dp*mbs")
    microbatches = plan_gbs // batch_unit
    reject(
        (interleaved | (schedule == SCHEDULE_CODES[Schedule.ZB_V])) & (microbatches < pp),
        InfeasibleKind.DIVISIBILITY,
        "interleaved and zb-v schedules need at least pp micro-batches",
    )
    reject(
        dualpipe & ((microbatches % 2 == 1) | (microbatches < 2 * pp)),
        InfeasibleKind.DIVISIBILITY,
        "dualpipe needs an even micro-batch count of at least 2*pp",
    )
    reject(experts % ep != 0, InfeasibleKind.DIVISIBILITY, f"experts {experts} must divide by ep")
    reject((dp * cp) % ep != 0, InfeasibleKind.DIVISIBILITY, "ep must divide dp*cp")
    if space.tp_within_scale_up:
        domain = cluster.scale_up_domain_devices
        reject(tp > domain, InfeasibleKind.TOPOLOGY, f"tp must stay inside the {domain}-device scale-up domain")
    candidates = total
    if unsupported:  # combinations with a precision the chip lacks are counted, never built
        per_precision = math.prod(len(a) for i, a in enumerate(axes) if i != PRECISION_AXIS)
        rejected[InfeasibleKind.UNSUPPORTED.value] = per_precision * len(unsupported)
        reasons[InfeasibleKind.UNSUPPORTED.value] = (
            f"{cluster.accelerator.id} has no {', '.join(p.value for p in unsupported)} matmuls"
        )
        candidates += per_precision * len(unsupported)
    index = np.flatnonzero(keep)
    cols = PlanColumns.defaults(
        len(index),
        tp=tp[index],
        pp=pp[index],
        dp=dp[index],
        cp=cp[index],
        ep=ep[index],
        vpp=vpp[index],
        mbs=mbs[index],
        gbs=plan_gbs[index].astype(np.int64),
        sp=tp[index] > 1,
        zero=zero[index],
        recompute=recompute[index],
        precision=precision[index],
        schedule=schedule[index],
    )
    return Enumeration(valid=cols, candidates=candidates, rejected=rejected, reasons=reasons)


# ---------------------------------------------------------------------------------------------------- file form
_INT_DIMS = ("tp", "pp", "vpp", "cp", "ep", "mbs", "zero")


def load_space(path: Path | str) -> SearchSpace:
    """Read a space file: lists of allowed values per dimension (``tp: [4, 8]``), limits, options."""
    raw = load_yaml(path)
    reader = Fields(raw if raw is not None else {}, path=path, where="space", sources=None)
    values: dict[str, Any] = {}
    for name in _INT_DIMS:
        items = reader.items(name, required=False)
        if items:
            low, high = (0, 3) if name == "zero" else (1, MAX_GLOBAL_BATCH if name == "mbs" else MAX_DEVICES)
            if not all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in items):
                what = "ZeRO stages 0-3" if name == "zero" else f"a list of integers from {low} to {high:,}"
                raise CatalogError(f"{path}: space.{name}={quote(items)} is invalid: {what}")
            values[name] = tuple(items)
    recompute = reader.items("recompute", required=False)
    if recompute:
        values["recompute"] = tuple(_choice(path, "recompute", Recompute, v) for v in recompute)
    precision = reader.items("precision", required=False)
    if precision:
        values["precision"] = tuple(_choice(path, "precision", Precision, v) for v in precision)
    for limit in ("max_tp", "max_pp", "max_cp"):
        if reader.has(limit):
            values[limit] = reader.integer(limit, sourced=False, maximum=MAX_DEVICES)
        else:
            reader.integer(limit, required=False, default=1, sourced=False)
    schedules = reader.items("schedule", required=False)
    if schedules:
        values["schedules"] = tuple(_schedule(path, v) for v in schedules)
    values["zero_bubble"] = reader.boolean("zero_bubble", required=False, default=False)
    values["tp_within_scale_up"] = reader.boolean("tp_within_scale_up", required=False, default=True)
    reader.finish()
    return SearchSpace(**values)


def _choice(path: Path | str, name: str, kind: Any, value: Any) -> Any:
    try:
        return kind(str(value).lower())
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise CatalogError(f"{path}: space.{name}={quote(value)} is invalid: allowed {allowed}") from None


def _schedule(path: Path | str, value: Any) -> Schedule:
    found = SCHEDULE_ALIASES.get(str(value).lower())
    if found is None:
        allowed = ", ".join(sorted(SCHEDULE_ALIASES))
        raise CatalogError(f"{path}: space.schedule={quote(value)} is invalid: allowed {allowed}")
    return found


def check_gbs(gbs: int) -> int:
    return check_int_range("gbs", gbs, 1, MAX_GLOBAL_BATCH, "a whole number of sequences per step")
