"""The training-step simulator: fair sharing by hand, op counts per schedule, symmetry, agreement with the estimate."""

from __future__ import annotations

import numpy as np
import pytest

from rainier.hardware import cluster_of
from rainier.parallel import Plan, Schedule
from rainier.parallel.plan import parse_plan
from rainier.perf.efficiency import Efficiency
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate
from rainier.sim.kernel import Environment
from rainier.sim.training import SimulatedStep, simulate, step_graph
from rainier.sim.training.graph import PassKind, static_order
from rainier.sim.training.network import Flow, FlowNetwork, fair_rates
from rainier.workload import get_model

EFF = Efficiency()
GPT = get_model("gpt3-175b")
LLAMA = get_model("llama-3-8b")


def _env() -> Environment:
    return Environment(np.random.default_rng(0))


def _run_flows(specs: list[tuple[float, float, tuple[tuple[str, float], ...]]]) -> list[float]:
    """Finish times of flows (start time, work at full rate, demand) on one domain's links."""
    env = _env()
    net = FlowNetwork(env)
    ends = [float("nan")] * len(specs)
    for i, (start, work, demand) in enumerate(specs):

        def launch(_: object, i: int = i, work: float = work, demand: tuple[tuple[str, float], ...] = demand) -> None:
            def done(flow: Flow) -> None:
                ends[i] = env.now

            net.start(Flow(0, work, demand, done))

        env.schedule(start, launch)
    env.run()
    return ends


def test_two_collectives_on_one_link_share_it_fairly() -> None:
    # Two transfers of B1 = 1 GB and B2 = 3 GB on one 100 GB/s link, each saturating it alone: both run at half
    # rate until the shorter ends at 2*B1/W = 20 ms, the longer then alone, ending at (B1+B2)/W = 40 ms.
    bandwidth, b1, b2 = 100e9, 1e9, 3e9
    ends = _run_flows([(0.0, b1 / bandwidth, (("nic", 1.0),)), (0.0, b2 / bandwidth, (("nic", 1.0),))])
    assert ends[0] == pytest.approx(2 * b1 / bandwidth, rel=1e-9)
    assert ends[1] == pytest.approx((b1 + b2) / bandwidth, rel=1e-9)


def test_a_late_flow_slows_only_the_overlap() -> None:
    # Flow A (10 ms alone) starts at 0, B (10 ms alone) at 4 ms: A has 6 ms left, both at half rate until A ends
    # at 4 + 12 = 16 ms; B did 6 ms of its work by then and ends alone at 20 ms.
    ends = _run_flows([(0.0, 0.010, (("link", 1.0),)), (0.004, 0.010, (("link", 1.0),))])
    assert ends == pytest.approx([0.016, 0.020], rel=1e-9)


def test_flows_under_capacity_keep_their_speed_and_max_min_gives_the_rest() -> None:
    light = Flow(0, 1.0, (("a", 0.3),), lambda f: None)
    other = Flow(0, 1.0, (("a", 0.3),), lambda f: None)
    assert fair_rates([light, other]) == [1.0, 1.0]  # 0.6 of the link: nobody slows
    # Flow x uses links a and b fully, y only a, z only b at 0.5: a saturates first at level 1/2 (x, y frozen);
    # z then runs at its own speed (b has 1 - 0.5 left >= 0.5).
    x = Flow(0, 1.0, (("a", 1.0), ("b", 1.0)), lambda f: None)
    y = Flow(0, 1.0, (("a", 1.0),), lambda f: None)
    z = Flow(0, 1.0, (("b", 0.5),), lambda f: None)
    assert fair_rates([x, y, z]) == pytest.approx([0.5, 0.5, 1.0])


