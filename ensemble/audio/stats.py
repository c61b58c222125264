"""Per-clip audio statistics: what a domain classifier compares between simulated and real clips.

Levels, dynamic range, spectral shape, noise-likeness and band energies, computed at one analysis
rate (`ANALYSIS_SR`) so clips of any rate compare alike. numpy only, a few ms per 5-s clip. The
same frames also locate a clip's quietest stretch (`quiet_window`), the background of a real clip.
"""

from __future__ import annotations

import numpy as np

ANALYSIS_SR = 16000
FRAME, HOP = 512, 256  # 32 ms frames, half overlapping, at ANALYSIS_SR
BANDS_HZ = (0.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)
STAT_NAMES = (
    "level_db", "frame_db_p10", "frame_db_p50", "frame_db_p90", "dynamic_range_db", "frame_db_std",
    "crest_db", "centroid_hz", "rolloff_hz", "flatness", "flatness_p10", "zcr", "flux",
    *(f"band_{int(lo)}_{int(hi)}" for lo, hi in zip(BANDS_HZ[:-1], BANDS_HZ[1:])),
)
_EPS = 1e-10


def _frame_view(wave: np.ndarray) -> np.ndarray:
    """Overlapping frames `(n_frames, FRAME)` of a wave, as a view (short waves zero-padded)."""
    wave = np.asarray(wave, dtype=np.float32).ravel()
    if wave.size < FRAME:
        wave = np.pad(wave, (0, FRAME - wave.size))
    n = 1 + (wave.size - FRAME) // HOP
    return np.lib.stride_tricks.as_strided(wave, (n, FRAME), (wave.strides[0] * HOP, wave.strides[0]))


def frames(wave: np.ndarray) -> np.ndarray:
    """Hann-windowed frames `(n_frames, FRAME)` of a wave at ANALYSIS_SR (short waves zero-padded)."""
    return _frame_view(wave) * np.hanning(FRAME).astype(np.float32)


def frame_db(wave: np.ndarray) -> np.ndarray:
    """RMS level of each (unwindowed) frame in dB, `(n_frames,)`."""
    view = _frame_view(wave)
    return 10.0 * np.log10(np.mean(np.square(view, dtype=np.float64), axis=1) + _EPS)


def clip_stats(wave: np.ndarray) -> np.ndarray:
    """The statistics of STAT_NAMES for one wave at ANALYSIS_SR, float64 `(len(STAT_NAMES),)`."""
    wave = np.asarray(wave, dtype=np.float32).ravel()
    power = np.abs(np.fft.rfft(frames(wave), axis=1)) ** 2 + _EPS  # (frames, bins)
    freq = np.fft.rfftfreq(FRAME, d=1.0 / ANALYSIS_SR)
    db = frame_db(wave)
    p5, p10, p50, p90, p95 = np.percentile(db, [5, 10, 50, 90, 95])
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0
    level = 20.0 * np.log10(rms + 1e-9)
    crest = 20.0 * np.log10((np.abs(wave).max() if wave.size else 0.0) + 1e-9) - level
    spectrum = power.mean(axis=0)
    centroid = float(np.sum(freq * spectrum) / np.sum(spectrum))
    cumulative = np.cumsum(spectrum) / np.sum(spectrum)
    rolloff = float(freq[min(np.searchsorted(cumulative, 0.95), freq.size - 1)])
    flat = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)
    signs = np.signbit(wave)
    zcr = float(np.mean(signs[1:] != signs[:-1])) if wave.size > 1 else 0.0
    logspec = np.log(power)
    flux = float(np.mean(np.abs(np.diff(logspec, axis=0)))) if power.shape[0] > 1 else 0.0
    total = np.sum(spectrum)
    bands = [np.log10(np.sum(spectrum[(freq >= lo) & (freq < hi)]) / total + _EPS)
             for lo, hi in zip(BANDS_HZ[:-1], BANDS_HZ[1:])]
    return np.array([level, p10, p50, p90, p95 - p5, float(np.std(db)), crest, centroid, rolloff,
                     float(np.mean(flat)), float(np.percentile(flat, 10)), zcr, flux, *bands], dtype=np.float64)


def stats_matrix(waves) -> np.ndarray:
    """Statistics of many waves at ANALYSIS_SR, `(len(waves), len(STAT_NAMES))`."""
    rows = [clip_stats(w) for w in waves]
    return np.stack(rows) if rows else np.zeros((0, len(STAT_NAMES)))


def quiet_window(wave: np.ndarray, seconds: float = 1.0) -> tuple[int, float]:
    """Start sample (at ANALYSIS_SR) of the lowest-energy window of `seconds`, and its frame-dB spread.

    A simple energy detector: the quietest stretch of a real clip is its background. The spread (std
    of frame dB inside the window) tells stationary noise (small) from speech pauses (large).
    """
    db = frame_db(wave)
    width = max(1, int(seconds * ANALYSIS_SR) // HOP - 1)
    if db.size <= width:
        return 0, float(np.std(db))
    energy = np.convolve(10.0 ** (db / 10.0), np.ones(width), mode="valid")
    start = int(np.argmin(energy))
    return start * HOP, float(np.std(db[start : start + width]))
