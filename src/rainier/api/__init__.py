"""The Python API: the same operations as the CLI, from names and strings to typed results.

``rainier.api.run_estimate(model="llama-3-70b", accelerator="h100-sxm", count=64, plan="tp=8,pp=2,gbs=512")``
returns a ``StepEstimate`` (``.to_dict()`` gives the CLI's JSON). Inputs are resolved here once, so the CLI and
scripts share one path and one set of error messages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

from rainier.errors import InputError, field_error
from rainier.fleet.power import IDLE_TOLERANCE, usable_systems
from rainier.hardware import Cluster, cluster_of, get_cluster, resize_cluster
from rainier.limits import MAX_PRICE_PER_DEVICE_HOUR, check_float_range
from rainier.parallel.batch_target import parse_batch_target
from rainier.parallel.plan import DegreeUnit, Infeasible, Plan, parse_plan
from rainier.perf.efficiency import Efficiency, EfficiencyTable
from rainier.perf.result import StepEstimate
from rainier.perf.step import estimate
from rainier.search.engine import search
from rainier.search.result import Objective, SearchResult
from rainier.search.scaling import SizePoint, parse_counts, scale
from rainier.search.space import load_space
from rainier.search.verify import verify_top
from rainier.sim.training import SimulatedStep, simulate
from rainier.workload import TransformerShape, resolve_model

R = TypeVar("R")


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


def _packed(shape: TransformerShape, document_len: int | None) -> TransformerShape:
    if document_len is None:
        return shape
    if isinstance(document_len, bool) or not isinstance(document_len, int) or document_len <= 0:
        raise field_error("document-len", document_len, "a positive number of tokens per packed document")
    return shape.with_documents(document_len)


def _step_inputs(
    model: str,
    plan: str,
    cluster: str | None,
    accelerator: str | None,
    count: int | None,
    seq_len: int | None,
    document_len: int | None,
) -> tuple[TransformerShape, Cluster, Plan]:
    """The model, cluster and parsed plan of one step (``train estimate`` and ``train simulate``)."""
    shape = _packed(resolve_model(model), document_len)
    target = resolve_cluster(cluster, accelerator, count)
    parsed = parse_plan(plan, num_devices=target.num_devices, cores_per_device=target.accelerator.num_logical_cores)
    if seq_len is not None and seq_len <= 0:
        raise field_error("seq-len", seq_len, "a positive number of tokens")
    return shape, target, parsed


def _feasible(result: R | Infeasible, parsed: Plan) -> R:
    """The result, or the plan's reason for not running as a one-line :class:`InputError`."""
    if isinstance(result, Infeasible):
        unit = " (NeuronCore degrees)" if parsed.degrees_unit is DegreeUnit.CORE else ""
        raise InputError(f"plan{unit}: {result.reason}")
    return result


def run_estimate(
    *,
    model: str,
    plan: str,
    cluster: str | None = None,
    accelerator: str | None = None,
    count: int | None = None,
    seq_len: int | None = None,
    efficiency: Efficiency | EfficiencyTable | None = None,
    document_len: int | None = None,
) -> StepEstimate:
    """Estimate one training step from names; a plan that cannot run is a one-line :class:`InputError`.

    ``document_len``: the sequences hold packed documents of this many tokens, each attending only to itself
    (:attr:`rainier.workload.TransformerShape.document_len`).
    """
    shape, target, parsed = _step_inputs(model, plan, cluster, accelerator, count, seq_len, document_len)
    return _feasible(estimate(shape, parsed, target, efficiency=efficiency, seq_len=seq_len), parsed)


def run_simulate(
    *,
    model: str,
    plan: str,
    cluster: str | None = None,
    accelerator: str | None = None,
    count: int | None = None,
    seq_len: int | None = None,
    efficiency: Efficiency | EfficiencyTable | None = None,
    sharing: bool = True,
    trace: bool = False,
    document_len: int | None = None,
) -> SimulatedStep:
    """Simulate one training step from names (``rainier train simulate``); the inputs of :func:`run_estimate`.

    ``sharing=False`` lets every transfer run at its own speed; ``trace`` records link use over time for
    ``--trace``.
    """
    shape, target, parsed = _step_inputs(model, plan, cluster, accelerator, count, seq_len, document_len)
    result = simulate(
        shape, parsed, target, efficiency=efficiency, seq_len=seq_len, sharing=sharing, record_links=trace
    )
    return _feasible(result, parsed)


