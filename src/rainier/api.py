"""The Python API: the same operations as the CLI, from names and strings to typed results.

``rainier.api.run_estimate(model="llama-3-70b", accelerator="h100-sxm", count=64, plan="tp=8,pp=2,gbs=512")``
returns a ``StepEstimate`` (``.to_dict()`` gives the CLI's JSON). Inputs are resolved here once, so the CLI and
scripts share one path and one set of error messages.
"""

from __future__ import annotations

from rainier.errors import InputError, field_error
from rainier.hardware import Cluster, cluster_of, get_cluster
from rainier.parallel.plan import DegreeUnit, Infeasible, parse_plan
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate
from rainier.workload import resolve_model


def resolve_cluster(cluster: str | None, accelerator: str | None, count: int | None) -> Cluster:
    """A named cluster, or ``count`` devices of ``accelerator`` in its default systems; exactly one of the two."""
    if cluster is not None and (accelerator is not None or count is not None):
        raise InputError("give either --cluster, or --accelerator with --count, not both")
    if cluster is not None:
        return get_cluster(cluster)
    if accelerator is None or count is None:
        raise InputError("missing cluster: give --cluster NAME, or --accelerator ID with --count N")
    if count <= 0:
        raise field_error("count", count, "a positive number of devices")
    return cluster_of(accelerator, count)


def run_estimate(
    *,
    model: str,
    plan: str,
    cluster: str | None = None,
    accelerator: str | None = None,
    count: int | None = None,
    seq_len: int | None = None,
    efficiency: Efficiency | EfficiencyTable | None = None,
) -> StepEstimate:
    """Estimate one training step from names; a plan that cannot run is a one-line :class:`InputError`."""
    shape = resolve_model(model)
    target = resolve_cluster(cluster, accelerator, count)
    parsed = parse_plan(plan, num_devices=target.num_devices, cores_per_device=target.accelerator.num_logical_cores)
    if seq_len is not None and seq_len <= 0:
        raise field_error("seq-len", seq_len, "a positive number of tokens")
    result = estimate(shape, parsed, target, efficiency=efficiency, seq_len=seq_len)
    if isinstance(result, Infeasible):
        unit = " (NeuronCore degrees)" if parsed.degrees_unit is DegreeUnit.CORE else ""
        raise InputError(f"plan{unit}: {result.reason}")
    return result
