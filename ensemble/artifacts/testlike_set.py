"""The shared test-like set (`models/testlike.parquet`): seeded mixtures of each fold's held-out clips.

Train clips are clean and single-voice, the test is not. Each fold's held-out rows are mixed into
5-second clips with 0–2 voices, noise, gain and band limits; a run predicts a fold's clips with the
fold model that never saw their sources. Recipes are stored, not audio: rendering is deterministic
at any sample rate, so every run (whatever its model's rate) sees the same clips.

When the competition ships at least `MIN_REAL` real unlabeled clips (test clips and `unlabeled_data/`)
and the fit is not switched off, the generator is fitted to them (`ensemble.audio.testlike_fit`) and every
recipe row gets a density-ratio `weight` (mean 1; `ensemble.audio.domain.density_ratio_weights`) for
covariate-shift-corrected fitting and scoring. `models/testlike.json` records the parameters, why they
were (not) fitted, the fit's cost and the domain check (`load_domain_check`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd

from ensemble.artifacts.competition import Competition
from ensemble.errors import ContractError, DataError
from ensemble.artifacts.io import frame_sha256, read_json, read_parquet, write_json, write_parquet
from ensemble.artifacts.workspace import Workspace
from ensemble.artifacts.set_records import TestlikeMeta
from ensemble.progress import emit

if TYPE_CHECKING:
    from ensemble.audio.cache import DecodeCache
    from ensemble.audio.testlike_render import SourceRows

TESTLIKE_FILE = "testlike.parquet"
META_FILE = "testlike.json"
CHECK_CLIPS = 300


def default_per_fold(n_train: int, n_folds: int) -> int:
    """About half a fold's size, between 50 and 2,000 clips per fold."""
    return int(min(2000, max(50, n_train // n_folds // 2)))


def real_clips(comp: Competition) -> tuple[list[Path], list[bool]]:
    """The competition's real unlabeled clips (test, then `unlabeled_data/`) and, per clip, whether it
    may give a test-like background (test clips, and the unlabeled hash half training does not use)."""
    from ensemble.audio.nuisance import stable_half

    test = [comp.audio_path(p) for p in comp.test["path"]]
    unlabeled = comp.unlabeled_paths()
    return test + unlabeled, [True] * len(test) + [stable_half(p) == 1 for p in unlabeled]


def train_loader(comp: Competition, folds: pd.DataFrame, sr: int) -> Callable[[str], np.ndarray]:
    """`load(train_id)`: a train clip's wave at `sr` (decoded once), as test-like rendering needs it."""
    from ensemble.audio.load import WaveStore

    paths = comp.train.set_index(comp.train["id"].astype(str))["path"]
    store = WaveStore([comp.audio_path(paths[i]) for i in folds["id"].astype(str)], sr)
    row = {str(i): k for k, i in enumerate(folds["id"])}
    return lambda rid: store[row[rid]]


def background_loader(comp: Competition, sr: int, decoded: DecodeCache | None = None) -> Callable[[str], np.ndarray]:
    """`load_background(source)`: a real clip of the competition folder (path relative to it) at `sr`,
    decoded once (read from `decoded` when given); what test-like recipes with real backgrounds need."""
    from functools import lru_cache

    from ensemble.audio.load import load_audio

    @lru_cache(maxsize=None)
    def load(source: str) -> np.ndarray:
        path = (comp.root / source).resolve()
        if not path.is_relative_to(comp.root.resolve()):
            raise DataError(f"test-like background {source!r} lies outside the competition folder")
        return decoded.load(path, sr) if decoded else load_audio(path, sr)

    return load


def _sources(comp: Competition, folds: pd.DataFrame) -> tuple[SourceRows, Callable[[str], np.ndarray]]:
    """The rows the shared folds hold out, and a loader of train waves at the analysis rate."""
    from ensemble.audio.load import audio_duration
    from ensemble.audio.stats import ANALYSIS_SR
    from ensemble.audio.testlike_render import SourceRows

    paths = comp.train.set_index(comp.train["id"].astype(str))["path"]
    files = [comp.audio_path(paths[i]) for i in folds["id"].astype(str)]
    source = SourceRows(ids=folds["id"].astype(str).tolist(),
                        targets=folds[comp.labels].to_numpy(dtype=np.float64), folds=folds["fold"].to_numpy(),
                        labels=comp.labels, durations=[audio_duration(f) for f in files])
    return source, train_loader(comp, folds, ANALYSIS_SR)


def ensure_testlike(ws: Workspace, comp: Competition, folds: pd.DataFrame, per_fold: int | None = None,
                    seed: int = 0, seconds: float = 5.0, fit: bool = True, progress=None) -> pd.DataFrame:
    """Load the workspace's test-like recipes, or build them once from the shared folds.

    With `fit` (the default) and at least `MIN_REAL` real unlabeled clips, the generator is fitted to
    them first (`testlike_fit.ratio_generator`: voices filling a fitted share of the clip, voice-free
    stretches of real clips as backgrounds, levels quantile-matched, the rest by density-ratio
    reweighting); otherwise the default parameters are used and the reason is recorded in
    `models/testlike.json`. On voices-dev (900 real clips) the fit takes a few minutes on 2 cores and
    the held-out domain AUC is about 0.58 (0.83 with the first generator; `bench/testlike_domain.py`).
    """
    from ensemble.audio.generator import GeneratorParams
    from ensemble.audio.stats import ANALYSIS_SR
    from ensemble.audio.testlike_render import RECIPE_VERSION, build_testlike_recipes

    clips = load_testlike(ws)
    if clips is not None:
        unknown = set(clips["fold"]) - set(folds["fold"])
        if unknown:
            raise ContractError(f"{ws.models_dir / TESTLIKE_FILE}: made for other folds (fold {sorted(unknown)[0]} is unknown)")
        return clips
    source, load = _sources(comp, folds)
    n_folds = int(folds["fold"].nunique())
    paths, background_ok = real_clips(comp)
    meta = TestlikeMeta(recipe_version=RECIPE_VERSION, seed=int(seed), n_real=len(paths), fitted=False)
    params, backgrounds, real = GeneratorParams(), [], None
    if not fit:
        meta.reason = "fit switched off"
    elif len(paths) < _min_real():
        meta.reason = f"{len(paths)} real unlabeled clips (test + unlabeled_data/); the fit needs at least {_min_real()}"
    else:
        emit(progress, "test-like set", step=f"fitting its generator to {len(paths)} real clips (test and unlabeled "
                                             "audio; once per workspace)")
        params, backgrounds, real = _fit(source, load, paths, background_ok, seed, meta, comp, progress)
    clips = build_testlike_recipes(source, per_fold=per_fold or default_per_fold(len(folds), n_folds), seed=seed,
                                   seconds=seconds, params=params, backgrounds=backgrounds)
    clips["weight"] = 1.0
    if real is not None:
        emit(progress, "test-like set", step=f"weighing {len(clips)} clips and checking them against held-out real ones")
        _weigh_and_check(clips, load, background_loader(comp, ANALYSIS_SR), real, seed, meta,
                         held_out_real(paths, seed))
        emit(progress, "test-like set", step="done", clips=len(clips), domain_auc=meta.domain_auc)
    meta.params = params.to_dict()
    write_parquet(clips, ws.models_dir / TESTLIKE_FILE)
    write_testlike_meta(ws, meta)
    return clips


def _min_real() -> int:
    from ensemble.audio.testlike_fit import MIN_REAL

    return MIN_REAL


def _fit(source: SourceRows, load, paths, background_ok, seed: int, meta: TestlikeMeta, comp: Competition, progress=None):
    from ensemble.audio.stats import ANALYSIS_SR
    from ensemble.audio.testlike_fit import RATIO_ROUNDS, analyse_real, pool_renderer, pool_size, ratio_generator

    real = analyse_real(paths, background_ok, seed=seed, root=comp.root)
    started = time.perf_counter()
    pool = pool_size(len(real.stats))
    emit(progress, "test-like set", step=f"analysed {len(real.stats)} real clips ({len(real.backgrounds)} "
                                         f"voice-free backgrounds); rendering a {pool}-clip pool to fit "
                                         f"{RATIO_ROUNDS} rounds of density-ratio reweighting")
    params = ratio_generator(pool_renderer(source, load=load, n_clips=pool, seed=seed,
                                           load_background=background_loader(comp, ANALYSIS_SR)), real, seed=seed)
    meta.fitted, meta.reason, meta.n_backgrounds = True, f"fitted to {len(real.stats)} real clips", len(real.backgrounds)
    meta.fit = {"method": f"density-ratio reweighting of a {pool}-clip pool, {RATIO_ROUNDS} rounds",
                "seconds": round(time.perf_counter() - started, 2)}
    return params, real.backgrounds, real


def held_out_real(paths: Sequence[Path], seed: int) -> list[Path]:
    """The real clips the generator's fit (seeded `seed`) left out of its sample."""
    from ensemble.audio.testlike_fit import fit_sample

    fitted = set(fit_sample(len(paths), seed).tolist())
    return [p for i, p in enumerate(paths) if i not in fitted]


def judged_real(held_out: Sequence[Path], n_clips: int, seed: int) -> list[Path]:
    """Up to `n_clips` held-out real clips (a seeded sample) to judge the set on; none when fewer than
    MIN_REAL are held out (the check then falls back to the clips the fit saw, and says so)."""
    if len(held_out) < _min_real():
        return []
    return [held_out[i] for i in np.sort(np.random.default_rng(seed).permutation(len(held_out))[:n_clips])]


def _weigh_and_check(clips: pd.DataFrame, load, load_background, real, seed: int, meta: TestlikeMeta,
                     held_out: Sequence[Path]) -> None:
    """Density-ratio weights for every recipe row and the domain check of a sample, in place / in meta.
    The check judges the set on real clips the fit never saw when enough are left (`held_out`)."""
    from ensemble.audio.load import load_audio
    from ensemble.audio.stats import ANALYSIS_SR, stats_matrix
    from ensemble.audio.testlike_render import rendered_stats
    from ensemble.audio.domain import domain_check, density_ratio_weights

    stats = rendered_stats(clips["recipe"], load, load_background)
    clips["weight"] = density_ratio_weights(stats, real.stats, stats, seed=seed)
    sample = np.random.default_rng(seed).permutation(len(stats))[:CHECK_CLIPS]
    judged = judged_real(held_out, CHECK_CLIPS, seed)
    reference = stats_matrix(load_audio(p, ANALYSIS_SR) for p in judged) if judged else real.stats
    check = replace(domain_check(stats[sample], reference, seed=seed), extra={"held_out": bool(judged)})
    meta.domain_check = check.to_dict()
    w = clips["weight"].to_numpy()
    meta.weights = {"min": float(w.min()), "max": float(w.max()), "ess": float(w.sum() ** 2 / (w**2).sum())}


def load_testlike(ws: Workspace) -> pd.DataFrame | None:
    """The workspace's test-like recipes (id, fold, label columns, recipe, weight), or None before any run made them."""
    path = ws.models_dir / TESTLIKE_FILE
    return read_parquet(path) if path.is_file() else None


def testlike_weights(clips: pd.DataFrame) -> np.ndarray:
    """Density-ratio weight per test-like row (mean 1); ones for sets made before weights existed."""
    if "weight" not in clips.columns:
        return np.ones(len(clips))
    w = clips["weight"].to_numpy(dtype=np.float64)
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise DataError(f"{TESTLIKE_FILE}: column 'weight' holds non-positive or non-finite values")
    return w


def load_testlike_meta(ws: Workspace) -> TestlikeMeta | None:
    """`models/testlike.json`: generator parameters, fit, weights summary and domain check, or None."""
    path = ws.models_dir / META_FILE
    return TestlikeMeta.from_dict(read_json(path), path) if path.is_file() else None


def write_testlike_meta(ws: Workspace, meta: TestlikeMeta) -> None:
    write_json(meta.to_dict(), ws.models_dir / META_FILE)


def load_domain_check(ws: Workspace) -> dict | None:
    """The latest domain check of the workspace's test-like set (`DomainCheck.to_dict()`), or None."""
    meta = load_testlike_meta(ws)
    return None if meta is None else meta.domain_check


def testlike_fingerprint(clips: pd.DataFrame) -> str:
    return frame_sha256(clips[["id", "fold", "recipe"]])
