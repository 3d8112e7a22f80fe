"""A fake plan search for the sweep machinery: one real step estimate, a short sleep, and failures on cue.

The machinery tests must not depend on the real search's speed or results, only on its interface. The fake
returns a genuine :class:`SearchResult` whose single plan is the step model's estimate of a fixed layout
(tp=8, the rest data parallel), so the stored metrics are real numbers. It is a module-level function, so it
pickles by reference into spawned worker processes and Ray tasks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from rainier.errors import InputError
from rainier.hardware import Cluster
from rainier.parallel.plan import Infeasible, parse_plan
from rainier.perf.step import estimate
from rainier.search.result import Objective, RankedPlan, SearchResult
from rainier.workload.shape import TransformerShape

FAKE_DELAY_S = 0.05
FAIL_GBS = 24  # a cell with this global batch fails with an InputError, as an infeasible search would
CRASH_GBS = 40  # a cell with this global batch raises a RuntimeError, as a bug in the search would


def fake_search(
    shape: TransformerShape,
    cluster: Cluster,
    *,
    gbs: int,
    seq_len: int | None = None,
    objective: Objective = Objective.TIME,
    top_k: int = 10,
    **_: Any,
) -> SearchResult:
    time.sleep(FAKE_DELAY_S)
    if gbs == FAIL_GBS:
        raise InputError(f"no feasible plan for gbs={gbs}: the binding constraint is made up")
    if gbs == CRASH_GBS:
        raise RuntimeError("boom")
    plan = parse_plan(f"tp=8,pp=1,mbs=1,gbs={gbs}", num_devices=cluster.num_devices)
    step = estimate(shape, plan, cluster, seq_len=seq_len)
    assert not isinstance(step, Infeasible), step
    ranked = RankedPlan(
        estimate=step,
        seconds_per_token=step.step_time_s / (gbs * step.seq_len),
        dollars_per_token=None,
        joules_per_token=None,
    )
    return SearchResult(
        model=shape.name,
        cluster=cluster.id,
        num_devices=cluster.num_devices,
        gbs=gbs,
        seq_len=step.seq_len,
        objective=objective,
        evaluated=1,
        candidates=3,
        infeasible={"memory": 2},
        elapsed_s=FAKE_DELAY_S,
        top=(ranked,)[:top_k],
    )


def write_spec(folder: Path, name: str = "sweep.yaml", **fields: Any) -> Path:
    """A spec file with a small default grid (1 model x 2 counts x 2 batch sizes), fields overridable."""
    document: dict[str, Any] = {
        "models": ["llama-2-7b"],
        "clusters": [{"accelerator": "h100-sxm", "count": [8, 16]}],
        "gbs": [16, 32],
    }
    document.update(fields)
    path = folder / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
