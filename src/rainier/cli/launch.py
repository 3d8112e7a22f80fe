"""``rainier export`` and ``rainier import``: launch configurations out and recipes in.

Registered on the main app by ``rainier.cli``; each command parses its options, calls one ``rainier.api.launch``
function and prints the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rainier.cli import JsonOption, _out, app, check_output, emit_json, user_errors

FRAMEWORKS = (
    "megatron, nemo, bridge, maxtext, nxd (training: --plan); vllm, trtllm, sglang (serving: --tp --pp --ep --batch)"
)


@app.command("export")
@user_errors
def export(
    model: Annotated[str, typer.Option("--model", help="Catalog model name or Hugging Face config.json.")],
    to: Annotated[str, typer.Option("--to", help=f"Framework: {FRAMEWORKS}.")],
    plan: Annotated[str | None, typer.Option("--plan", help="Training plan, as for `train estimate`.")] = None,
    accelerator: Annotated[
        str | None, typer.Option("--accelerator", help="Accelerator id: devices per node from its server.")
    ] = None,
    count: Annotated[int | None, typer.Option("--count", help="Devices (the plan may then leave out dp).")] = None,
    tp: Annotated[int, typer.Option("--tp", help="Serving: tensor-parallel degree of one replica.")] = 1,
    pp: Annotated[int, typer.Option("--pp", help="Serving: pipeline-parallel degree of one replica.")] = 1,
    ep: Annotated[
        int, typer.Option("--ep", help="Serving: expert-parallel degree (within tp, or tp x --dp-attention).")
    ] = 1,
    dp_attention: Annotated[
        int, typer.Option("--dp-attention", help="Serving (sglang): data-parallel attention groups of tp ranks.")
    ] = 1,
    two_batch_overlap: Annotated[
        bool, typer.Option("--two-batch-overlap", help="Serving (sglang): overlap the expert all-to-all (ep > 1).")
    ] = False,
    eplb: Annotated[
        bool, typer.Option("--eplb", help="Serving (vllm, sglang): place the experts by their load (ep > 1).")
    ] = False,
    batch: Annotated[int, typer.Option("--batch", help="Serving: the batch cap (max sequences).")] = 1,
    precision: Annotated[str, typer.Option("--precision", help="Serving: weight format.")] = "bf16",
    kv_precision: Annotated[str | None, typer.Option("--kv-precision", help="Serving: KV-cache format.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file (default: standard output).")] = None,
) -> None:
    """Write the arguments or YAML a framework takes for a model and plan (or serving layout)."""
    from rainier.api.launch import run_export

    check_output(out, "--out", model)
    text = run_export(
        model=model,
        to=to,
        plan=plan,
        accelerator=accelerator,
        count=count,
        tp=tp,
        pp=pp,
        ep=ep,
        batch=batch,
        precision=precision,
        kv_precision=kv_precision,
        dp_attention=dp_attention,
        two_batch_overlap=two_batch_overlap,
        eplb=eplb,
    )
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        _out.print(f"wrote {out}")


@app.command("import")
@user_errors
def import_(
    path: Annotated[Path, typer.Argument(help="A launch script, argument list or recipe/config YAML.")],
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Framework, when not recognised: megatron nemo maxtext nxd vllm trtllm sglang."),
    ] = None,
    devices: Annotated[
        int | None,
        typer.Option("--devices", help="World size the file leaves open (GPUs, TPU chips; NeuronCores for nxd)."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="The model, when the file does not state it.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Read a framework's launch configuration into model + plan (or serving layout) + cluster."""
    from rainier.api.launch import run_import
    from rainier.report.launch_view import launch_lines

    config = run_import(path, from_=from_, devices=devices, model=model)
    if as_json:
        emit_json(config.to_dict())
        return
    for line in launch_lines(config):
        _out.print(line, markup=False, highlight=False)
