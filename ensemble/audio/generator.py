"""The test-like generator's parameters and its version-2 recipes (nuisances apart from training's).

`GeneratorParams` holds every distribution a test-like clip is drawn from; its defaults are a guess,
`ensemble.audio.testlike_fit` fits them to the competition's unlabeled test audio — as per-nuisance
distributions and, once fitted, as weighted joint *profiles* (every nuisance of one clip of the fit's
pool, drawn together so that their dependencies survive). A version-2 recipe is
drawn per clip from a per-clip random stream (the same seed gives the same uniforms whatever the
parameters, so candidate settings in a fit compare on common random numbers) and rendered by
`render_v2` with the blocks of `ensemble.audio.nuisance`, never with the training augmentation's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable, Sequence

import numpy as np

from ensemble.audio import dsp, nuisance
from ensemble.errors import ConfigError, DataError

VERSION = 2
SPEECH_DB = -26.0  # level of the first voice (dBFS RMS); also sets the noise of clips with no voice
PROFILE_KEYS = ("reverb", "noise", "band_limit_hz", "tilt_db_per_oct", "lowpass_hz", "codec", "level_db")
_PAIRS = ("second_voice_db", "level_db", "snr_db", "noise_alpha", "tilt_db_per_oct", "rt60_s", "drr_db",
          "damping_hz", "lowpass_hz", "codec_compression", "voice_fill", "gap_s")


@dataclass(frozen=True)
class GeneratorParams:
    """Distributions of the test-like nuisances; ranges are (low, high) uniform.

    `level_quantiles` (dB, increasing), when given, replaces `level_db`: levels are drawn from the
    real clips' level distribution by inverse CDF (quantile matching). `p_background` is the share
    of clips whose noise follows a real background envelope (when any are given).
    """

    voice_probs: tuple[float, float, float] = (0.15, 0.5, 0.35)
    second_voice_db: tuple[float, float] = (-8.0, 8.0)
    min_visible_s: float = 1.0
    level_db: tuple[float, float] = (-28.0, -14.0)
    level_quantiles: tuple[float, ...] = ()
    snr_db: tuple[float, float] = (-5.0, 20.0)
    p_background: float = 0.5
    noise_alpha: tuple[float, float] = (0.25, 1.75)
    tilt_db_per_oct: tuple[float, float] = (0.0, 0.0)
    p_reverb: float = 0.3
    rt60_s: tuple[float, float] = (0.2, 0.8)
    drr_db: tuple[float, float] = (-3.0, 10.0)
    damping_hz: tuple[float, float] = (2000.0, 6000.0)
    p_lowpass: float = 0.4
    lowpass_hz: tuple[float, float] = (3500.0, 7800.0)
    p_codec: float = 0.3
    codec_compression: tuple[float, float] = (0.0, 0.45)
    band_limit_hz: float = 0.0  # the real files' own band limit (Nyquist of their rate); 0: none
    snr_quantiles: tuple[float, ...] = ()  # replaces snr_db when given (inverse CDF, dB)
    lowpass_quantiles: tuple[float, ...] = ()  # replaces lowpass_hz when given (Hz; banned cut-offs moved out)
    tilt_quantiles: tuple[float, ...] = ()  # replaces tilt_db_per_oct when given (dB/octave)
    alpha_quantiles: tuple[float, ...] = ()  # replaces noise_alpha when given (training's colours moved out)
    silent_level_quantiles: tuple[float, ...] = ()  # levels of clips without a voice (real voice-free clips')
    voice_fill: tuple[float, float] = (0.2, 0.9)  # share of the clip one voice's utterances span
    fill_quantiles: tuple[float, ...] = ()  # replaces voice_fill when given (share of the clip)
    gap_s: tuple[float, float] = (0.05, 0.6)  # pause between a voice's consecutive utterances
    # joint nuisance draws replacing the per-nuisance ones when given: {"voices": 0-2, "weight": > 0,
    # "fill": [share per voice], "nuisance": {PROFILE_KEYS}}; a clip with k voices takes one of the
    # k-voice profiles with probability ∝ weight (importance resampling of the fit's pool)
    profiles: tuple[dict, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ConfigError(f"test-like parameter {f.name}={value!r} is invalid; accepted: a probability in [0, 1]")
        for name in _PAIRS:
            object.__setattr__(self, name, _pair(name, getattr(self, name)))
        probs = tuple(float(p) for p in self.voice_probs)
        if len(probs) != 3 or min(probs) < 0 or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
            raise ConfigError(f"test-like parameter voice_probs={probs!r} is invalid; accepted: 3 probabilities summing to 1")
        object.__setattr__(self, "voice_probs", probs)
        for name in ("level_quantiles", "snr_quantiles", "lowpass_quantiles", "tilt_quantiles", "fill_quantiles",
                     "alpha_quantiles", "silent_level_quantiles"):
            q = tuple(float(v) for v in getattr(self, name))
            if q and (len(q) < 2 or any(b < a for a, b in zip(q, q[1:]))):
                raise ConfigError(f"test-like parameter {name} is invalid; accepted: ≥ 2 increasing values")
            object.__setattr__(self, name, q)
        if not (0.0 <= self.voice_fill[0] and self.voice_fill[1] <= 1.0) or min(self.fill_quantiles, default=0) < 0 \
                or max(self.fill_quantiles, default=0) > 1 or self.gap_s[0] < 0:
            raise ConfigError(f"test-like parameters voice_fill={self.voice_fill!r} / fill_quantiles / "
                              f"gap_s={self.gap_s!r} "
                              "are invalid; accepted: shares in [0, 1], gaps ≥ 0 s")
        lo, hi = self.codec_compression
        if lo < nuisance.CODEC_RANGE[0] or hi > nuisance.CODEC_RANGE[1]:
            raise ConfigError(f"test-like parameter codec_compression={self.codec_compression!r} overlaps the "
                              f"training augmentation's; accepted: within {nuisance.CODEC_RANGE}")
        for name, banned, gap in (("noise_alpha", nuisance.TRAIN_ALPHAS.values(), nuisance.ALPHA_GAP),
                                  ("lowpass_hz", _train_cutoffs(), nuisance.CUTOFF_GAP)):
            nuisance.draw_allowed(0.5, *getattr(self, name), banned, gap, name)  # raises when nothing is left
        object.__setattr__(self, "profiles", tuple(_check_profile(k, p) for k, p in enumerate(self.profiles)))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GeneratorParams":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"test-like parameter {unknown[0]!r} is unknown; accepted: {', '.join(sorted(names))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def with_(self, **changes: Any) -> "GeneratorParams":
        return replace(self, **changes)


def _check_profile(k: int, profile: Any) -> dict:
    """One joint profile, checked like the per-nuisance parameters (training's nuisances stay out)."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"test-like profile {k} is invalid ({why}); accepted: voices 0-2, weight > 0, "
                           f"one fill share in [0, 1] per voice, nuisance keys {', '.join(PROFILE_KEYS)}")

    if not isinstance(profile, dict) or set(profile) != {"voices", "weight", "fill", "nuisance"}:
        raise bad("keys")
    voices, weight, fill, nuis = profile["voices"], profile["weight"], profile["fill"], profile["nuisance"]
    if voices not in (0, 1, 2) or not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight > 0):
        raise bad("voices or weight")
    if not isinstance(fill, (list, tuple)) or len(fill) != voices or any(not 0.0 <= f <= 1.0 for f in fill):
        raise bad("fill")
    if not isinstance(nuis, dict) or set(nuis) != set(PROFILE_KEYS):
        raise bad("nuisance keys")
    cutoff, codec = nuis["lowpass_hz"], nuis["codec"]
    if cutoff and _outside(float(cutoff), _train_cutoffs(), nuisance.CUTOFF_GAP) != float(cutoff):
        raise bad(f"low-pass {cutoff} Hz is one of the training augmentation's")
    if codec and not nuisance.CODEC_RANGE[0] <= codec.get("compression", -1) <= nuisance.CODEC_RANGE[1]:
        raise bad("codec compression overlaps the training augmentation's")
    return {"voices": int(voices), "weight": float(weight), "fill": [float(f) for f in fill], "nuisance": nuis}


