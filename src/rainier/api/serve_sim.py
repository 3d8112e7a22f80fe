"""``rainier serve simulate`` and the simulation check of ``serve size``: names in, ``ServeResult`` out.

A replica's iteration cost comes from ``serve.cost`` with the committed serving efficiencies. Without
``--disaggregate`` every device of the cluster serves (``devices // replica devices`` replicas). With
``--disaggregate prefill=ID:N,decode=ID:M`` a pool of ``N`` devices of one accelerator prefills and a pool of
``M`` devices of another decodes (both at ``--tp`` devices per replica); each prefill replica sends its KV cache
to the decode pool over the slower side's scale-out NICs (all of the replica's NICs together) with the slower
side's scale-out latency -- a GPU prefill pool beside Trainium decode, for instance.

The same keywords are the keys of a serving scenario's ``simulate:`` block (``rainier report``): an unknown key or
a value of the wrong type or out of range (``serve.limits``) is an ``InputError`` naming it.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from rainier.api import resolve_cluster
from rainier.api.serve import PRECISION_ALLOWED, parse_unit
from rainier.errors import InputError, field_error, quote
from rainier.hardware import Cluster, System, cluster_of, get_accelerator, largest_system_for_accelerator
from rainier.precision import Precision
from rainier.serve.cost import AttentionKernels, ReplicaCost, WeightFormat, parse_kv_precision, replica_cost
from rainier.serve.datasets import LengthSamples, named_dataset, request_means
from rainier.serve.estimate import ServeConfig, draft_cost, resolve_serve_efficiency
from rainier.serve.iteration import IterationCost
from rainier.serve.limits import (
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MAX_REQUESTS,
    MAX_BATCH,
    MAX_DEGREE,
    MAX_DEVICES,
    MAX_DURATION_S,
    MAX_ITERATIONS,
    MAX_RATE_PER_S,
    MAX_REQUESTS,
    MAX_SEED,
    MAX_TOKENS,
    MIN_RATE_PER_S,
    SPREAD_ALLOWED,
    check_flag,
    check_float,
    check_int,
    check_share,
    check_text,
)
from rainier.serve.simulate import LengthDistribution, Scheduler, ServeResult, ServeScenario, simulate_serving
from rainier.serve.size import Layout, Traffic, Verifier
from rainier.serve.speculative import SpeculativeCost, parse_speculation
from rainier.serve.trace import load_trace
from rainier.workload import resolve_model
from rainier.workload.shape import TransformerShape

VERIFY_REQUESTS = 20_000  # requests per simulated check of a sized fleet (at least 120 s of traffic)
VERIFY_MIN_SECONDS = 120.0
VERIFY_MAX_REQUESTS = 200_000  # the most requests one check simulates (its arrival window shrinks to fit)
# The most replicas one check simulates: a bigger fleet is checked on a slice of this many replicas with their
# share of the traffic. Join-the-shortest-queue over 64 replicas already pools nearly all that a larger pool
# would, so a slice is at most slightly pessimistic, and the work of a check no longer grows with the fleet.
VERIFY_MAX_REPLICAS = 64


def verify_with_simulation(seed: int) -> Verifier:
    """A ``serve.size`` verifier: Poisson traffic at the model's rate on the sized replicas, simulated p99s."""

    def verify(
        layout: Layout, cost: IterationCost, traffic: Traffic, replicas: int
    ) -> tuple[dict[str, float], dict[str, Any]]:
        simulated = min(replicas, VERIFY_MAX_REPLICAS)
        rate = traffic.rate_per_s * simulated / replicas
        duration = max(VERIFY_MIN_SECONDS, VERIFY_REQUESTS / rate)
        duration = min(duration, VERIFY_MAX_REQUESTS / rate)  # bound the work of one check
        try:
            engine: IterationCost = cost  # the layout's batch cap is the engine's
            if isinstance(cost, SpeculativeCost):
                engine = replace(cost, cost=replace(cost.cost, engine_max_batch=layout.batch))
            elif isinstance(cost, ReplicaCost):
                engine = replace(cost, engine_max_batch=layout.batch)
            scenario = ServeScenario(
                cost=engine,
                prefix_hit=traffic.prefix_hit,
                replicas=simulated,
                rate_per_s=rate,
                duration_s=duration,
                input_len=traffic.input_len,
                output_len=traffic.output_len,
                length_samples=traffic.lengths,
                seed=seed,
                max_requests=VERIFY_MAX_REQUESTS,
            )
            result = simulate_serving(scenario)
        except InputError as exc:  # over a simulation budget: the analytic sizing stands unchecked
            return {}, {"skipped": f"simulation check skipped: {exc}"}
        if not result.requests_completed:  # nothing served: every target is missed
            return {"ttft": math.inf, "tpot": math.inf, "e2e": math.inf}, {
                "requests": 0,
                "replicas_simulated": simulated,
            }
        p99 = {
            name: getattr(result, f"{name}_ms").p99 / 1e3
            for name in ("ttft", "tpot", "e2e")
            if getattr(result, f"{name}_ms") is not None
        }
        summary = {
            "requests": result.requests_completed,
            "replicas_simulated": simulated,
            "ttft_p99_ms": p99["ttft"] * 1e3 if "ttft" in p99 else None,
            "tpot_p99_ms": p99["tpot"] * 1e3 if "tpot" in p99 else None,
            "e2e_p99_ms": p99["e2e"] * 1e3 if "e2e" in p99 else None,
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
        if not 1 <= count <= MAX_DEVICES:
            raise field_error("disaggregate", part, f"a number of devices from 1 to {MAX_DEVICES:,} after ':'")
        pools[role] = (get_accelerator(name.strip()).id, count)
    if set(pools) != {"prefill", "decode"}:
        raise field_error("disaggregate", text, "both prefill=ID:DEVICES and decode=ID:DEVICES")
    return pools["prefill"], pools["decode"]


def _pool_cost(
    shape: TransformerShape,
    accelerator: str,
    devices: int,
    tp: int,
    weights: WeightFormat,
    role: str,
    kv: Precision | None = None,
    **layout: Any,
) -> tuple[ReplicaCost, int, System]:
    """One pool's replica cost (``layout``: ``replica_cost``'s ep, dp_attention, attention, two_batch_overlap),
    replicas and system."""
    system = largest_system_for_accelerator(accelerator)
    chip = system.accelerator
    width = tp * layout.get("dp_attention", 1)
    need = (
        f"at least tp={tp} devices per pool"
        if width == tp
        else f"at least tp x dp_attention = {width} devices per pool"
    )
    if devices < width:
        raise field_error("disaggregate", f"{role}={accelerator}:{devices}", need)
    replica = cluster_of(chip.id, width, system=system)
    eff, _ = resolve_serve_efficiency(replica, None)
    cost = replica_cost(shape, replica, tp=tp, weights=weights, eff=eff, kv_precision=kv, **layout)
    replicas = devices // cost.replica_devices
    if replicas < 1:
        raise field_error("disaggregate", f"{role}={accelerator}:{devices}", need)
    return cost, replicas, system


def _link(prefill: System, decode: System, replica_devices: int) -> tuple[float, float]:
    """Bytes/s and latency of one prefill replica's path to the decode pool (the slower side's NICs)."""
    rates = [s.nic_bw_bytes_per_s_per_device or s.scale_up_bw_bytes_per_s / 10 for s in (prefill, decode)]
    latencies = [s.scale_out.latency_s if s.scale_out is not None else s.scale_up.latency_s for s in (prefill, decode)]
    return min(rates) * replica_devices, max(latencies)


def run_serve_simulate(**kwargs: Any) -> ServeResult:
    """``rainier serve simulate``: continuous (or static) batching of Poisson or traced requests, by event.

    Takes the keyword arguments of :func:`simulation_scenario` (the keys of a scenario's ``simulate:`` block);
    for progress reports call :func:`rainier.serve.simulate.simulate_serving` on the scenario instead.
    """
    return simulate_serving(simulation_scenario(**kwargs))


@functools.cache
def scenario_keys() -> tuple[str, ...]:
    """The keywords of :func:`simulation_scenario`: the keys a ``simulate:`` block may have."""
    parameters = inspect.signature(simulation_scenario).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _unknown_keys(unknown: dict[str, object]) -> InputError:
    allowed = scenario_keys()
    name = next(iter(unknown))
    close = difflib.get_close_matches(str(name), allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    names = ", ".join(quote(k) for k in unknown)
    return InputError(f"simulate: unknown key {names}{hint} allowed: {', '.join(allowed)}")


def _optional_text(field: str, value: object, allowed: str) -> str | None:
    return None if value is None else check_text(field, value, allowed)


def _check_types(values: dict[str, Any]) -> None:
    """Every keyword of :func:`simulation_scenario` of its type and in its range (``serve.limits``)."""
    v = values
    check_text("model", v["model"], "a catalog model name or a Hugging Face config.json")
    _optional_text("cluster", v["cluster"], "a catalog cluster name")
    _optional_text("accelerator", v["accelerator"], "an accelerator id")
    if v["count"] is not None:
        check_int("count", v["count"], 1, MAX_DEVICES, "devices")
    check_int("tp", v["tp"], 1, MAX_DEGREE, "ranks")
    check_int("pp", v["pp"], 1, MAX_DEGREE, "stages")
    check_int("ep", v["ep"], 1, MAX_DEGREE, "ranks")
    check_int("dp_attention", v["dp_attention"], 1, MAX_DEGREE, "attention groups")
    check_text("attention", v["attention"], ", ".join(k.value for k in AttentionKernels))
    check_flag("two_batch_overlap", v["two_batch_overlap"])
    if v["two_batch_overlap"] and v["ep"] == 1:
        raise field_error("two-batch-overlap", True, "with ep > 1 (it overlaps the expert all-to-all)")
    check_flag("eplb", v["eplb"])
    if v["eplb"] and v["ep"] == 1:
        raise field_error("eplb", True, "with ep > 1 (it balances the experts over the ep ranks)")
    check_text("precision", v["precision"], PRECISION_ALLOWED)
    _optional_text("kv_precision", v["kv_precision"], "auto, bf16, fp16 or fp8")
    check_share("prefix_hit", v["prefix_hit"])
    check_flag("unit_core", v["unit_core"])
    _optional_text("unit", v["unit"], "device or core")
    if v["rate"] is not None:
        check_float("rate", v["rate"], MAX_RATE_PER_S, "requests per second")
        if v["rate"] < MIN_RATE_PER_S:
            raise field_error("rate", v["rate"], f"at least {MIN_RATE_PER_S:g} requests per second")
    if v["trace"] is not None and not isinstance(v["trace"], str | Path):
        raise field_error("trace", v["trace"], "the path of a CSV or JSONL request trace")
    if v["duration"] is not None:
        check_float("duration", v["duration"], MAX_DURATION_S, "seconds")
    for key in ("input_len", "output_len"):
        if v[key] is not None:
            check_int(key, v[key], 1, MAX_TOKENS, "tokens")
    check_text("lengths", v["lengths"], LENGTHS_ALLOWED)
    check_share("length_range", v["length_range"], SPREAD_ALLOWED)
    check_text("scheduler", v["scheduler"], "continuous or static")
    check_flag("chunked_prefill", v["chunked_prefill"])
    check_int("max_batch", v["max_batch"], 1, MAX_BATCH, "sequences")
    if v["token_budget"] is not None:
        check_int("token_budget", v["token_budget"], 1, MAX_TOKENS, "tokens per iteration")
    _optional_text("disaggregate", v["disaggregate"], "prefill=ID:DEVICES,decode=ID:DEVICES")
    check_int("seed", v["seed"], 0, MAX_SEED, "")
    check_int("max_requests", v["max_requests"], 1, MAX_REQUESTS, "requests")
    check_int("max_iterations", v["max_iterations"], 1, MAX_ITERATIONS, "engine iterations")
    _optional_text("speculative", v["speculative"], "METHOD:k=K[,accept=RATE|,len=TOKENS][,model=DRAFT]")
    _optional_text("adp_balance", v["adp_balance"], "BATCHING_WAIT_ITERS,TIMEOUT_ITERS (e.g. 3,9) or 'default'")


LENGTHS_ALLOWED = "fixed, uniform, geometric or a benchmark dataset (rainier catalog datasets)"


def _length_source(lengths: str) -> tuple[LengthDistribution, LengthSamples | None]:
    """``--lengths``: a distribution around the means, or a shipped benchmark dataset's mix (``serve.datasets``)."""
    try:
        return LengthDistribution(lengths.strip().lower()), None
    except ValueError:
        return LengthDistribution.FIXED, named_dataset("lengths", lengths, *(d.value for d in LengthDistribution))


def simulation_scenario(
    *,
    model: str | None = None,
    cluster: str | None = None,
    accelerator: str | None = None,
    count: int | None = None,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    dp_attention: int = 1,
    precision: str = "bf16",
    unit_core: bool = False,
    unit: str | None = None,
    rate: float | None = None,
    trace: str | None = None,
    duration: float | None = None,
    input_len: int | None = None,
    output_len: int | None = None,
    lengths: str = "fixed",
    length_range: float = 0.0,
    scheduler: str = "continuous",
    chunked_prefill: bool = False,
    max_batch: int = 256,
    token_budget: int | None = None,
    disaggregate: str | None = None,
    seed: int = 0,
    max_requests: int = DEFAULT_MAX_REQUESTS,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    speculative: str | None = None,
    kv_precision: str | None = None,
    prefix_hit: float = 0.0,
    attention: str = "fused",
    two_batch_overlap: bool = False,
    eplb: bool = False,
    adp_balance: str | None = None,
    **unknown: object,
) -> ServeScenario:
    """The simulation of a named model on a named (or ad-hoc, or disaggregated) cluster, ready to run.

    The replica layout takes ``serve estimate``'s keys: ``ep`` (a MoE model's experts over the tensor ranks, or
    over ``tp x dp_attention`` ranks with data-parallel attention), ``attention`` (the engine's kernels),
    ``two_batch_overlap`` and ``eplb``; with ``disaggregate`` both pools use it. ``max_requests`` and
    ``max_iterations`` bound the work (``serve.simulate``); an unknown keyword is an ``InputError`` listing the
    known ones (they are the keys of a scenario file's ``simulate:`` block).
    """
    from rainier.serve.balance import AdpBalance

    if unknown:
        raise _unknown_keys(unknown)
    if model is None:
        raise InputError(f"simulate: model is required (a catalog model name); keys: {', '.join(scenario_keys())}")
    _check_types(dict(locals()))
    if unit is not None:  # the CLI's --unit spelling, for a simulate: block
        unit_core = parse_unit(unit)
    shape = resolve_model(model)
    weights = WeightFormat.parse(precision)
    kv = parse_kv_precision(kv_precision)
    layout: dict[str, Any] = {"ep": ep, "dp_attention": dp_attention, "attention": AttentionKernels.parse(attention),
                              "two_batch_overlap": two_batch_overlap, "eplb": eplb}  # fmt: skip
    try:
        mode = Scheduler(scheduler.strip().lower())
    except ValueError:
        raise field_error("scheduler", scheduler, "continuous or static") from None
    spread, samples = _length_source(lengths)
    input_len, output_len = request_means(samples, input_len, output_len)
    source: dict[str, Any]
    warnings: tuple[str, ...] = ()
    if trace is not None:
        if rate is not None or duration is not None:
            raise InputError("give --rate R with --duration S (Poisson arrivals) or --trace FILE, not both")
        requests, notes = load_trace(trace, limit=max_requests)
        source = {"requests": tuple(requests)}
        warnings = tuple(notes)
    else:
        if rate is None or duration is None:
            raise InputError("give --rate R with --duration S, or --trace FILE")
        source = {"rate_per_s": float(rate), "duration_s": float(duration), "input_len": input_len,
                  "output_len": output_len}  # fmt: skip
    extra: dict[str, Any] = {}
    if disaggregate is not None:
        (pre_acc, pre_devices), (dec_acc, dec_devices) = parse_disaggregate(disaggregate)
        pre_cost, pre_replicas, pre_system = _pool_cost(
            shape, pre_acc, pre_devices, tp, weights, "prefill", kv, **layout
        )
        cost, replicas, dec_system = _pool_cost(shape, dec_acc, dec_devices, tp, weights, "decode", kv, **layout)
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
        cost = replica_cost(
            shape, target, tp=tp, pp=pp, unit_core=unit_core, weights=weights, eff=eff, kv_precision=kv, **layout
        )
        replicas = max(1, target.num_devices // cost.replica_devices)
    engine: IterationCost = replace(cost, engine_max_batch=max_batch)
    if speculative is not None:
        if disaggregate is not None:
            raise field_error("speculative", speculative, "a pool that is not disaggregated")
        spec = parse_speculation(speculative)
        config = ServeConfig(tp=tp, pp=pp, weights=weights, unit_core=unit_core, speculative=spec, kv_precision=kv,
                             **layout)  # fmt: skip
        draft = resolve_model(spec.draft_model) if spec.draft_model is not None else None
        drafter = draft_cost(shape, target, config, eff, draft)
        engine = SpeculativeCost(cost=replace(cost, engine_max_batch=max_batch), drafter=drafter, spec=spec)
    if token_budget is not None:  # the chunk size with chunked prefill; else the whole-prompt admission budget
        extra = {**extra, ("chunk_tokens" if chunked_prefill else "token_budget"): token_budget}
    return ServeScenario(
        cost=engine,
        replicas=replicas,
        scheduler=mode,
        chunked_prefill=chunked_prefill,
        length_distribution=spread,
        length_range=float(length_range),
        length_samples=samples,
        seed=seed,
        warnings=warnings,
        max_requests=max_requests,
        max_iterations=max_iterations,
        prefix_hit=float(prefix_hit),
        adp_balance=AdpBalance.parse(adp_balance) if adp_balance is not None else None,
        **source,
        **extra,
    )
