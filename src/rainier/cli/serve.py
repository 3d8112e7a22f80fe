"""``rainier serve ...``: one serving configuration, a batching simulation, fleet sizing under SLOs.

Registered on the main app by ``rainier.cli``; each command parses its options, calls ``rainier.api.serve`` and
renders with ``rainier.report``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from rainier.cli import (
    AcceleratorOption,
    ClusterOption,
    JsonOption,
    ReportOption,
    _err,
    _print_tables,
    _write_extras,
    app,
    check_output,
    emit_json,
    user_errors,
)
from rainier.errors import field_error
from rainier.serve.limits import DEFAULT_MAX_ITERATIONS, DEFAULT_MAX_REQUESTS, MAX_ITERATIONS, MAX_REQUESTS

serve_app = typer.Typer(
    help="Serving: latency and throughput of a configuration, batching simulation, fleet sizing.",
    no_args_is_help=True,
)
app.add_typer(serve_app, name="serve")

ServeModelOption = Annotated[str, typer.Option("--model", help="Catalog model name or Hugging Face config.json.")]
PrecisionOption = Annotated[
    str,
    typer.Option(
        "--precision",
        help="Weights: bf16, fp16, fp8, fp4 (Blackwell, Trainium3), int8 (W8A8), int8-weights, int4-weights "
        "(AWQ/GPTQ) or mxfp4-experts (gpt-oss).",
    ),
]
KvPrecisionOption = Annotated[
    str | None,
    typer.Option("--kv-precision", help="KV-cache format: bf16, fp16 or fp8 (default: fp8 with fp8/fp4 weights)."),
]
PrefixHitOption = Annotated[
    float, typer.Option("--prefix-hit", help="Share of each prompt's tokens found in the prefix cache (0 to <1).")
]
UnitOption = Annotated[
    str, typer.Option("--unit", help="Parallel degrees in devices or NeuronCores (core), as in the validation data.")
]


SPECULATIVE_HELP = (
    "Speculative decoding: METHOD:k=K[,accept=RATE|,len=TOKENS][,model=DRAFT][,launch=fused|separate], METHOD one "
    "of draft, eagle, eagle3, medusa, mtp, ngram (e.g. eagle3:k=3,accept=0.74); launch=separate: the drafter is its "
    "own program, launched once more per step (vLLM Neuron's EAGLE)."
)
SpeculativeOption = Annotated[str | None, typer.Option("--speculative", help=SPECULATIVE_HELP)]
# mean request lengths of a load that may come from a benchmark's mix (--lengths): None takes the mix's, or the default
MeanInputLenOption = Annotated[
    int | None, typer.Option("--input-len", help="Mean prompt tokens (1024, or the --lengths mix's mean).")
]
MeanOutputLenOption = Annotated[
    int | None, typer.Option("--output-len", help="Mean output tokens (256, or the --lengths mix's mean).")
]
EpOption = Annotated[
    int, typer.Option("--ep", help="Expert-parallel degree: within tp, or tp x dp-attention with --dp-attention.")
]
DpAttentionOption = Annotated[
    int,
    typer.Option(
        "--dp-attention",
        help="Data-parallel attention groups of tp ranks (MoE models; needs --ep = tp x dp-attention): "
        "attention and dense layers replicated per group, experts over all ep ranks.",
    ),
]
AttentionOption = Annotated[
    str,
    typer.Option(
        "--attention", help="The engine's attention kernels: fused (today's engines), per-head-decode, unfused."
    ),
]
TwoBatchOverlapOption = Annotated[
    bool,
    typer.Option(
        "--two-batch-overlap",
        help="Run the batch as two micro-batches, each one's expert all-to-all hidden behind the other's compute "
        "(SGLang --enable-two-batch-overlap; needs --ep > 1).",
    ),
]

EplbOption = Annotated[
    bool,
    typer.Option(
        "--eplb",
        help="Place and replicate the experts by their measured load (EPLB: SGLang --enable-eplb, TensorRT-LLM's "
        "MoE load balancer), so the busiest expert-parallel rank gets little more than the mean (needs --ep > 1).",
    ),
]

PROGRESS_AFTER_S = 1.0  # a command quicker than this draws no progress bar


@contextlib.contextmanager
def _progress_after(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (a terminal only) for a command that has run over :data:`PROGRESS_AFTER_S`:
    ``update(done, total)`` draws it from the first call after that, so short commands draw nothing."""
    bar: Any = None
    task: Any = None
    started = time.perf_counter()

    def update(done: int, total: int) -> None:
        nonlocal bar, task
        if not _err.is_terminal or time.perf_counter() - started < PROGRESS_AFTER_S:
            return
        if bar is None:
            from rich.progress import Progress

            bar = Progress(console=_err, transient=True)
            bar.start()
            task = bar.add_task(label, total=total)
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if bar is not None:
            bar.stop()


