"""Fit the test-like generator to the competition's unlabeled test audio (no labels used).

Levels are quantile-matched: the fitted generator draws each clip's level from the real clips'
level distribution. The other parameters (SNR range, noise colour, share of real backgrounds, tilt,
reverberation, band limits, coding, number of voices) are chosen by a seeded coordinate search over
small grids that minimises the cross-validated domain AUC between ~150 rendered clips and the real
clips. Every candidate renders the same recipes' random streams (common random numbers), so the
search compares settings, not noise. Backgrounds are the quietest stationary second of real clips
(test clips and the test-like hash half of `unlabeled_data/`), kept as spectral envelopes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ensemble.audio.generator import GeneratorParams
from ensemble.audio.stats import ANALYSIS_SR, STAT_NAMES, clip_stats, quiet_window
from ensemble.errors import DataError

MIN_REAL = 50
MAX_REAL = 400
FIT_CLIPS = 80
STATIONARY_DB = 3.0  # frame-dB spread below which a quiet second is noise, not a speech pause
LEVEL_QUANTILES = 21
GRID: dict[str, list] = {
    "snr_db": [(-5.0, 20.0), (0.0, 25.0), (5.0, 30.0), (-5.0, 10.0), (10.0, 35.0)],
    "p_background": [0.0, 0.5, 1.0],
    "noise_alpha": [(0.25, 1.75), (0.25, 0.75), (1.25, 1.75), (1.25, 2.75)],
    "tilt_db_per_oct": [(0.0, 0.0), (-4.0, 0.0), (-8.0, -2.0), (0.0, 4.0)],
    "voice_probs": [(0.15, 0.5, 0.35), (0.3, 0.45, 0.25), (0.05, 0.45, 0.5)],
    "p_reverb": [0.0, 0.3, 0.7],
    "p_lowpass": [0.0, 0.4, 0.8],
    "p_codec": [0.0, 0.4, 1.0],
}


@dataclass
class RealAudio:
    """Statistics of real unlabeled clips and the background envelopes found in them."""

    stats: np.ndarray  # (clips, len(STAT_NAMES))
    band_limit_hz: float  # half the median sample rate of the real files
    backgrounds: list[dict]  # {"source": file name, "envelope": dB at nuisance.ENVELOPE_HZ}
    sources: list[str]


@dataclass
class FitResult:
    """The fitted parameters, the search's trajectory and its cost."""

    params: GeneratorParams
    auc_start: float
    auc_fitted: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"params": self.params.to_dict(), "auc_start": self.auc_start, "auc_fitted": self.auc_fitted,
                "history": self.history, "seconds": round(self.seconds, 2)}


def analyse_real(paths: Sequence[Path], background_ok: Sequence[bool], seed: int = 0,
                 max_clips: int = MAX_REAL) -> RealAudio:
    """Load up to `max_clips` real clips (a seeded sample) at ANALYSIS_SR: statistics and backgrounds.

    `background_ok[i]` says whether clip i may serve as a background (not a training background).
    """
    from ensemble.audio.load import load_audio
    from ensemble.audio.nuisance import spectrum_envelope

    if len(paths) != len(background_ok):
        raise DataError(f"{len(paths)} real clips but {len(background_ok)} background flags")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(paths))[:max_clips])
    stats, backgrounds = [], []
    for i in pick:
        wave = load_audio(paths[i], ANALYSIS_SR)
        stats.append(clip_stats(wave))
        start, spread = quiet_window(wave)
        if background_ok[i] and spread < STATIONARY_DB and wave.size >= start + ANALYSIS_SR // 2:
            segment = wave[start : start + ANALYSIS_SR]
            if np.sqrt(np.mean(segment.astype(np.float64) ** 2)) > 1e-6:
                backgrounds.append({"source": Path(paths[i]).name, "envelope": spectrum_envelope(segment, ANALYSIS_SR)})
    matrix = np.stack(stats) if stats else np.zeros((0, len(STAT_NAMES)))
    rates = [audio_rate(paths[i]) for i in pick]
    return RealAudio(stats=matrix, band_limit_hz=float(np.median(rates)) / 2 if rates else 0.0,
                     backgrounds=backgrounds, sources=[Path(paths[i]).name for i in pick])


def audio_rate(path: Path) -> int:
    """A file's sample rate from its header."""
    import soundfile as sf

    try:
        return int(sf.info(str(path)).samplerate)
    except Exception as err:
        raise DataError(f"{path}: cannot read the audio header ({err})") from None


def level_quantiles(stats: np.ndarray, k: int = LEVEL_QUANTILES) -> tuple[float, ...]:
    """k quantiles of the real clips' RMS levels (dB): the inverse CDF the generator draws from."""
    levels = stats[:, STAT_NAMES.index("level_db")]
    return tuple(round(float(v), 3) for v in np.quantile(levels, np.linspace(0, 1, k)))


Render = Callable[[GeneratorParams, list[dict]], np.ndarray]


def fit_generator(render_stats: Render, real: RealAudio, seed: int = 0, passes: int = 1,
                  start: GeneratorParams | None = None,
                  progress: Callable[[int, int], None] | None = None) -> FitResult:
    """Coordinate search over GRID minimising the domain AUC of rendered vs real statistics.

    `render_stats(params, backgrounds)` renders the fit's clips (same recipe seeds every time) and
    returns their statistics. Ties keep the current value, so the result is stable and seeded.
    """
    from ensemble.domain import domain_auc

    started = time.perf_counter()
    params = (start or GeneratorParams()).with_(level_quantiles=level_quantiles(real.stats),
                                                band_limit_hz=real.band_limit_hz)
    grid = {k: v for k, v in GRID.items() if k != "p_background" or real.backgrounds}
    total, done = passes * sum(len(v) for v in grid.values()), 0
    cache: dict[str, float] = {}

    def score(p: GeneratorParams) -> float:
        key = repr(p)
        if key not in cache:
            cache[key] = round(domain_auc(render_stats(p, real.backgrounds), real.stats, seed), 4)
        return cache[key]

    best = auc_start = score(params)
    history = [{"step": "start (levels quantile-matched, band limit of the files)", "auc": auc_start}]
    for _ in range(passes):
        for name, values in grid.items():
            for value in values:
                done += 1
                candidate = params.with_(**{name: value})
                auc = score(candidate)
                if auc < best:
                    params, best = candidate, auc
                    history.append({"step": f"{name}={value}", "auc": auc})
                if progress is not None:
                    progress(done, total)
    return FitResult(params=params, auc_start=auc_start, auc_fitted=best, history=history,
                     seconds=time.perf_counter() - started)


def recipe_renderer(ids: Sequence[str], targets: np.ndarray, folds: np.ndarray, labels: list[str],
                    durations: Sequence[float], load: Callable[[str], np.ndarray], n_clips: int = FIT_CLIPS,
                    seed: int = 0) -> Render:
    """A `render_stats` for `fit_generator`: about `n_clips` recipes (same seeds for every candidate),
    rendered at ANALYSIS_SR with `load(train_id)`, reduced to their statistics."""
    from ensemble.audio.stats import stats_matrix
    from ensemble.audio.testlike import build_testlike_recipes, render_testlike

    per_fold = max(1, -(-int(n_clips) // len(np.unique(folds))))

    def render_stats(params: GeneratorParams, backgrounds: list[dict]) -> np.ndarray:
        frame = build_testlike_recipes(ids, targets, folds, labels, durations, per_fold, seed,
                                       params=params, backgrounds=backgrounds)
        return stats_matrix(render_testlike(r, load, ANALYSIS_SR) for r in frame["recipe"])

    return render_stats
