"""Pipeline stage layout: how many layers (dense and MoE) each pipeline rank holds, and which rank holds the
input embedding and the output head.

Megatron-LM splits ``L`` layers evenly over ``pp`` stages, or, with ``--decoder-first-pipeline-num-layers`` and
``--decoder-last-pipeline-num-layers``, gives the first and last stage their own counts and the middle stages
the rest (megatron/training/arguments.py). The embedding sits on the first stage and the output head and loss
on the last, so an even split leaves the last stage slower; Megatron's ``--account-for-loss-in-pipeline-split``
and the zero-bubble authors' advice to use ``k*pp - 2`` layers (github.com/sail-sg/zero-bubble-pipeline-
parallelism, README) both move layers off the end stages. Here, a layer count that ``pp`` does not divide (and
no first/last count given) is split *balanced*: the last stage gets the number of layers that makes its layers
plus the head closest to the other stages' load, and the remaining layers spread as evenly as possible, the
larger shares on the later middle stages (the first stage holds the most activations in flight).

Interleaved schedules cut each rank's layers into ``chunks`` virtual stages; layers are assigned to virtual
stages in model order (virtual stage ``k`` on rank ``k mod pp``), so the dense first layers of a MoE model land
on the first ranks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StageRow:
    """Ranks of a pipeline that hold the same work: layer counts, embedding/head, how many, the lowest index."""

    num_dense: int
    num_moe: int
    embedding: bool
    head: bool
    count: int
    first_rank: int

    @property
    def num_layers(self) -> int:
        return self.num_dense + self.num_moe


def pipeline_problem(
    num_layers: int, pp: int, chunks: int = 1, *, first: int | None = None, last: int | None = None
) -> str | None:
    """Why ``num_layers`` cannot be laid out on ``pp`` ranks of ``chunks`` virtual stages each (or ``None``)."""
    if pp > num_layers:
        return f"pp={pp} exceeds the {num_layers} layers (each stage needs at least one)"
    if pp == 1:
        if chunks > 1:
            return f"{chunks} chunks per rank need a pipeline (pp > 1)"
        return None
    if first is not None and first > num_layers:
        return f"first-stage layers {first} exceed the {num_layers} layers"
    if last is not None and last > num_layers:
        return f"last-stage layers {last} exceed the {num_layers} layers"
    if first is None and last is None and num_layers < pp * chunks:
        return f"{num_layers} layers cannot fill pp*chunks={pp * chunks} virtual stages"
    fixed = (first or 0) + (last or 0)
    free_ranks = pp - (first is not None) - (last is not None)
    remaining = num_layers - fixed
    if remaining < 0:
        return f"first + last stage layers {fixed} exceed the {num_layers} layers"
    if free_ranks == 0 and remaining:
        return f"first + last stage layers {fixed} must equal the {num_layers} layers when pp=2"
    if free_ranks and remaining < free_ranks * chunks:
        return (
            f"{remaining} layers left for {free_ranks} middle stage(s) of {chunks} chunk(s): "
            "each chunk needs at least one layer"
        )
    for name, value in (("first", first), ("last", last)):
        if value is not None and value and value < chunks:
            return f"{name}-stage layers {value} < {chunks} chunks per rank"
    return None


def rank_layer_counts(
    num_layers: int, pp: int, *, first: int | None = None, last: int | None = None, head_weight: float = 0.0
) -> tuple[int, ...]:
    """Layers per pipeline rank (see the module docstring); call :func:`pipeline_problem` first.

    ``head_weight`` is the output head's (and loss's) cost in layers, used only for the balanced split.
    """
    if pp == 1:
        return (num_layers,)
    if first is None and last is None:
        if num_layers % pp == 0:
            return (num_layers // pp,) * pp
        return _balanced(num_layers, pp, head_weight)
    free = [i for i, given in enumerate((first, *([None] * (pp - 2)), last)) if given is None]
    counts = [first if first is not None else 0] + [0] * (pp - 2) + [last if last is not None else 0]
    remaining = num_layers - sum(counts)
    for slot, share in zip(free, _spread(remaining, len(free)), strict=True):
        counts[slot] = share
    return tuple(counts)


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal integers, the larger ones last."""
    if parts == 0:
        return []
    base, extra = divmod(total, parts)
    return [base + (1 if i >= parts - extra else 0) for i in range(parts)]


