"""Fit the test-like generator to the competition's unlabeled test audio (no labels used).

Real clips are analysed once (`analyse_real`): per-clip statistics, which clips hold no voice and the
longest voice-free stretch of each (Silero VAD, `ensemble.audio.vad`) — those stretches become
backgrounds, rendered from the real audio itself. Levels are quantile-matched (voiced and voice-free
clips apart). `ratio_generator` (what `ensure_testlike` uses) fits the rest by density-ratio
reweighting: a pool of clips is rendered from broad distributions, a domain classifier between pool
and real statistics weighs each pool clip by how real it looks, and the generator then draws the share
of the clip a voice fills, SNR, low-pass cut-off, tilt and noise colour from the weighted quantiles of
the pool's draws, and the reverberation, low-pass, coding and background shares from the weighted
shares; a few rounds repeat this from the previous round's fit. The last round's pool, with its
weights, also becomes the generator's joint profiles: a test-like clip takes all its nuisances from
one weighted pool clip, so their dependencies (the SNR that goes with a fill, a level, a background)
survive, which the per-nuisance distributions lose (held-out domain AUC on voices-dev 0.65 → 0.58, mean
of three splits). The voice-count shares stay fixed (the audio statistics cannot tell more voices from
more speech, and moving them shifts the set's label mix). `fit_generator`, an older seeded coordinate search over small grids, is kept for comparison.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ensemble.audio.generator import PROFILE_KEYS, GeneratorParams
from ensemble.audio.stats import ANALYSIS_SR, STAT_NAMES, clip_stats
from ensemble.errors import DataError
from ensemble.progress import Progress, emit

if TYPE_CHECKING:
    from ensemble.audio.testlike_render import SourceRows

MIN_REAL = 50
MAX_REAL = 400
FIT_CLIPS = 80
MIN_BACKGROUND_S = 1.0  # shortest voice-free stretch kept as a background
SILENT_SHARE = 0.9  # a real clip at least this voice-free (per the VAD) counts as holding no voice
MIN_SILENT = 5  # voice-free real clips needed to fit their own level distribution
MAX_BACKGROUND_S = 5.0
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
    silent: np.ndarray  # (clips,) bool: the voice-activity detector hears no voice in the clip
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


def fit_sample(n_real: int, seed: int = 0, max_clips: int | None = None) -> np.ndarray:
    """Indices of the real clips the fit analyses, a seeded sample of at most `max_clips` (default
    MAX_REAL); the others are held out from the fit, for a domain check it cannot flatter."""
    return np.sort(np.random.default_rng(seed).permutation(n_real)[:MAX_REAL if max_clips is None else max_clips])


def analyse_real(paths: Sequence[Path], background_ok: Sequence[bool], seed: int = 0,
                 max_clips: int | None = None, root: Path | None = None) -> RealAudio:
    """Load up to `max_clips` real clips (a seeded sample) at ANALYSIS_SR: statistics and backgrounds.

    `background_ok[i]` says whether clip i may serve as a background (not a training background). A
    background is the clip's longest stretch that the voice-activity detector finds voice-free (with a
    margin, `ensemble.audio.vad`) when it lasts at least `MIN_BACKGROUND_S`; it is named by its path
    relative to `root` (the competition folder) and rendered from the audio itself.
    """
    from ensemble.audio import vad
    from ensemble.audio.load import load_audio

    if len(paths) != len(background_ok):
        raise DataError(f"{len(paths)} real clips but {len(background_ok)} background flags")
    pick = fit_sample(len(paths), seed, max_clips)
    waves = [load_audio(paths[i], ANALYSIS_SR) for i in pick]
    probs = vad.speech_probs([_at_vad_rate(w) for w in waves])
    silent = np.array([vad.voice_free(p).mean() >= SILENT_SHARE for p in probs], dtype=bool)
    backgrounds = []
    for k, i in enumerate(pick):
        if not background_ok[i]:
            continue
        start, length = vad.longest_run(vad.voice_free(probs[k]))
        seconds = min(length * vad.CHUNK_S, MAX_BACKGROUND_S)
        if seconds < MIN_BACKGROUND_S:
            continue
        lo = int(start * vad.CHUNK_S * ANALYSIS_SR)
        segment = waves[k][lo : lo + int(seconds * ANALYSIS_SR)]
        if segment.size and np.sqrt(np.mean(segment.astype(np.float64) ** 2)) > 1e-6:
            source = Path(paths[i]).relative_to(root).as_posix() if root is not None else Path(paths[i]).name
            backgrounds.append({"source": source, "start_s": round(start * vad.CHUNK_S, 4),
                                "seconds": round(seconds, 4)})
    matrix = np.stack([clip_stats(w) for w in waves]) if waves else np.zeros((0, len(STAT_NAMES)))
    rates = [audio_rate(paths[i]) for i in pick]
    return RealAudio(stats=matrix, silent=silent, band_limit_hz=float(np.median(rates)) / 2 if rates else 0.0,
                     backgrounds=backgrounds, sources=[Path(paths[i]).name for i in pick])


def _at_vad_rate(wave: np.ndarray) -> np.ndarray:
    from ensemble.audio import vad
    from ensemble.audio.load import resample

    return wave if ANALYSIS_SR == vad.SR else resample(wave, ANALYSIS_SR, vad.SR)


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


def matched_levels(real: RealAudio) -> dict:
    """Level quantiles of the voiced real clips, and of the voice-free ones (per the VAD) for clips
    without a voice when there are at least MIN_SILENT of them: noise alone is quieter than speech."""
    silent = real.silent
    if silent.sum() < MIN_SILENT or (~silent).sum() < MIN_SILENT:
        return {"level_quantiles": level_quantiles(real.stats), "silent_level_quantiles": ()}
    return {"level_quantiles": level_quantiles(real.stats[~silent]),
            "silent_level_quantiles": level_quantiles(real.stats[silent])}


Render = Callable[[GeneratorParams, list[dict]], np.ndarray]


def fit_generator(render_stats: Render, real: RealAudio, seed: int = 0, passes: int = 1,
                  start: GeneratorParams | None = None,
                  progress: Progress | None = None) -> FitResult:
    """Coordinate search over GRID minimising the domain AUC of rendered vs real statistics.

    `render_stats(params, backgrounds)` renders the fit's clips (same recipe seeds every time) and
    returns their statistics. Ties keep the current value, so the result is stable and seeded.
    """
    from ensemble.audio.domain import domain_auc

    started = time.perf_counter()
    params = (start or GeneratorParams()).with_(**matched_levels(real), band_limit_hz=real.band_limit_hz)
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
                emit(progress, "fit", done=done, total=total)
    return FitResult(params=params, auc_start=auc_start, auc_fitted=best, history=history,
                     seconds=time.perf_counter() - started)


def recipe_renderer(source: SourceRows, load: Callable[[str], np.ndarray], n_clips: int = FIT_CLIPS,
                    seed: int = 0, load_background: Callable[[str], np.ndarray] | None = None) -> Render:
    """A `render_stats` for `fit_generator`: about `n_clips` recipes (same seeds for every candidate),
    rendered at ANALYSIS_SR with `load(train_id)`, reduced to their statistics."""
    from ensemble.audio.testlike_render import build_testlike_recipes, rendered_stats

    per_fold = max(1, -(-int(n_clips) // len(np.unique(source.folds))))

    def render_stats(params: GeneratorParams, backgrounds: list[dict]) -> np.ndarray:
        frame = build_testlike_recipes(source, per_fold, seed, params=params, backgrounds=backgrounds)
        return rendered_stats(frame["recipe"], load, load_background)

    return render_stats


MATCH_QUANTILES = 21  # quantiles the ratio fit keeps per matched nuisance
RATIO_ROUNDS = 3
RATIO_POOL = 1200
POOL_PER_REAL = 3  # pool clips per real clip: the weights cannot be sharper than the real sample allows


def pool_size(n_real: int) -> int:
    """Clips in the fit's pool: POOL_PER_REAL per real clip analysed, at most RATIO_POOL (cost)."""
    return int(min(RATIO_POOL, POOL_PER_REAL * max(int(n_real), 1)))
