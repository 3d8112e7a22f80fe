"""Why a step takes the time it does, in one sentence: the largest loss of the step breakdown, its cause, the remedy.

A report's answer card says the numbers and then why (issue 15): "62% pipeline bubble: 4 micro-batches for pp=8;
raise gbs or lower pp". Everything in a step's breakdown except ``compute`` is a loss against a step that only
computes; the largest loss, as a share of the step, is named with the plan's numbers that cause it and the usual
remedy (Megatron-LM's performance guide, Narayanan et al. 2021, sec. 3: bubble ~ (p-1)/m, tensor parallelism
inside a node, micro-batches hide the data-parallel all-reduce). A step where no loss reaches
``MINOR_LOSS_SHARE`` is called compute-bound. On a multi-site cluster the run's step also waits for the WAN
(``wan_s``), which competes with the breakdown's parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rainier.perf.result import StepEstimate
from rainier.serve.size import layout_label

MINOR_LOSS_SHARE = 0.10  # below a tenth of the step the largest loss is not worth a remedy: compute-bound
WAN = "wan"  # the loss name of the WAN between sites (not a breakdown part)


@dataclass(frozen=True, slots=True)
class StepLoss:
    """The largest loss of a step: its breakdown part, seconds, share of the step, and the sentence that says why."""

    part: str
    seconds: float
    share: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.part, "seconds": self.seconds, "share": self.share, "text": self.text}


def dominant_loss(estimate: StepEstimate, *, wan_s: float = 0.0) -> StepLoss:
    """The step's largest loss in words; ``wan_s`` adds a multi-site run's WAN time per step to the step."""
    parts = {k: v for k, v in estimate.breakdown.to_dict().items() if k != "compute"}
    if wan_s > 0:
        parts[WAN] = wan_s
    step = estimate.step_time_s + max(wan_s, 0.0)
    part = max(parts, key=lambda k: parts[k])
    seconds = parts[part]
    share = seconds / step if step > 0 else 0.0
    if share < MINOR_LOSS_SHARE:
        compute = estimate.breakdown.compute / step if step > 0 else 0.0
        text = (
            f"compute-bound: {compute:.0%} of the step computes; the largest loss is "
            f"{_NAMES.get(part, part)} at {share:.0%}"
        )
        return StepLoss(part, seconds, share, text)
    cause, remedy = _cause_and_remedy(part, estimate)
    return StepLoss(part, seconds, share, f"{share:.0%} {_NAMES.get(part, part)}: {cause}; {remedy}")


_NAMES = {
    "recompute": "recomputation",
    "tp_comm": "tensor-parallel communication",
    "cp_comm": "context-parallel communication",
    "ep_comm": "expert all-to-all",
    "pp_comm": "pipeline sends",
    "dp_comm_exposed": "exposed data-parallel gradient sync",
    "link_contention": "link contention",
    "pipeline_bubble": "pipeline bubble",
    "optimizer": "optimizer step",
    "other": "fixed per-step overhead",
    WAN: "WAN between sites",
}


def _cause_and_remedy(part: str, estimate: StepEstimate) -> tuple[str, str]:
    """What in the plan causes ``part``, and the usual way to shrink it."""
    plan = estimate.plan
    if part == "pipeline_bubble":
        interleave = f", vpp={plan.vpp_degree}" if plan.vpp_degree > 1 else ""
        cause = f"{plan.num_microbatches} micro-batches for pp={plan.pp_degree}{interleave}"
        return cause, "raise gbs or lower pp" + ("" if plan.vpp_degree > 1 else " (or interleave: vpp)")
    if part == "recompute":
        return f"recompute={plan.recompute.value}", "recompute less if memory allows, or shard more (zero, tp)"
    if part == "tp_comm":
        return f"tp={plan.tp_degree}", "lower tp, keep it inside the scale-up domain, or overlap it (tp_overlap)"
    if part == "cp_comm":
        return f"cp={plan.cp_degree}", "lower cp (attention exchange grows with it)"
    if part == "ep_comm":
        return f"ep={plan.ep_degree}", "keep ep inside the scale-up domain, overlap it (moe_a2a_overlap) or lower ep"
    if part == "pp_comm":
        return f"pp={plan.pp_degree}", "lower pp or raise mbs (fewer, larger sends)"
    if part == "dp_comm_exposed":
        return f"dp={plan.dp_degree}, zero={plan.zero_stage}", "raise gbs (more micro-batches hide the sync)"
    if part == "link_contention":
        link, load = estimate.busiest_link
        return f"busiest link {link} carries {load:.3g} s per step", "move a group off that link or lower its degree"
    if part == "optimizer":
        return f"zero={plan.zero_stage}", "shard the optimizer state (zero=1 or more)"
    if part == WAN:
        return "data parallelism across sites", "more WAN bandwidth, or fewer sites"
    return f"{plan.num_microbatches} micro-batches per step", "raise gbs to spread it over more tokens"


def binding_slo(option: dict[str, Any], slo: dict[str, Any]) -> str:
    """Which model's simulated p99 comes closest to its SLO in a sized serving fleet (``SizingResult`` options).

    The fleet's size is set by the model whose latency has the least headroom; the sentence names it, its p99
    against the target and the devices it takes. Empty when nothing was simulated or no SLO is set.
    """
    worst: tuple[float, str] | None = None
    for model in option["models"]:
        simulated = model.get("simulated") or {}
        for metric, label in (("ttft_p99_ms", "TTFT"), ("tpot_p99_ms", "TPOT"), ("e2e_p99_ms", "end-to-end")):
            target, value = slo.get(metric), simulated.get(metric)
            if not target or value is None:
                continue
            layout = model["layout"]
            text = (
                f"{model['traffic']['model']} binds: simulated {label} p99 {value:,.0f} ms against the "
                f"{target:,.0f} ms SLO ({value / target:.0%}) on {model['devices']:,} of {option['devices']:,} devices "
                f"({layout['accelerator']} {layout_label(layout)} {layout['precision']})"
            )
            if worst is None or value / target > worst[0]:
                worst = (value / target, text)
    return "" if worst is None else worst[1]