@serve_app.command("estimate")
@user_errors
def serve_estimate(
    model: ServeModelOption,
    cluster: ClusterOption = None,
    accelerator: AcceleratorOption = None,
    count: Annotated[int | None, typer.Option("--count", help="Devices (with --accelerator).")] = None,
    tp: Annotated[int, typer.Option("--tp", help="Tensor-parallel degree of one replica.")] = 1,
    pp: Annotated[int, typer.Option("--pp", help="Pipeline-parallel degree of one replica.")] = 1,
    ep: EpOption = 1,
    dp_attention: DpAttentionOption = 1,
    batch: Annotated[int, typer.Option("--batch", help="Sequences per replica batch.")] = 1,
    input_len: Annotated[int, typer.Option("--input-len", help="Prompt tokens per request.")] = 128,
    output_len: Annotated[int, typer.Option("--output-len", help="Generated tokens per request.")] = 128,
    precision: PrecisionOption = "bf16",
    unit: UnitOption = "device",
    speculative: SpeculativeOption = None,
    attention: AttentionOption = "fused",
    kv_precision: KvPrecisionOption = None,
    prefix_hit: PrefixHitOption = 0.0,
    two_batch_overlap: TwoBatchOverlapOption = False,
    eplb: EplbOption = False,
    prefill_chunk: Annotated[
        int,
        typer.Option(
            "--prefill-chunk",
            help="Prefill the prompts this many tokens at a time (chunked prefill; with --pp the chunks pipeline "
            "through the stages). 0: each prompt in one pass.",
        ),
    ] = 0,
    bucketing: Annotated[
        bool,
        typer.Option(
            "--bucketing/--no-bucketing",
            help="Neuron runtimes: pad prompts and caches to the compiled buckets (powers of two from 128 up to "
            "the model's context length); --no-bucketing: one compiled length of input + output. No effect on GPUs.",
        ),
    ] = True,
    report_path: ReportOption = None,
    as_json: JsonOption = False,
) -> None:
    """TTFT, TPOT, end-to-end latency, tokens/s and memory of one configuration (static batch)."""
    from rainier.api.serve import run_serve_estimate
    from rainier.report.serve_view import serve_tables

    result = run_serve_estimate(
        model=model,
        cluster=cluster,
        accelerator=accelerator,
        count=count,
        tp=tp,
        pp=pp,
        ep=ep,
        dp_attention=dp_attention,
        batch=batch,
        input_len=input_len,
        output_len=output_len,
        precision=precision,
        unit=unit,
        speculative=speculative,
        attention=attention,
        kv_precision=kv_precision,
        prefix_hit=prefix_hit,
        two_batch_overlap=two_batch_overlap,
        eplb=eplb,
        prefill_chunk=prefill_chunk,
        bucketing=bucketing,
    )
    _write_extras(report_path, None, result)
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_tables(serve_tables(result.to_dict()))


