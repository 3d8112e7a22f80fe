"""``rainier serve simulate`` and the simulation check of ``serve size``: names in, ``ServeResult`` out.

A replica's iteration cost comes from ``serve.cost`` with the committed serving efficiencies. Without
``--disaggregate`` every device of the cluster serves (``devices // replica devices`` replicas). With
``--disaggregate prefill=ID:N,decode=ID:M`` a pool of ``N`` devices of one accelerator prefills and a pool of
``M`` devices of another decodes (both at ``--tp`` devices per replica); each prefill replica sends its KV cache
to the decode pool over the slower side's scale-out NICs (all of the replica's NICs together) with the slower
side's scale-out latency -- a GPU prefill pool beside Trainium decode, for instance.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from rainier.api import resolve_cluster
from rainier.errors import InputError, field_error
from rainier.hardware import Cluster, System, cluster_of, get_accelerator, largest_system_for_accelerator
from rainier.serve.cost import ReplicaCost, WeightFormat, replica_cost
from rainier.serve.estimate import resolve_serve_efficiency
from rainier.serve.simulate import Scheduler, ServeResult, ServeScenario, simulate_serving
from rainier.serve.size import Layout, Traffic, Verifier
from rainier.serve.trace import load_trace
from rainier.workload import resolve_model
from rainier.workload.shape import TransformerShape

VERIFY_REQUESTS = 20_000  # requests per simulated check of a sized fleet (at least 120 s of traffic)
VERIFY_MIN_SECONDS = 120.0


def verify_with_simulation(seed: int) -> Verifier:
    """A ``serve.size`` verifier: Poisson traffic at the model's rate on the sized replicas, simulated p99s."""

    def verify(
        layout: Layout, cost: ReplicaCost, traffic: Traffic, replicas: int
    ) -> tuple[dict[str, float], dict[str, Any]]:
        duration = max(VERIFY_MIN_SECONDS, VERIFY_REQUESTS / traffic.rate_per_s)
        duration = min(duration, 2_000_000 / traffic.rate_per_s)  # bound the work of one check
        scenario = ServeScenario(
            cost=replace(cost, engine_max_batch=layout.batch),
            replicas=replicas,
            rate_per_s=traffic.rate_per_s,
            duration_s=duration,
            input_len=traffic.input_len,
            output_len=traffic.output_len,
            seed=seed,
        )
        result = simulate_serving(scenario)
        p99 = {
            name: getattr(result, f"{name}_ms").p99 / 1e3
            for name in ("ttft", "tpot", "e2e")
            if getattr(result, f"{name}_ms") is not None
        }
        summary = {
            "requests": result.requests_completed,
            "ttft_p99_ms": p99.get("ttft", math.nan) * 1e3,
            "tpot_p99_ms": p99.get("tpot", math.nan) * 1e3,
            "e2e_p99_ms": p99.get("e2e", math.nan) * 1e3,
            "utilisation": result.utilisation,
            "mean_batch": result.mean_batch,
        }
        return p99, summary

    return verify


def parse_disaggregate(text: str) -> tuple[tuple[str, int], tuple[str, int]]:
    """``prefill=h100-sxm:16,decode=trn2:64`` -> ((accelerator, devices) for prefill, for decode)."""
    pools: dict[str, tuple[str, int]] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        role, sep, spec = part.partition("=")
        name, colon, count_text = spec.partition(":")
        role = role.strip().lower()
        if not sep or not colon or role not in ("prefill", "decode"):
            raise field_error("disaggregate", part, "prefill=ID:DEVICES,decode=ID:DEVICES")
        try:
            count = int(count_text)
        except ValueError:
            raise field_error("disaggregate", part, "a whole number of devices after ':'") from None
        if count < 1:
            raise field_error("disaggregate", part, "a positive number of devices")
        pools[role] = (get_accelerator(name.strip()).id, count)
    if set(pools) != {"prefill", "decode"}:
        raise field_error("disaggregate", text, "both prefill=ID:DEVICES and decode=ID:DEVICES")
    return pools["prefill"], pools["decode"]


def _pool_cost(
    shape: TransformerShape, accelerator: str, devices: int, tp: int, weights: WeightFormat, role: str
) -> tuple[ReplicaCost, int, System]:
    system = largest_system_for_accelerator(accelerator)
    chip = system.accelerator
    fmt = weights if chip.supports(weights.matmul) else WeightFormat.BF16
    replica = cluster_of(chip.id, tp, system=system)
    eff, _ = resolve_serve_efficiency(replica, None)
    cost = replica_cost(shape, replica, tp=tp, weights=fmt, eff=eff)
    replicas = devices // cost.replica_devices
    if replicas < 1:
        raise field_error("disaggregate", f"{role}={accelerator}:{devices}", f"at least tp={tp} devices per pool")
    return cost, replicas, system