def test_without_sharing_flows_run_at_their_own_speed_and_contention_is_recorded() -> None:
    env = _env()
    net = FlowNetwork(env, sharing=False)
    ends: list[float] = []
    for work in (1.0, 2.0):
        net.start(Flow(0, work, (("nic", 1.0),), lambda f: ends.append(env.now)))
    env.run()
    assert ends == [1.0, 2.0]
    assert net.contended_s == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("schedule", "vpp", "kinds"),
    [(Schedule.ONE_F_ONE_B, 1, 2), (Schedule.INTERLEAVED, 3, 2), (Schedule.ZERO_BUBBLE, 1, 3), (Schedule.GPIPE, 1, 2)],
)
def test_every_rank_runs_each_pass_once_in_schedule_order(schedule: Schedule, vpp: int, kinds: int) -> None:
    plan = Plan(tp_degree=8, pp_degree=4, dp_degree=2, vpp_degree=vpp, mbs=1, gbs=16, schedule=schedule)
    graph = step_graph(GPT, plan, cluster_of("h100-sxm", 64), efficiency=EFF)
    assert graph.num_passes() == kinds * 8 * 4 * vpp
    for rank in range(4):
        order = static_order(graph, rank)
        assert order is not None
        forward = [p for p in order if p[0] is PassKind.FORWARD]
        backward = [p for p in order if p[0] is PassKind.BACKWARD]
        assert len(forward) == len(backward) == 8 * vpp == len(set(order)) // 2
        assert all(graph.rank_of(j, v) == rank for _, j, v in order)
    one_f_one_b = static_order(graph, 3)
    if schedule is Schedule.ONE_F_ONE_B:  # the last stage alternates from the start
        assert one_f_one_b is not None and [p[0] for p in one_f_one_b[:4]] == [PassKind.FORWARD, PassKind.BACKWARD] * 2


def _simulated(plan: Plan, count: int, shape: object = GPT, sharing: bool = True) -> SimulatedStep:
    result = simulate(shape, plan, cluster_of("h100-sxm", count), efficiency=EFF, sharing=sharing)  # type: ignore[arg-type]
    assert isinstance(result, SimulatedStep), result
    return result


def test_identical_stages_with_1f1b_give_the_closed_form_bubble() -> None:
    # No data parallelism, nothing overlapped: (m + p - 1) micro-batch times, the estimate's answer.
    plan = Plan(tp_degree=8, pp_degree=4, dp_degree=1, mbs=1, gbs=16)
    sim = _simulated(plan, 32, LLAMA)
    fast = estimate(LLAMA, plan, cluster_of("h100-sxm", 32), efficiency=EFF)
    assert isinstance(fast, StepEstimate)
    assert sim.contended_s == 0.0
    assert sim.step_time_s == pytest.approx(fast.step_time_s, rel=0.02)


def test_doubling_data_parallelism_with_the_same_work_per_rank_leaves_the_step() -> None:
    # Same per-rank micro-batches, twice the replicas, all inside one NVLink domain's worth of scale-out NICs:
    # the simulator runs one class per stage either way, so only the gradient reduction's ring size changes.
    small = _simulated(Plan(tp_degree=8, pp_degree=2, dp_degree=2, mbs=1, gbs=16), 32, LLAMA)
    large = _simulated(Plan(tp_degree=8, pp_degree=2, dp_degree=4, mbs=1, gbs=32), 64, LLAMA)
    assert small.num_rank_classes == large.num_rank_classes == 2
    assert large.ranks_per_class == 2 * small.ranks_per_class
    assert large.step_time_s == pytest.approx(small.step_time_s, rel=0.01)


def test_sharing_never_makes_a_step_faster_and_slows_contended_plans() -> None:
    plan = parse_plan("tp=8,pp=2,dp=4,mbs=1,gbs=64,zero=3", num_devices=64)
    shared = _simulated(plan, 64, LLAMA)
    alone = _simulated(plan, 64, LLAMA, sharing=False)
    assert shared.step_time_s >= alone.step_time_s * (1 - 1e-9)
    if alone.contended_s > 0:
        assert shared.slowed_s > 0


def test_result_reports_path_streams_links_and_cause() -> None:
    plan = parse_plan("tp=8,pp=4,dp=2,mbs=1,gbs=32,schedule=interleaved,vpp=2", num_devices=64)
    sim = _simulated(plan, 64)
    doc = sim.to_dict()
    for key in ("step_time_s", "critical_path", "stream_busy", "busiest_links", "difference", "cause"):
        assert key in doc
    assert doc["critical_path"][-1]["category"] == "optimizer"
    assert sum(sim.critical_path_s.values()) == pytest.approx(sim.step_time_s, rel=1e-6)
    assert all(0.0 <= busy <= 1.0 + 1e-9 for lanes in sim.stream_busy.values() for busy in lanes.values())
    assert sim.busiest_links and all(u.utilisation <= 1.0 + 1e-9 for u in sim.busiest_links)


@pytest.mark.parametrize("schedule", ["zb-h1", "zb-v", "dualpipe"])
def test_zero_bubble_schedules_finish_every_pass(schedule: str) -> None:
    plan = parse_plan(f"tp=8,pp=4,dp=2,mbs=1,gbs=32,schedule={schedule}", num_devices=64)
    sim = _simulated(plan, 64)
    fast = sim.estimate
    # Greedy orders are the simulator's own; they stay within a bubble's width of the closed form.
    assert abs(sim.difference) < 0.25, (sim.step_time_s, fast.step_time_s)