def profile_tables(params: GeneratorParams) -> dict[int, tuple[np.ndarray, list[dict]]]:
    """Per voice count, the cumulative weights and the profiles with that many voices."""
    tables = {}
    for k in (0, 1, 2):
        chosen = [p for p in params.profiles if p["voices"] == k]
        if chosen:
            w = np.cumsum([p["weight"] for p in chosen])
            tables[k] = (w / w[-1], chosen)
    return tables


def from_profile(tables: dict, voices: int, rng: np.random.Generator) -> tuple[dict, list[float]] | None:
    """The nuisances and voice fills of a profile with `voices` voices drawn ∝ weight, with fresh noise and
    room seeds from `rng`; None when the fit's pool held no clip with that many voices."""
    import copy

    u, seeds = rng.random(), rng.integers(2**31, size=2)
    if voices not in tables:
        return None
    cdf, chosen = tables[voices]
    profile = chosen[int(min(np.searchsorted(cdf, u, side="right"), len(chosen) - 1))]
    nuis = copy.deepcopy(profile["nuisance"])
    if nuis["reverb"]:
        nuis["reverb"]["seed"] = int(seeds[0])
    nuis["noise"]["seed"] = int(seeds[1])
    return nuis, list(profile["fill"])


def _pair(name: str, value: Any) -> tuple[float, float]:
    from ensemble.audio.augment import check_pair

    return check_pair(name, value, "test-like parameter")


