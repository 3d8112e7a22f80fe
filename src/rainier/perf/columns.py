"""Plans as columns: the vectorised form of :class:`~rainier.parallel.Plan` the step model and the search share.

Enums become integer codes and optional fields sentinel values (``-1`` for an unset stage layer count, ``0``
for an unset expert-TP degree, capacity, imbalance or domain limit), so that millions of plans are a handful of
numpy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from rainier.parallel.plan import RECOMPUTE_MODULES, DegreeUnit, Fp8Recipe, Plan, Recompute, Schedule
from rainier.perf.offload import offload_kinds, offload_mask
from rainier.precision import Precision

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

RECOMPUTE_CODES = {Recompute.NONE: 0, Recompute.SELECTIVE: 1, Recompute.FULL: 2}
SCHEDULE_CODES = {
    Schedule.ONE_F_ONE_B: 0,
    Schedule.INTERLEAVED: 1,
    Schedule.ZERO_BUBBLE: 2,
    Schedule.GPIPE: 3,
    Schedule.ZB_V: 4,
    Schedule.DUALPIPE: 5,
}
PRECISION_CODES = {p: i for i, p in enumerate(Precision)}
FP8_RECIPE_CODES: dict[Fp8Recipe | None, int] = {None: -1, **{r: i for i, r in enumerate(Fp8Recipe)}}
RECOMPUTES = {v: k for k, v in RECOMPUTE_CODES.items()}
SCHEDULES = {v: k for k, v in SCHEDULE_CODES.items()}
PRECISIONS = {v: k for k, v in PRECISION_CODES.items()}
FP8_RECIPES = {v: k for k, v in FP8_RECIPE_CODES.items()}
UNSET = -1
# The attention kernel column's codes (``PlanColumns.flash``).
UNFUSED_ATTENTION, FUSED_ATTENTION, FP8_ATTENTION, FLASH2_ATTENTION = 0, 1, 2, 3
DEFAULT_RECOMPUTE_MASK = 1  # core_attn


def recompute_mask(modules: tuple[str, ...]) -> int:
    """The selective-recompute modules as a bit mask (bit i = ``RECOMPUTE_MODULES[i]``)."""
    return sum(1 << RECOMPUTE_MODULES.index(m) for m in modules)


def attention_code(plan: Plan) -> int:
    """A plan's attention kernel as its column code: unfused, fused, fused FP8, or FlashAttention-2's kernels."""
    if not plan.flash_attention:
        return UNFUSED_ATTENTION
    if plan.fp8_attention:
        return FP8_ATTENTION
    return FLASH2_ATTENTION if plan.flash2_attention else FUSED_ATTENTION


def recompute_modules(mask: int) -> tuple[str, ...]:
    return tuple(m for i, m in enumerate(RECOMPUTE_MODULES) if mask >> i & 1)


def chunks_of(schedule: IntArray, vpp: IntArray) -> IntArray:
    """Model chunks per pipeline rank of schedule codes and vpp degrees (:attr:`PlanColumns.chunks`)."""
    two = (schedule == SCHEDULE_CODES[Schedule.ZB_V]) | (schedule == SCHEDULE_CODES[Schedule.DUALPIPE])
    out: IntArray = np.where(schedule == SCHEDULE_CODES[Schedule.INTERLEAVED], vpp, np.where(two, 2, 1))
    return out


@dataclass(frozen=True, slots=True)
class PlanColumns:
    """Plans as columns of equal length (integer codes for enums, sentinels for unset options)."""

    tp: IntArray
    pp: IntArray
    dp: IntArray
    cp: IntArray
    ep: IntArray
    vpp: IntArray
    mbs: IntArray
    gbs: IntArray
    sp: BoolArray
    zero: IntArray
    recompute: IntArray
    precision: IntArray
    schedule: IntArray
    lora: BoolArray
    pp_first: IntArray  # -1: not set
    pp_last: IntArray  # -1: not set
    etp: IntArray  # 0: same as tp
    tp_overlap: BoolArray
    a2a_overlap: BoolArray
    capacity: FloatArray  # 0: dropless
    imbalance: FloatArray  # 0: the fitted default
    fp8_recipe: IntArray  # -1: the chip's native recipe
    flash: IntArray  # attention kernel: 0 unfused, 1 fused (FlashAttention), 2 fused with FP8 matmuls, 3 FA2's
    ep_domains: IntArray  # 0: no node-limited routing
    ep_dedup: BoolArray
    recompute_mask: IntArray  # selective recompute modules, a bit mask over RECOMPUTE_MODULES
    recompute_layers: IntArray  # full recompute of the first N layers of each chunk; 0: every layer
    offload: IntArray  # kinds kept in host memory, a bit mask over OFFLOAD_KINDS (perf.offload); 0: none
    shard: IntArray  # HSDP shard group in data-parallel ranks; 0: the whole dp group (plain ZeRO)

    def __len__(self) -> int:
        return len(self.tp)

    @classmethod
    def from_plans(cls, plans: Sequence[Plan]) -> PlanColumns:
        def ints(values: list[int]) -> IntArray:
            return np.asarray(values, dtype=np.int64)

        def floats(values: list[float]) -> FloatArray:
            return np.asarray(values, dtype=np.float64)

        def bools(values: list[bool]) -> BoolArray:
            return np.asarray(values, dtype=bool)

        return cls(
            tp=ints([p.tp_degree for p in plans]),
            pp=ints([p.pp_degree for p in plans]),
            dp=ints([p.dp_degree for p in plans]),
            cp=ints([p.cp_degree for p in plans]),
            ep=ints([p.ep_degree for p in plans]),
            vpp=ints([p.vpp_degree for p in plans]),
            mbs=ints([p.mbs for p in plans]),
            gbs=ints([p.gbs for p in plans]),
            sp=bools([p.sequence_parallel for p in plans]),
            zero=ints([p.zero_stage for p in plans]),
            recompute=ints([RECOMPUTE_CODES[p.recompute] for p in plans]),
            precision=ints([PRECISION_CODES[p.precision] for p in plans]),
            schedule=ints([SCHEDULE_CODES[p.schedule] for p in plans]),
            lora=bools([p.lora for p in plans]),
            pp_first=ints([UNSET if p.first_stage_layers is None else p.first_stage_layers for p in plans]),
            pp_last=ints([UNSET if p.last_stage_layers is None else p.last_stage_layers for p in plans]),
            etp=ints([p.expert_tp_degree or 0 for p in plans]),
            tp_overlap=bools([p.tp_comm_overlap for p in plans]),
            a2a_overlap=bools([p.moe_a2a_overlap for p in plans]),
            capacity=floats([p.capacity_factor or 0.0 for p in plans]),
            imbalance=floats([p.routing_imbalance or 0.0 for p in plans]),
            fp8_recipe=ints([FP8_RECIPE_CODES[p.fp8_recipe] for p in plans]),
            flash=ints([attention_code(p) for p in plans]),
            ep_domains=ints([p.ep_domain_limit or 0 for p in plans]),
            ep_dedup=bools([p.ep_dedup for p in plans]),
            recompute_mask=ints([recompute_mask(p.recompute_modules) for p in plans]),
            recompute_layers=ints([p.recompute_layers or 0 for p in plans]),
            offload=ints([offload_mask(p.offload) for p in plans]),
            shard=ints([p.shard_degree or 0 for p in plans]),
        )

    @classmethod
    def defaults(cls, n: int, **columns: NDArray[np.generic]) -> PlanColumns:
        """``n`` plans with the given columns and every option column at its default (for the search)."""
        filled: dict[str, NDArray[np.generic]] = {
            "pp_first": np.full(n, UNSET, dtype=np.int64),
            "pp_last": np.full(n, UNSET, dtype=np.int64),
            "etp": np.zeros(n, dtype=np.int64),
            "tp_overlap": np.zeros(n, dtype=bool),
            "a2a_overlap": np.zeros(n, dtype=bool),
            "capacity": np.zeros(n, dtype=np.float64),
            "imbalance": np.zeros(n, dtype=np.float64),
            "fp8_recipe": np.full(n, UNSET, dtype=np.int64),
            "flash": np.ones(n, dtype=np.int64),
            "ep_domains": np.zeros(n, dtype=np.int64),
            "ep_dedup": np.zeros(n, dtype=bool),
            "recompute_mask": np.full(n, DEFAULT_RECOMPUTE_MASK, dtype=np.int64),
            "recompute_layers": np.zeros(n, dtype=np.int64),
            "offload": np.zeros(n, dtype=np.int64),
            "lora": np.zeros(n, dtype=bool),
            "shard": np.zeros(n, dtype=np.int64),
        }
        filled.update(columns)
        return cls(**filled)  # type: ignore[arg-type]

    def take(self, index: IntArray | BoolArray) -> PlanColumns:
        """The plans selected by an index or mask."""
        return PlanColumns(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def __getitem__(self, rows: slice) -> PlanColumns:
        """The plans of a slice, as views of these columns."""
        return PlanColumns(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    @classmethod
    def concat(cls, parts: Sequence[PlanColumns]) -> PlanColumns:
        """Several column sets as one, in order."""
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    @property
    def chunks(self) -> IntArray:
        """Model chunks per pipeline rank: vpp when interleaved, 2 for ZB-V and DualPipe, else 1."""
        return chunks_of(self.schedule, self.vpp)

    @property
    def expert_tp(self) -> IntArray:
        return np.where(self.etp > 0, self.etp, self.tp)

    @property
    def hsdp(self) -> BoolArray:
        """Plans whose ZeRO shard group is a proper part of the data-parallel group (HSDP)."""
        out: BoolArray = (self.shard > 0) & (self.shard < self.dp)
        return out

    def shard_groups(self) -> tuple[IntArray, IntArray]:
        """Ranks each plan's ZeRO state is sharded over: (dense, expert) (see :func:`shard_groups`)."""
        etp = self.expert_tp
        edp = np.maximum(np.floor_divide(self.tp * self.dp * self.cp, etp * self.ep), 1)
        return shard_groups(self.dp, self.cp, edp, self.shard)

    def plan_at(self, i: int, unit: DegreeUnit = DegreeUnit.DEVICE) -> Plan:
        """Row ``i`` as a :class:`Plan`."""
        return Plan(
            tp_degree=int(self.tp[i]),
            pp_degree=int(self.pp[i]),
            dp_degree=int(self.dp[i]),
            cp_degree=int(self.cp[i]),
            ep_degree=int(self.ep[i]),
            vpp_degree=int(self.vpp[i]),
            sequence_parallel=bool(self.sp[i]),
            zero_stage=int(self.zero[i]),
            mbs=int(self.mbs[i]),
            gbs=int(self.gbs[i]),
            recompute=RECOMPUTES[int(self.recompute[i])],
            precision=PRECISIONS[int(self.precision[i])],
            schedule=SCHEDULES[int(self.schedule[i])],
            degrees_unit=unit,
            lora=bool(self.lora[i]),
            first_stage_layers=None if self.pp_first[i] < 0 else int(self.pp_first[i]),
            last_stage_layers=None if self.pp_last[i] < 0 else int(self.pp_last[i]),
            expert_tp_degree=None if self.etp[i] <= 0 else int(self.etp[i]),
            tp_comm_overlap=bool(self.tp_overlap[i]),
            moe_a2a_overlap=bool(self.a2a_overlap[i]),
            capacity_factor=None if self.capacity[i] <= 0 else float(self.capacity[i]),
            routing_imbalance=None if self.imbalance[i] <= 0 else float(self.imbalance[i]),
            fp8_recipe=FP8_RECIPES[int(self.fp8_recipe[i])],
            flash_attention=bool(self.flash[i]),
            fp8_attention=bool(self.flash[i] == FP8_ATTENTION),
            flash2_attention=bool(self.flash[i] == FLASH2_ATTENTION),
            ep_domain_limit=None if self.ep_domains[i] <= 0 else int(self.ep_domains[i]),
            ep_dedup=bool(self.ep_dedup[i]),
            recompute_modules=recompute_modules(int(self.recompute_mask[i])),
            recompute_layers=None if self.recompute_layers[i] <= 0 else int(self.recompute_layers[i]),
            offload=offload_kinds(int(self.offload[i])),
            shard_degree=None if self.shard[i] <= 0 else int(self.shard[i]),
        )