def run_search(
    *,
    model: str,
    gbs: int | str | None = None,
    gbs_tolerance: float | None = None,
    batch_tokens: float | None = None,
    cluster: str | None = None,
    accelerator: str | None = None,
    count: int | None = None,
    seq_len: int | None = None,
    objective: str = "time",
    top: int = 10,
    space: str | None = None,
    price: float | None = None,
    efficiency: Efficiency | EfficiencyTable | None = None,
    progress: Callable[[int, int], None] | None = None,
    document_len: int | None = None,
    verify: int | None = None,
) -> SearchResult:
    """Every valid plan of a model on a cluster, ranked (``rainier train search``); with ``verify=K`` the best
    ``K`` re-ranked by simulation (``result.verification``).

    ``gbs`` is exact (``2520``) or a target (``"~2520"``, within ``gbs_tolerance``, default 5%); ``batch_tokens``
    is a target in tokens instead (:func:`rainier.parallel.batch_target.parse_batch_target`). ``document_len`` as
    in :func:`run_estimate`.
    """
    shape = _packed(resolve_model(model), document_len)
    target = resolve_cluster(cluster, accelerator, count)
    if seq_len is not None and seq_len <= 0:
        raise field_error("seq-len", seq_len, "a positive number of tokens")
    batch = parse_batch_target(
        gbs, seq_len=seq_len or shape.seq_len, tolerance=gbs_tolerance, batch_tokens=batch_tokens
    )
    if verify is not None and verify < 1:
        raise field_error("verify", verify, "a number of plans >= 1")
    searched = load_space(space) if space else None

    def on(devices: Cluster) -> SearchResult:
        return search(
            shape,
            devices,
            gbs=batch,
            seq_len=seq_len,
            objective=parse_objective(objective),
            top_k=max(top, verify or 0),
            space=searched,
            efficiency=efficiency,
            price=_price(price),
            progress=progress,
        )

    try:
        result = on(target)
    except InputError as refused:
        # An exact batch no dp x mbs of the whole cluster divides (2,520 sequences on 5,128 A100: every dp is a
        # multiple of the prime 641) may run on a few systems fewer, as an expert would (fleet.power's rule).
        fewer = usable_systems(target.num_systems)
        if not batch.exact or "must divide by dp*mbs" not in str(refused) or fewer == target.num_systems:
            raise
        smaller = resize_cluster(target, fewer)
        try:
            result = on(smaller)
        except InputError:
            raise refused from None
        idle = target.num_devices - smaller.num_devices
        note = (
            f"using {smaller.num_devices:,} of {target.num_devices:,} devices ({idle:,} idle): no plan splits gbs "
            f"{batch.sequences:,} over all {target.num_devices:,} (at most {IDLE_TOLERANCE:.0%} may idle)"
        )
        result = dataclasses.replace(result, notes=(note, *result.notes))
        target = smaller
    if verify is None:
        return result
    checked = verify_top(shape, target, result, verify, efficiency=efficiency)
    return dataclasses.replace(result, top=result.top[:top], verification=checked)


def run_scale(
    *,
    model: str,
    accelerator: str,
    counts: str,
    gbs: int | None = None,
    gbs_per_device: float | None = None,
    seq_len: int | None = None,
    objective: str = "time",
    space: str | None = None,
    price: float | None = None,
    efficiency: Efficiency | EfficiencyTable | None = None,
    progress: Callable[[int, int], None] | None = None,
    document_len: int | None = None,
) -> list[SizePoint]:
    """Best plan at each device count (``rainier train scale``, ``train search --pareto``)."""
    return scale(
        _packed(resolve_model(model), document_len),
        accelerator,
        parse_counts(counts),
        gbs=gbs,
        gbs_per_device=gbs_per_device,
        seq_len=seq_len,
        objective=parse_objective(objective),
        space=load_space(space) if space else None,
        efficiency=efficiency,
        price=_price(price),
        progress=progress,
    )


def parse_int_option(name: str, text: str | None) -> int | None:
    """A whole-number option given as text (``--gbs 2520``); ``None`` stays ``None``."""
    if text is None:
        return None
    digits = text.strip().replace(",", "").replace("_", "")
    if not digits.isdigit() or len(digits) > 15:
        raise field_error(name, text, "a whole number")
    return int(digits)


def parse_objective(text: str) -> Objective:
    try:
        return Objective(text.strip().lower())
    except ValueError:
        raise field_error("objective", text, "time, cost or energy") from None


def _price(price: float | None) -> float | None:
    if price is None:
        return None
    return check_float_range("price", price, 0.0, MAX_PRICE_PER_DEVICE_HOUR, "a price in USD per device-hour")
