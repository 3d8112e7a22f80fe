"""The operation graph of one training step: what each pipeline rank runs, per micro-batch and chunk.

Built from the same pieces as the closed-form step model (``perf.parts.WindowParts``): a rank's forward,
backward (input and weight gradients apart where a zero-bubble schedule splits them) and recompute times, each
layer's tensor-, context- and expert-parallel collectives (the part the framework cannot hide blocks the
compute stream; the hidden part runs beside it), the stage-to-stage sends, the FSDP gathers and reduce-scatters
and the data-parallel gradient reduction and parameter gather in per-layer buckets (Megatron's
``overlap_grad_reduce`` / ``overlap_param_gather``; PyTorch FSDP's per-module units), and the optimizer.

**Symmetry.** The placement numbers ranks tp fastest, then cp, ep, dp, pp (``parallel.placement``): every rank
of one pipeline stage runs the same passes on equivalent links, so one *rank class* per pipeline rank stands for
its ``tp x cp x dp`` ranks, and each link class of that rank carries only its class's traffic. The graph has
``O(pp x micro-batches x chunks x layers)`` operations, whatever the cluster's size.

**Order.** Passes of a rank run in the order its schedule gives (:func:`static_order`): 1F1B and GPipe (Narayanan
et al. 2021), Megatron's interleaved order (``schedules.py``: groups of ``pp`` micro-batches per chunk), ZB-H1
with weight gradients deferred to fill the drain (Qi et al. 2023); ZB-V and DualPipe are run by a greedy
policy (backward first, then forward within the schedule's activation limit, weight gradients in the gaps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from rainier.parallel.plan import Schedule
from rainier.perf.parts import WindowParts

Demand = tuple[tuple[str, float], ...]


class PassKind(Enum):
    """A pass of one micro-batch through one chunk of a rank."""

    FORWARD = "F"
    BACKWARD = "B"  # input gradients (and weight gradients where the schedule does not split them)
    WEIGHT = "W"  # weight gradients of a zero-bubble schedule


@dataclass(frozen=True, slots=True)
class Transfer:
    """A collective or send: ``work_s`` alone, run as ``phases`` in turn, each a share of the work and its demand
    on each link class (load / duration of the phase alone)."""

    category: str  # tp, ep, cp, pp, dp, fsdp
    work_s: float
    phases: tuple[tuple[float, Demand], ...]

    def scaled(self, factor: float) -> Transfer:
        return Transfer(self.category, self.work_s * factor, self.phases)


@dataclass(frozen=True, slots=True)
class PassWork:
    """What one visit of a micro-batch to a chunk costs on a rank (whole visit; split into ``blocks`` layers)."""

    compute_s: float
    recompute_s: float
    blocks: int
    blocking: tuple[Transfer, ...]  # exposed collectives, split evenly over the blocks
    hidden: tuple[Transfer, ...]  # the overlapped remainder, started with the pass
    gather: Transfer | None  # FSDP parameter gather, one bucket per block
    scatter: Transfer | None  # FSDP / ZeRO-2 gradient reduce-scatter, one bucket per block


@dataclass(frozen=True, slots=True)
class RankWork:
    """One rank class: its passes, sends, and the step's data-parallel traffic and optimizer."""

    row: int
    ranks: int  # ranks this class stands for
    passes: dict[PassKind, PassWork]
    send: Transfer | None  # to the next (forward) or previous (backward) stage, per visit
    send_blocks: bool
    reduce: Transfer | None  # the gradient reduction of one chunk (per visit's share of the step's)
    param_gather: Transfer | None  # the parameter all-gather of one chunk at the start of the step
    optimizer_s: float


