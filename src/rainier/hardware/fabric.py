"""Interconnect fabrics (NVLink, NeuronLink, TPU ICI, InfiniBand, EFA) and the bandwidth-direction convention.

Vendors quote link bandwidth three ways, and the catalog records which with :class:`Direction`:

* ``unidirectional``: bytes/s in one direction of a full-duplex link (network line rates such as "400 Gb/s").
* ``bidirectional``: both directions added (NVLink 4's "900 GB/s" is 450 GB/s each way); halved.
* ``unstated``: the vendor does not say (AWS NeuronLink). Treated as a bidirectional aggregate and halved,
  following ml-engineering's reading of Trn2's 1.28 TB/s as 640 GB/s per direction [ML-net].

Every bandwidth inside rainier is then *per direction* (``*_bytes_per_s_per_direction``): what one device can
send while it also receives as much.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rainier.errors import field_error
from rainier.hardware._checks import (
    FrozenMap,
    check_enum,
    check_id,
    check_positive,
    check_sources,
    check_text,
    jsonable,
)

#: A full-duplex link carries the same rate each way, so a both-ways figure is twice the per-direction rate.
DIRECTIONS_PER_DUPLEX_LINK = 2


class Direction(enum.StrEnum):
    """How a stated bandwidth counts the two directions of a full-duplex link."""

    UNIDIRECTIONAL = "unidirectional"
    BIDIRECTIONAL = "bidirectional"
    UNSTATED = "unstated"


class FabricKind(enum.StrEnum):
    """Where a fabric sits: inside the scale-up domain, between servers, or between sites."""

    SCALE_UP = "scale-up"
    SCALE_OUT = "scale-out"
    WAN = "wan"


class BandwidthScope(enum.StrEnum):
    """What a fabric's stated bandwidth belongs to: one device (all its links) or one network port / adapter."""

    DEVICE = "device"
    PORT = "port"


def per_direction(stated_bytes_per_s: float, direction: Direction) -> float:
    """Normalise a stated bandwidth to bytes/s per direction (see the module docstring for the rule)."""
    if direction is Direction.UNIDIRECTIONAL:
        return stated_bytes_per_s
    # bidirectional, and unstated read as a bidirectional aggregate [ML-net, Trn2 NeuronLink]
    return stated_bytes_per_s / DIRECTIONS_PER_DUPLEX_LINK


@dataclass(frozen=True, slots=True, kw_only=True)
class Fabric:
    """One interconnect technology, with its bandwidth as the vendor states it and a per-hop latency.

    ``stated_bw_bytes_per_s`` and ``direction`` keep the vendor's figure; :attr:`bw_bytes_per_s_per_direction`
    is the normalised value cost models use. The bandwidth is per device (``bw_per=device``, e.g. all NVLinks
    of one GPU) or per port (``bw_per=port``, one NIC). ``latency_s`` is alpha: the end-to-end time of one
    message step between two devices over this fabric. Systems may override both per topology axis.
    """

    id: str
    name: str
    kind: FabricKind
    stated_bw_bytes_per_s: float
    direction: Direction
    bw_per: BandwidthScope
    latency_s: float
    # the switches reduce in the network (NVLink SHARP on NVSwitch gen 3 and later): a rank sends its buffer into
    # an all-reduce once and receives the sum once (``serve.allreduce``)
    in_network_reduction: bool = False
    notes: str = ""
    sources: Mapping[str, str] = field(default_factory=FrozenMap)
    estimated: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        check_id("id", self.id)
        check_text("name", self.name)
        object.__setattr__(self, "kind", check_enum("kind", FabricKind, self.kind))
        check_positive("stated_bw_bytes_per_s", self.stated_bw_bytes_per_s)
        object.__setattr__(self, "direction", check_enum("direction", Direction, self.direction))
        object.__setattr__(self, "bw_per", check_enum("bw_per", BandwidthScope, self.bw_per))
        check_positive("latency_s", self.latency_s)
        if not isinstance(self.in_network_reduction, bool):
            raise field_error("in_network_reduction", self.in_network_reduction, "true or false")
        check_text("notes", self.notes, allow_empty=True)
        object.__setattr__(self, "sources", check_sources("sources", self.sources))
        object.__setattr__(self, "estimated", frozenset(self.estimated))

    @property
    def bw_bytes_per_s_per_direction(self) -> float:
        """Bandwidth per direction, per device or per port as :attr:`bw_per` says."""
        return per_direction(self.stated_bw_bytes_per_s, self.direction)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind.value,
            "stated_bw_bytes_per_s": self.stated_bw_bytes_per_s,
            "direction": self.direction.value,
            "bw_per": self.bw_per.value,
            "bw_bytes_per_s_per_direction": self.bw_bytes_per_s_per_direction,
            "latency_s": self.latency_s,
            "in_network_reduction": self.in_network_reduction,
            "notes": self.notes,
            "sources": jsonable(self.sources),
            "estimated": jsonable(self.estimated),
        }
