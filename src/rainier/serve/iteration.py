"""What the serving simulation needs of a replica: the iteration-cost protocol and the KV admission watermark.

:class:`rainier.serve.cost.ReplicaCost` satisfies :class:`IterationCost`; tests use simpler stand-ins.
"""

from __future__ import annotations

import inspect
from typing import Protocol, runtime_checkable

KV_WATERMARK_FRACTION = 0.01
"""Share of the KV cache kept free when admitting into a busy engine (vLLM's default block watermark)."""


@runtime_checkable
class IterationCost(Protocol):
    """Time of one engine iteration on ONE model replica (a tp x pp group of devices)."""

    @property
    def kv_capacity_tokens(self) -> int:
        """KV-cache tokens that fit in the replica's memory."""
        ...

    @property
    def kv_bytes_per_token(self) -> float:
        """Bytes of KV cache per token (for the KV transfer in disaggregated serving)."""
        ...

    @property
    def max_batch(self) -> int:
        """Engine limit on sequences per iteration."""
        ...

    def iteration_s(self, prefill_tokens: int, decode_seqs: int, kv_tokens: int) -> float:
        """One forward pass prefilling ``prefill_tokens`` and decoding one token for each of ``decode_seqs``
        sequences whose caches hold ``kv_tokens`` in all.

        A cost whose ``iteration_s`` also takes a keyword ``prefill_seqs`` gets the number of prompts (or prompt
        chunks) the prefill tokens belong to, which sets the prompts' attention work."""
        ...


def takes_cached_tokens(cost: IterationCost) -> bool:
    """Whether ``cost.iteration_s`` accepts ``cached_tokens`` (context its prompts find cached and attend to)."""
    try:
        return "cached_tokens" in inspect.signature(cost.iteration_s).parameters
    except (TypeError, ValueError):
        return False


def takes_prefill_seqs(cost: IterationCost) -> bool:
    """Whether ``cost.iteration_s`` accepts ``prefill_seqs`` (the number of prompts in the prefill tokens)."""
    try:
        return "prefill_seqs" in inspect.signature(cost.iteration_s).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def pipeline_groups(cost: IterationCost) -> tuple[int, IterationCost]:
    """The micro-batch groups a replica's engine keeps in flight, and the cost of one group's iterations.

    A cost without pipeline stages is one group. A pipeline-parallel replica (``ReplicaCost.micro_batch_groups``)
    runs ``pp`` groups of sequences one stage apart, each with its own share of the cache.
    """
    split = getattr(cost, "micro_batch_groups", None)
    if not callable(split):
        return 1, cost
    groups, group_cost = split()
    return int(groups), group_cost
