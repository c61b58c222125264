"""The demo generator: competition layout, answer key, determinism, and a learnable-but-fair task."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ensemble.demo import DemoSpec, draw_speaker, generate_competition, synth_voice
from ensemble.demo.plan import plan_competition
from ensemble.errors import ConfigError, ExistsError

SR = 16000
SIZES = DemoSpec(n_train=160, n_test=24, n_unlabeled=4, sr=SR, seed=3)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return generate_competition(tmp_path_factory.mktemp("demo") / "data", SIZES, with_group=True)


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"id": str})


def test_layout_matches_the_competition(demo: Path) -> None:
    assert {p.name for p in demo.iterdir()} == {
        "README.md", "train.csv", "test.csv", "sample_submission.csv", "test_answers.csv",
        "train", "test", "unlabeled_data",
    }
    train, test = _csv(demo / "train.csv"), _csv(demo / "test.csv")
    sample, answers = _csv(demo / "sample_submission.csv"), _csv(demo / "test_answers.csv")
    assert list(train.columns) == ["id", "path", "label", "group"]
    assert list(test.columns) == ["id", "path"]
    assert list(sample.columns) == list(answers.columns) == ["id", "fake", "real"]
    assert (demo / "train.csv").read_bytes().count(b"\r\n") == len(train) + 1  # CRLF, as voices-dev
    assert train.id.is_unique and test.id.is_unique
    assert list(train.path) == [f"./train/{i}.ogg" for i in train.id]
    assert list(test.path) == [f"./test/{i}.ogg" for i in test.id]
    assert train.id.str.fullmatch(r"TRAIN_\d{5}").all() and test.id.str.fullmatch(r"TEST_\d{5}").all()
    assert list(sample.id) == list(answers.id) == list(test.id)
    assert (sample[["fake", "real"]] == 0.5).all().all()
    assert set(answers.fake) <= {0, 1} and set(answers.real) <= {0, 1}
    assert sorted(train.label.unique()) == ["fake", "real"]
    assert train.group.nunique() >= 6 and (train.groupby("group").label.nunique() == 1).all()
    assert sorted(p.name for p in (demo / "unlabeled_data").iterdir()) == [f"UNLABEL_{i:05d}.ogg" for i in range(4)]


def test_audio_lengths_and_format(demo: Path) -> None:
    train, test = _csv(demo / "train.csv"), _csv(demo / "test.csv")
    for rel in train.path:
        info = sf.info(demo / rel)
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("OGG", "VORBIS", SR, 1)
        assert 0.8 * SR <= info.frames <= 4.0 * SR
    clips = [demo / rel for rel in test.path] + sorted((demo / "unlabeled_data").iterdir())
    for path in clips:
        y, sr = sf.read(path, dtype="float32")
        assert sr == SR and len(y) == 5 * SR and np.isfinite(y).all() and np.abs(y).max() <= 1.0
        assert np.sqrt(np.mean(y**2)) > 1e-4  # never digital silence: noise is always there


def test_answers_match_the_voices_placed(demo: Path) -> None:
    plan = plan_competition(SIZES)
    answers = _csv(demo / "test_answers.csv").set_index("id")
    counts = set()
    for clip in plan.test:
        kinds = {v.kind for v in clip.voices}
        assert answers.loc[clip.id, "fake"] == int("fake" in kinds)
        assert answers.loc[clip.id, "real"] == int("real" in kinds)
        counts.add(len(clip.voices))
        for v in clip.voices:
            assert 0.0 <= v.offset and v.offset + v.seconds <= plan.test_seconds + 1e-3
            assert plan.speakers[v.speaker].kind == v.kind
    assert counts == {0, 1, 2}
    train = _csv(demo / "train.csv")
    assert list(train.label) == [c.kind for c in plan.train]


def test_voices_are_where_the_plan_puts_them(demo: Path) -> None:
    """With speech well above the noise, a clip is louder inside its voices' spans than outside."""
    plan = plan_competition(SIZES)
    checked = 0
    for clip in plan.test:
        if not clip.voices or clip.snr_db < 10:
            continue
        y, _ = sf.read(demo / "test" / f"{clip.id}.ogg")
        inside = np.zeros(len(y), dtype=bool)
        for v in clip.voices:
            inside[int(v.offset * SR) : int((v.offset + v.seconds) * SR)] = True
        if inside.all():
            continue
        assert np.sqrt(np.mean(y[inside] ** 2)) > 1.5 * np.sqrt(np.mean(y[~inside] ** 2)), clip.id
        checked += 1
    assert checked >= 3


