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
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free port).")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="Clips decoded and predicted at once (ONNX Runtime already uses several cores per clip); the rest queue.")] = 1,
    max_connections: Annotated[int, typer.Option("--max-connections", help="Connections served at once; more are answered 503.")] = 256,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds a client may stay silent, and (×6) may take to send its body.")] = 10.0,
) -> None:
    """Serve an exported submission over HTTP: POST /predict with an audio file, GET /health."""
    import signal
    import threading

    from ensemble.commands.serve import ServeLimits, make_server
    from ensemble.errors import ConfigError
    from ensemble.export.runtime import load

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be 0 to 65535; got {port}")
    limits = ServeLimits(workers=workers, max_connections=max_connections, socket_timeout=timeout,
                         body_deadline=timeout * 6).check()  # options before the model is loaded
    server = make_server(load(model), host, port, limits)
    stopping = threading.Event()

    def stop(signum, frame) -> None:  # serve_forever runs in this thread: shut down from another one
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    typer.echo(f"serving {model} on http://{host}:{server.server_port} (POST /predict, GET /health; "
               f"{workers} worker(s)); Ctrl-C or SIGTERM stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        finished = server.shutdown_gracefully()  # stop accepting, let the requests in flight finish
        server.server_close()
    typer.echo("stopped" + ("" if finished else " (requests still in flight were cut off)"))
