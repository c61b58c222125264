"""Speech-like voices for the demo: source-filter "real" voices and vocoder-like "fake" ones.

A real voice is a glottal pulse train (Rosenberg pulses) with a natural pitch contour, per-cycle jitter
and shimmer, breathy aspiration, five formants gliding between vowel targets syllable by syllable, and
unvoiced fricatives. A fake voice uses the same machinery with what vocoders get wrong: flat or
quantised pitch, too-regular periods and rhythm, a buzzy pulse share, broad formants updated at a coarse
frame rate, noise instead of harmonics above a maximum voiced frequency, smeared phase, band limits and
resampling images. Each fake *speaker* (a TTS voice) draws only some artefacts at random strengths and
some real speakers have clean-ish traits, so no single cue gives the label away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensemble.demo.spectral import (
    fast_len,
    frame_params,
    istft,
    n_frames,
    resonance_gain2,
    slow_curve,
    smooth,
    stft,
)
from ensemble.errors import ConfigError

VOICE_KINDS = ("real", "fake")
# (F1, F2, F3) of adult vowels, Hz: i e a o u ɛ ʌ ɪ
VOWELS = np.array(
    [[270, 2290, 3010], [530, 1840, 2480], [730, 1090, 2440], [570, 840, 2410],
     [300, 870, 2240], [660, 1720, 2410], [520, 1190, 2390], [390, 1990, 2550]],
    dtype=float,
)
HIGH_FORMANTS = np.array([3400.0, 4200.0])
BANDWIDTHS = np.array([70.0, 100.0, 150.0, 220.0, 300.0])


@dataclass(frozen=True)
class Speaker:
    """One voice's traits; the fake-only artefact fields are neutral (0 or 1) for clean voices."""

    kind: str
    f0: float  # median pitch, Hz
    f0_range: float  # accent range, semitones
    formant_scale: float
    rate: float  # syllables per second
    breath: float  # aspiration noise relative to the pulses
    jitter: float  # per-cycle period std, fraction
    shimmer: float  # per-cycle amplitude std, fraction
    open_quotient: float
    bw_scale: float = 1.0  # formant bandwidth multiplier (broad = smoothed envelope)
    pitch_step: float = 0.0  # pitch quantisation step, semitones (0: none)
    env_hold: int = 1  # spectral envelope updated every env_hold frames
    buzz: float = 0.0  # share of flat, zero-phase pulse excitation
    max_voiced: float = 1.0  # harmonics above this fraction of Nyquist are replaced by noise
    phase_smear: float = 0.0  # random phase per STFT bin, × π
    band_limit: float = 1.0  # low-pass cutoff, fraction of Nyquist
    alias: float = 0.0  # mirrored image above band_limit (sample-rate-conversion artefact)
    regularity: float = 0.2  # 0..1: uniformity of syllable durations and stresses


@dataclass(frozen=True)
class ControlTracks:
    """Frame-rate control tracks of one voice: voiced and fricative amplitude, vowel index, pitch accent."""

    voiced: np.ndarray
    fric: np.ndarray
    vowel: np.ndarray
    accent: np.ndarray


