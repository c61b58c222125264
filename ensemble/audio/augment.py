"""Training examples that look like the test: 0–2 voices, noise at a random SNR, gain, band limits.

Train clips are clean and hold one voice; test clips are 5 s of 0, 1 or 2 voices (a fake and a
real one may overlap) in noise. A model trained on clean clips scores worse than a constant there,
so `ExampleSampler` builds each example from one or two rows of the fold's training part (or none:
an "empty" example of noise only), with a multi-hot target that is the elementwise max of its
sources' targets. Mixing only draws from `indices`, so no held-out row leaks into training.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Iterator

import numpy as np

from ensemble.audio import dsp
from ensemble.audio.clip import fit_length
from ensemble.audio.load import WaveStore
from ensemble.errors import ConfigError, ContractError
from ensemble.task import Task

# CLI item -> the probability field it switches on (unlisted items get probability 0).
ITEMS = {
    "mix": "p_mix",
    "empty": "p_empty",
    "noise": "p_noise",
    "background": "p_background",
    "gain": "p_gain",
    "shift": "p_shift",
    "lowpass": "p_lowpass",
    "reverb": "p_reverb",
    "codec": "p_codec",
}
# Probability an item switches on at when listed, where the default is off (too slow to be default).
_ON = {"p_codec": 0.15}
_REF_RMS = 0.05  # speech level (≈ −26 dBFS) that sets the noise level of examples with no voice


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of every augmentation (ranges are (low, high), uniform).

    Defaults aim at test clips like voices-dev's (DACON's alike): ~16 % of clips without voice,
    ~30 % with two, noise everywhere at −5…20 dB SNR (power over the whole window), RMS levels of
    −28…−14 dBFS, band limits of 8/11.025/16 kHz files, some reverberation. Zero padding is never
    left as digital silence when noise is on: its amount would tell the clip's length.
    """

    p_mix: float = 0.4  # of the examples with a voice: two voices instead of one
    p_empty: float = 0.1  # noise only, target all zeros
    p_noise: float = 0.9  # with noise on, the other examples still get a faint floor (no digital silence)
    snr_db: tuple[float, float] = (-5.0, 20.0)
    floor_snr_db: tuple[float, float] = (30.0, 50.0)
    noise_kinds: tuple[str, ...] = dsp.NOISE_KINDS
    p_background: float = 0.3  # of noisy voiced examples: noise is a background-bank clip (if given)
    mix_gain_db: tuple[float, float] = (-6.0, 6.0)  # level of the second voice relative to the first
    p_gain: float = 1.0  # example scaled to a random RMS level (dBFS), as the test's levels vary
    level_db: tuple[float, float] = (-28.0, -14.0)
    p_shift: float = 0.5  # voice placed at any offset, possibly cut at an edge (else fully inside)
    min_visible_s: float = 1.0  # at least this much of a shifted voice (or all of it) stays in
    p_lowpass: float = 0.3
    lowpass_hz: tuple[float, ...] = (4000.0, 5512.5, 8000.0)
    p_reverb: float = 0.2
    rt60_s: tuple[float, float] = (0.2, 0.8)
    drr_db: tuple[float, float] = (-3.0, 10.0)
    p_codec: float = 0.0  # Ogg Vorbis round trip (~70 ms per 5-s clip, so off by default)
    codec_compression: tuple[float, float] = (0.5, 1.0)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ConfigError(f"augment {f.name}={value!r} is invalid; accepted: a probability in [0, 1]")
        for name in ("snr_db", "floor_snr_db", "mix_gain_db", "level_db", "rt60_s", "drr_db", "codec_compression"):
            lo, hi = check_pair(name, getattr(self, name))
            object.__setattr__(self, name, (lo, hi))
        kinds = tuple(self.noise_kinds)
        bad = [k for k in kinds if k not in dsp.NOISE_KINDS]
        if not kinds or bad:
            raise ConfigError(
                f"augment noise_kinds={list(kinds)!r} is invalid; accepted: a non-empty subset of "
                f"{', '.join(dsp.NOISE_KINDS)}"
            )
        object.__setattr__(self, "noise_kinds", kinds)
        cutoffs = tuple(float(c) for c in self.lowpass_hz)
        if not cutoffs or min(cutoffs) <= 0:
            raise ConfigError(f"augment lowpass_hz={list(cutoffs)!r} is invalid; accepted: positive Hz values")
        object.__setattr__(self, "lowpass_hz", cutoffs)
        if self.min_visible_s < 0:
            raise ConfigError(f"augment min_visible_s={self.min_visible_s!r} is invalid; accepted: ≥ 0")
        if self.p_background > 0 and self.p_noise == 0:
            raise ConfigError("augment 'background' needs 'noise' (p_noise > 0); accepted: add 'noise'")

    @classmethod
    def none(cls) -> "AugmentConfig":
        """No augmentation: one clean voice per example (crop/pad position still random)."""
        return cls(**{p: 0.0 for p in ITEMS.values()})

    @classmethod
    def from_spec(cls, spec: str) -> "AugmentConfig":
        """Parse a CLI value: 'default', 'none', or a comma list of items and overrides.

        A list starts from 'none' (or from its first word, 'default' or 'none'); each item
        (`mix,noise,gain,shift`, …) switches that augmentation on at its default probability;
        `field=value` sets a field (`p_mix=0.5`, `snr_db=0:20`, `noise_kinds=pink:brown`).
        """
        parts = [p.strip() for p in str(spec).split(",") if p.strip()]
        if not parts:
            raise ConfigError(f"--augment {spec!r} is empty; accepted: default, none, or {_valid()}")
        base = cls.none()
        if parts[0] in ("default", "none"):
            base = cls() if parts.pop(0) == "default" else base
        overrides: dict[str, Any] = {}
        for part in parts:
            if "=" in part:
                key, value = (s.strip() for s in part.split("=", 1))
                overrides[key] = _parse_value(key, value)
            elif part in ITEMS:
                key = ITEMS[part]
                overrides.setdefault(key, getattr(cls(), key) or _ON.get(key, 0.0))
            else:
                raise ConfigError(f"--augment item {part!r} is unknown; accepted: default, none, {_valid()}")
        return replace(base, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict for the run manifest."""
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def for_task(config: AugmentConfig, spec: str, task: Task) -> AugmentConfig:
    """`config` with the settings `task` fixes (`Task.fixed_augment`; multiclass: every example keeps exactly
    one class, so no second voice, `mix`, and no voiceless example, `p_empty`). `default` switches them
    off; a spec that asks for one of them is refused."""
    fixed = dict(task.fixed_augment)
    asked = [p.strip() for p in str(spec).split(",")]
    wanted = [p for p in asked if ITEMS.get(p, p.split("=")[0].strip()) in fixed]
    if wanted and any(getattr(config, k) != v for k, v in fixed.items()):
        raise ConfigError(f"--augment {wanted[0]}: mixing two clips or voiceless examples gives a clip two classes "
                          f"or none; a {task} task keeps one class per clip (leave it out)")
    return replace(config, **fixed)


def _valid() -> str:
    return ", ".join(ITEMS) + " or field=value"


def check_pair(name: str, value: Any, what: str = "augment") -> tuple[float, float]:
    """A finite (low, high) range with low ≤ high; `what` names the settings in the error."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} {name}={value!r} is invalid; accepted: a (low, high) pair") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ConfigError(f"{what} {name}={value!r} is invalid; accepted: finite low ≤ high")
    return lo, hi


