"""`ens serve`: an exported submission behind a small, concurrent HTTP endpoint (standard library only).

POST /predict with an audio file as the body (any format libsndfile reads; decoded to mono and
resampled as `ens finetune` does) → `{"labels": [...], "probabilities": [...]}`. GET /health →
the model's labels, rate, submission and how many requests are in flight.

Why the standard library's `ThreadingHTTPServer` and not an ASGI server: an `ens serve` box answers one
team's clips, and the work per request is one ONNX Runtime call that releases the GIL; a thread per
connection with the limits below holds that load with no new dependency (uvicorn would add an ASGI
layer and a package for the same guarantees). The limits:

- every connection's socket has a timeout (a client that connects and sends nothing is dropped) and
  the body must arrive within a deadline (a client stalling mid-upload gets 408);
- the body is at most `MAX_BODY` bytes (413) and needs a valid Content-Length (400 otherwise);
- at most `max_connections` connections are served at once (the rest: 503 at once), the listen
  backlog is `QUEUE_SIZE`;
- decoding and inference run at most `workers` at a time (a semaphore around ONNX Runtime), so a burst
  queues instead of oversubscribing the cores; a request that waits longer than `queue_wait` gets 503;
- `/health` never waits on that semaphore, so it answers while requests run and while clients stall;
- `shutdown_gracefully()` stops accepting and lets the requests in flight finish (SIGTERM in the CLI).
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from ensemble.errors import ConfigError, DataError
from ensemble.export.runtime import ExportedEnsemble

MAX_BODY = 64 * 2**20  # 64 MiB of audio per request
QUEUE_SIZE = 128       # listen backlog: connections the kernel holds before accept
CHUNK = 2**16
log = logging.getLogger("ensemble.serve")


@dataclass(frozen=True)
class ServeLimits:
    """The server's limits (seconds, counts, bytes); `check()` refuses values that cannot work."""

    workers: int = 1               # decode + inference calls at once
    max_connections: int = 256     # connections served at once; more get 503
    socket_timeout: float = 10.0   # longest silence on a connection's socket
    body_deadline: float = 60.0    # the whole body must arrive within this
    queue_wait: float = 120.0      # longest wait for an inference slot before 503
    max_body: int = MAX_BODY

    def check(self) -> "ServeLimits":
        for name in ("workers", "max_connections", "max_body"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be ≥ 1; got {getattr(self, name)}")
        for name in ("socket_timeout", "body_deadline", "queue_wait"):
            value = getattr(self, name)
            if not (value > 0 and np.isfinite(value)):
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive number of seconds; got {value}")
        return self


def decode(data: bytes, sr: int) -> np.ndarray:
    """Audio bytes → mono float32 at `sr` (DataError, in words, when libsndfile cannot read them)."""
    import soundfile as sf

    from ensemble.audio.load import resample

    try:
        wave, sr_in = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises several types; its own words, not the BytesIO repr
        reason = getattr(err, "error_string", None) or str(err).rsplit(":", 1)[-1].strip() or type(err).__name__
        raise DataError(f"request body is no readable audio ({reason}); send a WAV, FLAC, OGG or MP3 file "
                        f"as the body") from err
    if wave.shape[0] == 0:
        raise DataError("request body is an audio file with no samples")
    mono = wave.mean(axis=1, dtype=np.float32) if wave.shape[1] > 1 else wave[:, 0]
    return resample(np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0), int(sr_in), sr)