def _train_cutoffs() -> list[float]:
    return nuisance.training_nuisances()["lowpass_hz"]


def clip_rng(seed: int, fold: int, index: int) -> np.random.Generator:
    """The nuisance stream of one clip: independent of the parameters and of the voices drawn."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(fold), int(index), 1]))


def voice_fill(params: GeneratorParams, u: float) -> float:
    """Share of the clip one voice's utterances should span, from a uniform u (inverse CDF)."""
    return _quantile(params.fill_quantiles, u) if params.fill_quantiles else _lerp(params.voice_fill, u)


def n_voices(params: GeneratorParams, u: float) -> int:
    """Number of voices from a uniform u (inverse CDF of voice_probs)."""
    return int(np.searchsorted(np.cumsum(params.voice_probs), u, side="right").clip(0, 2))


def draw_nuisances(params: GeneratorParams, rng: np.random.Generator, voiced: bool,
                   backgrounds: Sequence[dict] = ()) -> dict[str, Any]:
    """Everything but the voices of one version-2 recipe; always consumes the same draws from `rng`."""
    u = rng.random(12)
    seeds = rng.integers(2**31, size=2)
    p = params
    reverb = None
    if voiced and u[0] < p.p_reverb:
        reverb = {"rt60_s": round(_lerp(p.rt60_s, u[1]), 4), "drr_db": round(_lerp(p.drr_db, u[2]), 3),
                  "damping_hz": round(_lerp(p.damping_hz, u[3]), 1), "seed": int(seeds[0])}
    snr = round(_quantile(p.snr_quantiles, u[7]) if p.snr_quantiles else _lerp(p.snr_db, u[7]), 3)
    if backgrounds and (u[4] < p.p_background or not voiced):  # noise alone: real noise when there is some
        bg = backgrounds[int(u[6] * len(backgrounds)) % len(backgrounds)]
        if "envelope" in bg:  # spectral envelope of a real quiet stretch (older fits)
            noise = {"kind": "background", "source": bg["source"], "envelope": bg["envelope"],
                     "snr_db": snr, "seed": int(seeds[1])}
        else:  # a voice-free stretch of a real clip, looped
            noise = {"kind": "real", "source": bg["source"], "start_s": bg["start_s"], "seconds": bg["seconds"],
                     "snr_db": snr, "seed": int(seeds[1])}
    else:
        if p.alpha_quantiles:
            alpha = _outside(_quantile(p.alpha_quantiles, u[5]), nuisance.TRAIN_ALPHAS.values(), nuisance.ALPHA_GAP)
        else:
            alpha = nuisance.draw_allowed(u[5], *p.noise_alpha, nuisance.TRAIN_ALPHAS.values(), nuisance.ALPHA_GAP,
                                          "noise_alpha")
        noise = {"kind": "tilt", "alpha": round(alpha, 4), "snr_db": snr, "seed": int(seeds[1])}
    lowpass = codec = None
    if u[9] < p.p_lowpass:
        if p.lowpass_quantiles:
            lowpass = round(_outside(_quantile(p.lowpass_quantiles, u[10]), _train_cutoffs(), nuisance.CUTOFF_GAP), 1)
        else:
            lowpass = round(nuisance.draw_allowed(u[10], *p.lowpass_hz, _train_cutoffs(), nuisance.CUTOFF_GAP, "lowpass_hz"), 1)
    elif u[9] < p.p_lowpass + p.p_codec * (1 - p.p_lowpass):
        codec = {"compression": round(_lerp(p.codec_compression, u[10]), 3)}
    levels = p.level_quantiles if voiced or not p.silent_level_quantiles else p.silent_level_quantiles
    level = _quantile(levels, u[11]) if levels else _lerp(p.level_db, u[11])
    tilt = _quantile(p.tilt_quantiles, u[8]) if p.tilt_quantiles else _lerp(p.tilt_db_per_oct, u[8])
    return {"reverb": reverb, "noise": noise, "band_limit_hz": p.band_limit_hz or None, "tilt_db_per_oct": round(tilt, 3),
            "lowpass_hz": lowpass, "codec": codec, "level_db": round(level, 3)}


