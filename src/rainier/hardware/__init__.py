"""The hardware layer: typed accelerators, fabrics, scale-up systems and clusters, loaded from the cited catalog.

Every object is a frozen, keyword-only dataclass holding SI quantities with unit-suffixed names, validated on
construction, with ``to_dict()`` for JSON. The numbers come from ``rainier/catalog/{accelerators,fabrics,
systems,clusters}.yaml``, each with its sources; ``sources``/``estimated`` on the objects keep them for display.

Bandwidth convention: every ``*_bytes_per_s_per_direction`` is what one device (or port) sends while receiving as
much. Vendor figures are normalised by :func:`rainier.hardware.fabric.per_direction`: bidirectional figures and
figures whose direction the vendor leaves unstated (NeuronLink) are halved.
"""

from rainier.hardware.accelerator import Accelerator, Family, Vendor
from rainier.hardware.cluster import Cluster, NetworkTier, Site, WanLink
from rainier.hardware.fabric import BandwidthScope, Direction, Fabric, FabricKind, per_direction
from rainier.hardware.registry import (
    accelerators,
    cluster_of,
    clusters,
    fabrics,
    get_accelerator,
    get_cluster,
    get_fabric,
    get_system,
    largest_system_for_accelerator,
    load_accelerators,
    load_clusters,
    load_fabrics,
    load_systems,
    resize_cluster,
    system_for_accelerator,
    systems,
)
from rainier.hardware.system import System, Topology, TopologyAxis

__all__ = [
    "Accelerator",
    "BandwidthScope",
    "Cluster",
    "Direction",
    "Fabric",
    "FabricKind",
    "Family",
    "NetworkTier",
    "Site",
    "System",
    "Topology",
    "TopologyAxis",
    "Vendor",
    "WanLink",
    "accelerators",
    "cluster_of",
    "clusters",
    "fabrics",
    "get_accelerator",
    "get_cluster",
    "get_fabric",
    "get_system",
    "largest_system_for_accelerator",
    "load_accelerators",
    "load_clusters",
    "load_fabrics",
    "load_systems",
    "per_direction",
    "resize_cluster",
    "system_for_accelerator",
    "systems",
]
