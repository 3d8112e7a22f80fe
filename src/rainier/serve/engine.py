"""The engine of one serving replica: its queue, admissions, iterations, preemptions; and the router of a pool.

Split out of :mod:`rainier.serve.simulate` (whose docstring describes the schedulers, the KV-cache policy and the
event rules these classes implement); private to that module.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable

from rainier.serve.balance import AdpBalance
from rainier.serve.buckets import Buckets
from rainier.serve.iteration import KV_WATERMARK_FRACTION, IterationCost, takes_cached_tokens, takes_prefill_seqs
from rainier.sim.kernel import Environment, Event

_UNBOUNDED = 1 << 62  # token budget of an iteration without chunked prefill
_EMPTY: deque[int] = deque()  # the queue an iteration admits from while its prompts are held back (never appended)

# ----------------------------------------------------------------------------------------------------------------
# Engines
# ----------------------------------------------------------------------------------------------------------------


class _Router:
    """Join-the-shortest-queue over one pool (ties to the lowest index): a heap of (load, replica) over the
    replicas used so far, stale entries skipped lazily.

    A replica never used has load 0 and a higher index than every used one, so it is taken exactly when no used
    replica is idle: the picks are those of a heap over the whole pool, in memory that follows the requests in
    flight rather than the pool's size (a fleet of millions of devices costs nothing until it has work).
    """

    __slots__ = ("heap", "load", "size")

    def __init__(self, num_replicas: int) -> None:
        self.size = num_replicas
        self.load: list[int] = []
        self.heap: list[tuple[int, int]] = []

    def pick(self) -> int:
        heap, load = self.heap, self.load
        while heap and heap[0][0] != load[heap[0][1]]:
            heapq.heappop(heap)
        if heap and (heap[0][0] == 0 or len(load) == self.size):
            n, replica = heap[0]
            load[replica] = n + 1
            heapq.heapreplace(heap, (n + 1, replica))
            return replica
        replica = len(load)  # the lowest unused replica beats every busy one
        load.append(1)
        heapq.heappush(heap, (1, replica))
        return replica

    def release(self, replica: int) -> None:
        load = self.load
        load[replica] -= 1
        heapq.heappush(self.heap, (load[replica], replica))
        if len(self.heap) > 4 * len(load) + 64:  # drop stale entries, amortised O(1)
            self.heap = [(n, r) for r, n in enumerate(load)]
            heapq.heapify(self.heap)


class _Pool:
    """The engines of one pool, each made the first time the router sends it work (indices come in order)."""

    __slots__ = ("engines", "make")

    def __init__(self, make: Callable[[int], _Engine]) -> None:
        self.make = make
        self.engines: list[_Engine] = []

    def __getitem__(self, index: int) -> _Engine:
        engines = self.engines
        if index == len(engines):
            engines.append(self.make(index))
        return engines[index]


def _no_checkpoint() -> None:
    return None


class _State:
    """Per-request state shared by every engine of a run (Python lists: scalar access is faster than numpy's)."""

    def __init__(
        self, arrival: list[float], inputs: list[int], outputs: list[int], cached: list[int] | None = None
    ) -> None:
        n = len(arrival)
        self.arrival, self.input_len, self.output_len = arrival, inputs, outputs
        # tokens to prefill on the next admission (0: cache already present); a prefix-cache hit of cached[i]
        # tokens leaves the rest
        self.prefill = list(inputs) if cached is None else [i - c for i, c in zip(inputs, cached, strict=True)]
        self.context = list(inputs)  # cache tokens held right after that prefill
        self.remaining = list(outputs)  # tokens still to generate from the next admission on
        self.decode_start = [0] * n  # first decode iteration of the current stay on a replica
        self.left = [0] * n  # prompt tokens not yet prefilled (chunked prefill)
        self.first = [math.nan] * n
        self.finish = [math.nan] * n
        self.transfer = [math.nan] * n
        self.queued = [0.0] * n
        self.enqueued = [0.0] * n
        self.busy_s = self.busy_prefill_s = 0.0
        self.iterations = self.batch_seqs = self.preemptions = 0
        self.batch_limit = 0  # iterations to record for traces (ServeScenario.record_batches)
        self.batches: list[tuple[int, bool, float, float, int, int]] = []
        self.next_check = 1 << 62  # iteration count at which to call checkpoint (budget, progress)
        self.checkpoint: Callable[[], None] = _no_checkpoint


class _Balancing:
    """TensorRT-LLM's ADP balance on one engine: the settings, the ``ranks`` data-parallel attention ranks sharing
    its queue and batch, and the executor's two counters."""

    __slots__ = ("batching", "ranks", "settings", "waiting")

    def __init__(self, settings: AdpBalance, ranks: int) -> None:
        self.settings, self.ranks = settings, ranks
        self.waiting = self.batching = 0

    def hold(self, queued: int, running: int, decoding: int, max_batch: int) -> bool:
        """Whether this iteration's new prompts are held back (TensorRT-LLM's executor, ``_balance_adp_requests``;
        tech blog 10, "ADP Balance Strategy").

        Each attention rank has its own requests; the engine's queue stands for all of them, dealt to the ranks
        with the fewest, so ``ranks`` queued prompts give every rank one, and ``ranks`` decoding sequences (and
        free slots) every rank one. Once every rank has a prompt and a free slot, prompts wait
        ``batching_wait_iters`` more iterations while every rank still decodes (more prompts gather, so the ranks
        prefill alike); until then they wait, ``timeout_iters`` iterations at most, for the ranks to have one each
        -- the count runs whether or not any prompt waits (the executor's), so a lone arrival waits up to the next
        time it runs out -- and go at once when some rank has nothing to decode."""
        ranks, settings = self.ranks, self.settings
        all_decoding = decoding >= ranks
        if queued >= ranks and running + ranks <= max_batch:
            self.waiting = 0
            if all_decoding:
                if self.batching < settings.batching_wait_iters:
                    self.batching += 1
                    return True
                self.batching = 0
            return False
        self.waiting += 1
        if self.waiting >= settings.timeout_iters or not all_decoding:
            self.waiting = 0
            return False
        return True


class _Engine:
    """One replica: a FIFO queue and the running sequences, advanced one iteration per event."""

    def __init__(
        self,
        env: Environment,
        state: _State,
        cost: IterationCost,
        *,
        index: int,
        router: _Router,
        on_done: Callable[[int, float, int], None],
        chunk_tokens: int | None,
        static: bool = False,
        prefill_pool: bool = False,
        token_budget: int | None = None,
        adp_balance: AdpBalance | None = None,
        ranks: int = 1,
    ) -> None:
        self.env, self.state, self.index, self.router, self.on_done = env, state, index, router, on_done
        self.iteration_s: Callable[..., float] = cost.iteration_s
        self.takes_prefill_seqs = takes_prefill_seqs(cost)
        self.takes_cached_tokens = takes_cached_tokens(cost)
        # a cost may offer its iteration time as one closure of all five arguments (ReplicaCost.iteration_function)
        make = getattr(cost, "iteration_function", None)
        self.duration: Callable[[int, int, int, int, int], float] | None = make() if callable(make) else None
        self.capacity = int(cost.kv_capacity_tokens)
        self.watermark_capacity = self.capacity - int(KV_WATERMARK_FRACTION * self.capacity)
        self.max_batch = int(cost.max_batch)
        self.chunk = _UNBOUNDED if chunk_tokens is None else chunk_tokens
        self.whole = _UNBOUNDED if token_budget is None else token_budget  # whole prompts per iteration, in tokens
        self.prefill_pool = prefill_pool
        # Neuron's compiled lengths (serve.buckets): a whole prompt is prefilled at its bucket, and a decode step reads
        # every sequence's cache over the bucket of the longest, tracked by a max-heap of (-(context - decode_start),
        # rid, finish) over decode stays, stale entries skipped lazily
        self.buckets: Buckets | None = getattr(cost, "buckets", None)
        self.longest: list[tuple[int, int, int]] = []
        self.queue: deque[int] = deque()
        self.running: dict[int, int] = {}  # admission order -> finish iteration (-1 while prefilling)
        self.finish_heap: list[tuple[int, int]] = []
        self.prefilling: deque[int] = deque()  # chunked prompts not done yet, in admission order
        self.prefilled: list[int] = []  # prompts whose prefill ends with the current iteration
        self.static_batch: list[int] = []
        self.iteration = 0
        self.kv = 0  # cache tokens held, prompts reserved whole on admission
        self.kv_prefilling = 0  # part of kv reserved by prompts still prefilling
        self.num_decoding = 0
        self.busy = False
        self._boundary = self._static_boundary if static else self._continuous_boundary
        # TensorRT-LLM's ADP balance (serve.balance): new prompts held back across iterations; one attribute, since
        # every attribute more slows the engine's hot loop (its instance dictionary)
        self.balance = _Balancing(adp_balance, ranks) if adp_balance is not None else None

    def enqueue(self, rid: int, now: float) -> None:
        self.queue.append(rid)
        self.state.enqueued[rid] = now
        if not self.busy:
            self.busy = True
            self.env.schedule(0.0, self._boundary)

    def _done(self, rid: int, now: float) -> None:
        self.router.release(self.index)
        self.on_done(rid, now, self.index)

    def _continuous_boundary(self, event: Event) -> None:
        """End the current iteration (first tokens, finished requests), then plan and start the next one."""
        st, now, it = self.state, event.time, self.iteration
        running, heap = self.running, self.finish_heap
        context, remaining, decode_start = st.context, st.remaining, st.decode_start
        kv, decoding = self.kv, self.num_decoding
        for rid in self.prefilled:
            if st.first[rid] != st.first[rid]:  # NaN: the first token (a recompute after preemption keeps the old)
                st.first[rid] = now
            self.kv_prefilling -= context[rid]
            if remaining[rid] == 1:
                del running[rid]
                kv -= context[rid]
                self._done(rid, now)
            else:
                finish = it + remaining[rid] - 1
                running[rid] = finish
                decode_start[rid] = it + 1
                heapq.heappush(heap, (finish, rid))
                decoding += 1
                if self.buckets is not None:
                    heapq.heappush(self.longest, (decode_start[rid] - context[rid], rid, finish))
        self.prefilled = []
        while heap and heap[0][0] <= it:
            finish, rid = heapq.heappop(heap)
            if running.get(rid) != finish:
                continue  # preempted since
            del running[rid]
            decoding -= 1
            kv -= context[rid] + finish - decode_start[rid] + 1
            self._done(rid, now)

        it += 1
        queue = self.queue
        # every decoding sequence appends one token to its cache this iteration: preempt the newest until they fit
        while kv + decoding > self.capacity:
            rid, finish = running.popitem()
            st.preemptions += 1
            if finish < 0:
                kv -= context[rid]
                self.kv_prefilling -= context[rid]
                self.prefilling.remove(rid)
            else:
                held = context[rid] + it - decode_start[rid]
                kv -= held
                decoding -= 1
                st.prefill[rid] = context[rid] = held + 1  # recompute prompt + generated tokens
                remaining[rid] = finish - it + 1
            queue.appendleft(rid)
            st.enqueued[rid] = now
        kv += decoding

        budget = self.chunk - decoding
        prefill_tokens = prefill_seqs = cached = padding = 0
        left, prefilled, prefilling = st.left, self.prefilled, self.prefilling
        while prefilling and budget > 0:
            rid = prefilling[0]
            cached += context[rid] - left[rid]  # its prefix hit and earlier chunks, attended to by this chunk
            take = min(left[rid], budget)
            left[rid] -= take
            budget -= take
            prefill_tokens += take
            prefill_seqs += 1
            if left[rid]:
                break
            prefilled.append(prefilling.popleft())
        prefill = st.prefill
        if self.balance is not None and self.balance.hold(len(queue), len(running), decoding, self.max_batch):
            queue = _EMPTY  # no new prompt this iteration (decodes and chunks already scheduled run)
        while queue and len(running) < self.max_batch:
            rid = queue[0]
            tokens = prefill[rid]
            if tokens and (budget <= 0 or (prefill_seqs and prefill_tokens + tokens + decoding > self.whole)):
                break
            need = context[rid] + (0 if tokens else 1)
            if kv + need > (self.watermark_capacity if running else self.capacity):
                break
            queue.popleft()
            st.queued[rid] += now - st.enqueued[rid]
            kv += need
            if tokens:
                cached += context[rid] - tokens  # a prefix-cache hit (0 after a preemption: all recomputed)
                take = min(tokens, budget)
                budget -= take
                prefill_tokens += take
                prefill_seqs += 1
                running[rid] = -1
                self.kv_prefilling += context[rid]
                if take == tokens:
                    prefilled.append(rid)
                    if self.buckets is not None:  # a whole prompt runs at its bucket
                        padding += self.buckets.pad(context[rid]) - context[rid]
                else:
                    left[rid] = tokens - take
                    prefilling.append(rid)
            else:  # KV arrived from a prefill replica: decodes from this iteration on
                finish = it + remaining[rid] - 1
                running[rid] = finish
                decode_start[rid] = it
                heapq.heappush(heap, (finish, rid))
                decoding += 1
                if self.buckets is not None:
                    heapq.heappush(self.longest, (decode_start[rid] - context[rid], rid, finish))
        self.iteration, self.kv, self.num_decoding = it, kv, decoding
        if not running:
            self.busy = False
            return
        decode_kv = kv - self.kv_prefilling
        if self.buckets is not None:
            prefill_tokens += padding
            if decoding:
                decode_kv = decoding * self._decode_bucket(it)
        if self.duration is not None:
            duration = self.duration(prefill_tokens, decoding, decode_kv, prefill_seqs, cached)
        elif self.takes_cached_tokens:
            duration = self.iteration_s(
                prefill_tokens, decoding, decode_kv, prefill_seqs=prefill_seqs, cached_tokens=cached
            )
        elif self.takes_prefill_seqs:
            duration = self.iteration_s(prefill_tokens, decoding, decode_kv, prefill_seqs=prefill_seqs)
        else:
            duration = self.iteration_s(prefill_tokens, decoding, decode_kv)
        st.busy_s += duration
        if self.prefill_pool:
            st.busy_prefill_s += duration
        st.iterations += 1
        st.batch_seqs += decoding + prefill_seqs
        if st.iterations >= st.next_check:
            st.checkpoint()
        if len(st.batches) < st.batch_limit:
            st.batches.append((self.index, self.prefill_pool, event.time, duration, prefill_tokens, decoding))
        self.env.schedule(duration, self._boundary)

    def _decode_bucket(self, it: int) -> int:
        """The bucket of the longest decoding sequence's cache in iteration ``it`` (with ``buckets``, decodes
        running)."""
        longest, running, state = self.longest, self.running, self.state
        while longest and running.get(longest[0][1]) != longest[0][2]:
            heapq.heappop(longest)  # finished or preempted since
        if len(longest) > 4 * len(running) + 64:  # drop stale entries, amortised O(1)
            starts, context = state.decode_start, state.context
            self.longest = longest = [
                (starts[rid] - context[rid], rid, finish) for rid, finish in running.items() if finish >= 0
            ]
            heapq.heapify(longest)
        assert self.buckets is not None and longest
        return self.buckets.pad(it - longest[0][0] + 1)

    def _static_boundary(self, event: Event) -> None:
        """Return the finished batch, then form the next one and time it whole (no admissions in between)."""
        st, now = self.state, event.time
        for rid in self.static_batch:
            self._done(rid, now)
        batch: list[int] = []
        queue, inputs, outputs = self.queue, st.input_len, st.output_len
        prompt_tokens = longest = 0
        while queue and len(batch) < self.max_batch:
            rid = queue[0]
            new_longest = max(longest, outputs[rid])
            # every sequence is padded to the batch's longest output
            if prompt_tokens + inputs[rid] + (len(batch) + 1) * (new_longest - 1) > self.capacity:
                break
            queue.popleft()
            st.queued[rid] += now - st.enqueued[rid]
            batch.append(rid)
            prompt_tokens += inputs[rid]
            longest = new_longest
        self.static_batch = batch
        if not batch:
            self.busy = False
            return
        n = len(batch)
        extra: tuple[dict[str, int], dict[str, int]] = ({}, {})
        if self.takes_prefill_seqs:
            extra = ({"prefill_seqs": n}, {"prefill_seqs": 0})
        new_tokens = sum(st.prefill[rid] for rid in batch)  # less any prefix-cache hits
        if self.takes_cached_tokens:
            extra[0]["cached_tokens"] = prompt_tokens - new_tokens
        buckets = self.buckets
        widest = max(inputs[rid] for rid in batch) if buckets is not None else 0
        if buckets is not None:  # one compiled shape: every prompt padded to the bucket of the longest
            new_tokens = n * buckets.pad(widest) - (prompt_tokens - new_tokens)
        elapsed = self.iteration_s(new_tokens, 0, 0, **extra[0])
        for rid in batch:
            st.first[rid] = now + elapsed
        for step in range(1, longest):
            held = prompt_tokens + n * step if buckets is None else n * buckets.pad(widest + step)
            elapsed += self.iteration_s(0, n, held, **extra[1])
        st.busy_s += elapsed
        st.iterations += longest
        st.batch_seqs += n * longest
        if st.iterations >= st.next_check:
            st.checkpoint()
        if len(st.batches) < st.batch_limit:
            st.batches.append((self.index, self.prefill_pool, now, elapsed, prompt_tokens, n))
        self.env.schedule(elapsed, self._boundary)
