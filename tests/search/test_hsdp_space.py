"""HSDP in the search space: which shard groups the default and the space file's rules try, and what it costs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rainier.catalog.loader import CatalogError
from rainier.hardware import cluster_of
from rainier.parallel import check_plan
from rainier.search.space import SearchSpace, ShardRule, enumerate_plans, load_space
from rainier.workload import get_model


def _plans(space: SearchSpace, model: str = "llama-3-8b", devices: int = 64, gbs: int = 512):  # type: ignore[no-untyped-def]
    shape, cluster = get_model(model), cluster_of("h100-sxm", devices)
    return shape, cluster, enumerate_plans(shape, cluster, gbs, space).valid


def test_default_tries_fsdp_plans_sharded_over_one_node() -> None:
    """On 8-GPU nodes: ZeRO-3 plans also with the shard group that fills one node (s x tp x cp = 8, s >= 2)."""
    shape, cluster, cols = _plans(SearchSpace())
    plain = _plans(SearchSpace(hsdp=ShardRule.NONE))[2]
    hybrid = cols.shard > 0
    assert hybrid.any() and not (cols.shard[~hybrid]).any()
    assert (cols.zero[hybrid] == 3).all()
    inner = cols.tp[hybrid] * cols.cp[hybrid]
    # one node, or where tp x cp fills it already, s = 2 of them
    assert (cols.shard[hybrid] * inner == np.maximum(8, 2 * inner)).all()
    assert (cols.shard[hybrid] < cols.dp[hybrid]).all() and (cols.dp[hybrid] % cols.shard[hybrid] == 0).all()
    assert len(cols) == len(plain) + int(hybrid.sum())
    assert len(cols) <= 1.3 * len(plain)  # the default space grows by at most ~30%
    for i in np.flatnonzero(hybrid)[:30]:
        assert check_plan(cols.plan_at(int(i)), shape, cluster.num_devices) is None


def test_powers_and_explicit_degrees_cover_zero_1_to_3() -> None:
    cols = _plans(SearchSpace(hsdp=ShardRule.POWERS))[2]
    hybrid = cols.shard > 0
    assert set(cols.zero[hybrid].tolist()) == {1, 2, 3}
    assert (cols.shard[hybrid] <= cols.dp[hybrid] // 2).all()
    assert (cols.shard[hybrid] * cols.tp[hybrid] * cols.cp[hybrid] >= 8).all()
    listed = _plans(SearchSpace(hsdp=(2, 4)))[2]
    assert set(listed.shard[listed.shard > 0].tolist()) == {2, 4}
    assert not (listed.zero[listed.shard > 0] == 0).any()


def test_space_file_hsdp(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    for text, expected in (
        ("hsdp: powers\n", ShardRule.POWERS),
        ("hsdp: none\n", ShardRule.NONE),
        ("hsdp: Domain\n", ShardRule.DOMAIN),
        ("hsdp: [16, 8, 16]\n", (8, 16)),
        ("tp: [8]\n", ShardRule.DOMAIN),
    ):
        path.write_text(text)
        assert load_space(path).hsdp == expected
    for text in ("hsdp: [1]\n", "hsdp: sometimes\n", "hsdp: 8\n"):
        path.write_text(text)
        with pytest.raises(CatalogError, match=r"space\.hsdp=.* is invalid: none, domain, powers, or a list"):
            load_space(path)
