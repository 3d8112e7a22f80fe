"""The compiled loop of the fused pass (``perf.fused``): every stage of the step model for one plan at a time.

Inputs are plan columns (those of a plan's run of equal structure columns, ``perf.keys.Runs``, one value per run),
per-key tables and scalars in the orders ``perf.fused`` lays out (``RUN_COLUMNS``, ``RUN_FLAGS``, ``RUN_KEYS``,
``INT_COLUMNS``, ``FLAG_COLUMNS``, ``LAYOUT_TABLES``, ``SCALARS``, ``INT_SCALARS``, ``COMM_SOURCES``); the assembly is
``perf.kernel._assemble``'s, statement for statement (the numpy ``perf.batch.assemble_reference`` is the reference
for both), with each plan's ``perf.batch.prepare`` columns computed in place of reading them. What a plan shares
with the plan before it when the two differ only in ZeRO stage, recompute and offload (its communication times and
link loads, and each pipeline row's parts that do not depend on those) is found once per such run
(``perf.fused_shared``, compiled into the loop) and kept in scratch arrays; the rest is found per plan. HSDP's
replica all-reduce, a branch inside the kernel's row loop, is part of the shared values (zero for plans without
HSDP). Results go to the arrays of ``perf.fused.evaluate_fused``: breakdown and memory as rows (fields x plans).

The loop and the helpers it calls with arrays are compiled without numba's reference counting (its scratch is
allocated before, by :func:`_scratch`): counting costs atomic operations on every array a compiled function takes
or makes, which had been most of a plan's time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rainier.perf import fused as layout
from rainier.perf import fused_rows as rows
from rainier.perf import fused_shared as shared
from rainier.perf import kernel
from rainier.perf.compute import LORA_FLOP_FRACTION
from rainier.perf.fused_shared import (
    L_AR,
    L_FSDP,
    L_GATHER,
    L_LAYER,
    L_PP,
    L_REP,
    L_RS,
    M_G,
    M_G_SHARD,
    M_HELD,
    M_LOGITS,
    M_O,
    M_O_SHARD,
    M_W,
    M_W_SHARD,
    P_A_D,
    P_A_M,
    P_CHUNKS,
    P_E_D,
    P_E_M,
    P_EXPERT_M,
    P_F_H,
    P_G_D,
    P_G_M,
    P_M,
    P_MLP_D,
    P_MLP_M,
    P_PP,
    P_SPREAD,
    R_ACC,
    R_ACC_SHARD,
    R_AR,
    R_BWD_BLOCK,
    R_BWD_IN,
    R_BWD_W,
    R_CP_BWD,
    R_CP_FWD,
    R_EP_FWD,
    R_FSDP,
    R_FSDP_Q,
    R_FSDP_Q_BWD,
    R_FWD,
    R_FWD_BLOCK,
    R_GATHER,
    R_GATHER_Q,
    R_OPT,
    R_OPT_SHARD,
    R_PP_FWD,
    R_RED_AR_Q,
    R_RED_NONE_Q,
    R_RED_RS_Q,
    R_REP,
    R_RS,
    R_TP_BWD,
    R_TP_FWD,
    R_Z2_Q,
)
from rainier.perf.kernel import DUALPIPE, INTERLEAVED, ZB_V, ZERO_BUBBLE
from rainier.perf.offload import ACTIVATIONS

FloatArray = NDArray[np.float64]

# Replaced by their compiled versions on the first call (see _load).
_pairwise_sum_c, _minimum_c, _maximum_c = rows.pairwise_sum, rows.minimum, rows.maximum
_row_memory_c, _offload_c = rows.row_memory, rows.offload
_fill_drain_c, _shared_c = kernel._fill_drain, shared.shared


def _evaluate(
    run_of: NDArray[np.int64],  # each plan's run (perf.keys.Runs)
    run_ints: Any,  # RUN_COLUMNS: one int64 array of runs each
    run_flags: Any,  # RUN_FLAGS: one bool array of runs each
    run_keys: Any,  # RUN_KEYS: each run's pass key, layout, with-dp and with-pp key
    ints: Any,  # INT_COLUMNS: one int64 array of plans each
    flags: Any,  # FLAG_COLUMNS: one bool array of plans each
    capacity: FloatArray,
    imbalance: FloatArray,
    comm_local: Any,  # COMM_FIELDS: each key's row of the collectives' tables (perf.keys.PlanKeys.comm_local)
    comm_by: NDArray[np.int64],  # COMM_FIELDS: the key each goes by (0: pass key, 1: with dp, 2: with pp)
    keyidx: Any,  # each plan's activation and kept-activation key
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
    scratch_arrays: Any,  # _scratch's
) -> None:
    """Every plan's step time, breakdown, memory, FLOPs and link loads, written into the output arrays."""
    n = run_of.shape[0]
    run = (run_ints, run_flags, run_keys)
    schedule_run, lora_run, row_run = run_ints[8], run_flags[1], run_keys[1]  # fused.RUN_COLUMNS, RUN_FLAGS, RUN_KEYS
    gbs_col, zero_col, recompute_col, domains_col = ints[0], ints[1], ints[2], ints[3]  # fused.INT_COLUMNS
    rc_mask_col, rc_layers_col, offload_col = ints[4], ints[5], ints[6]
    tp_overlap_col, a2a_overlap_col, ep_dedup_col = flags[0], flags[1], flags[2]  # fused.FLAG_COLUMNS
    width = lay[0].shape[1]
    links = scale_out.shape[0]
    su, so, default_load, step_oh = eff[0], eff[1], eff[2], eff[4]
    seq_len = isc[layout.I_SEQ_LEN]
    host_bw = sc[layout.S_HOST_BW]
    rate = host_bw if host_bw > 0 else np.inf
    side, link_eff, pv, row_inv, link_inv, mem_rows, coef, top, per_row, rp, base_steps, gi, by = scratch_arrays
    t_fwd, t_bwd, t_w, scratch = per_row[0], per_row[1], per_row[2], per_row[3]
    row_compute, row_recompute, row_tp, row_cp = per_row[4], per_row[5], per_row[6], per_row[7]
    row_ep, row_pp, row_contention = per_row[8], per_row[9], per_row[10]
    held_terms, share_terms = per_row[11], per_row[12]
    outside = scale_out
    for lnk in range(links):  # the same link classes for every plan
        side[lnk] = 2 if outside[lnk] > 0 else 1
        link_eff[lnk] = so if outside[lnk] > 0 else su
    have = False  # whether the shared scratch holds a plan's values (perf.fused_shared), and that plan's signature
    last_run, last_gbs, last_domains, last_flags, last_load = 0, 0, 0, 0, 0.0
    for c0 in range(0, n, chunk):
        c1 = min(c0 + chunk, n)
        any_host = False
        any_mask = False
        for i in range(c0, c1):
            u = run_of[i]
            ur = row_run[u]
            sched_i = schedule_run[u]
            p_capacity, p_imbalance = capacity[i], imbalance[i]
            load = p_capacity if p_capacity > 0 else (p_imbalance if p_imbalance > 0 else default_load)
            # the plan's signature (perf.fused_shared): its run decides its pass, data-parallel, pipeline and layout
            # keys, schedule and interleaving
            gbs_i, domains_i = gbs_col[i], domains_col[i]
            flag_bits = (
                (1 if tp_overlap_col[i] else 0) + (2 if a2a_overlap_col[i] else 0) + (4 if ep_dedup_col[i] else 0)
            )
            same = (
                have
                and u == last_run
                and gbs_i == last_gbs
                and domains_i == last_domains
                and flag_bits == last_flags
                and load == last_load
            )
            if not same:
                _shared_c(
                    i, u, run, ints, flags, load, comm_local, comm_by, seconds, rates, loads, outside, side, link_eff,
                    lay, sc, isc, ep_plain, ep_distinct, eff, consts, state, by, gi, coef, pv, rp, row_inv, link_inv,
                    mem_rows,
                )  # fmt: skip
                have = True
                last_run, last_gbs, last_domains, last_flags, last_load = u, gbs_i, domains_i, flag_bits, load
            # ---- perf.batch.prepare, one plan: what ZeRO, recompute and offload change ----
            zero_i, rc_i, rc_layers = zero_col[i], recompute_col[i], rc_layers_col[i]
            mask = offload_col[i]
            lora_b = lora_run[u]
            chunks_i = int(pv[P_CHUNKS])
            full_b = rc_i == layout.FULL_CODE
            rc_mask = rc_mask_col[i]
            p_rc_core_attn = float((rc_mask >> layout.BIT_CORE_ATTN) & 1)
            p_rc_layernorm = float((rc_mask >> layout.BIT_LAYERNORM) & 1)
            p_rc_moe_act = float((rc_mask >> layout.BIT_MOE_ACT) & 1)
            p_rc_mlp = float((rc_mask >> layout.BIT_MLP) & 1)
            p_rc_shared = float((rc_mask >> layout.BIT_SHARED) & 1)
            p_rc_moe = float((rc_mask >> layout.BIT_MOE) & 1)
            p_rc_mla = float((rc_mask >> layout.BIT_MLA) & 1)
            for r in range(width):
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
            tokens_per_step = float(gbs_i) * float(seq_len)
            lora_factor = LORA_FLOP_FRACTION if lora_b else 1.0
            flops[0, i] = sc[layout.S_MODEL_FLOPS] * tokens_per_step * lora_factor
            flops[1, i] = hw * tokens_per_step * lora_factor

            # ---- perf.kernel._assemble, one plan: the rows' windows from their shared parts ----
            pp, m, chunks = pv[P_PP], pv[P_M], pv[P_CHUNKS]
            f_h, a_d, a_m, e_d, e_m = pv[P_F_H], pv[P_A_D], pv[P_A_M], pv[P_E_D], pv[P_E_M]
            mlp_d, mlp_m, expert_m, g_d, g_m = pv[P_MLP_D], pv[P_MLP_M], pv[P_EXPERT_M], pv[P_G_D], pv[P_G_M]
            spread = pv[P_SPREAD]
            full, selective = full_b, rc_i == layout.SELECTIVE_CODE
            lora, fsdp = lora_b, zero_i == 3 and not lora_b
            zero = float(zero_i)
            sync = not lora and not fsdp
            zero0 = zero == 0
            gather_on = sync and not zero0
            # ZeRO-2 keeps only its shard of the gradients, so every micro-batch's gradients are reduce-scattered
            # during its backward (Rajbhandari et al. 2020 sec. 5.2; DeepSpeed reduces at every micro-step), not
            # once per step as a full local gradient buffer allows (ZeRO-1, Megatron's distributed optimizer).
            zero2 = sync and zero == 2
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
                rc_share = rp[2, r]
                fwd_compute = row_inv[R_FWD, r]
                # accum_bytes * (pd + pe) / (dshard under ZeRO-2 and 3, else 1) / hbm_rate (perf.fused_shared)
                accumulate = 0.0 if lora else (row_inv[R_ACC_SHARD, r] if zero >= 2 else row_inv[R_ACC, r])
                bwd_input = row_inv[R_BWD_IN, r]
                bwd_weight = row_inv[R_BWD_W, r] + accumulate
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
                tp_fwd, tp_bwd, ep_fwd = row_inv[R_TP_FWD, r], row_inv[R_TP_BWD, r], row_inv[R_EP_FWD, r]
                cp_fwd, cp_bwd, pp_fwd = row_inv[R_CP_FWD, r], row_inv[R_CP_BWD, r], row_inv[R_PP_FWD, r]
                recompute_comm = rc_share * (tp_fwd + ep_fwd + cp_fwd) if full else 0.0
                # FSDP per micro-batch, and the data-parallel reduction and gather of the last / first window.
                fsdp_dur = row_inv[R_FSDP, r] if fsdp else 0.0
                z2_dur = row_inv[R_RS, r] if zero2 else 0.0
                reduce_dur = (row_inv[R_AR, r] if zero0 else row_inv[R_RS, r]) if (sync and not zero2) else 0.0
                gather_dur = row_inv[R_GATHER, r] if gather_on else 0.0
                reduce_dur = reduce_dur + row_inv[R_REP, r]
                # each duration / buckets, as perf.fused_shared found it for the plan's case
                fsdp_q = row_inv[R_FSDP_Q, r] if fsdp else 0.0
                fsdp_z2_q = row_inv[R_FSDP_Q_BWD, r] if fsdp else (row_inv[R_Z2_Q, r] if zero2 else 0.0)
                if sync and not zero2:
                    reduce_q = row_inv[R_RED_AR_Q, r] if zero0 else row_inv[R_RED_RS_Q, r]
                else:
                    reduce_q = row_inv[R_RED_NONE_Q, r]
                gather_q = row_inv[R_GATHER_Q, r] if gather_on else 0.0
                fwd_block = row_inv[R_FWD_BLOCK, r]
                bwd_block = row_inv[R_BWD_BLOCK, r] + recompute_comm
                fwd_c = fwd_compute
                bwd_c = bwd_input + bwd_weight + recompute
                busiest_f = 0.0
                busiest_b = 0.0
                busiest_lf = 0.0
                busiest_lb = 0.0
                for lnk in range(links):
                    layer_l, pp_l = link_inv[r, lnk, L_LAYER], link_inv[r, lnk, L_PP]
                    fsdp_v, ar_v, rs_v = link_inv[r, lnk, L_FSDP], link_inv[r, lnk, L_AR], link_inv[r, lnk, L_RS]
                    gat_v, rep_v = link_inv[r, lnk, L_GATHER], link_inv[r, lnk, L_REP]
                    fl = layer_l + pp_l
                    bl = 2.0 * layer_l + (rc_share * layer_l if full else 0.0) + pp_l
                    fsdp_l = fsdp_v if fsdp else 0.0
                    rs_l = rs_v if sync else 0.0
                    red_l = (0.0 if zero2 else (ar_v if zero0 else rs_l)) if sync else 0.0
                    gat_l = gat_v if gather_on else 0.0
                    if zero2:
                        bl += rs_l
                    red_l = red_l + rep_v
                    # the link's load over the step (perf.kernel: a loop of its own over rows after this one)
                    top[lnk] = max(top[lnk], m * (fl + bl + 3.0 * fsdp_l) + red_l + gat_l)
                    busiest_f = max(busiest_f, fl + fsdp_l) if lnk > 0 else fl + fsdp_l
                    busiest_b = max(busiest_b, bl + 2.0 * fsdp_l) if lnk > 0 else bl + 2.0 * fsdp_l
                    lf = spread * fl + gat_l
                    lb = spread * bl + red_l
                    busiest_lf = max(busiest_lf, lf) if lnk > 0 else lf
                    busiest_lb = max(busiest_lb, lb) if lnk > 0 else lb
                f_win = max(max(fwd_c + fwd_block + fsdp_q, busiest_f), fsdp_dur)
                b_win = max(max(bwd_c + bwd_block + fsdp_z2_q, busiest_b), 2.0 * fsdp_dur + z2_dur)
                t_fwd[r] = f_win
                t_bwd[r] = b_win
                row_contention[r] = (f_win - fwd_c - fwd_block) + (b_win - bwd_c - bwd_block)
                w_share = bwd_weight / max(bwd_c, 1e-30) if bwd_c > 0 else 0.0
                t_w[r] = b_win * w_share
                last_bwd = max(max(spread * bwd_c + spread * bwd_block + reduce_q, busiest_lb), reduce_dur)
                first_fwd = max(max(spread * fwd_c + spread * fwd_block + gather_q, busiest_lf), gather_dur)
                dp_row = max(last_bwd - spread * b_win, 0.0) + max(first_fwd - spread * f_win, 0.0)
                dp_exposed = max(dp_exposed, dp_row - first_rank * b_win)
                # opt_bytes * (pd, pe over their ZeRO shards from ZeRO-1 on) / hbm_rate (perf.fused_shared)
                opt_row = 0.0 if lora else (row_inv[R_OPT_SHARD, r] if zero >= 1 else row_inv[R_OPT, r])
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
                schedule = sched_i
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
            ua, uk = keyidx[0][i], keyidx[1][i]
            dense_layer, moe_layer = act_table[ua, 0], act_table[ua, 1]
            dense_kept, moe_kept = kept_table[uk, 0], kept_table[uk, 1]
            best = -np.inf
            w_best, g_best, o_best, a_best, buffers_best = 0.0, 0.0, 0.0, 0.0, 0.0
            for r in range(width):
                if lay[3][ur, r] <= 0:
                    continue
                # the row's states under the plan's ZeRO stage (perf.fused_shared found them for each)
                w = mem_rows[M_W_SHARD, r] if zero >= 3 else mem_rows[M_W, r]
                if lora_b:
                    g = 0.0
                    o = 0.0
                else:
                    g = mem_rows[M_G_SHARD, r] if zero >= 2 else mem_rows[M_G, r]
                    o = mem_rows[M_O_SHARD, r] if zero >= 1 else mem_rows[M_O, r]
                a, buffers, total = _row_memory_c(
                    w,
                    g,
                    o,
                    mem_rows[M_HELD, r],
                    rp[2, r],
                    dense_layer,
                    moe_layer,
                    dense_kept,
                    moe_kept,
                    lay[0][ur, r],
                    lay[1][ur, r],
                    mem_rows[M_LOGITS, r],
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
                    m,
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


def _scratch(width: int, links: int, comm: int, chunk: int, n: int) -> tuple[NDArray[Any], ...]:
    """The loop's scratch arrays, allocated before it so that it runs without numba's reference counting (which
    costs atomic operations on every array a compiled function takes or makes)."""
    return (
        np.empty(links, dtype=np.int64),  # side: the side of the groups' loads tables each link reads
        np.empty(links),  # link_eff: the link's scale-up or scale-out efficiency
        np.empty(len(shared.PLAN_VALUES)),  # what the plans of a run share (perf.fused_shared)
        np.empty((len(shared.ROW_VALUES), width)),
        np.empty((width, links, len(shared.LINK_VALUES))),
        np.empty((len(shared.MEMORY_VALUES), width)),
        np.empty((links, shared.LINK_COEFFS)),  # and its per-link coefficients
        np.empty(links),  # top: per link, the busiest row's load over the step (the maximum over rows, in row order)
        np.empty((13, width)),  # per row: windows, pipeline scratch, breakdown parts, recompute FLOP terms
        np.empty((3, width)),  # rp, per row: dense and expert parameters per rank, full-recompute share
        np.empty(max(min(chunk, n), 1)),  # base_steps: each plan's step before offload, of one chunk
        np.empty(comm, dtype=np.int64),  # gi: the plan's row of each collective's tables
        np.empty(3, dtype=np.int64),  # by: the plan's row of each key collectives go by (fused.COMM_SOURCES)
    )


_COMPILED: dict[str, Callable[..., None]] = {}


def _load() -> Callable[..., None]:
    """Compile (or load from numba's on-disk cache) the loop, the helpers it calls first."""
    global _pairwise_sum_c, _minimum_c, _maximum_c, _fill_drain_c, _row_memory_c, _offload_c, _shared_c
    if not _COMPILED:
        import numba

        def jit(function: Callable[..., Any]) -> Any:
            return numba.njit(cache=True, nogil=True)(function)

        kernel._load()  # perf.kernel's compiled helpers, which the loop calls

        bare_options: dict[str, Any] = {"_nrt": False}  # numba's flag (no stub knows it): no reference counting

        def bare(function: Callable[..., Any]) -> Any:  # for functions that allocate no arrays
            return numba.njit(cache=True, nogil=True, **bare_options)(function)

        _fill_drain_c, _pairwise_sum_c = bare(kernel._fill_drain), bare(rows.pairwise_sum)
        _minimum_c = jit(rows.minimum)
        _maximum_c = rows._maximum_c = jit(rows.maximum)
        _row_memory_c, _offload_c = jit(rows.row_memory), jit(rows.offload)
        shared._minimum_c, shared._maximum_c, shared._duration_c = _minimum_c, _maximum_c, kernel._duration_c
        shared._held_c = jit(rows.held_micro_batches)
        _shared_c = numba.njit(cache=True, nogil=True, inline="always")(shared.shared)  # no call: its arguments
        _COMPILED["evaluate"] = bare(_evaluate)
    return _COMPILED["evaluate"]


def evaluate_kernel(*args: Any) -> None:
    """The compiled :func:`_evaluate` of ``args`` (its arguments but the scratch; numba must be installed:
    ``perf.kernel.AVAILABLE``)."""
    run_of, comm_local, scale_out, lay, chunk = args[0], args[8], args[14], args[15], args[27]
    scratch = _scratch(lay[0].shape[1], scale_out.shape[0], len(comm_local), chunk, len(run_of))
    _load()(*args, scratch)
