"""The interruption timeline a goodput simulation keeps for plots."""

from __future__ import annotations

from rainier.fleet.goodput import build_scenario, simulate_goodput


def test_timeline_follows_the_interruptions() -> None:
    result = simulate_goodput(
        build_scenario(num_devices=16_384, devices_per_server=8, accelerator="h100-sxm", days=54, seed=9)
    )
    assert len(result.timeline) == result.interruptions_unexpected
    days = [t for t, _, _ in result.timeline]
    productive = [p for _, p, _ in result.timeline]
    assert days == sorted(days) and productive == sorted(productive)
    assert all(p <= t for t, p, _ in result.timeline)  # never more productive time than wall clock
    assert productive[-1] <= result.productive_days <= result.wall_clock_days
    counts: dict[str, int] = {}
    for _, _, cause in result.timeline:
        counts[cause] = counts.get(cause, 0) + 1
    assert counts == {k: v for k, v in result.interruptions_by_cause.items() if v}
    assert "timeline" not in result.to_dict()
