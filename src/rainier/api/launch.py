"""Launch configurations from names and strings: ``rainier export`` and ``rainier import``.

``run_export`` resolves the model, parses the plan (or builds the serving layout) and writes the framework's text;
``run_import`` reads a launch file and, where the file leaves the model open, takes the one the caller names.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rainier.errors import InputError, field_error
from rainier.hardware import cluster_of
from rainier.launch import Framework, LaunchConfig, read_launch, write_launch
from rainier.limits import MAX_DEVICES
from rainier.parallel.plan import DegreeUnit, parse_plan
from rainier.serve.cost import WeightFormat, check_dp_attention, parse_kv_precision
from rainier.serve.estimate import ServeConfig
from rainier.serve.limits import check_int
from rainier.workload import resolve_model

__all__ = ["run_export", "run_import"]


# The catalogued chips each serving engine runs on, by vendor: TensorRT-LLM is NVIDIA's; SGLang serves GPUs (AMD
# ones too, which rainier does not catalogue); vLLM also has Neuron and TPU backends, so it is not restricted.
SERVING_VENDORS: dict[Framework, tuple[str, ...]] = {Framework.TRTLLM: ("nvidia",), Framework.SGLANG: ("nvidia",)}


def run_export(
    *,
    model: str,
    to: str,
    plan: str | None = None,
    accelerator: str | None = None,
    count: int | None = None,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    batch: int = 1,
    precision: str = "bf16",
    kv_precision: str | None = None,
    dp_attention: int = 1,
    two_batch_overlap: bool = False,
    eplb: bool = False,
) -> str:
    """The launch text of ``model`` for framework ``to``: a training ``plan``, or a serving layout (tp/pp/ep/batch;
    ``dp_attention`` and ``two_batch_overlap`` for sglang; ``eplb`` for vllm and sglang).

    ``accelerator`` (with ``count``) sets devices per node from its default system (a serving replica wider than
    a node gets sglang's multi-node flags), and ``count`` lets ``plan`` leave out dp.
    """
    framework = Framework.parse(to)
    shape = resolve_model(model)
    per_node = None
    if count is not None:
        check_int("count", count, 1, MAX_DEVICES, "devices")
    cores = 1
    if accelerator is not None:
        cluster = cluster_of(accelerator, count or 1)
        per_node = cluster.system.devices_per_server
        cores = cluster.accelerator.num_logical_cores
        runs_on = SERVING_VENDORS.get(framework)
        if runs_on is not None and cluster.accelerator.vendor.value not in runs_on:
            raise field_error("accelerator", accelerator, f"a chip {framework.value} serves on ({', '.join(runs_on)})")
    if framework.serving:
        if plan is not None:
            raise InputError(f"--plan is for training frameworks; {framework.value} takes --tp --pp --ep --batch")
        check_dp_attention(shape, tp=tp, ep=ep, dp_attention=dp_attention)
        kv = parse_kv_precision(kv_precision)
        layout = ServeConfig(
            tp=tp, pp=pp, ep=ep, dp_attention=dp_attention, batch=batch, weights=WeightFormat.parse(precision),
            kv_precision=kv, two_batch_overlap=two_batch_overlap, eplb=eplb,
        )  # fmt: skip
        return write_launch(framework, shape, serve=layout, model_name=model, devices_per_node=per_node)
    if plan is None:
        raise InputError(f"missing --plan: {framework.value} is a training framework")
    parsed = parse_plan(plan, num_devices=count, cores_per_device=cores)
    if count is not None:
        ranks = count * (cores if parsed.degrees_unit is DegreeUnit.CORE else 1)
        if parsed.num_ranks != ranks:
            raise field_error("plan", plan, f"tp*pp*dp*cp = {parsed.num_ranks}, not the {ranks} ranks of --count")
        if per_node is not None and parsed.degrees_unit is DegreeUnit.CORE:
            per_node *= cores
    return write_launch(framework, shape, plan=parsed, devices_per_node=per_node)


def run_import(
    path: str | Path, *, from_: str | None = None, devices: int | None = None, model: str | None = None
) -> LaunchConfig:
    """Read one launch file; ``devices`` gives the world size it leaves open, ``model`` the model it leaves open."""
    framework = Framework.parse(from_, "from") if from_ is not None else None
    if devices is not None:
        check_int("devices", devices, 1, MAX_DEVICES, "devices (NeuronCores for nxd)")
    config = read_launch(path, framework=framework, num_devices=devices)
    if model is not None:
        shape = resolve_model(model)
        if config.model is not None and config.model.seq_len != shape.seq_len:
            shape = shape.with_seq_len(config.model.seq_len)
        config = replace(config, model=shape, model_missing=(), notes=(*config.notes, f"model given: {model}"))
    return config
