"""The shared test-like set: recipes from each fold's held-out rows only, labels from the sources,
exact-length deterministic renders at any rate."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ensemble.audio import dsp
from ensemble.audio.generator import GeneratorParams
from ensemble.audio.testlike_render import (SourceRows, build_testlike_recipes, n_tracks, render_testlike, render_testlike_set,
                                            render_testlike_waves, rendered_stats)
from ensemble.errors import ConfigError, DataError

LABELS = ["fake", "real"]
N_ROWS = 40


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    ids = [f"TRAIN_{i:05d}" for i in range(N_ROWS)]
    y = np.zeros((N_ROWS, 2), np.float32)
    y[np.arange(N_ROWS), rng.integers(0, 2, N_ROWS)] = 1
    folds = np.arange(N_ROWS) % 4
    durations = rng.uniform(0.4, 9.0, N_ROWS)
    return ids, y, folds, durations


@pytest.fixture(scope="module")
def frame(data):
    ids, y, folds, durations = data
    return build_testlike_recipes(SourceRows(ids, y, folds, LABELS, durations), per_fold=60, seed=11)


def make_loader(data, sr):
    """Deterministic synthetic voice per id, `durations` long at `sr`; records what was asked."""
    ids, _, _, durations = data
    asked = []

    def load(train_id):
        asked.append(train_id)
        i = ids.index(train_id)
        t = np.arange(int(durations[i] * sr)) / sr
        return (0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t)).astype(np.float32)

    return load, asked


def test_frame_columns_ids_and_counts(frame):
    assert list(frame.columns) == ["id", "fold", *LABELS, "n_voices", "sources", "recipe"]
    assert frame["id"].tolist() == [f"TL_{i:05d}" for i in range(240)]
    assert frame.groupby("fold").size().to_dict() == {0: 60, 1: 60, 2: 60, 3: 60}
    assert set(frame["n_voices"]) == {0, 1, 2}


def test_sources_come_only_from_the_recipes_fold(frame, data):
    ids, _, folds, _ = data
    fold_of = dict(zip(ids, folds))
    for row in frame.itertuples():
        sources = json.loads(row.sources)
        recipe = json.loads(row.recipe)
        assert [v["id"] for v in recipe["voices"]] == sources
        assert all(fold_of[s] == row.fold for s in sources)
        assert len(set(sources)) == len(sources) >= row.n_voices == n_tracks(recipe)


def test_a_voice_is_a_track_of_same_label_utterances_filling_its_share(data):
    ids, y, folds, durations = data
    label = {i: tuple(t) for i, t in zip(ids, y)}
    durations = np.full(N_ROWS, 0.8)  # short utterances, as voices-dev's ~1.3-s train clips
    spans = {}
    for fill in (0.1, 0.9):
        params = GeneratorParams(voice_fill=(fill, fill), voice_probs=(0.0, 1.0, 0.0))
        frame = build_testlike_recipes(SourceRows(ids, y, folds, LABELS, durations), per_fold=20, seed=3, params=params)
        covered = []
        for recipe in map(json.loads, frame["recipe"]):
            voices = recipe["voices"]
            assert len({label[v["id"]] for v in voices}) == 1  # one voice keeps one label
            mask = np.zeros(500, bool)
            for v in voices:
                mask[max(0, int(v["offset_s"] * 100)) : max(0, int((v["offset_s"] + 0.8) * 100))] = True
            covered.append(mask.mean())
            assert recipe["fill"] == [fill]
        spans[fill] = np.mean(covered)
    assert spans[0.1] < 0.17 and spans[0.9] > 0.6  # the share drawn is the share filled (less the pauses)


def test_labels_are_the_max_over_the_sources(frame, data):
    ids, y, _, _ = data
    target = dict(zip(ids, y))
    for row in frame.itertuples():
        sources = json.loads(row.sources)
        expected = np.max([target[s] for s in sources], axis=0) if sources else np.zeros(2)
        assert [row.fake, row.real] == expected.astype(int).tolist()
    two = frame[frame.n_voices == 2]
    assert {(r.fake, r.real) for r in two.itertuples()} == {(1, 0), (0, 1), (1, 1)}  # both kinds of mix


def test_recipes_are_seeded(data, frame):
    ids, y, folds, durations = data
    again = build_testlike_recipes(SourceRows(ids, y, folds, LABELS, durations), per_fold=60, seed=11)
    pd.testing.assert_frame_equal(frame, again)
    other = build_testlike_recipes(SourceRows(ids, y, folds, LABELS, durations), per_fold=60, seed=12)
    assert not frame["recipe"].equals(other["recipe"])


def test_parquet_round_trip(frame, tmp_path):
    frame.to_parquet(tmp_path / "testlike.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "testlike.parquet"), frame, check_dtype=False)


@pytest.mark.parametrize("sr", [16000, 22050])
def test_render_is_exact_length_deterministic_and_loads_only_sources(frame, data, sr):
    sub = frame.iloc[:12]
    load, asked = make_loader(data, sr)
    waves = render_testlike_set(sub, load, sr)
    assert waves.shape == (12, 5 * sr) and waves.dtype == np.float32
    assert np.isfinite(waves).all() and np.abs(waves).max() <= 1.2  # Vorbis may overshoot a little
    assert (np.sqrt(dsp.power(waves)) > 1e-4).all()  # every clip has sound, voiceless ones noise
    assert sorted(asked) == sorted(s for s in sub["sources"] for s in json.loads(s))
    again = np.stack([render_testlike(r, load, sr) for r in sub["recipe"]])
    np.testing.assert_array_equal(waves, again)


def test_threaded_rendering_gives_the_clips_one_by_one_rendering_gives_in_order(frame, data):
    from ensemble.audio.stats import ANALYSIS_SR, stats_matrix

    sub = frame.iloc[:30]
    load, _ = make_loader(data, ANALYSIS_SR)
    alone = [render_testlike(r, load, ANALYSIS_SR) for r in sub["recipe"]]
    threaded = list(render_testlike_waves(sub["recipe"], load, ANALYSIS_SR))
    assert len(threaded) == 30 and all(np.array_equal(a, b) for a, b in zip(alone, threaded))
    np.testing.assert_array_equal(rendered_stats(sub["recipe"], load), stats_matrix(alone))


def test_render_places_the_voice_at_the_requested_snr(data):
    sr = 8000
    load, _ = make_loader(data, sr)
    voice = {"id": "TRAIN_00003", "offset_s": 0.5, "level_db": -20.0}
    recipe = {
        "version": 1, "seconds": 5.0, "voices": [voice], "reverb": None, "lowpass_hz": None, "codec": None, "level_db": -20.0,
        "noise": {"kind": "pink", "snr_db": 10.0, "seed": 3},
    }
    out = render_testlike(json.dumps(recipe), load, sr)
    wave = load("TRAIN_00003")
    wave = wave * 10 ** (-20 / 20) / np.sqrt(np.mean(wave.astype(np.float64) ** 2))
    clean = dsp.place(wave.astype(np.float32), out.size, int(0.5 * sr))
    assert 10 * np.log10(dsp.power(out[None])[0]) == pytest.approx(-20.0, abs=1e-3)  # final level
    k = np.dot(out, clean) / np.dot(clean, clean)  # the level step scaled voice and noise alike
    snr = 10 * np.log10(dsp.power(clean[None])[0] / dsp.power((out / k - clean)[None])[0])
    assert snr == pytest.approx(10.0, abs=0.05)


def test_recipes_cover_every_nuisance(frame):
    recipes = [json.loads(r) for r in frame["recipe"]]
    assert {r["noise"]["kind"] for r in recipes} == {"tilt"}  # no backgrounds given
    alphas = [r["noise"]["alpha"] for r in recipes]
    assert min(alphas) < 0.8 and max(alphas) > 1.2  # a spread of colours, none of training's
    for key in ("reverb", "lowpass_hz", "codec"):
        share = np.mean([r[key] is not None for r in recipes])
        assert 0.1 < share < 0.6, key
    assert not any(r["lowpass_hz"] and r["codec"] for r in recipes)
    offsets = [v["offset_s"] for r in recipes for v in r["voices"]]
    assert min(offsets) < 0 and max(offsets) > 3.5  # voices may hang over either edge


def test_render_rejects_unknown_recipes(data):
    load, _ = make_loader(data, 8000)
    with pytest.raises(DataError, match="version 99"):
        render_testlike({"version": 99}, load, 8000)
    with pytest.raises(DataError, match="not valid JSON"):
        render_testlike("{nope", load, 8000)


def test_small_folds_still_work(data):
    ids, y, _, durations = data
    folds = np.zeros(N_ROWS, int)
    folds[0] = 1  # a fold with one held-out row cannot hold two voices
    out = build_testlike_recipes(SourceRows(ids, y, folds, LABELS, durations), per_fold=30, seed=0)
    lone = out[out.fold == 1]
    assert lone.n_voices.max() <= 1 and set(lone["sources"]) <= {"[]", json.dumps([ids[0]])}


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"targets": np.zeros((3, 2))}, DataError, r"targets shape \(3, 2\)"),
        ({"folds": np.zeros(3, int)}, DataError, "folds has shape"),
        ({"folds": np.full(N_ROWS, 0.5)}, DataError, "non-negative integers"),
        ({"durations": np.full(N_ROWS, np.nan)}, DataError, "durations"),
        ({"per_fold": 0}, ConfigError, "per_fold=0"),
        ({"voice_probs": (0.5, 0.5, 0.5)}, ConfigError, "voice_probs"),
    ],
)
def test_bad_inputs(data, change, error, message):
    ids, y, folds, durations = data
    fields = dict(ids=ids, targets=y, folds=folds, labels=LABELS, durations=durations)
    options = dict(per_fold=5, seed=0)
    fields.update((k, v) for k, v in change.items() if k in fields)
    options.update((k, v) for k, v in change.items() if k not in fields)
    with pytest.raises(error, match=message):
        build_testlike_recipes(SourceRows(**fields), **options)
