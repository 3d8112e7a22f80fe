"""The compiled loop of the fused pass (``perf.fused``): every stage of the step model for one plan at a time.

Inputs are plan columns, per-key tables and scalars in the orders ``perf.fused`` lays out (``INT_COLUMNS``,
``FLAG_COLUMNS``, ``LAYOUT_TABLES``, ``SCALARS``, ``INT_SCALARS``, ``COMM_SOURCES``); the assembly is
``perf.kernel._assemble``'s, statement for statement (the numpy ``perf.batch.assemble_reference`` is the reference
for both), with each plan's ``perf.batch.prepare`` columns computed in place of reading them. HSDP's replica
all-reduce, a branch inside the kernel's row loop, is found per row before that loop (the same operations; plans
without HSDP add zeros), so that plans without HSDP pay next to nothing for it. Results go to the arrays of
``perf.fused.evaluate_fused``: breakdown and memory as rows (fields x plans).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rainier.perf import fused as layout
from rainier.perf import fused_rows as rows
from rainier.perf import kernel
from rainier.perf.compute import ACTIVATION_BYTES, LORA_FLOP_FRACTION
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
    ZERO_BUBBLE,
)
from rainier.perf.memory import LOGIT_BYTES
from rainier.perf.offload import ACTIVATIONS

FloatArray = NDArray[np.float64]

# A plan's per-link coefficients (one row of the loop's ``coef`` scratch per link): the tensor-parallel load of a
# dense and of a MoE layer, the expert-parallel load of a MoE layer, the context-parallel load of a layer and the
# pipeline load of a micro-batch (as perf.kernel._assemble's per-link scratch), then the seconds per byte on the link
# of the data-parallel reduce-scatter and all-reduce over the dense and the expert groups and, with HSDP, of the
# all-reduces across the replicas (the groups' ``loads`` on the link's side).
C_TP_DENSE, C_TP_MOE, C_EP, C_CP, C_PP = range(5)
C_DP_RS, C_EDP_RS, C_DP_AR, C_EDP_AR, C_DPR_AR, C_EDPR_AR = range(5, 11)
LINK_COEFFS = 11

# Replaced by their compiled versions on the first call (see _load).
_pairwise_sum_c, _minimum_c, _maximum_c = rows.pairwise_sum, rows.minimum, rows.maximum
_row_memory_c, _offload_c = rows.row_memory, rows.offload
_duration_c, _fill_drain_c = kernel._duration, kernel._fill_drain


def _evaluate(
    ints: Any,  # INT_COLUMNS: one int64 array of plans each
    flags: Any,  # FLAG_COLUMNS: one bool array of plans each
    capacity: FloatArray,
    imbalance: FloatArray,
    comm_local: Any,  # COMM_FIELDS: each key's row of the collectives' tables (perf.keys.PlanKeys.comm_local)
    comm_by: NDArray[np.int64],  # COMM_FIELDS: the key each goes by (0: pass key, 1: with dp, 2: with pp)
    keyidx: Any,  # each plan's pass key, layout, activation and kept-activation key, and with dp, with pp
    seconds: FloatArray,  # pass keys x layer kinds x pass fields (efficiencies applied)
    rates: Any,  # COMM_FIELDS: perf.kernel._assemble's rates
    loads: Any,  # COMM_FIELDS: perf.kernel._assemble's loads
    scale_out: FloatArray,  # links: 1 for scale-out classes
    lay: Any,  # LAYOUT_TABLES: layouts x row slots each
    keep: FloatArray,  # layouts: the share of offloaded weights and activations kept on the device
    act_table: FloatArray,  # activation keys x (dense, MoE) layer bytes
    kept_table: FloatArray,  # kept-activation keys x (dense, MoE) layer bytes
    ep_plain: FloatArray,  # expert-parallel groups: copies of a token's dispatch leaving the domain, plainly
    ep_distinct: FloatArray,  # and deduplicated (perf.batch.prepare)
    hw_per_token: FloatArray,  # hardware FLOPs per token by recompute code
    sc: FloatArray,  # SCALARS
    isc: NDArray[np.int64],  # INT_SCALARS
    eff: FloatArray,  # perf.kernel.EFF_FIELDS
    consts: FloatArray,  # bytes: gradient, parameter, fp32 gradient accumulation, optimizer step per parameter
    state: FloatArray,  # bytes per parameter: weight, gradient, optimizer
    chunk: int,  # perf.batch.EVALUATE_CHUNK
    step_out: FloatArray,
    bd: FloatArray,  # breakdown: perf.batch_result.BREAKDOWN_FIELDS x plans
    mem: FloatArray,  # MEMORY_ROWS x plans
    flops: FloatArray,  # (model, hardware) x plans
    link_out: FloatArray,  # plans x links
) -> None:
    """Every plan's step time, breakdown, memory, FLOPs and link loads, written into the output arrays."""
    n = ints[0].shape[0]
    tp_col, pp_col, dp_col, cp_col, ep_col, etp_col, vpp_col, mbs_col = ints[:8]  # in fused.INT_COLUMNS order
    gbs_col, zero_col, recompute_col, schedule_col, domains_col, rc_mask_col, rc_layers_col, offload_col = ints[8:16]
    shard_col = ints[16]
    sp_col, lora_col, tp_overlap_col, a2a_overlap_col, ep_dedup_col = flags  # in fused.FLAG_COLUMNS order
    width = lay[0].shape[1]
    links = scale_out.shape[0]
    su, so, default_load, layer_oh, step_oh, memory = eff[0], eff[1], eff[2], eff[3], eff[4], eff[5]
    grad_bytes, param_bytes, accum_bytes, opt_bytes = consts[0], consts[1], consts[2], consts[3]
    seq_len, num_kv_heads = isc[layout.I_SEQ_LEN], isc[layout.I_NUM_KV_HEADS]
    h, top_k = sc[layout.S_HIDDEN], sc[layout.S_TOP_K]
    is_moe, is_mla = sc[layout.S_MOE] > 0, sc[layout.S_MLA] > 0
    host_bw = sc[layout.S_HOST_BW]
    rate = host_bw if host_bw > 0 else np.inf
    side = np.empty(links, dtype=np.int64)
    link_eff = np.empty(links)
    # Per link, the plan's seconds per byte (or per layer) of each transfer the rows scale (LINK_COEFFS), read once
    # per plan from the groups' tables so that the row loop reads one contiguous row per link.
    coef = np.empty((links, LINK_COEFFS))
    top = np.empty(links)  # per link: the busiest row's load over the step (the maximum over rows, in row order)
    per_row = np.empty((13, width))
    t_fwd, t_bwd, t_w, scratch = per_row[0], per_row[1], per_row[2], per_row[3]
    row_compute, row_recompute, row_tp, row_cp = per_row[4], per_row[5], per_row[6], per_row[7]
    row_ep, row_pp, row_contention = per_row[8], per_row[9], per_row[10]
    held_terms, share_terms = per_row[11], per_row[12]
    rp = np.empty((3, width))  # per row: dense and expert parameters per rank, full-recompute share
    base_steps = np.empty(min(chunk, n))
    gi = np.empty(len(comm_local), dtype=np.int64)  # the plan's row of each collective's tables
    by = np.empty(3, dtype=np.int64)  # the plan's row of each key collectives go by (fused.COMM_SOURCES)
    outside = scale_out
    for lnk in range(links):  # the same link classes for every plan
        side[lnk] = 2 if outside[lnk] > 0 else 1
        link_eff[lnk] = so if outside[lnk] > 0 else su
    for c0 in range(0, n, chunk):
        c1 = min(c0 + chunk, n)
        any_host = False
        any_mask = False
        for i in range(c0, c1):
            by_pass, by_dp, by_pp = keyidx[0][i], keyidx[4][i], keyidx[5][i]
            by[0], by[1], by[2] = by_pass, by_dp, by_pp
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
            # ---- perf.batch.prepare, one plan ----
            tp_i, pp_i, dp_i, cp_i = tp_col[i], pp_col[i], dp_col[i], cp_col[i]
            ep_i, etp_i, mbs_i, sched_i = ep_col[i], etp_col[i], mbs_col[i], schedule_col[i]
            zero_i, rc_i, rc_layers = zero_col[i], recompute_col[i], rc_layers_col[i]
            mask = offload_col[i]
            sp_b, lora_b = sp_col[i], lora_col[i]
            etp_i = etp_i if etp_i > 0 else tp_i  # PlanColumns.expert_tp
            p_tp, p_pp, p_dp, p_cp = float(tp_i), float(pp_i), float(dp_i), float(cp_i)
            tokens = float(mbs_i) * float(seq_len // cp_i)
            norm_tokens = tokens / p_tp if sp_b else tokens
            p_activation = ACTIVATION_BYTES * tokens * h
            p_routed = top_k * p_activation * float(etp_i) / p_tp
            p_ep_bytes = ACTIVATION_BYTES * norm_tokens * top_k * h
            p_ep_dedup = 1.0
            ep_domains_i = domains_col[i]
            if top_k > 0 and (ep_dedup_col[i] or ep_domains_i > 0):
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
            p_m = float(gbs_col[i] // (dp_i * mbs_i))
            edp_i = max((tp_i * dp_i * cp_i) // (etp_i * ep_i), 1)
            p_edp = float(edp_i)
            # ZeRO's shard groups (perf.columns.shard_groups): all of dp x cp and of edp, or HSDP's part of them
            shard_i = shard_col[i]
            p_hsdp = 1.0 if (0 < shard_i < dp_i) else 0.0
            p_dshard, p_eshard = p_dp * p_cp, p_edp
            if shard_i > 0:
                a_gcd, b_gcd = edp_i, dp_i // shard_i
                while b_gcd:  # gcd(edp, replicas)
                    a_gcd, b_gcd = b_gcd, a_gcd % b_gcd
                p_dshard, p_eshard = float(shard_i * cp_i), float(edp_i // a_gcd)
            if sched_i == INTERLEAVED:
                chunks_i = vpp_col[i]
            elif sched_i in (ZB_V, DUALPIPE):
                chunks_i = 2
            else:
                chunks_i = 1
            p_chunks = float(chunks_i)
            p_schedule = float(sched_i)
            p_shared = sc[layout.S_SHARED]
            p_etp_on = 1.0 if (etp_i > 1 and is_moe) else 0.0
            p_ep_on = 1.0 if ep_i > 1 else 0.0
            p_cp_on = 1.0 if cp_i > 1 else 0.0
            p_pp_on = 1.0 if pp_i > 1 else 0.0
            p_sp = 1.0 if sp_b else 0.0
            full_b = rc_i == layout.FULL_CODE
            p_full = 1.0 if full_b else 0.0
            p_selective = 1.0 if rc_i == layout.SELECTIVE_CODE else 0.0
            rc_mask = rc_mask_col[i]
            p_rc_core_attn = float((rc_mask >> layout.BIT_CORE_ATTN) & 1)
            p_rc_layernorm = float((rc_mask >> layout.BIT_LAYERNORM) & 1)
            p_rc_moe_act = float((rc_mask >> layout.BIT_MOE_ACT) & 1)
            p_rc_mlp = float((rc_mask >> layout.BIT_MLP) & 1)
            p_rc_shared = float((rc_mask >> layout.BIT_SHARED) & 1)
            p_rc_moe = float((rc_mask >> layout.BIT_MOE) & 1)
            p_rc_mla = float((rc_mask >> layout.BIT_MLA) & 1)
            p_tp_overlap = 1.0 if tp_overlap_col[i] else 0.0
            p_a2a_overlap = 1.0 if (a2a_overlap_col[i] or sched_i == DUALPIPE) else 0.0
            overlapped_p2p = sched_i in (INTERLEAVED, ZB_V, DUALPIPE)
            p_pp_blocking = 1.0 if (pp_i > 1 and not overlapped_p2p) else 0.0
            p_fsdp = 1.0 if (zero_i == 3 and not lora_b) else 0.0
            p_zero = float(zero_i)
            p_lora = 1.0 if lora_b else 0.0
            p_capacity, p_imbalance = capacity[i], imbalance[i]
            p_hbm_bw = sc[layout.S_HBM_BW]
            ur = keyidx[1][i]
            etp_ep = float(ep_i) * float(etp_i)
            for r in range(width):
                rp[0, r] = lay[5][ur, r] / p_tp
                rp[1, r] = lay[6][ur, r] / etp_ep
                if full_b:
                    if rc_layers > 0:
                        layers_r = lay[0][ur, r] + lay[1][ur, r]
                        rp[2, r] = _minimum_c(float(rc_layers * chunks_i), layers_r) / _maximum_c(layers_r, 1.0)
                    else:
                        rp[2, r] = 1.0
                else:
                    rp[2, r] = 0.0
            hw = hw_per_token[rc_i]
            if rc_layers > 0 and full_b:
                # Recompute of N layers per chunk executes that share of full recompute's extra forward FLOPs.
                for r in range(width):
                    held_terms[r] = lay[3][ur, r] * (lay[0][ur, r] + lay[1][ur, r])
                    share_terms[r] = held_terms[r] * rp[2, r]
                held = _pairwise_sum_c(held_terms, width)
                share = _pairwise_sum_c(share_terms, width) / _maximum_c(held, 1.0)
                none, every = hw_per_token[layout.NONE_CODE], hw_per_token[layout.FULL_CODE]
                hw = none + share * (every - none)
            tokens_per_step = float(gbs_col[i]) * float(seq_len)
            lora_factor = LORA_FLOP_FRACTION if lora_b else 1.0
            flops[0, i] = sc[layout.S_MODEL_FLOPS] * tokens_per_step * lora_factor
            flops[1, i] = hw * tokens_per_step * lora_factor

            # ---- perf.kernel._assemble, one plan ----
            g_tp_ar = gi[TP_AR]
            g_tp_rs = gi[TP_RS]
            g_etp_ar = gi[ETP_AR]
            g_cp_step = gi[CP_STEP]
            g_ep_a2a = gi[EP_A2A]
            g_pp_p2p = gi[PP_P2P]
            g_dp_ar = gi[DP_AR]
            g_dp_rs = gi[DP_RS]
            g_edp_ar = gi[EDP_AR]
            g_edp_rs = gi[EDP_RS]
            load = p_capacity if p_capacity > 0 else (p_imbalance if p_imbalance > 0 else default_load)
            sec = seconds[keyidx[0][i]]
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
            tp, pp, cp, m, chunks = p_tp, p_pp, p_cp, p_m, p_chunks
            act = p_activation

            # Tensor, expert, context and pipeline parallel transfers of one layer / chunk boundary.
            tp_one = _duration_c(rates, gi[TP_AR], TP_AR, act)
            tp_d_dur = 2.0 * tp_one
            routed = p_routed * load
            etp_on = p_etp_on > 0
            tp_m_dur = (1.0 + p_shared) * tp_one
            etp_dur = _duration_c(rates, gi[ETP_AR], ETP_AR, routed) if etp_on else 0.0
            ep_bytes = p_ep_bytes * load
            ep_on = p_ep_on > 0
            dedup = p_ep_dedup
            trimmed = rates[EP_A2A][g_ep_a2a, 1] * ep_bytes * (1.0 - dedup)
            ep_dur = 2.0 * (_duration_c(rates, gi[EP_A2A], EP_A2A, ep_bytes) - trimmed) if ep_on else 0.0
            cp_on = p_cp_on > 0
            cp_dur = (cp - 1.0) * _duration_c(rates, gi[CP_STEP], CP_STEP, p_kv_bytes) if cp_on else 0.0
            pp_on = p_pp_on > 0
            sp = p_sp > 0
            regather = 0.0 if sp else _duration_c(rates, gi[TP_RS], TP_RS, act)
            pp_dur = chunks * (_duration_c(rates, gi[PP_P2P], PP_P2P, p_pp_bytes) + regather) if pp_on else 0.0
            hsdp = p_hsdp > 0 and not p_lora > 0
            g_dpr_ar, g_edpr_ar = 0, 0
            if hsdp:
                g_dpr_ar, g_edpr_ar = comm_local[DPR_AR][by[comm_by[DPR_AR]]], comm_local[EDPR_AR][by[comm_by[EDPR_AR]]]
            for lnk in range(links):
                e = side[lnk]
                c = coef[lnk]
                tp_l = loads[TP_AR][e, g_tp_ar, lnk] * act
                c[C_TP_DENSE] = 2.0 * tp_l
                c[C_TP_MOE] = (1.0 + p_shared) * tp_l + (loads[ETP_AR][e, g_etp_ar, lnk] * routed if etp_on else 0.0)
                ep_scale = 1.0 - outside[lnk] * (1.0 - dedup)
                c[C_EP] = 2.0 * loads[EP_A2A][e, g_ep_a2a, lnk] * ep_bytes * ep_scale if ep_on else 0.0
                c[C_CP] = (
                    (cp - 1.0) * loads[CP_STEP][0, g_cp_step, lnk] / link_eff[lnk] * p_kv_bytes if cp_on else 0.0
                )
                regather_l = 0.0 if sp else loads[TP_RS][e, g_tp_rs, lnk] * act
                c[C_PP] = chunks * (loads[PP_P2P][e, g_pp_p2p, lnk] * p_pp_bytes + regather_l) if pp_on else 0.0
                c[C_DP_RS] = loads[DP_RS][e, g_dp_rs, lnk]
                c[C_EDP_RS] = loads[EDP_RS][e, g_edp_rs, lnk]
                c[C_DP_AR] = loads[DP_AR][e, g_dp_ar, lnk]
                c[C_EDP_AR] = loads[EDP_AR][e, g_edp_ar, lnk]
                if hsdp:
                    c[C_DPR_AR] = loads[DPR_AR][e, g_dpr_ar, lnk]
                    c[C_EDPR_AR] = loads[EDPR_AR][e, g_edpr_ar, lnk]

            hbm_rate = p_hbm_bw * memory
            full, selective, lora, fsdp = p_full > 0, p_selective > 0, p_lora > 0, p_fsdp > 0
            zero = p_zero
            tp_overlap = p_tp_overlap > 0
            tp_d_exposed = max(tp_d_dur - g_d, tp_d_dur / tp) if tp_overlap else tp_d_dur
            tp_m_exposed = (max(tp_m_dur - g_m, tp_m_dur / tp) if tp_overlap else tp_m_dur) + etp_dur
            half_d, half_m = 0.5 * tp_d_dur, 0.5 * tp_m_dur
            tp_d_back = tp_d_exposed if tp_overlap else half_d + max(half_d - w_d, 0.0)
            tp_m_back = (tp_m_exposed - etp_dur if tp_overlap else half_m + max(half_m - w_m, 0.0)) + etp_dur
            ep_exposed = max(ep_dur - f_m, 0.0) if p_a2a_overlap > 0 else ep_dur
            dshard, eshard = p_dshard, p_eshard
            grad_shard = dshard if zero >= 2 else 1.0
            interleaved = int(p_schedule) == INTERLEAVED
            spread = 1.0 + pp * (chunks - 1.0) / chunks if interleaved else 1.0
            sync = not lora and not fsdp
            zero0 = zero == 0
            gather_on = sync and not zero0
            slope_dp_rs = rates[DP_RS][g_dp_rs, 0]
            slope_edp_rs = rates[EDP_RS][g_edp_rs, 0]
            slope_dp_ar = rates[DP_AR][g_dp_ar, 0]
            slope_edp_ar = rates[EDP_AR][g_edp_ar, 0]
            slope_dpr_ar = rates[DPR_AR][g_dpr_ar, 0] if hsdp else 0.0
            slope_edpr_ar = rates[EDPR_AR][g_edpr_ar, 0] if hsdp else 0.0
            rc_light_mlp = max(p_rc_mlp, p_rc_shared)

            dp_exposed = -np.inf
            optimizer = 0.0
            any_row = False
            for lnk in range(links):
                top[lnk] = 0.0
            for r in range(width):
                count = lay[3][ur, r]
                if count <= 0.0:  # a padding row: nothing below reads it but the pipeline's fill, which weighs it by 0
                    t_fwd[r] = 0.0
                    t_bwd[r] = 0.0
                    t_w[r] = 0.0
                    continue
                nd, nm, head, first_rank = lay[0][ur, r], lay[1][ur, r], lay[2][ur, r], lay[4][ur, r]
                pd, pe, rc_share = rp[0, r], rp[1, r], rp[2, r]
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
                        p_rc_core_attn * (nd * a_d + nm * a_m)
                        + p_rc_layernorm * 0.4 * (nd * e_d + nm * e_m)
                        + p_rc_moe_act * 0.3 * nm * e_m
                        + rc_light_mlp * (nd * mlp_d + nm * mlp_m)
                        + p_rc_moe * nm * expert_m
                        + p_rc_mla * 0.1 * (nd * g_d + nm * g_m)
                    )
                else:
                    recompute = 0.0
                tp_fwd = nd * tp_d_exposed + nm * tp_m_exposed
                tp_bwd = nd * tp_d_back + nm * tp_m_back
                ep_fwd = nm * ep_exposed
                cp_fwd = nd * max(cp_dur - a_d, 0.0) + nm * max(cp_dur - a_m, 0.0)
                cp_bwd = nd * max(2.0 * cp_dur - FBF * a_d, 0.0) + nm * max(2.0 * cp_dur - FBF * a_m, 0.0)
                pp_fwd = pp_dur if (p_pp_blocking > 0 and count > 0) else 0.0
                recompute_comm = rc_share * (tp_fwd + ep_fwd + cp_fwd) if full else 0.0
                # FSDP per micro-batch, and the data-parallel reduction and gather of the last / first window.
                size_pd, size_pe = param_bytes * pd, param_bytes * pe
                grad_pd, grad_pe = grad_bytes * pd, grad_bytes * pe
                fsdp_d = slope_dp_rs * size_pd + rates[DP_RS][g_dp_rs, 2] if (slope_dp_rs > 0 and size_pd > 0) else 0.0
                fsdp_e = (
                    slope_edp_rs * size_pe + rates[EDP_RS][g_edp_rs, 2] if (slope_edp_rs > 0 and size_pe > 0) else 0.0
                )
                fsdp_dur = fsdp_d + fsdp_e if fsdp else 0.0
                ar_d = slope_dp_ar * grad_pd + rates[DP_AR][g_dp_ar, 2] if (slope_dp_ar > 0 and grad_pd > 0) else 0.0
                ar_e = (
                    slope_edp_ar * grad_pe + rates[EDP_AR][g_edp_ar, 2] if (slope_edp_ar > 0 and grad_pe > 0) else 0.0
                )
                rs_d = slope_dp_rs * grad_pd + rates[DP_RS][g_dp_rs, 2] if (slope_dp_rs > 0 and grad_pd > 0) else 0.0
                rs_e = (
                    slope_edp_rs * grad_pe + rates[EDP_RS][g_edp_rs, 2] if (slope_edp_rs > 0 and grad_pe > 0) else 0.0
                )
                # ZeRO-2 keeps only its shard of the gradients, so every micro-batch's gradients are reduce-scattered
                # during its backward (Rajbhandari et al. 2020 sec. 5.2; DeepSpeed reduces at every micro-step), not
                # once per step as a full local gradient buffer allows (ZeRO-1, Megatron's distributed optimizer).
                zero2 = sync and zero == 2
                z2_dur = rs_d + rs_e if zero2 else 0.0
                reduce_dur = (ar_d + ar_e if zero0 else rs_d + rs_e) if (sync and not zero2) else 0.0
                gather_dur = (rs_d + rs_e) * param_bytes / grad_bytes if gather_on else 0.0
                # HSDP: the gradient shard's all-reduce across the replicas (perf.kernel; plans without HSDP add zeros)
                rep_pd, rep_pe, rep_dur = 0.0, 0.0, 0.0
                if hsdp:
                    rep_pd, rep_pe = grad_bytes * pd / dshard, grad_bytes * pe / eshard
                    rep_d = (
                        slope_dpr_ar * rep_pd + rates[DPR_AR][g_dpr_ar, 2] if (slope_dpr_ar > 0 and rep_pd > 0) else 0.0
                    )
                    rep_e = (
                        slope_edpr_ar * rep_pe + rates[EDPR_AR][g_edpr_ar, 2]
                        if (slope_edpr_ar > 0 and rep_pe > 0)
                        else 0.0
                    )
                    rep_dur = rep_d + rep_e
                reduce_dur = reduce_dur + rep_dur
                buckets = max(layers, 1.0)
                fwd_block = tp_fwd + ep_fwd + cp_fwd + pp_fwd
                bwd_block = 2.0 * tp_bwd + 2.0 * ep_fwd + cp_bwd + pp_fwd + recompute_comm
                fwd_c = fwd_compute
                bwd_c = bwd_input + bwd_weight + recompute
                busiest_f = 0.0
                busiest_b = 0.0
                busiest_lf = 0.0
                busiest_lb = 0.0
                for lnk in range(links):
                    c = coef[lnk]
                    layer_l = nd * c[C_TP_DENSE] + nm * c[C_TP_MOE] + nm * c[C_EP] + layers * c[C_CP]
                    fl = layer_l + c[C_PP]
                    bl = 2.0 * layer_l + (rc_share * layer_l if full else 0.0) + c[C_PP]
                    fsdp_l = (c[C_DP_RS] * size_pd + c[C_EDP_RS] * size_pe) if fsdp else 0.0
                    if sync:
                        ar_l = c[C_DP_AR] * grad_pd + c[C_EDP_AR] * grad_pe
                        rs_l = c[C_DP_RS] * grad_pd + c[C_EDP_RS] * grad_pe
                        red_l = 0.0 if zero2 else (ar_l if zero0 else rs_l)
                    else:
                        rs_l = 0.0
                        red_l = 0.0
                    gat_l = rs_l * param_bytes / grad_bytes if gather_on else 0.0
                    if zero2:
                        bl += rs_l
                    red_l = red_l + (c[C_DPR_AR] * rep_pd + c[C_EDPR_AR] * rep_pe if hsdp else 0.0)
                    # the link's load over the step (perf.kernel: a loop of its own over rows after this one)
                    top[lnk] = max(top[lnk], m * (fl + bl + 3.0 * fsdp_l) + red_l + gat_l)
                    busiest_f = max(busiest_f, fl + fsdp_l) if lnk > 0 else fl + fsdp_l
                    busiest_b = max(busiest_b, bl + 2.0 * fsdp_l) if lnk > 0 else bl + 2.0 * fsdp_l
                    lf = spread * fl + gat_l
                    lb = spread * bl + red_l
                    busiest_lf = max(busiest_lf, lf) if lnk > 0 else lf
                    busiest_lb = max(busiest_lb, lb) if lnk > 0 else lb
                f_win = max(max(fwd_c + fwd_block + fsdp_dur / buckets, busiest_f), fsdp_dur)
                b_win = max(
                    max(bwd_c + bwd_block + (fsdp_dur + z2_dur) / buckets, busiest_b),
                    2.0 * fsdp_dur + z2_dur,
                )
                t_fwd[r] = f_win
                t_bwd[r] = b_win
                row_contention[r] = (f_win - fwd_c - fwd_block) + (b_win - bwd_c - bwd_block)
                w_share = bwd_weight / max(bwd_c, 1e-30) if bwd_c > 0 else 0.0
                t_w[r] = b_win * w_share
                last_bwd = max(max(spread * bwd_c + spread * bwd_block + reduce_dur / buckets, busiest_lb), reduce_dur)
                first_fwd = max(max(spread * fwd_c + spread * fwd_block + gather_dur / buckets, busiest_lf), gather_dur)
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
                if lay[3][ur, r] > 0:
                    per_mb = t_fwd[r] + t_bwd[r]
                    if slowest < 0 or per_mb > t_max:
                        slowest, t_max = r, per_mb
            if slowest < 0:
                slowest = 0
                t_max = t_fwd[0] + t_bwd[0]
            count_row = lay[3][ur]
            steady = m * t_max
            bubble = 0.0
            if pp > 1:
                for r in range(width):
                    scratch[r] = t_fwd[r] + t_bwd[r]
                plain = _fill_drain_c(scratch, count_row, width, slowest)
                schedule = int(p_schedule)
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
                link_out[i, lnk] = top[lnk]
                busiest = max(busiest, top[lnk])
            extra = max(busiest - step, 0.0)
            base = step + extra
            bd[0, i] = m * row_compute[slowest]
            bd[1, i] = m * row_recompute[slowest]
            bd[2, i] = m * row_tp[slowest]
            bd[3, i] = m * row_cp[slowest]
            bd[4, i] = m * row_ep[slowest]
            bd[5, i] = dp_exposed
            bd[6, i] = m * row_pp[slowest]
            bd[7, i] = m * row_contention[slowest] + extra
            bd[8, i] = bubble
            bd[9, i] = optimizer
            bd[10, i] = step_oh

            # ---- perf.memory_loop._memory, one plan ----
            ua, uk = keyidx[2][i], keyidx[3][i]
            dense_layer, moe_layer = act_table[ua, 0], act_table[ua, 1]
            dense_kept, moe_kept = kept_table[uk, 0], kept_table[uk, 1]
            dense_dp = p_dshard
            expert_dp = p_eshard
            copy = 2.0 if sched_i == DUALPIPE else 1.0
            logits = LOGIT_BYTES * float(mbs_i) * float(seq_len // cp_i) * sc[layout.S_VOCAB] / p_tp
            best = -np.inf
            w_best, g_best, o_best, a_best, buffers_best = 0.0, 0.0, 0.0, 0.0, 0.0
            z = p_zero
            for r in range(width):
                if lay[3][ur, r] <= 0:
                    continue
                w, g, o, a, buffers, total = _row_memory_c(
                    copy,
                    state[0],
                    state[1],
                    state[2],
                    z,
                    lora_b,
                    rp[0, r],
                    rp[1, r],
                    dense_dp,
                    expert_dp,
                    sched_i,
                    p_chunks,
                    p_pp,
                    lay[4][ur, r],
                    p_m,
                    rp[2, r],
                    dense_layer,
                    moe_layer,
                    dense_kept,
                    moe_kept,
                    lay[0][ur, r],
                    lay[1][ur, r],
                    lay[2][ur, r],
                    logits,
                    sc[layout.S_RESERVE_BYTES],
                    sc[layout.S_RESERVE_FRACTION],
                )
                if total > best:
                    best = total
                    w_best, g_best, o_best, a_best, buffers_best = w, g, o, a, buffers

            # ---- perf.offload.prepare_offload and offload_time, one plan ----
            keep_i = keep[ur]
            host = 0.0
            offload = 0.0
            if mask > 0:
                any_mask = True
                per_micro_batch = 0.0
                if (mask & ACTIVATIONS) > 0:
                    first = True
                    for r in range(width):
                        if lay[3][ur, r] > 0:
                            share_r = rp[2, r]
                            dense_r = share_r * dense_layer + (1.0 - share_r) * dense_kept
                            moe_r = share_r * moe_layer + (1.0 - share_r) * moe_kept
                            value = lay[0][ur, r] * dense_r + lay[1][ur, r] * moe_r
                        else:
                            value = 0.0
                        per_micro_batch = value if first else _maximum_c(per_micro_batch, value)
                        first = False
                w_best, o_best, a_best, buffers_best, host, offload = _offload_c(
                    mask,
                    w_best,
                    g_best,
                    o_best,
                    a_best,
                    keep_i,
                    p_m,
                    per_micro_batch,
                    bd[0, i],
                    bd[1, i],
                    rate,
                    sc[layout.S_RESERVE_BYTES],
                    sc[layout.S_RESERVE_FRACTION],
                )
            if host != 0.0:
                any_host = True
            mem[0, i], mem[1, i], mem[2, i], mem[3, i], mem[4, i] = w_best, g_best, o_best, a_best, buffers_best
            mem[5, i], mem[6, i] = keep_i, host
            base_steps[i - c0] = base
            bd[11, i] = offload
            step_out[i] = base + offload
        if any_mask and not any_host:  # numpy adds offload time only where some plan of the chunk offloads
            for i in range(c0, c1):
                bd[11, i] = 0.0
                step_out[i] = base_steps[i - c0] + 0.0


_COMPILED: dict[str, Callable[..., None]] = {}


def _load() -> Callable[..., None]:
    """Compile (or load from numba's on-disk cache) the loop, the helpers it calls first."""
    global _pairwise_sum_c, _minimum_c, _maximum_c, _duration_c, _fill_drain_c, _row_memory_c, _offload_c
    if not _COMPILED:
        import numba

        def jit(function: Callable[..., Any]) -> Any:
            return numba.njit(cache=True, nogil=True)(function)

        kernel._load()  # perf.kernel's compiled helpers, which the loop calls
        _duration_c, _fill_drain_c = kernel._duration_c, kernel._fill_drain_c
        _pairwise_sum_c, _minimum_c = jit(rows.pairwise_sum), jit(rows.minimum)
        _maximum_c = rows._maximum_c = jit(rows.maximum)
        _row_memory_c, _offload_c = jit(rows.row_memory), jit(rows.offload)
        _COMPILED["evaluate"] = jit(_evaluate)
    return _COMPILED["evaluate"]


def evaluate_kernel(*args: Any) -> None:
    """The compiled :func:`_evaluate` (numba must be installed: ``perf.kernel.AVAILABLE``)."""
    _load()(*args)
