"""The shared test-like validation set: seeded 5-s mixtures of each fold's held-out rows.

Clean single-voice validation near 99 % says nothing about a noisy two-voice test. Once per
dataset, `build_testlike_recipes` writes recipes (`models/testlike.parquet`): each clip mixes 0, 1
or 2 voices taken only from one fold's held-out rows — a voice is a track of one or more utterances
of the same label, with pauses, spanning a drawn share of the clip (train clips are often much
shorter than the test's 5 s) — with offsets, levels, reverberation, noise at a random SNR
(synthetic, or a voice-free stretch of a real clip), a spectral tilt, a band limit or lossy coding,
and a level, drawn from `GeneratorParams` (defaults, or fitted to the unlabeled test audio by
`ensemble.audio.testlike_fit`) with nuisances kept apart from the training augmentation's
(`ensemble.audio.nuisance`). Every run renders the same
clips at its own sample rate with `render_testlike` and predicts them with the fold model that never
saw their sources. Version-1 recipes (one simulator shared with training) still render.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from ensemble.audio import dsp
from ensemble.audio.generator import VERSION as RECIPE_VERSION
from ensemble.audio.generator import (SPEECH_DB, GeneratorParams, clip_rng, draw_nuisances, from_profile, n_voices,
                                      profile_tables, render_v2, voice_fill)
from ensemble.errors import ConfigError, DataError
from ensemble.progress import Progress, emit

SUPPORTED_VERSIONS = (1, RECIPE_VERSION)
VOICE_PROBS = GeneratorParams().voice_probs  # 0, 1, 2 voices (voices-dev test: ~16 % of clips hold no voice)
SECOND_VOICE_DB = GeneratorParams().second_voice_db


@dataclass(frozen=True)
class SourceRows:
    """The labelled train rows test-like clips are mixed from, and the fold holding each one out.

    `targets` is `(len(ids), len(labels))` multi-hot, `folds` the fold holding each id out, `durations`
    each id's length in seconds (to place voices)."""

    ids: Sequence[str]
    targets: np.ndarray
    folds: np.ndarray
    labels: list[str]
    durations: Sequence[float]


def _check_inputs(source: SourceRows, per_fold, seed, seconds, voice_probs):
    ids, labels = [str(i) for i in source.ids], source.labels
    targets = np.asarray(source.targets)
    folds = np.asarray(source.folds)
    durations = np.asarray(source.durations, dtype=np.float64)
    n = len(ids)
    if targets.ndim != 2 or targets.shape != (n, len(labels)):
        raise DataError(f"targets shape {targets.shape} does not match {n} ids × {len(labels)} labels {labels}")
    for name, arr in (("folds", folds), ("durations", durations)):
        if arr.shape != (n,):
            raise DataError(f"{name} has shape {arr.shape}; accepted: one value per id ({n},)")
    if len(set(ids)) != n:
        raise DataError("ids hold duplicates; accepted: unique train ids")
    if not np.issubdtype(folds.dtype, np.integer) or (folds < 0).any():
        raise DataError("folds must be non-negative integers")
    if not np.isfinite(durations).all() or (durations < 0).any():
        raise DataError("durations must be finite seconds ≥ 0")
    if not isinstance(per_fold, (int, np.integer)) or per_fold <= 0:
        raise ConfigError(f"per_fold={per_fold!r} is invalid; accepted: a positive integer")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed={seed!r} is invalid; accepted: a non-negative integer")
    if not (seconds > 0):
        raise ConfigError(f"seconds={seconds!r} is invalid; accepted: > 0")
    checked = SourceRows(ids, targets.astype(np.float32), folds.astype(np.int64), labels, durations)
    return checked, _check_probs(voice_probs)


def _check_probs(voice_probs) -> np.ndarray:
    probs = np.asarray(voice_probs, dtype=np.float64)
    if probs.shape != (3,) or (probs < 0).any() or not np.isclose(probs.sum(), 1.0):
        raise ConfigError(f"voice_probs={voice_probs!r} is invalid; accepted: 3 probabilities summing to 1")
    return probs


