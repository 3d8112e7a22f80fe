"""Flow-level network: transfers that overlap in time share their links max-min fairly.

A :class:`Flow` is a transfer reduced to what sharing needs: ``work_s``, the seconds it takes alone at its own
rate, and its ``demand`` on each link it crosses, the fraction of that link's capacity it uses while running at
that rate (``perf.links`` gives a collective's load on each link class; load / duration is the demand). Every
link has capacity 1. While flows overlap, each runs at a rate ``r`` in (0, 1] of its own speed, with
``sum(demand * r) <= 1`` on every link, chosen by progressive filling (Bertsekas and Gallager, *Data
Networks*, 2nd ed., sec. 6.5.2): all rates rise together until a link saturates, the flows on it freeze, the
others rise on. Rates change only when a flow starts or ends, so the network schedules one event per domain at
the next completion and re-solves the fair share at every start and finish.

Flows live in *domains* whose links are disjoint (in the training simulator a domain is one pipeline rank's
class of symmetric ranks: their links carry only their own traffic), so a change re-solves one domain only.
With ``sharing=False`` every flow runs at rate 1 whatever the load: the no-contention reference, which still
records how much time any link spent over capacity (``contended_s``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rainier.sim.kernel import Environment, Event

EPSILON = 1e-12  # relative slack when comparing fill levels and remaining work

LinkKey = tuple[int, str]  # (domain, link name)


class Flow:
    """One transfer: ``work_s`` alone, ``demand`` per link name (fractions of capacity at rate 1).

    ``on_done(flow)`` is called when it has moved all its bytes; ``started_s``/``ended_s`` are filled in.
    """

    __slots__ = ("demand", "domain", "ended_s", "label", "on_done", "rate", "remaining_s", "started_s", "work_s")

    def __init__(
        self,
        domain: int,
        work_s: float,
        demand: Sequence[tuple[str, float]],
        on_done: Callable[[Flow], None],
        label: str = "",
    ) -> None:
        if not work_s >= 0.0 or not math.isfinite(work_s):
            raise ValueError(f"work_s: {work_s!r} is not a finite duration >= 0")
        self.domain = domain
        self.work_s = work_s
        self.remaining_s = work_s
        self.demand = tuple((name, u) for name, u in demand if u > 0.0)
        self.on_done = on_done
        self.label = label
        self.rate = 1.0
        self.started_s = math.nan
        self.ended_s = math.nan


def fair_rates(flows: Sequence[Flow]) -> list[float]:
    """Max-min fair rates (each at most 1) of ``flows`` on unit-capacity links, by progressive filling."""
    rates = [1.0] * len(flows)
    residual: dict[str, float] = {}
    unfrozen = [i for i, f in enumerate(flows) if f.demand]
    for i in unfrozen:
        for name, _ in flows[i].demand:
            residual[name] = 1.0
    while unfrozen:
        sums: dict[str, float] = {}
        for i in unfrozen:
            for name, u in flows[i].demand:
                sums[name] = sums.get(name, 0.0) + u
        level = 1.0
        for name, total in sums.items():
            level = min(level, max(residual[name], 0.0) / total)
        if level >= 1.0 - EPSILON:
            break  # every remaining flow runs at its own speed
        saturated = {name for name, total in sums.items() if residual[name] / total <= level * (1.0 + EPSILON)}
        still = []
        for i in unfrozen:
            if any(name in saturated for name, _ in flows[i].demand):
                rates[i] = level
                for name, u in flows[i].demand:
                    residual[name] -= u * level
            else:
                still.append(i)
        unfrozen = still
    return rates


@dataclass(slots=True)
class _Domain:
    flows: list[Flow] = field(default_factory=list)
    updated_s: float = 0.0
    event: Event | None = None


class FlowNetwork:
    """Active flows, their fair rates, and what each link carried (``link_busy_s``: link-seconds at capacity)."""

    def __init__(self, env: Environment, *, sharing: bool = True, record: bool = False) -> None:
        self.env = env
        self.sharing = sharing
        # With ``record``: (time, domain, link -> used fraction) after every change of rates (trace counters).
        self.samples: list[tuple[float, int, dict[str, float]]] | None = [] if record else None
        self._domains: dict[int, _Domain] = {}
        self.link_busy_s: dict[LinkKey, float] = {}
        self.contended_s = 0.0  # time (summed over domains) during which some link was asked for more than 1
        self.slowed_s = 0.0  # flow-seconds lost to sharing: sum over flows of (time taken - work)
        self.num_flows = 0

    def start(self, flow: Flow) -> None:
        """Start ``flow`` now."""
        flow.started_s = self.env.now
        self.num_flows += 1
        domain = self._domains.get(flow.domain)
        if domain is None:
            domain = self._domains[flow.domain] = _Domain(updated_s=self.env.now)
        self._advance(flow.domain, domain)
        domain.flows.append(flow)
        self._reschedule(flow.domain, domain)

    def _advance(self, key: int, domain: _Domain) -> None:
        """Move every flow of ``domain`` forward to now at its current rate; account link use."""
        dt = self.env.now - domain.updated_s
        domain.updated_s = self.env.now
        if dt <= 0.0 or not domain.flows:
            return
        asked: dict[str, float] = {}
        for flow in domain.flows:
            flow.remaining_s -= flow.rate * dt
            for name, u in flow.demand:
                link = (key, name)
                self.link_busy_s[link] = self.link_busy_s.get(link, 0.0) + u * flow.rate * dt
                asked[name] = asked.get(name, 0.0) + u
        if any(total > 1.0 + 1e-9 for total in asked.values()):
            self.contended_s += dt

    def _reschedule(self, key: int, domain: _Domain) -> None:
        flows = domain.flows
        rates = fair_rates(flows) if self.sharing else [1.0] * len(flows)
        soonest = math.inf
        for flow, rate in zip(flows, rates, strict=True):
            flow.rate = rate
            soonest = min(soonest, max(flow.remaining_s, 0.0) / rate)
        if self.samples is not None:
            used: dict[str, float] = {}
            for flow in flows:
                for name, u in flow.demand:
                    used[name] = used.get(name, 0.0) + u * flow.rate
            self.samples.append((self.env.now, key, used))
        if domain.event is not None:
            domain.event.cancel()
            domain.event = None
        if flows:
            domain.event = self.env.schedule(soonest, self._on_event, payload=key)

    def _on_event(self, event: Event) -> None:
        key = event.payload
        domain = self._domains[key]
        domain.event = None
        self._advance(key, domain)
        done = [f for f in domain.flows if f.remaining_s <= EPSILON * max(f.work_s, 1e-6)]
        if not done:  # rounding left a sliver: finish the nearest one
            done = [min(domain.flows, key=lambda f: f.remaining_s / f.rate)]
        domain.flows = [f for f in domain.flows if f not in done]
        self._reschedule(key, domain)
        for flow in done:
            flow.ended_s = self.env.now
            flow.remaining_s = 0.0
            self.slowed_s += max(flow.ended_s - flow.started_s - flow.work_s, 0.0)
            flow.on_done(flow)
