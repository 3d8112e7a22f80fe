"""Clusters: many copies of one system joined by a scale-out network, spread over sites, with facility power.

A :class:`Cluster` is what a training or serving estimate runs on. Its scale-out network is described as tiers
(leaf, spine, site, inter-site ...), each a group of devices that can reach each other without crossing a higher
tier, with its oversubscription and latency; an empty list means a flat, non-blocking network.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rainier.errors import field_error
from rainier.hardware._checks import (
    FrozenMap,
    check_at_least,
    check_count,
    check_id,
    check_optional_positive,
    check_positive,
    check_sources,
    check_text,
    jsonable,
)
from rainier.hardware.accelerator import Accelerator
from rainier.hardware.system import System
from rainier.limits import MAX_DEVICES, check_int_range
from rainier.precision import Precision


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkTier:
    """One tier of the scale-out network: groups of ``devices_per_group`` devices joined below this tier.

    ``oversubscription`` is the ratio of bandwidth entering the tier from below to bandwidth it offers upward
    (1 = non-blocking). ``latency_s`` is the end-to-end alpha between two devices whose lowest common tier is
    this one.
    """

    name: str
    devices_per_group: int
    oversubscription: float
    latency_s: float
    sources: Mapping[str, str] = field(default_factory=FrozenMap)
    estimated: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        check_text("name", self.name)
        check_count("devices_per_group", self.devices_per_group)
        check_at_least("oversubscription", self.oversubscription, 1.0)
        check_positive("latency_s", self.latency_s)
        object.__setattr__(self, "sources", check_sources("sources", self.sources))
        object.__setattr__(self, "estimated", frozenset(self.estimated))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "devices_per_group": self.devices_per_group,
            "oversubscription": self.oversubscription,
            "latency_s": self.latency_s,
            "sources": jsonable(self.sources),
            "estimated": jsonable(self.estimated),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    """A data-center site (campus) holding ``num_systems`` of the cluster's systems."""

    name: str
    num_systems: int
    sources: Mapping[str, str] = field(default_factory=FrozenMap)
    estimated: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        check_text("name", self.name)
        check_count("num_systems", self.num_systems)
        object.__setattr__(self, "sources", check_sources("sources", self.sources))
        object.__setattr__(self, "estimated", frozenset(self.estimated))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_systems": self.num_systems,
            "sources": jsonable(self.sources),
            "estimated": jsonable(self.estimated),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class WanLink:
    """A wide-area link between two sites: bandwidth per direction (all fibres together) and one-way latency."""

    site_a: str
    site_b: str
    bw_bytes_per_s: float
    latency_s: float
    sources: Mapping[str, str] = field(default_factory=FrozenMap)
    estimated: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        check_text("site_a", self.site_a)
        check_text("site_b", self.site_b)
        if self.site_a == self.site_b:
            raise field_error("wan_links.sites", [self.site_a, self.site_b], "two different sites")
        check_positive("bw_bytes_per_s", self.bw_bytes_per_s)
        check_positive("latency_s", self.latency_s)
        object.__setattr__(self, "sources", check_sources("sources", self.sources))
        object.__setattr__(self, "estimated", frozenset(self.estimated))

    @property
    def pair(self) -> frozenset[str]:
        return frozenset((self.site_a, self.site_b))

    def to_dict(self) -> dict[str, Any]:
        return {
            "sites": [self.site_a, self.site_b],
            "bw_bytes_per_s": self.bw_bytes_per_s,
            "latency_s": self.latency_s,
            "sources": jsonable(self.sources),
            "estimated": jsonable(self.estimated),
        }


