"""Signal primitives shared by training augmentation and the test-like set, vectorised over rows.

Every function takes a batch `(b, n)` and per-row parameters `(b,)`, so a batch of noisy examples
costs a few FFTs rather than a Python loop. Rates are in Hz and durations in seconds, so the same
parameters render the same sound at any sample rate.
"""

from __future__ import annotations

from typing import Sequence

import io

import numpy as np
import scipy.fft
import scipy.signal

from ensemble.errors import ConfigError

NOISE_KINDS = ("white", "pink", "brown")
# Power-spectrum slope 1/f^alpha of each coloured noise.
_ALPHA = {"white": 0.0, "pink": 1.0, "brown": 2.0}
_EPS = 1e-12


def power(x: np.ndarray) -> np.ndarray:
    """Mean power of each row of `(b, n)` as float64 `(b,)`."""
    x = np.asarray(x)
    return np.einsum("ij,ij->i", x, x, dtype=np.float64) / max(x.shape[-1], 1)


def _check_kinds(kinds: Sequence[str]) -> list[str]:
    kinds = list(kinds)
    bad = sorted({k for k in kinds if k not in _ALPHA})
    if bad:
        raise ConfigError(f"noise kind {bad[0]!r} is unknown; accepted: {', '.join(NOISE_KINDS)}")
    return kinds