def draw_speaker(kind: str, rng: np.random.Generator, female: bool | None = None) -> Speaker:
    """A random speaker of `kind` ("real" or "fake"): pitch range, formant scaling, artefacts.

    `female` picks the pitch and formant range (random by default); callers drawing a handful of
    speakers balance it, or the pitch range alone would tell the classes apart.
    """
    _check_kind(kind)
    female = bool(rng.random() < 0.5) if female is None else female
    f0 = float(np.exp(rng.uniform(np.log(165), np.log(250)) if female else rng.uniform(np.log(90), np.log(150))))
    common = dict(
        kind=kind,
        f0=f0,
        formant_scale=float(rng.uniform(1.08, 1.2) if female else rng.uniform(0.92, 1.05)),
        rate=float(rng.uniform(3.0, 5.5)),
        open_quotient=float(rng.uniform(0.5, 0.75)),
    )
    if kind == "real":
        return Speaker(
            **common,
            f0_range=float(rng.uniform(2.0, 6.0)),
            breath=float(rng.uniform(0.03, 0.3)),
            jitter=float(rng.uniform(0.002, 0.02)),
            shimmer=float(rng.uniform(0.02, 0.12)),
            bw_scale=float(rng.uniform(0.9, 1.6)),
            band_limit=float(rng.uniform(0.55, 0.95)) if rng.random() < 0.3 else 1.0,
            regularity=float(rng.uniform(0.0, 0.6)),
        )
    on = rng.random(7) < 0.4  # each vocoder artefact present or not: fakes differ from one another
    return Speaker(
        **common,
        f0_range=float(rng.uniform(1.0, 4.0)),
        breath=float(rng.uniform(0.0, 0.12)),
        jitter=float(rng.uniform(0.0, 0.006)),
        shimmer=float(rng.uniform(0.0, 0.04)),
        bw_scale=float(rng.uniform(1.3, 2.2) if on[0] else rng.uniform(0.9, 1.6)),
        pitch_step=float(rng.choice([0.25, 0.5, 1.0])) if on[1] else 0.0,
        env_hold=int(rng.integers(2, 4)) if on[2] else 1,
        buzz=float(rng.uniform(0.15, 0.5)) if on[3] else 0.0,
        max_voiced=float(rng.uniform(0.4, 0.85)) if on[4] else 1.0,
        phase_smear=float(rng.uniform(0.05, 0.35)) if on[5] else 0.0,
        band_limit=float(rng.uniform(0.6, 0.95)) if on[6] else 1.0,
        alias=float(rng.uniform(0.03, 0.15)) if on[6] and rng.random() < 0.5 else 0.0,
        regularity=float(rng.uniform(0.4, 1.0)),
    )


def synth_voice(
    kind: str, seconds: float, sr: int, rng: np.random.Generator, speaker: Speaker | None = None
) -> np.ndarray:
    """One clean voice clip of exactly round(seconds·sr) float32 samples, speech at about −20 dBFS RMS.

    `speaker` fixes the voice (draw one with `draw_speaker`); by default a random one of `kind` is drawn.
    """
    _check_kind(kind)
    if speaker is not None and speaker.kind != kind:
        raise ConfigError(f"speaker.kind: {speaker.kind!r} does not match kind {kind!r}")
    if sr < 4000:
        raise ConfigError(f"sr: {sr} is too low; accepted: ≥ 4000 Hz")
    spk = speaker if speaker is not None else draw_speaker(kind, rng)
    n = max(1, int(round(seconds * sr)))
    n_fft, hop = frame_params(sr)
    count = n_frames(n, hop)
    tracks = _segments(count, sr / hop, spk, rng)
    f0 = _pitch(n, sr, hop, tracks.accent, spk, rng)
    excitation = _excitation(f0, sr, spk, rng)
    spec = _shape(excitation, tracks, sr, n_fft, hop, spk, rng)
    y = istft(spec, n_fft, hop, n)
    active = float(np.mean((tracks.voiced + tracks.fric) > 0.05))
    level = float(np.sqrt(np.mean(y**2) / max(active, 1e-3)))
    return (y * (0.1 / max(level, 1e-9))).astype(np.float32)


def _check_kind(kind: str) -> None:
    if kind not in VOICE_KINDS:
        raise ConfigError(f"kind: {kind!r} is not a voice kind; accepted: {', '.join(VOICE_KINDS)}")


def _segments(count: int, rate: float, spk: Speaker, rng: np.random.Generator) -> ControlTracks:
    """Frame-rate control tracks: voiced amplitude, fricative amplitude, vowel index, pitch accent."""
    voiced, fric = np.zeros(count), np.zeros(count)
    vowel, accent = np.zeros(count, dtype=int), np.zeros(count)
    total = count / rate
    t = int(rng.uniform(0.02, 0.25) * min(1.0, total) * rate)
    end = count - int(rng.uniform(0.02, 0.25) * min(1.0, total) * rate)
    spread = 0.5 * (1.0 - spk.regularity)
    while t < end:
        if rng.random() < 0.3:
            length = max(2, int(rng.uniform(0.05, 0.14) * rate))
            _put(fric, t, _bump(length, 1.0) * rng.uniform(0.5, 1.0))
            t += length
        length = max(3, int(np.exp(rng.normal(0.0, spread)) * rate / spk.rate))
        stress = 1.0 - rng.uniform(0.0, 0.8) * (1.0 - spk.regularity)
        _put(voiced, t, _bump(length, 0.5) * stress)
        _put(vowel, t, np.full(length, rng.integers(len(VOWELS))))
        _put(accent, t, np.full(length, rng.uniform(0.0, 1.0) * stress))
        t += length
        if rng.random() < 0.15:
            t += int(rng.uniform(0.05, 0.25) * rate)
    for track in (voiced, fric, accent):
        track[max(end, 0) :] = 0.0
    return ControlTracks(smooth(voiced, 3), smooth(fric, 3), vowel, smooth(accent, 5))


