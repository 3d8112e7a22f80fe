"""Build hardware objects from catalog entries read through :class:`rainier.catalog.Fields`.

One ``build_*`` function (or builder factory, where an entry refers to other files) per catalog file. The YAML
keys carry vendor units (``hbm_gib``, ``link_gb_per_s``, ``latency_us`` ...); they are converted to SI here with
:mod:`rainier.units`, so the dataclasses only ever hold SI. Every error names the file, the entry and the field
(see :mod:`rainier.hardware._fields` for the readers). Lists of mappings (``axes``, ``network_tiers``,
``sites``) are read item by item, each with its own ``sources``/``estimated`` plus the entry's ``key.field`` ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from rainier import units
from rainier.catalog import Fields, Registry
from rainier.hardware._fields import Converter, construct, list_fields, lookup, one_of, optional_lookup
from rainier.hardware.accelerator import Accelerator, EfficiencyFamily, Family, Vendor
from rainier.hardware.cluster import Cluster, NetworkTier, Site, WanLink
from rainier.hardware.fabric import BandwidthScope, Direction, Fabric, FabricKind, per_direction
from rainier.hardware.system import System, Topology, TopologyAxis
from rainier.precision import Precision

# Alternative spellings of one quantity, each key with its conversion to SI; an entry gives exactly one.
HBM_CAPACITY: dict[str, Converter] = {"hbm_gib": units.gib, "hbm_gb": units.gb}
HBM_BANDWIDTH: dict[str, Converter] = {
    "hbm_tb_per_s": units.tb_per_s,
    "hbm_gb_per_s": units.gb_per_s,
    "hbm_gib_per_s": units.gib_per_s,
}
SRAM_CAPACITY: dict[str, Converter] = {"sram_mib": units.mib}
FABRIC_BANDWIDTH: dict[str, Converter] = {
    "bw_tb_per_s": units.tb_per_s,
    "bw_gb_per_s": units.gb_per_s,
    "bw_gib_per_s": units.gib_per_s,
    "bw_gbit_per_s": units.gbit_per_s,
}
LINK_BANDWIDTH: dict[str, Converter] = {
    "link_gb_per_s": units.gb_per_s,
    "link_gib_per_s": units.gib_per_s,
    "link_gbit_per_s": units.gbit_per_s,
}

PRECISION_KEYS = tuple(p.value for p in Precision)
DIRECTIONS = tuple(d.value for d in Direction)
SINGLE_SITE = "single-site"
SWITCH_AXIS = "switch"


def _provenance(fields: Fields, estimated: frozenset[str]) -> dict[str, Any]:
    return {"sources": dict(fields.source_map), "estimated": estimated}


# -- accelerators.yaml ----------------------------------------------------------------------------------
def build_accelerator(fields: Fields) -> Accelerator:
    estimated = fields.estimated
    peaks = fields.number_map("peak_dense_tflop_per_s", PRECISION_KEYS)
    return construct(
        fields,
        Accelerator,
        id=fields.string("id"),
        name=fields.string("name"),
        vendor=fields.choice("vendor", tuple(v.value for v in Vendor)),
        family=fields.choice("family", tuple(f.value for f in Family)),
        peak_dense_flop_per_s={Precision(k): units.tflop_per_s(v) for k, v in peaks.items()},
        hbm_bytes=one_of(fields, HBM_CAPACITY),
        hbm_bw_bytes_per_s=one_of(fields, HBM_BANDWIDTH),
        sram_bytes=one_of(fields, SRAM_CAPACITY, required=False),
        num_cores=fields.integer("num_cores", required=False, default=1),
        num_logical_cores=fields.integer("num_logical_cores", required=False, default=1),
        power_w=fields.optional_number("power_w"),
        efficiency_family=fields.choice("efficiency_family", tuple(f.value for f in EfficiencyFamily), required=False)
        or None,
        matmul_tile=(
            fields.integer("matmul_tile_rows", required=False, default=128),
            fields.integer("matmul_tile_cols", required=False, default=128),
        ),
        matmul_units=fields.integer("matmul_units", required=False, default=1),
        microscaling=fields.boolean("microscaling", required=False, default=False),
        exp_per_s=_tera(fields.optional_number("exp_tera_per_s")),
        **_host(fields),
        notes=fields.string("notes", required=False),
        **_provenance(fields, estimated),
    )


def _host(fields: Fields) -> dict[str, float | None]:
    """The host link (stated as the vendor writes it, with its direction) and the host memory per chip."""
    stated = fields.optional_number("host_link_gb_per_s")
    direction = fields.choice("host_link_direction", DIRECTIONS, required=stated is not None)
    memory = fields.optional_number("host_memory_gb")
    return {
        "host_link_bw_bytes_per_s": None
        if stated is None
        else per_direction(units.gb_per_s(stated), Direction(direction)),
        "host_memory_bytes": None if memory is None else units.gb(memory),
    }


def _tera(value: float | None) -> float | None:
    return None if value is None else value * 1e12


# -- fabrics.yaml ---------------------------------------------------------------------------------------
def build_fabric(fields: Fields) -> Fabric:
    estimated = fields.estimated
    return construct(
        fields,
        Fabric,
        id=fields.string("id"),
        name=fields.string("name"),
        kind=fields.choice("kind", tuple(k.value for k in FabricKind)),
        stated_bw_bytes_per_s=one_of(fields, FABRIC_BANDWIDTH),
        direction=fields.choice("direction", DIRECTIONS),
        bw_per=fields.choice("bw_per", tuple(s.value for s in BandwidthScope)),
        latency_s=units.us(fields.number("latency_us")),
        in_network_reduction=fields.boolean("in_network_reduction", required=False, default=False),
        notes=fields.string("notes", required=False),
        **_provenance(fields, estimated),
    )


# -- systems.yaml ---------------------------------------------------------------------------------------
def system_builder(accelerators: Registry[Accelerator], fabrics: Registry[Fabric]) -> Callable[[Fields], System]:
    """A ``build`` for ``load_entries`` that resolves accelerator and fabric ids against the given registries."""
    default_of: dict[str, str] = {}  # accelerator id -> system marked default_for_accelerator

    def build(fields: Fields) -> System:
        estimated = fields.estimated
        system_id = fields.string("id")
        accelerator = lookup(fields, "accelerator", accelerators)
        scale_up = lookup(fields, "scale_up", fabrics)
        topology = Topology(fields.choice("topology", tuple(t.value for t in Topology)))
        num_devices = fields.integer("num_devices")
        devices_per_server = fields.integer("devices_per_server")
        axes = _build_axes(fields, topology, scale_up, num_devices)
        nic_per_device: dict[str, Converter] = {
            "nic_gbit_per_s_per_device": units.gbit_per_s,
            "nic_gbit_per_s_per_server": lambda v: units.gbit_per_s(v) / devices_per_server,
            "nic_gbit_per_s_per_system": lambda v: units.gbit_per_s(v) / num_devices,
        }
        power_kw = fields.optional_number("power_kw")
        is_default = fields.boolean("default_for_accelerator", required=False)
        if is_default and accelerator.id in default_of:
            raise fields.error(
                f"default_for_accelerator=true is invalid: {default_of[accelerator.id]!r} is already the default "
                f"system for {accelerator.id!r}"
            )
        system = construct(
            fields,
            System,
            id=system_id,
            name=fields.string("name"),
            accelerator=accelerator,
            num_devices=num_devices,
            devices_per_server=devices_per_server,
            topology=topology,
            axes=axes,
            scale_up=scale_up,
            scale_out=optional_lookup(fields, "scale_out", fabrics),
            nic_bw_bytes_per_s_per_device=one_of(fields, nic_per_device, required=False),
            power_w=None if power_kw is None else power_kw * units.KILO,
            devices_per_rack=fields.integer("devices_per_rack", required=False, default=0) or None,
            price_usd_per_hour=fields.optional_number("price_usd_per_hour"),
            price_note=fields.string("price_note", required=False),
            default_for_accelerator=is_default,
            slice_wraparound_multiple=fields.integer("slice_wraparound_multiple", required=False, default=0) or None,
            notes=fields.string("notes", required=False),
            **_provenance(fields, estimated),
        )
        if is_default:
            default_of[accelerator.id] = system.id
        return system

    return build


def _build_axes(fields: Fields, topology: Topology, scale_up: Fabric, num_devices: int) -> tuple[TopologyAxis, ...]:
    items = list_fields(fields, "axes", required=topology is Topology.TORUS)
    if not items:
        if scale_up.bw_per is not BandwidthScope.DEVICE:
            raise fields.error(f"missing required field 'axes' (fabric {scale_up.id!r} states no per-device rate)")
        # A switched system without explicit axes: one axis over all devices at the fabric's per-device rate.
        return (
            TopologyAxis(
                name=SWITCH_AXIS,
                size=num_devices,
                link_bw_bytes_per_s_per_direction=scale_up.bw_bytes_per_s_per_direction,
                links_per_device=1,
                latency_s=scale_up.latency_s,
                sources=scale_up.sources,
                estimated=scale_up.estimated,
            ),
        )
    return tuple(_build_axis(item, topology, scale_up) for item in items)


def _build_axis(item: Fields, topology: Topology, scale_up: Fabric) -> TopologyAxis:
    name = item.string("name")
    size = item.integer("size")
    if topology is Topology.TORUS and size < 2:
        raise item.error(f"size={size!r} is invalid: a torus axis needs at least 2 devices")
    wraparound = item.boolean("wraparound", required=False)
    stated = one_of(item, LINK_BANDWIDTH, required=False)
    direction = item.choice("direction", DIRECTIONS, required=False)
    if stated is None:
        if topology is Topology.TORUS or scale_up.bw_per is not BandwidthScope.DEVICE or direction:
            raise item.error(
                f"missing link bandwidth: one of {', '.join(LINK_BANDWIDTH)} with a direction (only a switched "
                "axis may omit both and take the fabric's per-device rate)"
            )
        link_bw = scale_up.bw_bytes_per_s_per_direction
    elif not direction:
        raise item.error(f"missing required field 'direction' (allowed: {', '.join(DIRECTIONS)})")
    else:
        link_bw = per_direction(stated, Direction(direction))
    latency_us = item.optional_number("latency_us")
    # A ring or torus dimension of more than 2 devices links each device to two neighbours; a switch port is one.
    links = 2 if topology is Topology.TORUS and size > 2 else 1
    axis = construct(
        item,
        TopologyAxis,
        name=name,
        size=size,
        link_bw_bytes_per_s_per_direction=link_bw,
        links_per_device=links,
        latency_s=scale_up.latency_s if latency_us is None else units.us(latency_us),
        wraparound=wraparound,
        sources=dict(item.source_map),
        estimated=item.estimated,
    )
    item.finish()
    return axis


# -- clusters.yaml --------------------------------------------------------------------------------------
def cluster_builder(systems: Registry[System]) -> Callable[[Fields], Cluster]:
    """A ``build`` for ``load_entries`` that resolves system ids, and ``equal_power_to`` against earlier entries."""
    earlier: dict[str, Cluster] = {}

    def build(fields: Fields) -> Cluster:
        estimated = fields.estimated
        system = lookup(fields, "system", systems)
        pue = fields.optional_number("pue", minimum=1.0, exclusive_minimum=False)
        power_w = fields.optional_number("power_w_per_device_all_in")
        reference = fields.string("equal_power_to", required=False) or None
        if reference is None:
            num_systems = fields.integer("num_systems")
        elif fields.has("num_systems"):
            raise fields.error("give num_systems or equal_power_to, not both")
        else:
            num_systems = _systems_for_power(fields, earlier, reference, system, pue, power_w)
            estimated = estimated | {"num_systems"}  # derived from estimated power figures
        num_devices = num_systems * system.num_devices
        tiers = list_fields(fields, "network_tiers", required=False)
        sites = list_fields(fields, "sites", required=False)
        wan_links = list_fields(fields, "wan_links", required=False)
        cluster = construct(
            fields,
            Cluster,
            id=fields.string("id"),
            name=fields.string("name"),
            system=system,
            num_systems=num_systems,
            num_devices=num_devices,
            network_tiers=tuple(
                _build_tier(item, system, num_devices, last=i == len(tiers) - 1) for i, item in enumerate(tiers)
            ),
            sites=tuple(_build_site(item) for item in sites) or (Site(name=SINGLE_SITE, num_systems=num_systems),),
            wan_links=tuple(_build_wan_link(item) for item in wan_links),
            pue=pue,
            power_w_per_device_all_in=power_w,
            price_usd_per_device_hour=fields.optional_number("price_usd_per_device_hour"),
            price_note=fields.string("price_note", required=False),
            equal_power_to=reference,
            notes=fields.string("notes", required=False),
            **_provenance(fields, estimated),
        )
        earlier[cluster.id] = cluster
        return cluster

    return build


def _systems_for_power(
    fields: Fields,
    earlier: Mapping[str, Cluster],
    reference_id: str,
    system: System,
    pue: float | None,
    power_w: float | None,
) -> int:
    """Whole systems whose facility power (devices x all-in W x PUE) fits in the reference cluster's."""
    reference = earlier.get(reference_id.strip().lower())
    if reference is None:
        known = ", ".join(earlier) or "none"
        raise fields.error(
            f"equal_power_to={reference_id!r} is invalid: must name a cluster defined earlier in this file ({known})"
        )
    target_w = reference.facility_power_w
    if target_w is None:
        raise fields.error(
            f"equal_power_to={reference_id!r} is invalid: that cluster has no pue and power_w_per_device_all_in"
        )
    if pue is None or power_w is None:
        raise fields.error("equal_power_to needs this entry's pue and power_w_per_device_all_in")
    count = math.floor(target_w / (system.num_devices * power_w * pue))
    if count < 1:
        raise fields.error(f"equal_power_to={reference_id!r} is invalid: not even one {system.id} fits its power")
    return count