class _Reply(Exception):
    """An HTTP error reply decided while reading a request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class EnsServer(ThreadingHTTPServer):
    """A thread per connection, capped; an inference semaphore; a count of requests in flight."""

    daemon_threads = True          # a stalled client never keeps the process alive
    request_queue_size = QUEUE_SIZE
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], model: ExportedEnsemble, limits: ServeLimits) -> None:
        self.model = model
        self.limits = limits.check()
        self.slots = threading.BoundedSemaphore(limits.workers)
        self._lock = threading.Condition()
        self.connections = 0
        self.in_flight = 0
        self.served = 0
        super().__init__(address, _handler(limits))

    def process_request(self, request, client_address) -> None:
        """Start a thread for the connection, or answer 503 at once when `max_connections` are open."""
        with self._lock:
            full = self.connections >= self.limits.max_connections
            if not full:
                self.connections += 1
        if full:
            _refuse(request, 503, f"server busy: {self.limits.max_connections} connections open; retry later")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._closed()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed()

    def _closed(self) -> None:
        with self._lock:
            self.connections -= 1
            self._lock.notify_all()

    def begin(self) -> None:
        with self._lock:
            self.in_flight += 1

    def end(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self.served += 1
            self._lock.notify_all()

    def handle_error(self, request, client_address) -> None:
        """A broken connection is logged in one line, never a traceback on the console."""
        import sys

        log.warning("connection from %s failed: %s", client_address[0], sys.exc_info()[1])

    def shutdown_gracefully(self, drain: float | None = None) -> bool:
        """Stop accepting (call from another thread than `serve_forever`'s), then wait up to `drain` seconds
        (default: the body deadline plus the queue wait) for the requests in flight; True when all finished."""
        self.shutdown()
        self.socket.close()  # new connections are refused at once, not left in the backlog
        limit = drain if drain is not None else self.limits.body_deadline + self.limits.queue_wait
        end = time.monotonic() + limit
        with self._lock:
            while self.in_flight > 0 and time.monotonic() < end:
                self._lock.wait(timeout=max(0.0, min(0.5, end - time.monotonic())))
            return self.in_flight == 0


def _refuse(sock, status: int, message: str) -> None:
    """A minimal JSON reply written straight to a socket no handler owns (best effort, never blocks long)."""
    from http import HTTPStatus

    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.0 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        sock.settimeout(1.0)
        sock.sendall(head + body)
    except OSError:
        pass


def _handler(limits: ServeLimits) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server: EnsServer
        timeout = limits.socket_timeout  # StreamRequestHandler sets it on the socket

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status >= 400:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path != "/health":
                return self._reply(404, {"error": "GET /health or POST /predict"})
            model, server = self.server.model, self.server
            self._reply(200, {"status": "ok", "labels": model.labels, "sampling_rate": model.sampling_rate,
                              "submission": model.metadata.get("submission"), "in_flight": server.in_flight,
                              "connections": server.connections, "served": server.served,
                              "workers": server.limits.workers})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/predict":
                return self._reply(404, {"error": "POST /predict with an audio file as the body"})
            self.server.begin()
            try:  # in flight until the reply is written: a graceful shutdown waits for it
                self._reply(*self._predict())
            finally:
                self.server.end()

        def _predict(self) -> tuple[int, dict[str, Any]]:
            try:
                data = self._body()
                if not self.server.slots.acquire(timeout=limits.queue_wait):
                    raise _Reply(503, f"server busy: no inference slot within {limits.queue_wait:g} s; retry later")
                try:
                    model = self.server.model
                    probs = model.predict([decode(data, model.sampling_rate)])[0]
                finally:
                    self.server.slots.release()
            except _Reply as reply:
                return reply.status, {"error": str(reply)}
            except DataError as err:
                return 400, {"error": str(err)}
            except Exception as err:  # an inference failure is this request's 500, not the server's end
                log.warning("predict failed: %s", err)
                return 500, {"error": f"inference failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"}
            return 200, {"labels": self.server.model.labels, "probabilities": probs.tolist()}

        def _body(self) -> bytes:
            """The request body, read against the deadline; `_Reply` for a bad length or a stalled upload."""
            if self.headers.get("Transfer-Encoding"):
                raise _Reply(411, "send the body with a Content-Length (chunked uploads are not accepted)")
            raw = self.headers.get("Content-Length")
            if raw is None:
                raise _Reply(411, "Content-Length header missing; send the audio file as the body")
            try:
                size = int(raw.strip())
            except ValueError:
                raise _Reply(400, f"Content-Length must be a whole number of bytes; got {raw[:40]!r}") from None
            if size <= 0:
                raise _Reply(400, f"body must hold 1 to {limits.max_body} bytes of audio; got {size}")
            if size > limits.max_body:
                raise _Reply(413, f"body of {size} bytes is over the limit of {limits.max_body} bytes")
            end = time.monotonic() + limits.body_deadline
            chunks, got = [], 0
            try:
                while got < size:
                    left = end - time.monotonic()
                    if left <= 0:
                        raise _Reply(408, f"body not received within {limits.body_deadline:g} s")
                    self.connection.settimeout(min(limits.socket_timeout, left))
                    chunk = self.rfile.read1(min(CHUNK, size - got))
                    if not chunk:
                        raise _Reply(400, f"connection closed after {got} of {size} body bytes")
                    chunks.append(chunk)
                    got += len(chunk)
            except TimeoutError:
                raise _Reply(408, f"body stalled after {got} of {size} bytes") from None
            finally:
                self.connection.settimeout(limits.socket_timeout)
            return b"".join(chunks)

        def log_message(self, format: str, *args: Any) -> None:  # library code is quiet
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


def make_server(model: ExportedEnsemble, host: str = "127.0.0.1", port: int = 8000,
                limits: ServeLimits | None = None) -> EnsServer:
    """A server answering /predict and /health for `model` (call `serve_forever()`; port 0: any free port)."""
    return EnsServer((host, port), model, limits or ServeLimits())
