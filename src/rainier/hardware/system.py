"""Systems: one scale-up domain (a server, an UltraServer, an NVL72 rack, a TPU pod) and its topology.

A system is the set of devices joined by the scale-up fabric. Its topology is a list of axes: a switched
system (NVSwitch, NeuronSwitch) has one axis spanning every device; a torus has one axis per dimension
(Trn2 UltraServer: x and y inside an instance, z as a ring across four instances). Each axis says how much a
device can send along it, per direction, so that collective cost models can price a collective over any
subset of axes.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rainier.errors import field_error
from rainier.hardware._checks import (
    FrozenMap,
    check_count,
    check_enum,
    check_id,
    check_optional_positive,
    check_positive,
    check_sources,
    check_text,
    jsonable,
)
from rainier.hardware.accelerator import Accelerator
from rainier.hardware.fabric import Fabric, FabricKind
from rainier.precision import Precision


class Topology(enum.StrEnum):
    """Shape of the scale-up domain."""

    SWITCHED = "switched"  # every device one switch traversal from every other (all-to-all)
    TORUS = "torus"  # devices on a k-dimensional grid, links only to grid neighbours


@dataclass(frozen=True, slots=True, kw_only=True)
class TopologyAxis:
    """One dimension of a system's topology, with the bandwidth a device has along it.

    ``link_bw_bytes_per_s_per_direction`` is one link, one direction; ``links_per_device`` is how many such
    links a device has along the axis (2 for a ring or torus dimension of size > 2: one to each neighbour; 1 for
    a switched axis). :attr:`bw_bytes_per_s_per_direction` is their sum: what a device can send along the axis
    while receiving as much. It already counts both ring neighbours, so a model of two counter-rotating rings
    (e.g. ``perf.collectives.Level(bidirectional_ring=True)``) must start from the single-link rate instead.
    """

    name: str
    size: int
    link_bw_bytes_per_s_per_direction: float
    links_per_device: int
    latency_s: float
    wraparound: bool = False
    sources: Mapping[str, str] = field(default_factory=FrozenMap)
    estimated: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        check_text("name", self.name)
        check_count("size", self.size)
        check_positive("link_bw_bytes_per_s_per_direction", self.link_bw_bytes_per_s_per_direction)
        check_count("links_per_device", self.links_per_device)
        check_positive("latency_s", self.latency_s)
        if not isinstance(self.wraparound, bool):
            raise field_error("wraparound", self.wraparound, "expected true or false")
        object.__setattr__(self, "sources", check_sources("sources", self.sources))
        object.__setattr__(self, "estimated", frozenset(self.estimated))

    @property
    def bw_bytes_per_s_per_direction(self) -> float:
        """Bytes/s one device can send along this axis (all its links on the axis, one direction each)."""
        return self.links_per_device * self.link_bw_bytes_per_s_per_direction

    @property
    def max_hops(self) -> int:
        """Longest shortest path along a torus axis: size//2 with wraparound (a ring), size-1 without (a line)."""
        if self.size == 1:
            return 0
        return self.size // 2 if self.wraparound else self.size - 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "wraparound": self.wraparound,
            "link_bw_bytes_per_s_per_direction": self.link_bw_bytes_per_s_per_direction,
            "links_per_device": self.links_per_device,
            "bw_bytes_per_s_per_direction": self.bw_bytes_per_s_per_direction,
            "latency_s": self.latency_s,
            "sources": jsonable(self.sources),
            "estimated": jsonable(self.estimated),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class System:
    """A scale-up domain: ``num_devices`` accelerators on one scale-up fabric, in ``num_servers`` servers.

    ``nic_bw_bytes_per_s_per_device`` (per direction) and ``scale_out`` describe the network that joins
    systems into a cluster; both are ``None`` where not published. ``power_w`` is the whole system's power where
    a figure exists; ``price_usd_per_hour`` is for one system (an instance or UltraServer), with ``price_note``
    saying which price it is. ``default_for_accelerator`` marks the system that :func:`cluster_of` builds
    ad-hoc clusters from. ``slice_wraparound_multiple`` (tori only): a slice smaller than the pod gets
    wraparound links on each axis whose length is a multiple of it (TPU v4/v5p: optical circuit switches join
    4x4x4 cubes into tori); without it only full-length axes wrap around.
    """

    id: str
    name: str
    accelerator: Accelerator
    num_devices: int
    devices_per_server: int
    topology: Topology
    axes: tuple[TopologyAxis, ...]
    scale_up: Fabric
    scale_out: Fabric | None = None
    nic_bw_bytes_per_s_per_device: float | None = None
    power_w: float | None = None
    devices_per_rack: int | None = None
    price_usd_per_hour: float | None = None
    price_note: str = ""
    default_for_accelerator: bool = False
    slice_wraparound_multiple: int | None = None
    notes: str = ""
    sources: Mapping[str, str] = field(default_factory=FrozenMap)
    estimated: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        check_id("id", self.id)
        check_text("name", self.name)
        if not isinstance(self.accelerator, Accelerator):
            raise field_error("accelerator", self.accelerator, "expected an Accelerator")
        check_count("num_devices", self.num_devices)
        check_count("devices_per_server", self.devices_per_server)
        if self.num_devices % self.devices_per_server:
            raise field_error(
                "devices_per_server", self.devices_per_server, f"must divide num_devices={self.num_devices}"
            )
        object.__setattr__(self, "topology", check_enum("topology", Topology, self.topology))
        object.__setattr__(self, "axes", tuple(self.axes))
        self._check_axes()
        if not isinstance(self.scale_up, Fabric) or self.scale_up.kind is not FabricKind.SCALE_UP:
            raise field_error("scale_up", getattr(self.scale_up, "id", self.scale_up), "expected a scale-up Fabric")
        if self.scale_out is not None and (
            not isinstance(self.scale_out, Fabric) or self.scale_out.kind is not FabricKind.SCALE_OUT
        ):
            raise field_error("scale_out", getattr(self.scale_out, "id", self.scale_out), "expected a scale-out Fabric")
        check_optional_positive("nic_bw_bytes_per_s_per_device", self.nic_bw_bytes_per_s_per_device)
        if (self.scale_out is None) != (self.nic_bw_bytes_per_s_per_device is None):
            raise field_error(
                "nic_bw_bytes_per_s_per_device",
                self.nic_bw_bytes_per_s_per_device,
                "give both a scale-out fabric and a NIC bandwidth, or neither",
            )
        check_optional_positive("power_w", self.power_w)
        if self.slice_wraparound_multiple is not None:
            check_count("slice_wraparound_multiple", self.slice_wraparound_multiple)
        if self.devices_per_rack is not None:
            check_count("devices_per_rack", self.devices_per_rack)
        check_optional_positive("price_usd_per_hour", self.price_usd_per_hour)
        if self.price_usd_per_hour is not None:
            check_text("price_note", self.price_note)
        check_text("notes", self.notes, allow_empty=True)
        object.__setattr__(self, "sources", check_sources("sources", self.sources))
        object.__setattr__(self, "estimated", frozenset(self.estimated))

    def _check_axes(self) -> None:
        if not self.axes or not all(isinstance(a, TopologyAxis) for a in self.axes):
            raise field_error("axes", self.axes, "expected at least one TopologyAxis")
        names = [a.name for a in self.axes]
        if len(set(names)) != len(names):
            raise field_error("axes", names, "axis names must be unique")
        if self.topology is Topology.SWITCHED and len(self.axes) != 1:
            raise field_error("axes", names, "a switched system has exactly one axis")
        product = math.prod(a.size for a in self.axes)
        if product != self.num_devices:
            sizes = "x".join(str(a.size) for a in self.axes)
            raise field_error("axes", sizes, f"axis sizes must multiply to num_devices={self.num_devices}")

    # -- derived quantities ---------------------------------------------------------------------------
    @property
    def num_servers(self) -> int:
        return self.num_devices // self.devices_per_server

    @property
    def scale_up_bw_bytes_per_s(self) -> float:
        """Scale-up bandwidth one device can send, per direction, summed over all axes."""
        return sum(a.bw_bytes_per_s_per_direction for a in self.axes)

    @property
    def max_hops(self) -> int:
        """Scale-up hops between the two farthest devices: 1 through a switch, the sum over axes on a torus."""
        if self.topology is Topology.SWITCHED:
            return min(1, self.num_devices - 1)
        return sum(a.max_hops for a in self.axes)

    @property
    def hbm_bytes(self) -> float:
        return self.num_devices * self.accelerator.hbm_bytes

    @property
    def price_usd_per_device_hour(self) -> float | None:
        return None if self.price_usd_per_hour is None else self.price_usd_per_hour / self.num_devices

    def peak_flop_per_s(self, precision: Precision) -> float:
        """Dense peak of all devices of the system at ``precision``."""
        return self.num_devices * self.accelerator.peak_flop_per_s(precision)

    def axis(self, name: str) -> TopologyAxis:
        for candidate in self.axes:
            if candidate.name == name:
                return candidate
        raise field_error("axis", name, f"{self.id} has axes {', '.join(a.name for a in self.axes)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "accelerator": self.accelerator.id,
            "num_devices": self.num_devices,
            "devices_per_server": self.devices_per_server,
            "num_servers": self.num_servers,
            "topology": self.topology.value,
            "axes": [a.to_dict() for a in self.axes],
            "scale_up": self.scale_up.id,
            "scale_up_bw_bytes_per_s": self.scale_up_bw_bytes_per_s,
            "scale_out": None if self.scale_out is None else self.scale_out.id,
            "nic_bw_bytes_per_s_per_device": self.nic_bw_bytes_per_s_per_device,
            "power_w": self.power_w,
            "devices_per_rack": self.devices_per_rack,
            "price_usd_per_hour": self.price_usd_per_hour,
            "price_note": self.price_note,
            "default_for_accelerator": self.default_for_accelerator,
            "slice_wraparound_multiple": self.slice_wraparound_multiple,
            "notes": self.notes,
            "sources": jsonable(self.sources),
            "estimated": jsonable(self.estimated),
        }
