"""In-flight (continuous) batching benchmarks as validation cases: the benchmark's load replayed in the simulator.

Most serving numbers published today come from engines that batch in flight (TensorRT-LLM's GptManager, vLLM,
SGLang; MLPerf Inference, trtllm-bench, ``vllm bench serve``). A case with ``serving.batch: null`` states its
load instead of a batch, and is scored on what the simulator (``serve.simulate``) measures under that load on
the case's replicas (``system.count`` devices over the replica's), each engine admitting at most
``serving.max_batch`` sequences (default: the engine's own, ``default_engine_max_batch``) and as many as its KV
cache holds:

- ``load: offline``: every request available at once (MLPerf Offline, throughput mode); the ``num_requests`` the
  benchmark issued where the case states them (MLPerf's ``samples_per_query``; at most ``OFFLINE_MAX_WAVES`` full
  batches per replica), else enough for ``WAVES`` full batches on every replica, so the ramp-up and the drain weigh
  little;
- ``load: rate``: Poisson arrivals at ``request_rate`` per second (``--request-rate`` sweeps), ``num_requests``
  of them where the benchmark states its count (``vllm bench serve --num-prompts``), as it ran;
- ``load: max_rate``: the highest Poisson rate whose p99 latencies meet ``serving.slo``, found by bisection
  between zero and a margin above the replicas' offline capacity (``max_rate_within_slo``). This is how an MLPerf
  Server or Interactive result is made: LoadGen issues Poisson queries at the submitter's ``target_qps`` and the
  run is valid only if its p99 TTFT and TPOT stay within the benchmark's bounds, so submitters raise the rate to
  the last one that passes (MLPerf Inference rules, Server scenario). The published rate is that answer, so it is
  not an input: the case is scored on the rate the model itself sustains, and on the latencies there, which sit
  near the bounds as the published ones do. Each trial runs long enough to reach the steady state that sets the
  percentiles (``steady_window_s``): near capacity an engine's batch keeps growing for several request
  lifetimes, so a short window reads a TPOT far below the one the 10-minute LoadGen run measures (with a
  length mix, five lifetimes of its longest request). The percentiles
  are read over the requests that arrive after the window's first lifetime and before its last
  (``steady_latencies``), which set the 10-minute run's, and the rates as LoadGen reports a Server test: over the
  time the last query issued finished, not the end of the drain;
- ``load: concurrency``: a closed loop of ``concurrency`` clients, each sending its next request the moment its
  last one ends (``vllm bench serve --max-concurrency``, NIM and LLMPerf sweeps); ``num_requests`` of them when
  stated, else ``CLOSED_LOOP_ROUNDS`` per client.

Latency targets are read at the percentile they name: ``ttft_ms``/``tpot_ms``/``e2e_latency_ms`` at the median
(validation/README.md), ``*_p99_ms`` at the 99th.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rainier.errors import field_error
from rainier.serve.balance import AdpBalance
from rainier.serve.cost import ReplicaCost
from rainier.serve.datasets import LengthSamples, named_dataset
from rainier.serve.iteration import pipeline_groups
from rainier.serve.limits import (
    MAX_BATCH,
    MAX_RATE_PER_S,
    MAX_REQUESTS,
    MAX_TOKENS,
    SPREAD_ALLOWED,
    check_int,
    check_share,
)
from rainier.serve.results import Percentiles, ServeTimeline, request_latencies, summarise
from rainier.serve.simulate import Request, ServeScenario, ranged_lengths, simulate_timeline
from rainier.serve.speculative import SpeculativeCost
from rainier.units import GIB

DEFAULT_ENGINE_MAX_BATCH = 256  # vLLM's default max_num_seqs (EngineArgs), and any engine not named below
# trtllm-build's default max_batch_size: 256 from v0.11, 2048 from v0.14 (TensorRT-LLM release notes, "API
# Changes" of 0.11.0 and 0.14.0; BuildConfig.max_batch_size in tensorrt_llm/builder.py).
TRTLLM_MAX_BATCH = 2048
TRTLLM_MAX_BATCH_VERSION = (0, 14)
# SGLang sizes its request pool, the running requests' limit unless --max-running-requests is given, from the KV
# pool: KV tokens / context length x 512, clamped to [2048, 4096] (sgl-project/sglang, python/sglang/srt/
# model_executor/model_runner.py, init_memory_pool).
SGLANG_REQUESTS_PER_CONTEXT = 512
SGLANG_MAX_REQUESTS = (2048, 4096)
WAVES = 4  # offline: requests for this many full batches per replica
MIN_REQUESTS = 1_000  # at least this many simulated requests per case (stable p99s)
MAX_CASE_REQUESTS = 20_000  # and at most this many (a case costs well under a second)
# An offline case that states the requests its benchmark issued is simulated with them, up to this many full batches
# per replica (the drain's share of the run is then a few percent at most)
OFFLINE_MAX_WAVES = 16
MAX_WINDOW_REQUESTS = 120_000  # a Poisson window's requests at most (~1 s of simulation)
# LoadGen runs an MLPerf Server or Interactive test for at least ten minutes (mlperf.conf ``min_duration = 600000``
# ms, MLPerf Inference rules).
LOADGEN_MIN_DURATION_S = 600.0
# A max_rate trial's window, in the longest request lifetimes the SLO allows (TTFT bound + (output - 1) x TPOT
# bound): an open-loop engine near capacity fills its batch over about one lifetime at the TPOT it settles at
# (below the bound), so five leave the last four-fifths of the requests, which set the percentiles, in steady state.
STEADY_LIFETIMES = 5.0
# Case fields naming the tokens one engine iteration may schedule: TensorRT-LLM ``max_num_tokens``, vLLM
# ``max_num_batched_tokens``, SGLang ``chunked_prefill_size``.
TOKEN_BUDGET_KEYS = ("max_num_tokens", "max_num_batched_tokens", "chunked_prefill_size")
VLLM_V1_VERSION = (0, 8)  # vLLM release whose V1 engine is on by default, with chunked prefill always on
# vLLM's OpenAI server defaults from v0.8 (EngineArgs batch defaults): on a GPU of at least 70 GiB that is not an
# A100 ("Setting large max_num_batched_tokens for A100 reduces throughput", vLLM PR 17885) max_num_batched_tokens
# 8192 and max_num_seqs 1024; on other GPUs 2048 and 256.
VLLM_V1_TOKEN_BUDGET = 8192
VLLM_V1_SMALL_GPU_TOKEN_BUDGET = 2048
VLLM_V1_MAX_SEQS = 1024
VLLM_V1_LARGE_GPU_BYTES = 70 * 2**30
_VLLM_VERSION = re.compile(r"vllm\s+v?(\d+)\.(\d+)", re.IGNORECASE)
# TensorRT-LLM engines batch at most max_num_tokens = 8192 tokens per iteration by default from v0.11 ("Best
# Practices for Tuning the Performance of TensorRT-LLM", max_num_tokens), whole prompts unless chunked context is on;
# NIM for LLMs serves TensorRT-LLM engines built with that default.
TRTLLM_TOKEN_BUDGET_VERSION = (0, 11)
TRTLLM_TOKEN_BUDGET = 8192
# "TensorRT-LLM v0.17", "TensorRT LLM 1.0", "TRT-LLM 0.21"
TRTLLM_VERSION = re.compile(r"(?:tensorrt[-_ ]llm|trt[-_ ]?llm)\s+v?(\d+)\.(\d+)", re.IGNORECASE)
# The TensorRT each TensorRT-LLM release depends on ("Infrastructure Changes" of its release notes): a build named
# by commit that runs a newer TensorRT than a release's postdates that release (``_trtllm_release``).
TENSORRT_OF_TRTLLM_RELEASE = {(0, 10): (10, 0), (0, 11): (10, 2), (0, 12): (10, 3), (0, 13): (10, 4), (0, 15): (10, 6)}
_TENSORRT_VERSION = re.compile(r"\btensorrt\s+v?(\d+)\.(\d+)", re.IGNORECASE)
CACHED_RUNS = 4096  # simulated case runs kept in memory (each a dict of ~10 floats)
CLOSED_LOOP_ROUNDS = 8  # requests per client of a closed loop whose benchmark does not state its count


class Load(enum.StrEnum):
    OFFLINE = "offline"
    RATE = "rate"
    MAX_RATE = "max_rate"
    CONCURRENCY = "concurrency"


RATE_KEYS = ("output_tokens_per_s", "output_tokens_per_s_per_device", "total_tokens_per_s", "requests_per_s")
# the p99 bounds a max_rate search holds: MLPerf's LLM benchmarks bound TTFT and TPOT, GPT-J the whole request
SLO_KEYS = ("ttft_p99_ms", "tpot_p99_ms", "e2e_latency_p99_ms")
RATE_SEARCH_STEPS = 7  # bisection steps: the rate within 1% of the offline capacity
# The search's upper end, over the offline capacity: an offline run of equal requests moves in lockstep waves (a
# batch admitted together finishes together, then refills in prompt-heavy iterations), so a Poisson stream keeps
# an engine fuller and sustains a few percent more (B200 Llama 2 70B: 92k vs 87.5k tokens/s).
RATE_SEARCH_HEADROOM = 1.25
# An offline run of a long-tailed mix ends in a long drain, its capacity well below what a stream sustains: when
# every rate of the bracket passes, the search moves up to [top, RATE_SEARCH_WIDEN x top], at most this often
RATE_SEARCH_WIDEN, RATE_SEARCH_WIDENINGS = 2.0, 3


@dataclass(frozen=True, slots=True, kw_only=True)
class InFlight:
    """How an in-flight batching case loads its replicas."""

    load: Load
    replicas: int
    max_batch: int
    request_rate: float | None = None
    concurrency: int | None = None
    num_requests: int | None = None
    token_budget: int | None = None  # tokens one iteration may schedule; None: unbounded
    chunked: bool = False  # prompts split to fit the budget (vLLM V1, SGLang), else admitted whole (TensorRT-LLM)
    slo: tuple[tuple[str, float], ...] = ()  # max_rate: (metric, bound) pairs the p99 latencies must meet
    window_s: float | None = None  # rate: the Poisson arrival window (a max_rate trial's steady window)
    length_range: float = 0.0  # lengths uniform within +/- this share of the means (0: every request the same)
    lengths: LengthSamples | None = None  # the benchmark's dataset (serve.datasets), scaled to the case's means
    adp_balance: AdpBalance | None = None  # TensorRT-LLM's ADP balance (serve.balance), data-parallel attention
    loadgen_server: bool = False  # rate: rates as MLPerf LoadGen's Server test reports them (a max_rate trial)

    def requests(self, groups: int = 1) -> int:
        """Requests to simulate: a few full batches per replica and micro-batch group (``groups`` per replica under
        pipeline parallelism; offline), the closed loop's stated count (a few rounds per client), and for a Poisson
        load the benchmark's stated count, its window's arrivals, or as many as the offline run's."""
        if self.load is Load.CONCURRENCY and self.concurrency is not None:
            return min(MAX_CASE_REQUESTS, self.num_requests or CLOSED_LOOP_ROUNDS * self.concurrency)
        if self.load is Load.RATE and self.num_requests is not None:
            return min(MAX_WINDOW_REQUESTS, self.num_requests)
        if self.load is Load.RATE and self.window_s is not None and self.request_rate is not None:
            return min(MAX_WINDOW_REQUESTS, max(MIN_REQUESTS, math.ceil(self.request_rate * self.window_s)))
        if self.load is Load.OFFLINE and self.num_requests is not None:
            # the count the benchmark issued (MLPerf Offline's samples_per_query): how many waves run sets the
            # weight of the drain, where the longest requests finish on an emptying engine (small past a few dozen)
            per_replica = max(MIN_REQUESTS, OFFLINE_MAX_WAVES * groups * self.max_batch)
            return min(self.num_requests, self.replicas * per_replica)
        return min(MAX_CASE_REQUESTS, max(MIN_REQUESTS, WAVES * self.replicas * groups * self.max_batch))


