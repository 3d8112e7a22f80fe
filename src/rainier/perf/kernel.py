"""The assembly of prepared plans as one compiled loop (numba): the same arithmetic as
``perf.batch.assemble_reference``, one plan at a time.

The numpy reference allocates a temporary array for each of its ~400 operations; over a million plans that
is memory traffic, not arithmetic. Here each plan's windows, pipeline and link loads are computed in registers
and small scratch arrays, which is what lets a search time a million plans a second on one core. The numpy
path stays as the reference (``tests/perf/test_kernel.py`` checks that both agree), as the fallback where numba
is not installed, and for batches under :data:`COMPILED_MIN_PLANS` (a single estimate does not pay numba's
import and cache load, about half a second). numba is imported on the first compiled call, not with the module.
Inputs are the columns of :class:`~rainier.perf.batch.Prepared` in the orders of :data:`PLAN_FIELDS`,
:data:`COMM_FIELDS` and :data:`ROW_FIELDS`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rainier.parallel.plan import Schedule
from rainier.perf.columns import SCHEDULE_CODES
from rainier.perf.compute import FLASH_BACKWARD_FACTOR

AVAILABLE = importlib.util.find_spec("numba") is not None
COMPILED_MIN_PLANS = 64  # smaller batches take the numpy path

PLAN_FIELDS = (
    "capacity",
    "imbalance",
    "tp",
    "pp",
    "cp",
    "dp",
    "edp",
    "m",
    "chunks",
    "schedule",
    "activation",
    "routed",
    "shared",
    "etp_on",
    "ep_bytes",
    "ep_on",
    "ep_dedup",
    "cp_on",
    "kv_bytes",
    "pp_on",
    "sp",
    "pp_bytes",
    "hbm_bw",
    "full",
    "selective",
    "lora",
    "zero",
    "fsdp",
    "tp_overlap",
    "a2a_overlap",
    "pp_blocking",
    "rc_core_attn",
    "rc_layernorm",
    "rc_moe_act",
    "rc_mlp",
    "rc_shared_experts",
    "rc_moe",
    "rc_mla_up_proj",
    "dshard",
    "eshard",
    "hsdp",
)
# numba reads module globals as compile-time constants: one plain int per field, in PLAN_FIELDS order.
(
    CAPACITY,
    IMBALANCE,
    TP,
    PP,
    CP,
    DP,
    EDP,
    M,
    CHUNKS,
    SCHEDULE,
    ACTIVATION,
    ROUTED,
    SHARED,
    ETP_ON,
    EP_BYTES,
    EP_ON,
    EP_DEDUP,
    CP_ON,
    KV_BYTES,
    PP_ON,
    SP,
    PP_BYTES,
    HBM_BW,
    FULL,
    SELECTIVE,
    LORA,
    ZERO,
    FSDP,
    TP_OVERLAP,
    A2A_OVERLAP,
    PP_BLOCKING,
    RC_CORE_ATTN,
    RC_LAYERNORM,
    RC_MOE_ACT,
    RC_MLP,
    RC_SHARED,
    RC_MOE,
    RC_MLA,
    DSHARD,
    ESHARD,
    HSDP,
) = range(len(PLAN_FIELDS))
# Collectives, each with a slope (scale-up, scale-out seconds per byte at full rate) and an intercept.
# dp_rs / edp_rs run over the ZeRO shard groups; dpr_ar / edpr_ar are HSDP's all-reduces across the replicas.
COMM_FIELDS = (
    "tp_ar",
    "tp_rs",
    "etp_ar",
    "cp_step",
    "ep_a2a",
    "pp_p2p",
    "dp_ar",
    "dp_rs",
    "edp_ar",
    "edp_rs",
    "dpr_ar",
    "edpr_ar",
)
TP_AR, TP_RS, ETP_AR, CP_STEP, EP_A2A, PP_P2P, DP_AR, DP_RS, EDP_AR, EDP_RS, DPR_AR, EDPR_AR = range(len(COMM_FIELDS))
# The quantities of a pass table (perf.compute.PassForms fields), per layer kind.
PASS_FIELDS = (
    "forward",
    "input_grad",
    "weight_grad",
    "gemm",
    "attention",
    "expert_forward",
    "expert_input_grad",
    "expert_weight_grad",
    "expert_gemm",
    "elementwise",
    "mlp_gemm",
)
FWD, IGRAD, WGRAD, GEMM, ATTN, E_FWD, E_IGRAD, E_WGRAD, E_GEMM, ELEM, MLP = range(len(PASS_FIELDS))
ROW_FIELDS = ("num_dense", "num_moe", "head", "count", "first_rank", "params_dense", "params_expert", "recompute_share")
BREAKDOWN_FIELDS = (
    "compute",
    "recompute",
    "tp_comm",
    "cp_comm",
    "ep_comm",
    "dp_comm_exposed",
    "pp_comm",
    "link_contention",
    "pipeline_bubble",
    "optimizer",
    "other",
)
# Efficiency scalars in this order.
EFF_FIELDS = ("scale_up", "scale_out", "moe_imbalance", "layer_overhead_s", "step_overhead_s", "memory")
INTERLEAVED = SCHEDULE_CODES[Schedule.INTERLEAVED]
ZERO_BUBBLE = SCHEDULE_CODES[Schedule.ZERO_BUBBLE]
ZB_V = SCHEDULE_CODES[Schedule.ZB_V]
DUALPIPE = SCHEDULE_CODES[Schedule.DUALPIPE]
GPIPE = SCHEDULE_CODES[Schedule.GPIPE]
FBF = FLASH_BACKWARD_FACTOR

FloatArray = NDArray[np.float64]


def _duration(rates: Any, g: int, j: int, size: float) -> float:
    slope = rates[j][g, 0]
    if slope > 0.0 and size > 0.0:
        return float(slope * size + rates[j][g, 2])
    return 0.0


_duration_c = _duration  # replaced by its compiled version on the first compiled call (see _load)


def _fill_drain(values: FloatArray, count: FloatArray, rows: int, slowest: int) -> float:
    total = 0.0
    for r in range(rows):
        total += max(values[r], 0.0) * count[r]
    return float(max(total - max(values[slowest], 0.0), 0.0))


_fill_drain_c = _fill_drain


def _assemble(
    plan: Any,  # PLAN_FIELDS: one array of plans each
    rates: Any,  # COMM_FIELDS: distinct groups x (seconds per byte, its scale-out part, intercept) each
    loads: Any,  # COMM_FIELDS: 3 x distinct groups x links each, seconds per byte at full rate, and divided by
    # the scale-up and by the scale-out efficiency (the divisions done once per group, as the loops would)
    index: Any,  # COMM_FIELDS: each plan's row of the two tables
    scale_out: FloatArray,  # plans x links: 1 for scale-out classes
    rows: Any,  # ROW_FIELDS: plans x row slots each
    seconds: FloatArray,  # unique pass keys x layer kinds x pass fields (efficiencies applied)
    pass_index: NDArray[np.int64],
    eff: FloatArray,  # EFF_FIELDS
    consts: FloatArray,  # bytes: gradient, parameter, fp32 gradient accumulation, optimizer step per parameter
    step_out: FloatArray,
    breakdown_out: FloatArray,  # plans x BREAKDOWN_FIELDS
    link_out: FloatArray,  # plans x links
) -> None:
    n = plan[0].shape[0]
    width = rows[0].shape[1]
    links = scale_out.shape[1]
    su, so, default_load, layer_oh, step_oh, memory = eff[0], eff[1], eff[2], eff[3], eff[4], eff[5]
    grad_bytes, param_bytes, accum_bytes, opt_bytes = consts[0], consts[1], consts[2], consts[3]
    side = np.empty(links, dtype=np.int64)
    link_eff = np.empty(links)
    tp_d_load = np.empty(links)
    tp_m_load = np.empty(links)
    ep_load = np.empty(links)
    cp_load = np.empty(links)
    pp_load = np.empty(links)
    fwd_load = np.empty((width, links))
    bwd_load = np.empty((width, links))
    fsdp_load = np.empty((width, links))
    reduce_load = np.empty((width, links))
    gather_load = np.empty((width, links))
    t_fwd = np.empty(width)
    t_bwd = np.empty(width)
    t_w = np.empty(width)
    fwd_c = np.empty(width)
    bwd_c = np.empty(width)
    fwd_block = np.empty(width)
    bwd_block = np.empty(width)
    fsdp_dur = np.empty(width)
    scratch = np.empty(width)
    row_compute = np.empty(width)
    row_recompute = np.empty(width)
    row_tp = np.empty(width)
    row_cp = np.empty(width)
    row_ep = np.empty(width)
    row_pp = np.empty(width)
    row_contention = np.empty(width)
    for i in range(n):
        u = pass_index[i]
        g_tp_ar = index[TP_AR][i]
        g_tp_rs = index[TP_RS][i]
        g_etp_ar = index[ETP_AR][i]
        g_cp_step = index[CP_STEP][i]
        g_ep_a2a = index[EP_A2A][i]
        g_pp_p2p = index[PP_P2P][i]
        g_dp_ar = index[DP_AR][i]
        g_dp_rs = index[DP_RS][i]
        g_edp_ar = index[EDP_AR][i]
        g_edp_rs = index[EDP_RS][i]
        load = (
            plan[CAPACITY][i]
            if plan[CAPACITY][i] > 0
            else (plan[IMBALANCE][i] if plan[IMBALANCE][i] > 0 else default_load)
        )
        sec = seconds[u]
        f_d = sec[0, FWD] + load * sec[0, E_FWD]
        b_d = sec[0, IGRAD] + load * sec[0, E_IGRAD]
        w_d = sec[0, WGRAD] + load * sec[0, E_WGRAD]
        g_d = sec[0, GEMM] + load * sec[0, E_GEMM]
        a_d = sec[0, ATTN]
        f_m = sec[1, FWD] + load * sec[1, E_FWD]
        b_m = sec[1, IGRAD] + load * sec[1, E_IGRAD]
        w_m = sec[1, WGRAD] + load * sec[1, E_WGRAD]
        g_m = sec[1, GEMM] + load * sec[1, E_GEMM]
        a_m = sec[1, ATTN]
        e_d, e_m = sec[0, ELEM], sec[1, ELEM]
        mlp_d, mlp_m = sec[0, MLP], sec[1, MLP]
        expert_m = load * sec[1, E_FWD]
        f_h = sec[2, FWD] + load * sec[2, E_FWD]
        b_h = sec[2, IGRAD] + load * sec[2, E_IGRAD]
        w_h = sec[2, WGRAD] + load * sec[2, E_WGRAD]
        tp, pp, cp, m, chunks = plan[TP][i], plan[PP][i], plan[CP][i], plan[M][i], plan[CHUNKS][i]
        act = plan[ACTIVATION][i]
        outside = scale_out[i]
        for lnk in range(links):
            side[lnk] = 2 if outside[lnk] > 0 else 1
            link_eff[lnk] = so if outside[lnk] > 0 else su

        # Tensor, expert, context and pipeline parallel transfers of one layer / chunk boundary.
        tp_one = _duration_c(rates, index[TP_AR][i], TP_AR, act)
        tp_d_dur = 2.0 * tp_one
        routed = plan[ROUTED][i] * load
        etp_on = plan[ETP_ON][i] > 0
        tp_m_dur = (1.0 + plan[SHARED][i]) * tp_one
        etp_dur = _duration_c(rates, index[ETP_AR][i], ETP_AR, routed) if etp_on else 0.0
        ep_bytes = plan[EP_BYTES][i] * load
        ep_on = plan[EP_ON][i] > 0
        dedup = plan[EP_DEDUP][i]
        trimmed = rates[EP_A2A][g_ep_a2a, 1] * ep_bytes * (1.0 - dedup)
        ep_dur = 2.0 * (_duration_c(rates, index[EP_A2A][i], EP_A2A, ep_bytes) - trimmed) if ep_on else 0.0
        cp_on = plan[CP_ON][i] > 0
        cp_dur = (cp - 1.0) * _duration_c(rates, index[CP_STEP][i], CP_STEP, plan[KV_BYTES][i]) if cp_on else 0.0
        pp_on = plan[PP_ON][i] > 0
        sp = plan[SP][i] > 0
        regather = 0.0 if sp else _duration_c(rates, index[TP_RS][i], TP_RS, act)
        pp_dur = chunks * (_duration_c(rates, index[PP_P2P][i], PP_P2P, plan[PP_BYTES][i]) + regather) if pp_on else 0.0
        for lnk in range(links):
            e = side[lnk]
            tp_l = loads[TP_AR][e, g_tp_ar, lnk] * act
            tp_d_load[lnk] = 2.0 * tp_l
            tp_m_load[lnk] = (1.0 + plan[SHARED][i]) * tp_l + (
                loads[ETP_AR][e, g_etp_ar, lnk] * routed if etp_on else 0.0
            )
            ep_scale = 1.0 - outside[lnk] * (1.0 - dedup)
            ep_load[lnk] = 2.0 * loads[EP_A2A][e, g_ep_a2a, lnk] * ep_bytes * ep_scale if ep_on else 0.0
            cp_load[lnk] = (
                (cp - 1.0) * loads[CP_STEP][0, g_cp_step, lnk] / link_eff[lnk] * plan[KV_BYTES][i] if cp_on else 0.0
            )
            regather_l = 0.0 if sp else loads[TP_RS][e, g_tp_rs, lnk] * act
            pp_load[lnk] = chunks * (loads[PP_P2P][e, g_pp_p2p, lnk] * plan[PP_BYTES][i] + regather_l) if pp_on else 0.0

        hbm_rate = plan[HBM_BW][i] * memory
        full, selective, lora, fsdp = plan[FULL][i] > 0, plan[SELECTIVE][i] > 0, plan[LORA][i] > 0, plan[FSDP][i] > 0
        zero = plan[ZERO][i]
        tp_overlap = plan[TP_OVERLAP][i] > 0
        tp_d_exposed = max(tp_d_dur - g_d, tp_d_dur / tp) if tp_overlap else tp_d_dur
        tp_m_exposed = (max(tp_m_dur - g_m, tp_m_dur / tp) if tp_overlap else tp_m_dur) + etp_dur
        half_d, half_m = 0.5 * tp_d_dur, 0.5 * tp_m_dur
        tp_d_back = tp_d_exposed if tp_overlap else half_d + max(half_d - w_d, 0.0)
        tp_m_back = (tp_m_exposed - etp_dur if tp_overlap else half_m + max(half_m - w_m, 0.0)) + etp_dur
        ep_exposed = max(ep_dur - f_m, 0.0) if plan[A2A_OVERLAP][i] > 0 else ep_dur
        dshard, eshard = plan[DSHARD][i], plan[ESHARD][i]
        grad_shard = dshard if zero >= 2 else 1.0
        hsdp = plan[HSDP][i] > 0 and not lora
        interleaved = int(plan[SCHEDULE][i]) == INTERLEAVED
        spread = 1.0 + pp * (chunks - 1.0) / chunks if interleaved else 1.0
        sync = not lora and not fsdp
        zero0 = zero == 0
        gather_on = sync and not zero0
        slope_dp_rs = rates[DP_RS][g_dp_rs, 0]
        slope_edp_rs = rates[EDP_RS][g_edp_rs, 0]
        slope_dp_ar = rates[DP_AR][g_dp_ar, 0]
        slope_edp_ar = rates[EDP_AR][g_edp_ar, 0]
        g_dpr_ar = g_edpr_ar = 0  # HSDP's replica groups, read only for HSDP plans
        slope_dpr_ar = slope_edpr_ar = 0.0
        if hsdp:
            g_dpr_ar, g_edpr_ar = index[DPR_AR][i], index[EDPR_AR][i]
            slope_dpr_ar, slope_edpr_ar = rates[DPR_AR][g_dpr_ar, 0], rates[EDPR_AR][g_edpr_ar, 0]
        rc_light_mlp = max(plan[RC_MLP][i], plan[RC_SHARED][i])

        dp_exposed = -np.inf
        optimizer = 0.0
        any_row = False
        for r in range(width):
            count = rows[3][i, r]
            if count <= 0.0:  # a padding row: nothing below reads it but the pipeline's fill, which weighs it by 0
                t_fwd[r] = 0.0
                t_bwd[r] = 0.0
                t_w[r] = 0.0
                continue
            nd, nm, head, first_rank = rows[0][i, r], rows[1][i, r], rows[2][i, r], rows[4][i, r]
            pd, pe, rc_share = rows[5][i, r], rows[6][i, r], rows[7][i, r]
            layers = nd + nm
            overhead = layer_oh * layers
            fwd_compute = nd * f_d + nm * f_m + head * f_h + overhead
            accumulate = 0.0 if lora else accum_bytes * (pd + pe) / grad_shard / hbm_rate
            bwd_input = nd * b_d + nm * b_m + head * b_h + overhead
            bwd_weight = nd * w_d + nm * w_m + head * w_h + accumulate
            if full:
                recompute = rc_share * (fwd_compute - head * f_h)
            elif selective:
                recompute = (
                    plan[RC_CORE_ATTN][i] * (nd * a_d + nm * a_m)
                    + plan[RC_LAYERNORM][i] * 0.4 * (nd * e_d + nm * e_m)
                    + plan[RC_MOE_ACT][i] * 0.3 * nm * e_m
                    + rc_light_mlp * (nd * mlp_d + nm * mlp_m)
                    + plan[RC_MOE][i] * nm * expert_m
                    + plan[RC_MLA][i] * 0.1 * (nd * g_d + nm * g_m)
                )
            else:
                recompute = 0.0
            tp_fwd = nd * tp_d_exposed + nm * tp_m_exposed
            tp_bwd = nd * tp_d_back + nm * tp_m_back
            ep_fwd = nm * ep_exposed
            cp_fwd = nd * max(cp_dur - a_d, 0.0) + nm * max(cp_dur - a_m, 0.0)
            cp_bwd = nd * max(2.0 * cp_dur - FBF * a_d, 0.0) + nm * max(2.0 * cp_dur - FBF * a_m, 0.0)
            pp_fwd = pp_dur if (plan[PP_BLOCKING][i] > 0 and count > 0) else 0.0
            recompute_comm = rc_share * (tp_fwd + ep_fwd + cp_fwd) if full else 0.0
            # FSDP per micro-batch, and the data-parallel reduction and gather of the last / first window.
            size_pd, size_pe = param_bytes * pd, param_bytes * pe
            grad_pd, grad_pe = grad_bytes * pd, grad_bytes * pe
            fsdp_d = slope_dp_rs * size_pd + rates[DP_RS][g_dp_rs, 2] if (slope_dp_rs > 0 and size_pd > 0) else 0.0
            fsdp_e = slope_edp_rs * size_pe + rates[EDP_RS][g_edp_rs, 2] if (slope_edp_rs > 0 and size_pe > 0) else 0.0
            fsdp_dur[r] = fsdp_d + fsdp_e if fsdp else 0.0
            ar_d = slope_dp_ar * grad_pd + rates[DP_AR][g_dp_ar, 2] if (slope_dp_ar > 0 and grad_pd > 0) else 0.0
            ar_e = slope_edp_ar * grad_pe + rates[EDP_AR][g_edp_ar, 2] if (slope_edp_ar > 0 and grad_pe > 0) else 0.0
            rs_d = slope_dp_rs * grad_pd + rates[DP_RS][g_dp_rs, 2] if (slope_dp_rs > 0 and grad_pd > 0) else 0.0
            rs_e = slope_edp_rs * grad_pe + rates[EDP_RS][g_edp_rs, 2] if (slope_edp_rs > 0 and grad_pe > 0) else 0.0
            # ZeRO-2 keeps only its shard of the gradients, so every micro-batch's gradients are reduce-scattered
            # during its backward (Rajbhandari et al. 2020 sec. 5.2; DeepSpeed reduces at every micro-step), not
            # once per step as a full local gradient buffer allows (ZeRO-1, Megatron's distributed optimizer).
            zero2 = sync and zero == 2
            z2_dur = rs_d + rs_e if zero2 else 0.0
            reduce_dur = (ar_d + ar_e if zero0 else rs_d + rs_e) if (sync and not zero2) else 0.0
            gather_dur = (rs_d + rs_e) * param_bytes / grad_bytes if gather_on else 0.0
            # HSDP: the gradient shard is all-reduced across the replicas once per step (Zhao et al. 2023 sec. 3.2.2).
            rep_pd = rep_pe = 0.0
            if hsdp:
                rep_pd, rep_pe = grad_pd / dshard, grad_pe / eshard
                rep_d = slope_dpr_ar * rep_pd + rates[DPR_AR][g_dpr_ar, 2] if (slope_dpr_ar > 0 and rep_pd > 0) else 0.0
                rep_e = (
                    slope_edpr_ar * rep_pe + rates[EDPR_AR][g_edpr_ar, 2] if (slope_edpr_ar > 0 and rep_pe > 0) else 0.0
                )
                reduce_dur = reduce_dur + (rep_d + rep_e)
            buckets = max(layers, 1.0)
            fwd_block[r] = tp_fwd + ep_fwd + cp_fwd + pp_fwd
            bwd_block[r] = 2.0 * tp_bwd + 2.0 * ep_fwd + cp_bwd + pp_fwd + recompute_comm
            fwd_c[r] = fwd_compute
            bwd_c[r] = bwd_input + bwd_weight + recompute
            busiest_f = 0.0
            busiest_b = 0.0
            busiest_lf = 0.0
            busiest_lb = 0.0
            for lnk in range(links):
                e = side[lnk]
                layer_l = nd * tp_d_load[lnk] + nm * tp_m_load[lnk] + nm * ep_load[lnk] + layers * cp_load[lnk]
                fl = layer_l + pp_load[lnk]
                bl = 2.0 * layer_l + (rc_share * layer_l if full else 0.0) + pp_load[lnk]
                fsdp_l = (
                    (loads[DP_RS][e, g_dp_rs, lnk] * size_pd + loads[EDP_RS][e, g_edp_rs, lnk] * size_pe)
                    if fsdp
                    else 0.0
                )
                if sync:
                    ar_l = loads[DP_AR][e, g_dp_ar, lnk] * grad_pd + loads[EDP_AR][e, g_edp_ar, lnk] * grad_pe
                    rs_l = loads[DP_RS][e, g_dp_rs, lnk] * grad_pd + loads[EDP_RS][e, g_edp_rs, lnk] * grad_pe
                    red_l = 0.0 if zero2 else (ar_l if zero0 else rs_l)
                else:
                    rs_l = 0.0
                    red_l = 0.0
                gat_l = rs_l * param_bytes / grad_bytes if gather_on else 0.0
                if zero2:
                    bl += rs_l
                if hsdp:
                    red_l = red_l + (
                        loads[DPR_AR][e, g_dpr_ar, lnk] * rep_pd + loads[EDPR_AR][e, g_edpr_ar, lnk] * rep_pe
                    )
                fwd_load[r, lnk] = fl
                bwd_load[r, lnk] = bl
                fsdp_load[r, lnk] = fsdp_l
                reduce_load[r, lnk] = red_l
                gather_load[r, lnk] = gat_l
                busiest_f = max(busiest_f, fl + fsdp_l) if lnk > 0 else fl + fsdp_l
                busiest_b = max(busiest_b, bl + 2.0 * fsdp_l) if lnk > 0 else bl + 2.0 * fsdp_l
                lf = spread * fl + gat_l
                lb = spread * bl + red_l
                busiest_lf = max(busiest_lf, lf) if lnk > 0 else lf
                busiest_lb = max(busiest_lb, lb) if lnk > 0 else lb
            f_win = max(max(fwd_c[r] + fwd_block[r] + fsdp_dur[r] / buckets, busiest_f), fsdp_dur[r])
            b_win = max(
                max(bwd_c[r] + bwd_block[r] + (fsdp_dur[r] + z2_dur) / buckets, busiest_b), 2.0 * fsdp_dur[r] + z2_dur
            )
            t_fwd[r] = f_win
            t_bwd[r] = b_win
            row_contention[r] = (f_win - fwd_c[r] - fwd_block[r]) + (b_win - bwd_c[r] - bwd_block[r])
            w_share = bwd_weight / max(bwd_c[r], 1e-30) if bwd_c[r] > 0 else 0.0
            t_w[r] = b_win * w_share
            last_bwd = max(
                max(spread * bwd_c[r] + spread * bwd_block[r] + reduce_dur / buckets, busiest_lb), reduce_dur
            )
            first_fwd = max(
                max(spread * fwd_c[r] + spread * fwd_block[r] + gather_dur / buckets, busiest_lf), gather_dur
            )
            dp_row = max(last_bwd - spread * b_win, 0.0) + max(first_fwd - spread * f_win, 0.0)
            dp_exposed = max(dp_exposed, dp_row - first_rank * b_win)
            sharded = zero >= 1
            opt_params = pd / (dshard if sharded else 1.0) + pe / (eshard if sharded else 1.0)
            opt_row = 0.0 if lora else opt_bytes * opt_params / hbm_rate
            optimizer = max(optimizer, opt_row) if any_row else opt_row
            any_row = True
            row_compute[r] = fwd_compute + bwd_input + bwd_weight
            row_recompute[r] = recompute
            row_tp[r] = tp_fwd + 2.0 * tp_bwd + (rc_share * tp_fwd if full else 0.0)
            row_cp[r] = cp_fwd + cp_bwd + (rc_share * cp_fwd if full else 0.0)
            row_ep[r] = 3.0 * ep_fwd + (rc_share * ep_fwd if full else 0.0)
            row_pp[r] = 2.0 * pp_fwd
        dp_exposed = max(dp_exposed, 0.0)

        # Pipeline (perf.schedule.pipeline_time): steady state at the slowest row, the schedule's bubble.
        slowest = -1
        t_max = 0.0
        for r in range(width):
            if rows[3][i, r] > 0:
                per_mb = t_fwd[r] + t_bwd[r]
                if slowest < 0 or per_mb > t_max:
                    slowest, t_max = r, per_mb
        if slowest < 0:
            slowest = 0
            t_max = t_fwd[0] + t_bwd[0]
        count_row = rows[3][i]
        steady = m * t_max
        bubble = 0.0
        if pp > 1:
            for r in range(width):
                scratch[r] = t_fwd[r] + t_bwd[r]
            plain = _fill_drain_c(scratch, count_row, width, slowest)
            schedule = int(plan[SCHEDULE][i])
            if schedule == INTERLEAVED:
                bubble = plain / max(chunks, 1.0)
            elif schedule == ZERO_BUBBLE:
                for r in range(width):
                    scratch[r] = t_fwd[r] + t_bwd[r] - 2.0 * t_w[r]
                bubble = min(_fill_drain_c(scratch, count_row, width, slowest), plain)
            elif schedule == ZB_V:
                for r in range(width):
                    scratch[r] = t_fwd[r] + t_bwd[r] - 3.0 * t_w[r]
                bubble = min(0.5 * _fill_drain_c(scratch, count_row, width, slowest), plain)
            elif schedule == DUALPIPE:
                for r in range(width):
                    scratch[r] = t_fwd[r] + 2.0 * (t_bwd[r] - t_w[r]) - t_w[r]
                share = max(pp / 2.0 - 1.0, 0.0) / max(pp - 1.0, 1.0)
                bubble = min(share * _fill_drain_c(scratch, count_row, width, slowest), plain)
            else:
                bubble = plain

        step = steady + bubble + dp_exposed + optimizer + step_oh
        busiest = 0.0
        for lnk in range(links):
            top = 0.0
            for r in range(width):
                if rows[3][i, r] > 0:
                    value = (
                        m * (fwd_load[r, lnk] + bwd_load[r, lnk] + 3.0 * fsdp_load[r, lnk])
                        + reduce_load[r, lnk]
                        + gather_load[r, lnk]
                    )
                    top = max(top, value)
            link_out[i, lnk] = top
            busiest = max(busiest, top)
        extra = max(busiest - step, 0.0)
        step_out[i] = step + extra
        out = breakdown_out[i]
        out[0] = m * row_compute[slowest]
        out[1] = m * row_recompute[slowest]
        out[2] = m * row_tp[slowest]
        out[3] = m * row_cp[slowest]
        out[4] = m * row_ep[slowest]
        out[5] = dp_exposed
        out[6] = m * row_pp[slowest]
        out[7] = m * row_contention[slowest] + extra
        out[8] = bubble
        out[9] = optimizer
        out[10] = step_oh


_COMPILED: dict[str, Callable[..., None]] = {}


def _load() -> dict[str, Callable[..., None]]:
    """Compile (or load from numba's on-disk cache) the loops, the helpers they call first."""
    global _duration_c, _fill_drain_c
    if not _COMPILED:
        import numba

        def jit(function: Callable[..., Any]) -> Any:
            return numba.njit(cache=True, nogil=True)(function)

        _duration_c, _fill_drain_c = jit(_duration), jit(_fill_drain)
        _COMPILED.update(assemble=jit(_assemble))
    return _COMPILED


def assemble_kernel(*args: Any) -> None:
    """The compiled :func:`_assemble` (numba must be installed: :data:`AVAILABLE`)."""
    _load()["assemble"](*args)
