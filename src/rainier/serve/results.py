"""What a serving simulation measured: per-request times (:class:`ServeTimeline`) and their summary
(:class:`ServeResult`: percentiles, throughput, utilisation, warnings), split out of :mod:`rainier.serve.simulate`.

The summary is physically sane by construction: a run lasts until its last event, so every replica's busy time
fits in it and a busy fraction is at most 1; latencies of a run where nothing completed are ``None`` and
:meth:`ServeResult.null_reasons` says why (``--json`` writes it as ``null_reasons``), never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rainier.errors import InputError, field_error
from rainier.frame import frame
from rainier.serve.iteration import pipeline_groups

if TYPE_CHECKING:
    import pandas as pd

    from rainier.serve.simulate import ServeScenario

PERCENTILES = (50.0, 90.0, 99.0)
OVERLOAD_GROWTH, OVERLOAD_SLACK = 1.5, 20
"""A run whose requests in the system grow by this factor (plus slack for noise) from halfway through the arrivals
to their end is flagged as overloaded: its queue grows without bound."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Percentiles:
    """Distribution of one latency over requests, in milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float

    @staticmethod
    def of(values_s: np.ndarray) -> Percentiles | None:
        """Percentiles of ``values_s`` (seconds) in ms; None without samples."""
        if values_s.size == 0:
            return None
        p50, p90, p99 = (float(v) * 1e3 for v in np.percentile(values_s, PERCENTILES))
        return Percentiles(p50=p50, p90=p90, p99=p99, mean=float(values_s.mean()) * 1e3)

    def to_dict(self) -> dict[str, float]:
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99, "mean": self.mean}


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ServeTimeline:
    """Per-request times of one run (seconds; NaN where a request never got there), in arrival order."""

    arrival_s: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    queue_s: np.ndarray
    """Time spent waiting in queues (readmissions after preemption and the decode queue included)."""
    transfer_s: np.ndarray
    """KV transfer time from the end of the prefill to the decode pool (NaN when not disaggregated)."""
    rejected: np.ndarray
    """True for requests that can never fit a replica's KV cache."""
    busy_s: float
    """Replica-seconds spent in iterations (both pools)."""
    busy_prefill_s: float
    iterations: int
    batch_seqs: int
    """Sequences summed over iterations (mean batch = batch_seqs / iterations)."""
    preemptions: int
    batches: tuple[tuple[int, bool, float, float, int, int], ...] = ()
    """The first ``record_batches`` iterations: (replica, in the prefill pool, start s, duration s, prefill tokens,
    decoding sequences); a static batch is one entry for its whole run."""
    end_s: float = 0.0
    """Time of the run's last event: every iteration has ended by then."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeResult:
    """What a serving simulation measured, with the scenario's key inputs. Latencies are over completed requests;
    TPOT is ``(e2e - ttft) / (output_len - 1)`` over requests with more than one output token."""

    requests_submitted: int
    requests_completed: int
    rejected: int
    duration_s: float
    arrival_window_s: float
    ttft_ms: Percentiles | None
    tpot_ms: Percentiles | None
    e2e_ms: Percentiles | None
    queue_ms: Percentiles | None
    kv_transfer_ms: Percentiles | None
    output_tokens_per_s: float
    total_tokens_per_s: float
    requests_per_s: float
    utilisation: float
    """Busy fraction of all replicas over ``duration_s``."""
    prefill_utilisation: float | None
    """Busy fraction of the prefill pool (disaggregated only)."""
    mean_batch: float | None
    """Sequences per iteration, averaged over iterations (``None`` when no iteration ran)."""
    iterations: int
    preemptions: int
    scheduler: str
    chunked_prefill: bool
    replicas: int
    prefill_replicas: int | None
    seed: int
    warnings: tuple[str, ...] = field(default=())
    adp_balance: dict[str, int] | None = None
    """TensorRT-LLM's ADP balance the engines ran (``serve.balance``): its two iteration limits; None: off."""
    final_request_done_s: float | None = None
    """When the last request to arrive finished (None: none finished). MLPerf LoadGen's Server throughput divides
    by it ("Completed samples per second", loadgen results.cc ``final_query_all_samples_done_time``), not by the
    run's end: the longest earlier requests' drain is left out."""

    def to_frame(self) -> pd.DataFrame:
        """This result as a pandas DataFrame (``rainier.frame``)."""
        return frame(self.to_dict())

    def null_reasons(self) -> dict[str, str]:
        """Why each null metric is null, by JSON Pointer (the ``null_reasons`` of ``rainier.report.jsondoc``)."""
        nothing = "no request completed" if not self.requests_completed else None
        reasons = {
            "ttft_ms": nothing,
            "e2e_ms": nothing,
            "queue_ms": nothing,
            "tpot_ms": nothing or "no completed request generated more than one token",
            "kv_transfer_ms": None if not self.prefill_replicas else nothing or "no request reached the decode pool",
            "mean_batch": "no engine iteration ran",
        }
        return {f"/{key}": why for key, why in reasons.items() if why is not None and getattr(self, key) is None}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, Percentiles) else value
        out["warnings"] = list(self.warnings)
        reasons = self.null_reasons()
        if reasons:
            out["null_reasons"] = reasons
        return out


