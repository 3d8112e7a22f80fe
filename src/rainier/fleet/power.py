"""Physical footprint and power of a cluster: devices, servers, scale-up domains, racks, IT and facility power.

A named cluster carries its own all-in power per device and PUE (``catalog/clusters.yaml``, with sources). An
ad-hoc cluster (``--accelerator ID --count N``) takes, in order: its system's published power spread over its
devices (GB300 NVL72's rack), else the accelerator's power times the all-in-to-chip ratio of a catalog cluster
built on the same kind of server (same vendor, devices per server and scale-up domain: an H200 or B200 in an
8-GPU server takes the H100 P5 cluster's 1,340 W / 700 W, so a chip in the same chassis never gets less for its
host and network), else times a host-and-network overhead; and AWS's fleet PUE. Every fallback is named in
:attr:`PowerBasis.basis` so a report can say where the watts came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from rainier.hardware import Cluster, cluster_of, clusters, largest_system_for_accelerator
from rainier.units import MEGA

# All-in IT power per device over the accelerator's own power, for a system with no published figure: the catalog
# clusters' method (clusters.yaml notes): DGX H100 10.2 kW / 8 GPUs / 700 W = 1.8x, GB200 NVL72 120 kW / 72 /
# 1,200 W = 1.4x; 1.6x is their middle (estimate, as used for Trainium2's 500 W -> 800 W).
HOST_NETWORK_OVERHEAD = 1.6
# AWS global PUE for 2025 (shared/reference/hardware.md section 8, AMZ-sus), for clusters that state none.
DEFAULT_PUE = 1.14


@dataclass(frozen=True, slots=True, kw_only=True)
class PowerBasis:
    """Watts per device (IT, all-in, before PUE) and PUE for a cluster, and where each came from."""

    watts_per_device: float | None
    pue: float
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return {"watts_per_device_all_in": self.watts_per_device, "pue": self.pue, "power_basis": self.basis}


def power_basis(cluster: Cluster) -> PowerBasis:
    """The cluster's all-in watts per device and PUE, with the catalog fallbacks described in the module."""
    pue = cluster.pue if cluster.pue is not None else DEFAULT_PUE
    pue_note = f"PUE {pue:g}" if cluster.pue is not None else f"PUE {pue:g} (AWS 2025, AMZ-sus)"
    if cluster.power_w_per_device_all_in is not None:
        return PowerBasis(
            watts_per_device=cluster.power_w_per_device_all_in,
            pue=pue,
            basis=f"{cluster.power_w_per_device_all_in:g} W all-in per device, {pue_note} (catalog cluster)",
        )
    system = cluster.system
    if system.power_w is not None:
        watts = system.power_w / system.num_devices
        return PowerBasis(
            watts_per_device=watts,
            pue=pue,
            basis=f"{system.id} power {system.power_w / 1e3:g} kW / {system.num_devices} devices; {pue_note}",
        )
    chip = cluster.accelerator.power_w
    sibling = _sibling(cluster)
    if chip is not None and sibling is not None:
        assert sibling.power_w_per_device_all_in is not None and sibling.accelerator.power_w is not None
        ratio = sibling.power_w_per_device_all_in / sibling.accelerator.power_w
        return PowerBasis(
            watts_per_device=chip * ratio,
            pue=pue,
            basis=(
                f"{cluster.accelerator.id} {chip:g} W x {ratio:.3g}, the all-in ratio of {sibling.id} "
                f"({sibling.power_w_per_device_all_in:g} W / {sibling.accelerator.power_w:g} W, the same kind of "
                f"server; estimate); {pue_note}"
            ),
        )
    if chip is not None:
        return PowerBasis(
            watts_per_device=chip * HOST_NETWORK_OVERHEAD,
            pue=pue,
            basis=(
                f"{cluster.accelerator.id} {chip:g} W x {HOST_NETWORK_OVERHEAD:g} for host and network (estimate); "
                f"{pue_note}"
            ),
        )
    return PowerBasis(watts_per_device=None, pue=pue, basis=f"no power figure for {cluster.accelerator.id}")