RATIO_PRIOR = dict(snr_db=(-10.0, 40.0), p_lowpass=0.5, lowpass_hz=(2500.0, 7800.0), tilt_db_per_oct=(-8.0, 4.0),
                   p_reverb=0.5, p_codec=0.4, p_background=0.5, voice_probs=(1 / 3, 1 / 3, 1 / 3),
                   voice_fill=(0.0, 1.0), noise_alpha=(0.25, 2.75))

PoolRender = Callable[[GeneratorParams, list[dict]], tuple[list[dict], np.ndarray]]


def pool_renderer(source: SourceRows, load: Callable[[str], np.ndarray], n_clips: int = RATIO_POOL,
                  seed: int = 0, load_background: Callable[[str], np.ndarray] | None = None) -> PoolRender:
    """Like `recipe_renderer`, but also returns each clip's recipe (to read its drawn nuisances)."""
    import json

    from ensemble.audio.testlike_render import build_testlike_recipes, rendered_stats

    per_fold = max(1, -(-int(n_clips) // len(np.unique(source.folds))))

    def render(params: GeneratorParams, backgrounds: list[dict]):
        frame = build_testlike_recipes(source, per_fold, seed, params=params, backgrounds=backgrounds)
        recipes = [json.loads(r) for r in frame["recipe"]]
        return recipes, rendered_stats(recipes, load, load_background)

    return render



def _weighted_quantiles(values, weights, k: int = MATCH_QUANTILES) -> tuple[float, ...]:
    values, weights = np.asarray(values, np.float64), np.asarray(weights, np.float64)
    order = np.argsort(values)
    values, weights = values[order], weights[order]
    cdf = (np.cumsum(weights) - 0.5 * weights) / weights.sum()
    return tuple(round(float(v), 3) for v in np.interp(np.linspace(0, 1, k), cdf, values))


def _share(mask, weights, among=None) -> float:
    mask, weights = np.asarray(mask, bool), np.asarray(weights, np.float64)
    among = np.ones_like(mask) if among is None else np.asarray(among, bool)
    total = weights[among].sum()
    return round(float(weights[mask & among].sum() / total), 3) if total > 0 else 0.0


def ratio_generator(render_pool: PoolRender, real: RealAudio, start: GeneratorParams | None = None,
                    seed: int = 0, rounds: int = RATIO_ROUNDS, fit_voices: bool = False) -> GeneratorParams:
    """Fit the nuisance distributions by density-ratio reweighting of a wide-prior pool.

    A pool of clips is rendered from broad distributions (`RATIO_PRIOR`); a domain classifier between
    the pool's and the real clips' statistics gives each pool clip the weight p/(1−p) (how real it
    looks). The fitted generator draws voice fill, SNR, low-pass cut-off, tilt and noise colour from the
    weighted quantiles of the pool's draws, and takes the reverberation, low-pass, coding and background
    shares (and with `fit_voices` the voice count) from the weighted shares — the prior reweighted
    towards the real clips (importance resampling). The last round's weighted pool is kept whole as
    `profiles`, which the recipes then draw from jointly.
    """

    params = (start or GeneratorParams()).with_(**matched_levels(real), band_limit_hz=real.band_limit_hz)
    prior = {k: v for k, v in RATIO_PRIOR.items() if (k != "p_background" or real.backgrounds)
             and (k != "voice_probs" or fit_voices)}
    params = params.with_(**prior)
    for r in range(rounds):  # later rounds reweight a pool drawn from the previous round's fit
        params = _reweight(render_pool, real, params, seed, fit_voices, profiles=r == rounds - 1)
    return params


def _reweight(render_pool: PoolRender, real: RealAudio, params: GeneratorParams, seed: int,
              fit_voices: bool, profiles: bool = False) -> GeneratorParams:
    from ensemble.audio.testlike_render import n_tracks
    from ensemble.audio.domain import density_ratio_weights

    recipes, pool = render_pool(params, real.backgrounds)
    w = density_ratio_weights(pool, real.stats, pool, seed=seed)
    voices = np.array([n_tracks(r) for r in recipes])
    lowpass = np.array([bool(r["lowpass_hz"]) for r in recipes])
    out: dict = dict(snr_quantiles=_weighted_quantiles([r["noise"]["snr_db"] for r in recipes], w),
                     tilt_quantiles=_weighted_quantiles([r["tilt_db_per_oct"] for r in recipes], w),
                     p_lowpass=_share(lowpass, w),
                     p_codec=_share([bool(r["codec"]) for r in recipes], w, among=~lowpass),
                     p_reverb=_share([r["reverb"] is not None for r in recipes], w, among=voices > 0))
    fills = [(f, wi) for r, wi in zip(recipes, w) for f in r.get("fill", [])]
    if len(fills) >= 2:
        out["fill_quantiles"] = _weighted_quantiles([f for f, _ in fills], [wi for _, wi in fills])
    tilt_noise = np.array([r["noise"]["kind"] == "tilt" for r in recipes])
    if tilt_noise.sum() >= 2:
        alphas = [r["noise"]["alpha"] for r in recipes if r["noise"]["kind"] == "tilt"]
        out["alpha_quantiles"] = _weighted_quantiles(alphas, w[tilt_noise])
    if lowpass.sum() >= 2:
        out["lowpass_quantiles"] = _weighted_quantiles([r["lowpass_hz"] for r in recipes if r["lowpass_hz"]], w[lowpass])
    if real.backgrounds:
        out["p_background"] = _share([r["noise"]["kind"] in ("background", "real") for r in recipes], w)
    if fit_voices:
        probs = np.array([_share(voices == k, w) for k in range(3)])
        out["voice_probs"] = tuple(float(v) for v in probs / probs.sum())
    if profiles:
        out["profiles"] = tuple(_profile(r, k, wi) for r, k, wi in zip(recipes, voices, w))
    return params.with_(**out)


def _profile(recipe: dict, voices: int, weight: float) -> dict:
    """A pool clip's nuisances and voice fills with its density-ratio weight (seeds are redrawn per clip)."""
    return {"voices": int(voices), "weight": round(float(weight), 5), "fill": list(recipe.get("fill", [])),
            "nuisance": {k: recipe[k] for k in PROFILE_KEYS}}
