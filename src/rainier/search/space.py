"""The space of plans a search enumerates, its YAML form (``--space SPACE.yaml``), and the enumeration.

By default a search tries every parallel degree that can divide the model and the cluster: tensor, context
and expert parallelism in powers of two (the sizes collective libraries and topologies are built for), as the
pipeline degree every divisor of the layer count and every power of two up to it (a count that pp does not
divide is split unevenly, balanced against the output head: ``parallel.pipeline``), every interleaving depth
the layers allow (pp * vpp <= layers, chunks uneven where they must be), every micro-batch the batch allows (the
divisors of an exact batch up to ``max_mbs``, or every size up to it for a batch target: see
``parallel.batch_target``), all three recompute policies, ZeRO 0-3 (3 = FSDP), sequence parallelism whenever
tensor parallelism is on, BF16 matmuls, and the 1F1B and interleaved schedules; a space file narrows or widens
any of these (``schedule: [1f1b, interleaved, zb-h1, zb-v, dualpipe]``). The grid is built with numpy, in
stages, and every rejected combination is counted by its reason; the schedule rules are
``parallel.plan.check_plan``'s (interleaved and ZB-V need at least pp micro-batches, DualPipe an even count of
at least 2*pp on an even pp).

Full recompute of only the first N layers of each chunk (Megatron's ``--recompute-method block``,
``Plan.recompute_layers``) is tried beside full recompute of every layer when a space file asks: a list of N
(``recompute_layers: [1, 2]``) or ``recompute_layers: quarters`` (a quarter, a half and three quarters of each
plan's smallest chunk), each N at least 1, distinct and below the chunk's layers (larger N is full recompute of
every layer, already in the grid). ``quarters`` evaluates about 35% more plans, for 6% more search time on
Llama 3 405B x 16,384 H100 and 17% on DeepSeek-V3 x 2,048 H100; it is not the default because it changes
default answers (published examples and fleet plans), a change to make on its own.

Offload to host memory (``Plan.offload``) is tried by the search itself, for the plans that do not fit without
it (``search.offload``); a space file's ``offload: [optimizer, optimizer+activations]`` tries every plan with
each listed set as well, and ``offload: none`` turns it off.

HSDP (``Plan.shard_degree``: ZeRO over groups of s data-parallel ranks, replicated across the rest; Zhao et al.
2023 sec. 3.2.2) is tried by default for the ZeRO-3 (FSDP) plans, one shard group each: the smallest power of
two s >= 2 whose ``s x tp x cp`` ranks fill a scale-up domain (its largest power of two: 8 H100, 64 of an
NVL72; ``hsdp: domain``), when s divides dp and is below it. That evaluates about 25% more plans for Llama 3
405B on 16,384 H100 and DeepSeek-V3 on 2,048 H100, 12% for Llama 3 8B on 64. A space file's ``hsdp: powers``
tries every power of two from there up to dp/2 for ZeRO 1-3 (1.5x to 4x the plans, hence not the default),
``hsdp: [8, 16]`` those shard degrees for ZeRO 1-3, and ``hsdp: none`` plain ZeRO only. Not in the space:
precisions other than BF16 unless the space names them.
"""

from __future__ import annotations

import enum
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
from rainier.parallel.batch_target import DEFAULT_TOLERANCE, BatchTarget
from rainier.parallel.plan import OFFLOAD_KINDS, SCHEDULE_ALIASES, InfeasibleKind, Schedule
from rainier.perf.columns import PRECISION_CODES, RECOMPUTE_CODES, SCHEDULE_CODES, PlanColumns
from rainier.perf.offload import offload_mask
from rainier.precision import Precision
from rainier.workload.memory import Recompute
from rainier.workload.shape import TransformerShape