def shard_groups(dp: IntArray, cp: IntArray, edp: IntArray, shard: IntArray) -> tuple[IntArray, IntArray]:
    """The (dense, expert) groups ZeRO shards the model state over, in ranks, and so the divisors of the sharded
    states.

    Dense state: the data-parallel and context-parallel ranks, ``dp x cp`` (Megatron's distributed optimizer); under
    HSDP the shard group's ``s x cp`` (``shard`` = s; the innermost ``s`` data-parallel ranks). Expert state: the
    expert-data-parallel group (``edp``); under HSDP the part of it inside one shard group, ``edp / gcd(edp, dp/s)``
    (the ``dp/s`` replicas split it where the expert blocks align with the shard groups; an expert block spanning
    several shard groups has no copy to shard with inside one, and keeps its state whole).
    """
    s = np.where(shard > 0, shard, dp)
    replicas = np.floor_divide(dp, s)
    return s * cp, np.floor_divide(edp, np.gcd(edp, replicas))


def recompute_share(cols: PlanColumns, rows: Mapping[str, FloatArray]) -> FloatArray:
    """The share of each pipeline rank row's layers that full recompute re-runs, (plans x rows).

    1 for ``recompute=full`` on every layer, 0 without full recompute. With ``recompute_layers=N`` (Megatron's
    ``--recompute-method block``) each of the rank's chunks recomputes its first N layers: ``min(N x chunks,
    layers) / layers`` (chunks of a rank taken as equal, as the step model does everywhere).
    """
    full = (cols.recompute == RECOMPUTE_CODES[Recompute.FULL])[:, None]
    if not (cols.recompute_layers > 0).any():  # every full recompute is of every layer
        every: FloatArray = np.empty(rows["count"].shape)
        every[...] = full
        return every
    n = cols.recompute_layers[:, None]
    layers = rows["num_dense"] + rows["num_moe"]
    block = np.minimum(n * cols.chunks[:, None], layers) / np.maximum(layers, 1.0)
    out: FloatArray = np.where(full, np.where(n > 0, block, 1.0), 0.0)
    return out
