"""`ens serve`: an exported submission served over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ensemble.cli.shared import command


@command("serve")
def serve_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX file written by `ens export`.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
) -> None:
    """Serve an exported submission over HTTP: POST /predict with an audio file, GET /health."""
    from ensemble.commands.serve import make_server
    from ensemble.export.runtime import load

    server = make_server(load(model), host, port)
    typer.echo(f"serving {model} on http://{host}:{server.server_port} (POST /predict, GET /health); Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