IntArray = NDArray[np.int64]
DEFAULT_MAX_TP = 64
DEFAULT_MAX_CP = 32
DEFAULT_MAX_EP = 256
DEFAULT_MAX_MBS = 16  # largest micro-batch tried when the space names none (a space file may raise it)
ZERO_STAGES = (0, 1, 2, 3)
# The micro-batch sizes of the fleet commands' round-up rule (``round_gbs``): each plan rounds the batch up to a
# multiple of dp x mbs, so larger sizes would only grow the batch (up to 2x) rather than find a faster split of
# it. Every other axis (every vpp, ZeRO 0-3) is searched as ``train search`` does.
LEGACY_MBS = (1, 2, 4, 8)


class ShardRule(enum.StrEnum):
    """Which HSDP shard groups (``Plan.shard_degree``) a search tries beside plain ZeRO (module docstring)."""

    NONE = "none"  # plain ZeRO over the whole data-parallel group only
    DOMAIN = "domain"  # ZeRO-3 plans also over the smallest power-of-two group filling a scale-up domain
    POWERS = "powers"  # ZeRO 1-3 plans also over every power-of-two group from that size up to dp/2


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchSpace:
    """Allowed values per plan dimension; ``None`` means every value that can divide (see module docstring)."""

    tp: tuple[int, ...] | None = None
    pp: tuple[int, ...] | None = None
    vpp: tuple[int, ...] | None = None
    cp: tuple[int, ...] | None = None
    ep: tuple[int, ...] | None = None
    mbs: tuple[int, ...] | None = None
    recompute: tuple[Recompute, ...] = (Recompute.NONE, Recompute.SELECTIVE, Recompute.FULL)
    # N of full recompute on N layers per chunk, tried beside every layer; (): none; None: 1/4, 1/2, 3/4 of the
    # plan's smallest chunk ("quarters" in a space file)
    recompute_layers: tuple[int, ...] | None = ()
    # Offload sets (perf.offload bit masks) tried for every plan; None: only for plans that do not fit without
    # offload, with the fewest kinds that make them fit (search.offload); (): never
    offload: tuple[int, ...] | None = None
    zero: tuple[int, ...] | None = None
    # HSDP shard groups tried beside plain ZeRO: a rule, or shard degrees (data-parallel ranks) for ZeRO 1-3
    hsdp: ShardRule | tuple[int, ...] = ShardRule.DOMAIN
    precision: tuple[Precision, ...] = (Precision.BF16,)
    zero_bubble: bool = False  # also try the zero-bubble (ZB-H1) schedule for pipelined plans
    schedules: tuple[Schedule, ...] = (Schedule.ONE_F_ONE_B, Schedule.INTERLEAVED)
    max_tp: int = DEFAULT_MAX_TP
    max_pp: int = 128
    max_cp: int = DEFAULT_MAX_CP
    max_mbs: int = DEFAULT_MAX_MBS
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
    target: BatchTarget  # the batch rule the plans were built under
    binding: tuple[str, str] | None = None  # (kind, sentence) of the check that rejected the last plans left


