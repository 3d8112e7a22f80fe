"""The serving model against the published inference runs: accuracy bounds and a reproducible fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rainier.serve.efficiency import load_serve_efficiency
from rainier.serve.fitting import calibrate_inference_file
from rainier.serve.validate import _prepared, load_inference_cases, validate_inference_file

ROOT = Path(__file__).resolve().parents[2]
CASES = [
    ROOT / "validation" / name
    for name in ("inference.yaml", "inference-trn2.yaml", "inference-mlperf.yaml", "inference-open.yaml")
]
# Issue 13's targets: all cases median <= 8%; leave-one-group-out median <= 12%, p90 <= 30%; Trainium2 median
# <= 15%. Not met yet. The bounds below guard what the model reaches today so that a change cannot make it worse
# unnoticed: over the four public files (371 targets, 23 groups; the in-flight MLPerf and open-engine cases were
# then simulated, not fitted) all median 17.3%, A+B p90 91.3%; leave-one-group-out median 25.7%, p90 91.4%; the
# original static set (inference.yaml + inference-trn2.yaml) median 7.8%. Trust-C rows are scored, not fitted.
# Issue 13's data-parallel attention layout (ep > tp) brought 23 targets of SGLang's wide-EP DeepSeek-V3/Kimi K2
# deployments in (scored and cross-validated, not fitted): their held-out median is 58%, so over 394 targets the
# all median is 23.5% and leave-one-group-out 28.5%, p90 91.3%; on the 371 targets scored before, LOGO median
# 26.1%, p90 91.3%. Costing drafters as they run on Trainium2 (a named draft model's own layers; vLLM Neuron's
# separately launched EAGLE drafter; the drafter's prefill in the TTFT) took the Trainium2 file from median 52.8% to
# 23.6%, all 394 targets from 23.5% to 21.1%, leave-one-group-out median from 28.5% to 28.2%. MLA's absorbed decode
# attention, 16-bit caches multiplied in 16 bits (SGLang's and vLLM's auto cache) and SGLang's two-batch overlap
# took the open-engine file from 34.8% to 28.0%, A+B p90 from 91.3% to 89.4%, leave-one-group-out median from 28.2%
# to 27.6% and p90 from 91.3% to 90.0% (the fit unchanged: none of it touches a fitted case). TensorRT-LLM's default
# per-iteration budget (max_num_tokens 8192 from v0.11, whole prompts; NIM's engines) took the NIM closed-loop
# sweep from 10.5% to 2.4% (no more synchronised waves of 50 prompts prefilled at once): open file 9.2%, all 16.3%,
# A+B p90 88.2%, leave-one-group-out median 24.8%, p90 88.8%. Prefill dispatch crossing to each node once (DeepEP's
# normal kernels) took Kimi K2's prefill from -58% to -25%: all 16.2%, leave-one-group-out median 24.5%. Scoring
# MLPerf Server/Interactive at the model's own highest rate within the p99 bounds (load: max_rate) instead of the
# published rate: all 16.5%, A+B p90 76.1%, leave-one-group-out median 23.2%, p90 77.3%. The memory-bound kernels'
# traffic (add-norms, rotary, activations) in every iteration: all 16.1%, leave-one-group-out 22.9%, p90 76.3%.
# Offline and closed-loop in-flight cases steering the family and accelerator fits through their simulated responses
# (serve.fitting; Blackwell gets a B200 entry): all 15.2%, leave-one-group-out 21.8%, p90 76.5%. A generation
# level (nvidia-ampere, -hopper, -blackwell) between the vendor's entry and the accelerator's: all 13.5%,
# leave-one-group-out 18.9%, p90 76.2%. Reading "bf16 (remark)" as bf16 brings the Trainium2 file's last case in
# (trust C, 4 targets): all 398 targets 14.0%, leave-one-group-out 19.2%, p90 77.1%. A pipeline-parallel replica
# keeping pp micro-batch groups in flight (MLPerf's Llama 3.1 405B tp2 pp2 / tp4 pp2 Offline runs went from -38% to
# -50% to within 15%): all 13.1%, leave-one-group-out 18.7%, p90 75.8%. Half a tile of padded rows per weight GEMM
# (MLPerf Server TPOT on H200 Llama 2 70B from -73% to -40% before the refit): all 12.7%, A+B p90 71.6%,
# leave-one-group-out 18.5%, p90 72.8%; the MLPerf file 40.0% -> 26.8%. MLPerf Server/Interactive trials run to
# the steady state (LoadGen's 600 s or five request lifetimes, not ~2 lifetimes) and the benchmarks' stated request
# counts are replayed as run: all 11.0%, A+B p90 70.7%, leave-one-group-out 16.3%, p90 73.4% (the four MLPerf
# groups' held-out medians 48.0/23.2/32.6/16.9% -> 28.9/17.1/24.9/12.0%). Seven bisection steps instead of eight
# (the rate within 1% of the offline capacity; the suite's serving fit ~35 s shorter): all 11.7%, A+B p90 67.5%,
# leave-one-group-out 16.3%, p90 73.4% (MLPerf groups 25.6/20.2/24.9/12.1%). An expansion serving every level of
# the fit within its reach and Offline runs simulated as one replica (exact by symmetry; counts rounded up to a
# multiple of the replicas) moved the fit by under 0.3%: all 11.2%, A+B p90 67.5%, leave-one-group-out 16.2%, p90
# 74.1%. A torus all-reduce over both axes at once (Neuron's flat rings; serve.dispatch.concurrent_torus_axes) and
# a Trainium entry from Trainium2's three cases when Trainium1 is held out: all 10.9%, A+B p90 67.5%,
# leave-one-group-out 15.1%, p90 73.2% (Trainium1 held out 16.5% -> 13.6%, MLPerf H200 12.3% -> 12.6%). An engine
# without a stated max_batch running its own default (TensorRT-LLM 2048, SGLang's request pool) instead of vLLM's
# 256: all 10.6%, A+B p90 64.7%, leave-one-group-out 14.5%, p90 71.6% (MLPerf v4.1 held out 25.7% -> 21.5%,
# GB200/GB300 24.9% -> 22.5%, B200 18.3% -> 19.3%). The vLLM FP8-KV blog's closed loops replayed with their stated
# +/-15% lengths (equal requests had moved in lockstep, each round's 20k-token prompts queueing behind each other:
# TTFT +60% -> -9%): all 11.0%, A+B p90 65.2%, leave-one-group-out 15.2%, p90 73.8%. Those TTFTs had held Hopper's
# compute up (H100 compute 0.64 -> 0.57, comm 0.60 -> 0.84, near NCCL's measured 0.82), and the lower comm had
# stood in for what SGLang's DeepEP runs lack (their prefill is compute-bound at about twice the model's GEMM time):
# SGLang LargeEP H100 held out 15.6% -> 58.5%, MLPerf H200 12.6% -> 9.8%, v4.1 21.5% -> 19.5%. TensorRT-LLM's
# default batch dated as its release notes give it (256 from v0.11, 2048 from v0.14; the B200 preview build on
# TensorRT 10.1 predates v0.11's 10.2, so it keeps 256 and no token budget, as before the engine defaults): all
# 11.3%, A+B p90 69.1%, leave-one-group-out 15.3%, p90 74.8% (v4.1 held out 19.5% -> 24.7%). MLPerf's
# DeepSeek-R1 runs read as TensorRT-LLM ran them (attention_dp: tp=1 x 8 attention groups, 512 sequences per rank,
# as TensorRT-LLM's tech blog 3 sizes them: "global concurrency of 4000" on 8 B200s) instead of tp=8 with a
# replicated latent cache capped at 512 sequences, and each attention group prefilling its prompts whole while the
# others wait: all 11.1%, A+B p90 75.1%, leave-one-group-out 15.2%, p90 80.2%. The old reading had matched R1's
# offline throughput (-20%) for the wrong reason; read right, the model is 2.5-3.5x fast there, which TensorRT-LLM's
# own figures for that layout confirm (4,600 tokens/s per B200 at 1K/2K; 34k tokens/s on 8 GB200s on this dataset),
# and R1's rows move from mostly under to over the p90 (R1 median 69.5% -> 89.6%); leaving the fit, they no longer
# hold Blackwell's comm at its 1.0 bound (-> 0.61), and SGLang's DeepSeek groups held out improve (LargeEP H100
# 58.7% -> 50.8%, GB200 58.3% -> 37.6%), MLPerf's GB200/GB300 worsen (22.1% -> 27.7%). The MLPerf v4.1 B200 preview
# run given the batch its Server run shows (max_batch 2048, Little's law: 1,417 requests in flight; it had run at
# TensorRT-LLM's default 256): all 10.5%, leave-one-group-out 15.1%, p90 77.9% (v4.1 held out 25.2% -> 20.0%).
# The LM head costed in 16 bits as quantised checkpoints keep it, and the untied input embedding no longer read every
# step: all 11.3%, A+B p90 72.1%, leave-one-group-out 15.0%, p90 74.9% (Blackwell's B200 group held out 19.8% ->
# 15.5%; Trainium1 13.6% -> 14.5%); the Trainium2 file 28.4% -> 35.4% on its 23 targets, its trust A+B rows 11.6% ->
# 11.1%: the bf16 models decode ~6% faster without the 1 GB embedding, and the median lands on the EAGLE-3 rows the
# model already had fast. The engines' host work per running request (sequence_overhead_s, one value fitted on every
# case: 5.9 us): all 11.0%, A+B p90 65.2%, leave-one-group-out 15.0%, p90 74.2% (held out: MLPerf GB200/GB300 30.2%
# -> 25.2%, v4.1 20.9% -> 17.5%, SGLang LargeEP H100 49.3% -> 40.7%; B200 15.5% -> 17.8%, TensorRT-LLM v0.5 first
# token 16.4% -> 18.4%). An NVFP4 checkpoint's attention multiplied in fp8, as its engines run it (only the linear
# layers are 4-bit): all 10.2%, A+B p90 67.7%, leave-one-group-out 14.8%, p90 74.3%; inference.yaml 6.2% -> 6.5%;
# MLPerf's R1 rows halve their lead (B200 Offline +184% -> +134%); Blackwell compute 0.40 -> 0.58 of the FP4 peak,
# comm 0.54 -> 0.31; MLPerf B200 and GB200/GB300 held out worse (17.8% -> 24.9%, 25.2% -> 28.5%). Neuron's
# compiled buckets (prompts prefilled at their power-of-two bucket, decode steps reading the cache over theirs;
# serve.buckets): Trainium1 held out 13.9% -> 13.5%, in the fit 5.7% either way; the refit moves the shared host
# work per request 8.25 -> 8.17 us, and with it two chaotic MLPerf rows, DeepSeek-R1 Server TTFT p99 on B200 and
# GB300 (-19% -> -91%, -21% -> -93%: the rate search lands on the other side of the knee): all 10.5%, A+B p90 73.9%,
# leave-one-group-out 14.8%, p90 74.0%. MLPerf's DeepSeek-R1 runs with the ADP balance their configs turn on
# (prompts held until every attention rank has one; serve.balance), which steer nothing: their Server TTFTs -86% ->
# -61% (B200), but balanced prefills make the model's iterations cheaper still, exposing its decode gap there (Server
# TPOT -23% -> -37%, throughput +181% -> +259%): all 11.0%, A+B p90 65.1%, leave-one-group-out 15.0%, p90 70.3%
# (GB200/GB300 held out 26.4% -> 39.0%). TensorRT-LLM's own trtllm-bench DeepSeek-R1 runs (attention DP + EP8, fixed
# 1K/2K lengths, on B200 and H200) added as a group, the model 1.5-1.7x fast on all three, Hopper as Blackwell: all
# 401 targets 11.0%, A+B p90 65.9%, leave-one-group-out 15.1%, p90 71.8%. An fp4 MLA model's latent projections
# kept in 16 bits, as NVIDIA's NVFP4 DeepSeek-R1 checkpoint keeps them (fp8 where a case says FP8 attention): the R1
# rows move towards the measurements (trtllm-bench group held out 54.9% -> 41.8%, MLPerf GB200/GB300 39.0% -> 36.8%),
# but the refit of Blackwell it causes (comm 0.315 -> 0.304, through SGLang's fitted fp4 prefill runs) moves chaotic
# MLPerf Server rows (405B Interactive TTFT on B200 +9% -> +22%; the MLPerf file 15.9% -> 17.1%): all 11.5%, A+B
# p90 67.0%, leave-one-group-out 15.1%, p90 71.1%. MLPerf v5.1's TensorRT-LLM runs with the chunked context their
# configs turn on (enable_chunked_context; 27 cases had it only in their notes, and were replayed admitting whole
# prompts): the MLPerf file 17.1% -> 15.8%, all 11.0%, A+B p90 64.5%, but leave-one-group-out 15.8%, p90 71.8%:
# Blackwell's refit, steered by 14 cases, moves (comm 0.30 -> 0.23, memory 0.76 -> 0.85), and with it held-out
# groups both ways (MLPerf GB200/GB300 36.8% -> 25.6%, trtllm-bench R1 41.8% -> 24.2%; MLPerf B200 25.5% -> 28.0%,
# SGLang's GB200 decode 9.5% -> 21.6%). SGLang's 128K DeepSeek-R1 prefill with its 32K chunks pipelined through the
# four stages (prefill_chunk: 32768; the case had it only in its notes): that row +90% -> +7%, and with it off the
# fit the default entry's compute 0.93 -> 0.87, Blackwell's 0.59 -> 0.55 (comm 0.23 -> 0.26), H100's memory to its
# 1.0 bound: all 10.9%, A+B p90 64.5%, leave-one-group-out 15.7%, p90 72.4% (MLPerf B200 and GB200/GB300 held out
# 28.0% -> 30.0%, 25.6% -> 28.5%). TensorRT-LLM's gptSession cases (v0.5, v0.6) costed without host work per
# running request (a static batch is one tensor, sampled on the device; per_request_host_work): the shared request
# overhead, no longer held down by them, 7.7 -> 13.2 us; all 10.2%, A+B p90 64.5%, leave-one-group-out 14.5%, p90
# 72.4% (held out: MLPerf v4.1 18.3% -> 14.0%, B200 30.0% -> 24.9%, GB200/GB300 28.5% -> 23.9%, trtllm-bench R1
# 29.1% -> 16.7%, SGLang long-context 31.1% -> 19.7%; SGLang PD GB200 16.5% -> 25.5%, LargeEP H100 27.5% -> 30.6%,
# Kimi K2 14.2% -> 17.9%). MLPerf Server and Interactive trials read at their steady state (serve.inflight
# steady_latencies: requests of the first and last lifetime of a window left out, as a ten-minute LoadGen run hardly
# sees them) and their rates as LoadGen reports them: all 9.8%, leave-one-group-out 14.7%, p90 73.1% (held out: MLPerf
# B200 24.9% -> 28.9%, H200 partners 10.3% -> 8.5%). The soft roofline (serve.cost: compute and memory time of each
# kernel class in quadrature, not their max) moved the held-out set the other way from the fitted one: all 9.73% ->
# 10.04%, leave-one-group-out 13.47% -> 12.78%, p90 69.7% -> 66.1%; Trainium2 36.7% -> 37.5%. Every source
# weighed alike in the fit (serve.fitting.group_weights; the Trainium1 CSV's 96 rows had set the Trainium family
# alone): all 10.29% -> 9.61%, A+B p90 60.3%, leave-one-group-out 12.86% -> 12.42%, p90 65.3% -> 64.8%; the
# Trainium2 file 37.6% -> 22.7%, its trust A+B rows 10.4% -> 17.0% (the EAGLE-3 rows from +38% to +23%, the
# Llama 3.1 8B and Qwen3 baselines' TTFT and throughput from 11-14% to 17-18%), the static set 7.2% -> 8.1%. MLPerf
# Offline cases simulated with the samples LoadGen issued (num_requests, up to 16 full batches per replica, where
# they had run four): all 9.61% -> 9.79%, A+B p90 60.3% -> 58.3%, leave-one-group-out 12.42% -> 12.05%, p90 64.8%
# -> 64.6%, mean 26.6% -> 25.6%. MLA down-projections and, beyond the KV heads, K/V projections copied to every
# tensor-parallel rank (serve.cost): all 9.79% -> 9.93%, A+B p90 58.3% -> 57.4%, leave-one-group-out 12.05% ->
# 12.21%, p90 64.6% -> 64.5% (Trainium1 held out 11.9% -> 10.8%; the DeepSeek-V3 port 60.7% -> 42.2%; MLPerf B200
# 15.0% -> 20.7%, its Llama 3.1 405B max-rate latencies moved by the NVIDIA entries' fourth digits); the Trainium2
# trust A+B rows 17.0% -> 18.0% (Qwen3-32B at tp 64 holds 8 copies of its K/V projections), the static set 8.1% ->
# 8.5%. Padded heads' Q/K/V/O columns held like real ones (Llama 2 13B at tp 32 on Trainium1): all 9.91%,
# leave-one-group-out 12.13%, p90 64.5%, A+B p90 58.6%; Trainium1 mean 16.1% -> 15.8% (median 6.2% -> 7.0%), its
# Llama 2 13B rows 5 to 11 points closer; Trainium2 trusted rows 17.7%. A MoE router copied to every tensor-parallel
# rank, never quantised (fp32 under NxD): all 9.91% -> 9.82%, A+B p90 58.6% -> 58.1%, leave-one-group-out 12.13%,
# p90 64.5% -> 63.7%; the Trainium2 file 22.9% -> 20.2% (the DeepSeek-V3 port's decode 4-5 points closer), its
# trusted rows 17.7%; the static set 8.49%. NVIDIA's Llama 2 70B Interactive configs on B200 (and GB200, which copies
# them) set no kv_cache_dtype, so their fp4 checkpoints keep a 16-bit cache (kv_cache_precision fp16, where null had
# read as TensorRT-LLM's fp8): the fit is unchanged (max-rate cases do not steer it); all 9.82% -> 9.78%, p90 61.1% ->
# 60.6%, leave-one-group-out 12.13% -> 12.06%, p90 63.7% -> 63.0%, MLPerf B200 held out 20.7% -> 15.0%; GB200's
# Interactive run, which publishes no config, taking the rest of B200's (768 requests, 768 tokens a step, chunked):
# all 9.65%, leave-one-group-out 12.04%, GB200/GB300 in sample 17.4% -> 15.7%. Rows whose published rate contradicts
# their own TTFT and TPOT by more than 1.25x (three Trainium1 rows of SDK 2.18.0) scored and not fitted: all 9.65% ->
# 9.33%, A+B p90 56.8% -> 56.9%, leave-one-group-out 12.04% -> 12.09%, p90 63.0% -> 63.5%, the static set 8.49% ->
# 6.19%. The guards below follow that fit (the fit is deterministic: a change that moves it refits); the held-out
# median's guard keeps half a point above it, the knee noise of the MLPerf rows (docs/architecture.md, serve fitting).
ALL_MEDIAN, TRUSTED_P90, LOGO_MEDIAN, LOGO_P90, STATIC_MEDIAN = 9.8, 59.0, 12.6, 68.0, 6.8
# Trainium2 (issue 13's target: 15%): trust A+B rows 11.8%; with the trust-C DeepSeek-V3 contrib port's rows (its
# native-API case read since its precision text "bf16 (FP8 checkpoint dequantized ...)" parses) 20.8%.
TRN2_MEDIAN, TRN2_TRUSTED_MEDIAN = 22.0, 12.5


def test_every_inference_case_is_predicted_within_the_targets(calibrated: tuple[Path, dict[str, Any]]) -> None:
    # The fit's own scores: the fit is the committed one (test_committed_fit_is_what_calibrate_produces), and
    # scoring all 401 targets again (every in-flight case simulated) would take minutes of the suite.
    _, result = calibrated
    summary = result["after"]["summary"]
    _, skipped = _prepared(load_inference_cases(CASES))
    assert len(skipped) <= 45 and summary["predicted"] >= 360  # skipped: each with its reason (DP attention, ...)
    assert summary["median_abs_error_pct"] <= ALL_MEDIAN
    assert summary["by_trust"]["A+B"]["p90_abs_error_pct"] <= TRUSTED_P90
    static = validate_inference_file(CASES[:2]).summary
    assert static["median_abs_error_pct"] <= STATIC_MEDIAN
    trn2 = validate_inference_file(CASES[1:2]).summary
    assert trn2["median_abs_error_pct"] <= TRN2_MEDIAN
    assert trn2["by_trust"]["A+B"]["median_abs_error_pct"] <= TRN2_TRUSTED_MEDIAN


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One calibration with leave-one-group-out (minutes), shared by the tests below."""
    out = tmp_path_factory.mktemp("calibrate") / "serve-efficiency.yaml"
    # the priors' report ("before") is left out: nothing below reads it, and it is one more rate search per
    # MLPerf Server case (~70 s); tests/serve/test_cli_serve.py checks it on the CLI
    return out, calibrate_inference_file(CASES, out=out, cross_validate=True, score_prior=False)


def test_committed_fit_is_what_calibrate_produces(calibrated: tuple[Path, dict[str, Any]]) -> None:
    out, result = calibrated
    fresh = load_serve_efficiency(out).entries
    committed = load_serve_efficiency().entries
    assert fresh.keys() == committed.keys()
    for key, eff in committed.items():
        for name, value in eff.to_dict().items():
            assert getattr(fresh[key], name) == pytest.approx(value, rel=1e-3, abs=1e-9), (key, name)
    assert result["after"]["summary"]["median_abs_error_pct"] <= ALL_MEDIAN


def test_leave_one_group_out_stays_useful(calibrated: tuple[Path, dict[str, Any]]) -> None:
    _, result = calibrated
    assert result["leave_one_group_out"]["median_abs_error_pct"] <= LOGO_MEDIAN
    assert result["leave_one_group_out"]["p90_abs_error_pct"] <= LOGO_P90
    # each held-out row, with the group whose fold predicted it
    rows = result["leave_one_group_out_cases"]
    assert len(rows) == result["leave_one_group_out"]["count"]
    assert sorted(row["id"] for row in rows) == sorted(row["id"] for row in result["after"]["cases"])
