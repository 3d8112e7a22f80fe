"""The hardware catalog: cached registries of accelerators, fabrics, systems and clusters, and lookups.

``accelerators()``, ``fabrics()``, ``systems()`` and ``clusters()`` load the YAML files shipped in
``rainier/catalog`` once per process. ``get_*`` raise :class:`rainier.errors.UnknownNameError` with did-you-mean
suggestions. :func:`system_for_accelerator` returns the system marked ``default_for_accelerator`` (for trn2 the
single trn2.48xlarge instance, the unit AWS sells); :func:`cluster_of` builds an ad-hoc cluster of N devices from
it, for ``--accelerator ID --count N``. The ``load_*`` functions read any file with the same rules (tests use them
on malformed catalogs).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import replace
from pathlib import Path

from rainier.catalog import CatalogError, Registry, catalog_file, load_entries
from rainier.hardware._checks import check_count
from rainier.hardware.accelerator import Accelerator
from rainier.hardware.build import (
    SINGLE_SITE,
    build_accelerator,
    build_fabric,
    cluster_builder,
    system_builder,
)
from rainier.hardware.cluster import Cluster, NetworkTier, Site
from rainier.hardware.fabric import Fabric
from rainier.hardware.system import System
from rainier.limits import MAX_DEVICES, check_int_range

ACCELERATORS_FILE = "accelerators.yaml"
FABRICS_FILE = "fabrics.yaml"
SYSTEMS_FILE = "systems.yaml"
CLUSTERS_FILE = "clusters.yaml"


def _id(obj: Accelerator | Fabric | System | Cluster) -> str:
    return obj.id


# -- loading any file -----------------------------------------------------------------------------------
def load_accelerators(path: Path) -> Registry[Accelerator]:
    return Registry("accelerator", load_entries(path, "accelerators", build_accelerator, id_of=_id))


def load_fabrics(path: Path) -> Registry[Fabric]:
    return Registry("fabric", load_entries(path, "fabrics", build_fabric, id_of=_id))


def load_systems(path: Path, accelerators: Registry[Accelerator], fabrics: Registry[Fabric]) -> Registry[System]:
    """Systems of ``path``; ``accelerator``, ``scale_up`` and ``scale_out`` ids must name the given entries."""
    return Registry("system", load_entries(path, "systems", system_builder(accelerators, fabrics), id_of=_id))


def load_clusters(path: Path, systems: Registry[System]) -> Registry[Cluster]:
    """Clusters of ``path``; ``system`` ids must name the given systems."""
    return Registry("cluster", load_entries(path, "clusters", cluster_builder(systems), id_of=_id))


# -- the shipped catalog, loaded once -------------------------------------------------------------------
@functools.cache
def accelerators() -> Registry[Accelerator]:
    return load_accelerators(catalog_file(ACCELERATORS_FILE))


@functools.cache
def fabrics() -> Registry[Fabric]:
    return load_fabrics(catalog_file(FABRICS_FILE))


@functools.cache
def systems() -> Registry[System]:
    """Shipped systems; every shipped accelerator must have exactly one default system."""
    path = catalog_file(SYSTEMS_FILE)
    registry = load_systems(path, accelerators(), fabrics())
    with_default = {s.accelerator.id for s in registry if s.default_for_accelerator}
    missing = [a.id for a in accelerators() if a.id not in with_default]
    if missing:
        raise CatalogError(
            f"{path}: no system has default_for_accelerator: true for accelerator(s) {', '.join(missing)}"
        )
    return registry


@functools.cache
def clusters() -> Registry[Cluster]:
    return load_clusters(catalog_file(CLUSTERS_FILE), systems())


def get_accelerator(name: str) -> Accelerator:
    return accelerators().get(name)


def get_fabric(name: str) -> Fabric:
    return fabrics().get(name)


def get_system(name: str) -> System:
    return systems().get(name)


def get_cluster(name: str) -> Cluster:
    return clusters().get(name)


def system_for_accelerator(accelerator_id: str) -> System:
    """The default scale-up system for an accelerator (e.g. trn2 -> trn2.48xlarge, h100-sxm -> dgx-h100)."""
    accelerator = get_accelerator(accelerator_id)
    return next(s for s in systems() if s.default_for_accelerator and s.accelerator.id == accelerator.id)


def largest_system_for_accelerator(accelerator_id: str) -> System:
    """The accelerator's system with the largest scale-up domain (ties: the default system, then catalog order).

    A fleet of Trainium2 is built from Trn2 UltraServers, of GB200 from NVL72 racks: the unit of a large cluster.
    """
    accelerator = get_accelerator(accelerator_id)
    candidates = [s for s in systems() if s.accelerator.id == accelerator.id]
    return max(candidates, key=lambda s: (s.num_devices, s.default_for_accelerator))


_RESIZED = re.compile(r"-x\d+$")  # the size suffix of an ad-hoc or resized cluster's id


def resize_cluster(cluster: Cluster, num_systems: int) -> Cluster:
    """``cluster`` cut (or grown) to ``num_systems`` of its systems on one site, keeping network, power and price.

    Network tiers whose lower groups already hold the whole new size are dropped; the highest tier still crossed
    is cut to span the new size, keeping its oversubscription (an oversubscribed top tier stays); several sites
    and their WAN links become one site, since a deadline search or a per-site estimate wants one building block.
    """
    check_count("num_systems", num_systems)
    if num_systems == cluster.num_systems and cluster.num_devices == num_systems * cluster.system.num_devices:
        return cluster
    devices = num_systems * cluster.system.num_devices
    # Tiers whose lower groups are smaller than the new cluster are still crossed; the first tier whose group
    # reaches the new size becomes the top one, spanning it (keeping its oversubscription and latency).
    tiers: list[NetworkTier] = []
    below = cluster.scale_up_domain_devices
    for tier in cluster.network_tiers:
        if below >= devices:
            break
        tiers.append(replace(tier, devices_per_group=min(tier.devices_per_group, devices)))
        below = tier.devices_per_group
    if tiers and below < devices:  # one site: the top tier spans all of it
        tiers[-1] = replace(tiers[-1], devices_per_group=devices)
    return Cluster(
        id=f"{_RESIZED.sub('', cluster.id)}-x{devices}",
        name=f"{cluster.name}, {devices} devices",
        system=cluster.system,
        num_systems=num_systems,
        num_devices=devices,
        network_tiers=tuple(tiers),
        sites=(Site(name=SINGLE_SITE, num_systems=num_systems),),
        pue=cluster.pue,
        power_w_per_device_all_in=cluster.power_w_per_device_all_in,
        price_usd_per_device_hour=cluster.price_usd_per_device_hour,
        price_note=cluster.price_note,
        notes=f"{num_systems} of the {cluster.num_systems} systems of {cluster.id}, on one site",
        sources=cluster.sources,
        estimated=cluster.estimated,
    )


def cluster_of(accelerator_id: str, count: int, *, system: System | None = None) -> Cluster:
    """An ad-hoc cluster of ``count`` devices built from ``system`` (default: the accelerator's default system).

    Uses as many systems as needed (the last one possibly partly filled), one site, a flat non-blocking
    scale-out network, and no power or price beyond the system's own.
    """
    check_int_range("count", count, 1, MAX_DEVICES, "a whole number of devices")
    system = system or system_for_accelerator(accelerator_id)
    num_systems = math.ceil(count / system.num_devices)
    return Cluster(
        id=f"{system.accelerator.id}-x{count}",
        name=f"{count} x {system.accelerator.name} in {system.name}",
        system=system,
        num_systems=num_systems,
        num_devices=count,
        sites=(Site(name=SINGLE_SITE, num_systems=num_systems),),
        notes=f"ad-hoc: {count} devices on {num_systems} x {system.id}, flat non-blocking scale-out network",
    )