def in_flight_of(
    serving: dict[str, Any],
    devices: int,
    replica_devices: int,
    *,
    kv_tokens: int = 0,
    context_len: int = 0,
    large_gpu: bool = True,
) -> InFlight:
    """The load of a case's ``serving`` block; a load the simulator cannot replay is an ``InputError``. Without a
    stated ``max_batch`` or token budget the engine's own defaults apply (``default_engine_max_batch``, SGLang's
    from the replica's ``kv_tokens`` and the model's ``context_len``; ``default_token_budget``; vLLM's by
    ``large_gpu``, ``vllm_large_gpu``)."""
    text = serving.get("load")
    try:
        load = Load(str(text).strip().lower())
    except ValueError:
        raise field_error("serving.load", text, "offline, rate, max_rate or concurrency (with batch: null)") from None
    concurrency = serving.get("concurrency")
    if load is Load.CONCURRENCY:
        concurrency = check_int("serving.concurrency", concurrency, 1, MAX_CASE_REQUESTS, "clients")
    requests = serving.get("num_requests")
    if requests is not None:
        requests = check_int("serving.num_requests", requests, 1, MAX_REQUESTS, "requests")
    max_batch = serving.get("max_batch")
    engine_batch = default_engine_max_batch(str(serving.get("framework") or ""), kv_tokens, context_len, large_gpu)
    if max_batch is not None:
        engine_batch = check_int("serving.max_batch", max_batch, 1, MAX_BATCH, "sequences")
    rate = serving.get("request_rate")
    bad_rate = isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= MAX_RATE_PER_S
    if load is Load.RATE and bad_rate:
        raise field_error("serving.request_rate", rate, f"requests per second above 0, at most {MAX_RATE_PER_S:g}")
    slo: tuple[tuple[str, float], ...] = ()
    if load is Load.MAX_RATE:
        slo = _slo_bounds(serving.get("slo"))
    budget = None
    chunked = True
    for key in TOKEN_BUDGET_KEYS:
        if serving.get(key) is not None:
            budget = check_int(f"serving.{key}", serving[key], 1, MAX_TOKENS, "tokens per iteration")
            chunked = key != "max_num_tokens" or bool(serving.get("chunked_context"))
            break
    else:
        framework = str(serving.get("framework") or "")
        budget = default_token_budget(framework, large_gpu)
        chunked = not (budget == TRTLLM_TOKEN_BUDGET and _is_trtllm(framework)) or bool(serving.get("chunked_context"))
    length_range = check_share("serving.length_range", serving.get("length_range") or 0.0, SPREAD_ALLOWED)
    lengths = None
    if serving.get("lengths") is not None:
        if length_range > 0.0:
            raise field_error("serving.lengths", serving["lengths"], "a dataset or a length_range, not both")
        lengths = named_dataset("serving.lengths", serving["lengths"])
    replicas = devices // replica_devices
    if replicas < 1:
        raise field_error("system.count", devices, f"at least one replica of {replica_devices} devices")
    return InFlight(
        load=load, replicas=replicas, max_batch=engine_batch, request_rate=float(rate) if rate else None,
        concurrency=concurrency if load is Load.CONCURRENCY else None, num_requests=requests, token_budget=budget,
        chunked=chunked, slo=slo, length_range=length_range, lengths=lengths,
        adp_balance=AdpBalance.from_case(serving.get("adp_balance")),
    )  # fmt: skip