def enumerate_plans(
    shape: TransformerShape,
    cluster: Cluster,
    gbs: int | BatchTarget,
    space: SearchSpace,
    *,
    round_gbs: bool = False,
) -> Enumeration:
    """Every combination of the space's values, with the invalid ones counted by reason and removed.

    ``gbs`` is an exact batch (an ``int``) or a :class:`~rainier.parallel.batch_target.BatchTarget` whose rule
    gives each plan its batch. ``round_gbs`` (the fleet commands' former rule) makes an ``int`` a target each
    plan rounds up to: the smallest multiple of its ``dp * mbs`` at or above it, rejecting plans that would need
    more than twice the target.

    The grid is built in stages (model-parallel shape, expert degree, schedule, micro-batch, then the axes no
    rule constrains), dropping rejected rows at each stage so that the full Cartesian product is never built; a
    row rejected early counts once for every combination of the axes not yet expanded.
    """
    target = gbs if isinstance(gbs, BatchTarget) else BatchTarget(sequences=gbs)
    devices = cluster.num_devices
    experts = shape.moe.num_experts if shape.moe is not None else 1
    layers = shape.num_layers
    tp_values = list(space.tp) if space.tp is not None else _powers_of_two(min(space.max_tp, devices))
    cp_values = list(space.cp) if space.cp is not None else _powers_of_two(min(space.max_cp, devices))
    pp_values = list(space.pp) if space.pp is not None else _pipeline_degrees(layers, min(space.max_pp, devices))
    if shape.moe is None:
        ep_values = [1]
    else:
        ep_values = list(space.ep) if space.ep is not None else _powers_of_two(min(experts, DEFAULT_MAX_EP))
    precisions = [p for p in space.precision if cluster.accelerator.supports(p)]
    unsupported = [p for p in space.precision if not cluster.accelerator.supports(p)]
    schedules = list(dict.fromkeys([*space.schedules, *([Schedule.ZERO_BUBBLE] if space.zero_bubble else [])]))
    vpp_values = list(space.vpp) if space.vpp is not None else list(range(1, layers // 2 + 1))
    pairs = [
        (SCHEDULE_CODES[s], v)
        for s in schedules
        for v in vpp_values
        if (v > 1) == (s is Schedule.INTERLEAVED)  # one schedule per plan shape: interleaving exactly when vpp > 1
    ]
    mbs_values = _microbatch_sizes(space, target, round_gbs)
    rest = {
        "recompute": [RECOMPUTE_CODES[r] for r in space.recompute],
        "zero": list(space.zero if space.zero is not None else ZERO_STAGES),
        "precision": [PRECISION_CODES[p] for p in precisions],
    }
    rest_size = math.prod(len(v) for v in rest.values())
    grid = _Grid()
    divisible = InfeasibleKind.DIVISIBILITY

    # Stage 1: the model-parallel shape (tp x cp x pp) and the data-parallel degree it leaves.
    grid.expand(tp=tp_values, cp=cp_values, pp=pp_values)
    grid.weight = len(ep_values) * len(pairs) * len(mbs_values) * rest_size
    tp, cp, pp = grid["tp"], grid["cp"], grid["pp"]
    grid.reject(devices % (tp * cp * pp) != 0, divisible, f"tp*cp*pp must divide {devices} devices")
    grid["dp"] = devices // (grid["tp"] * grid["cp"] * grid["pp"])
    tp = grid["tp"]
    grid.reject(shape.num_heads % tp != 0, divisible, f"heads {shape.num_heads} must divide by tp")
    kv = shape.num_kv_heads
    tp = grid["tp"]
    grid.reject((kv % tp != 0) & (tp % kv != 0), divisible, "kv heads and tp must divide one another")
    grid.reject(shape.seq_len % grid["cp"] != 0, divisible, f"seq_len {shape.seq_len} must divide by cp")
    if space.tp_within_scale_up:
        domain = cluster.scale_up_domain_devices
        grid.reject(
            grid["tp"] > domain, InfeasibleKind.TOPOLOGY, f"tp must stay inside the {domain}-device scale-up domain"
        )

    # Stage 2: the expert-parallel degree.
    grid.expand(ep=ep_values)
    grid.weight = len(pairs) * len(mbs_values) * rest_size
    grid.reject(experts % grid["ep"] != 0, divisible, f"experts {experts} must divide by ep")
    grid.reject((grid["dp"] * grid["cp"]) % grid["ep"] != 0, divisible, "ep must divide dp*cp")

    # Stage 3: the pipeline schedule and its chunks per rank.
    grid.expand_pairs(("schedule", "vpp"), pairs)
    grid.weight = len(mbs_values) * rest_size
    schedule = grid["schedule"]
    grid.reject(
        (grid["pp"] == 1) & (schedule != SCHEDULE_CODES[Schedule.ONE_F_ONE_B]),
        divisible,
        "pipeline schedules need pp > 1",
    )
    schedule = grid["schedule"]
    two_chunk = (schedule == SCHEDULE_CODES[Schedule.ZB_V]) | (schedule == SCHEDULE_CODES[Schedule.DUALPIPE])
    grid.reject(
        grid["pp"] * np.where(two_chunk, 2, grid["vpp"]) > layers,
        divisible,
        f"{layers} layers cannot fill pp*chunks virtual stages (one layer each at least)",
    )
    grid.reject(
        (grid["schedule"] == SCHEDULE_CODES[Schedule.DUALPIPE]) & (grid["pp"] % 2 == 1),
        divisible,
        "dualpipe pairs ranks: pp must be even",
    )

    # Stage 4: the micro-batch, the batch it gives, and the schedules' micro-batch counts.
    grid.expand(mbs=mbs_values)
    grid.weight = rest_size
    unit = grid["dp"] * grid["mbs"]
    schedule = grid["schedule"]
    dualpipe = schedule == SCHEDULE_CODES[Schedule.DUALPIPE]
    if round_gbs:
        grid["gbs"] = -(-target.sequences // unit) * unit
        grid.reject(
            grid["gbs"] > 2 * target.sequences,
            divisible,
            f"dp*mbs exceeds the batch target of {target.sequences} sequences",
        )
    elif target.exact:
        grid.reject(target.sequences % unit != 0, divisible, _batch_hint(target, grid["dp"], space))
        grid["gbs"] = np.full(len(grid), target.sequences, dtype=np.int64)
    else:
        count = target.microbatches(unit, even=dualpipe)
        grid["gbs"] = count * unit
        grid.reject(count == 0, divisible, _batch_hint(target, grid["dp"], space))
        _smaller_batches_where_memory_grows(grid, target)
    microbatches = grid["gbs"] // (grid["dp"] * grid["mbs"])
    schedule = grid["schedule"]
    grid.reject(
        ((schedule == SCHEDULE_CODES[Schedule.INTERLEAVED]) | (schedule == SCHEDULE_CODES[Schedule.ZB_V]))
        & (microbatches < grid["pp"]),
        divisible,
        "interleaved and zb-v schedules need at least pp micro-batches",
    )
    microbatches = grid["gbs"] // (grid["dp"] * grid["mbs"])
    grid.reject(
        (grid["schedule"] == SCHEDULE_CODES[Schedule.DUALPIPE])
        & ((microbatches % 2 == 1) | (microbatches < 2 * grid["pp"])),
        divisible,
        "dualpipe needs an even micro-batch count of at least 2*pp",
    )

    # Stage 5: the axes no rule constrains.
    grid.expand(**rest)
    grid["recompute_layers"] = np.zeros(len(grid), dtype=np.int64)
    if space.recompute_layers != () and Recompute.FULL in space.recompute:
        _block_recompute(grid, space.recompute_layers, layers)
    _hsdp(grid, space.hsdp, cluster.scale_up_domain_devices)
    candidates = grid.candidates + len(grid)
    rejected, reasons = grid.rejected, grid.reasons
    if unsupported:  # combinations with a precision the chip lacks are counted, never built
        axes = (tp_values, cp_values, pp_values, ep_values, pairs, mbs_values, rest["recompute"], rest["zero"])
        per_precision = math.prod(len(a) for a in axes)
        rejected[InfeasibleKind.UNSUPPORTED.value] = per_precision * len(unsupported)
        reasons[InfeasibleKind.UNSUPPORTED.value] = (
            f"{cluster.accelerator.id} has no {', '.join(p.value for p in unsupported)} matmuls"
        )
        candidates += per_precision * len(unsupported)
    cols = PlanColumns.defaults(
        len(grid),
        tp=grid["tp"],
        pp=grid["pp"],
        dp=grid["dp"],
        cp=grid["cp"],
        ep=grid["ep"],
        vpp=grid["vpp"],
        mbs=grid["mbs"],
        gbs=grid["gbs"].astype(np.int64),
        sp=grid["tp"] > 1,
        zero=grid["zero"],
        recompute=grid["recompute"],
        recompute_layers=grid["recompute_layers"],
        shard=grid["shard"],
        precision=grid["precision"],
        schedule=grid["schedule"],
    )
    return Enumeration(
        valid=cols,
        candidates=candidates,
        rejected=rejected,
        reasons=reasons,
        target=target,
        binding=grid.binding,
    )


def _block_recompute(grid: _Grid, values: tuple[int, ...] | None, layers: int) -> None:
    """Add, for each full-recompute row, a copy per N below the row's smallest chunk's layers: each of ``values``,
    or (None) a quarter, a half and three quarters of that chunk, at least 1 and without repeats."""
    schedule = grid["schedule"]
    two_chunk = (schedule == SCHEDULE_CODES[Schedule.ZB_V]) | (schedule == SCHEDULE_CODES[Schedule.DUALPIPE])
    chunks = np.where(schedule == SCHEDULE_CODES[Schedule.INTERLEAVED], grid["vpp"], np.where(two_chunk, 2, 1))
    smallest = layers // (grid["pp"] * chunks)
    full = grid["recompute"] == RECOMPUTE_CODES[Recompute.FULL]
    if values is None:
        choices = [np.maximum(smallest * k // 4, 1) for k in (1, 2, 3)]
    else:
        choices = [np.full(len(smallest), n, dtype=np.int64) for n in values]
    picks, numbers = [], []
    for j, n in enumerate(choices):
        take = full & (n < smallest)
        for earlier in choices[:j]:
            take &= n != earlier
        picks.append(np.flatnonzero(take))
        numbers.append(n[picks[-1]])
    rows = np.concatenate(picks)
    for name, column in grid.columns.items():
        grid[name] = np.concatenate([column, column[rows]])
    grid["recompute_layers"][len(grid) - len(rows) :] = np.concatenate(numbers)


def _hsdp(grid: _Grid, rule: ShardRule | tuple[int, ...], domain: int) -> None:
    """Add, for each ZeRO row the rule covers, a copy per HSDP shard degree s (1 < s < dp, s dividing dp).

    ``domain``: devices per scale-up domain; the rules' smallest group is the least power of two s >= 2 with
    ``s x tp x cp`` at least the largest power of two in ``domain`` (8 of an HGX node, 64 of an NVL72 rack):
    ZeRO's gathers then stay on one domain's links where tp x cp leaves room, else span the fewest domains.
    """
    grid["shard"] = np.zeros(len(grid), dtype=np.int64)
    if rule == ShardRule.NONE or rule == ():
        return
    dp, zero = grid["dp"], grid["zero"]
    inner = grid["tp"] * grid["cp"]
    whole = 1 << (max(domain, 1).bit_length() - 1)  # the largest power of two in the domain
    need = np.maximum(-(-whole // inner), 2)  # ceil(whole / (tp x cp)), at least 2
    smallest = np.left_shift(1, np.ceil(np.log2(need)).astype(np.int64))
    choices: list[tuple[IntArray, IntArray]] = []  # (rows, shard degree)
    if rule == ShardRule.DOMAIN:
        choices.append((np.flatnonzero(zero == 3), smallest))
    elif rule == ShardRule.POWERS:
        for k in range(int(np.log2(max(int(dp.max()), 1))) + 1):
            choices.append((np.flatnonzero(zero >= 1), smallest << k))
    else:
        for listed in rule:
            choices.append((np.flatnonzero(zero >= 1), np.full(len(dp), listed, dtype=np.int64)))
    picks, degrees = [], []
    for rows, shard in choices:
        degree = shard[rows]
        keep = (degree > 1) & (degree < dp[rows]) & (dp[rows] % degree == 0)
        picks.append(rows[keep])
        degrees.append(degree[keep])
    rows = np.concatenate(picks)
    for name, column in grid.columns.items():
        grid[name] = np.concatenate([column, column[rows]])
    grid["shard"][len(grid) - len(rows) :] = np.concatenate(degrees)


def _smaller_batches_where_memory_grows(grid: _Grid, target: BatchTarget) -> None:
    """Also try, at every smaller count in the range, the plans whose activation memory grows with the count.

    A plan runs the largest batch in the range (fewest seconds per token), but a rank holds ``min(stage depth,
    m)`` micro-batches of activations (``perf.schedule.in_flight``; GPipe all ``m``), so with few micro-batches a
    smaller batch may fit where the largest does not. That happens only when ``m <= 2 * pp + 1`` (or GPipe), a
    small count, so the extra rows are few. DualPipe is left out: it runs at least 2 * pp, past the bound.
    """
    unit = grid["dp"] * grid["mbs"]
    top = grid["gbs"] // unit
    lowest = -(-target.low // unit)
    schedule = grid["schedule"]
    grows = ((top <= 2 * grid["pp"] + 1) | (schedule == SCHEDULE_CODES[Schedule.GPIPE])) & (
        schedule != SCHEDULE_CODES[Schedule.DUALPIPE]
    )
    extra = np.where(grows, np.maximum(top - lowest, 0), 0)
    if not extra.any():
        return
    rows = np.repeat(np.arange(len(grid)), extra)
    # the k-th extra row of a plan runs top - k micro-batches (k = 1 .. extra)
    step_back = np.arange(len(rows)) - np.repeat(np.cumsum(extra) - extra, extra) + 1
    counts = top[rows] - step_back
    for name, values in grid.columns.items():
        grid[name] = np.concatenate([values, values[rows]])
    grid["gbs"][len(unit) :] = counts * unit[rows]


def _batch_hint(target: BatchTarget, dp: IntArray, space: SearchSpace) -> str:
    """Why the batch rule rejects plans, with the nearest batches some remaining ``dp * mbs`` divides."""
    sizes = space.mbs if space.mbs is not None else range(1, space.max_mbs + 1)
    below, above = target.nearest(d * m for d in np.unique(dp).tolist() for m in sizes)
    near = " and ".join(f"{b:,}" for b in (below, above) if b is not None)
    if target.exact:
        rule = f"gbs {target.sequences:,} must divide by dp*mbs"
        other = f" (or --gbs ~{target.sequences} for any batch within {DEFAULT_TOLERANCE:.0%})"
    else:
        rule = f"no multiple of dp*mbs lies in the batch range {target.low:,} to {target.high:,}"
        other = " (or a wider --gbs-tolerance)"
    return f"{rule}: nearest batches that do: {near}{other}" if near else rule


def _microbatch_sizes(space: SearchSpace, target: BatchTarget, round_gbs: bool) -> list[int]:
    """The micro-batch axis: the space's list, else every divisor of an exact batch (every size for a target)."""
    if space.mbs is not None:
        return list(space.mbs)
    if round_gbs:
        return list(LEGACY_MBS)
    if target.exact:
        return _divisors(target.sequences, space.max_mbs)
    return list(range(1, min(space.max_mbs, target.high) + 1))


class _Grid:
    """Rows of plan columns grown one axis at a time, with the rejected rows counted by reason and dropped."""

    def __init__(self) -> None:
        self.columns: dict[str, IntArray] = {}
        self.weight = 1  # candidates each row stands for (the axes not yet expanded)
        self.candidates = 0  # rejected so far, in candidates
        self.rejected: dict[str, int] = {}
        self.reasons: dict[str, str] = {}
        self.binding: tuple[str, str] | None = None  # the check that removed the last rows

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 1

    def __getitem__(self, name: str) -> IntArray:
        return self.columns[name]

    def __setitem__(self, name: str, values: IntArray) -> None:
        self.columns[name] = values

    def expand(self, **axes: list[int]) -> None:
        """Every current row times every combination of ``axes``."""
        arrays = [np.asarray(v, dtype=np.int64) for v in axes.values()]
        combos = [g.reshape(-1) for g in np.meshgrid(*arrays, indexing="ij")] if arrays else []
        self._join(dict(zip(axes, combos, strict=True)))

    def expand_pairs(self, names: tuple[str, str], pairs: list[tuple[int, int]]) -> None:
        """Every current row times every pair of values of two columns."""
        table = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        self._join({names[0]: table[:, 0], names[1]: table[:, 1]})

    def _join(self, new: dict[str, IntArray]) -> None:
        width = len(next(iter(new.values()))) if new else 1
        rows = len(self)
        for name, values in self.columns.items():
            self.columns[name] = np.repeat(values, width)
        for name, values in new.items():
            self.columns[name] = np.tile(values, rows)

    def reject(self, mask: NDArray[np.bool_], kind: InfeasibleKind, why: str) -> None:
        """Drop the rows where ``mask``, counting each as ``weight`` candidates of ``kind``."""
        count = int(mask.sum())
        if not count:
            return
        self.rejected[kind.value] = self.rejected.get(kind.value, 0) + count * self.weight
        self.reasons.setdefault(kind.value, why)
        self.candidates += count * self.weight
        if count == len(mask):
            self.binding = (kind.value, why)
        keep = ~mask
        for name, values in self.columns.items():
            self.columns[name] = values[keep]


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
    if reader.peek("recompute_layers") == "quarters":
        reader.string("recompute_layers")
        values["recompute_layers"] = None
    elif reader.has("recompute_layers"):
        block = reader.items("recompute_layers", required=False)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_DEVICES for v in block):
            raise CatalogError(
                f"{path}: space.recompute_layers={quote(block)} is invalid: a list of layer counts N >= 1 "
                "(full recompute of the first N layers of each chunk) or quarters"
            )
        values["recompute_layers"] = tuple(sorted(set(block)))
    if isinstance(reader.peek("hsdp"), str) and reader.peek("hsdp").lower() in tuple(ShardRule):
        values["hsdp"] = ShardRule(reader.string("hsdp").lower())
    elif reader.has("hsdp"):
        degrees = reader.peek("hsdp")
        if not isinstance(degrees, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 < v <= MAX_DEVICES for v in degrees
        ):
            raise CatalogError(
                f"{path}: space.hsdp={quote(degrees)} is invalid: none, domain, powers, or a list of shard degrees "
                "(data-parallel ranks per shard group, each at least 2)"
            )
        values["hsdp"] = tuple(sorted(set(reader.items("hsdp"))))
    if reader.peek("offload") == "none":
        reader.string("offload")
        values["offload"] = ()
    elif reader.has("offload"):
        values["offload"] = _offload_sets(path, reader.items("offload", required=False))
    precision = reader.items("precision", required=False)
    if precision:
        values["precision"] = tuple(_choice(path, "precision", Precision, v) for v in precision)
    for limit in ("max_tp", "max_pp", "max_cp", "max_mbs"):
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


def _offload_sets(path: Path | str, items: list[Any]) -> tuple[int, ...]:
    """``offload: [optimizer, weights+activations]`` as bit masks (``perf.offload``), in the order given."""
    masks: list[int] = []
    for item in items:
        kinds = str(item).lower().replace("+", " ").split()
        if not kinds or any(k not in OFFLOAD_KINDS for k in kinds):
            raise CatalogError(
                f"{path}: space.offload={quote(item)} is invalid: none, or a list of sets of "
                f"{', '.join(OFFLOAD_KINDS)} joined by '+'"
            )
        mask = offload_mask(tuple(kinds))
        if mask not in masks:
            masks.append(mask)
    return tuple(masks)


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
