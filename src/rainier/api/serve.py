"""The serving commands' Python API: names and strings in, typed serving results out."""

from __future__ import annotations

from rainier.api import resolve_cluster
from rainier.errors import field_error
from rainier.serve.cost import WeightFormat
from rainier.serve.efficiency import ServeEfficiency, ServeEfficiencyTable
from rainier.serve.estimate import ServeConfig, ServeEstimate, estimate_serving
from rainier.workload import resolve_model


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
    batch: int = 1,
    input_len: int = 128,
    output_len: int = 128,
    precision: str = "bf16",
    unit: str = "device",
    efficiency: ServeEfficiency | ServeEfficiencyTable | None = None,
    allow_oversize: bool = False,
) -> ServeEstimate:
    """``rainier serve estimate``: one static-batch configuration on every replica that fits the cluster.

    A batch whose KV cache cannot fit is an ``InputError`` naming the largest batch that does (``allow_oversize``
    returns the estimate with ``fits`` false instead).
    """
    shape = resolve_model(model)
    target = resolve_cluster(cluster, accelerator, count)
    config = ServeConfig(
        tp=tp,
        pp=pp,
        ep=ep,
        batch=batch,
        input_len=input_len,
        output_len=output_len,
        weights=WeightFormat.parse(precision),
        unit_core=parse_unit(unit),
    )
    result = estimate_serving(shape, target, config, efficiency=efficiency)
    if not result.fits and not allow_oversize:
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