def _slo_bounds(slo: Any) -> tuple[tuple[str, float], ...]:
    """The p99 bounds of a ``max_rate`` case's ``serving.slo``; at least one of ``SLO_KEYS`` is required."""
    allowed = f"a mapping with {' and/or '.join(SLO_KEYS)} in milliseconds above 0 (load: max_rate)"
    if not isinstance(slo, dict):
        raise field_error("serving.slo", slo, allowed)
    bounds = []
    for key in SLO_KEYS:
        value = slo.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
            raise field_error(f"serving.slo.{key}", value, "milliseconds above 0")
        bounds.append((key, float(value)))
    if not bounds:
        raise field_error("serving.slo", slo, allowed)
    return tuple(bounds)


def vllm_large_gpu(hbm_bytes: float, accelerator_id: str) -> bool:
    """Whether vLLM gives a device its large-GPU defaults: at least 70 GiB and not an A100."""
    return hbm_bytes >= VLLM_V1_LARGE_GPU_BYTES and "a100" not in accelerator_id.lower()


def _is_vllm_v1(framework: str) -> bool:
    match = _VLLM_VERSION.search(framework)
    return match is not None and (int(match.group(1)), int(match.group(2))) >= VLLM_V1_VERSION


def default_token_budget(framework: str, large_gpu: bool = True) -> int | None:
    """The per-iteration token budget an engine schedules by default: vLLM's V1 engine (v0.8 on) chunks prompts
    to its OpenAI server's ``max_num_batched_tokens``, 8192 on a large GPU and 2048 otherwise (``vllm_large_gpu``);
    TensorRT-LLM from v0.11 (and NIM's TensorRT-LLM engines) admits whole prompts up to ``max_num_tokens`` = 8192
    per iteration; other engines' cases state theirs, or batch whole prompts."""
    if _is_vllm_v1(framework):
        return VLLM_V1_TOKEN_BUDGET if large_gpu else VLLM_V1_SMALL_GPU_TOKEN_BUDGET
    return TRTLLM_TOKEN_BUDGET if _is_trtllm(framework) else None