@dataclass(frozen=True, slots=True)
class StepGraph:
    """Every rank class's work, the virtual pipeline and each rank's order of passes."""

    schedule: Schedule
    num_stages: int  # pipeline ranks (= rank classes)
    num_micro_batches: int
    chunks: int
    num_virtual: int  # virtual stages a micro-batch passes through
    ranks: tuple[RankWork, ...]
    split_weight: bool
    step_overhead_s: float

    def rank_of(self, micro_batch: int, virtual: int) -> int:
        """The pipeline rank that runs ``virtual`` stage for ``micro_batch``."""
        p = self.num_stages
        if self.schedule is Schedule.ZB_V:
            return virtual if virtual < p else 2 * p - 1 - virtual
        if self.schedule is Schedule.DUALPIPE:
            return virtual if micro_batch < self.num_micro_batches // 2 else p - 1 - virtual
        return virtual % p

    def chunk_of(self, micro_batch: int, virtual: int) -> int:
        """Which of its chunks a rank runs for ``virtual`` (DualPipe: the direction's parameter copy)."""
        p = self.num_stages
        if self.schedule is Schedule.DUALPIPE:
            return 0 if micro_batch < self.num_micro_batches // 2 else 1
        if self.schedule is Schedule.ZB_V:
            return 0 if virtual < p else 1
        return virtual // p

    def virtual_of(self, rank: int, chunk: int) -> int:
        """The virtual stage of ``rank``'s ``chunk`` (for the static orders)."""
        return chunk * self.num_stages + rank

    def num_passes(self) -> int:
        """Passes in the step: forward and backward (and weight) per micro-batch and virtual stage."""
        kinds = 3 if self.split_weight else 2
        return kinds * self.num_micro_batches * self.num_virtual


PHASED = ("tp", "dp", "fsdp")  # rings over nested levels: one level after the other (Thakur et al. 2005)
TIER_PREFIX = "tier:"  # parallel.placement.tier_link: a tier's uplinks, loaded while the scale-out ring runs


def make_transfer(category: str, work: float, load: np.ndarray, duration: float, names: tuple[str, ...]) -> Transfer:
    """A transfer of ``work`` seconds whose whole collective lasts ``duration`` alone and loads ``load``.

    Hierarchical rings (tensor- and data-parallel collectives, FSDP) run level by level: one phase per link class
    of a level, lasting its share of the load (the collective's time alone is split in proportion, latency
    included), with the tier uplinks loaded during the scale-out phase. An all-to-all, a send or a context-
    parallel ring step is one phase using all its links at once.
    """
    work = max(float(work), 0.0)
    if duration <= 0.0:
        return Transfer(category, work, ((1.0, ()),))
    loaded = [(names[c], float(load[c])) for c in range(len(names)) if load[c] > 0.0]
    levels = [(name, value) for name, value in loaded if not name.startswith(TIER_PREFIX)]
    tiers = [(name, value) for name, value in loaded if name.startswith(TIER_PREFIX)]
    if category not in PHASED or len(levels) < 2:
        return Transfer(category, work, ((1.0, tuple((name, value / duration) for name, value in loaded)),))
    total = sum(value for _, value in levels)
    phases = []
    for position, (name, value) in enumerate(levels):
        share = value / total
        demand = [(name, value / (share * duration))]
        if position == len(levels) - 1:  # the outermost level is the scale-out one where tiers are crossed
            demand += [(tier, tier_load / (share * duration)) for tier, tier_load in tiers]
        phases.append((share, tuple(demand)))
    return Transfer(category, work, tuple(phases))


