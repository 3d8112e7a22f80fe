"""The pieces of a training step before they are put together: every pass, transfer and load per micro-batch.

``perf.batch.assemble_reference`` turns these into windows, the pipeline and the step (the closed form);
``sim.training`` builds its operation graph from the same pieces, so the fast model and the simulator time
every pass and every collective with one set of formulas and differ only in how they overlap and share links.
Shapes are per plan, per plan and pipeline rank row, or per plan (and row) and link class; times are seconds of
one micro-batch on one rank of the row at the efficiencies given, loads are seconds of each link class at full
rate (``perf.links``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from rainier.perf import kernel
from rainier.perf.compute import FLASH_BACKWARD_FACTOR, inverse_efficiencies
from rainier.perf.efficiency import Efficiency

if TYPE_CHECKING:
    from rainier.perf.batch import Prepared

FloatArray = NDArray[np.float64]
PASS_FIELDS = kernel.PASS_FIELDS

GRAD_BYTES = 2.0  # gradients reduced in 16 bits
PARAM_BYTES = 2.0  # 16-bit weights gathered (ZeRO-1 parameter all-gather, FSDP)
GRAD_ACCUM_BYTES_PER_PARAM = 10.0  # fp32 main-gradient accumulation: read 4 + read 2 + write 4 bytes
# Mixed-precision Adam step per local parameter (Megatron-LM's optimizer): read the fp32 main gradient twice
# (inf/NaN check, global norm) = 8; Adam reads master, gradient, m, v and writes master, m, v = 28; copy the
# fp32 master into the 16-bit model weight = 6 (Micikevicius et al. 2018; Rajbhandari et al. 2020 sec. 3).
OPTIMIZER_BYTES_PER_PARAM = 42.0


@dataclass(frozen=True, slots=True)
class WindowParts:
    """One batch of plans cut into the passes and transfers of a micro-batch (see the module docstring)."""

    m: FloatArray  # (plans) micro-batches per step
    pp: FloatArray  # (plans) pipeline degree
    chunks: FloatArray  # (plans) virtual chunks per rank
    schedule: FloatArray  # (plans) schedule code (perf.columns.SCHEDULE_CODES)
    full: NDArray[np.bool_]  # (plans) full recompute (of every layer, or of recompute_layers per chunk)
    recompute_share: FloatArray  # (plans x rows) share of the row's layers full recompute re-runs (0 without)
    pp_blocking: FloatArray  # (plans) pipeline sends block compute (bool)
    count: FloatArray  # (plans x rows) ranks each row stands for (0: padding)
    first_rank: FloatArray  # (plans x rows) lowest pipeline rank of the row
    nd: FloatArray  # (plans x rows) dense layers of the row's ranks
    nm: FloatArray  # (plans x rows) MoE layers of the row's ranks
    head: FloatArray  # (plans x rows) output head on the row (0/1)
    fwd_compute: FloatArray  # (plans x rows) forward compute of one micro-batch
    bwd_input: FloatArray  # (plans x rows) input-gradient compute
    bwd_weight: FloatArray  # (plans x rows) weight-gradient compute (with gradient accumulation)
    recompute_compute: FloatArray  # (plans x rows) recomputed forward
    recompute_comm: FloatArray  # (plans x rows) blocking collectives of the recomputed forward
    tp_fwd: FloatArray  # (plans x rows) exposed tensor-parallel time of a forward
    tp_bwd: FloatArray  # (plans x rows) exposed tensor-parallel time of a backward, per direction (twice counted)
    ep_fwd: FloatArray  # (plans x rows) exposed expert all-to-all time of a forward
    cp_fwd: FloatArray  # (plans x rows) exposed context-parallel time of a forward
    cp_bwd: FloatArray  # (plans x rows) exposed context-parallel time of a backward
    pp_fwd: FloatArray  # (plans x rows) blocking pipeline send of a micro-batch (per direction)
    tp_d_dur: FloatArray  # (plans) both TP collectives of one dense layer, alone
    tp_m_dur: FloatArray  # (plans) the attention's and shared experts' TP collectives of a MoE layer, alone
    etp_dur: FloatArray  # (plans) the expert-TP pair of a MoE layer
    ep_dur: FloatArray  # (plans) dispatch + combine of one MoE layer, alone
    cp_dur: FloatArray  # (plans) the forward KV ring of one layer, alone
    pp_dur: FloatArray  # (plans) the pipeline sends of one micro-batch per direction, alone
    tp_d_load: FloatArray  # (plans x links) link seconds of a dense layer's TP collectives
    tp_m_load: FloatArray  # (plans x links) link seconds of a MoE layer's TP collectives
    ep_load: FloatArray  # (plans x links) link seconds of a MoE layer's all-to-alls
    cp_load: FloatArray  # (plans x links) link seconds of a layer's forward KV ring
    pp_load: FloatArray  # (plans x links) link seconds of a micro-batch's sends per direction
    fwd_load: FloatArray  # (plans x rows x links) link seconds of a forward window
    bwd_load: FloatArray  # (plans x rows x links) link seconds of a backward window (ZeRO-2 reduce-scatter included)
    fsdp_dur: FloatArray  # (plans x rows) one FSDP gather of the row's weights, alone
    fsdp_load: FloatArray  # (plans x rows x links) its link seconds
    z2_dur: FloatArray  # (plans x rows) ZeRO-2 per-micro-batch gradient reduce-scatter, alone
    z2_load: FloatArray  # (plans x rows x links) its link seconds
    buckets: FloatArray  # (plans x rows) gradient/parameter buckets of the row (one per layer)
    reduce_dur: FloatArray  # (plans x rows) the step's data-parallel gradient reduction, alone
    reduce_load: FloatArray  # (plans x rows x links) its link seconds
    gather_dur: FloatArray  # (plans x rows) the step's parameter all-gather, alone
    gather_load: FloatArray  # (plans x rows x links) its link seconds
    optimizer_rows: FloatArray  # (plans x rows) the optimizer update
    fwd_c: FloatArray  # (plans x rows) compute of a forward window
    bwd_c: FloatArray  # (plans x rows) compute of a backward window (input + weight gradients + recompute)
    fwd_block: FloatArray  # (plans x rows) what blocks a forward window's compute
    bwd_block: FloatArray  # (plans x rows) what blocks a backward window's compute


def window_parts(prep: Prepared, eff: Efficiency) -> WindowParts:
    """The passes, transfers and loads of every plan of ``prep`` under ``eff``."""
    (p, lk), rows = prep.gathered(), prep.rows
    x = inverse_efficiencies(eff)
    seconds = (prep.passes @ x)[prep.pass_index]  # plans x layer kinds x PASS_FIELDS
    load = np.where(p["capacity"] > 0, p["capacity"], np.where(p["imbalance"] > 0, p["imbalance"], eff.moe_imbalance))

    def kind(k: int, name: str) -> FloatArray:
        value: FloatArray = seconds[:, k, PASS_FIELDS.index(name)]
        if name in ("forward", "input_grad", "weight_grad", "gemm"):
            value = value + load * seconds[:, k, PASS_FIELDS.index(f"expert_{name}")]
        return value

    f_d, b_d, w_d, g_d, a_d = (kind(0, q) for q in ("forward", "input_grad", "weight_grad", "gemm", "attention"))
    f_m, b_m, w_m, g_m, a_m = (kind(1, q) for q in ("forward", "input_grad", "weight_grad", "gemm", "attention"))
    e_d, e_m = kind(0, "elementwise"), kind(1, "elementwise")
    mlp_d, mlp_m = kind(0, "mlp_gemm"), kind(1, "mlp_gemm")
    expert_m = load * seconds[:, 1, PASS_FIELDS.index("expert_forward")]
    f_h, b_h, w_h = (kind(2, q) for q in ("forward", "input_grad", "weight_grad"))

    link_eff = np.where(lk["scale_out"] > 0, eff.scale_out, eff.scale_up)

    def duration(name: str, size: FloatArray) -> FloatArray:
        slope = p[f"{name}_up"] / eff.scale_up + p[f"{name}_out"] / eff.scale_out
        return np.where(size > 0, slope * size + p[f"{name}_icpt"], 0.0) * (slope > 0)

    def loads(name: str, size: FloatArray) -> FloatArray:
        return lk[name] / link_eff * size[:, None]

    tp, pp, cp, m, chunks = p["tp"], p["pp"], p["cp"], p["m"], p["chunks"]
    activation = p["activation"]
    # Tensor parallelism: two all-reduces (or all-gather + reduce-scatter pairs with SP) per dense layer; a MoE
    # layer keeps the attention's pair, the shared experts' one, and an expert-TP pair over the routed tokens.
    tp_d_dur = 2.0 * duration("tp_ar", activation)
    tp_d_load = 2.0 * loads("tp_ar", activation)
    routed = p["routed"] * load
    etp_on = p["etp_on"] > 0
    tp_m_dur = (1.0 + p["shared"]) * duration("tp_ar", activation)
    etp_dur = np.where(etp_on, duration("etp_ar", routed), 0.0)  # the token dispatcher's, never overlapped
    tp_m_load = (1.0 + p["shared"])[:, None] * loads("tp_ar", activation) + np.where(
        etp_on[:, None], loads("etp_ar", routed), 0.0
    )
    # Expert parallelism: dispatch and combine of the busiest rank's share; node-limited routing trims the
    # scale-out part.
    ep_bytes = p["ep_bytes"] * load
    ep_on = p["ep_on"] > 0
    dedup = p["ep_dedup"]
    trimmed = p["ep_a2a_out"] / eff.scale_out * ep_bytes * (1.0 - dedup)
    ep_dur = np.where(ep_on, 2.0 * (duration("ep_a2a", ep_bytes) - trimmed), 0.0)
    ep_scale = 1.0 - lk["scale_out"] * (1.0 - dedup[:, None])
    ep_load = np.where(ep_on[:, None], 2.0 * loads("ep_a2a", ep_bytes) * ep_scale, 0.0)
    # Context parallelism: cp-1 ring steps of the local keys and values per forward, twice that backward.
    cp_on = p["cp_on"] > 0
    cp_dur = np.where(cp_on, (cp - 1.0) * duration("cp_step", p["kv_bytes"]), 0.0)
    cp_load = np.where(cp_on[:, None], (cp - 1.0)[:, None] * loads("cp_step", p["kv_bytes"]), 0.0)
    # Pipeline: per chunk boundary, the send and (without SP) the receivers' all-gather over the TP group.
    pp_on = p["pp_on"] > 0
    sp = p["sp"] > 0
    regather = np.where(sp, 0.0, duration("tp_rs", activation))
    regather_load = np.where(sp[:, None], 0.0, loads("tp_rs", activation))
    pp_dur = np.where(pp_on, chunks * (duration("pp_p2p", p["pp_bytes"]) + regather), 0.0)
    pp_load = np.where(pp_on[:, None], chunks[:, None] * (loads("pp_p2p", p["pp_bytes"]) + regather_load), 0.0)

    def col(v: NDArray[Any]) -> NDArray[Any]:
        return v[:, None]

    nd, nm, head, count, first_rank = (rows[k] for k in ("num_dense", "num_moe", "head", "count", "first_rank"))
    params_dense, params_expert = rows["params_dense"], rows["params_expert"]
    layers = nd + nm
    hbm_rate = p["hbm_bw"] * eff.memory
    full, selective, lora = p["full"] > 0, p["selective"] > 0, p["lora"] > 0
    overhead = eff.layer_overhead_s * layers
    fwd_compute = nd * col(f_d) + nm * col(f_m) + head * col(f_h) + overhead
    # fp32 main-gradient accumulation per micro-batch: the whole stage's gradients under ZeRO-0/1 (Megatron's
    # main_grad buffer), only the rank's shard when gradients are reduce-scattered every micro-batch (ZeRO-2/3).
    grad_shard = np.where(col(p["zero"] >= 2), col(p["dshard"]), 1.0)
    accumulate = np.where(
        col(lora), 0.0, GRAD_ACCUM_BYTES_PER_PARAM * (params_dense + params_expert) / grad_shard / col(hbm_rate)
    )
    bwd_input = nd * col(b_d) + nm * col(b_m) + head * col(b_h) + overhead
    bwd_weight = nd * col(w_d) + nm * col(w_m) + head * col(w_h) + accumulate
    attention_fwd = nd * col(a_d) + nm * col(a_m)
    # Selective recompute repeats the listed modules' forward (Megatron --recompute-modules; default core_attn):
    # the attention core; the norms (~40% of the elementwise traffic), the MoE activation (~30%); the dense MLP or
    # shared experts; the routed experts; MLA's up projections (~10% of the layer's GEMMs).
    light = (
        col(p["rc_core_attn"]) * attention_fwd
        + col(p["rc_layernorm"]) * 0.4 * (nd * col(e_d) + nm * col(e_m))
        + col(p["rc_moe_act"]) * 0.3 * nm * col(e_m)
        + col(np.maximum(p["rc_mlp"], p["rc_shared_experts"])) * (nd * col(mlp_d) + nm * col(mlp_m))
        + col(p["rc_moe"]) * nm * col(expert_m)
        + col(p["rc_mla_up_proj"]) * 0.1 * (nd * col(g_d) + nm * col(g_m))
    )
    share = rows["recompute_share"]
    recompute_compute = np.where(
        col(full), share * (fwd_compute - head * col(f_h)), np.where(col(selective), light, 0.0)
    )

    # What blocks each window (per layer, times the rank's layers).
    tp_overlap = p["tp_overlap"] > 0
    tp_d_exposed = np.where(tp_overlap, np.maximum(tp_d_dur - g_d, tp_d_dur / tp), tp_d_dur)
    # Userbuffer overlap (Megatron --tp-comm-overlap) covers the GEMMs of attention and dense MLPs; the expert
    # layer's all-gather / reduce-scatter of routed tokens belongs to the token dispatcher.
    tp_m_exposed = np.where(tp_overlap, np.maximum(tp_m_dur - g_m, tp_m_dur / tp), tp_m_dur) + etp_dur
    tp_fwd = nd * col(tp_d_exposed) + nm * col(tp_m_exposed)
    # Backward: Megatron's linear layers launch the column-parallel layers' collectives asynchronously and run
    # the weight-gradient GEMM meanwhile (LinearWithGradAccumulationAndAsyncCommunication; Korthikanti et al.
    # 2022 sec. 4.2.2), so half of the backward's TP traffic hides behind the weight gradients by default.
    half_d, half_m = 0.5 * tp_d_dur, 0.5 * tp_m_dur
    tp_d_back = np.where(tp_overlap, tp_d_exposed, half_d + np.maximum(half_d - w_d, 0.0))
    tp_m_back = np.where(tp_overlap, tp_m_exposed - etp_dur, half_m + np.maximum(half_m - w_m, 0.0)) + etp_dur
    tp_bwd = nd * col(tp_d_back) + nm * col(tp_m_back)
    ep_exposed = np.where(p["a2a_overlap"] > 0, np.maximum(ep_dur - f_m, 0.0), ep_dur)
    ep_fwd = nm * col(ep_exposed)
    cp_fwd = nd * col(np.maximum(cp_dur - a_d, 0.0)) + nm * col(np.maximum(cp_dur - a_m, 0.0))
    cp_bwd = nd * col(np.maximum(2 * cp_dur - FLASH_BACKWARD_FACTOR * a_d, 0.0)) + nm * col(
        np.maximum(2 * cp_dur - FLASH_BACKWARD_FACTOR * a_m, 0.0)
    )
    pp_fwd = np.where(col(p["pp_blocking"] > 0), col(pp_dur), 0.0) * (count > 0)
    recompute_comm = np.where(col(full), share * (tp_fwd + ep_fwd + cp_fwd), 0.0)

    layer_load = nd[..., None] * tp_d_load[:, None, :] + nm[..., None] * tp_m_load[:, None, :]
    layer_load = layer_load + nm[..., None] * ep_load[:, None, :] + layers[..., None] * cp_load[:, None, :]
    fwd_load = layer_load + pp_load[:, None, :]
    again = np.where(full[:, None, None], share[..., None] * layer_load, 0.0)  # the recomputed forward's transfers
    bwd_load = 2.0 * layer_load + again + pp_load[:, None, :]

    def rowwise(name: str, size: FloatArray) -> tuple[FloatArray, FloatArray]:
        slope = col(p[f"{name}_up"] / eff.scale_up + p[f"{name}_out"] / eff.scale_out)
        dur = np.where(size > 0, slope * size + col(p[f"{name}_icpt"]), 0.0) * (slope > 0)
        return dur, (lk[name] / link_eff)[:, None, :] * size[..., None]

    # FSDP (ZeRO-3): every micro-batch gathers the rank's weights for the forward and again for the backward,
    # and reduce-scatters the gradients in the backward, each behind the window's compute.
    fsdp = p["fsdp"] > 0
    fsdp_dur_d, fsdp_load_d = rowwise("dp_rs", PARAM_BYTES * params_dense)
    fsdp_dur_e, fsdp_load_e = rowwise("edp_rs", PARAM_BYTES * params_expert)
    fsdp_dur = np.where(col(fsdp), fsdp_dur_d + fsdp_dur_e, 0.0)
    fsdp_load = np.where(fsdp[:, None, None], fsdp_load_d + fsdp_load_e, 0.0)
    buckets = np.maximum(layers, 1.0)

    # ZeRO-2 keeps only its shard of the gradients, so every micro-batch's gradients are reduce-scattered during
    # its backward (Rajbhandari et al. 2020 sec. 5.2; DeepSpeed reduces at every micro-step), not once per step
    # as a full local gradient buffer allows (ZeRO-1, Megatron's distributed optimizer).
    zero2 = (p["zero"] == 2) & ~lora & ~fsdp
    z2_d, z2_load_d = rowwise("dp_rs", GRAD_BYTES * params_dense)
    z2_e, z2_load_e = rowwise("edp_rs", GRAD_BYTES * params_expert)
    z2_dur = np.where(col(zero2), z2_d + z2_e, 0.0)
    z2_load = np.where(zero2[:, None, None], z2_load_d + z2_load_e, 0.0)
    bwd_load = bwd_load + z2_load

    fwd_block = tp_fwd + ep_fwd + cp_fwd + pp_fwd
    bwd_block = 2.0 * tp_bwd + 2.0 * ep_fwd + cp_bwd + pp_fwd + recompute_comm
    fwd_c = fwd_compute
    bwd_c = bwd_input + bwd_weight + recompute_compute

    # Data parallelism: gradient reduction behind each rank's last backward, parameter gather behind its first
    # forward; a rank ahead in the pipeline drain has that much slack.
    zero0 = p["zero"] == 0
    ar_d, ar_load_d = rowwise("dp_ar", GRAD_BYTES * params_dense)
    ar_e, ar_load_e = rowwise("edp_ar", GRAD_BYTES * params_expert)
    rs_d, rs_load_d = rowwise("dp_rs", GRAD_BYTES * params_dense)
    rs_e, rs_load_e = rowwise("edp_rs", GRAD_BYTES * params_expert)
    sync = col(~lora & ~fsdp)  # FSDP reduce-scatters inside every backward window instead
    reduce_on = sync & ~col(zero2)  # ZeRO-2 reduced each micro-batch's gradients in its own backward
    reduce_dur = np.where(reduce_on, np.where(col(zero0), ar_d + ar_e, rs_d + rs_e), 0.0)
    reduce_load = np.where(
        reduce_on[..., None], np.where(zero0[:, None, None], ar_load_d + ar_load_e, rs_load_d + rs_load_e), 0.0
    )
    gather_on = sync & ~col(zero0)
    gather_dur = np.where(gather_on, (rs_d + rs_e) * PARAM_BYTES / GRAD_BYTES, 0.0)
    gather_load = np.where(gather_on[..., None], (rs_load_d + rs_load_e) * PARAM_BYTES / GRAD_BYTES, 0.0)
    # HSDP: ZeRO's collectives above ran over the shard groups; the gradient shard is then all-reduced across the
    # dp/s replicas once per step (Zhao et al. 2023 sec. 3.2.2; ZeRO++ hpZ, Wang et al. 2023), behind the last
    # backward like the reduction it completes.
    hsdp = col((p["hsdp"] > 0) & ~lora)
    rep_d, rep_load_d = rowwise("dpr_ar", GRAD_BYTES * params_dense / col(p["dshard"]))
    rep_e, rep_load_e = rowwise("edpr_ar", GRAD_BYTES * params_expert / col(p["eshard"]))
    reduce_dur = reduce_dur + np.where(hsdp, rep_d + rep_e, 0.0)
    reduce_load = reduce_load + np.where(hsdp[..., None], rep_load_d + rep_load_e, 0.0)
    # Optimizer: the slowest rank's update of its (ZeRO-sharded) parameters.
    sharded = col(p["zero"] >= 1)
    opt_params = params_dense / np.where(sharded, col(p["dshard"]), 1.0) + params_expert / np.where(
        sharded, col(p["eshard"]), 1.0
    )
    optimizer_rows = np.where(col(lora), 0.0, OPTIMIZER_BYTES_PER_PARAM * opt_params / col(hbm_rate))
    schedule, pp_blocking = p["schedule"], p["pp_blocking"]
    return WindowParts(
        m=m,
        pp=pp,
        chunks=chunks,
        schedule=schedule,
        full=full,
        recompute_share=share,
        pp_blocking=pp_blocking,
        count=count,
        first_rank=first_rank,
        nd=nd,
        nm=nm,
        head=head,
        fwd_compute=fwd_compute,
        bwd_input=bwd_input,
        bwd_weight=bwd_weight,
        recompute_compute=recompute_compute,
        recompute_comm=recompute_comm,
        tp_fwd=tp_fwd,
        tp_bwd=tp_bwd,
        ep_fwd=ep_fwd,
        cp_fwd=cp_fwd,
        cp_bwd=cp_bwd,
        pp_fwd=pp_fwd,
        tp_d_dur=tp_d_dur,
        tp_m_dur=tp_m_dur,
        etp_dur=etp_dur,
        ep_dur=ep_dur,
        cp_dur=cp_dur,
        pp_dur=pp_dur,
        tp_d_load=tp_d_load,
        tp_m_load=tp_m_load,
        ep_load=ep_load,
        cp_load=cp_load,
        pp_load=pp_load,
        fwd_load=fwd_load,
        bwd_load=bwd_load,
        fsdp_dur=fsdp_dur,
        fsdp_load=fsdp_load,
        z2_dur=z2_dur,
        z2_load=z2_load,
        buckets=buckets,
        reduce_dur=reduce_dur,
        reduce_load=reduce_load,
        gather_dur=gather_dur,
        gather_load=gather_load,
        optimizer_rows=optimizer_rows,
        fwd_c=fwd_c,
        bwd_c=bwd_c,
        fwd_block=fwd_block,
        bwd_block=bwd_block,
    )
