"""Plain lines for an imported launch configuration (``rainier import``)."""

from __future__ import annotations

from typing import Any


def launch_lines(config: Any) -> list[str]:
    """Framework, model, plan (in ``--plan`` syntax) or serving layout, cluster, then notes and ignored keys."""
    doc = config.to_dict()
    lines = [f"framework: {doc['framework']}"]
    if doc["model"] is not None:
        stated = f" (file: {doc['model_name']})" if doc["model_name"] not in (None, doc["model"]["name"]) else ""
        lines.append(f"model: {doc['model']['name']}{stated}, seq_len {doc['model']['seq_len']}")
    else:
        missing = ", ".join(doc["model_missing"])
        named = f"{doc['model_name']}; " if doc["model_name"] else ""
        lines.append(f"model: not fully stated ({named}missing {missing}); give --model")
    if doc["plan"] is not None:
        lines.append(f"plan: {doc['plan']}")
    if doc["serve"] is not None:
        s = doc["serve"]
        wide = f" --dp-attention {s['dp_attention']}" if s.get("dp_attention", 1) > 1 else ""
        wide += " --two-batch-overlap" if s.get("two_batch_overlap") else ""
        wide += " --eplb" if s.get("eplb") else ""
        lines.append(
            f"serving: --tp {s['tp']} --pp {s['pp']} --ep {s['ep']}{wide} --batch {s['batch']} "
            f"--precision {s['precision']} --kv-precision {s['kv_precision']}"
        )
    if doc["cluster"] is not None:
        c = doc["cluster"]
        unit = "NeuronCores" if c["unit"] == "core" else "devices"
        lines.append(f"cluster: {c['num_nodes']} nodes x {c['devices_per_node']} = {c['num_devices']} {unit}")
    lines += [f"note: {n}" for n in doc["notes"]]
    if doc["ignored"]:
        lines.append(f"ignored ({len(doc['ignored'])}): {', '.join(doc['ignored'])}")
    return lines