def _trtllm_release(framework: str) -> tuple[int, int] | None:
    """The TensorRT-LLM release ``framework`` names, at least: its stated version; for a build named by commit,
    the latest release whose TensorRT is older than the one it ran on (``TENSORRT_OF_TRTLLM_RELEASE``); NIM for
    LLMs (2025 engines) as the newest listed; None for other engines or an undated build."""
    if "nim for llms" in framework.lower():
        return max(TENSORRT_OF_TRTLLM_RELEASE)
    trtllm = TRTLLM_VERSION.search(framework)
    if trtllm is not None:
        return int(trtllm.group(1)), int(trtllm.group(2))
    named = re.search(r"tensorrt[-_ ]llm|trt-?llm", framework, re.IGNORECASE) is not None
    tensorrt = _TENSORRT_VERSION.search(framework) if named else None
    if tensorrt is None:
        return None
    ran_on = int(tensorrt.group(1)), int(tensorrt.group(2))
    older = [release for release, needs in TENSORRT_OF_TRTLLM_RELEASE.items() if needs < ran_on]
    return max(older) if older else None


def default_engine_max_batch(framework: str, kv_tokens: int = 0, context_len: int = 0, large_gpu: bool = True) -> int:
    """The sequences an engine runs at once when its case states no ``max_batch``: TensorRT-LLM from v0.14 (and
    NIM's engines) 2048, SGLang its request pool (``SGLANG_MAX_REQUESTS``; the lower end without a KV size and
    context length), vLLM from v0.8 1024 on a large GPU, others (and older vLLM) 256. The KV cache bounds the batch
    on its own in the simulator."""
    release = _trtllm_release(framework)
    if release is not None and release >= TRTLLM_MAX_BATCH_VERSION:
        return TRTLLM_MAX_BATCH
    if _is_vllm_v1(framework) and large_gpu:
        return VLLM_V1_MAX_SEQS
    if "sglang" in framework.lower():
        low, high = SGLANG_MAX_REQUESTS
        pool = kv_tokens * SGLANG_REQUESTS_PER_CONTEXT // context_len if context_len > 0 else 0
        return min(max(pool, low), high)
    return DEFAULT_ENGINE_MAX_BATCH