def _quantile(q: tuple[float, ...], u: float) -> float:
    """Inverse CDF through evenly spaced quantiles (quantile matching)."""
    return float(np.interp(u, np.linspace(0, 1, len(q)), q))


def _outside(value: float, banned, gap: float) -> float:
    """`value` moved to the nearer edge of any banned interval it falls in: b ± gap·b for frequencies,
    b ± gap for small values (≤ 10, noise colours), as `nuisance.allowed_intervals` cuts them."""
    for b in banned:
        half = gap if abs(b) <= 10 else gap * b
        if abs(value - b) < half:
            return b - half if value < b else b + half
    return value


def _lerp(pair: tuple[float, float], u: float) -> float:
    return float(pair[0] + (pair[1] - pair[0]) * u)


def soft_limit(x: np.ndarray, level_db: float, knee: float = 0.5) -> np.ndarray:
    """Keep `(1, n)` under full scale at (close to) its level: peaks above `knee` are compressed
    smoothly (tanh) and the level restored, instead of scaling the whole clip down — so the drawn
    level distribution survives, and loud clips get the lower crest factor real loud recordings have."""
    for _ in range(3):
        if np.abs(x).max() <= 0.99:
            break
        mag = np.abs(x)
        over = mag > knee
        x = np.where(over, np.sign(x) * (knee + (1 - knee) * np.tanh((mag - knee) / (1 - knee))), x)
        x = dsp.set_level(x.astype(np.float32), np.array([level_db]))
    return dsp.limit_peak(x.astype(np.float32))


def render_v2(rec: dict[str, Any], load: Callable[[str], np.ndarray], sr: int,
              load_background: Callable[[str], np.ndarray] | None = None) -> np.ndarray:
    """Render a version-2 recipe to float32 `(round(seconds·sr),)`; deterministic.

    `load_background(source)` gives a real clip (path relative to the competition folder) at `sr`,
    for recipes whose noise is a stretch of real audio.
    """
    n = int(round(rec["seconds"] * sr))
    x = np.zeros(n, dtype=np.float32)
    for voice in rec["voices"]:
        wave = np.asarray(load(voice["id"]), dtype=np.float32).ravel()
        level = np.sqrt(np.mean(np.square(wave, dtype=np.float64))) if wave.size else 0.0
        if level > 1e-8:
            wave = wave * np.float32(10 ** (voice["level_db"] / 20) / level)
        x += dsp.place(wave, n, int(round(voice["offset_s"] * sr)))
    if rec["reverb"]:
        rv = rec["reverb"]
        ir = nuisance.damped_impulse(rv["rt60_s"], rv["drr_db"], rv["damping_hz"], sr, np.random.default_rng(rv["seed"]))
        x = dsp.convolve_rows(x[None], [ir])[0]
    nz = rec["noise"]
    rng = np.random.default_rng(nz["seed"])
    if nz["kind"] == "real":
        if load_background is None:
            raise DataError(f"test-like recipe uses the real background {nz['source']!r}; rendering it needs "
                            "the competition folder's audio (load_background)")
        wave = np.asarray(load_background(nz["source"]), np.float32).ravel()
        lo = int(round(nz["start_s"] * sr))
        noise = nuisance.loop_background(wave[lo : lo + int(round(nz["seconds"] * sr))], n, rng)
    elif nz["kind"] == "background":
        noise = nuisance.envelope_noise(nz["envelope"], n, sr, rng)
    else:
        noise = nuisance.tilt_noise(nz["alpha"], n, rng)
    signal = float(dsp.power(x[None])[0])
    signal = signal if signal > 1e-10 else 10 ** (SPEECH_DB / 10)
    x = x + noise * np.float32(dsp.noise_scale(signal, 1.0, nz["snr_db"]))
    x = nuisance.spectral_tilt(x, rec["tilt_db_per_oct"], sr)
    x = nuisance.butter_lowpass(x, rec["lowpass_hz"], sr) if rec["lowpass_hz"] else x
    x = nuisance.butter_lowpass(x, rec["band_limit_hz"], sr) if rec.get("band_limit_hz") else x
    x = soft_limit(dsp.set_level(x[None], np.array([rec["level_db"]])), rec["level_db"])
    if rec.get("codec"):
        x = dsp.vorbis(x, sr, rec["codec"]["compression"])
    return x[0].astype(np.float32)