def colored_noise(kinds: Sequence[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """One row of unit-RMS noise per entry of `kinds` ('white', 'pink', 'brown'), `(b, n)` float32.

    Coloured noise is white noise shaped in the frequency domain (amplitude 1/f^(alpha/2)), with
    the DC bin removed so brown noise does not drift.
    """
    kinds = _check_kinds(kinds)
    out = rng.standard_normal((len(kinds), n), dtype=np.float32)
    freq = np.arange(n // 2 + 1, dtype=np.float32)
    freq[0] = 1.0
    for kind in sorted(set(kinds) - {"white"}):
        rows = np.flatnonzero(np.array(kinds) == kind)
        shape = freq ** np.float32(-_ALPHA[kind] / 2)
        shape[0] = 0.0
        spec = scipy.fft.rfft(out[rows], axis=1)
        spec *= shape
        out[rows] = scipy.fft.irfft(spec, n=n, axis=1)
    out /= np.sqrt(power(out) + _EPS).astype(np.float32)[:, None]
    return out


class NoiseBank:
    """Long unit-RMS noise rows made once, cut at random offsets: fresh-looking noise for free.

    Drawing Gaussian noise costs more than the rest of a training batch on a small CPU, so the
    sampler cuts each example's noise from `rows` × `factor`·n samples per kind (random row,
    offset and sign) — far too many distinct segments for a model to memorise.
    """

    def __init__(self, kinds: Sequence[str], n: int, rng: np.random.Generator, rows: int = 8, factor: int = 4):
        self.kinds, self.n = _check_kinds(kinds), int(n)
        self.bank = np.stack([colored_noise([k] * rows, factor * self.n, rng) for k in self.kinds])

    def draw(self, kind_index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Unit-RMS noise `(len(kind_index), n)` float32; row i of kind `kinds[kind_index[i]]`."""
        kind_index = np.asarray(kind_index, dtype=np.int64)
        m, (_, rows, length) = kind_index.size, self.bank.shape
        row = rng.integers(rows, size=m)
        start = rng.integers(0, length - self.n + 1, size=m)
        sign = np.where(rng.random(m) < 0.5, -1.0, 1.0).astype(np.float32)
        out = np.empty((m, self.n), dtype=np.float32)
        for i in range(m):
            out[i] = self.bank[kind_index[i], row[i], start[i] : start[i] + self.n]
        out *= (sign / np.sqrt(power(out) + _EPS)).astype(np.float32)[:, None]
        return out


def noise_scale(signal_power: np.ndarray, noise_power: np.ndarray, snr_db: np.ndarray) -> np.ndarray:
    """Factor for the noise so that signal_power / (factor² · noise_power) = 10^(snr_db/10)."""
    target = np.asarray(signal_power, np.float64) / 10.0 ** (np.asarray(snr_db, np.float64) / 10.0)
    return np.sqrt(target / (np.asarray(noise_power, np.float64) + _EPS))


def set_level(x: np.ndarray, level_db: np.ndarray) -> np.ndarray:
    """Scale each row to an RMS level of `level_db` dBFS (silent rows stay silent), float32."""
    x = np.asarray(x, dtype=np.float32)
    target = 10.0 ** (np.asarray(level_db, np.float64) / 10.0)
    current = power(x)
    scale = np.where(current > 1e-20, np.sqrt(target / np.maximum(current, 1e-20)), 1.0)
    return x * scale.astype(np.float32)[:, None]


def lowpass(x: np.ndarray, cutoff_hz: np.ndarray, sr: int) -> np.ndarray:
    """Low-pass each row at its own cutoff (NaN or ≥ Nyquist: unchanged), `(b, n)` float32.

    A zero-phase FFT mask with a raised-cosine transition over the top 10 % below the cutoff:
    steep like the band limit of a resampled or coded file, without the ringing of a brick wall.
    """
    x = np.asarray(x, dtype=np.float32)
    cutoff = np.asarray(cutoff_hz, dtype=np.float64)
    rows = np.flatnonzero(np.isfinite(cutoff) & (cutoff < sr / 2))
    if rows.size == 0:
        return x
    n = x.shape[1]
    freq = np.fft.rfftfreq(n, d=1.0 / sr)
    out = x.copy()
    spec = scipy.fft.rfft(x[rows], axis=1)
    for hi in np.unique(cutoff[rows]):
        ramp = np.clip((freq - 0.9 * hi) / (0.1 * hi), 0.0, 1.0)
        spec[cutoff[rows] == hi] *= (0.5 * (1.0 + np.cos(np.pi * ramp))).astype(np.float32)
    out[rows] = scipy.fft.irfft(spec, n=n, axis=1)
    return out


def vorbis(x: np.ndarray, sr: int, compression: float) -> np.ndarray:
    """Pass each row through an Ogg Vorbis encode/decode in memory (`compression` 0 = best, 1 = most).

    Lossy-coding artefacts occur in test audio regardless of the label; training on them keeps a
    model from reading "was coded once" as a class cue. Deterministic; ~15 ms per second of audio.
    """
    import soundfile as sf

    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    for i, row in enumerate(x):
        buf = io.BytesIO()
        sf.write(buf, np.clip(row, -1.0, 1.0), sr, format="OGG", subtype="VORBIS", compression_level=compression)
        buf.seek(0)
        decoded, _ = sf.read(buf, dtype="float32")
        out[i] = decoded[: row.size] if decoded.size >= row.size else np.pad(decoded, (0, row.size - decoded.size))
    return out


def room_impulse(rt60_s: float, drr_db: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: direct path plus exponentially decaying noise tail.

    `rt60_s` is the time for the tail to decay by 60 dB (cut at 1 s), `drr_db` the direct-to-
    reverberant energy ratio. Crude, but it smears speech the way a room does.
    """
    m = max(int(min(rt60_s, 1.0) * sr), 2)
    t = np.arange(m, dtype=np.float64) / sr
    tail = rng.standard_normal(m) * np.exp(-np.log(1000.0) * t / max(rt60_s, 1e-3))
    tail[0] = 0.0
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / (np.sum(tail**2) + _EPS))
    tail[0] = 1.0
    return tail.astype(np.float32)


def convolve_rows(x: np.ndarray, irs: Sequence[np.ndarray]) -> np.ndarray:
    """Convolve row i of `x` with `irs[i]` (causal, output cut to the input length), float32."""
    x = np.asarray(x, dtype=np.float32)
    if len(irs) == 0:
        return x
    m = max(len(ir) for ir in irs)
    bank = np.zeros((len(irs), m), dtype=np.float32)
    for i, ir in enumerate(irs):
        bank[i, : len(ir)] = ir
    return scipy.signal.fftconvolve(x, bank, axes=1)[:, : x.shape[1]].astype(np.float32)


def place(wave: np.ndarray, n: int, offset: int) -> np.ndarray:
    """Put `wave` into `n` zeros starting at sample `offset` (may be negative or past the end)."""
    out = np.zeros(n, dtype=np.float32)
    lo, hi = max(offset, 0), min(offset + wave.size, n)
    if hi > lo:
        out[lo:hi] = wave[lo - offset : hi - offset]
    return out


def limit_peak(x: np.ndarray, peak: float = 0.99) -> np.ndarray:
    """Scale down (never up) each row whose absolute peak exceeds `peak`, so nothing clips."""
    top = np.abs(x).max(axis=1) if x.size else np.zeros(x.shape[0])
    scale = np.where(top > peak, peak / np.maximum(top, _EPS), 1.0).astype(np.float32)
    return x * scale[:, None]