# trtllm-bench picks each engine's max_batch_size and max_num_tokens from the KV cache the GPUs leave for the
# benchmark's lengths when its command states neither (TensorRT-LLM tensorrt_llm/bench/build/tuning.py,
# calc_engine_setting and finetune_setting, unchanged in substance from v0.12): the weights at 2 bytes per
# parameter (1 for FP8, 0.5 for NVFP4), the cache at 2 bytes per element (1 with an FP8 cache) and at least one KV
# head per tensor-parallel rank, 95% of the rest of the GPUs' memory, requests of input + output tokens; the batch
# capped at 4096 per engine and split over the pipeline stages, then rounded up (at least 64); tokens per iteration
# batch x (1 + input / output), capped at 32768, rounded up (at least 2048).
TRTLLM_BENCH_BYTES = {"fp8": 1.0, "fp4": 0.5}  # per element, weights and cache alike; 2 for anything else
TRTLLM_BENCH_KV_SHARE = 0.95
TRTLLM_BENCH_MAX_BATCH = 4096
TRTLLM_BENCH_MAX_TOKENS = 32768
# (bound, multiple): a value below the bound rounds up to the multiple (finetune_setting's steps)
TRTLLM_BENCH_BATCH_STEPS = ((256.0, 32), (1024.0, 128), (math.inf, 256))
TRTLLM_BENCH_TOKEN_STEPS = ((4096.0, 256), (8192.0, 512), (math.inf, 1024))


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchModel:
    """What trtllm-bench's heuristic reads of a model and its deployment."""

    params: float
    weights: str  # the checkpoint's quantisation: "fp8", "fp4" or anything else (16-bit)
    kv: str  # the cache's format: "fp8", "fp4" or anything else (16-bit)
    layers: int
    kv_heads: int
    head_dim: int
    tp: int
    pp: int
    device_bytes: float