@serve_app.command("simulate")
@user_errors
def serve_simulate(
    model: ServeModelOption,
    cluster: ClusterOption = None,
    accelerator: AcceleratorOption = None,
    count: Annotated[int | None, typer.Option("--count", help="Devices (with --accelerator).")] = None,
    tp: Annotated[int, typer.Option("--tp", help="Tensor-parallel degree of one replica.")] = 1,
    pp: Annotated[int, typer.Option("--pp", help="Pipeline-parallel degree of one replica.")] = 1,
    ep: EpOption = 1,
    dp_attention: DpAttentionOption = 1,
    precision: PrecisionOption = "bf16",
    unit: UnitOption = "device",
    rate: Annotated[float | None, typer.Option("--rate", help="Poisson arrivals, requests per second.")] = None,
    trace: Annotated[
        str | None, typer.Option("--trace", help="CSV or JSONL of arrival_s, input_len, output_len.")
    ] = None,
    duration: Annotated[float | None, typer.Option("--duration", help="Arrival window in seconds.")] = None,
    input_len: MeanInputLenOption = None,
    output_len: MeanOutputLenOption = None,
    lengths: Annotated[
        str,
        typer.Option(
            "--lengths",
            help="fixed, uniform or geometric around the means, or a benchmark dataset's mix scaled to them "
            "(rainier catalog datasets, e.g. mlperf-deepseek-r1).",
        ),
    ] = "fixed",
    length_range: Annotated[
        float,
        typer.Option(
            "--length-range",
            help="Lengths uniform within +/- this share of the means (vllm bench serve --random-range-ratio); "
            "replaces --lengths.",
        ),
    ] = 0.0,
    scheduler: Annotated[str, typer.Option("--scheduler", help="continuous or static batching.")] = "continuous",
    chunked_prefill: Annotated[
        bool, typer.Option("--chunked-prefill", help="Split prompts into chunks shared with decodes.")
    ] = False,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Engine limit on sequences per iteration.")] = 256,
    token_budget: Annotated[
        int | None,
        typer.Option(
            "--token-budget",
            help="Tokens one iteration may schedule, decodes counting one each (TensorRT-LLM max_num_tokens, vLLM "
            "max_num_batched_tokens, SGLang chunked_prefill_size): prompts are chunked to it with --chunked-prefill "
            "(default 512), else admitted whole while they fit (default: no limit).",
        ),
    ] = None,
    disaggregate: Annotated[
        str | None,
        typer.Option("--disaggregate", help="prefill=ID:DEVICES,decode=ID:DEVICES (e.g. h100-sxm:16 and trn2:64)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same output.")] = 0,
    max_requests: Annotated[
        int,
        typer.Option(
            "--max-requests",
            help=f"Budget: most requests simulated (~330 bytes each; up to {MAX_REQUESTS:,}).",
        ),
    ] = DEFAULT_MAX_REQUESTS,
    max_iterations: Annotated[
        int,
        typer.Option(
            "--max-iterations",
            help=f"Budget: most engine iterations simulated (~3 us each; up to {MAX_ITERATIONS:,}).",
        ),
    ] = DEFAULT_MAX_ITERATIONS,
    speculative: SpeculativeOption = None,
    kv_precision: KvPrecisionOption = None,
    prefix_hit: PrefixHitOption = 0.0,
    attention: AttentionOption = "fused",
    two_batch_overlap: TwoBatchOverlapOption = False,
    eplb: EplbOption = False,
    adp_balance: Annotated[
        str | None,
        typer.Option(
            "--adp-balance",
            help="TensorRT-LLM's ADP balance with --dp-attention: BATCHING_WAIT_ITERS,TIMEOUT_ITERS (e.g. 3,9), or "
            "'default' (10,50): new prompts wait until every attention rank has one.",
        ),
    ] = None,
    report_path: ReportOption = None,
    trace_path: Annotated[
        Path | None,
        typer.Option(
            "--perfetto",
            "--trace-out",
            help="Also write a Chrome/Perfetto trace (JSON) of the simulation (--trace is the request trace input).",
        ),
    ] = None,
    requests_out: Annotated[
        Path | None,
        typer.Option(
            "--requests-out", help="Also write each request's arrival, queue, TTFT, TPOT, e2e (.csv or .parquet)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Discrete-event simulation of serving: TTFT/TPOT/e2e percentiles, throughput, utilisation, queueing."""
    from rainier.api.report import SimulationRun
    from rainier.api.serve import parse_unit
    from rainier.api.serve_sim import simulation_scenario
    from rainier.report.serve_sim_view import serve_sim_tables
    from rainier.serve.results import summarise, write_requests
    from rainier.serve.simulate import simulate_timeline

    check_output(requests_out, "--requests-out", *(p for p in (trace, report_path, trace_path) if p))
    if requests_out is not None and requests_out.suffix.lower() not in (".csv", ".parquet"):
        raise field_error("requests-out", str(requests_out), "a file name ending .csv or .parquet")

    scenario = simulation_scenario(
        model=model,
        cluster=cluster,
        accelerator=accelerator,
        count=count,
        tp=tp,
        pp=pp,
        ep=ep,
        dp_attention=dp_attention,
        precision=precision,
        unit_core=parse_unit(unit),
        rate=rate,
        trace=trace,
        duration=duration,
        input_len=input_len,
        output_len=output_len,
        lengths=lengths,
        length_range=length_range,
        scheduler=scheduler,
        chunked_prefill=chunked_prefill,
        max_batch=max_batch,
        token_budget=token_budget,
        disaggregate=disaggregate,
        seed=seed,
        max_requests=max_requests,
        max_iterations=max_iterations,
        speculative=speculative,
        kv_precision=kv_precision,
        prefix_hit=prefix_hit,
        attention=attention,
        two_batch_overlap=two_batch_overlap,
        eplb=eplb,
        adp_balance=adp_balance,
    )
    with _progress_after("simulating requests") as progress:
        timeline = simulate_timeline(scenario, progress)
        result = summarise(scenario, timeline)
    _write_extras(report_path, trace_path, SimulationRun(scenario, result))
    if requests_out is not None:
        write_requests(timeline, requests_out)
        if not as_json:
            _err.print(f"wrote {requests_out}")
    if as_json:
        layout = {"tp": tp, "pp": pp, "ep": ep, "dp_attention": dp_attention, "eplb": eplb,
                  "two_batch_overlap": two_batch_overlap, "replicas": result.replicas,
                  "prefill_replicas": result.prefill_replicas}  # fmt: skip
        target = {"model": model, "cluster": cluster, "accelerator": accelerator, "count": count, "layout": layout}
        emit_json({**target, **result.to_dict()})
    else:
        _print_tables(serve_sim_tables(result))


@serve_app.command("size")
@user_errors
def serve_size(
    models: Annotated[str, typer.Option("--models", help='Traffic: "MODEL:REQUESTS_PER_S,MODEL:REQUESTS_PER_S".')],
    slo: Annotated[str, typer.Option("--slo", help="p99 targets: ttft_p99_ms=2000,tpot_p99_ms=50[,e2e_p99_ms=...].")],
    accelerators: Annotated[
        str, typer.Option("--accelerators", help="Kinds to size fleets of, e.g. trn2,trn3,h100-sxm.")
    ] = "trn2,h100-sxm",
    input_len: MeanInputLenOption = None,
    output_len: MeanOutputLenOption = None,
    lengths: Annotated[
        str | None,
        typer.Option(
            "--lengths",
            help="A benchmark's length mix for the simulated check (rainier catalog datasets, e.g. mlperf-llama2-70b).",
        ),
    ] = None,
    price: Annotated[
        str | None,
        typer.Option("--price", help="USD per device-hour: a number or trn2=1.2,h100-sxm=4.9 (default: catalog)."),
    ] = None,
    utilisation: Annotated[
        float, typer.Option("--utilisation", help="Load per replica as a share of its capacity.")
    ] = 0.8,
    simulate: Annotated[
        bool, typer.Option("--simulate/--no-simulate", help="Check each sized fleet by simulation.")
    ] = True,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the checking simulations.")] = 0,
    speculative: SpeculativeOption = None,
    prefix_hit: PrefixHitOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """The cheapest fleet meeting every SLO, per accelerator kind and mixed: layouts, devices, power, $/M tokens."""
    from rainier.api.serve import run_serve_size
    from rainier.report.serve_view import size_tables

    with _progress_after("sizing fleets") as progress:
        result = run_serve_size(
            models=models,
            slo=slo,
            accelerators=accelerators,
            input_len=input_len,
            output_len=output_len,
            price=price,
            utilisation=utilisation,
            simulate=simulate,
            seed=seed,
            progress=progress,
            speculative=speculative,
            prefix_hit=prefix_hit,
            lengths=lengths,
        )
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_tables(size_tables(result.to_dict()))
