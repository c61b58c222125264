"""`ens serve`: an exported submission behind a minimal HTTP endpoint (standard library only).

POST /predict with an audio file as the body (any format libsndfile reads; decoded to mono and
resampled as `ens finetune` does) → `{"labels": [...], "probabilities": [...]}`. GET /health →
the model's labels, rate and submission. Bad audio → 400 with `{"error": "..."}`. One request at a
time: ONNX Runtime already uses the cores for one clip.
"""

from __future__ import annotations

import io
import json
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import numpy as np

from ensemble.errors import DataError
from ensemble.export.runtime import ExportedEnsemble

MAX_BODY = 64 * 2**20  # 64 MiB of audio per request


def decode(data: bytes, sr: int) -> np.ndarray:
    """Audio bytes → mono float32 at `sr` (DataError when libsndfile cannot read them)."""
    import soundfile as sf

    from ensemble.audio.load import resample

    try:
        wave, sr_in = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises several types
        raise DataError(f"request body is no readable audio ({err})") from err
    mono = wave.mean(axis=1, dtype=np.float32) if wave.shape[1] > 1 else wave[:, 0]
    return resample(np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0), int(sr_in), sr)


def make_server(model: ExportedEnsemble, host: str = "127.0.0.1", port: int = 8000) -> HTTPServer:
    """An HTTPServer answering /predict and /health for `model` (call `serve_forever()`)."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path != "/health":
                return self._reply(404, {"error": "GET /health or POST /predict"})
            self._reply(200, {"labels": model.labels, "sampling_rate": model.sampling_rate,
                              "submission": model.metadata.get("submission")})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/predict":
                return self._reply(404, {"error": "POST /predict with an audio file as the body"})
            size = int(self.headers.get("Content-Length") or 0)
            if not 0 < size <= MAX_BODY:
                return self._reply(400, {"error": f"body must hold 1 byte to {MAX_BODY} bytes of audio; got {size}"})
            try:
                probs = model.predict([decode(self.rfile.read(size), model.sampling_rate)])[0]
            except DataError as err:
                return self._reply(400, {"error": str(err)})
            self._reply(200, {"labels": model.labels, "probabilities": probs.tolist()})

        def log_message(self, format: str, *args: Any) -> None:  # library code is quiet
            pass

    return HTTPServer((host, port), Handler)
