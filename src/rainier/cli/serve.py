"""``rainier serve ...``: one serving configuration, a batching simulation, fleet sizing under SLOs.

Registered on the main app by ``rainier.cli``; each command parses its options, calls ``rainier.api.serve`` and
renders with ``rainier.report``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from rainier.cli import AcceleratorOption, ClusterOption, JsonOption, _print_tables, app, emit_json, user_errors

serve_app = typer.Typer(
    help="Serving: latency and throughput of a configuration, batching simulation, fleet sizing.",
    no_args_is_help=True,
)
app.add_typer(serve_app, name="serve")

ServeModelOption = Annotated[str, typer.Option("--model", help="Catalog model name or Hugging Face config.json.")]
PrecisionOption = Annotated[str, typer.Option("--precision", help="bf16, fp16, fp8 or int8-weights.")]
UnitOption = Annotated[
    str, typer.Option("--unit", help="Parallel degrees in devices or NeuronCores (core), as in the validation data.")
]


@serve_app.command("estimate")
@user_errors
def serve_estimate(
    model: ServeModelOption,
    cluster: ClusterOption = None,
    accelerator: AcceleratorOption = None,
    count: Annotated[int | None, typer.Option("--count", help="Devices (with --accelerator).")] = None,
    tp: Annotated[int, typer.Option("--tp", help="Tensor-parallel degree of one replica.")] = 1,
    pp: Annotated[int, typer.Option("--pp", help="Pipeline-parallel degree of one replica.")] = 1,
    ep: Annotated[int, typer.Option("--ep", help="Expert-parallel degree (within tp).")] = 1,
    batch: Annotated[int, typer.Option("--batch", help="Sequences per replica batch.")] = 1,
    input_len: Annotated[int, typer.Option("--input-len", help="Prompt tokens per request.")] = 128,
    output_len: Annotated[int, typer.Option("--output-len", help="Generated tokens per request.")] = 128,
    precision: PrecisionOption = "bf16",
    unit: UnitOption = "device",
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
        batch=batch,
        input_len=input_len,
        output_len=output_len,
        precision=precision,
        unit=unit,
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_tables(serve_tables(result.to_dict()))