def _bump(length: int, power: float) -> np.ndarray:
    """A half-sine amplitude envelope of `length` frames raised to `power` (flatter for < 1)."""
    return np.sin(np.pi * (np.arange(length) + 0.5) / length) ** power


def _put(track: np.ndarray, start: int, values: np.ndarray) -> None:
    """Write `values` into `track` from `start`, dropping what falls past the end."""
    stop = min(len(track), start + len(values))
    if stop > start:
        track[start:stop] = values[: stop - start]


def _pitch(n: int, sr: int, hop: int, accent: np.ndarray, spk: Speaker, rng: np.random.Generator) -> np.ndarray:
    """Per-sample f0 (Hz): declination + accents + slow wander, quantised for vocoder-like voices."""
    count = len(accent)
    rate = sr / hop
    frac = np.arange(count) / max(count - 1, 1)
    wander = 1.0 if spk.kind == "real" else 0.3
    st = -rng.uniform(1.0, 3.0) * frac + spk.f0_range * accent + wander * 0.7 * slow_curve(count, rate, 1.5, rng)
    if spk.pitch_step > 0:
        st = smooth(np.round(st / spk.pitch_step) * spk.pitch_step, 2)
    f0_frames = spk.f0 * 2.0 ** (st / 12.0)
    return np.interp(np.arange(n), np.arange(count) * hop, f0_frames)


def _excitation(f0: np.ndarray, sr: int, spk: Speaker, rng: np.random.Generator) -> np.ndarray:
    """Glottal source: Rosenberg flow derivative with jitter/shimmer, buzzy pulses, breath noise."""
    phase = np.cumsum(f0 / sr)
    if spk.jitter > 0:
        jit = 1.0 + spk.jitter * rng.standard_normal(int(phase[-1]) + 2)
        phase = np.cumsum(f0 * jit[phase.astype(np.int64)] / sr)
    cycle = phase.astype(np.int64)
    phi = (phase - cycle).astype(np.float32)
    tp = 0.6 * spk.open_quotient
    tn = spk.open_quotient - tp
    opening = phi < tp
    closing = ~opening & (phi < spk.open_quotient)
    deriv = np.zeros(len(phi), dtype=np.float32)
    flow = np.zeros(len(phi), dtype=np.float32)
    a, b = np.pi * phi[opening] / tp, np.pi * (phi[closing] - tp) / (2 * tn)
    deriv[opening] = 0.5 * np.pi / tp * np.sin(a)
    flow[opening] = 0.5 - 0.5 * np.cos(a)
    deriv[closing] = -np.pi / (2 * tn) * np.sin(b)
    flow[closing] = np.cos(b)
    deriv *= 1.0 + spk.shimmer * rng.standard_normal(int(cycle[-1]) + 2)[cycle]
    src = deriv / _rms(deriv)
    if spk.buzz > 0:
        src = (1 - spk.buzz) * src + spk.buzz * _buzz(phi, f0, sr, spk.f0)
    if spk.breath > 0:
        asp = rng.standard_normal(len(f0), dtype=np.float32) * (0.25 + flow)
        src = src + spk.breath * asp / _rms(asp)
    return src


def _buzz(phi: np.ndarray, f0: np.ndarray, sr: int, f0_ref: float) -> np.ndarray:
    """Zero-phase band-limited pulse train (closed-form Dirichlet kernel), tilted like a glottal source."""
    harmonics = np.floor(0.5 * sr / f0)
    half = np.pi * phi
    s = np.sin(half)
    safe = np.abs(s) > 1e-9
    pulse = np.where(safe, np.sin((2 * harmonics + 1) * half) / (2 * np.where(safe, s, 1.0)) - 0.5, harmonics)
    size = fast_len(len(pulse))
    f = np.fft.rfftfreq(size, 1.0 / sr)
    pulse = np.fft.irfft(np.fft.rfft(pulse, size) / np.sqrt(1.0 + (f / (2 * f0_ref)) ** 2), n=size)[: len(phi)]
    return pulse / _rms(pulse)


