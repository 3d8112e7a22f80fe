"""What the fused loop (``perf.fused_loop``) finds once for a run of plans that differ only in ZeRO stage,
recompute and offload: a plan's communication times and link loads, and each pipeline row's parts of its step
that do not depend on those three.

A search lists the ZeRO stages and recompute variants of one parallel layout next to each other, so the loop
compares each plan's *signature* (its pass, data-parallel and pipeline key (``perf.keys``), row layout, load
factor, schedule, interleaving, global batch, and its MoE dispatch and overlap flags) with the previous plan's and
calls :func:`shared` only where it changed. Every value here is the same IEEE operations in the same order as
``perf.kernel._assemble`` and ``perf.batch.prepare`` compute it (the loop adds the rest in their order), so the
results do not depend on which plans came before.

:func:`shared` writes three scratch arrays the loop reads:

- ``pv`` (:data:`PLAN_VALUES`): the plan's micro-batches, pipeline degree and chunks, ZeRO shard groups (dense,
  expert), interleaving's spread of the data-parallel window, the pass times recompute re-runs, and its logits;
- ``row_inv`` (:data:`ROW_VALUES` x row slots): per pipeline row, forward and backward compute, the tensor,
  expert, context and pipeline transfers exposed in a window, and the durations of the data-parallel collectives
  (FSDP's gathers, the all-reduce, the reduce-scatter and its gather, HSDP's replica all-reduce: zero without);
- ``link_inv`` (row slots x links x :data:`LINK_VALUES`): the same per row and link class, in seconds on the link;
- ``mem_rows`` (:data:`MEMORY_VALUES` x row slots): per pipeline row, its weight, gradient and optimizer bytes
  sharded and not, and the activations it holds, of which the loop picks by the plan's ZeRO stage and recompute.

A quantity the plan's ZeRO stage selects among (e.g. a reduction's duration per bucket) is kept here for each
stage, each computed exactly as the loop would compute it for that stage, so that the loop only picks one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from rainier.perf import fused as layout
from rainier.perf import fused_rows as rows
from rainier.perf import kernel
from rainier.perf.compute import ACTIVATION_BYTES
from rainier.perf.kernel import (
    ATTN,
    CP_STEP,
    DP_AR,
    DP_RS,
    DPR_AR,
    DUALPIPE,
    E_FWD,
    E_GEMM,
    E_IGRAD,
    E_WGRAD,
    EDP_AR,
    EDP_RS,
    EDPR_AR,
    ELEM,
    EP_A2A,
    ETP_AR,
    FBF,
    FWD,
    GEMM,
    IGRAD,
    INTERLEAVED,
    MLP,
    PP_P2P,
    TP_AR,
    TP_RS,
    WGRAD,
    ZB_V,
)
from rainier.perf.memory import LOGIT_BYTES

FloatArray = NDArray[np.float64]

PLAN_VALUES = (
    "m",
    "pp",
    "chunks",
    "dense_shard",
    "expert_shard",
    "spread",
    "f_head",
    "attn_dense",
    "attn_moe",
    "elem_dense",
    "elem_moe",
    "mlp_dense",
    "mlp_moe",
    "expert_moe",
    "gemm_dense",
    "gemm_moe",
    "logits",
)
P_M, P_PP, P_CHUNKS, P_DSHARD, P_ESHARD, P_SPREAD, P_F_H, P_A_D, P_A_M, P_E_D, P_E_M = range(11)
P_MLP_D, P_MLP_M, P_EXPERT_M, P_G_D, P_G_M, P_LOGITS = range(11, 17)
ROW_VALUES = (
    "fwd_compute",  # forward compute of the row's layers and head, with the per-layer overhead
    "bwd_input",  # input-gradient compute, likewise
    "bwd_weight",  # weight-gradient compute before fp32 gradient accumulation
    "tp_fwd",  # exposed tensor-parallel time of a forward
    "tp_bwd",  # and of a backward
    "ep_fwd",  # exposed expert-parallel dispatch and combine of a forward
    "cp_fwd",  # exposed context-parallel ring of a forward
    "cp_bwd",  # and of a backward
    "pp_fwd",  # blocking pipeline transfer of a micro-batch
    "fwd_block",  # tp + ep + cp + pp of a forward
    "bwd_block",  # 2 tp + 2 ep + cp + pp of a backward, before full recompute's communication
    "fsdp",  # FSDP's parameter gathers of a micro-batch (dense and expert)
    "all_reduce",  # the data-parallel gradient all-reduce (dense and expert)
    "reduce_scatter",  # the gradient reduce-scatter (dense and expert)
    "gather",  # ZeRO's parameter gather after the optimizer step
    "replica",  # HSDP's all-reduce across the replicas (0 without HSDP)
    "buckets",  # the row's layers, at least 1: the buckets its data-parallel traffic overlaps in
    # What a window adds per bucket, for each case of ZeRO and HSDP the plan's own flags pick from:
    "fsdp_bucket",  # FSDP's gathers of a forward
    "fsdp_bucket_bwd",  # and of a backward (FSDP runs no ZeRO-2 reduce-scatter: that adds zero)
    "z2_bucket",  # ZeRO-2's per-micro-batch reduce-scatter of a backward
    "reduce_ar_bucket",  # the last backward's reduction: all-reduce (ZeRO-0), then HSDP's replica all-reduce
    "reduce_rs_bucket",  # reduce-scatter (ZeRO-1 and 3), then the replicas
    "reduce_none_bucket",  # the replicas' all-reduce alone (ZeRO-2, FSDP, LoRA)
    "gather_bucket",  # the first forward's parameter gather
    "accumulate",  # fp32 gradient accumulation of a micro-batch's backward: of all the row's parameters
    "accumulate_shard",  # of its ZeRO-2/3 shard
    "optimizer",  # the optimizer step over all the row's parameters
    "optimizer_shard",  # over its ZeRO shard
)
R_FWD, R_BWD_IN, R_BWD_W, R_TP_FWD, R_TP_BWD, R_EP_FWD, R_CP_FWD, R_CP_BWD, R_PP_FWD = range(9)
R_FWD_BLOCK, R_BWD_BLOCK, R_FSDP, R_AR, R_RS, R_GATHER, R_REP, R_BUCKETS = range(9, 17)
R_FSDP_Q, R_FSDP_Q_BWD, R_Z2_Q, R_RED_AR_Q, R_RED_RS_Q, R_RED_NONE_Q, R_GATHER_Q = range(17, 24)
R_ACC, R_ACC_SHARD, R_OPT, R_OPT_SHARD = range(24, 28)
# Per pipeline row, its memory parts that do not depend on ZeRO stage, recompute and offload (perf.fused_rows'
# arithmetic), in this order.
MEMORY_VALUES = (
    "weights",  # the row's weight bytes, unsharded
    "weights_shard",  # under ZeRO-3
    "gradients",  # gradient bytes, unsharded
    "gradients_shard",  # under ZeRO-2 and 3
    "optimizer",  # optimizer state bytes, unsharded
    "optimizer_shard",  # under ZeRO-1, 2 and 3
    "held",  # micro-batches whose activations the row holds at once (perf.fused_rows.held_micro_batches)
    "logits",  # the head's logits bytes (0 on rows without the head)
)
M_W, M_W_SHARD, M_G, M_G_SHARD, M_O, M_O_SHARD, M_HELD, M_LOGITS = range(8)
LINK_VALUES = ("layer", "pipeline", "fsdp", "all_reduce", "reduce_scatter", "gather", "replica")
L_LAYER, L_PP, L_FSDP, L_AR, L_RS, L_GATHER, L_REP = range(7)

# Per link, the plan's seconds on the link per layer, micro-batch or byte of each transfer (the loop's ``coef``).
C_TP_DENSE, C_TP_MOE, C_EP, C_CP, C_PP = range(5)
C_DP_RS, C_EDP_RS, C_DP_AR, C_EDP_AR, C_DPR_AR, C_EDPR_AR = range(5, 11)
LINK_COEFFS = 11

# Replaced by their compiled versions on the first call (perf.fused_loop._load).
_minimum_c, _maximum_c, _duration_c = rows.minimum, rows.maximum, kernel._duration
_held_c = rows.held_micro_batches


def shared(
    i: int,  # the plan
    u: int,  # its run (perf.keys.Runs)
    run: Any,  # perf.fused_loop._evaluate's run_ints, run_flags and run_keys (one argument: CPython passes a call
    # of more than 30 arguments as *args, which numba does not inline)
    ints: Any,  # and its other arguments, as it takes them
    flags: Any,
    load: float,  # the plan's MoE load factor (capacity, imbalance or the fitted default)
    comm_local: Any,
    comm_by: NDArray[np.int64],
    seconds: FloatArray,
    rates: Any,
    loads: Any,
    outside: FloatArray,  # links: 1 for scale-out classes
    side: NDArray[np.int64],  # links: the side of the groups' loads tables each reads (1 scale-up, 2 scale-out)
    link_eff: FloatArray,  # links: the scale-up or scale-out efficiency
    lay: Any,
    sc: FloatArray,
    isc: NDArray[np.int64],
    ep_plain: FloatArray,
    ep_distinct: FloatArray,
    eff: FloatArray,
    consts: FloatArray,
    state: FloatArray,  # bytes per parameter: weight, gradient, optimizer
    by: NDArray[np.int64],  # scratch: 3
    gi: NDArray[np.int64],  # scratch: one per collective
    coef: FloatArray,  # scratch: links x LINK_COEFFS
    pv: FloatArray,  # out: PLAN_VALUES
    rp: FloatArray,  # out: its first two rows (dense and expert parameters per rank of each row)
    row_inv: FloatArray,  # out: ROW_VALUES x row slots
    link_inv: FloatArray,  # out: row slots x links x LINK_VALUES
    mem_rows: FloatArray,  # out: MEMORY_VALUES x row slots
) -> None:
    """The values of plan ``i`` the plans of its run share (see the module docstring)."""
    run_ints, run_flags, run_keys = run
    width = lay[0].shape[1]
    links = outside.shape[0]
    layer_oh = eff[3]
    grad_bytes, param_bytes, accum_bytes, opt_bytes = consts[0], consts[1], consts[2], consts[3]
    hbm_rate = sc[layout.S_HBM_BW] * eff[5]  # as the loop finds it
    seq_len, num_kv_heads = isc[layout.I_SEQ_LEN], isc[layout.I_NUM_KV_HEADS]
    h, top_k = sc[layout.S_HIDDEN], sc[layout.S_TOP_K]
    is_moe, is_mla = sc[layout.S_MOE] > 0, sc[layout.S_MLA] > 0
    by[0], by[1], by[2] = run_keys[0][u], run_keys[2][u], run_keys[3][u]  # fused.RUN_KEYS: pass, dp, pp
    # each collective's group (a constant index into the tuple each: numba copies a tuple it indexes at run time)
    gi[TP_AR] = comm_local[TP_AR][by[comm_by[TP_AR]]]
    gi[TP_RS] = comm_local[TP_RS][by[comm_by[TP_RS]]]
    gi[ETP_AR] = comm_local[ETP_AR][by[comm_by[ETP_AR]]]
    gi[CP_STEP] = comm_local[CP_STEP][by[comm_by[CP_STEP]]]
    gi[EP_A2A] = comm_local[EP_A2A][by[comm_by[EP_A2A]]]
    gi[PP_P2P] = comm_local[PP_P2P][by[comm_by[PP_P2P]]]
    gi[DP_AR] = comm_local[DP_AR][by[comm_by[DP_AR]]]
    gi[DP_RS] = comm_local[DP_RS][by[comm_by[DP_RS]]]
    gi[EDP_AR] = comm_local[EDP_AR][by[comm_by[EDP_AR]]]
    gi[EDP_RS] = comm_local[EDP_RS][by[comm_by[EDP_RS]]]
    gi[DPR_AR] = comm_local[DPR_AR][by[comm_by[DPR_AR]]]
    gi[EDPR_AR] = comm_local[EDPR_AR][by[comm_by[EDPR_AR]]]
    # ---- perf.batch.prepare, one plan ----
    tp_i, pp_i, dp_i, cp_i = run_ints[0][u], run_ints[1][u], run_ints[2][u], run_ints[3][u]  # fused.RUN_COLUMNS
    ep_i, etp_i, vpp_i, mbs_i = run_ints[4][u], run_ints[5][u], run_ints[6][u], run_ints[7][u]
    sched_i, shard_i = run_ints[8][u], run_ints[9][u]
    sp_b, lora_b = run_flags[0][u], run_flags[1][u]  # fused.RUN_FLAGS
    gbs_i, ep_domains_i = ints[0][i], ints[3][i]  # fused.INT_COLUMNS
    tp_overlap_b, a2a_overlap_b, ep_dedup_b = flags[0][i], flags[1][i], flags[2][i]  # fused.FLAG_COLUMNS
    etp_i = etp_i if etp_i > 0 else tp_i  # PlanColumns.expert_tp
    p_tp, p_pp, p_dp, p_cp = float(tp_i), float(pp_i), float(dp_i), float(cp_i)
    tokens = float(mbs_i) * float(seq_len // cp_i)
    norm_tokens = tokens / p_tp if sp_b else tokens
    p_activation = ACTIVATION_BYTES * tokens * h
    p_routed = top_k * p_activation * float(etp_i) / p_tp
    p_ep_bytes = ACTIVATION_BYTES * norm_tokens * top_k * h
    p_ep_dedup = 1.0
    if top_k > 0 and (ep_dedup_b or ep_domains_i > 0):
        g_ep = gi[EP_A2A]
        plain = ep_plain[g_ep]
        if plain > 0:
            limit = float(ep_domains_i) if ep_domains_i > 0 else np.inf
            p_ep_dedup = _minimum_c(1.0, _minimum_c(ep_distinct[g_ep], limit) / _maximum_c(plain, 1e-9))
    if is_mla:
        p_kv_bytes = ACTIVATION_BYTES * tokens * (sc[layout.S_NUM_HEADS] / p_tp) * sc[layout.S_MLA_HEAD_DIM]
    else:
        kv_heads = max(num_kv_heads // tp_i, 1)
        p_kv_bytes = ACTIVATION_BYTES * tokens * float(kv_heads) * 2.0 * sc[layout.S_HEAD_DIM]
    p_pp_bytes = p_activation / p_tp
    p_m = float(gbs_i // (dp_i * mbs_i))
    edp_i = max((tp_i * dp_i * cp_i) // (etp_i * ep_i), 1)
    # ZeRO's shard groups (perf.columns.shard_groups): all of dp x cp and of edp, or HSDP's part of them
    p_dshard, p_eshard = p_dp * p_cp, float(edp_i)
    if shard_i > 0:
        a_gcd, b_gcd = edp_i, dp_i // shard_i
        while b_gcd:  # gcd(edp, replicas)
            a_gcd, b_gcd = b_gcd, a_gcd % b_gcd
        p_dshard, p_eshard = float(shard_i * cp_i), float(edp_i // a_gcd)
    if sched_i == INTERLEAVED:
        chunks_i = vpp_i
    elif sched_i in (ZB_V, DUALPIPE):
        chunks_i = 2
    else:
        chunks_i = 1
    p_shared = sc[layout.S_SHARED]
    overlapped_p2p = sched_i in (INTERLEAVED, ZB_V, DUALPIPE)
    pp_blocking = pp_i > 1 and not overlapped_p2p
    ur = run_keys[1][u]
    etp_ep = float(ep_i) * float(etp_i)
    for r in range(width):
        rp[0, r] = lay[5][ur, r] / p_tp
        rp[1, r] = lay[6][ur, r] / etp_ep

    # ---- perf.kernel._assemble, what the plans of the run share ----
    g_tp_ar, g_tp_rs, g_etp_ar, g_cp_step = gi[TP_AR], gi[TP_RS], gi[ETP_AR], gi[CP_STEP]
    g_ep_a2a, g_pp_p2p, g_dp_ar, g_dp_rs = gi[EP_A2A], gi[PP_P2P], gi[DP_AR], gi[DP_RS]
    g_edp_ar, g_edp_rs, g_dpr_ar, g_edpr_ar = gi[EDP_AR], gi[EDP_RS], gi[DPR_AR], gi[EDPR_AR]
    sec = seconds[by[0]]
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
    f_h = sec[2, FWD] + load * sec[2, E_FWD]
    b_h = sec[2, IGRAD] + load * sec[2, E_IGRAD]
    w_h = sec[2, WGRAD] + load * sec[2, E_WGRAD]
    tp, pp, cp, chunks = p_tp, p_pp, p_cp, float(chunks_i)
    act = p_activation
    pv[P_M], pv[P_PP], pv[P_CHUNKS], pv[P_DSHARD], pv[P_ESHARD] = p_m, p_pp, chunks, p_dshard, p_eshard
    pv[P_SPREAD] = 1.0 + pp * (chunks - 1.0) / chunks if sched_i == INTERLEAVED else 1.0
    pv[P_F_H], pv[P_A_D], pv[P_A_M], pv[P_E_D], pv[P_E_M] = f_h, a_d, a_m, sec[0, ELEM], sec[1, ELEM]
    pv[P_MLP_D], pv[P_MLP_M], pv[P_EXPERT_M] = sec[0, MLP], sec[1, MLP], load * sec[1, E_FWD]
    pv[P_G_D], pv[P_G_M] = g_d, g_m
    pv[P_LOGITS] = LOGIT_BYTES * float(mbs_i) * float(seq_len // cp_i) * sc[layout.S_VOCAB] / p_tp

    # Tensor, expert, context and pipeline parallel transfers of one layer / chunk boundary.
    tp_one = _duration_c(rates, g_tp_ar, TP_AR, act)
    tp_d_dur = 2.0 * tp_one
    routed = p_routed * load
    etp_on = etp_i > 1 and is_moe
    tp_m_dur = (1.0 + p_shared) * tp_one
    etp_dur = _duration_c(rates, g_etp_ar, ETP_AR, routed) if etp_on else 0.0
    ep_bytes = p_ep_bytes * load
    ep_on = ep_i > 1
    dedup = p_ep_dedup
    trimmed = rates[EP_A2A][g_ep_a2a, 1] * ep_bytes * (1.0 - dedup)
    ep_dur = 2.0 * (_duration_c(rates, g_ep_a2a, EP_A2A, ep_bytes) - trimmed) if ep_on else 0.0
    cp_on = cp_i > 1
    cp_dur = (cp - 1.0) * _duration_c(rates, g_cp_step, CP_STEP, p_kv_bytes) if cp_on else 0.0
    pp_on = pp_i > 1
    regather = 0.0 if sp_b else _duration_c(rates, g_tp_rs, TP_RS, act)
    pp_dur = chunks * (_duration_c(rates, g_pp_p2p, PP_P2P, p_pp_bytes) + regather) if pp_on else 0.0
    hsdp = (0 < shard_i < dp_i) and not lora_b
    for lnk in range(links):
        e = side[lnk]
        tp_l = loads[TP_AR][e, g_tp_ar, lnk] * act
        coef[lnk, C_TP_DENSE] = 2.0 * tp_l
        coef[lnk, C_TP_MOE] = (1.0 + p_shared) * tp_l + (loads[ETP_AR][e, g_etp_ar, lnk] * routed if etp_on else 0.0)
        ep_scale = 1.0 - outside[lnk] * (1.0 - dedup)
        coef[lnk, C_EP] = 2.0 * loads[EP_A2A][e, g_ep_a2a, lnk] * ep_bytes * ep_scale if ep_on else 0.0
        coef[lnk, C_CP] = (cp - 1.0) * loads[CP_STEP][0, g_cp_step, lnk] / link_eff[lnk] * p_kv_bytes if cp_on else 0.0
        regather_l = 0.0 if sp_b else loads[TP_RS][e, g_tp_rs, lnk] * act
        coef[lnk, C_PP] = chunks * (loads[PP_P2P][e, g_pp_p2p, lnk] * p_pp_bytes + regather_l) if pp_on else 0.0
        coef[lnk, C_DP_RS] = loads[DP_RS][e, g_dp_rs, lnk]
        coef[lnk, C_EDP_RS] = loads[EDP_RS][e, g_edp_rs, lnk]
        coef[lnk, C_DP_AR] = loads[DP_AR][e, g_dp_ar, lnk]
        coef[lnk, C_EDP_AR] = loads[EDP_AR][e, g_edp_ar, lnk]
        coef[lnk, C_DPR_AR] = loads[DPR_AR][e, g_dpr_ar, lnk] if hsdp else 0.0
        coef[lnk, C_EDPR_AR] = loads[EDPR_AR][e, g_edpr_ar, lnk] if hsdp else 0.0

    tp_overlap = tp_overlap_b
    tp_d_exposed = max(tp_d_dur - g_d, tp_d_dur / tp) if tp_overlap else tp_d_dur
    tp_m_exposed = (max(tp_m_dur - g_m, tp_m_dur / tp) if tp_overlap else tp_m_dur) + etp_dur
    half_d, half_m = 0.5 * tp_d_dur, 0.5 * tp_m_dur
    tp_d_back = tp_d_exposed if tp_overlap else half_d + max(half_d - w_d, 0.0)
    tp_m_back = (tp_m_exposed - etp_dur if tp_overlap else half_m + max(half_m - w_m, 0.0)) + etp_dur
    ep_exposed = max(ep_dur - f_m, 0.0) if (a2a_overlap_b or sched_i == DUALPIPE) else ep_dur
    dshard, eshard = p_dshard, p_eshard
    slope_dp_rs = rates[DP_RS][g_dp_rs, 0]
    slope_edp_rs = rates[EDP_RS][g_edp_rs, 0]
    slope_dp_ar = rates[DP_AR][g_dp_ar, 0]
    slope_edp_ar = rates[EDP_AR][g_edp_ar, 0]
    slope_dpr_ar = rates[DPR_AR][g_dpr_ar, 0] if hsdp else 0.0
    slope_edpr_ar = rates[EDPR_AR][g_edpr_ar, 0] if hsdp else 0.0
    for r in range(width):
        count = lay[3][ur, r]
        if count <= 0.0:  # a padding row: the loop skips it
            continue
        nd, nm, head = lay[0][ur, r], lay[1][ur, r], lay[2][ur, r]
        pd, pe = rp[0, r], rp[1, r]
        layers = nd + nm
        overhead = layer_oh * layers
        row_inv[R_FWD, r] = nd * f_d + nm * f_m + head * f_h + overhead
        row_inv[R_BWD_IN, r] = nd * b_d + nm * b_m + head * b_h + overhead
        row_inv[R_BWD_W, r] = nd * w_d + nm * w_m + head * w_h
        tp_fwd = nd * tp_d_exposed + nm * tp_m_exposed
        tp_bwd = nd * tp_d_back + nm * tp_m_back
        ep_fwd = nm * ep_exposed
        cp_fwd = nd * max(cp_dur - a_d, 0.0) + nm * max(cp_dur - a_m, 0.0)
        cp_bwd = nd * max(2.0 * cp_dur - FBF * a_d, 0.0) + nm * max(2.0 * cp_dur - FBF * a_m, 0.0)
        pp_fwd = pp_dur if (pp_blocking and count > 0) else 0.0
        row_inv[R_TP_FWD, r], row_inv[R_TP_BWD, r], row_inv[R_EP_FWD, r] = tp_fwd, tp_bwd, ep_fwd
        row_inv[R_CP_FWD, r], row_inv[R_CP_BWD, r], row_inv[R_PP_FWD, r] = cp_fwd, cp_bwd, pp_fwd
        row_inv[R_FWD_BLOCK, r] = tp_fwd + ep_fwd + cp_fwd + pp_fwd
        row_inv[R_BWD_BLOCK, r] = 2.0 * tp_bwd + 2.0 * ep_fwd + cp_bwd + pp_fwd
        # FSDP per micro-batch, and the data-parallel reduction and gather of the last / first window.
        size_pd, size_pe = param_bytes * pd, param_bytes * pe
        grad_pd, grad_pe = grad_bytes * pd, grad_bytes * pe
        fsdp_d = slope_dp_rs * size_pd + rates[DP_RS][g_dp_rs, 2] if (slope_dp_rs > 0 and size_pd > 0) else 0.0
        fsdp_e = slope_edp_rs * size_pe + rates[EDP_RS][g_edp_rs, 2] if (slope_edp_rs > 0 and size_pe > 0) else 0.0
        row_inv[R_FSDP, r] = fsdp_d + fsdp_e
        ar_d = slope_dp_ar * grad_pd + rates[DP_AR][g_dp_ar, 2] if (slope_dp_ar > 0 and grad_pd > 0) else 0.0
        ar_e = slope_edp_ar * grad_pe + rates[EDP_AR][g_edp_ar, 2] if (slope_edp_ar > 0 and grad_pe > 0) else 0.0
        rs_d = slope_dp_rs * grad_pd + rates[DP_RS][g_dp_rs, 2] if (slope_dp_rs > 0 and grad_pd > 0) else 0.0
        rs_e = slope_edp_rs * grad_pe + rates[EDP_RS][g_edp_rs, 2] if (slope_edp_rs > 0 and grad_pe > 0) else 0.0
        row_inv[R_AR, r] = ar_d + ar_e
        row_inv[R_RS, r] = rs_d + rs_e
        row_inv[R_GATHER, r] = (rs_d + rs_e) * param_bytes / grad_bytes
        # HSDP: the gradient shard's all-reduce across the replicas (perf.kernel; plans without HSDP add zeros)
        rep_pd, rep_pe, rep_dur = 0.0, 0.0, 0.0
        if hsdp:
            rep_pd, rep_pe = grad_bytes * pd / dshard, grad_bytes * pe / eshard
            rep_d = slope_dpr_ar * rep_pd + rates[DPR_AR][g_dpr_ar, 2] if (slope_dpr_ar > 0 and rep_pd > 0) else 0.0
            rep_e = slope_edpr_ar * rep_pe + rates[EDPR_AR][g_edpr_ar, 2] if (slope_edpr_ar > 0 and rep_pe > 0) else 0.0
            rep_dur = rep_d + rep_e
        row_inv[R_REP, r] = rep_dur
        buckets = max(layers, 1.0)
        row_inv[R_BUCKETS, r] = buckets
        # the loop's ``x / buckets`` of each case (its zero terms included, as it adds them)
        fsdp_dur, rs_dur = fsdp_d + fsdp_e, rs_d + rs_e
        row_inv[R_FSDP_Q, r] = fsdp_dur / buckets
        row_inv[R_FSDP_Q_BWD, r] = (fsdp_dur + 0.0) / buckets
        row_inv[R_Z2_Q, r] = (0.0 + rs_dur) / buckets
        row_inv[R_RED_AR_Q, r] = (ar_d + ar_e + rep_dur) / buckets
        row_inv[R_RED_RS_Q, r] = (rs_dur + rep_dur) / buckets
        row_inv[R_RED_NONE_Q, r] = (0.0 + rep_dur) / buckets
        row_inv[R_GATHER_Q, r] = row_inv[R_GATHER, r] / buckets
        row_inv[R_ACC, r] = accum_bytes * (pd + pe) / hbm_rate
        row_inv[R_ACC_SHARD, r] = accum_bytes * (pd + pe) / dshard / hbm_rate
        row_inv[R_OPT, r] = opt_bytes * (pd + pe) / hbm_rate
        row_inv[R_OPT_SHARD, r] = opt_bytes * (pd / dshard + pe / eshard) / hbm_rate
        # memory (perf.fused_rows): the row's states, sharded and not, and the activations it holds
        copy = 2.0 if sched_i == DUALPIPE else 1.0
        dense_sharded, expert_sharded = pd / dshard, pe / eshard
        mem_rows[M_W, r] = copy * state[0] * (pd + pe)
        mem_rows[M_W_SHARD, r] = copy * state[0] * (dense_sharded + expert_sharded)
        mem_rows[M_G, r] = copy * state[1] * (pd + pe)
        mem_rows[M_G_SHARD, r] = copy * state[1] * (dense_sharded + expert_sharded)
        mem_rows[M_O, r] = copy * state[2] * (pd + pe)
        mem_rows[M_O_SHARD, r] = copy * state[2] * (dense_sharded + expert_sharded)
        mem_rows[M_HELD, r] = _held_c(sched_i, chunks, pp, lay[4][ur, r], p_m)
        mem_rows[M_LOGITS, r] = head * pv[P_LOGITS]
        for lnk in range(links):
            layer_l = (
                nd * coef[lnk, C_TP_DENSE] + nm * coef[lnk, C_TP_MOE] + nm * coef[lnk, C_EP] + layers * coef[lnk, C_CP]
            )
            rs_l = coef[lnk, C_DP_RS] * grad_pd + coef[lnk, C_EDP_RS] * grad_pe
            link_inv[r, lnk, L_LAYER] = layer_l
            link_inv[r, lnk, L_PP] = coef[lnk, C_PP]
            link_inv[r, lnk, L_FSDP] = coef[lnk, C_DP_RS] * size_pd + coef[lnk, C_EDP_RS] * size_pe
            link_inv[r, lnk, L_AR] = coef[lnk, C_DP_AR] * grad_pd + coef[lnk, C_EDP_AR] * grad_pe
            link_inv[r, lnk, L_RS] = rs_l
            link_inv[r, lnk, L_GATHER] = rs_l * param_bytes / grad_bytes
            link_inv[r, lnk, L_REP] = coef[lnk, C_DPR_AR] * rep_pd + coef[lnk, C_EDPR_AR] * rep_pe if hsdp else 0.0
