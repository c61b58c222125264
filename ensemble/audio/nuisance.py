"""Test-like nuisances kept apart from the training augmentation's, and the signal blocks they need.

The test-like score should measure generalisation to conditions the models never trained on, as the
real test does. So the test-like generator draws from nuisance sets disjoint from `AugmentConfig`'s:

- noise: training uses white/pink/brown noise (1/f^alpha, alpha ∈ {0, 1, 2}) and `unlabeled_data/`
  clips of one hash half; test-like noise has a continuous alpha at least `ALPHA_GAP` from those, or
  the spectral envelope of a real clip's quiet stretch (test clips and the other hash half);
- band limits: training uses an FFT raised-cosine mask at 4000/5512.5/8000 Hz; test-like a
  Butterworth low-pass whose cut-off stays `CUTOFF_GAP` (relative) away from those;
- coding: training's Vorbis compression is drawn in [0.5, 1]; test-like's in `CODEC_RANGE` below it;
- reverberation: training convolves a flat exponential tail; test-like a tail whose high frequencies
  decay faster (damped), a different room family.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.fft
import scipy.signal

from ensemble.errors import ConfigError

ALPHA_GAP = 0.25
CUTOFF_GAP = 0.04
CODEC_RANGE = (0.0, 0.45)
TRAIN_ALPHAS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
ENVELOPE_HZ = tuple(float(f) for f in np.geomspace(60.0, 7800.0, 32))
_EPS = 1e-12


def training_nuisances(config=None) -> dict:
    """The nuisance sets the training augmentation draws from (for the disjointness check)."""
    from ensemble.audio.augment import AugmentConfig

    cfg = config or AugmentConfig()
    return {
        "noise_alphas": sorted(TRAIN_ALPHAS[k] for k in cfg.noise_kinds),
        "lowpass_hz": sorted(cfg.lowpass_hz),
        "lowpass_family": "fft-raised-cosine",
        "codec_compression": list(cfg.codec_compression),
        "reverb_family": "exponential",
        "background_half": 0,
    }


def allowed_intervals(lo: float, hi: float, banned: Sequence[float], gap: float) -> list[tuple[float, float]]:
    """[lo, hi] minus the open intervals (b − gap·s, b + gap·s) around each banned value b.

    `gap` is absolute when every banned value is ≤ 10 (alphas), relative to b otherwise (Hz).
    """
    pieces = [(float(lo), float(hi))]
    for b in sorted(banned):
        half = gap if abs(b) <= 10 else gap * b
        cut = []
        for a, c in pieces:
            if c <= b - half or a >= b + half:
                cut.append((a, c))
                continue
            if a < b - half:
                cut.append((a, b - half))
            if c > b + half:
                cut.append((b + half, c))
        pieces = cut
    return [(a, c) for a, c in pieces if c > a]


def draw_allowed(u: float, lo: float, hi: float, banned: Sequence[float], gap: float, name: str) -> float:
    """Map a uniform u ∈ [0, 1) onto the allowed part of [lo, hi] (inverse CDF, so seeded draws stay aligned)."""
    pieces = allowed_intervals(lo, hi, banned, gap)
    if not pieces:
        raise ConfigError(f"test-like {name}=({lo}, {hi}) lies entirely inside the training set's values "
                          f"{sorted(banned)} (± {gap}); accepted: a range reaching beyond them")
    lengths = np.array([c - a for a, c in pieces])
    target = u * lengths.sum()
    k = int(min(np.searchsorted(np.cumsum(lengths), target, side="right"), len(pieces) - 1))
    return float(pieces[k][0] + target - (np.cumsum(lengths)[k] - lengths[k]))


def stable_half(path: Path | str) -> int:
    """0 or 1 from a hash of the file name: which side (training / test-like) may use this clip."""
    return hashlib.sha256(Path(path).name.encode()).digest()[0] & 1


def tilt_noise(alpha: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with power spectrum 1/f^alpha, `(n,)` float32."""
    spec = scipy.fft.rfft(rng.standard_normal(n))
    freq = np.arange(spec.size, dtype=np.float64)
    freq[0] = 1.0
    spec *= freq ** (-alpha / 2)
    spec[0] = 0.0
    return _unit(scipy.fft.irfft(spec, n=n))