def test_without_contention_simulation_and_estimate_agree_within_2pct_on_public_cases() -> None:
    # Issue 16's bound, on every public case small enough for the test suite (at most 4,096 pass visits per
    # step; `rainier validate validation/training.yaml --simulate` runs all of them: 64 cases, max 1.06%).
    from rainier.calibrate import load_cases
    from rainier.perf.efficiency import committed_efficiency

    table = committed_efficiency()
    checked, worst = 0, 0.0
    for case in load_cases("validation/training.yaml").training:
        plan = case.plan
        if plan.pp_degree * plan.num_microbatches * plan.chunks_per_rank > 4096:
            continue
        sim = simulate(case.shape, plan, case.cluster, efficiency=table, seq_len=case.seq_len)
        if isinstance(sim, SimulatedStep) and sim.contended_s == 0.0:
            checked += 1
            worst = max(worst, abs(sim.difference))
    assert checked >= 30
    assert worst <= 0.02


def test_hierarchical_rings_run_level_by_level_and_all_to_alls_at_once() -> None:
    from rainier.sim.training.graph import make_transfer

    names = ("nvlink", "nic", "tier:spine")
    load = np.array([0.2, 0.6, 0.3])  # seconds of each link class; the collective alone lasts 1.0 s
    ring = make_transfer("dp", 0.5, load, 1.0, names)
    assert [share for share, _ in ring.phases] == pytest.approx([0.25, 0.75])
    # Each level's phase uses its link at load / phase time (0.2 / 0.25 = 0.8 of NVLink, 0.6 / 0.75 of the NIC);
    # the tier's uplinks carry their load during the scale-out phase.
    assert dict(ring.phases[0][1]) == pytest.approx({"nvlink": 0.8})
    assert dict(ring.phases[1][1]) == pytest.approx({"nic": 0.8, "tier:spine": 0.4})
    exchange = make_transfer("ep", 0.5, load, 1.0, names)
    assert len(exchange.phases) == 1 and dict(exchange.phases[0][1]) == pytest.approx(
        dict(zip(names, load, strict=True))
    )


@pytest.mark.parametrize(
    "plan_text", ["tp=8,pp=2,dp=4,mbs=1,gbs=64,zero=3", "tp=4,pp=4,dp=4,mbs=1,gbs=64,schedule=zb-h1"]
)
def test_more_link_bandwidth_never_slows_a_simulated_step(plan_text: str) -> None:
    import dataclasses

    cluster = cluster_of("h100-sxm", 64)
    system = cluster.system
    axes = tuple(
        dataclasses.replace(a, link_bw_bytes_per_s_per_direction=2 * a.link_bw_bytes_per_s_per_direction)
        for a in system.axes
    )
    nic = system.nic_bw_bytes_per_s_per_device
    faster = dataclasses.replace(
        cluster,
        system=dataclasses.replace(system, axes=axes, nic_bw_bytes_per_s_per_device=None if nic is None else 2 * nic),
    )
    plan = parse_plan(plan_text, num_devices=64)
    slow = simulate(LLAMA, plan, cluster, efficiency=EFF)
    fast = simulate(LLAMA, plan, faster, efficiency=EFF)
    assert isinstance(slow, SimulatedStep) and isinstance(fast, SimulatedStep)
    assert fast.step_time_s <= slow.step_time_s * (1 + 1e-9)


def test_recompute_of_n_layers_per_chunk_simulates_between_none_and_full() -> None:
    """Issue 17: the recomputed forward (and its tp collectives) covers N layers of each chunk, as estimated."""
    base = "tp=8,pp=4,dp=1,vpp=2,mbs=1,gbs=16"  # 32 layers: 4 per chunk
    cluster = cluster_of("h100-sxm", 32)
    steps = []
    for suffix in ("none", "full,recompute_layers=1", "full,recompute_layers=2", "full"):
        sim = simulate(LLAMA, parse_plan(f"{base},recompute={suffix}"), cluster, efficiency=EFF)
        assert isinstance(sim, SimulatedStep)
        assert sim.step_time_s == pytest.approx(sim.estimate.step_time_s, rel=0.02)
        steps.append((sim.step_time_s, sim.breakdown["recompute"]))
    assert [s for s, _ in steps] == sorted(s for s, _ in steps)
    assert steps[0][1] == 0.0 and steps[2][1] == pytest.approx(2 * steps[1][1], rel=1e-9)
    assert steps[3][1] == pytest.approx(4 * steps[1][1], rel=1e-9)
