"""Small numpy signal helpers for the demo generator: STFT/iSTFT, resonances, noise, filters.

Everything is vectorised over frames and bins so a few minutes of audio synthesise in about a second;
scipy is deliberately not used, so the generator needs only numpy (and soundfile to write files).
"""

from __future__ import annotations

import numpy as np

OVERLAP = 2  # n_fft = OVERLAP * hop: the overlap-add below relies on it


def frame_params(sr: int) -> tuple[int, int]:
    """(n_fft, hop) giving ~32 ms frames and 50 % overlap at any sample rate."""
    n_fft = 1 << int(np.ceil(np.log2(0.032 * sr)))
    return n_fft, n_fft // OVERLAP


def n_frames(n: int, hop: int) -> int:
    """Frames `stft` returns for `n` samples."""
    return n // hop + 1


def stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred Hann STFT in single precision (plenty for 16-bit-grade audio), shape (frames, n_fft // 2 + 1)."""
    frames = n_frames(len(x), hop)
    pad = n_fft // 2
    xp = np.pad(x, (pad, pad + max(0, (frames - 1) * hop + n_fft - (len(x) + 2 * pad))))
    win = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    view = np.lib.stride_tricks.sliding_window_view(xp.astype(np.float32), n_fft)[::hop][:frames]
    return np.fft.rfft(view * win, axis=-1)


def istft(spec: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    """Weighted overlap-add inverse of `stft` (exact for unmodified spectra)."""
    win = np.hanning(n_fft + 1)[:-1]
    frames = np.fft.irfft(spec, n=n_fft, axis=-1) * win
    count = spec.shape[0]
    total = (count - 1) * hop + n_fft
    out = np.zeros(total)
    norm = np.zeros(total)
    w2 = np.tile(win**2, (count, 1))
    for j in range(OVERLAP):  # n_fft = OVERLAP*hop: each quarter of every frame lands on a hop grid
        sl = slice(j * hop, j * hop + count * hop)
        out[sl] += frames[:, j * hop : (j + 1) * hop].reshape(-1)
        norm[sl] += w2[:, j * hop : (j + 1) * hop].reshape(-1)
    pad = n_fft // 2
    out = out[pad : pad + length] / np.maximum(norm[pad : pad + length], 1e-3)
    return out


def resonance_gain2(freqs: np.ndarray, centre: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    """Squared magnitude of a 2-pole resonance, unity at DC; centre/bandwidth (frames,), freqs (bins,)."""
    f = freqs[None, :]
    c = centre[:, None]
    half_b2 = (bandwidth[:, None] / 2.0) ** 2
    return (c**2 + half_b2) ** 2 / (((f - c) ** 2 + half_b2) * ((f + c) ** 2 + half_b2))


def smooth(x: np.ndarray, width: int, axis: int = 0) -> np.ndarray:
    """Centred moving average of odd `width` along `axis` (edges use the shorter window)."""
    width = max(1, int(width) | 1)
    if width == 1:
        return x
    x = np.moveaxis(np.asarray(x, dtype=float), axis, 0)
    half = width // 2
    padded = np.concatenate([np.repeat(x[:1], half, 0), x, np.repeat(x[-1:], half, 0)], axis=0)
    c = np.cumsum(padded, axis=0)
    c = np.concatenate([np.zeros_like(c[:1]), c], axis=0)
    out = (c[width:] - c[:-width]) / width
    return np.moveaxis(out, 0, axis)


def slow_curve(n: int, rate: float, per_second: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random curve of `n` points sampled at `rate` Hz, ~`per_second` wiggles per second, unit std."""
    knots = max(2, int(np.ceil(n / rate * per_second)) + 2)
    values = rng.standard_normal(knots)
    pos = np.linspace(0, knots - 1, n)
    # cosine interpolation between knots: smooth, cheap, no overshoot
    i = np.minimum(pos.astype(int), knots - 2)
    t = 0.5 - 0.5 * np.cos(np.pi * (pos - i))
    return values[i] * (1 - t) + values[i + 1] * t


def coloured_noise(n: int, sr: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with power spectrum ~ 1/f^alpha (0 white, 1 pink, 2 brown)."""
    bins = n // 2 + 1
    spec = rng.standard_normal(bins) + 1j * rng.standard_normal(bins)  # Gaussian noise, drawn as its spectrum
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / sr), 20.0)
    x = np.fft.irfft(spec * f ** (-alpha / 2.0), n=n)
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def fast_len(n: int) -> int:
    """The smallest 2·3·5-smooth length ≥ n: FFT lengths with large prime factors are many times slower."""
    m = max(int(n), 1)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def lowpass(x: np.ndarray, sr: int, cutoff: float, width: float = 0.1) -> np.ndarray:
    """Zero-phase FFT low-pass with a raised-cosine transition `width`·cutoff wide."""
    size = fast_len(len(x))
    spec = np.fft.rfft(x, size)
    f = np.fft.rfftfreq(size, 1.0 / sr)
    lo, hi = cutoff * (1 - width / 2), cutoff * (1 + width / 2)
    gain = np.clip((hi - f) / (hi - lo), 0.0, 1.0)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    return np.fft.irfft(spec * gain, n=size)[: len(x)]


def reverb(x: np.ndarray, sr: int, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with an exponentially decaying noise tail (a cheap room) and mix `wet` of it in."""
    m = int(rt60 * sr)
    t = np.arange(m) / sr
    ir = rng.standard_normal(m) * np.exp(-6.9 * t / rt60)
    ir /= np.sqrt(np.sum(ir**2))
    size = fast_len(len(x) + m)
    wet_sig = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[: len(x)]
    return (1 - wet) * x + wet * wet_sig


def rms(x: np.ndarray) -> float:
    """Root mean square (0 for an empty array)."""
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0
