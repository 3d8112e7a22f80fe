"""``rainier web``: serve the local web app (``rainier.web``) until interrupted.

Registered on the main app by ``rainier.cli``; the command checks its options and calls ``rainier.web.serve``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from rainier.cli import _err, app, user_errors


@app.command("web")
@user_errors
def web(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port to listen on.")] = 8765,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind (default: this machine only; 0.0.0.0 for every interface).")
    ] = "127.0.0.1",
) -> None:
    """A local web app: pick a model (or paste a config.json), a cluster and a plan or search; see the report live."""
    from rainier.web.app import check_listen, is_loopback, serve

    check_listen(host, port)
    if not is_loopback(host):
        _err.print(f"warning: listening on {host}: anyone who can reach this machine can use the app", highlight=False)
    shown = f"[{host}]" if ":" in host else host
    _err.print(f"rainier web: http://{shown}:{port}/ (Ctrl-C to stop)", highlight=False)
    serve(host=host, port=port)