def _build_tier(item: Fields, system: System, num_devices: int, *, last: bool) -> NetworkTier:
    name = item.string("name")
    if last and not item.has("devices_per_group"):
        devices_per_group = num_devices  # the top tier spans the whole cluster
        item.optional_number("devices_per_group")
    else:
        devices_per_group = item.integer("devices_per_group")
    oversubscription = item.number("oversubscription", minimum=1.0, exclusive_minimum=False)
    latency_us = item.optional_number("latency_us")
    if latency_us is None and system.scale_out is None:
        raise item.error(f"missing required field 'latency_us' (system {system.id!r} has no scale-out fabric)")
    tier = construct(
        item,
        NetworkTier,
        name=name,
        devices_per_group=devices_per_group,
        oversubscription=oversubscription,
        latency_s=units.us(latency_us) if latency_us is not None else _scale_out_latency(system),
        sources=dict(item.source_map),
        estimated=item.estimated,
    )
    item.finish()
    return tier


def _scale_out_latency(system: System) -> float:
    assert system.scale_out is not None  # checked by the caller
    return system.scale_out.latency_s


def _build_site(item: Fields) -> Site:
    site = construct(
        item,
        Site,
        name=item.string("name"),
        num_systems=item.integer("num_systems"),
        sources=dict(item.source_map),
        estimated=item.estimated,
    )
    item.finish()
    return site


def _build_wan_link(item: Fields) -> WanLink:
    ends = item.items("sites")
    if len(ends) != 2 or not all(isinstance(e, str) and e for e in ends):
        raise item.error(f"sites={ends!r} is invalid: a list of two site names")
    link = construct(
        item,
        WanLink,
        site_a=ends[0],
        site_b=ends[1],
        bw_bytes_per_s=units.tbit_per_s(item.number("tbit_per_s")),
        latency_s=units.ms(item.number("latency_ms")),
        sources=dict(item.source_map),
        estimated=item.estimated,
    )
    item.finish()
    return link