def _pick_rows(rows: np.ndarray, patterns: np.ndarray, k: int, rng: np.random.Generator) -> list[int]:
    """k distinct rows, each with a label pattern drawn uniformly, so all label mixes appear."""
    chosen: list[int] = []
    kinds = np.unique(patterns)
    for _ in range(k):
        pattern = kinds[rng.integers(kinds.size)]
        pool = rows[(patterns == pattern) & ~np.isin(rows, chosen)]
        if pool.size == 0:
            pool = rows[~np.isin(rows, chosen)]
        chosen.append(int(pool[rng.integers(pool.size)]))
    return chosen


@dataclass(frozen=True)
class _FoldRows:
    """One fold's held-out `rows`, with each source row's id, length (s) and label pattern ("01", …)."""

    rows: np.ndarray
    ids: list[str]
    durations: np.ndarray
    patterns: np.ndarray


def _track(first: int, pool: _FoldRows, used: set[int], span_s: float, gap_s: tuple[float, float],
           rng: np.random.Generator) -> list[tuple[int, float]]:
    """One voice: `first`, then more unused rows of the same label pattern (so the voice's label holds)
    until the utterances and pauses span `span_s`. Returns (row, start within the track in s)."""
    rows, patterns, durations = pool.rows, pool.patterns, pool.durations
    track, end = [(first, 0.0)], float(durations[first])
    used.add(first)
    while end < span_s:
        pool_rows = rows[(patterns[rows] == patterns[first]) & ~np.isin(rows, list(used))]
        if pool_rows.size == 0:
            break
        row = int(pool_rows[rng.integers(pool_rows.size)])
        start = end + float(rng.uniform(*gap_s))
        track.append((row, start))
        used.add(row)
        end = start + float(durations[row])
    return track


def _recipe(pool: _FoldRows, chosen: list[int], fills: Sequence[float], nuis: dict, seconds: float,
            params: GeneratorParams, rng: np.random.Generator) -> dict[str, Any]:
    """Voices as tracks of same-label utterances filling a drawn share of the clip, placed at random.

    A track longer than the clip shows a random window of it; utterances entirely outside are dropped.
    A track of one utterance keeps at least `min_visible_s` of it inside (it may hang over an edge).
    """
    ids, durations = pool.ids, pool.durations
    voices, spans = [], []
    used = set(chosen)
    for k, row in enumerate(chosen):
        level = SPEECH_DB + (rng.uniform(*params.second_voice_db) if k else 0.0)
        span = float(fills[k]) * seconds
        track = _track(row, pool, used, span, params.gap_s, rng)
        length = track[-1][1] + float(durations[track[-1][0]])
        if len(track) == 1:
            visible = min(length, params.min_visible_s, seconds)
            start = rng.uniform(-(length - visible), seconds - visible)
        else:
            start = rng.uniform(min(0.0, seconds - length), max(0.0, seconds - length))
        kept = [(r, start + t) for r, t in track if start + t < seconds and start + t + durations[r] > 0]
        spans.append(round(span / seconds, 4))
        for r, offset in kept or [(track[0][0], start)]:
            voices.append({"id": str(ids[r]), "offset_s": round(offset, 4), "level_db": round(level, 3), "track": k})
    return {"version": RECIPE_VERSION, "seconds": float(seconds), "voices": voices, "fill": spans, **nuis}


def n_tracks(recipe: dict) -> int:
    """The number of voices (tracks) in a recipe; recipes without tracks hold one utterance per voice."""
    return len({v.get("track", i) for i, v in enumerate(recipe["voices"])})