def trtllm_bench_limits(model: BenchModel, input_len: int, output_len: int) -> tuple[int, int]:
    """``(max_batch, max_num_tokens)`` trtllm-bench builds an engine with when its command states neither."""
    kv_bytes = TRTLLM_BENCH_BYTES.get(model.kv, 2.0)
    per_token = 2 * model.layers * max(model.tp, model.kv_heads) * model.head_dim * kv_bytes / GIB
    gpus = model.tp * model.pp
    free = model.device_bytes / GIB * gpus - model.params * TRTLLM_BENCH_BYTES.get(model.weights, 2.0) / GIB
    requests = free * TRTLLM_BENCH_KV_SHARE / (per_token * (input_len + output_len))
    if requests < 1:
        raise field_error("system.count", gpus, "GPUs whose memory holds the weights and one request's KV cache")
    raw_batch = min(requests, TRTLLM_BENCH_MAX_BATCH) / model.pp
    raw_tokens = min(raw_batch * (1 + input_len / output_len), TRTLLM_BENCH_MAX_TOKENS)
    return _stepped(raw_batch, TRTLLM_BENCH_BATCH_STEPS, 64), _stepped(raw_tokens, TRTLLM_BENCH_TOKEN_STEPS, 2048)


def _stepped(value: float, steps: tuple[tuple[float, int], ...], floor: int) -> int:
    """``value`` rounded up to the multiple of the first step whose bound it is below, at least ``floor``."""
    multiple = next(m for bound, m in steps if value < bound)
    return max(floor, multiple * math.ceil(value / multiple))


def is_trtllm_bench(framework: str) -> bool:
    """Whether a case ran trtllm-bench (its throughput or latency command)."""
    return re.search(r"trt-?llm[-_ ]bench", framework, re.IGNORECASE) is not None


def _is_trtllm(framework: str) -> bool:
    """Whether ``framework`` names TensorRT-LLM from v0.11 (its ``max_num_tokens`` default) or NIM for LLMs."""
    release = _trtllm_release(framework)
    return release is not None and release >= TRTLLM_TOKEN_BUDGET_VERSION


def simulate_case(
    load: InFlight, cost: ReplicaCost | SpeculativeCost, input_len: int, output_len: int, *, prefix_hit: float = 0.0
) -> dict[str, float]:
    """The metrics an in-flight benchmark reports, measured on the simulated run (at the highest rate within the
    case's SLO for ``load: max_rate``).

    A simulation is a pure function of its inputs (the simulator's seed is fixed), so the last ``CACHED_RUNS`` are
    kept: scoring the same cases again under the same efficiencies (a fit's report, leave-one-group-out's in-flight
    groups) costs nothing the second time.
    """
    try:
        return dict(_cached_case(load, cost, input_len, output_len, prefix_hit))
    except TypeError:  # a cost model that is not a frozen (hashable) value: simulated every time
        return _simulate_case(load, cost, input_len, output_len, prefix_hit)


@functools.lru_cache(maxsize=CACHED_RUNS)
def _cached_case(
    load: InFlight, cost: ReplicaCost | SpeculativeCost, input_len: int, output_len: int, prefix_hit: float
) -> tuple[tuple[str, float], ...]:
    return tuple(_simulate_case(load, cost, input_len, output_len, prefix_hit).items())