def envelope_noise(envelope_db: Sequence[float], n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise whose power spectrum follows `envelope_db` at ENVELOPE_HZ, `(n,)` float32.

    Above the envelope's last frequency the noise falls off steeply (the analysis saw nothing there).
    """
    env = np.asarray(envelope_db, dtype=np.float64)
    if env.shape != (len(ENVELOPE_HZ),):
        raise ConfigError(f"background envelope has {env.size} values; accepted: {len(ENVELOPE_HZ)}")
    freq = np.fft.rfftfreq(n, d=1.0 / sr)
    logf = np.log(np.maximum(freq, 1.0))
    db = np.interp(logf, np.log(ENVELOPE_HZ), env)
    above = freq > ENVELOPE_HZ[-1]
    db[above] -= 60.0 * np.clip((freq[above] - ENVELOPE_HZ[-1]) / 400.0, 0.0, 1.0)
    spec = scipy.fft.rfft(rng.standard_normal(n)) * 10.0 ** (db / 20.0)
    spec[0] = 0.0
    return _unit(scipy.fft.irfft(spec, n=n))


def spectrum_envelope(wave: np.ndarray, sr: int) -> list[float]:
    """Power spectrum of a stretch in dB at ENVELOPE_HZ (Welch, smoothed over third octaves)."""
    freq, psd = scipy.signal.welch(np.asarray(wave, np.float64), fs=sr, nperseg=min(1024, max(len(wave), 16)))
    out = []
    for f in ENVELOPE_HZ:
        band = (freq >= f / 2 ** (1 / 6)) & (freq <= f * 2 ** (1 / 6))
        value = psd[band].mean() if band.any() else np.interp(f, freq, psd)
        out.append(10.0 * np.log10(value + _EPS))
    top = max(out)
    return [round(v - top, 2) for v in out]


def loop_background(segment: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS `(n,)` float32 from a real background stretch: tiled forwards and backwards (no
    clicks at the joins), starting at a random point, so a short stretch fills any length."""
    seg = np.asarray(segment, np.float64).ravel()
    if seg.size < 2 or not np.any(seg != seg[0]):
        raise ConfigError(f"background stretch of {seg.size} samples is empty or constant")
    seg = seg - seg.mean()
    cycle = np.concatenate([seg, seg[::-1]])
    start = int(rng.integers(cycle.size))
    idx = (start + np.arange(n)) % cycle.size
    return _unit(cycle[idx])


def butter_lowpass(x: np.ndarray, cutoff_hz: float, sr: int, order: int = 8) -> np.ndarray:
    """Zero-phase Butterworth low-pass of a 1-D wave (unchanged at or above Nyquist), float32."""
    if not cutoff_hz or cutoff_hz >= 0.98 * sr / 2:
        return np.asarray(x, np.float32)
    sos = scipy.signal.butter(order, cutoff_hz, btype="low", fs=sr, output="sos")
    return scipy.signal.sosfiltfilt(sos, np.asarray(x, np.float64)).astype(np.float32)


def spectral_tilt(x: np.ndarray, db_per_octave: float, sr: int) -> np.ndarray:
    """Tilt a wave's spectrum by `db_per_octave` around 1 kHz (a microphone or channel colour)."""
    if db_per_octave == 0:
        return np.asarray(x, np.float32)
    n = len(x)
    freq = np.fft.rfftfreq(n, d=1.0 / sr)
    gain_db = db_per_octave * np.log2(np.clip(freq, 100.0, None) / 1000.0)
    return scipy.fft.irfft(scipy.fft.rfft(x) * 10.0 ** (gain_db / 20.0), n=n).astype(np.float32)


def damped_impulse(rt60_s: float, drr_db: float, damping_hz: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Room impulse response whose tail loses high frequencies as it decays (one-pole low-pass that
    closes over time): direct path plus a noise tail of `rt60_s`, direct-to-reverberant ratio `drr_db`."""
    m = max(int(min(rt60_s, 1.2) * sr), 2)
    t = np.arange(m) / sr
    tail = rng.standard_normal(m) * np.exp(-np.log(1000.0) * t / max(rt60_s, 1e-3))
    cutoff = damping_hz / (1.0 + 4.0 * t / max(rt60_s, 1e-3))  # falls as the tail decays
    a = np.exp(-2 * np.pi * np.minimum(cutoff, 0.45 * sr) / sr)
    out = np.empty(m)
    state = 0.0
    for i in range(m):  # time-varying one-pole: no closed form; m ≤ 1.2·sr, fast enough per clip
        state = (1 - a[i]) * tail[i] + a[i] * state
        out[i] = state
    out[0] = 0.0
    out *= np.sqrt(10.0 ** (-drr_db / 10.0) / (np.sum(out**2) + _EPS))
    out[0] = 1.0
    return out.astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return (x / np.sqrt(np.mean(x**2) + _EPS)).astype(np.float32)