def build_graph(
    parts: WindowParts,
    *,
    schedule: Schedule,
    rank_rows: tuple[int, ...],
    ranks_per_stage: int,
    link_names: tuple[str, ...],
    step_overhead_s: float,
    max_blocks: int = 64,
) -> StepGraph:
    """The graph of plan 0 of ``parts`` (a batch of one plan) with each pipeline rank on its row."""
    q = parts
    m = int(q.m[0])
    p = int(q.pp[0])
    chunks = int(q.chunks[0])
    split = schedule in (Schedule.ZERO_BUBBLE, Schedule.ZB_V, Schedule.DUALPIPE)
    # DualPipe: each direction's pipeline holds the whole model once (two parameter copies), so a visit carries
    # the rank's whole row; the other schedules cut the row into ``chunks`` virtual stages.
    share = 1.0 if schedule is Schedule.DUALPIPE else 1.0 / chunks
    num_virtual = p if schedule is Schedule.DUALPIPE else p * chunks
    full = bool(q.full[0])
    names = link_names

    def scalar(x: np.ndarray) -> float:
        return float(x[0])

    tp_d, tp_m, etp = scalar(q.tp_d_dur), scalar(q.tp_m_dur), scalar(q.etp_dur)
    ep, cp, pp_dur = scalar(q.ep_dur), scalar(q.cp_dur), scalar(q.pp_dur)
    ranks: list[RankWork] = []
    for r in sorted(set(rank_rows)):
        nd, nm = float(q.nd[0, r]), float(q.nm[0, r])
        layers = nd + nm
        blocks = max(1, min(max_blocks, math.ceil(layers * share - 1e-9)))

        def row(x: np.ndarray, r: int = r) -> float:
            return float(x[0, r])

        tp_dur = nd * tp_d + nm * (tp_m + etp)
        tp_load = nd * q.tp_d_load[0] + nm * q.tp_m_load[0]
        ep_dur, ep_load = nm * ep, nm * q.ep_load[0]
        cp_dur, cp_load = layers * cp, layers * q.cp_load[0]
        forward_items = [
            ("tp", tp_dur, row(q.tp_fwd), tp_load),
            ("ep", ep_dur, row(q.ep_fwd), ep_load),
            ("cp", cp_dur, row(q.cp_fwd), cp_load),
        ]
        backward_items = [
            ("tp", 2 * tp_dur, 2 * row(q.tp_bwd), 2 * tp_load),
            ("ep", 2 * ep_dur, 2 * row(q.ep_fwd), 2 * ep_load),
            ("cp", 2 * cp_dur, row(q.cp_bwd), 2 * cp_load),
        ]
        if full:  # the recomputed forward repeats its collectives (on the row's recomputed share of its layers)
            again = row(q.recompute_share)
            backward_items += [(c, again * d, again * e, again * ld) for c, d, e, ld in forward_items]

        def split_items(items: list[tuple[str, float, float, np.ndarray]]) -> tuple[tuple[Transfer, ...], ...]:
            blocking, hidden = [], []
            for category, duration, exposed, load in items:
                if duration <= 0.0:
                    continue
                exposed = min(exposed, duration)
                blocking.append(make_transfer(category, exposed * share, load * share, duration * share, names))
                if duration - exposed > 0.0:
                    hidden.append(
                        make_transfer(category, (duration - exposed) * share, load * share, duration * share, names)
                    )
            return tuple(blocking), tuple(hidden)

        fsdp_dur = row(q.fsdp_dur)
        fsdp = (
            make_transfer("fsdp", fsdp_dur * share, q.fsdp_load[0, r] * share, fsdp_dur * share, names)
            if fsdp_dur > 0
            else None
        )
        z2_dur = row(q.z2_dur)
        z2 = make_transfer("dp", z2_dur * share, q.z2_load[0, r] * share, z2_dur * share, names) if z2_dur > 0 else None
        f_block, f_hidden = split_items(forward_items)
        b_block, b_hidden = split_items(backward_items)
        weight_s = row(q.bwd_weight) * share
        input_s = row(q.bwd_input) * share
        recompute_s = row(q.recompute_compute) * share
        passes = {
            PassKind.FORWARD: PassWork(row(q.fwd_compute) * share, 0.0, blocks, f_block, f_hidden, fsdp, None),
            PassKind.BACKWARD: PassWork(
                input_s if split else input_s + weight_s,
                recompute_s,
                blocks,
                b_block,
                b_hidden,
                fsdp,
                None if split else (fsdp or z2),
            ),
        }
        if split:
            passes[PassKind.WEIGHT] = PassWork(weight_s, 0.0, blocks, (), (), None, fsdp or z2)
        reduce_dur, gather_dur = row(q.reduce_dur), row(q.gather_dur)
        grad_share = 1.0 / chunks
        send = None
        if pp_dur > 0 and p > 1:
            per_visit = pp_dur / chunks
            send = make_transfer("pp", per_visit, q.pp_load[0] / chunks, per_visit, names)
        ranks.append(
            RankWork(
                row=r,
                ranks=ranks_per_stage,
                passes=passes,
                send=send,
                send_blocks=bool(q.pp_blocking[0]),
                reduce=make_transfer(
                    "dp", reduce_dur * grad_share, q.reduce_load[0, r] * grad_share, reduce_dur * grad_share, names
                )
                if reduce_dur > 0
                else None,
                param_gather=make_transfer(
                    "dp", gather_dur * grad_share, q.gather_load[0, r] * grad_share, gather_dur * grad_share, names
                )
                if gather_dur > 0
                else None,
                optimizer_s=row(q.optimizer_rows),
            )
        )
    by_row = {w.row: w for w in ranks}
    return StepGraph(
        schedule=schedule,
        num_stages=p,
        num_micro_batches=m,
        chunks=chunks,
        num_virtual=num_virtual,
        ranks=tuple(by_row[r] for r in rank_rows),
        split_weight=split,
        step_overhead_s=step_overhead_s,
    )


