"""Fleet sizing under latency SLOs: for each model, the replica layout and count that serves its traffic cheapest.

For one model on one accelerator kind, every replica layout is tried: tensor parallelism in powers of two
inside the scale-up domain, alone or with 2, 4 or 8 pipeline stages (a pipelined replica keeps one micro-batch
group per stage in flight, ``serve.iteration.pipeline_groups``: TPOT is a whole pass, throughput ``pp`` groups'),
fp8 weights where the chip has fp8 matmuls and 16-bit otherwise. A MoE model also
gets expert-parallel layouts (``_degrees``): its experts spread over the tensor ranks (``ep = tp``, vLLM's
``--enable-expert-parallel``), and wide expert parallelism over whole nodes -- data-parallel attention groups of
``tp`` ranks inside a scale-up domain, every routed expert's weights spread over all ``ep = tp x dp_attention``
ranks, the dispatch and combine crossing the scale-out network (SGLang's DP attention with DeepEP, TensorRT-LLM's
wide EP) -- which is how a model too big for one scale-up domain is served without pipelining (under data-parallel
attention an unloaded prompt is prefilled by one group while the others wait; each group caps its own batch at
the engine default). The groups run in lockstep, so a prompt stalls every group's decodes for its own group's
whole pass, and it shares that pass with the other groups' prompts only if they arrive in the same iteration: a
replica whose decode batch is ``B`` sequences of ``output`` tokens takes ``k = B / output`` new prompts per
iteration in the steady state, prefills them ``n = min(dp, max(1, round(k)))`` at a time, each at ``1/n`` of
that pass (``dp_prefill_s``), and its TPOT is the decode iteration plus ``k`` such shares
(``_largest_batch``): one loaded group's pass per iteration once ``k`` reaches 1. Its capacity counts the same
share per request. Expert-parallel layouts place their experts by load (EPLB, ``serve.expert_load``), as all three
engines can (vLLM and SGLang ``--enable-eplb``, TensorRT-LLM's MoE load balancer) and wide-EP deployments do:
without it the busiest expert rank of a 256-expert model at EP32 gets 2.6x the mean. With continuous batching a
replica runs up to ``B`` sequences per decode iteration; ``B`` is the largest batch whose decode iteration at the
longest context (``input + output`` tokens, the p99 TPOT) meets the TPOT SLO and whose KV cache fits (on Trainium
at Neuron's compiled buckets, ``serve.buckets``: the prompt's, and the longest context's for every decoding
sequence). One request costs a prefill pass and ``output / B`` of a decode iteration per generated token, so a
replica serves ``1 / (t_prefill + output x t_decode(B) / B)`` requests per second; replicas run at ``utilisation``
of that to keep queueing for TTFT in check. The layout with the lowest cost (devices x price per device-hour, or
devices x watts where a price is missing) wins; ``verify`` (a batching simulation, see ``serve.simulate``) may then
add replicas until the simulated p99s meet the SLOs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rainier.errors import InputError, field_error
from rainier.hardware import cluster_of, largest_system_for_accelerator
from rainier.precision import Precision
from rainier.serve.cost import DEFAULT_MAX_BATCH, ReplicaCost, WeightFormat, replica_cost
from rainier.serve.datasets import LengthSamples
from rainier.serve.efficiency import ServeEfficiency, ServeEfficiencyTable, committed_serve_efficiency
from rainier.serve.estimate import ServeConfig, draft_cost
from rainier.serve.iteration import IterationCost
from rainier.serve.limits import MAX_BATCH, MAX_LATENCY_MS, MAX_RATE_PER_S
from rainier.serve.speculative import Speculation, SpeculativeCost
from rainier.workload.shape import TransformerShape

DEFAULT_UTILISATION = 0.8
# The widest expert-parallel replica tried, in devices: DeepSeek's decode deployment spans 144 GPUs (18 nodes;
# DeepSeek-V3/R1 inference system overview), SGLang's 72-96 (LMSYS large-scale EP, 2025); one expert per rank
# bounds it too (``_degrees``).
MAX_EP_DEVICES = 256
# Pipeline stages tried: vLLM serves Llama 3.1 405B in bf16 as tp 8 x pp 2 over two nodes (vLLM blog, 2024-07-23)
PIPELINE_STAGES = (1, 2, 4, 8)
MAX_VERIFY_ROUNDS = 6
VERIFY_GROWTH = 1.15  # replicas added per failed simulation round
_SLO_KEYS = {"ttft_p99_ms": "ttft", "tpot_p99_ms": "tpot", "e2e_p99_ms": "e2e"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Slo:
    """p99 latency targets in seconds (``None``: no target)."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {
            "ttft_p99_ms": None if self.ttft_s is None else self.ttft_s * 1e3,
            "tpot_p99_ms": None if self.tpot_s is None else self.tpot_s * 1e3,
            "e2e_p99_ms": None if self.e2e_s is None else self.e2e_s * 1e3,
        }