MIN_RATE_WINDOW_S = 1e-9  # a run shorter than a nanosecond has no meaningful rate


def request_latencies(t: ServeTimeline, done: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TTFT, TPOT and end-to-end latency (seconds) of the completed requests ``done`` selects; TPOT is
    ``(e2e - ttft) / (output_len - 1)`` over those with more than one output token."""
    ttft = t.first_token_s[done] - t.arrival_s[done]
    e2e = t.finish_s[done] - t.arrival_s[done]
    outputs = t.output_len[done]
    multi = outputs > 1
    return ttft, (e2e[multi] - ttft[multi]) / (outputs[multi] - 1), e2e


def summarise(scenario: ServeScenario, timeline: ServeTimeline) -> ServeResult:
    """Percentiles, throughput and utilisation of a run."""
    t = timeline
    done = ~np.isnan(t.finish_s)
    window = scenario.duration_s if scenario.duration_s is not None else float(t.arrival_s.max())
    last = float(t.finish_s[done].max()) if done.any() else 0.0
    # the run lasts until its last event (every iteration has ended by then) or the end of the arrival window
    duration = max(last, window, t.end_s)
    inputs, outputs = t.input_len[done], t.output_len[done]
    final_done = float(t.finish_s[done][np.argmax(t.arrival_s[done])]) if done.any() else None
    ttft, tpot, e2e = request_latencies(t, done)
    transfer = t.transfer_s[done & ~np.isnan(t.transfer_s)]
    num_rejected = int(t.rejected.sum())
    num_done = int(done.sum())
    warnings = list(scenario.warnings)
    unfinished = int(t.arrival_s.size) - num_done - num_rejected
    if unfinished:
        warnings.append(f"{unfinished:,} accepted requests never finished: their latencies are left out")
    if not num_done:
        warnings.append("no request completed: the latency percentiles are null")
    if num_rejected:
        limits = f"input_len + output_len - 1 > {scenario.cost.kv_capacity_tokens:,} tokens"
        if scenario.prefill_cost is not None:
            limits += f", or input_len > {scenario.prefill_cost.kv_capacity_tokens:,} on a prefill replica"
        warnings.append(f"{num_rejected:,} requests rejected: too long for a replica's KV cache ({limits})")
    if window > 0:
        # a queue that keeps growing: twice as many requests in the system at the end of the arrivals as halfway
        finished = np.sort(t.finish_s[done])
        in_system = [
            int(np.searchsorted(t.arrival_s, when, side="right") - np.searchsorted(finished, when, side="right"))
            for when in (window / 2, window)
        ]
        if in_system[1] > OVERLOAD_GROWTH * in_system[0] + OVERLOAD_SLACK:
            warnings.append(
                f"overloaded: {in_system[1]:,} requests in the system when arrivals stopped at {window:,.1f} s "
                f"({in_system[0]:,} halfway); the last finished at {duration:,.1f} s"
            )
    prefill_replicas = scenario.prefill_replicas if scenario.disaggregated else None
    # engines: a pipeline-parallel replica runs one per micro-batch group, each group's pass keeping one stage busy
    # at a time, so a replica's stages are busy for its groups' busy time over the groups
    engines = scenario.replicas * pipeline_groups(scenario.cost)[0]
    prefill_engines = None
    if prefill_replicas and scenario.prefill_cost is not None:
        prefill_engines = prefill_replicas * pipeline_groups(scenario.prefill_cost)[0]
    scale = 1.0 / duration if duration > MIN_RATE_WINDOW_S else 0.0  # no rate over a vanishing run (1/5e-324 = inf)
    # every iteration ends by duration_s, so a busy fraction is at most 1 (min() only absorbs rounding)
    utilisation = min(1.0, t.busy_s * scale / (engines + (prefill_engines or 0)))
    prefill_busy = min(1.0, t.busy_prefill_s * scale / prefill_engines) if prefill_engines else None
    return ServeResult(
        requests_submitted=int(t.arrival_s.size),
        requests_completed=num_done,
        rejected=num_rejected,
        duration_s=duration,
        arrival_window_s=float(window),
        ttft_ms=Percentiles.of(ttft),
        tpot_ms=Percentiles.of(tpot),
        e2e_ms=Percentiles.of(e2e),
        queue_ms=Percentiles.of(t.queue_s[done]),
        kv_transfer_ms=Percentiles.of(transfer) if scenario.disaggregated else None,
        output_tokens_per_s=float(outputs.sum()) * scale,
        total_tokens_per_s=float(inputs.sum() + outputs.sum()) * scale,
        requests_per_s=num_done * scale,
        utilisation=utilisation,
        prefill_utilisation=prefill_busy,
        mean_batch=t.batch_seqs / t.iterations if t.iterations else None,
        iterations=t.iterations,
        preemptions=t.preemptions,
        scheduler=scenario.scheduler.value,
        chunked_prefill=scenario.chunked_prefill,
        replicas=scenario.replicas,
        prefill_replicas=prefill_replicas,
        seed=scenario.seed,
        warnings=tuple(warnings),
        adp_balance=scenario.adp_balance.to_dict() if scenario.adp_balance is not None else None,
        final_request_done_s=final_done,
    )


REQUEST_COLUMNS = (
    "request",
    "arrival_s",
    "input_len",
    "output_len",
    "status",
    "queue_ms",
    "ttft_ms",
    "tpot_ms",
    "e2e_ms",
    "kv_transfer_ms",
)


def request_rows(timeline: ServeTimeline) -> dict[str, np.ndarray]:
    """One row per request, in arrival order: its arrival, lengths, status and latencies (ms; NaN where none).

    ``status`` is ``completed``, ``rejected`` (too long for a replica's KV cache) or ``unfinished`` (still in
    flight when the run stopped); TPOT is ``(e2e - ttft) / (output_len - 1)``, NaN for one-token outputs.
    """
    t = timeline
    done = ~np.isnan(t.finish_s)
    status = np.where(done, "completed", np.where(t.rejected, "rejected", "unfinished"))
    ttft = (t.first_token_s - t.arrival_s) * 1e3
    e2e = (t.finish_s - t.arrival_s) * 1e3
    steps = t.output_len.astype(float) - 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(steps > 0, (e2e - ttft) / steps, np.nan)
    return {
        "request": np.arange(t.arrival_s.size),
        "arrival_s": t.arrival_s,
        "input_len": t.input_len,
        "output_len": t.output_len,
        "status": status,
        "queue_ms": t.queue_s * 1e3,
        "ttft_ms": ttft,
        "tpot_ms": tpot,
        "e2e_ms": e2e,
        "kv_transfer_ms": t.transfer_s * 1e3,
    }


def write_requests(timeline: ServeTimeline, path: Path | str) -> Path:
    """Write :func:`request_rows` to ``path``: CSV, or Parquet (through DuckDB, no pyarrow) for a ``.parquet`` name."""
    import duckdb
    import pandas as pd

    target = Path(path)
    table = pd.DataFrame(request_rows(timeline), columns=list(REQUEST_COLUMNS))
    suffix = target.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise field_error("requests-out", str(path), "a file name ending .csv or .parquet")
    try:
        if suffix == ".csv":
            table.to_csv(target, index=False)
        else:
            connection = duckdb.connect()
            connection.register("requests", table)
            escaped = str(target).replace("'", "''")
            connection.execute(f"COPY requests TO '{escaped}' (FORMAT parquet)")
            connection.close()
    except OSError as exc:
        raise InputError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return target