def _shape(exc: np.ndarray, tracks: ControlTracks, sr: int, n_fft: int, hop: int, spk: Speaker,
           rng: np.random.Generator) -> np.ndarray:
    """Filter the source through moving formants in the STFT domain and add fricatives and artefacts."""
    voiced, fric, vowel = tracks.voiced, tracks.fric, tracks.vowel
    count = len(voiced)
    nyq = sr / 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr).astype(np.float32)
    src = stft(exc, n_fft, hop)
    noise = _stft_noise(src.shape, n_fft, rng)
    targets = np.concatenate([VOWELS[vowel], np.broadcast_to(HIGH_FORMANTS, (count, 2))], axis=1)
    formants = smooth(targets * spk.formant_scale, 7 if spk.kind == "real" else 3)
    if spk.kind == "real":  # articulatory micro-variation
        formants = formants * (1 + 0.03 * np.stack([slow_curve(count, sr / hop, 4.0, rng) for _ in range(5)], 1))
    formants = np.minimum(formants, 0.95 * nyq).astype(np.float32)
    bws = (BANDWIDTHS * spk.bw_scale * rng.uniform(0.9, 1.1, 5)).astype(np.float32)
    env2 = resonance_gain2(freqs, formants[:, 0], np.full(count, bws[0]))
    for i in range(1, 5):
        env2 *= resonance_gain2(freqs, formants[:, i], np.full(count, bws[i]))
    env = np.sqrt(env2)
    if spk.env_hold > 1:
        env = env[(np.arange(count) // spk.env_hold) * spk.env_hold]
    if spk.max_voiced < 1.0:
        cut = spk.max_voiced * nyq
        low = np.clip((cut * 1.1 - freqs) / (cut * 0.2), 0.0, 1.0)
        band = (freqs > 0.7 * cut) & (freqs < cut)
        gain = np.mean(np.abs(src[:, band])) / max(np.mean(np.abs(noise[:, band])), 1e-12)
        src = src * low + noise * gain * (1 - low)
    voice = src * (env * voiced[:, None].astype(np.float32))
    centre = np.array([min(rng.uniform(2500, 6000), 0.8 * nyq)])
    fric_env = np.sqrt(resonance_gain2(freqs, centre, np.array([rng.uniform(1000, 3000)])))
    hiss = noise * ((fric_env / fric_env.max()) * fric[:, None]).astype(np.float32)
    v_pow = _frame_power(voice, voiced)
    h_pow = _frame_power(hiss, fric)
    spec = voice + hiss * rng.uniform(0.1, 0.35) * np.sqrt(v_pow / max(h_pow, 1e-20))
    if spk.phase_smear > 0:
        angle = (np.pi * spk.phase_smear * rng.uniform(-1, 1, spec.shape)).astype(np.float32)
        spec = spec * (np.cos(angle) + 1j * np.sin(angle))
    if spk.band_limit < 1.0:
        spec = _band_limit(spec, freqs, spk.band_limit * nyq, spk.alias)
    return spec


def _stft_noise(shape: tuple[int, int], n_fft: int, rng: np.random.Generator) -> np.ndarray:
    """White noise drawn directly as Hann-windowed STFT frames (saves an FFT; same power as `stft`)."""
    scale = np.float32(np.sqrt(0.375 * n_fft / 2))  # E|X|² = Σ hann² = 0.375·n_fft
    return (rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32)) * scale


def _band_limit(spec: np.ndarray, freqs: np.ndarray, cutoff: float, alias: float) -> np.ndarray:
    """Brick-wall low-pass at `cutoff`, plus a mirrored image of the band below it (`alias` level)."""
    cb = int(np.searchsorted(freqs, cutoff))
    out = spec.copy()
    out[:, cb:] = 0.0
    if alias > 0:
        hi = np.arange(cb, len(freqs))
        mirror = 2 * cb - hi
        ok = mirror >= 0
        out[:, hi[ok]] = alias * spec[:, mirror[ok]]
    return out


def _frame_power(spec: np.ndarray, amp: np.ndarray) -> float:
    """Mean spectral power per unit amplitude over frames where `amp` is well above zero."""
    on = amp > 0.3
    if not on.any():
        return 0.0
    return float(np.mean(np.sum(np.abs(spec[on]) ** 2, axis=1) / amp[on] ** 2))


def _rms(x: np.ndarray) -> float:
    return max(float(np.sqrt(np.mean(x**2))), 1e-12)