def build_testlike_recipes(
    source: SourceRows,
    per_fold: int,
    seed: int,
    seconds: float = 5.0,
    voice_probs: Sequence[float] | None = None,
    params: GeneratorParams | None = None,
    backgrounds: Sequence[dict] = (),
) -> pd.DataFrame:
    """Recipes for `per_fold` test-like clips per fold, each made only from that fold's held-out rows.

    Columns: `id` (TL_00000, …), `fold`, the label columns (max over the sources), `n_voices`,
    `sources` (JSON list of train ids) and `recipe` (JSON: everything `render_testlike` needs, in
    seconds and dB, with per-clip seeds).
    `params` are the generator's distributions (default `GeneratorParams()`; `voice_probs` overrides
    theirs); `backgrounds` are real background envelopes (`{"source", "envelope"}`) for noise. With
    fitted `params.profiles`, a clip's nuisances and voice fills come jointly from one profile with its
    number of voices (the number itself still follows `voice_probs`, so the label mix stays put).
    """
    params = params or GeneratorParams()
    if voice_probs is not None:
        _check_probs(voice_probs)
        params = params.with_(voice_probs=tuple(voice_probs))
    source, probs = _check_inputs(source, per_fold, seed, seconds, params.voice_probs)
    ids, targets, folds, labels = source.ids, source.targets, source.folds, source.labels
    patterns = np.array(["".join(str(int(v)) for v in row) for row in targets > 0.5])
    tables = profile_tables(params)
    row_of = {rid: k for k, rid in enumerate(ids)}
    records = []
    for fold in np.unique(folds):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(fold)]))
        rows = np.flatnonzero(folds == fold)
        pool = _FoldRows(rows, ids, source.durations, patterns)
        for i in range(per_fold):
            stream = clip_rng(seed, fold, i)
            k = min(n_voices(params, stream.random()), rows.size)
            chosen = _pick_rows(rows, patterns[rows], k, rng)
            nuis = draw_nuisances(params, stream, bool(chosen), backgrounds)
            fills = [voice_fill(params, u) for u in stream.random(2)]
            if tables:
                nuis, fills = from_profile(tables, len(chosen), stream) or (nuis, fills)
            recipe = _recipe(pool, chosen, fills, nuis, seconds, params, rng)
            sources = [v["id"] for v in recipe["voices"]]
            y = targets[[row_of[s] for s in sources]].max(axis=0) if sources else np.zeros(len(labels), np.float32)
            records.append(
                {
                    "fold": int(fold),
                    **{label: int(v > 0.5) for label, v in zip(labels, y)},
                    "n_voices": len(chosen),
                    "sources": json.dumps(sources),
                    "recipe": json.dumps(recipe, sort_keys=True),
                }
            )
    frame = pd.DataFrame.from_records(records, columns=["fold", *labels, "n_voices", "sources", "recipe"])
    frame.insert(0, "id", [f"TL_{i:05d}" for i in range(len(frame))])
    return frame


def _parse(recipe: dict | str) -> dict[str, Any]:
    if isinstance(recipe, str):
        try:
            recipe = json.loads(recipe)
        except json.JSONDecodeError as err:
            raise DataError(f"test-like recipe is not valid JSON ({err.msg})") from None
    if not isinstance(recipe, dict) or recipe.get("version") not in SUPPORTED_VERSIONS:
        version = recipe.get("version") if isinstance(recipe, dict) else None
        raise DataError(f"test-like recipe version {version!r} is not supported; accepted: "
                        f"{', '.join(map(str, SUPPORTED_VERSIONS))} (rebuild models/testlike.parquet with this ens)")
    return recipe