def _check_site_graph(sites: tuple[Site, ...], links: tuple[WanLink, ...]) -> None:
    """WAN links must join named sites, once per pair, into one connected graph."""
    names = [s.name for s in sites]
    seen: set[frozenset[str]] = set()
    for link in links:
        for end in (link.site_a, link.site_b):
            if end not in names:
                raise field_error("wan_links.sites", end, f"a site of this cluster ({', '.join(names)})")
        if link.pair in seen:
            raise field_error("wan_links.sites", sorted(link.pair), "one link per pair of sites")
        seen.add(link.pair)
    reached = {names[0]}
    frontier = [names[0]]
    while frontier:
        here = frontier.pop()
        for link in links:
            if here in link.pair:
                (other,) = link.pair - {here}
                if other not in reached:
                    reached.add(other)
                    frontier.append(other)
    missing = [n for n in names if n not in reached]
    if missing:
        raise field_error("wan_links", ", ".join(missing), f"a connected site graph: no WAN path from {names[0]}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    """``num_systems`` copies of ``system`` holding ``num_devices`` devices, their network, sites and power.

    ``num_devices`` is normally ``num_systems * system.num_devices``; an ad-hoc cluster (:func:`cluster_of`)
    may leave the last system partly used. ``power_w_per_device_all_in`` is IT power per device including its
    share of host, NIC and network (before PUE); ``pue`` is facility power / IT power. ``equal_power_to``
    records the cluster whose facility power this one was sized to match, if any.
    """

    id: str
    name: str
    system: System
    num_systems: int
    num_devices: int
    network_tiers: tuple[NetworkTier, ...] = ()
    sites: tuple[Site, ...] = ()
    wan_links: tuple[WanLink, ...] = ()
    pue: float | None = None
    power_w_per_device_all_in: float | None = None
    price_usd_per_device_hour: float | None = None
    price_note: str = ""
    equal_power_to: str | None = None
    notes: str = ""
    sources: Mapping[str, str] = field(default_factory=FrozenMap)
    estimated: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        check_id("id", self.id)
        check_text("name", self.name)
        if not isinstance(self.system, System):
            raise field_error("system", self.system, "expected a System")
        check_count("num_systems", self.num_systems)
        check_int_range("num_devices", self.num_devices, 1, MAX_DEVICES, "a whole number of devices")
        per_system = self.system.num_devices
        if not (self.num_systems - 1) * per_system < self.num_devices <= self.num_systems * per_system:
            raise field_error(
                "num_devices",
                self.num_devices,
                f"must fill {self.num_systems} system(s) of {per_system} devices, leaving less than one unused",
            )
        object.__setattr__(self, "network_tiers", tuple(self.network_tiers))
        groups = [t.devices_per_group for t in self.network_tiers]
        if any(b <= a for a, b in itertools.pairwise(groups)):
            raise field_error("network_tiers", groups, "devices_per_group must grow from one tier to the next")
        object.__setattr__(self, "sites", tuple(self.sites))
        if self.sites and sum(s.num_systems for s in self.sites) != self.num_systems:
            split = {s.name: s.num_systems for s in self.sites}
            raise field_error("sites", split, f"site sizes must add up to num_systems={self.num_systems}")
        object.__setattr__(self, "wan_links", tuple(self.wan_links))
        if self.wan_links:
            if len(self.sites) < 2:
                raise field_error("wan_links", len(self.wan_links), "WAN links need a cluster of two or more sites")
            _check_site_graph(self.sites, self.wan_links)
        if self.pue is not None:
            check_at_least("pue", self.pue, 1.0)
        check_optional_positive("power_w_per_device_all_in", self.power_w_per_device_all_in)
        check_optional_positive("price_usd_per_device_hour", self.price_usd_per_device_hour)
        if self.price_usd_per_device_hour is not None:
            check_text("price_note", self.price_note)
        if self.equal_power_to is not None:
            check_id("equal_power_to", self.equal_power_to)
        check_text("notes", self.notes, allow_empty=True)
        object.__setattr__(self, "sources", check_sources("sources", self.sources))
        object.__setattr__(self, "estimated", frozenset(self.estimated))

    # -- derived quantities ---------------------------------------------------------------------------
    @property
    def accelerator(self) -> Accelerator:
        return self.system.accelerator

    @property
    def num_servers(self) -> int:
        """Servers (hosts) the devices occupy, counting a partly used last server."""
        return math.ceil(self.num_devices / self.system.devices_per_server)

    @property
    def scale_up_domain_devices(self) -> int:
        """Devices in one scale-up domain of this cluster (fewer than the system's when the cluster is smaller)."""
        return min(self.num_devices, self.system.num_devices)

    @property
    def it_power_w(self) -> float | None:
        """IT power of all devices with their host and network share, before PUE; ``None`` if unknown."""
        if self.power_w_per_device_all_in is None:
            return None
        return self.num_devices * self.power_w_per_device_all_in

    @property
    def facility_power_w(self) -> float | None:
        """Facility power = IT power x PUE (PUE definition, The Green Grid; AWS reports it [AWS-sus])."""
        it_power = self.it_power_w
        if it_power is None or self.pue is None:
            return None
        return it_power * self.pue

    @property
    def device_price_usd_per_hour(self) -> float | None:
        """Price per device-hour: the cluster's own figure, else the system's price spread over its devices."""
        if self.price_usd_per_device_hour is not None:
            return self.price_usd_per_device_hour
        return self.system.price_usd_per_device_hour

    @property
    def device_price_note(self) -> str:
        """What :attr:`device_price_usd_per_hour` is (the cluster's note, else the system's)."""
        if self.price_usd_per_device_hour is not None:
            return self.price_note
        return self.system.price_note if self.system.price_usd_per_hour is not None else ""

    def peak_flop_per_s(self, precision: Precision) -> float:
        """Dense peak of all devices at ``precision``."""
        return self.num_devices * self.accelerator.peak_flop_per_s(precision)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "system": self.system.id,
            "accelerator": self.accelerator.id,
            "num_systems": self.num_systems,
            "num_devices": self.num_devices,
            "num_servers": self.num_servers,
            "network_tiers": [t.to_dict() for t in self.network_tiers],
            "sites": [s.to_dict() for s in self.sites],
            "wan_links": [link.to_dict() for link in self.wan_links],
            "pue": self.pue,
            "power_w_per_device_all_in": self.power_w_per_device_all_in,
            "it_power_w": self.it_power_w,
            "facility_power_w": self.facility_power_w,
            "price_usd_per_device_hour": self.device_price_usd_per_hour,
            "price_note": self.device_price_note,
            "equal_power_to": self.equal_power_to,
            "notes": self.notes,
            "sources": jsonable(self.sources),
            "estimated": jsonable(self.estimated),
        }
