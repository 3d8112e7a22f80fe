"""Discrete-event simulation of LLM serving: arrivals, routing, batching, KV-cache admission, prefill and decode.

Requests arrive (a Poisson process or a trace), join the least-loaded replica (fewest requests routed to it and not
yet done; ties to the lowest index) and wait in its FIFO queue. Each replica is one engine (a tp x pp group of
devices) that runs *iterations*: one forward pass that prefills some prompt tokens and decodes one token for every
running sequence; its duration comes from an :class:`IterationCost`. Only iteration boundaries, arrivals and KV
transfers are events, never tokens: a running sequence finishes at a known iteration index, so finishing requests
are found with a min-heap keyed by that index and the KV cache is one counter per replica.

Schedulers:

- ``continuous`` (Orca, Yu et al. 2022): at every iteration boundary the engine admits queued requests in arrival
  order while ``max_batch`` and the KV cache allow. Prefill produces the first token; every later iteration
  produces one more, so a request with ``output_len`` tokens decodes for ``output_len - 1`` iterations.
  Without chunked prefill a newly admitted prompt is prefilled whole, in the same iteration as the running decodes.
- chunked prefill (Sarathi-Serve, Agrawal et al. 2024): each iteration has a token budget (``chunk_tokens``) that
  running decodes spend first (one token each) and prompts share, in arrival order, in chunks.
- ``static``: an idle engine takes as many queued requests as fit (``max_batch``; KV for every sequence padded
  to the batch's longest output), prefills them in one iteration and decodes them until the longest finishes,
  finished sequences still computing as padding; no request joins in between, and all return at the end of the
  batch (Orca's critique of request-level scheduling). TTFT is the end of the prefill iteration.

KV cache (continuous): the cache grows one token per decoded token, as in vLLM's paged attention (Kwon et al.
2023). A request is admitted when its prompt fits, keeping :data:`KV_WATERMARK_FRACTION` of the cache free
(vLLM's watermark) unless the engine is empty. When the running decodes need more cache than there is, the most
recently admitted request is preempted: its cache is dropped and it goes back to the head of the queue, to
recompute prompt + generated tokens as one prefill when readmitted (vLLM's recompute preemption). The prompt's
cache is reserved whole on admission, also while it is prefilled in chunks. A request that cannot fit alone
(``input_len + output_len - 1`` tokens of cache) is rejected on arrival and counted in ``rejected``.

Disaggregated serving (Splitwise, Patel et al. 2024; DistServe, Zhong et al. 2024): new requests go to a prefill
pool (``prefill_cost`` x ``prefill_replicas``) whose engines only prefill; the first token comes out there. The
prompt's KV (``input_len x prefill_cost.kv_bytes_per_token`` bytes) then crosses the prefill replica's link to
the decode pool: transfers from one prefill replica are sent one after another at ``kv_link_bytes_per_s``, each
arriving ``kv_link_latency_s`` after its last byte leaves. The prefill replica frees the cache when the prefill
ends (the copy is staged out; Splitwise overlaps it with the prefill). The request then joins the least-loaded
decode replica (``cost`` x ``replicas``) and decodes there without a prefill (a preempted one recomputes there).

Events run on :class:`rainier.sim.kernel.Environment` (ties by ``(time, priority, seq)``): its ~2 us per event is
well within budget (1,000,000 requests, ~4M iterations, take ~15 s; ``benchmarks/test_bench_serve_sim.py``), so
there is no private event loop. Replicas and their engines are made when the router first sends them work, so
memory follows the requests, not the size of the fleet. Arrivals are URGENT: requests arriving at an iteration
boundary join that boundary. Random numbers (arrival gaps, lengths) are drawn in numpy blocks of
:data:`RANDOM_BLOCK` before the run, so a seed fixes the output byte for byte. The run ends when every accepted
request has completed; ``duration_s`` runs from 0 to the later of the run's last event (the last completion) and
the end of the arrival window, so a busy fraction never exceeds 1. Queueing (``queue_ms``) is all the time a
request waits in a queue: before its prefill, after a preemption, and before a decode replica takes it.

Budgets: a run simulates at most ``max_requests`` requests (:data:`DEFAULT_MAX_REQUESTS`; ~330 bytes each) and
``max_iterations`` engine iterations (:data:`DEFAULT_MAX_ITERATIONS`; ~3 us each with the real cost model). The
expected requests (``rate x duration`` or the trace's length) and a lower bound on the iterations are checked
before the run, and the iterations are counted during it; either over its budget is an ``InputError`` naming the
option that raises it. The lower bound (all replicas together) is the largest of: the longest request's output
(its decodes run one after another), the output tokens over ``max_batch`` (an iteration decodes at most that
many sequences), and the cache token-iterations of the requests over the cache capacity (a request holds
``input_len + t`` tokens in its ``t``-th decode iteration; an iteration holds at most ``kv_capacity_tokens``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

import numpy as np

from rainier.errors import field_error
from rainier.serve.balance import AdpBalance
from rainier.serve.datasets import LengthSamples
from rainier.serve.engine import _Engine, _Pool, _Router, _State
from rainier.serve.iteration import IterationCost, pipeline_groups
from rainier.serve.limits import (
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MAX_REQUESTS,
    MAX_BATCH,
    MAX_DEVICES,
    MAX_DURATION_S,
    MAX_ITERATIONS,
    MAX_RATE_PER_S,
    MAX_REQUESTS,
    MAX_SEED,
    MAX_TOKENS,
    MIN_RATE_PER_S,
    SPREAD_ALLOWED,
    budget_error,
    check_float,
    check_share,
)
from rainier.serve.results import Percentiles, ServeResult, ServeTimeline, summarise
from rainier.sim.kernel import URGENT, Environment, Event

__all__ = [  # the results live in serve.results and are re-exported here, where callers have always found them
    "DEFAULT_CHUNK_TOKENS",
    "IterationCost",
    "LengthDistribution",
    "Percentiles",
    "Progress",
    "Request",
    "Scheduler",
    "ServeResult",
    "ServeScenario",
    "ServeTimeline",
    "iteration_lower_bound",
    "poisson_requests",
    "simulate_serving",
    "simulate_timeline",
    "summarise",
]

DEFAULT_CHUNK_TOKENS = 512
"""Sarathi-Serve's token budget per iteration is typically 512-2048; vLLM's chunked-prefill default is 512."""
RANDOM_BLOCK = 65_536
"""Random numbers drawn per call to the generator (part of what fixes a seed's output)."""
PROGRESS_ITERATIONS = 16_384
"""Iterations between budget checks and progress reports (a few tens of milliseconds)."""
PROGRESS_AFTER_S = 1.0
"""Wall time after which a run starts reporting progress."""


class Scheduler(Enum):
    """How an engine forms its batches."""

    CONTINUOUS = "continuous"
    """Iteration-level scheduling (Orca): admissions at every iteration."""
    STATIC = "static"
    """Request-level scheduling: a batch runs until its longest request is done."""


class LengthDistribution(Enum):
    """How Poisson requests' input and output lengths are drawn around the means given."""

    FIXED = "fixed"
    """Every request has exactly the mean."""
    UNIFORM = "uniform"
    """Integers uniform on [1, 2 x mean - 1] (mean exact)."""
    GEOMETRIC = "geometric"
    """Geometric on {1, 2, ...} with the mean given: memoryless, a long tail like chat outputs."""


def _integer(name: str, value: object, minimum: int, maximum: int = 2**62) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not minimum <= value <= maximum:
        limit = f" and <= {maximum:,}" if maximum < 2**62 else ""
        raise field_error(name, value, f"must be an integer >= {minimum}{limit}")


def _number(name: str, value: object, *, positive: bool) -> None:
    number = value if not isinstance(value, bool) and isinstance(value, int | float) else math.nan
    if not math.isfinite(number) or (number <= 0 if positive else number < 0):
        raise field_error(name, value, f"must be a finite number {'> 0' if positive else '>= 0'}")


def _check_cost(name: str, cost: object) -> None:
    if not isinstance(cost, IterationCost):
        raise field_error(
            name, cost, "expected an IterationCost (kv_capacity_tokens, kv_bytes_per_token, max_batch, iteration_s)"
        )
    _integer(f"{name}.kv_capacity_tokens", cost.kv_capacity_tokens, 1)
    _integer(f"{name}.max_batch", cost.max_batch, 1, MAX_BATCH)
    _number(f"{name}.kv_bytes_per_token", cost.kv_bytes_per_token, positive=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One request: when it arrives, its prompt length and how many tokens it generates."""

    arrival_s: float
    input_len: int
    output_len: int

    def __post_init__(self) -> None:
        _number("arrival_s", self.arrival_s, positive=False)
        if self.arrival_s > MAX_DURATION_S:
            raise field_error("arrival_s", self.arrival_s, f"a time of at most {MAX_DURATION_S:,.0f} s (one year)")
        _integer("input_len", self.input_len, 1, MAX_TOKENS)
        _integer("output_len", self.output_len, 1, MAX_TOKENS)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeScenario:
    """A serving deployment and its load. Give either ``rate_per_s`` and ``duration_s`` (Poisson arrivals with
    lengths drawn around ``input_len``/``output_len``) or ``requests`` (a trace).

    With ``prefill_cost`` the deployment is disaggregated: ``prefill_replicas`` engines of ``prefill_cost`` prefill,
    ``replicas`` engines of ``cost`` decode, and the KV cache crosses a link of ``kv_link_bytes_per_s``.
    """

    cost: IterationCost
    """Iteration time and limits of one replica (the decode replicas when disaggregated)."""
    replicas: int = 1
    """Model replicas serving (decode replicas when disaggregated)."""
    scheduler: Scheduler = Scheduler.CONTINUOUS
    chunked_prefill: bool = False
    """Split prompts into chunks that share iterations with decodes (continuous scheduler only)."""
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    token_budget: int | None = None
    """Without chunked prefill: tokens one iteration may schedule (decodes count one each), prompts admitted whole
    while they fit and at least one per iteration (TensorRT-LLM ``max_num_tokens`` without chunked context)."""
    """Tokens per iteration (decodes count one each) with chunked prefill."""
    rate_per_s: float | None = None
    """Mean Poisson arrival rate (requests per second)."""
    duration_s: float | None = None
    """Arrival window of the Poisson process; the run goes on until every request is done."""
    input_len: int = 1024
    """Mean prompt length of Poisson requests (tokens)."""
    output_len: int = 256
    """Mean generated length of Poisson requests (tokens, the first one included)."""
    length_distribution: LengthDistribution = LengthDistribution.FIXED
    length_range: float = 0.0
    """Above 0: Poisson requests' lengths uniform on ``[mean x (1 - r), mean x (1 + r)]`` (``vllm bench serve
    --random-range-ratio r``), in place of ``length_distribution``."""
    length_samples: LengthSamples | None = None
    """A benchmark's length mix (``serve.datasets``): Poisson requests' lengths drawn from its samples, scaled to
    ``input_len`` and ``output_len``, in place of ``length_distribution`` and ``length_range``."""
    requests: tuple[Request, ...] | None = None
    """Explicit requests (a trace); simulated in arrival order (ties in the order given)."""
    seed: int = 0
    """Seed of the random generator: the same seed gives the same result, byte for byte."""
    prefill_cost: IterationCost | None = None
    """Iteration cost of a prefill replica: setting it disaggregates prefill from decode."""
    prefill_replicas: int | None = None
    """Prefill replicas (required with ``prefill_cost``)."""
    kv_link_bytes_per_s: float | None = None
    """Bandwidth of each prefill replica's link to the decode pool (required with ``prefill_cost``)."""
    kv_link_latency_s: float = 0.0
    """One-way latency of a KV transfer."""
    warnings: tuple[str, ...] = ()
    """Notes carried into the result (e.g. bad trace rows)."""
    prefix_hit: float = 0.0
    """Share of each prompt's tokens found in the prefix cache: prefill computes the rest (attending to them); the
    cache still holds the whole prompt per sequence (shared prefix blocks are not deduplicated)."""
    record_batches: int = 0
    """Keep the first this many engine iterations (replica, start, duration, prefill tokens, decodes) for traces."""
    max_requests: int = DEFAULT_MAX_REQUESTS
    """Budget: the most requests the run may simulate (up to :data:`MAX_REQUESTS`)."""
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    """Budget: the most engine iterations the run may simulate (up to :data:`MAX_ITERATIONS`)."""
    adp_balance: AdpBalance | None = None
    """TensorRT-LLM's ADP balance under data-parallel attention (``serve.balance``): new prompts held back until
    every attention rank of a replica has one (``timeout_iters`` at most), then ``batching_wait_iters`` more.
    Only with a cost of more than one attention rank (``dp_attention``) and the continuous scheduler."""
    concurrency: int | None = None
    """Closed loop (``vllm bench serve --max-concurrency``, NIM's concurrency sweeps): this many clients each send
    their next request (of ``requests``, in order) the moment their last one ends; arrival times are ignored."""

    def __post_init__(self) -> None:
        _check_cost("cost", self.cost)
        _integer("record_batches", self.record_batches, 0, MAX_ITERATIONS)
        _integer("replicas", self.replicas, 1, MAX_DEVICES)
        _integer("max_requests", self.max_requests, 1, MAX_REQUESTS)
        _integer("max_iterations", self.max_iterations, 1, MAX_ITERATIONS)
        if not isinstance(self.scheduler, Scheduler):
            raise field_error("scheduler", self.scheduler, f"expected one of {[s.value for s in Scheduler]}")
        if not isinstance(self.chunked_prefill, bool):
            raise field_error("chunked_prefill", self.chunked_prefill, "expected true or false")
        _integer("chunk_tokens", self.chunk_tokens, 1, MAX_TOKENS)
        if self.token_budget is not None:
            _integer("token_budget", self.token_budget, 1, MAX_TOKENS)
        if self.chunked_prefill and self.scheduler is Scheduler.STATIC:
            raise field_error("chunked_prefill", True, "needs the continuous scheduler (static batches prefill once)")
        _integer("input_len", self.input_len, 1, MAX_TOKENS)
        _integer("output_len", self.output_len, 1, MAX_TOKENS)
        if not isinstance(self.length_distribution, LengthDistribution):
            raise field_error(
                "length_distribution", self.length_distribution, f"one of {[d.value for d in LengthDistribution]}"
            )
        _integer("seed", self.seed, 0, MAX_SEED)
        check_share("prefix_hit", self.prefix_hit)
        check_share("length_range", self.length_range, SPREAD_ALLOWED)
        if self.length_samples is not None and not isinstance(self.length_samples, LengthSamples):
            raise field_error("length_samples", self.length_samples, "a dataset's length mix (serve.datasets)")
        if self.concurrency is not None:
            _integer("concurrency", self.concurrency, 1, MAX_REQUESTS)
            if self.requests is None or self.prefill_cost is not None:
                raise field_error("concurrency", self.concurrency, "with requests (the clients' requests in order), "
                                  "on a pool that is not disaggregated")  # fmt: skip
        if self.adp_balance is not None:
            if not isinstance(self.adp_balance, AdpBalance):
                raise field_error("adp_balance", self.adp_balance, "an AdpBalance (batching_wait_iters, timeout_iters)")
            alone = self.scheduler is Scheduler.CONTINUOUS and self.prefill_cost is None
            if hasattr(self.cost, "spec"):  # a speculative engine's iterations are fractions of a step
                allowed = "not with speculative decoding (not modelled: its iterations are fractions of a step)"
                raise field_error("adp_balance", self.adp_balance.to_dict(), allowed)
            if getattr(self.cost, "dp_attention", 1) <= 1 or not alone:
                raise field_error("adp_balance", self.adp_balance.to_dict(), "only with data-parallel attention "
                                  "(dp_attention > 1), the continuous scheduler and no disaggregation")  # fmt: skip
        self._check_source()
        self._check_disaggregation()
        warnings: Any = self.warnings  # lists are accepted and stored as tuples
        if isinstance(warnings, list):
            object.__setattr__(self, "warnings", tuple(warnings))
        if not isinstance(self.warnings, tuple) or not all(isinstance(w, str) for w in self.warnings):
            raise field_error("warnings", self.warnings, "expected a tuple of strings")

    def _check_source(self) -> None:
        if self.requests is None:
            if self.rate_per_s is None or self.duration_s is None:
                raise field_error(
                    "rate_per_s/duration_s", (self.rate_per_s, self.duration_s), "give both, or requests (a trace)"
                )
            check_float("rate_per_s", self.rate_per_s, MAX_RATE_PER_S, "requests per second")
            if self.rate_per_s < MIN_RATE_PER_S:
                raise field_error("rate_per_s", self.rate_per_s, f"at least {MIN_RATE_PER_S:g} requests per second")
            check_float("duration_s", self.duration_s, MAX_DURATION_S, "seconds")
            expected = self.rate_per_s * self.duration_s
            if expected > self.max_requests + 0.5:  # the mean of the Poisson count, rounded
                raise budget_error(
                    f"requests expected (rate {self.rate_per_s:,g}/s x duration {self.duration_s:,g} s)",
                    round(expected),
                    self.max_requests,
                    "--max-requests",
                    MAX_REQUESTS,
                    "lower the rate or the duration",
                )
            return
        if self.rate_per_s is not None or self.duration_s is not None:
            raise field_error("requests", "...", "give either requests or rate_per_s/duration_s, not both")
        requests: Any = self.requests  # lists are accepted and stored as tuples
        if isinstance(requests, list):
            object.__setattr__(self, "requests", tuple(requests))
        if not isinstance(self.requests, tuple) or not self.requests:
            raise field_error("requests", type(self.requests).__name__, "a tuple of Request objects (at least one)")
        if len(self.requests) > self.max_requests:
            raise budget_error(
                "requests in the trace",
                len(self.requests),
                self.max_requests,
                "--max-requests",
                MAX_REQUESTS,
                "simulate a slice of the trace",
            )
        for index, request in enumerate(self.requests):
            if not isinstance(request, Request):
                raise field_error(f"requests[{index}]", request, "expected a Request")

    def _check_disaggregation(self) -> None:
        _number("kv_link_latency_s", self.kv_link_latency_s, positive=False)
        if self.prefill_cost is None:
            for name in ("prefill_replicas", "kv_link_bytes_per_s"):
                if getattr(self, name) is not None:
                    raise field_error(name, getattr(self, name), "only with prefill_cost (disaggregated serving)")
            return
        _check_cost("prefill_cost", self.prefill_cost)
        _integer("prefill_replicas", self.prefill_replicas, 1, MAX_DEVICES)
        _number("kv_link_bytes_per_s", self.kv_link_bytes_per_s, positive=True)
        if self.scheduler is not Scheduler.CONTINUOUS:
            raise field_error("scheduler", self.scheduler.value, "disaggregated serving needs 'continuous'")

    @property
    def disaggregated(self) -> bool:
        return self.prefill_cost is not None

    def to_dict(self) -> dict[str, Any]:
        """The inputs, for JSON (the cost objects by type name, a trace by its size)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Enum):
                value = value.value
            elif f.name in {"cost", "prefill_cost"} and value is not None:
                value = type(value).__name__
            elif f.name == "requests" and value is not None:
                value = len(value)
            elif f.name == "warnings":
                value = list(value)
            out[f.name] = value
        return out


# ----------------------------------------------------------------------------------------------------------------
# Request generation
# ----------------------------------------------------------------------------------------------------------------


def _lengths(rng: np.random.Generator, mean: int, n: int, kind: LengthDistribution) -> np.ndarray:
    if kind is LengthDistribution.FIXED or mean == 1:
        return np.full(n, mean, dtype=np.int64)
    parts = []
    for start in range(0, n, RANDOM_BLOCK):
        size = min(RANDOM_BLOCK, n - start)
        if kind is LengthDistribution.UNIFORM:
            parts.append(rng.integers(1, 2 * mean, size=size, dtype=np.int64))
        else:
            parts.append(rng.geometric(1.0 / mean, size=size).astype(np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def ranged_lengths(rng: np.random.Generator, mean: int, n: int, spread: float) -> np.ndarray:
    """``n`` integer lengths uniform on ``[mean x (1 - spread), mean x (1 + spread)]`` (at least 1): the random
    dataset of ``vllm bench serve`` with ``--random-range-ratio spread``."""
    low = max(1, round(mean * (1.0 - spread)))
    high = max(low, round(mean * (1.0 + spread)))
    return rng.integers(low, high + 1, size=n, dtype=np.int64)


def poisson_requests(scenario: ServeScenario, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrival times, input and output lengths of a Poisson scenario (exponential gaps drawn in blocks)."""
    assert scenario.rate_per_s is not None and scenario.duration_s is not None  # checked on construction
    gaps: list[np.ndarray] = []
    total = 0.0
    while total < scenario.duration_s:
        block = rng.standard_exponential(RANDOM_BLOCK) / scenario.rate_per_s
        gaps.append(block)
        total += float(block.sum())
    arrivals = np.cumsum(np.concatenate(gaps))
    arrivals = arrivals[arrivals < scenario.duration_s]
    n = arrivals.size
    if scenario.length_samples is not None:
        inputs, outputs = scenario.length_samples.draw(rng, n, scenario.input_len, scenario.output_len)
        return arrivals, inputs, outputs
    if scenario.length_range > 0.0:
        inputs = ranged_lengths(rng, scenario.input_len, n, scenario.length_range)
        outputs = ranged_lengths(rng, scenario.output_len, n, scenario.length_range)
        return arrivals, inputs, outputs
    inputs = _lengths(rng, scenario.input_len, n, scenario.length_distribution)
    outputs = _lengths(rng, scenario.output_len, n, scenario.length_distribution)
    return arrivals, inputs, outputs


# ----------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------


Progress = Callable[[int, int], None]
"""Called now and then during a long run with (requests completed, requests accepted)."""


def iteration_lower_bound(scenario: ServeScenario, inputs: np.ndarray, outputs: np.ndarray) -> int:
    """Fewest engine iterations (all replicas together) that can serve requests of these lengths (module docstring).

    Each request's ``output_len`` tokens take that many iterations in a row (one prefill, then one decode each);
    an iteration serves at most ``max_batch`` sequences (the larger pool's, when disaggregated) and holds at most
    the decode replica's ``kv_capacity_tokens`` of cache, while request ``i`` holds ``input_i + t`` tokens in its
    ``t``-th decode iteration.
    """
    if outputs.size == 0:
        return 0
    cost = pipeline_groups(scenario.cost)[1]  # a micro-batch group's engine holds its share of the cache
    max_batch = max(cost.max_batch, scenario.prefill_cost.max_batch if scenario.prefill_cost else 0)
    out = outputs.astype(np.float64)
    # sum over t = 1 .. out - 1 of (input + t)
    cache_token_iterations = float(((out - 1.0) * (inputs + out / 2.0)).sum())
    bounds = (
        float(out.max()),
        float(out.sum()) / max_batch,
        cache_token_iterations / max(cost.kv_capacity_tokens, 1),
    )
    return math.floor(max(bounds))


class _Run:
    """Wires arrivals, pools and KV transfers for one scenario on one kernel."""

    def __init__(self, scenario: ServeScenario, progress: Progress | None = None) -> None:
        self.sc = scenario
        self.progress = progress
        self.rng = np.random.default_rng(scenario.seed)
        if scenario.requests is None:
            arrival, inputs, outputs = poisson_requests(scenario, self.rng)
        else:
            reqs = scenario.requests
            arrival = np.array([r.arrival_s for r in reqs], dtype=float)
            order = np.argsort(arrival, kind="stable")
            arrival = arrival[order]
            inputs = np.array([r.input_len for r in reqs], dtype=np.int64)[order]
            outputs = np.array([r.output_len for r in reqs], dtype=np.int64)[order]
        self.arrival_array, self.input_array, self.output_array = arrival, inputs, outputs
        self.arrival: list[float] = arrival.tolist()
        cached = None
        if scenario.prefix_hit:
            cached = np.minimum(np.floor(scenario.prefix_hit * inputs), inputs - 1).astype(np.int64).tolist()
        self.state = _State(self.arrival, inputs.tolist(), outputs.tolist(), cached)
        self.state.batch_limit = scenario.record_batches
        self.env = Environment(self.rng)
        chunk = scenario.chunk_tokens if scenario.chunked_prefill else None
        whole = None if scenario.chunked_prefill else scenario.token_budget
        static = scenario.scheduler is Scheduler.STATIC
        held = inputs + outputs - 1  # cache a request holds when its last token is generated
        # a pipeline-parallel replica is pp engines, one per micro-batch group (ReplicaCost.micro_batch_groups)
        groups, decode_cost = pipeline_groups(scenario.cost)
        self.rejected = held > decode_cost.kv_capacity_tokens
        self.decode_router = _Router(scenario.replicas * groups)
        self.decode = _Pool(
            lambda r: _Engine(self.env, self.state, decode_cost, index=r, router=self.decode_router,
                              on_done=self._complete, chunk_tokens=chunk, static=static, token_budget=whole,
                              adp_balance=scenario.adp_balance, ranks=getattr(decode_cost, "dp_attention", 1))
        )  # fmt: skip
        self.entry, self.entry_router = self.decode, self.decode_router
        if scenario.prefill_cost is not None:
            assert scenario.prefill_replicas is not None and scenario.kv_link_bytes_per_s is not None
            prefill_groups, prefill_cost = pipeline_groups(scenario.prefill_cost)
            self.rejected |= inputs > prefill_cost.kv_capacity_tokens
            self.entry_router = _Router(scenario.prefill_replicas * prefill_groups)
            self.entry = _Pool(
                lambda r: _Engine(self.env, self.state, prefill_cost, index=r, router=self.entry_router,
                                  on_done=self._handoff, chunk_tokens=chunk, prefill_pool=True, token_budget=whole)
            )  # fmt: skip
            self.state.remaining = [1] * len(self.arrival)  # the prefill pool produces the first token only
            self.link_free_s: dict[int, float] = {}
            self.prefill_groups = prefill_groups
            self.transfer_s_per_token = prefill_cost.kv_bytes_per_token / scenario.kv_link_bytes_per_s
        self.rejected_list: list[bool] = self.rejected.tolist()
        self.next_arrival = 0
        self.completed = 0
        self.accepted = int((~self.rejected).sum())
        kept = ~self.rejected
        needed = iteration_lower_bound(scenario, inputs[kept], outputs[kept])
        if needed > scenario.max_iterations:
            raise budget_error(
                f"engine iterations needed (at least, for {self.accepted:,} requests)",
                needed,
                scenario.max_iterations,
                "--max-iterations",
                MAX_ITERATIONS,
                "simulate fewer or shorter requests",
            )
        self.state.next_check = min(PROGRESS_ITERATIONS, scenario.max_iterations + 1)
        self.state.checkpoint = self._checkpoint
        self.started = time.perf_counter()

    def _arrive_closed(self, event: Event) -> None:
        """Closed loop: one client's next request arrives now."""
        rid = self.next_arrival
        if rid >= len(self.arrival):
            return
        self.next_arrival = rid + 1
        self.arrival[rid] = self.arrival_array[rid] = event.time
        if self.rejected_list[rid]:  # refused on arrival: its client moves on at once
            self._next_client_request(event.time)
        else:
            self.entry[self.entry_router.pick()].enqueue(rid, event.time)

    def _next_client_request(self, now: float) -> None:
        if self.sc.concurrency is not None and self.next_arrival < len(self.arrival):
            self.env.schedule_at(now, self._arrive_closed, priority=URGENT)

    def _arrive(self, event: Event) -> None:
        rid = self.next_arrival
        self.next_arrival = rid + 1
        if rid + 1 < len(self.arrival):
            self.env.schedule_at(self.arrival[rid + 1], self._arrive, priority=URGENT)
        if not self.rejected_list[rid]:
            self.entry[self.entry_router.pick()].enqueue(rid, event.time)

    def _checkpoint(self) -> None:
        """Every few thousand iterations: hold the iteration budget and report progress."""
        st = self.state
        if st.iterations > self.sc.max_iterations:
            raise budget_error(
                f"engine iterations (stopped at {self.env.now:,.1f} s simulated, {self.completed:,} of "
                f"{self.accepted:,} requests done)",
                st.iterations,
                self.sc.max_iterations,
                "--max-iterations",
                MAX_ITERATIONS,
                "simulate fewer or shorter requests",
            )
        st.next_check = min(st.iterations + PROGRESS_ITERATIONS, self.sc.max_iterations + 1)
        if self.progress is not None and time.perf_counter() - self.started >= PROGRESS_AFTER_S:
            self.progress(self.completed, self.accepted)

    def _complete(self, rid: int, now: float, replica: int) -> None:
        self.state.finish[rid] = now
        self.completed += 1
        self._next_client_request(now)

    def _handoff(self, rid: int, now: float, replica: int) -> None:
        """A prefill is done: send the prompt's KV over the prefill replica's link, then decode elsewhere."""
        st = self.state
        if st.output_len[rid] == 1:
            st.finish[rid] = now
            self.completed += 1
            self._next_client_request(now)
            return
        tokens = st.input_len[rid]
        link = replica // self.prefill_groups  # a replica's micro-batch groups share its link
        start = max(now, self.link_free_s.get(link, 0.0))
        self.link_free_s[link] = start + tokens * self.transfer_s_per_token
        arrive = self.link_free_s[link] + self.sc.kv_link_latency_s
        st.transfer[rid] = arrive - now
        st.prefill[rid], st.context[rid], st.remaining[rid] = 0, tokens, st.output_len[rid] - 1
        self.env.schedule_at(arrive, self._arrive_decode, priority=URGENT, payload=rid)

    def _arrive_decode(self, event: Event) -> None:
        self.decode[self.decode_router.pick()].enqueue(event.payload, event.time)

    def run(self) -> ServeTimeline:
        if self.sc.concurrency is not None:
            for _ in range(min(self.sc.concurrency, len(self.arrival))):
                self.env.schedule_at(0.0, self._arrive_closed, priority=URGENT)
        elif self.arrival:
            self.env.schedule_at(self.arrival[0], self._arrive, priority=URGENT)
        self.env.run()
        st = self.state
        if self.progress is not None and time.perf_counter() - self.started >= PROGRESS_AFTER_S:
            self.progress(self.completed, self.accepted)
        return ServeTimeline(
            arrival_s=self.arrival_array,
            input_len=self.input_array,
            output_len=self.output_array,
            first_token_s=np.array(st.first),
            finish_s=np.array(st.finish),
            queue_s=np.array(st.queued),
            transfer_s=np.array(st.transfer),
            rejected=self.rejected,
            busy_s=st.busy_s,
            busy_prefill_s=st.busy_prefill_s,
            iterations=st.iterations,
            batch_seqs=st.batch_seqs,
            preemptions=st.preemptions,
            batches=tuple(st.batches),
            end_s=self.env.now,
        )


def simulate_timeline(scenario: ServeScenario, progress: Progress | None = None) -> ServeTimeline:
    """Run the simulation of ``scenario`` and return every request's times (deterministic for its seed).

    A run over its budgets (``max_requests``, ``max_iterations``) is an ``InputError``; ``progress`` is called
    with (requests completed, requests accepted) every few thousand iterations once a second has passed.
    """
    return _Run(scenario, progress).run()


def simulate_serving(scenario: ServeScenario, progress: Progress | None = None) -> ServeResult:
    """Simulate ``scenario`` and summarise it: the same seed gives the same result, byte for byte."""
    return summarise(scenario, simulate_timeline(scenario, progress))