def test_same_seed_same_dataset(tmp_path: Path) -> None:
    small = DemoSpec(n_train=8, n_test=6, n_unlabeled=2, seed=11, test_seconds=2.0)
    calls: list[tuple[int, int]] = []
    a = generate_competition(tmp_path / "a", small, workers=1, progress=lambda e: calls.append((e["done"], e["total"])))
    b = generate_competition(tmp_path / "b", small, workers=2)
    assert calls == [(i, 16) for i in range(1, 17)]
    c = generate_competition(tmp_path / "c", replace(small, seed=12))
    for name in ("train.csv", "test.csv", "sample_submission.csv", "test_answers.csv", "README.md"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    audio = sorted(p.relative_to(a) for p in a.rglob("*.ogg"))
    assert len(audio) == 16 and audio == sorted(p.relative_to(b) for p in b.rglob("*.ogg"))
    for rel in audio:
        assert np.array_equal(sf.read(a / rel)[0], sf.read(b / rel)[0])
    first = audio[0]
    assert not np.array_equal(sf.read(a / first)[0][:1000], sf.read(c / first)[0][:1000])


def test_existing_dataset_needs_overwrite(tmp_path: Path) -> None:
    out = generate_competition(tmp_path / "d", DemoSpec(n_train=4, n_test=5, n_unlabeled=1, test_seconds=1.0))
    assert list(_csv(out / "train.csv").columns) == ["id", "path", "label"]  # no group unless asked
    with pytest.raises(ExistsError, match="train.csv"):
        generate_competition(out, DemoSpec(n_train=4, n_test=2, n_unlabeled=0))
    generate_competition(out, DemoSpec(n_train=4, n_test=2, n_unlabeled=0, test_seconds=1.0), overwrite=True)
    assert sorted(p.name for p in (out / "test").iterdir()) == ["TEST_00000.ogg", "TEST_00001.ogg"]
    assert list((out / "unlabeled_data").iterdir()) == []


def test_falls_back_to_flac_when_ogg_cannot_be_written(tmp_path: Path, monkeypatch) -> None:
    real_write = sf.write

    def no_ogg(file, data, samplerate, *args, format=None, **kwargs):
        if format == "OGG":
            raise sf.LibsndfileError(0, "no Vorbis in this build")
        return real_write(file, data, samplerate, *args, format=format, **kwargs)

    monkeypatch.setattr(sf, "write", no_ogg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = generate_competition(tmp_path / "f", DemoSpec(n_train=4, n_test=1, n_unlabeled=0, test_seconds=1.0))
    assert any("FLAC" in str(w.message) or ".flac" in str(w.message) for w in caught)
    train = _csv(out / "train.csv")
    assert all(p.endswith(".flac") for p in train.path) and all((out / p).exists() for p in train.path)


@pytest.mark.parametrize("sr", [8000, 22050])
@pytest.mark.parametrize("kind", ["real", "fake"])
def test_synth_voice_length_and_level(kind: str, sr: int) -> None:
    y = synth_voice(kind, 1.2345, sr, np.random.default_rng(0))
    assert y.dtype == np.float32 and len(y) == round(1.2345 * sr) and np.isfinite(y).all()
    assert 0.02 < np.sqrt(np.mean(y**2)) < 0.2


def test_synth_voice_rejects_bad_input() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="kind"):
        synth_voice("robot", 1.0, SR, rng)
    with pytest.raises(ConfigError, match="speaker.kind"):
        synth_voice("real", 1.0, SR, rng, speaker=draw_speaker("fake", rng))
    with pytest.raises(ConfigError, match="n_train"):
        plan_competition(DemoSpec(n_train=1))


def _features(y: np.ndarray, sr: int) -> np.ndarray:
    """Level-free spectral summaries: band shares, flatness, centroid, flux, periodicity."""
    n_fft, hop = 512, 256
    y = np.pad(y, (0, max(0, n_fft - len(y))))
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12
    energy = power.sum(1)
    power = power[energy > energy.max() * 1e-3]
    f = np.fft.rfftfreq(n_fft, 1 / sr)
    edges = np.geomspace(100, sr / 2, 9)
    bands = np.stack([power[:, (f >= a) & (f < b)].sum(1) for a, b in zip(edges[:-1], edges[1:])], 1)
    share = np.log(bands / bands.sum(1, keepdims=True))
    flat = np.exp(np.log(power).mean(1)) / power.mean(1)
    centroid = (power * f).sum(1) / power.sum(1) / (sr / 2)
    flux = np.abs(np.diff(np.log(power), axis=0)).mean(1) if len(power) > 1 else np.zeros(1)
    ac = np.fft.irfft(power, axis=1)
    periodic = (ac[:, sr // 400 : sr // 70] / ac[:, :1]).max(1)
    stats = [flat.mean(), flat.std(), centroid.mean(), centroid.std(), flux.mean(), periodic.mean(), periodic.std()]
    return np.concatenate([share.mean(0), share.std(0), stats])


def test_clean_train_is_learnable_but_not_by_length_or_level(demo: Path) -> None:
    train = _csv(demo / "train.csv")
    audio = [sf.read(demo / rel)[0] for rel in train.path]
    y = (train.label == "fake").to_numpy().astype(int)
    X = np.stack([_features(a, SR) for a in audio])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    p = cross_val_predict(model, X, y, cv=cv, method="predict_proba")[:, 1]
    feature_auc = roc_auc_score(y, p)
    duration_auc = roc_auc_score(y, [len(a) for a in audio])
    level_auc = roc_auc_score(y, [np.sqrt(np.mean(a**2)) for a in audio])
    assert feature_auc > 0.7, feature_auc
    assert 0.25 < duration_auc < 0.75, duration_auc
    assert 0.25 < level_auc < 0.75, level_auc