def parse_slo(text: str) -> Slo:
    """``ttft_p99_ms=2000,tpot_p99_ms=50`` -> :class:`Slo`."""
    values: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, raw = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in _SLO_KEYS:
            raise field_error("slo", part, f"key=value with keys {', '.join(_SLO_KEYS)}")
        try:
            value = float(raw)
        except ValueError:
            raise field_error("slo", part, "a number of milliseconds") from None
        if not 0 < value <= MAX_LATENCY_MS:
            raise field_error("slo", part, f"a number of milliseconds above 0 and at most {MAX_LATENCY_MS:,.0f}")
        values[_SLO_KEYS[key] + "_s"] = value / 1e3
    if not values:
        raise field_error("slo", text, "at least one of ttft_p99_ms, tpot_p99_ms, e2e_p99_ms")
    return Slo(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class Traffic:
    """One model's traffic: requests per second and request lengths."""

    model: str
    rate_per_s: float
    input_len: int
    output_len: int
    prefix_hit: float = 0.0  # share of each prompt found in the prefix cache (its prefill computes the rest)
    lengths: LengthSamples | None = None  # a benchmark's length mix around the means, for the simulated check

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens per request found in the prefix cache (at least one token is always computed)."""
        return min(math.floor(self.prefix_hit * self.input_len), self.input_len - 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "rate_per_s": self.rate_per_s,
            "input_len": self.input_len,
            "output_len": self.output_len,
            "prefix_hit": self.prefix_hit,
            "lengths": self.lengths.id if self.lengths is not None else None,
        }


_MODEL_RATE = re.compile(r"^(?P<model>[^:]+):(?P<rate>[0-9.eE+-]+)$")


def parse_models(text: str) -> list[tuple[str, float]]:
    """``modelA:rate,modelB:rate`` (requests per second) -> [(name, rate)]."""
    out: list[tuple[str, float]] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        match = _MODEL_RATE.match(part)
        if match is None:
            raise field_error("models", part, "NAME:REQUESTS_PER_S, e.g. llama-3-70b:20")
        try:
            rate = float(match["rate"])
        except ValueError:
            raise field_error("models", part, "a number of requests per second after ':'") from None
        if not 0 < rate <= MAX_RATE_PER_S:
            raise field_error(
                "models", part, f"a rate above 0 and at most {MAX_RATE_PER_S:,.0f} requests per second after ':'"
            )
        out.append((match["model"].strip(), rate))
    if not out:
        raise field_error("models", text, "NAME:REQUESTS_PER_S[,NAME:REQUESTS_PER_S...]")
    return out


def degrees_label(tp: int, ep: int = 1, dp_attention: int = 1, pp: int = 1) -> str:
    """``tp=8``, ``tp=8 pp=2``, ``tp=8 ep=8`` or ``tp=8 dp-attention=4 ep=32``: a replica's parallel degrees as the
    CLI shows them."""
    parts = [f"tp={tp}"]
    if pp > 1:
        parts.append(f"pp={pp}")
    if dp_attention > 1:
        parts.append(f"dp-attention={dp_attention}")
    if ep > 1:
        parts.append(f"ep={ep}")
    return " ".join(parts)


def layout_label(layout: Mapping[str, Any]) -> str:
    """The degrees of a layout as ``Layout.to_dict`` wrote it (a result stored before ``label`` existed: from
    ``tp``, ``ep`` and ``dp_attention``)."""
    if layout.get("label"):
        return str(layout["label"])
    return degrees_label(
        int(layout["tp"]), int(layout.get("ep", 1)), int(layout.get("dp_attention", 1)), int(layout.get("pp", 1))
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """One replica layout for a model on an accelerator, and what it sustains under the SLOs."""

    accelerator: str
    system: str
    tp: int
    weights: WeightFormat
    replica_devices: int
    ep: int = 1  # expert-parallel ranks (1: experts split by tensor parallelism; MoE models only)
    dp_attention: int = 1  # data-parallel attention groups of tp ranks (ep = tp x dp_attention when above 1)
    pp: int = 1  # pipeline stages (pp micro-batch groups in flight, each up to ``batch`` sequences)
    speculative: str = ""  # the speculative decoding the replica runs (``serve.speculative`` text), "" for none
    batch: int  # decode batch cap meeting the TPOT target (per micro-batch group when pp > 1)
    prefill_s: float
    tpot_p99_s: float
    requests_per_s: float  # one replica at full load

    @property
    def label(self) -> str:
        """The parallel degrees of one replica (``degrees_label``), and its speculative decoding."""
        degrees = degrees_label(self.tp, self.ep, self.dp_attention, self.pp)
        return f"{degrees} {self.speculative}" if self.speculative else degrees

    def to_dict(self) -> dict[str, Any]:
        return {
            "accelerator": self.accelerator,
            "system": self.system,
            "tp": self.tp,
            "ep": self.ep,
            "dp_attention": self.dp_attention,
            "pp": self.pp,
            "speculative": self.speculative or None,
            "label": self.label,
            "precision": self.weights.value,
            "replica_devices": self.replica_devices,
            "batch": self.batch,
            "ttft_ms_unloaded": self.prefill_s * 1e3,
            "tpot_p99_ms_estimate": self.tpot_p99_s * 1e3,
            "requests_per_s_per_replica": self.requests_per_s,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelFleet:
    """A model's share of the fleet on one accelerator kind."""

    traffic: Traffic
    layout: Layout
    replicas: int
    cost_per_device_hour: float  # price in USD, or watts when ranking by power (see ``basis``)
    basis: str
    simulated: dict[str, Any] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def devices(self) -> int:
        return self.replicas * self.layout.replica_devices

    def to_dict(self) -> dict[str, Any]:
        return {
            "traffic": self.traffic.to_dict(),
            "layout": self.layout.to_dict(),
            "replicas": self.replicas,
            "devices": self.devices,
            "simulated": self.simulated,
            "notes": list(self.notes),
        }


# (accelerator id) -> (cost per device-hour for ranking, what it is: "usd" or "watts")
CostOf = Callable[[str], tuple[float, str]]
# (layout, cost, traffic, replicas) -> simulated p99s in seconds {"ttft": .., "tpot": .., "e2e": ..} and a summary
Verifier = Callable[[Layout, IterationCost, Traffic, int], tuple[dict[str, float], dict[str, Any]]]


def _tp_values(limit: int) -> list[int]:
    return [1 << i for i in range(int(math.log2(max(limit, 1))) + 1)]


def _degrees(shape: TransformerShape, domain: int) -> list[tuple[int, int, int, int]]:
    """The ``(tp, ep, dp_attention, pp)`` of every replica layout tried for ``shape`` on a chip whose scale-up
    domain holds ``domain`` devices: tensor parallelism inside the domain, alone or with ``PIPELINE_STAGES``
    pipeline stages (the stages may span nodes); for a MoE model also its experts over the tensor ranks (``ep =
    tp``, pipelined or not), and data-parallel attention groups of ``tp`` ranks with the experts over all ``ep = tp
    x dp_attention`` ranks, up to ``MAX_EP_DEVICES`` and at least one routed expert per rank (not pipelined)."""
    plain = [(tp, 1) for tp in _tp_values(domain)]
    if shape.moe is not None:
        plain += [(tp, tp) for tp in _tp_values(min(domain, shape.moe.num_experts)) if tp > 1]
    out = [(tp, ep, 1, pp) for pp in PIPELINE_STAGES for tp, ep in plain if pp <= shape.num_layers]
    if shape.moe is None:
        return out
    for ep in _tp_values(min(shape.moe.num_experts, MAX_EP_DEVICES)):
        out += [(tp, ep, ep // tp, 1) for tp in _tp_values(min(domain, ep)) if ep // tp > 1]
    return out


def layouts(
    shape: TransformerShape,
    traffic: Traffic,
    accelerator: str,
    slo: Slo,
    *,
    efficiency: ServeEfficiency | ServeEfficiencyTable | None = None,
    speculative: Speculation | None = None,
    draft: TransformerShape | None = None,
) -> tuple[list[tuple[Layout, IterationCost]], list[str]]:
    """Every replica layout of ``shape`` on ``accelerator`` that meets the SLOs on its own, and why others fail.

    With ``speculative`` each replica drafts and verifies (``serve.speculative.SpeculativeCost``, the drafter
    ``draft`` or the one the method implies): its TPOT and capacity are per accepted token; pipelined layouts are
    not tried then (the simulator drafts for one micro-batch group per replica)."""
    system = largest_system_for_accelerator(accelerator)
    chip = system.accelerator
    table = efficiency if efficiency is not None else committed_serve_efficiency()
    eff = table if isinstance(table, ServeEfficiency) else table.for_accelerator(chip)
    formats = [WeightFormat.FP8] if chip.supports(Precision.FP8) else []
    formats.append(WeightFormat.BF16)
    found: list[tuple[Layout, IterationCost]] = []
    reasons: list[str] = []
    context = traffic.input_len + traffic.output_len
    cached = traffic.cached_tokens
    for weights in formats:
        for tp, ep, dp, pp in _degrees(shape, system.num_devices):
            if speculative is not None and pp > 1:
                continue
            where = degrees_label(tp, ep, dp, pp)
            cluster = cluster_of(chip.id, tp * dp * pp, system=system)
            try:
                cost = replica_cost(
                    shape, cluster, tp=tp, pp=pp, ep=ep, dp_attention=dp, weights=weights, eff=eff,
                    max_batch=min(MAX_BATCH, DEFAULT_MAX_BATCH * dp), eplb=ep > 1,
                )  # fmt: skip
            except ValueError as exc:
                reasons.append(f"{where} {weights.value}: {exc}")
                continue
            # a pipelined replica keeps pp micro-batch groups in flight, each a whole pass with its share of cache
            groups, group = cost.micro_batch_groups()
            cap = min(group.max_batch, group.kv_capacity_tokens // context)
            if cap < 1:
                reasons.append(f"{where} {weights.value}: the KV cache of one {context}-token request does not fit")
                continue
            # On a Neuron runtime (the replica's buckets) a prompt is prefilled at its compiled bucket, and a
            # continuous batch's decode step reads every sequence's cache over the bucket of the batch's longest,
            # which a loaded replica keeps near the longest context (serve.buckets).
            buckets = group.buckets
            prompt = buckets.pad(traffic.input_len) if buckets is not None else traffic.input_len
            padded = buckets.pad(context) if buckets is not None else context
            engine: ReplicaCost | SpeculativeCost = group
            if speculative is not None:
                config = ServeConfig(
                    tp=tp, ep=ep, dp_attention=dp, weights=weights, speculative=speculative, eplb=ep > 1
                )
                drafter = draft_cost(shape, cluster, config, eff, draft)
                engine = SpeculativeCost(cost=group, drafter=drafter, spec=speculative)
            prefill = engine.iteration_s(prompt - cached, 0, 0, 1, cached)
            if slo.ttft_s is not None and prefill > slo.ttft_s:
                reasons.append(f"{where} {weights.value}: prefill alone takes {prefill * 1e3:.0f} ms > TTFT target")
                continue
            stall = None
            if dp > 1:  # data-parallel attention: each prompt's share of its group's pass, which every group waits for

                def stall(
                    b: int, engine: ReplicaCost | SpeculativeCost = engine, dp: int = dp, new: int = prompt - cached
                ) -> float:
                    return dp_prefill_s(engine, dp, b / traffic.output_len, new, cached)

            batch = _largest_batch(engine, cap, padded, slo.tpot_s, stall, traffic.output_len)
            if batch == 0:
                reasons.append(f"{where} {weights.value}: one sequence's decode step misses the TPOT target")
                continue
            tpot = _loaded_tpot_s(engine, batch, padded, stall, traffic.output_len)
            busy = prefill if stall is None else stall(batch)
            middle = traffic.input_len + traffic.output_len // 2 if buckets is None else padded
            mean_decode = engine.iteration_s(0, batch, batch * middle)
            per_request = busy + traffic.output_len * mean_decode / batch
            if slo.e2e_s is not None and prefill + traffic.output_len * tpot > slo.e2e_s:
                reasons.append(f"{where} {weights.value}: an unloaded request misses the end-to-end target")
                continue
            layout = Layout(
                accelerator=chip.id,
                system=system.id,
                tp=tp,
                ep=ep,
                dp_attention=dp,
                pp=pp,
                speculative=_speculation_text(speculative),
                weights=weights,
                replica_devices=cost.replica_devices,
                batch=batch,
                prefill_s=prefill,
                tpot_p99_s=tpot,
                requests_per_s=groups / per_request,
            )
            found.append((layout, engine if speculative is not None else cost))
    return found, reasons


def _speculation_text(spec: Speculation | None) -> str:
    """``eagle3:k=3,accept=0.74`` (the ``--speculative`` grammar), "" without speculation."""
    if spec is None:
        return ""
    text = f"{spec.method.value}:k={spec.num_tokens}"
    if spec.acceptance_rate is not None:
        text += f",accept={spec.acceptance_rate:g}"
    if spec.acceptance_length is not None:
        text += f",len={spec.acceptance_length:g}"
    if spec.draft_model is not None:
        text += f",model={spec.draft_model}"
    if spec.separate_launch or spec.counts_pending:
        text += ",launch=separate" if spec.separate_launch else ",launch=nxdi"
    return text


def dp_prefill_s(
    cost: ReplicaCost | SpeculativeCost, dp: int, per_iteration: float, new_tokens: int, cached: int
) -> float:
    """Seconds of a data-parallel attention replica's time one prompt of ``new_tokens`` (after ``cached``) costs
    when ``per_iteration`` prompts arrive per iteration: they are prefilled ``n = min(dp, max(1, round(k)))`` at a
    time, one per group, in a pass every group waits for, and each pays ``1/n`` of it (module docstring)."""
    n = min(dp, max(1, round(per_iteration)))
    return cost.iteration_s(n * new_tokens, 0, 0, n, n * cached) / n


def _loaded_tpot_s(
    cost: IterationCost, batch: int, context: int, stall: Callable[[int], float] | None, output_len: int
) -> float:
    """A decode iteration of ``batch`` sequences at ``context`` tokens each, plus the ``batch / output_len`` prompts'
    ``stall`` per iteration where prefills stop every decode (module docstring)."""
    step = cost.iteration_s(0, batch, batch * context)
    if stall is not None:
        step += batch / output_len * stall(batch)
    return step


def _largest_batch(
    cost: IterationCost,
    cap: int,
    context: int,
    tpot_s: float | None,
    stall: Callable[[int], float] | None = None,
    output_len: int = 1,
) -> int:
    """Largest decode batch <= cap whose iteration at ``context`` tokens per sequence meets ``tpot_s``, with
    ``batch / output_len`` prompts' ``stall`` per iteration added where prefills stop every decode (module
    docstring)."""
    if tpot_s is None:
        return cap

    def ok(batch: int) -> bool:
        return _loaded_tpot_s(cost, batch, context, stall, output_len) <= tpot_s

    if not ok(1):
        return 0
    lo, hi = 1, cap
    while lo < hi:  # iteration time grows with the batch (tests check it), so bisect
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def size_model(
    shape: TransformerShape,
    traffic: Traffic,
    accelerator: str,
    slo: Slo,
    *,
    cost_of: CostOf,
    utilisation: float = DEFAULT_UTILISATION,
    verify: Verifier | None = None,
    efficiency: ServeEfficiency | ServeEfficiencyTable | None = None,
    speculative: Speculation | None = None,
    draft: TransformerShape | None = None,
) -> ModelFleet:
    """The cheapest fleet of one accelerator kind for one model's traffic (module docstring)."""
    if not 0 < utilisation <= 1:
        raise field_error("utilisation", utilisation, "a fraction in (0, 1]")
    options, reasons = layouts(
        shape, traffic, accelerator, slo, efficiency=efficiency, speculative=speculative, draft=draft
    )
    if not options:
        why = reasons[-1] if reasons else "no layout"
        raise InputError(f"slo: no {accelerator} layout of {traffic.model} meets it ({why})")
    price, basis = cost_of(accelerator)

    def replicas_for(layout: Layout) -> int:
        return max(1, math.ceil(traffic.rate_per_s / (utilisation * layout.requests_per_s)))

    layout, cost = min(
        options,
        key=lambda o: (replicas_for(o[0]) * o[0].replica_devices, o[0].replica_devices, o[0].pp, o[0].tp, o[0].ep),
    )
    replicas = replicas_for(layout)
    simulated = None
    notes: list[str] = []
    if verify is not None:
        for _round in range(MAX_VERIFY_ROUNDS):
            p99, simulated = verify(layout, cost, traffic, replicas)
            if "skipped" in simulated:
                notes.append(str(simulated["skipped"]))
                break
            misses = [k for k, target in (("ttft", slo.ttft_s), ("tpot", slo.tpot_s), ("e2e", slo.e2e_s))
                      if target is not None and p99.get(k, 0.0) > target]  # fmt: skip
            if not misses:
                break
            notes.append(f"{replicas} replicas: simulated p99 {', '.join(misses)} over target; adding replicas")
            replicas = math.ceil(replicas * VERIFY_GROWTH)
        else:
            notes.append(f"still over target after {MAX_VERIFY_ROUNDS} simulated rounds")
    return ModelFleet(
        traffic=traffic,
        layout=layout,
        replicas=replicas,
        cost_per_device_hour=price,
        basis=basis,
        simulated=simulated,
        notes=tuple(notes),
    )