def _simulate_case(
    load: InFlight, cost: ReplicaCost | SpeculativeCost, input_len: int, output_len: int, prefix_hit: float
) -> dict[str, float]:
    if load.load is Load.MAX_RATE:
        return max_rate_within_slo(load, cost, input_len, output_len, prefix_hit=prefix_hit)
    engine = _with_max_batch(cost, load.max_batch)
    n = load.requests(pipeline_groups(engine)[0])
    chunking: dict[str, Any] = {}
    if load.token_budget is not None and load.chunked:
        chunking = {"chunked_prefill": True, "chunk_tokens": load.token_budget}
    elif load.token_budget is not None:
        chunking = {"token_budget": load.token_budget}
    if load.adp_balance is not None:
        chunking["adp_balance"] = load.adp_balance
    replicas, scale = load.replicas, 1
    if load.load is Load.OFFLINE:
        # Every request is the same and arrives at once, so the router deals them out in turn and no replica's
        # timeline differs from another's: one replica with its share is the whole run, at 1/replicas of the cost.
        replicas, scale, n = 1, load.replicas, math.ceil(n / load.replicas)
    if load.load is not Load.RATE:
        # n copies of one (frozen) request: building and validating n equal objects had been a tenth of a fit's time
        requests: tuple[Request, ...] = (Request(arrival_s=0.0, input_len=input_len, output_len=output_len),) * n
        if load.length_range > 0.0 or load.lengths is not None:  # the benchmark's spread (seeded: a pure function)
            rng = np.random.default_rng(0)
            if load.lengths is not None:
                drawn = load.lengths.draw(rng, n, input_len, output_len)
                ins, outs = drawn[0].tolist(), drawn[1].tolist()
            else:
                ins = ranged_lengths(rng, input_len, n, load.length_range).tolist()
                outs = ranged_lengths(rng, output_len, n, load.length_range).tolist()
            requests = tuple(Request(arrival_s=0.0, input_len=a, output_len=b) for a, b in zip(ins, outs, strict=True))
        scenario = ServeScenario(
            cost=engine, replicas=replicas, requests=requests, max_requests=n, concurrency=load.concurrency,
            prefix_hit=prefix_hit, **chunking,
        )  # fmt: skip
    else:
        rate = load.request_rate or 1.0
        scenario = ServeScenario(
            cost=engine, replicas=load.replicas, rate_per_s=rate, duration_s=n / rate, input_len=input_len,
            output_len=output_len, max_requests=2 * n + 100, prefix_hit=prefix_hit, length_range=load.length_range,
            length_samples=load.lengths,
            **chunking,
        )  # fmt: skip
    timeline = simulate_timeline(scenario)
    result = summarise(scenario, timeline)
    devices = load.replicas * cost.replica_devices
    out: dict[str, float] = {
        "output_tokens_per_s": scale * result.output_tokens_per_s,
        "output_tokens_per_s_per_device": scale * result.output_tokens_per_s / devices,
        "total_tokens_per_s": scale * result.total_tokens_per_s,
        "requests_per_s": scale * result.requests_per_s,
    }
    latencies: tuple[tuple[str, Percentiles | None], ...] = (
        ("ttft", result.ttft_ms), ("tpot", result.tpot_ms), ("e2e_latency", result.e2e_ms),
    )  # fmt: skip
    if load.loadgen_server and scenario.duration_s is not None:
        latencies = steady_latencies(timeline, scenario.duration_s / STEADY_LIFETIMES, scenario.duration_s)
    for metric, percentiles in latencies:
        if percentiles is not None:
            out[f"{metric}_ms"] = percentiles.p50
            out[f"{metric}_p99_ms"] = percentiles.p99
    if load.loadgen_server and result.final_request_done_s:
        # rates as MLPerf LoadGen reports a Server test: completed samples (and tokens) over the time the last query
        # issued finished (loadgen results.cc, final_query_all_samples_done_time), where the simulator divides by
        # the end of the whole run; with a long-tailed length mix the two differ by the drain of the longest earlier
        # requests (DeepSeek-R1's 20,000-token answers: minutes)
        span = result.duration_s / result.final_request_done_s
        for key in RATE_KEYS:
            out[key] *= span
    return out


def steady_latencies(
    timeline: ServeTimeline, edge_s: float, window_s: float
) -> tuple[tuple[str, Percentiles | None], ...]:
    """TTFT, TPOT and end-to-end percentiles of the requests that arrived in the steady part of a Poisson window,
    ``edge_s`` after its start and before its end: a trial is a few request lifetimes long, where LoadGen's ten
    minutes hold dozens, so its ramp-up (an engine filling) and its drain (one emptying after the last arrival)
    would weigh far more in its percentiles than in the run it stands for."""
    t = timeline
    done = ~np.isnan(t.finish_s) & (t.arrival_s >= edge_s) & (t.arrival_s <= window_s - edge_s)
    if not done.any():
        done = ~np.isnan(t.finish_s)
    ttft, tpot, e2e = request_latencies(t, done)
    return (("ttft", Percentiles.of(ttft)), ("tpot", Percentiles.of(tpot)), ("e2e_latency", Percentiles.of(e2e)))


def meets_slo(metrics: dict[str, float], slo: tuple[tuple[str, float], ...]) -> bool:
    """Whether a simulated run's p99 latencies are within every bound (a metric the run lacks fails)."""
    return all(metrics.get(key, math.inf) <= bound for key, bound in slo)


