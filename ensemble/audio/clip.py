"""Cut waves to a fixed length: random crop/pad for training, fixed windows for inference.

Training pads at a random position so neither the clip length nor where the padding sits can give
the label away (in the DACON contest almost only real clips were longer than 5 s).
"""

from __future__ import annotations

import numpy as np

from ensemble.errors import ConfigError


def _check_len(name: str, value: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name}={value!r} is invalid; accepted: a positive integer number of samples")
    return int(value)


def _mono(wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ConfigError(f"wave must be 1-D (samples,), got shape {wave.shape}")
    return wave


def fit_length(wave: np.ndarray, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Crop or zero-pad `wave` to exactly `n` samples; returns a new float32 array `(n,)`.

    With `rng` the crop start and the pad position are uniform at random; without it the crop is
    centred (the middle of a long clip is the least likely to be silence) and padding goes at the end.
    """
    n = _check_len("n", n)
    wave = _mono(wave)
    size = wave.size
    if size >= n:
        start = int(rng.integers(0, size - n + 1)) if rng is not None else (size - n) // 2
        return wave[start : start + n].copy()
    out = np.zeros(n, dtype=np.float32)
    offset = int(rng.integers(0, n - size + 1)) if rng is not None else 0
    out[offset : offset + size] = wave
    return out


def window_starts(size: int, n: int, hop: int) -> np.ndarray:
    """Start sample of each inference window for a clip of `size` samples (see `windows`)."""
    n, hop = _check_len("n", n), _check_len("hop", hop)
    if hop > n:
        raise ConfigError(f"hop={hop} is larger than the window n={n} and would skip audio; accepted: 1 ≤ hop ≤ n")
    if size <= n:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, size - n + 1, hop, dtype=np.int64)
    if starts[-1] != size - n:
        starts = np.append(starts, size - n)
    return starts


def windows(wave: np.ndarray, n: int, hop: int) -> np.ndarray:
    """Cut `wave` into windows of `n` samples every `hop` samples, shape `(k, n)` float32.

    The windows cover the whole clip: the last one is aligned to the clip's end (so it may overlap
    its neighbour more than the others). A clip no longer than `n` gives one window, padded at the end.
    Predictions are pooled over the k windows by the caller.
    """
    wave = _mono(wave)
    starts = window_starts(wave.size, n, hop)
    if wave.size <= n:
        return fit_length(wave, n)[None, :]
    view = np.lib.stride_tricks.sliding_window_view(wave, n)
    return np.ascontiguousarray(view[starts], dtype=np.float32)
