"""The serving commands' Python API: names and strings in, typed serving results out."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from rainier.api import resolve_cluster
from rainier.errors import InputError, field_error
from rainier.hardware import get_accelerator
from rainier.serve.cost import AttentionKernels, WeightFormat, parse_kv_precision
from rainier.serve.datasets import named_dataset, request_means
from rainier.serve.efficiency import ServeEfficiency, ServeEfficiencyTable
from rainier.serve.estimate import ServeConfig, ServeEstimate, estimate_serving
from rainier.serve.limits import MAX_DEVICES, MAX_SEED, MAX_TOKENS, check_float, check_int, check_share, check_text
from rainier.serve.residuals import devices_interval
from rainier.serve.residuals import intervals as serve_intervals
from rainier.serve.size import (
    DEFAULT_UTILISATION,
    ModelFleet,
    Slo,
    Traffic,
    Verifier,
    parse_models,
    parse_slo,
    size_model,
)
from rainier.serve.speculative import parse_speculation
from rainier.units import SECONDS_PER_HOUR
from rainier.workload import resolve_model

PRECISION_ALLOWED = "bf16, fp16, fp8, fp4, int8 (w8a8), int8-weights, int4-weights (awq, gptq) or mxfp4-experts"


def parse_unit(unit: str) -> bool:
    """``device`` or ``core`` (NeuronCores) -> whether degrees count cores."""
    value = unit.strip().lower()
    if value in ("device", "devices"):
        return False
    if value in ("core", "cores", "neuroncore", "neuroncores"):
        return True
    raise field_error("unit", unit, "device or core")


def run_serve_estimate(
    *,
    model: str,
    cluster: str | None = None,
    accelerator: str | None = None,
    count: int | None = None,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    dp_attention: int = 1,
    batch: int = 1,
    input_len: int = 128,
    output_len: int = 128,
    precision: str = "bf16",
    unit: str = "device",
    efficiency: ServeEfficiency | ServeEfficiencyTable | None = None,
    allow_oversize: bool = False,
    speculative: str | None = None,
    attention: str = "fused",
    kv_precision: str | None = None,
    prefix_hit: float = 0.0,
    two_batch_overlap: bool = False,
    eplb: bool = False,
    prefill_chunk: int = 0,
    bucketing: bool = True,
) -> ServeEstimate:
    """``rainier serve estimate``: one static-batch configuration on every replica that fits the cluster.

    ``speculative`` is ``METHOD:k=K[,accept=RATE|,len=TOKENS][,model=DRAFT][,launch=fused|separate]``
    (``serve.speculative``);
    ``attention`` names the engine's attention kernels (``serve.cost.AttentionKernels``); ``kv_precision`` stores
    the KV cache in bf16, fp16 or fp8 whatever the weights (default: the weight format's); ``prefix_hit`` is the
    share of each prompt found in the prefix cache; ``two_batch_overlap`` hides the expert all-to-all behind the
    other micro-batch's compute; ``eplb`` places the experts by their load (the busiest ep rank's routed tokens
    near the mean, ``serve.expert_load``); ``prefill_chunk`` prefills the prompts that many tokens at a time (pipelined
    through the ``pp`` stages); on a Neuron runtime the prompts and caches are padded to its compiled
    ``bucketing`` lengths, or with ``bucketing`` false to one length of input + output (``serve.buckets``).
    ``dp_attention`` > 1 (with ``ep = tp x dp_attention``, a MoE
    model) is data-parallel attention: the replica spans ``tp x dp_attention x pp`` devices and ``batch`` is its
    whole batch (``serve.cost``).

    A batch whose KV cache cannot fit is an ``InputError`` naming the largest batch that does (``allow_oversize``
    returns the estimate with ``fits`` false instead).
    """
    check_text("model", model, "a catalog model name or a Hugging Face config.json")
    check_text("precision", precision, PRECISION_ALLOWED)
    check_text("unit", unit, "device or core")
    if kv_precision is not None:
        check_text("kv-precision", kv_precision, "auto, bf16, fp16 or fp8")
    if count is not None:
        check_int("count", count, 1, MAX_DEVICES, "devices")
    shape = resolve_model(model)
    target = resolve_cluster(cluster, accelerator, count)
    config = ServeConfig(
        tp=tp,
        pp=pp,
        ep=ep,
        dp_attention=dp_attention,
        batch=batch,
        input_len=input_len,
        output_len=output_len,
        weights=WeightFormat.parse(precision),
        unit_core=parse_unit(unit),
        speculative=parse_speculation(speculative) if speculative is not None else None,
        attention=AttentionKernels.parse(attention),
        kv_precision=parse_kv_precision(kv_precision),
        prefix_hit=prefix_hit,
        two_batch_overlap=two_batch_overlap,
        eplb=eplb,
        prefill_chunk=prefill_chunk,
        bucketing=bucketing,
    )
    spec = config.speculative
    draft = resolve_model(spec.draft_model) if spec is not None and spec.draft_model is not None else None
    result = estimate_serving(shape, target, config, efficiency=efficiency, draft=draft)
    result = replace(result, intervals=serve_intervals(result.to_dict(), target.accelerator.efficiency_keys))
    if not result.fits and not allow_oversize:
        if result.config.batch <= result.max_batch:
            raise field_error(
                "batch",
                batch,
                f"a batch whose prefill activations ({result.activation_bytes_per_device / 2**30:.1f} GiB per device) "
                "fit the memory reserve; prefill fewer prompts at once",
            )
        if result.weight_bytes_per_device >= result.usable_bytes_per_device:
            raise field_error(
                "tp",
                result.config.tp,
                f"a layout whose weights fit: {model}'s take {result.weight_bytes_per_device / 2**30:,.1f} GiB per "
                f"device at tp={result.config.tp}, pp={result.config.pp}, of "
                f"{result.usable_bytes_per_device / 2**30:,.1f} GiB usable on "
                f"{target.accelerator.id} (raise --tp or --pp, or store the weights in fp8 or int4)",
            )
        if result.max_batch == 0:
            raise field_error(
                "input-len + output-len",
                input_len + output_len,
                f"a request whose KV cache fits one replica of {result.replica_devices} {target.accelerator.id} "
                "(more devices per replica, or fp8)",
            )
        raise field_error(
            "batch", batch, f"at most {result.max_batch} sequences of {input_len} + {output_len} tokens fit one replica"
        )
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetOption:
    """Serving every model on one accelerator kind (or, for ``mixed``, each on its cheapest kind)."""

    name: str
    models: tuple[ModelFleet, ...]
    devices: int
    facility_power_w: float | None
    usd_per_hour: float | None
    output_tokens_per_s: float
    total_tokens_per_s: float

    @property
    def usd_per_million_output_tokens(self) -> float | None:
        if self.usd_per_hour is None:
            return None
        return self.usd_per_hour / (self.output_tokens_per_s * SECONDS_PER_HOUR) * 1e6

    @property
    def usd_per_million_tokens(self) -> float | None:
        if self.usd_per_hour is None:
            return None
        return self.usd_per_hour / (self.total_tokens_per_s * SECONDS_PER_HOUR) * 1e6

    @property
    def devices_interval(self) -> tuple[int, int] | None:
        """Devices if every model's replicas serve the 90th / 10th percentile of the throughput band."""
        parts = [
            devices_interval(
                m.replicas, m.layout.replica_devices, get_accelerator(m.layout.accelerator).efficiency_keys
            )
            for m in self.models
        ]
        if any(p is None for p in parts):
            return None
        return sum(p[0] for p in parts if p), sum(p[1] for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        interval = self.devices_interval
        return {
            "fleet": self.name,
            "devices": self.devices,
            "devices_low": None if interval is None else interval[0],
            "devices_high": None if interval is None else interval[1],
            "facility_power_mw": None if self.facility_power_w is None else self.facility_power_w / 1e6,
            "usd_per_hour": self.usd_per_hour,
            "usd_per_million_output_tokens": self.usd_per_million_output_tokens,
            "usd_per_million_tokens": self.usd_per_million_tokens,
            "models": [m.to_dict() for m in self.models],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SizingResult:
    """Fleets per accelerator kind and mixed, ranked; the best one first."""

    slo: Slo
    ranked_by: str
    options: tuple[FleetOption, ...]
    infeasible: dict[str, str]
    notes: tuple[str, ...]

    def to_frame(self) -> Any:
        """The fleets as a pandas DataFrame, one row per option (``rainier.frame``)."""
        from rainier.frame import frame

        return frame(self.to_dict(), self.to_dict()["options"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "slo": self.slo.to_dict(),
            "ranked_by": self.ranked_by,
            "best": self.options[0].name if self.options else None,
            "options": [o.to_dict() for o in self.options],
            "infeasible": dict(self.infeasible),
            "notes": list(self.notes),
        }


def run_serve_size(
    *,
    models: str,
    slo: str,
    accelerators: str = "trn2,h100-sxm",
    input_len: int | None = None,
    output_len: int | None = None,
    price: str | float | None = None,
    utilisation: float = DEFAULT_UTILISATION,
    simulate: bool = True,
    seed: int = 0,
    efficiency: ServeEfficiency | ServeEfficiencyTable | None = None,
    progress: Callable[[int, int], None] | None = None,
    speculative: str | None = None,
    prefix_hit: float = 0.0,
    lengths: str | None = None,
) -> SizingResult:
    """``rainier serve size``: the cheapest fleet meeting every SLO, per accelerator kind and mixed.

    ``speculative`` (``serve estimate``'s grammar) sizes replicas that draft and verify; ``prefix_hit`` is the share
    of each prompt found in the prefix cache; ``lengths`` a benchmark's length mix (``rainier catalog datasets``):
    the layouts are sized at its means (``input_len`` and ``output_len`` when given, else the mix's), and the
    simulated check draws each request's lengths from it, so its longest prompts and answers meet the p99 targets.

    ``progress`` is called with (models sized, models to size) as each model's fleet on each kind is done.
    """
    from rainier.api.fleet import parse_prices
    from rainier.fleet.compare import parse_accelerators
    from rainier.fleet.power import fleet_cluster, power_basis

    check_text("models", models, "NAME:REQUESTS_PER_S[,NAME:REQUESTS_PER_S...]")
    check_text("slo", slo, "ttft_p99_ms=...,tpot_p99_ms=...[,e2e_p99_ms=...]")
    check_text("accelerators", accelerators, "accelerator ids, e.g. trn2,h100-sxm")
    samples = named_dataset("lengths", lengths) if lengths is not None else None
    input_len, output_len = request_means(samples, input_len, output_len)
    for name, value in (("input-len", input_len), ("output-len", output_len)):
        check_int(name, value, 1, MAX_TOKENS, "tokens")
    check_float("utilisation", utilisation, 1.0, "a share of each replica's capacity")
    check_int("seed", seed, 0, MAX_SEED, "")
    check_share("prefix-hit", prefix_hit)
    targets = parse_slo(slo)
    spec = parse_speculation(speculative) if speculative is not None else None
    draft = resolve_model(spec.draft_model) if spec is not None and spec.draft_model is not None else None
    traffic = [
        Traffic(
            model=name,
            rate_per_s=rate,
            input_len=input_len,
            output_len=output_len,
            prefix_hit=prefix_hit,
            lengths=samples,
        )
        for name, rate in parse_models(models)
    ]
    kinds = parse_accelerators(accelerators)
    prices = parse_prices(price)
    shapes = {t.model: resolve_model(t.model) for t in traffic}
    usd = {a: prices.for_cluster(fleet_cluster(a, 1)).usd_per_device_hour for a in kinds}
    watts: dict[str, float | None] = {}
    for a in kinds:
        basis = power_basis(fleet_cluster(a, 1))
        watts[a] = None if basis.watts_per_device is None else basis.watts_per_device * basis.pue
    by_usd = all(usd[a] is not None for a in kinds)
    notes: list[str] = []
    if not by_usd:
        missing = ", ".join(a for a in kinds if usd[a] is None)
        notes.append(f"no price for {missing} (pass --price): fleets are ranked by facility power instead")

    def cost_of(accelerator: str) -> tuple[float, str]:
        if by_usd:
            return float(usd[accelerator] or 0.0), "usd"
        return float(watts[accelerator] or math.inf), "watts"

    verify = _simulation_verifier(seed) if simulate else None
    per_kind: dict[str, list[ModelFleet]] = {}
    infeasible: dict[str, str] = {}
    total = len(kinds) * len(traffic)
    for number, kind in enumerate(kinds):
        fleets = []
        try:
            for index, t in enumerate(traffic):
                fleets.append(
                    size_model(
                        shapes[t.model],
                        t,
                        kind,
                        targets,
                        cost_of=cost_of,
                        utilisation=utilisation,
                        verify=verify,
                        efficiency=efficiency,
                        speculative=spec,
                        draft=draft,
                    )
                )
                if progress is not None:
                    progress(number * len(traffic) + index + 1, total)
        except InputError as exc:
            infeasible[kind] = str(exc)
            continue
        per_kind[kind] = fleets
    if not per_kind:
        raise InputError(f"slo: no fleet of {', '.join(kinds)} meets it ({next(iter(infeasible.values()))})")

    def option(name: str, fleets: list[ModelFleet]) -> FleetOption:
        devices = sum(f.devices for f in fleets)
        power = [f.devices * w for f in fleets if (w := watts[f.layout.accelerator]) is not None]
        cost = [f.devices * p for f in fleets if (p := usd[f.layout.accelerator]) is not None]
        return FleetOption(
            name=name,
            models=tuple(fleets),
            devices=devices,
            facility_power_w=sum(power) if len(power) == len(fleets) else None,
            usd_per_hour=sum(cost) if len(cost) == len(fleets) else None,
            output_tokens_per_s=sum(f.traffic.rate_per_s * f.traffic.output_len for f in fleets),
            total_tokens_per_s=sum(f.traffic.rate_per_s * (f.traffic.input_len + f.traffic.output_len) for f in fleets),
        )

    options = [option(kind, fleets) for kind, fleets in per_kind.items()]
    if len(per_kind) > 1 and len(traffic) > 1:
        cheapest = []
        for t in traffic:
            candidates = [f for fleets in per_kind.values() for f in fleets if f.traffic.model == t.model]
            cheapest.append(min(candidates, key=lambda f: f.devices * f.cost_per_device_hour))
        if len({f.layout.accelerator for f in cheapest}) > 1:
            options.append(option("mixed", cheapest))

    def rank(o: FleetOption) -> float:
        if by_usd:
            return o.usd_per_hour if o.usd_per_hour is not None else math.inf
        return o.facility_power_w if o.facility_power_w is not None else math.inf

    options.sort(key=rank)
    return SizingResult(
        slo=targets,
        ranked_by="usd_per_hour" if by_usd else "facility_power",
        options=tuple(options),
        infeasible=infeasible,
        notes=tuple(notes),
    )


def _simulation_verifier(seed: int) -> Verifier | None:
    """Checks a sized fleet with the batching simulation, when the simulator is available."""
    try:
        from rainier.serve.simulate import simulate_serving  # noqa: F401
    except ImportError:  # pragma: no cover - the simulator ships with the package
        return None
    from rainier.api.serve_sim import verify_with_simulation

    return verify_with_simulation(seed)