def steady_window_s(slo: tuple[tuple[str, float], ...], output_len: int, longest_output: int | None = None) -> float:
    """A max_rate trial's Poisson window: LoadGen's ten minutes, or ``STEADY_LIFETIMES`` of the longest request
    lifetime the bounds allow where that is shorter (the steady state is what sets the percentiles).

    A length mix (``longest_output``: its longest request at the case's mean) runs ``STEADY_LIFETIMES`` lifetimes of
    that request, at least LoadGen's ten minutes: an engine's batch keeps filling with the long requests until the
    longest has lived once (they stay ``output / mean`` times as long), and a window that ends sooner holds fewer
    of them than the run it stands for, so its TPOT is low and the rate it passes high. With MLPerf's DeepSeek-R1
    mix (answers of up to 20,000 tokens, 3,748 on average on B200) ten-minute windows took the model's B200 Server
    rate from 1.96x the published one (every request the mean) to 2.57x, and windows of five longest lifetimes
    back to 1.88x (its TPOT +6% -> -12% -> +3%); the real run lasted its min_query_count of queries, 78 minutes on
    GB200. The requests a window holds stay capped (``MAX_WINDOW_REQUESTS``)."""
    bounds = dict(slo)
    longest = output_len if longest_output is None else longest_output
    token_bounds_ms = bounds.get("ttft_p99_ms", 0.0) + (longest - 1) * bounds.get("tpot_p99_ms", 0.0)
    lifetime_s = max(token_bounds_ms, bounds.get("e2e_latency_p99_ms", 0.0)) / 1e3
    if lifetime_s <= 0.0:
        return LOADGEN_MIN_DURATION_S
    if longest_output is not None:
        return max(LOADGEN_MIN_DURATION_S, STEADY_LIFETIMES * lifetime_s)
    return min(LOADGEN_MIN_DURATION_S, STEADY_LIFETIMES * lifetime_s)


def _with_max_batch(cost: ReplicaCost | SpeculativeCost, max_batch: int) -> ReplicaCost | SpeculativeCost:
    """The replica's engine with ``max_batch`` running sequences (a speculating one's target engine)."""
    if isinstance(cost, SpeculativeCost):
        return replace(cost, cost=replace(cost.cost, engine_max_batch=max_batch))
    return replace(cost, engine_max_batch=max_batch)


def max_rate_within_slo(
    load: InFlight, cost: ReplicaCost | SpeculativeCost, input_len: int, output_len: int, *, prefix_hit: float = 0.0
) -> dict[str, float]:
    """The metrics at the highest Poisson rate whose p99 latencies meet ``load.slo``, as an MLPerf submitter finds it.

    The rate is bisected ``RATE_SEARCH_STEPS`` times between zero and ``RATE_SEARCH_HEADROOM`` times the replicas'
    offline capacity (the request rate of an offline run on the same engines), each trial a Poisson window of
    ``steady_window_s``; latency grows with the rate, so the passing rates form an interval from zero. When no rate
    tried passes (a bound below what one request alone takes), the lowest one's metrics are returned: the
    deployment would not make a valid result at any rate.
    """
    offline = simulate_case(replace(load, load=Load.OFFLINE), cost, input_len, output_len, prefix_hit=prefix_hit)
    low, high = 0.0, RATE_SEARCH_HEADROOM * offline["requests_per_s"]
    longest = load.lengths.longest_output(output_len) if load.lengths is not None else None
    window_s = steady_window_s(load.slo, output_len, longest)
    best: dict[str, float] | None = None
    last: dict[str, float] = offline
    for _ in range(RATE_SEARCH_WIDENINGS + 1):
        top = high
        for _ in range(RATE_SEARCH_STEPS):
            rate = (low + high) / 2.0
            trial = replace(load, load=Load.RATE, request_rate=rate, num_requests=None, window_s=window_s,
                            loadgen_server=True)  # fmt: skip
            last = simulate_case(trial, cost, input_len, output_len, prefix_hit=prefix_hit)
            if meets_slo(last, load.slo):
                low, best = rate, last
            else:
                high = rate
        if high < top:  # a rate failed: the edge is inside the bracket
            break
        # every rate passed: the offline run's drain set the bracket too low (a long-tailed length mix), widen it
        low, high = top, RATE_SEARCH_WIDEN * top
    return best if best is not None else last