PassId = tuple[PassKind, int, int]  # (kind, micro-batch, virtual stage)


def static_order(graph: StepGraph, rank: int) -> list[PassId] | None:
    """The rank's forward/backward order for 1F1B, GPipe, interleaved and ZB-H1; ``None``: greedy schedules."""
    p, m, v = graph.num_stages, graph.num_micro_batches, graph.chunks
    schedule = graph.schedule
    if schedule in (Schedule.ZB_V, Schedule.DUALPIPE):
        return None
    fwd, bwd = PassKind.FORWARD, PassKind.BACKWARD
    if schedule is Schedule.GPIPE or p == 1:
        return [(fwd, j, rank) for j in range(m)] + [(bwd, j, rank) for j in range(m)]
    if schedule is Schedule.INTERLEAVED and v > 1:
        # Megatron-LM schedules.py: chunks in turn over groups of pp micro-batches; backward chunks reversed.
        forwards: list[tuple[int, int]] = []
        for start in range(0, m, p):
            group = range(start, min(start + p, m))
            forwards += [(j, c) for c in range(v) for j in group]
        backwards: list[tuple[int, int]] = []
        for start in range(0, m, p):
            group = range(start, min(start + p, m))
            backwards += [(j, c) for c in reversed(range(v)) for j in group]
        warm = min(2 * (p - rank - 1) + (v - 1) * p, m * v)
        f_ids = [(fwd, j, graph.virtual_of(rank, c)) for j, c in forwards]
        b_ids = [(bwd, j, graph.virtual_of(rank, c)) for j, c in backwards]
    else:
        warm = min(p - rank - 1, m)
        f_ids = [(fwd, j, rank) for j in range(m)]
        b_ids = [(bwd, j, rank) for j in range(m)]
    order = f_ids[:warm]
    for i in range(len(f_ids) - warm):
        order += [f_ids[warm + i], b_ids[i]]
    order += b_ids[len(f_ids) - warm :]
    return order


def forward_limit(graph: StepGraph, rank: int) -> int:
    """Visits a greedy rank may hold activations for before it starts another micro-batch (ZB-V: 1F1B's peak,
    ``p`` stages of activations = ``2p`` half-size chunks, on every rank of the V; DualPipe: ``p + 1``, its
    README's activation memory); later visits of a started micro-batch are never held back."""
    p = graph.num_stages
    if graph.schedule is Schedule.DUALPIPE:
        return p + 1
    return 2 * p


def weight_delay(graph: StepGraph, rank: int) -> int:
    """Weight-gradient passes a rank may defer (ZB-H1: a rank ``p-1-i`` passes from the end fills its drain)."""
    p = graph.num_stages
    if graph.schedule is Schedule.ZERO_BUBBLE:
        return p - rank - 1
    return min(rank, p - 1 - rank) + 1 if graph.schedule is Schedule.DUALPIPE else p - rank - 1