def render_testlike(recipe: dict | str, load: Callable[[str], np.ndarray], sr: int,
                    load_background: Callable[[str], np.ndarray] | None = None) -> np.ndarray:
    """Render one recipe to float32 `(round(seconds·sr),)`; `load(train_id)` gives a wave at `sr`,
    `load_background(source)` a real clip of the competition folder (for real backgrounds).

    Deterministic: the same recipe, waves and rate give the same samples.
    """
    rec = _parse(recipe)
    if rec["version"] == RECIPE_VERSION:
        return render_v2(rec, load, sr, load_background)
    n = int(round(rec["seconds"] * sr))
    x = np.zeros((1, n), dtype=np.float32)
    for voice in rec["voices"]:
        wave = np.asarray(load(voice["id"]), dtype=np.float32).ravel()
        level = np.sqrt(np.mean(np.square(wave, dtype=np.float64))) if wave.size else 0.0
        if level > 1e-8:
            wave = wave * np.float32(10 ** (voice["level_db"] / 20) / level)
        x[0] += dsp.place(wave, n, int(round(voice["offset_s"] * sr)))
    if rec["reverb"]:
        rv = rec["reverb"]
        ir = dsp.room_impulse(rv["rt60_s"], rv["drr_db"], sr, np.random.default_rng(rv["seed"]))
        x = dsp.convolve_rows(x, [ir])
    nz = rec["noise"]
    noise = dsp.colored_noise([nz["kind"]], n, np.random.default_rng(nz["seed"]))
    signal = dsp.power(x)
    signal = np.where(signal > 1e-10, signal, 10 ** (SPEECH_DB / 10))  # version 1: the training blocks
    x = x + noise * dsp.noise_scale(signal, 1.0, np.array([nz["snr_db"]])).astype(np.float32)[:, None]
    cutoff = rec["lowpass_hz"] if rec["lowpass_hz"] is not None else np.nan
    x = dsp.lowpass(x, np.array([cutoff]), sr)
    x = dsp.limit_peak(dsp.set_level(x, np.array([rec["level_db"]])))
    if rec.get("codec"):
        x = dsp.vorbis(x, sr, rec["codec"]["compression"])
    return x[0].astype(np.float32)


RENDER_THREADS = 2  # decoding, the Vorbis codec and scipy's FFTs release the GIL: 1.8× on 2 cores
AHEAD = 4 * RENDER_THREADS  # clips rendered ahead of the consumer (bounds the memory held)


def _in_order(work: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    """`work(item)` for each item on RENDER_THREADS threads, yielded in item order, at most AHEAD ahead.

    Each recipe renders alone from its own seeds, so the results are those of one-by-one rendering; the
    loaders a recipe calls must be safe from two threads (`WaveStore`, `DecodeCache` and an lru_cache are)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=RENDER_THREADS) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def render_testlike_waves(recipes: Iterable[str | dict], load: Callable[[str], np.ndarray], sr: int,
                          load_background: Callable[[str], np.ndarray] | None = None) -> Iterator[np.ndarray]:
    """`render_testlike` of each recipe, in recipe order, rendered on RENDER_THREADS threads."""
    return _in_order(lambda recipe: render_testlike(recipe, load, sr, load_background), recipes)


def rendered_stats(recipes: Iterable[str | dict], load: Callable[[str], np.ndarray],
                   load_background: Callable[[str], np.ndarray] | None = None) -> np.ndarray:
    """Per-clip statistics (`audio.stats.STAT_NAMES`) of rendered test-like clips, rows in recipe order."""
    from ensemble.audio.stats import ANALYSIS_SR, STAT_NAMES, clip_stats

    rows = list(_in_order(lambda recipe: clip_stats(render_testlike(recipe, load, ANALYSIS_SR, load_background)),
                          recipes))
    return np.stack(rows) if rows else np.zeros((0, len(STAT_NAMES)))


def render_testlike_set(
    frame: pd.DataFrame,
    load: Callable[[str], np.ndarray],
    sr: int,
    progress: Progress | None = None,
    load_background: Callable[[str], np.ndarray] | None = None,
) -> np.ndarray:
    """Render every recipe of a test-like frame, `(rows, seconds·sr)` float32 in frame order."""
    if "recipe" not in frame.columns:
        raise DataError("test-like frame has no 'recipe' column")
    waves = []
    for i, recipe in enumerate(frame["recipe"]):
        waves.append(render_testlike(recipe, load, sr, load_background))
        emit(progress, "render", done=i + 1, total=len(frame))
    lengths = {w.size for w in waves}
    if len(lengths) > 1:
        raise DataError(f"test-like recipes have different lengths {sorted(lengths)}; accepted: one length")
    return np.stack(waves) if waves else np.zeros((0, 0), dtype=np.float32)
