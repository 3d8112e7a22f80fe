"""Tables for ``rainier catalog accelerators|systems|fabrics|clusters|sources``.

Rows are the catalog objects' ``to_dict()`` (SI units); this module only converts them for display. A value
marked estimated in the catalog is shown with a trailing ``*``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rich.table import Table

from rainier.report import format as fmt

EST = "*"


def _est(row: Mapping[str, Any], *keys: str) -> str:
    estimated = set(row.get("estimated", ()))
    return EST if estimated & set(keys) else ""


def _peak(row: Mapping[str, Any], precision: str) -> str:
    value = row["peak_dense_flop_per_s"].get(precision)
    return "—" if value is None else f"{value / 1e12:,.0f}"


def accelerators_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="accelerators (dense peak TFLOP/s; * = estimate)", title_justify="left")
    for column in ("id", "vendor", "fp32", "bf16", "fp8", "fp4", "HBM", "HBM BW", "SRAM", "cores/logical", "power"):
        table.add_column(column, justify="left" if column in ("id", "vendor") else "right")
    for r in rows:
        sram = r.get("sram_bytes")
        power = r.get("power_w")
        table.add_row(
            r["id"],
            r["vendor"],
            _peak(r, "fp32"),
            _peak(r, "bf16"),
            _peak(r, "fp8"),
            _peak(r, "fp4"),
            fmt.gib(r["hbm_bytes"]),
            fmt.si(r["hbm_bw_bytes_per_s"], "B/s"),
            "—" if sram is None else fmt.gib(sram),
            f"{r['num_cores']}/{r['num_logical_cores']}",
            "—" if power is None else f"{power:,.0f} W{_est(r, 'power_w')}",
        )
    return table


def systems_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(
        title="systems: servers and scale-up domains (bandwidth per device, per direction)", title_justify="left"
    )
    for column in (
        "id",
        "accel",
        "devices",
        "per server",
        "topology",
        "scale-up",
        "scale-up BW",
        "NIC per device",
        "price/h",
    ):
        table.add_column(column, justify="left" if column in ("id", "accel", "topology", "scale-up") else "right")
    for r in rows:
        axes = r.get("axes") or []
        topology = r["topology"]
        if topology == "torus":
            topology = "torus " + "x".join(str(a["size"]) for a in axes)
        nic = r.get("nic_bw_bytes_per_s_per_device")
        price = r.get("price_usd_per_hour")
        table.add_row(
            r["id"],
            r["accelerator"],
            str(r["num_devices"]),
            str(r["devices_per_server"]),
            topology,
            r["scale_up"],
            fmt.si(r["scale_up_bw_bytes_per_s"], "B/s"),
            "—" if nic is None else fmt.si(nic * 8, "bit/s"),
            "—" if price is None else f"${price:,.2f}",
        )
    return table


def fabrics_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(
        title="fabrics (bandwidth per direction; * = estimate; SHARP: the switches reduce all-reduces in the network)",
        title_justify="left",
    )
    for column in ("id", "kind", "stated", "direction", "per direction", "per", "latency", "SHARP"):
        table.add_column(column, justify="right" if column in ("stated", "per direction", "latency") else "left")
    for r in rows:
        table.add_row(
            r["id"],
            r["kind"],
            fmt.si(r["stated_bw_bytes_per_s"], "B/s"),
            r["direction"],
            fmt.si(r["bw_bytes_per_s_per_direction"], "B/s"),
            r["bw_per"],
            f"{r['latency_s'] * 1e6:.1f} us{_est(r, 'latency_us')}",
            "yes" if r.get("in_network_reduction") else "",
        )
    return table


def clusters_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="clusters (* = estimate; see --json for notes and sources)", title_justify="left")
    for column in ("id", "system", "systems", "devices", "sites", "IT power", "facility power", "PUE", "$/device-h"):
        table.add_column(column, justify="left" if column in ("id", "system") else "right")
    for r in rows:
        price = r.get("price_usd_per_device_hour")
        table.add_row(
            r["id"],
            r["system"],
            f"{r['num_systems']:,}{_est(r, 'num_systems')}",
            f"{r['num_devices']:,}",
            str(len(r.get("sites") or [])),
            fmt.si(r["it_power_w"], "W") + EST,
            fmt.si(r["facility_power_w"], "W") + EST,
            f"{r['pue']:.2f}",
            "—" if price is None else f"${price:,.3f}",
        )
    return table


def sources_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="sources", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("title")
    table.add_column("url", overflow="fold")
    for r in rows:
        table.add_row(r["id"], r["title"], r.get("url") or "")
    return table


def datasets_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="datasets (request-length mixes: serve simulate --lengths ID)", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("samples", justify="right")
    table.add_column("mean input", justify="right")
    table.add_column("mean output", justify="right")
    table.add_column("output cap", justify="right")
    table.add_column("title")
    for r in rows:
        output = r.get("mean_output")
        table.add_row(
            r["id"], f"{r['samples']:,}", f"{r['mean_input']:,.1f}",
            f"{output:,.1f}" if output is not None else "not tokens", f"{r['max_output_len']:,}", r["title"],
        )  # fmt: skip
    return table


TABLES: dict[str, Callable[[Iterable[Mapping[str, Any]]], Table]] = {
    "datasets": datasets_table,
    "accelerators": accelerators_table,
    "systems": systems_table,
    "fabrics": fabrics_table,
    "clusters": clusters_table,
    "sources": sources_table,
}
