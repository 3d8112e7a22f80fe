"""Plan search entry point (the vectorised engine lands in the next commit)."""

from __future__ import annotations

from collections.abc import Callable

from rainier.hardware import Cluster
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.search.result import Objective, SearchResult
from rainier.search.space import SearchSpace
from rainier.workload.shape import TransformerShape


def search(
    shape: TransformerShape,
    cluster: Cluster,
    *,
    gbs: int,
    seq_len: int | None = None,
    objective: Objective = Objective.TIME,
    top_k: int = 10,
    space: SearchSpace | None = None,
    efficiency: Efficiency | EfficiencyTable | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SearchResult:
    """Every valid plan of ``shape`` on all of ``cluster`` at global batch ``gbs`` sequences, ranked.

    Raises ``InputError`` when no plan is feasible, naming the binding constraint.
    """
    raise NotImplementedError
