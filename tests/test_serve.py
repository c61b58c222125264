"""`ens serve` under load and hostile clients: a real `ens serve` process on an ephemeral port, a real
ONNX graph carrying the export metadata (a two-label sigmoid of the clip's mean, built here so no model
has to be trained), real sockets.

What must hold: 50 parallel POSTs all answered; /health within 1 s while clients stall mid-upload or
connect and send nothing; a bad Content-Length is a 400 and the server stays up; an oversize body is
413; a non-audio body is a readable 400; SIGTERM stops accepting and finishes the request in flight.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["fake", "real"]
RATE = 16000


def tiny_export(path: Path) -> Path:
    """An ONNX file as `ens export` writes it, as far as `ens serve` reads it: waves → probabilities."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["waves", "axes"], ["m"], keepdims=1),
        helper.make_node("Sigmoid", ["m"], ["p"]),
        helper.make_node("Sub", ["one", "p"], ["q"]),
        helper.make_node("Concat", ["p", "q"], ["pq"], axis=1),
        helper.make_node("Cast", ["pq"], ["probabilities"], to=TensorProto.DOUBLE),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("waves", TensorProto.FLOAT, ["batch", "time"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE, ["batch", len(LABELS)])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    for key, value in {"ens_export_format": "1", "submission": "tiny", "labels": json.dumps(LABELS),
                       "sampling_rate": str(RATE), "recipe": "{}", "quantize": "none"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


def wav_bytes(seconds: float = 0.5, level: float = 0.1) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.full(int(RATE * seconds), level, dtype=np.float32), RATE, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def start_server(model: Path, *args: str) -> tuple[subprocess.Popen, int]:
    """`ens serve MODEL --port 0 ...` in its own process; returns it and the port it printed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "ensemble.cli.app", "serve", str(model), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise AssertionError(f"server did not start: {line}{proc.stderr.read()}")
    port = int(line.split("http://", 1)[1].split()[0].rsplit(":", 1)[1])
    return proc, port


def request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 60.0,
            headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        conn.close()


def raw(port: int, data: bytes, timeout: float = 10.0) -> socket.socket:
    """A socket that sent `data` and nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if data:
        sock.sendall(data)
    return sock


def read_reply(sock: socket.socket) -> str:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def timed_health(port: int) -> float:
    start = time.perf_counter()
    status, body = request(port, "GET", "/health", timeout=5.0)
    assert status == 200 and body["labels"] == LABELS
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_export(tmp_path_factory.mktemp("serve") / "tiny.onnx")


@pytest.fixture(scope="module")
def server(model):
    proc, port = start_server(model, "--timeout", "3")
    yield port
    proc.terminate()
    proc.wait(timeout=30)


def test_predict_answers_like_the_model(server, model):
    import ensemble

    expected = ensemble.load(model).predict([np.full(RATE // 2, 0.1, dtype=np.float32)])[0]
    status, body = request(server, "POST", "/predict", wav_bytes())
    assert status == 200 and body["labels"] == LABELS
    np.testing.assert_allclose(body["probabilities"], expected, rtol=0, atol=1e-12)


def test_fifty_parallel_posts_are_all_answered(server):
    clip = wav_bytes()
    start = time.perf_counter()
    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(lambda _: request(server, "POST", "/predict", clip), range(50)))
    elapsed = time.perf_counter() - start
    assert [status for status, _ in replies] == [200] * 50
    assert all(len(body["probabilities"]) == 2 for _, body in replies)
    print(f"\n50 parallel POST /predict: {elapsed:.3f} s")


def test_health_answers_while_clients_stall_and_requests_run(server):
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    stalled = [raw(server, head + b"\0" * 1000) for _ in range(5)]  # mid-upload, then silent
    silent = raw(server, b"")  # connects and sends nothing
    clip = wav_bytes()
    try:
        with ThreadPoolExecutor(20) as pool:
            busy = [pool.submit(request, server, "POST", "/predict", clip) for _ in range(20)]
            times = [timed_health(server) for _ in range(20)]
            assert all(f.result()[0] == 200 for f in busy)
        print(f"\n/health under 5 stalled uploads + 1 silent client + 20 POSTs: median {statistics.median(times) * 1e3:.1f} ms, "
              f"max {max(times) * 1e3:.1f} ms")
        assert max(times) < 1.0
        # the stalled uploads are answered 408 once the deadline passes, and the silent client is dropped
        stalled[0].settimeout(30)
        assert " 408 " in read_reply(stalled[0]).splitlines()[0]
        silent.settimeout(30)
        assert silent.recv(1) == b""
    finally:
        for sock in [*stalled, silent]:
            sock.close()
    assert timed_health(server) < 1.0


@pytest.mark.parametrize("length, status", [("abc", 400), ("-5", 400), ("0", 400), (None, 411)])
def test_a_bad_content_length_is_refused_and_the_server_stays_up(server, length, status):
    head = "POST /predict HTTP/1.1\r\nHost: x\r\n" + (f"Content-Length: {length}\r\n" if length else "") + "\r\n"
    sock = raw(server, head.encode())
    try:
        reply = read_reply(sock)
    finally:
        sock.close()
    assert reply.splitlines()[0].split()[1] == str(status)
    assert "error" in json.loads(reply.split("\r\n\r\n", 1)[1])
    assert timed_health(server) < 1.0
    assert request(server, "POST", "/predict", wav_bytes())[0] == 200


def test_an_oversize_body_is_413_without_reading_it(server):
    sock = raw(server, f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {64 * 2**20 + 1}\r\n\r\n".encode())
    try:
        reply = read_reply(sock)
    finally:
        sock.close()
    assert reply.splitlines()[0].split()[1] == "413"
    assert "over the limit" in reply


def test_a_non_audio_body_is_a_readable_400(server):
    status, body = request(server, "POST", "/predict", b"not audio at all")
    assert status == 400
    assert "no readable audio" in body["error"] and "BytesIO" not in body["error"]
    assert request(server, "GET", "/nowhere")[0] == 404


def test_sigterm_finishes_the_request_in_flight_then_exits(model):
    proc, port = start_server(model)
    clip = wav_bytes()
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(clip)}\r\n\r\n".encode()
    sock = raw(port, head + clip[:1000], timeout=30)  # in flight: half the body sent
    try:
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(OSError):  # no longer accepting
            request(port, "GET", "/health", timeout=2.0)
        sock.sendall(clip[1000:])
        reply = read_reply(sock)
    finally:
        sock.close()
    assert reply.splitlines()[0].split()[1] == "200", reply
    assert json.loads(reply.split("\r\n\r\n", 1)[1])["labels"] == LABELS
    assert proc.wait(timeout=30) == 0
    out, err = proc.communicate()
    assert "Traceback" not in err and "stopped" in out


def test_bad_limits_are_one_line(model):
    from typer.testing import CliRunner

    from ensemble.cli import app

    result = CliRunner().invoke(app, ["serve", str(model), "--workers", "0"])
    assert result.exit_code == 1 and result.output.strip() == "Error: --workers must be ≥ 1; got 0"


def test_connections_past_the_cap_get_503_at_once(model):
    proc, port = start_server(model, "--max-connections", "2", "--timeout", "5")
    held = [raw(port, b"") for _ in range(2)]  # two silent clients hold both slots
    try:
        time.sleep(0.3)
        start = time.perf_counter()
        status, body = request(port, "GET", "/health", timeout=5.0)
        assert status == 503 and "2 connections open" in body["error"]
        assert time.perf_counter() - start < 1.0
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)  # the slots free once the server sees the clients gone
    assert request(port, "GET", "/health", timeout=5.0)[0] == 200
    proc.terminate()
    assert proc.wait(timeout=30) == 0