def _sibling(cluster: Cluster) -> Cluster | None:
    """The first catalog cluster with power figures on the same kind of server as ``cluster`` (module docstring)."""
    system = cluster.system
    for named in clusters():
        other = named.system
        if (
            named.power_w_per_device_all_in is not None
            and named.accelerator.power_w is not None
            and other.accelerator.vendor == system.accelerator.vendor
            and other.devices_per_server == system.devices_per_server
            and other.num_devices == system.num_devices
        ):
            return named
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Footprint:
    """What a cluster occupies: devices, servers, scale-up domains (UltraServers, NVL72 racks), racks, power."""

    devices: int
    servers: int
    scale_up_domains: int
    scale_up_domain_name: str
    racks: int | None
    it_power_w: float | None
    facility_power_w: float | None
    power: PowerBasis

    @property
    def it_power_mw(self) -> float | None:
        return None if self.it_power_w is None else self.it_power_w / MEGA

    @property
    def facility_power_mw(self) -> float | None:
        return None if self.facility_power_w is None else self.facility_power_w / MEGA

    def to_dict(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "servers": self.servers,
            "scale_up_domains": self.scale_up_domains,
            "scale_up_domain": self.scale_up_domain_name,
            "racks": self.racks,
            "it_power_mw": self.it_power_mw,
            "facility_power_mw": self.facility_power_mw,
            **self.power.to_dict(),
        }


def footprint(cluster: Cluster) -> Footprint:
    """Devices, servers, scale-up domains, racks and power of ``cluster`` (racks only where the catalog says)."""
    system = cluster.system
    basis = power_basis(cluster)
    devices = cluster.num_devices
    it_power = None if basis.watts_per_device is None else devices * basis.watts_per_device
    return Footprint(
        devices=devices,
        servers=cluster.num_servers,
        scale_up_domains=math.ceil(devices / system.num_devices),
        scale_up_domain_name=system.id,
        racks=None if system.devices_per_rack is None else math.ceil(devices / system.devices_per_rack),
        it_power_w=it_power,
        facility_power_w=None if it_power is None else it_power * basis.pue,
        power=basis,
    )


def devices_for_power(cluster: Cluster, facility_power_w: float) -> int:
    """Whole systems of ``cluster``'s kind whose facility power fits in ``facility_power_w``, in devices."""
    basis = power_basis(cluster)
    if basis.watts_per_device is None:
        return 0
    per_system = cluster.system.num_devices * basis.watts_per_device * basis.pue
    return math.floor(facility_power_w / per_system * (1 + 1e-12)) * cluster.system.num_devices  # exact fits


def fleet_cluster(accelerator_id: str, devices: int) -> Cluster:
    """``devices`` of an accelerator in its fleet building block, on one site with a flat network.

    The building block is the system of the accelerator's first catalog cluster with power figures (Trn2
    UltraServers at Rainier's 800 W all-in), whose power and PUE it takes; else its largest scale-up system with
    :func:`power_basis`'s fallbacks. The count is rounded down to whole systems (at least one).
    """
    for named in clusters():
        if named.accelerator.id == accelerator_id and named.power_w_per_device_all_in is not None:
            count = max(1, devices // named.system.num_devices) * named.system.num_devices
            base = cluster_of(accelerator_id, count, system=named.system)
            return _with_power(base, named)
    system = largest_system_for_accelerator(accelerator_id)
    return cluster_of(accelerator_id, max(1, devices // system.num_devices) * system.num_devices, system=system)


def _with_power(cluster: Cluster, named: Cluster) -> Cluster:
    return replace(cluster, pue=named.pue, power_w_per_device_all_in=named.power_w_per_device_all_in)


# Largest share of a cluster's systems a job may leave idle to get a size that plans divide (see usable_systems).
IDLE_TOLERANCE = 0.02


def usable_systems(num_systems: int, tolerance: float = IDLE_TOLERANCE) -> int:
    """The largest count <= ``num_systems`` with the most factors of two, leaving at most ``tolerance`` idle.

    Equal-power clusters come out at sizes like 37,311 systems (3 x 12,437) that no parallel plan divides; a job
    then runs on 36,864 = 9 x 4,096 of them and leaves 1.2% idle.
    """
    for shift in range(num_systems.bit_length(), -1, -1):
        rounded = (num_systems >> shift) << shift
        if rounded >= 1 and rounded >= (1.0 - tolerance) * num_systems:
            return rounded
    return num_systems
