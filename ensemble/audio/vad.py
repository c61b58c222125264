"""Voice activity: Silero VAD's ONNX weights (shipped inside the `silero-vad` pip package), run with
ONNX Runtime alone — no torch import, no download.

Why: test-like backgrounds are taken from real unlabeled clips. A stretch that still holds a faint voice
would put an unlabeled voice into a test-like clip and mislabel it, so a background must be voice-free
by a speech detector that hears voices under noise, with a safety margin around anything it hears.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble.errors import ConfigError

SR = 16000
CHUNK = 512  # samples per decision (32 ms at 16 kHz), what the model takes
CONTEXT = 64  # samples of the previous chunk the model sees before each chunk
CHUNK_S = CHUNK / SR
VOICE_PROB = 0.3  # a chunk with P(speech) at or above this may hold a voice
MARGIN_S = 0.3  # voice-free stretches keep this far from any chunk that may hold a voice


def model_path() -> Path:
    """The Silero VAD ONNX file inside the installed `silero-vad` package (found without importing it)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("voice-activity detection needs the `silero-vad` package; install ens[audio]")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise ConfigError(f"{path}: Silero VAD weights are missing from the installed silero-vad package")
    return path


@lru_cache(maxsize=1)
def _session():
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path()), sess_options=opts, providers=["CPUExecutionProvider"])


def speech_probs(waves: Sequence[np.ndarray], batch: int = 256) -> list[np.ndarray]:
    """P(speech) per 32-ms chunk for each 16-kHz wave, `(ceil(len / CHUNK),)` each; deterministic.

    Waves are run side by side (zero-padded to the longest of their batch), the model's recurrent
    state carried from chunk to chunk as the Silero reference does.
    """
    session = _session()
    out: list[np.ndarray] = []
    waves = [np.asarray(w, np.float32).ravel() for w in waves]
    for lo in range(0, len(waves), batch):
        part = waves[lo : lo + batch]
        n_chunks = [max(1, -(-w.size // CHUNK)) for w in part]
        x = np.zeros((len(part), max(n_chunks) * CHUNK), np.float32)
        for i, w in enumerate(part):
            x[i, : w.size] = w
        state = np.zeros((2, len(part), 128), np.float32)
        context = np.zeros((len(part), CONTEXT), np.float32)
        probs = np.empty((len(part), max(n_chunks)), np.float32)
        sr = np.array(SR, dtype=np.int64)
        for c in range(max(n_chunks)):
            chunk = x[:, c * CHUNK : (c + 1) * CHUNK]
            p, state = session.run(None, {"input": np.concatenate([context, chunk], axis=1), "state": state, "sr": sr})
            probs[:, c] = p[:, 0]
            context = chunk[:, -CONTEXT:]
        out.extend(probs[i, :k].copy() for i, k in enumerate(n_chunks))
    return out


def voice_free(probs: np.ndarray, threshold: float = VOICE_PROB, margin_s: float = MARGIN_S) -> np.ndarray:
    """Chunks at least `margin_s` away from every chunk whose P(speech) reaches `threshold`, bool."""
    voiced = np.asarray(probs) >= threshold
    m = int(np.ceil(margin_s / CHUNK_S))
    if m and voiced.any():
        voiced = np.convolve(voiced.astype(float), np.ones(2 * m + 1), mode="same") > 0
    return ~voiced


def longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(start, length) of the longest run of True in a bool vector; (0, 0) when none."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return 0, 0
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k] - starts[k])


SPEECH_PROB = 0.5  # Silero's own default threshold: a chunk at or above it counts as speech
FEATURES = ("vad_voiced_fraction", "vad_longest_voiced_s", "vad_peak", "vad_mean", "duration_s", "level_db")
VAD_FEATURES_VERSION = 1


def clip_features(waves: Sequence[np.ndarray], batch: int = 256) -> np.ndarray:
    """Per-clip voice-activity features `(clips, len(FEATURES))` of 16-kHz waves, deterministic.

    Voiced fraction and longest voiced stretch (seconds) at `SPEECH_PROB`, peak and mean P(speech), the
    clip's duration (seconds) and RMS level (dBFS). Why: a clip without a voice is neither fake nor real,
    and how much voice a clip holds tells the stacker how far to trust the runs' logits.
    """
    waves = [np.asarray(w, np.float32).ravel() for w in waves]
    out = np.empty((len(waves), len(FEATURES)))
    for i, (wave, probs) in enumerate(zip(waves, speech_probs(waves, batch))):
        voiced = probs >= SPEECH_PROB
        rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0
        out[i] = (voiced.mean(), longest_run(voiced)[1] * CHUNK_S, probs.max(), probs.mean(), wave.size / SR,
                  20 * np.log10(max(rms, 1e-5)))
    return out