def _balanced(num_layers: int, pp: int, head_weight: float) -> tuple[int, ...]:
    """Layers per rank minimising the largest rank load (layers + head on the last rank)."""
    best: tuple[float, int, tuple[int, ...]] | None = None
    upper = math.ceil(num_layers / pp)
    for last in range(1, upper + 1):
        rest = _spread(num_layers - last, pp - 1)
        if rest[0] < 1:
            continue
        load = max(max(rest), last + head_weight)
        key = (load, -last)
        if best is None or key < best[:2]:
            best = (load, -last, (*rest, last))
    assert best is not None  # pp <= num_layers guarantees last=1 works
    return best[2]


@functools.lru_cache(maxsize=4096)
def stage_rows(
    layer_is_moe: tuple[bool, ...],
    pp: int,
    chunks: int = 1,
    *,
    first: int | None = None,
    last: int | None = None,
    head_weight: float = 0.0,
) -> tuple[StageRow, ...]:
    """The distinct rank loads of a pipeline, with how many ranks carry each.

    ``layer_is_moe`` lists the model's layers in order (True for MoE layers). Each rank's layers are cut into
    ``chunks`` near-equal virtual stages, assigned to virtual stages ``r, r + pp, ...`` in model order.
    """
    rows: dict[tuple[int, int, bool, bool], list[int]] = {}
    for rank, key in enumerate(_rank_keys(layer_is_moe, pp, chunks, first, last, head_weight)):
        rows.setdefault(key, []).append(rank)
    return tuple(
        StageRow(num_dense=k[0], num_moe=k[1], embedding=k[2], head=k[3], count=len(v), first_rank=v[0])
        for k, v in rows.items()
    )


def rank_rows(
    layer_is_moe: tuple[bool, ...],
    pp: int,
    chunks: int = 1,
    *,
    first: int | None = None,
    last: int | None = None,
    head_weight: float = 0.0,
) -> tuple[int, ...]:
    """For each pipeline rank in order, the index of its row in :func:`stage_rows` (same arguments)."""
    index: dict[tuple[int, int, bool, bool], int] = {}
    out = []
    for key in _rank_keys(layer_is_moe, pp, chunks, first, last, head_weight):
        out.append(index.setdefault(key, len(index)))
    return tuple(out)


def _rank_keys(
    layer_is_moe: tuple[bool, ...], pp: int, chunks: int, first: int | None, last: int | None, head_weight: float
) -> list[tuple[int, int, bool, bool]]:
    """Each rank's (dense layers, MoE layers, embedding, head)."""
    num_layers = len(layer_is_moe)
    per_rank = rank_layer_counts(num_layers, pp, first=first, last=last, head_weight=head_weight)
    per_chunk = [_spread(n, chunks) for n in per_rank]
    moe_of = [0] * pp
    dense_of = [0] * pp
    position = 0
    for chunk in range(chunks):
        for rank in range(pp):
            size = per_chunk[rank][chunk]
            block = layer_is_moe[position : position + size]
            moe = sum(block)
            moe_of[rank] += moe
            dense_of[rank] += size - moe
            position += size
    assert position == num_layers
    return [(dense_of[rank], moe_of[rank], rank == 0, rank == pp - 1) for rank in range(pp)]


def layer_kinds(num_layers: int, moe_flags: Sequence[bool]) -> tuple[bool, ...]:
    """A model's layer kinds as a hashable tuple (for :func:`stage_rows`'s cache)."""
    flags = tuple(bool(f) for f in moe_flags)
    assert len(flags) == num_layers
    return flags