def _parse_value(key: str, value: str) -> Any:
    names = [f.name for f in fields(AugmentConfig)]
    if key not in names:
        raise ConfigError(f"--augment field {key!r} is unknown; accepted: {', '.join(names)}")
    default = getattr(AugmentConfig(), key)
    try:
        if key == "noise_kinds":
            return tuple(v for v in value.split(":") if v)
        if isinstance(default, tuple):
            return tuple(float(v) for v in value.split(":"))
        return float(value)
    except ValueError:
        raise ConfigError(f"--augment {key}={value!r} is not a number; e.g. {key}={_example(default)}") from None


def _example(default: Any) -> str:
    return ":".join(str(v) for v in default) if isinstance(default, tuple) else str(default)


class ExampleSampler:
    """Shuffled, augmented batches of one fold's training rows, reproducible per (seed, epoch).

    `targets` is `(len(store), labels)`: row i is store item i's multi-hot target. Only rows in
    `indices` are ever used, as the primary voice or as the second voice of a mix. An empty
    example consumes its primary row without using it (its sources list is empty). `background`
    clips (e.g. the unlabeled test-like audio) may hold voices of unknown label, so they only ever
    serve as noise under voiced examples, never as an "empty" example whose target must be zero.
    """

    def __init__(
        self,
        store: WaveStore,
        indices: np.ndarray,
        targets: np.ndarray,
        n_samples: int,
        config: AugmentConfig,
        seed: int,
        background: WaveStore | None = None,
    ) -> None:
        self.store, self.config, self.background = store, config, background
        self.indices = np.asarray(indices, dtype=np.int64).ravel()
        self.targets = np.asarray(targets, dtype=np.float32)
        if self.targets.ndim != 2 or self.targets.shape[0] != len(store):
            raise ContractError(
                f"targets shape {self.targets.shape} does not match the store; accepted: ({len(store)}, labels)"
            )
        if self.indices.size == 0:
            raise ContractError("indices is empty; accepted: at least one training row")
        if self.indices.min() < 0 or self.indices.max() >= len(store):
            raise ContractError(f"indices out of range for a store of {len(store)} files")
        if not isinstance(n_samples, (int, np.integer)) or n_samples <= 0:
            raise ConfigError(f"n_samples={n_samples!r} is invalid; accepted: a positive integer")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed={seed!r} is invalid; accepted: a non-negative integer")
        self.n_samples, self.seed = int(n_samples), int(seed)
        self._bank: dsp.NoiseBank | None = None

    @property
    def noise_bank(self) -> dsp.NoiseBank:
        """Coloured noise made once from the seed alone (not the epoch), so resume sees the same."""
        if self._bank is None:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(1,)))
            self._bank = dsp.NoiseBank(self.config.noise_kinds, self.n_samples, rng)
        return self._bank

    def n_batches(self, batch_size: int) -> int:
        """Number of batches `epoch(…, batch_size)` yields (every training row leads one example)."""
        return -(-self.indices.size // int(batch_size))

    def epoch(
        self, epoch: int, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray, list[list[int]]]]:
        """Yield `(waves (b, n) float32, targets (b, labels) float32, sources per example)`.

        The rng is seeded from (seed, epoch) alone, so a resumed run replays the same epoch.
        """
        if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ConfigError(f"batch_size={batch_size!r} is invalid; accepted: a positive integer")
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ConfigError(f"epoch={epoch!r} is invalid; accepted: a non-negative integer")
        rng = np.random.default_rng([self.seed, int(epoch)])
        order = rng.permutation(self.indices)
        for start in range(0, order.size, int(batch_size)):
            yield self._batch(order[start : start + batch_size], rng)

    def _partner(self, first: int, rng: np.random.Generator) -> int:
        if self.indices.size == 1:
            return first
        while True:
            other = int(self.indices[rng.integers(self.indices.size)])
            if other != first:
                return other

    def _place(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg, n = self.config, self.n_samples
        if cfg.p_shift > 0 and rng.random() < cfg.p_shift and wave.size > 0:
            visible = min(wave.size, n, int(cfg.min_visible_s * self.store.sr))
            return dsp.place(wave, n, int(rng.integers(-(wave.size - visible), n - visible + 1)))
        return fit_length(wave, n, rng)

    def _voices(self, primary: np.ndarray, rng: np.random.Generator):
        cfg, b = self.config, primary.size
        empty = rng.random(b) < cfg.p_empty
        mix = rng.random(b) < cfg.p_mix
        x = np.zeros((b, self.n_samples), dtype=np.float32)
        y = np.zeros((b, self.targets.shape[1]), dtype=np.float32)
        sources: list[list[int]] = []
        for i in range(b):
            first = int(primary[i])
            srcs = [] if empty[i] else [first]
            if srcs and mix[i] and self.indices.size > 1:
                srcs.append(self._partner(first, rng))
            for k, s in enumerate(srcs):
                wave = self.store[s]
                voice = self._place(wave, rng)
                if k > 0:  # second voice: level relative to the first, by whole-clip RMS
                    ratio = _rms(self.store[srcs[0]]) / max(_rms(wave), 1e-8)
                    voice *= np.float32(ratio * 10 ** (rng.uniform(*cfg.mix_gain_db) / 20))
                x[i] += voice
                y[i] = np.maximum(y[i], self.targets[s])
            sources.append(srcs)
        return x, y, empty, sources

    def _noise(self, x: np.ndarray, empty: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg, (b, n) = self.config, x.shape
        noisy = (rng.random(b) < cfg.p_noise) | empty
        use_bg = (rng.random(b) < cfg.p_background) & ~empty & noisy
        if self.background is None or len(self.background) == 0:
            use_bg[:] = False
        kinds = rng.choice(len(cfg.noise_kinds), size=b)
        snr = np.where(noisy, rng.uniform(*cfg.snr_db, size=b), rng.uniform(*cfg.floor_snr_db, size=b))
        rows = np.arange(b) if cfg.p_noise > 0 else np.flatnonzero(noisy)
        if rows.size == 0:
            return x
        noise = self.noise_bank.draw(kinds[rows], rng)
        for j, row in enumerate(rows):
            if use_bg[row]:
                clip = fit_length(self.background[int(rng.integers(len(self.background)))], n, rng)
                level = np.sqrt(dsp.power(clip[None])[0])
                if level > 1e-6:
                    noise[j] = clip / np.float32(level)
        sig = dsp.power(x[rows])
        voiced = sig > 1e-10
        ref = np.median(sig[voiced]) if voiced.any() else _REF_RMS**2
        sig = np.where(voiced, sig, ref)
        scale = dsp.noise_scale(sig, 1.0, snr[rows]).astype(np.float32)
        x[rows] += noise * scale[:, None]
        return x

    def _batch(self, primary: np.ndarray, rng: np.random.Generator):
        cfg, sr = self.config, self.store.sr
        x, y, empty, sources = self._voices(primary, rng)
        b = x.shape[0]
        reverb = np.flatnonzero((rng.random(b) < cfg.p_reverb) & ~empty)
        if reverb.size:
            irs = [
                dsp.room_impulse(rng.uniform(*cfg.rt60_s), rng.uniform(*cfg.drr_db), sr, rng) for _ in reverb
            ]
            x[reverb] = dsp.convolve_rows(x[reverb], irs)
        x = self._noise(x, empty, rng)
        cut = np.where(rng.random(b) < cfg.p_lowpass, rng.choice(cfg.lowpass_hz, size=b), np.nan)
        x = dsp.lowpass(x, cut, sr)
        level = rng.uniform(*cfg.level_db, size=b)
        rows = np.flatnonzero(rng.random(b) < cfg.p_gain)
        x[rows] = dsp.set_level(x[rows], level[rows])
        x = dsp.limit_peak(x)
        compression = rng.uniform(*cfg.codec_compression, size=b)
        for row in np.flatnonzero(rng.random(b) < cfg.p_codec):
            x[row] = dsp.vorbis(x[row][None], sr, float(compression[row]))[0]
        return x, y, sources


def _rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0
