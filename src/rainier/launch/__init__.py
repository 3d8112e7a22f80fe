"""Launch configurations out and recipes in: a model and plan as the arguments or YAML a framework takes, and back.

``write_launch`` turns a model and a training :class:`~rainier.parallel.Plan` into Megatron-LM arguments, a NeMo
recipe, a Megatron-Bridge ConfigContainer, a MaxText config or an NxD config, or a serving layout into ``vllm serve``
arguments or TensorRT-LLM LLM API options; a plan field the framework cannot express is refused with one line
naming it. ``read_launch`` reads such a file (autodetecting the framework) into a :class:`LaunchConfig`: model, plan
or layout, the cluster where the file states it, and what was assumed or ignored. For every plan a framework can
express, ``read_launch(write_launch(plan)).plan == plan`` (property-tested per framework).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rainier.catalog.loader import parse_yaml
from rainier.errors import InputError, clip_path
from rainier.launch.argv import flags_from_mapping, read_flags
from rainier.launch.bridge import is_bridge, read_bridge, write_bridge
from rainier.launch.config import Framework, LaunchConfig, StatedCluster
from rainier.launch.maxtext import read_maxtext, write_maxtext
from rainier.launch.megatron import read_megatron, write_megatron
from rainier.launch.nemo import read_nemo, write_nemo
from rainier.launch.nxd import read_nxd, write_nxd
from rainier.launch.serving import (
    read_sglang,
    read_trtllm_command,
    read_trtllm_options,
    read_vllm,
    write_sglang,
    write_trtllm,
    write_vllm,
)
from rainier.parallel.plan import Plan
from rainier.serve.estimate import ServeConfig
from rainier.workload.shape import TransformerShape

__all__ = ["Framework", "LaunchConfig", "StatedCluster", "detect_framework", "read_launch", "write_launch"]

MAX_LAUNCH_BYTES = 1 * 2**20  # launch scripts and recipes are a few KiB
_TRAINING_WRITERS = {
    Framework.MEGATRON: write_megatron,
    Framework.NEMO: write_nemo,
    Framework.MAXTEXT: write_maxtext,
    Framework.NXD: write_nxd,
    Framework.BRIDGE: write_bridge,
}
_MAXTEXT_KEYS = ("per_device_batch_size", "base_emb_dim", "remat_policy", "base_num_decoder_layers")
_TRTLLM_KEYS = ("tensor_parallel_size", "moe_expert_parallel_size", "kv_cache_config", "max_batch_size")


def write_launch(
    framework: Framework,
    shape: TransformerShape,
    *,
    plan: Plan | None = None,
    serve: ServeConfig | None = None,
    model_name: str | None = None,
    devices_per_node: int | None = None,
) -> str:
    """The framework's launch text for a training ``plan`` or a serving layout ``serve``."""
    if framework.serving:
        if serve is None:
            raise InputError(f"to={framework.value} is a serving framework: give a serving layout, not --plan")
        name = model_name or shape.name
        if framework is Framework.SGLANG:
            return write_sglang(name, serve, devices_per_node)
        return write_vllm(name, serve) if framework is Framework.VLLM else write_trtllm(name, serve)
    if plan is None:
        raise InputError(f"to={framework.value} is a training framework: give --plan")
    return _TRAINING_WRITERS[framework](shape, plan, devices_per_node=devices_per_node)


def detect_framework(text: str, data: Any) -> Framework:
    """Which framework a launch file is for, from its keys or words; an unknown one is a one-line error."""
    if isinstance(data, dict):
        keys = set(data)
        if "distributed_strategy" in keys:
            return Framework.NXD
        if any(k.startswith(("ici_", "dcn_")) for k in map(str, keys)) or keys & set(_MAXTEXT_KEYS):
            return Framework.MAXTEXT
        if keys & set(_TRTLLM_KEYS):
            return Framework.TRTLLM
        if is_bridge(data):
            return Framework.BRIDGE
        if isinstance(data.get("model"), dict) or isinstance(data.get("trainer"), dict):
            return Framework.NEMO
        if any(str(k).startswith("--") for k in keys) or isinstance(data.get("MODEL_ARGS"), dict):
            return Framework.MEGATRON
    words = text.split()
    if "trtllm-serve" in words:
        return Framework.TRTLLM
    if any(w.startswith(("sglang.launch_server", "sglang_router.launch_server")) for w in words) or (
        "sglang" in words and "serve" in words  # the newer `sglang serve` entry point
    ):
        return Framework.SGLANG
    if "vllm" in words or "--tensor-parallel-size" in words:
        return Framework.VLLM
    if any(w in words for w in ("--tensor-model-parallel-size", "--num-layers", "--micro-batch-size")):
        return Framework.MEGATRON
    raise InputError(
        "launch file: no framework recognised (megatron arguments, a nemo/bridge/maxtext/nxd/trtllm YAML, vllm serve, "
        "trtllm-serve or sglang.launch_server arguments); give --from"
    )


def read_launch(
    path: Path | str, *, framework: Framework | None = None, num_devices: int | None = None
) -> LaunchConfig:
    """Read one launch file; ``num_devices`` overrides (or supplies) the world size the file states."""
    where = clip_path(path)
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_LAUNCH_BYTES:
            raise InputError(f"{where}: {size:,} bytes; a launch file is at most {MAX_LAUNCH_BYTES:,}")
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: cannot read ({exc.__class__.__name__})") from None
    data: Any = None
    if file.suffix.lower() in (".yaml", ".yml", ".json"):
        data = parse_yaml(text, where)
        if not isinstance(data, dict):
            raise InputError(f"{where}: not a YAML mapping")
    chosen = framework or detect_framework(text, data)
    if chosen is Framework.MEGATRON:
        if isinstance(data, dict):
            block = data.get("MODEL_ARGS", data)
            if not isinstance(block, dict):
                raise InputError(f"{where}: MODEL_ARGS is not a mapping of --flags")
            return read_megatron(flags_from_mapping(block, where), where, num_devices=num_devices)
        return read_megatron(read_flags(text, where), where, num_devices=num_devices)
    if chosen in (Framework.NEMO, Framework.MAXTEXT, Framework.NXD, Framework.BRIDGE):
        if not isinstance(data, dict):
            raise InputError(f"{where}: a {chosen.value} config is YAML (.yaml or .yml)")
        reader = {
            Framework.NEMO: read_nemo,
            Framework.MAXTEXT: read_maxtext,
            Framework.NXD: read_nxd,
            Framework.BRIDGE: read_bridge,
        }[chosen]
        return reader(data, where, num_devices=num_devices)
    if chosen is Framework.VLLM:
        return read_vllm(read_flags(text, where), where)
    if chosen is Framework.SGLANG:
        return read_sglang(read_flags(text, where), where)
    if isinstance(data, dict):
        return read_trtllm_options(data, where)
    return read_trtllm_command(read_flags(text, where), where)