def _link(prefill: System, decode: System, replica_devices: int) -> tuple[float, float]:
    """Bytes/s and latency of one prefill replica's path to the decode pool (the slower side's NICs)."""
    rates = [s.nic_bw_bytes_per_s_per_device or s.scale_up_bw_bytes_per_s / 10 for s in (prefill, decode)]
    latencies = [s.scale_out.latency_s if s.scale_out is not None else s.scale_up.latency_s for s in (prefill, decode)]
    return min(rates) * replica_devices, max(latencies)


def run_serve_simulate(**kwargs: Any) -> ServeResult:
    """``rainier serve simulate``: continuous (or static) batching of Poisson or traced requests, by event.

    Takes the keyword arguments of :func:`simulation_scenario`.
    """
    return simulate_serving(simulation_scenario(**kwargs))


def simulation_scenario(
    *,
    model: str,
    cluster: str | None = None,
    accelerator: str | None = None,
    count: int | None = None,
    tp: int = 1,
    pp: int = 1,
    precision: str = "bf16",
    unit_core: bool = False,
    rate: float | None = None,
    trace: str | None = None,
    duration: float | None = None,
    input_len: int = 1024,
    output_len: int = 256,
    lengths: str = "fixed",
    scheduler: str = "continuous",
    chunked_prefill: bool = False,
    max_batch: int = 256,
    disaggregate: str | None = None,
    seed: int = 0,
) -> ServeScenario:
    """The simulation of a named model on a named (or ad-hoc, or disaggregated) cluster, ready to run."""
    from rainier.serve.simulate import LengthDistribution

    shape = resolve_model(model)
    weights = WeightFormat.parse(precision)
    try:
        mode = Scheduler(scheduler.strip().lower())
    except ValueError:
        raise field_error("scheduler", scheduler, "continuous or static") from None
    try:
        spread = LengthDistribution(lengths.strip().lower())
    except ValueError:
        allowed = ", ".join(d.value for d in LengthDistribution)
        raise field_error("lengths", lengths, allowed) from None
    if max_batch < 1:
        raise field_error("max-batch", max_batch, "a positive number of sequences")
    source: dict[str, Any]
    warnings: tuple[str, ...] = ()
    if trace is not None:
        if rate is not None:
            raise InputError("give --rate (Poisson arrivals) or --trace FILE, not both")
        requests, notes = load_trace(trace)
        source = {"requests": tuple(requests)}
        warnings = tuple(notes)
    else:
        if rate is None or duration is None:
            raise InputError("give --rate R with --duration S, or --trace FILE")
        source = {"rate_per_s": rate, "duration_s": duration, "input_len": input_len, "output_len": output_len}
        for name, value in (("rate", rate), ("duration", duration)):
            if not value > 0 or not math.isfinite(value):
                raise field_error(name, value, "a positive number")
    extra: dict[str, Any] = {}
    if disaggregate is not None:
        (pre_acc, pre_devices), (dec_acc, dec_devices) = parse_disaggregate(disaggregate)
        pre_cost, pre_replicas, pre_system = _pool_cost(shape, pre_acc, pre_devices, tp, weights, "prefill")
        cost, replicas, dec_system = _pool_cost(shape, dec_acc, dec_devices, tp, weights, "decode")
        bandwidth, latency = _link(pre_system, dec_system, pre_cost.replica_devices)
        extra = {
            "prefill_cost": replace(pre_cost, engine_max_batch=max_batch),
            "prefill_replicas": pre_replicas,
            "kv_link_bytes_per_s": bandwidth,
            "kv_link_latency_s": latency,
        }
    else:
        target: Cluster = resolve_cluster(cluster, accelerator, count)
        eff, _ = resolve_serve_efficiency(target, None)
        cost = replica_cost(shape, target, tp=tp, pp=pp, unit_core=unit_core, weights=weights, eff=eff)
        replicas = max(1, target.num_devices // cost.replica_devices)
    return ServeScenario(
        cost=replace(cost, engine_max_batch=max_batch),
        replicas=replicas,
        scheduler=mode,
        chunked_prefill=chunked_prefill,
        length_distribution=spread,
        seed=seed,
        warnings=warnings,
        **source,
        **extra,
    )
