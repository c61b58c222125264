"""Domain check, fitted generator, density-ratio weights, disjoint nuisances and `ens testlike check`."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from ensemble.audio import testlike_fit
from ensemble.audio import nuisance
from ensemble.audio.generator import GeneratorParams
from ensemble.audio.stats import ANALYSIS_SR, STAT_NAMES, clip_stats, stats_matrix
from ensemble.audio.testlike_render import SourceRows, build_testlike_recipes, render_testlike
from ensemble.cli import app
from ensemble.audio.domain import density_ratio_weights, domain_check
from ensemble.errors import ConfigError

LABELS = ["fake", "real"]
N = 24


def voices():
    rng = np.random.default_rng(0)
    ids = [f"TRAIN_{i:03d}" for i in range(N)]
    y = np.zeros((N, 2))
    y[np.arange(N), np.arange(N) % 2] = 1
    durations = rng.uniform(0.8, 3.0, N)

    def load(train_id):
        i = ids.index(train_id)
        t = np.arange(int(durations[i] * ANALYSIS_SR)) / ANALYSIS_SR
        return (0.3 * np.sin(2 * np.pi * (140 + 15 * i) * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)

    return SourceRows(ids=ids, targets=y, folds=np.arange(N) % 3, labels=LABELS, durations=durations), load


FAST = dict(p_codec=0.0, p_reverb=0.0)  # the slow blocks (Vorbis, room) add nothing to what these tests pin


def render_stats(params, seed, n=60, backgrounds=()):
    source, load = voices()
    frame = build_testlike_recipes(source, per_fold=n // 3, seed=seed, params=params.with_(**FAST),
                                   backgrounds=backgrounds, seconds=2.0)
    return frame, stats_matrix(render_testlike(r, load, ANALYSIS_SR) for r in frame["recipe"])


def folder_loader(root: Path):
    """`load_background` for clips written under `root` at ANALYSIS_SR."""
    from ensemble.audio.load import load_audio

    return lambda source: load_audio(root / source, ANALYSIS_SR)


def synthetic_voice(seconds: float, sr: int = ANALYSIS_SR) -> np.ndarray:
    """A voiced, vowel-like signal (saw-tooth source through moving formants, syllable-rate envelope)
    that the voice-activity detector hears as speech."""
    import scipy.signal

    n = int(seconds * sr)
    t = np.arange(n) / sr
    source = scipy.signal.sawtooth(2 * np.pi * np.cumsum(120.0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))) / sr)
    out = np.zeros(n)
    seg = n // 6
    for k, formants in enumerate([(700, 1200, 2600), (300, 2200, 3000), (500, 900, 2400)] * 2):
        part = source[k * seg : (k + 1) * seg]
        for fc in formants:
            b, a = scipy.signal.iirpeak(fc, 8, sr)
            out[k * seg : (k + 1) * seg] += scipy.signal.lfilter(b, a, part)
    out *= 0.5 * (1 - np.cos(2 * np.pi * 4 * t))
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def test_clip_stats_are_finite_and_fast():
    wave = np.random.default_rng(0).standard_normal(5 * ANALYSIS_SR).astype(np.float32) * 0.05
    stats = clip_stats(wave)
    assert stats.shape == (len(STAT_NAMES),) and np.isfinite(stats).all()
    assert clip_stats(np.zeros(100, np.float32)).shape == stats.shape


def test_domain_check_same_generator_is_near_chance_and_different_ones_separate():
    _, a = render_stats(GeneratorParams(), seed=1, n=60)
    _, b = render_stats(GeneratorParams(), seed=2, n=60)
    same = domain_check(a, b)
    assert abs(same.auc - 0.5) < 0.15 and not same.warn
    _, noisy = render_stats(GeneratorParams(snr_db=(-5.0, -5.0), noise_alpha=(0.25, 0.3)), seed=2, n=60)
    _, clean = render_stats(GeneratorParams(snr_db=(40.0, 40.0)), seed=2, n=60)
    far = domain_check(clean, noisy)
    assert far.auc > 0.9 and far.warn
    assert far.auc_interval[0] <= far.auc <= far.auc_interval[1]
    assert far.top(1)[0][0] in STAT_NAMES and len(far.differences) == len(STAT_NAMES)


def test_density_ratio_weights_up_weight_target_like_clips():
    _, noisy = render_stats(GeneratorParams(snr_db=(-5.0, 0.0)), seed=3)
    _, clean = render_stats(GeneratorParams(snr_db=(30.0, 40.0)), seed=3)
    _, target = render_stats(GeneratorParams(snr_db=(-5.0, 0.0)), seed=4)
    sim = np.concatenate([noisy, clean])
    w = density_ratio_weights(sim, target, sim)
    assert np.isfinite(w).all() and (w > 0).all() and w.mean() == pytest.approx(1.0)
    assert w[: len(noisy)].mean() > 3 * w[len(noisy):].mean()


def test_fitted_generator_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.setattr(testlike_fit, "GRID", {"snr_db": [(-5.0, 20.0), (20.0, 35.0)], "p_background": [0.0, 1.0]})
    _, load = voices()
    target = GeneratorParams(snr_db=(25.0, 35.0))
    frame, _ = render_stats(target, seed=9, n=30)
    paths = []
    for i, recipe in enumerate(frame["recipe"]):
        paths.append(tmp_path / f"TEST_{i:02d}.wav")
        sf.write(paths[-1], render_testlike(recipe, load, ANALYSIS_SR), ANALYSIS_SR)
    source, load = voices()
    results = []
    for _ in range(2):
        real = testlike_fit.analyse_real(paths, [True] * len(paths), seed=0, root=tmp_path)
        fit = testlike_fit.fit_generator(testlike_fit.recipe_renderer(source, load=load, n_clips=30,
                                                                      load_background=folder_loader(tmp_path)),
                                         real, start=GeneratorParams(**FAST))
        recipes = build_testlike_recipes(source, per_fold=5, seed=0, params=fit.params, backgrounds=real.backgrounds)
        results.append((fit, recipes))
    (fit, recipes), (again, recipes_again) = results
    assert fit.params == again.params and fit.history == again.history
    pd.testing.assert_frame_equal(recipes, recipes_again)
    assert fit.params.snr_db == (20.0, 35.0)  # found the high SNR the target was rendered at
    assert fit.params.band_limit_hz == ANALYSIS_SR / 2 and len(fit.params.level_quantiles) == testlike_fit.LEVEL_QUANTILES



def test_ratio_fit_moves_towards_the_real_clips_and_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.setattr(testlike_fit, "RATIO_PRIOR", {**testlike_fit.RATIO_PRIOR, **FAST})
    _, load = voices()
    frame, _ = render_stats(GeneratorParams(snr_db=(30.0, 40.0)), seed=9, n=30)
    paths = []
    for i, recipe in enumerate(frame["recipe"]):
        paths.append(tmp_path / f"TEST_{i:02d}.wav")
        sf.write(paths[-1], render_testlike(recipe, load, ANALYSIS_SR), ANALYSIS_SR)
    source, load = voices()
    real = testlike_fit.analyse_real(paths, [True] * len(paths), seed=0, root=tmp_path)
    fits = [testlike_fit.ratio_generator(testlike_fit.pool_renderer(source, load=load, n_clips=60,
                                                                    load_background=folder_loader(tmp_path)),
                                         real, start=GeneratorParams(**FAST), rounds=2) for _ in range(2)]
    assert fits[0] == fits[1]
    fit = fits[0]
    assert len(fit.snr_quantiles) == testlike_fit.MATCH_QUANTILES and np.median(fit.snr_quantiles) > 15.0
    assert math.isclose(sum(fit.voice_probs), 1.0) and fit.band_limit_hz == ANALYSIS_SR / 2
    recipes = [json.loads(r) for r in build_testlike_recipes(source, per_fold=10, seed=0, params=fit)["recipe"]]
    train = nuisance.training_nuisances()
    cutoffs = [r["lowpass_hz"] for r in recipes if r["lowpass_hz"]]
    assert all(abs(c - b) >= nuisance.CUTOFF_GAP * b - 0.1 for c in cutoffs for b in train["lowpass_hz"])
    assert all(fit.snr_quantiles[0] <= r["noise"]["snr_db"] <= fit.snr_quantiles[-1] for r in recipes)
    assert len(fit.profiles) == 60 and all(p["weight"] > 0 for p in fit.profiles)  # the last round's pool
    kept = [json.dumps(p["nuisance"]["noise"]["snr_db"]) for p in fit.profiles]
    assert all(json.dumps(r["noise"]["snr_db"]) in kept for r in recipes)  # drawn jointly from the profiles


def _profile(voices, weight, snr, lowpass=None, fill=0.5):
    nuis = {"reverb": None, "noise": {"kind": "tilt", "alpha": 0.5, "snr_db": snr, "seed": 1}, "band_limit_hz": None,
            "tilt_db_per_oct": float(snr) / 10, "lowpass_hz": lowpass, "codec": None, "level_db": -20.0 - voices}
    return {"voices": voices, "weight": weight, "fill": [fill] * voices, "nuisance": nuis}


def test_profiles_draw_every_nuisance_of_a_clip_together_and_keep_the_voice_mix():
    profiles = (_profile(0, 1.0, 3.0), _profile(1, 1.0, 30.0, fill=0.2), _profile(1, 9.0, -5.0, 3000.0, fill=0.8),
                _profile(2, 1.0, 10.0, 6000.0, fill=0.6))
    source, _ = voices()
    plain = build_testlike_recipes(source, per_fold=120, seed=3)
    frame = build_testlike_recipes(source, per_fold=120, seed=3, params=GeneratorParams(profiles=profiles))
    pd.testing.assert_series_equal(frame["n_voices"], plain["n_voices"])  # voice_probs, not the weights, set the mix
    by_snr = {p["nuisance"]["noise"]["snr_db"]: p for p in profiles}
    picked = []
    for recipe, voiced in zip(frame["recipe"], frame["n_voices"]):
        r = json.loads(recipe)
        p = by_snr[r["noise"]["snr_db"]]
        assert p["voices"] == voiced and r["fill"] == p["fill"]
        assert {k: r[k] for k in ("lowpass_hz", "tilt_db_per_oct", "level_db")} == \
            {k: p["nuisance"][k] for k in ("lowpass_hz", "tilt_db_per_oct", "level_db")}
        picked.append(r["noise"]["snr_db"])
    seeds = {json.loads(r)["noise"]["seed"] for r in frame["recipe"]}
    assert len(seeds) == len(frame)  # fresh noise per clip, not the profile's
    one = [s for s, v in zip(picked, frame["n_voices"]) if v == 1]
    assert 0.8 < np.mean(np.array(one) == -5.0) < 0.97  # weight 9 of 10


@pytest.mark.parametrize("change, message", [
    ({"lowpass_hz": 4000.0}, "training augmentation"),
    ({"weight": 0.0}, "voices or weight"),
    ({"fill": [0.5, 0.5]}, "fill"),
])
def test_bad_profiles_are_refused(change, message):
    profile = {**_profile(1, 1.0, 3.0), **{k: v for k, v in change.items() if k != "lowpass_hz"}}
    if "lowpass_hz" in change:
        profile["nuisance"]["lowpass_hz"] = change["lowpass_hz"]
    with pytest.raises(ConfigError, match=message):
        GeneratorParams(profiles=(profile,))


def test_default_recipes_are_unchanged_by_the_quantile_options():
    source, _ = voices()
    base = build_testlike_recipes(source, per_fold=5, seed=1)
    same = build_testlike_recipes(source, per_fold=5, seed=1, params=GeneratorParams(min_visible_s=1.0))
    pd.testing.assert_frame_equal(base, same)


def test_test_like_nuisances_are_disjoint_from_training():
    train = nuisance.training_nuisances()
    recipes = []
    for params in [GeneratorParams()] + [GeneratorParams().with_(**{k: v}) for k, grid in testlike_fit.GRID.items()
                                         for v in grid]:
        frame = build_testlike_recipes(voices()[0], per_fold=20, seed=5, params=params,
                                       backgrounds=[{"source": "x.ogg", "envelope": [0.0] * len(nuisance.ENVELOPE_HZ)}])
        recipes += [json.loads(r) for r in frame["recipe"]]
    alphas = [r["noise"]["alpha"] for r in recipes if r["noise"]["kind"] == "tilt"]
    assert alphas and min(abs(a - b) for a in alphas for b in train["noise_alphas"]) >= nuisance.ALPHA_GAP - 1e-9
    cutoffs = [r["lowpass_hz"] for r in recipes if r["lowpass_hz"]]
    assert cutoffs and all(abs(c - b) >= nuisance.CUTOFF_GAP * b - 0.1 for c in cutoffs for b in train["lowpass_hz"])
    compression = [r["codec"]["compression"] for r in recipes if r["codec"]]
    assert compression and max(compression) < train["codec_compression"][0]
    assert {r["noise"]["kind"] for r in recipes} == {"tilt", "background"}
    assert train["reverb_family"] == "exponential" and all("damping_hz" in r["reverb"] for r in recipes if r["reverb"])
    names = [f"UNLABEL_{i:05d}.ogg" for i in range(40)]
    assert {nuisance.stable_half(n) for n in names} == {0, 1}  # training uses half 0, test-like half 1


@pytest.mark.parametrize("change, message", [
    ({"codec_compression": (0.3, 0.7)}, "codec_compression"),
    ({"noise_alpha": (0.9, 1.1)}, "noise_alpha"),
    ({"lowpass_hz": (3900.0, 4100.0)}, "lowpass_hz"),
    ({"p_reverb": 1.5}, "p_reverb"),
])
def test_generator_params_refuse_training_conditions(change, message):
    with pytest.raises(ConfigError, match=message):
        GeneratorParams(**change)


def test_old_recipes_still_render_and_unknown_versions_fail():
    _, load = voices()
    v1 = {"version": 1, "seconds": 1.0, "voices": [], "reverb": None, "lowpass_hz": None, "codec": None,
          "level_db": -20.0, "noise": {"kind": "pink", "snr_db": 10.0, "seed": 3}}
    assert render_testlike(v1, load, 8000).shape == (8000,)
    from ensemble.errors import DataError

    with pytest.raises(DataError, match="version 3 is not supported.*rebuild"):
        render_testlike({**v1, "version": 3}, load, 8000)


@pytest.fixture(scope="module")
def tiny_comp(tmp_path_factory):
    from ensemble.demo import DemoSpec, generate_competition

    return generate_competition(tmp_path_factory.mktemp("tl") / "data",
                                DemoSpec(n_train=24, n_test=12, n_unlabeled=4, sr=8000, seed=3), workers=1)


def test_cli_check_prints_the_auc_and_records_it(tiny_comp, workspace):
    result = CliRunner().invoke(app, ["testlike", "check", "--data", str(tiny_comp), "--clips", "12"])
    assert result.exit_code == 0, result.output
    assert "domain AUC" in result.output and "statistic" in result.output
    from ensemble.artifacts.testlike_set import load_domain_check, load_testlike, load_testlike_meta
    from ensemble.artifacts.workspace import Workspace

    ws = Workspace.resolve(workspace)
    check = load_domain_check(ws)
    assert 0.0 <= check["auc"] <= 1.0 and check["n_real"] == 12
    meta = load_testlike_meta(ws)
    assert meta.fitted is False and meta.reason.startswith("16 real unlabeled clips")  # too few to fit
    assert (load_testlike(ws)["weight"] == 1.0).all()


def test_cli_check_without_test_clips_is_one_error_line(tiny_comp, tmp_path):
    comp = tmp_path / "notest"
    shutil.copytree(tiny_comp, comp)
    (comp / "test.csv").unlink()
    shutil.rmtree(comp / "unlabeled_data")
    result = CliRunner().invoke(app, ["testlike", "check", "--data", str(comp)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"Error: {comp / 'test.csv'}: file not found"
    assert not (Path.cwd() / "models").exists()  # nothing built before the folder failed


def test_cli_export_writes_every_clip_as_rendered(tiny_comp, workspace, tmp_path):
    from ensemble.audio.load import load_audio
    from ensemble.audio.testlike_render import render_testlike
    from ensemble.artifacts.testlike_set import load_testlike
    from ensemble.artifacts.workspace import Workspace

    none_yet = CliRunner().invoke(app, ["testlike", "export", str(tmp_path / "x"), "--data", str(tiny_comp)])
    assert none_yet.exit_code == 1 and "no test-like clips in this workspace yet" in none_yet.output
    assert CliRunner().invoke(app, ["testlike", "check", "--data", str(tiny_comp), "--clips", "12"]).exit_code == 0
    out = tmp_path / "clips"
    result = CliRunner().invoke(app, ["testlike", "export", str(out), "--rate", "8000"])
    assert result.exit_code == 0, result.output
    clips = load_testlike(Workspace.resolve(workspace))
    from ensemble.artifacts.io import umask_mode

    assert out.stat().st_mode & 0o777 == umask_mode(directory=True)  # readable by the team, not mkdtemp's 0700
    index = pd.read_csv(out / "ids.csv", dtype=str)
    assert index["id"].tolist() == clips["id"].astype(str).tolist()
    assert sorted(p.name for p in out.glob("*.wav")) == sorted(index["path"])
    train = pd.read_csv(tiny_comp / "train.csv", dtype={"id": str}).set_index("id")["path"]
    def load(rid: str) -> np.ndarray:
        return load_audio(tiny_comp / train[rid], 8000)

    first = clips.iloc[0]
    wave, sr = sf.read(out / f"{first['id']}.wav", dtype="float32")
    assert sr == 8000
    np.testing.assert_array_equal(wave, render_testlike(first["recipe"], load, 8000))
    again = CliRunner().invoke(app, ["testlike", "export", str(out)])
    assert again.exit_code == 1 and "--force" in again.output
    (out / "stale.wav").write_bytes(b"left from an older export")
    forced = CliRunner().invoke(app, ["testlike", "export", str(out), "--rate", "8000", "--force"])
    assert forced.exit_code == 0, forced.output  # ens's own export (its .ens-output.json): replaced whole
    assert not (out / "stale.wav").exists() and (out / "ids.csv").is_file()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.") and not p.name.endswith(".lock")] == []


def test_cli_check_with_runs_checks_their_predictions_too(tiny_comp, workspace, tmp_path):
    from ensemble.artifacts.testlike_set import load_testlike
    from ensemble.artifacts.workspace import Workspace

    assert CliRunner().invoke(app, ["testlike", "check", "--data", str(tiny_comp), "--clips", "12"]).exit_code == 0
    clips = load_testlike(Workspace.resolve(workspace))
    rng = np.random.default_rng(0)
    frames = {"oof": pd.read_csv(tiny_comp / "train.csv", dtype=str)["id"],
              "test": pd.read_csv(tiny_comp / "sample_submission.csv", dtype=str)["id"],
              "tl": clips["id"].astype(str)}
    for name, ids in frames.items():
        pd.DataFrame({"id": ids, "fake": rng.random(len(ids)), "real": rng.random(len(ids))}).to_csv(
            tmp_path / f"{name}.csv", index=False)
    imported = CliRunner().invoke(app, ["import", "r", "--test", str(tmp_path / "test.csv"), "--oof",
                                        str(tmp_path / "oof.csv"), "--testlike", str(tmp_path / "tl.csv")])
    assert imported.exit_code == 0, imported.output
    result = CliRunner().invoke(app, ["testlike", "check", "r", "--clips", "12"])
    assert result.exit_code == 0, result.output
    assert "domain AUC on clips" in result.output and "domain AUC on predictions" in result.output
    assert "run:label logit" in result.output


def test_backgrounds_are_voice_free_stretches_of_real_clips(tmp_path):
    """A real clip with a voice in 1–3 s gives its voice-free end as background (never the voice, nor
    the VAD margin around it); a clip voiced throughout gives none; the background renders from the file."""
    from ensemble.audio import vad

    rng = np.random.default_rng(0)
    noise = lambda s: (0.01 * rng.standard_normal(int(s * ANALYSIS_SR))).astype(np.float32)  # noqa: E731
    voiced_middle = noise(5.0)
    voiced_middle[ANALYSIS_SR : 3 * ANALYSIS_SR] += synthetic_voice(2.0)
    voiced_all = noise(5.0) + np.tile(synthetic_voice(2.5), 2)
    (tmp_path / "test").mkdir()
    paths = [tmp_path / "test" / "a.wav", tmp_path / "test" / "b.wav"]
    for path, wave in zip(paths, [voiced_middle, voiced_all]):
        sf.write(path, wave, ANALYSIS_SR)
    real = testlike_fit.analyse_real(paths, [True, True], seed=0, root=tmp_path)
    assert [bg["source"] for bg in real.backgrounds] == ["test/a.wav"]
    bg = real.backgrounds[0]
    assert bg["start_s"] >= 3.0 + vad.MARGIN_S - vad.CHUNK_S and bg["seconds"] >= testlike_fit.MIN_BACKGROUND_S
    stretch = voiced_middle[int(bg["start_s"] * ANALYSIS_SR) : int((bg["start_s"] + bg["seconds"]) * ANALYSIS_SR)]
    assert vad.speech_probs([stretch])[0].max() < vad.VOICE_PROB  # no voice in it per the VAD
    assert vad.speech_probs([voiced_middle])[0][int(1.5 / vad.CHUNK_S) : int(2.5 / vad.CHUNK_S)].min() > 0.5
    assert not testlike_fit.analyse_real(paths, [False, True], seed=0, root=tmp_path).backgrounds  # flag honoured

    source, load = voices()
    params = GeneratorParams(p_background=1.0, **FAST)
    frame = build_testlike_recipes(source, per_fold=3, seed=1, params=params, backgrounds=real.backgrounds,
                                   seconds=2.0)
    recipe = json.loads(frame["recipe"].iloc[0])
    assert recipe["noise"]["kind"] == "real" and recipe["noise"]["source"] == "test/a.wav"
    first = render_testlike(recipe, load, ANALYSIS_SR, folder_loader(tmp_path))
    np.testing.assert_array_equal(first, render_testlike(recipe, load, ANALYSIS_SR, folder_loader(tmp_path)))
    from ensemble.errors import DataError

    with pytest.raises(DataError, match="real background 'test/a.wav'"):
        render_testlike(recipe, load, ANALYSIS_SR)


def test_loop_background_is_unit_rms_and_continuous():
    segment = np.sin(2 * np.pi * 3 * np.arange(1000) / 1000) + 0.5  # DC removed, no jump at the joins
    out = nuisance.loop_background(segment, 5000, np.random.default_rng(0))
    assert out.shape == (5000,) and np.sqrt(np.mean(out.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)
    assert np.abs(np.diff(out)).max() < 0.05
    with pytest.raises(ConfigError, match="empty or constant"):
        nuisance.loop_background(np.ones(100), 500, np.random.default_rng(0))


def test_voiceless_clips_take_real_noise_and_the_voice_free_clips_levels():
    stats = np.zeros((20, len(STAT_NAMES)))
    stats[:, STAT_NAMES.index("level_db")] = np.r_[np.full(14, -20.0), np.full(6, -40.0)]
    real = testlike_fit.RealAudio(stats=stats, silent=np.r_[np.zeros(14, bool), np.ones(6, bool)],
                                  band_limit_hz=8000.0, backgrounds=[], sources=[])
    levels = testlike_fit.matched_levels(real)
    assert set(levels["level_quantiles"]) == {-20.0} and set(levels["silent_level_quantiles"]) == {-40.0}
    few = testlike_fit.RealAudio(stats=stats, silent=np.r_[np.zeros(17, bool), np.ones(3, bool)],
                                 band_limit_hz=8000.0, backgrounds=[], sources=[])
    assert testlike_fit.matched_levels(few)["silent_level_quantiles"] == ()  # too few to fit apart
    params = GeneratorParams(p_background=0.0, **levels, **FAST)
    background = [{"source": "test/x.wav", "start_s": 0.0, "seconds": 2.0}]
    frame = build_testlike_recipes(voices()[0], per_fold=30, seed=2, params=params, backgrounds=background)
    recipes = [json.loads(r) for r in frame["recipe"]]
    silent = [r for r in recipes if not r["voices"]]
    voiced = [r for r in recipes if r["voices"]]
    assert silent and voiced
    assert all(r["noise"]["kind"] == "real" and r["level_db"] == -40.0 for r in silent)
    assert all(r["noise"]["kind"] == "tilt" and r["level_db"] == -20.0 for r in voiced)  # p_background=0


@pytest.mark.slow
def test_the_built_set_is_judged_on_real_clips_the_fit_never_saw(tmp_path, monkeypatch):
    from ensemble.artifacts.competition import Competition
    from ensemble.artifacts.folds import ensure_folds
    from ensemble.artifacts.testlike_set import (META_FILE, TESTLIKE_FILE, ensure_testlike, held_out_real,
                                                 load_testlike_meta, real_clips)
    from ensemble.artifacts.workspace import Workspace
    from ensemble.audio.domain import shown_faithful
    from ensemble.demo import DemoSpec, generate_competition

    data = generate_competition(tmp_path / "data",
                                DemoSpec(n_train=24, n_test=100, n_unlabeled=20, sr=8000, seed=3), workers=1)
    comp, ws = Competition.load(data), Workspace(tmp_path / "ws")
    folds = ensure_folds(ws, comp, 3, 0)
    paths, _ = real_clips(comp)
    monkeypatch.setattr(testlike_fit, "MAX_REAL", 60)  # the fit analyses 60 of the 120 real clips
    ensure_testlike(ws, comp, folds, per_fold=10, seed=0)
    check = load_testlike_meta(ws).domain_check
    fitted = {paths[i] for i in testlike_fit.fit_sample(len(paths), 0)}
    held = held_out_real(paths, 0)
    assert len(fitted) == 60 and len(held) == 60 and fitted.isdisjoint(held)
    assert check["extra"]["held_out"] and check["n_real"] == 60
    monkeypatch.setattr(testlike_fit, "MAX_REAL", 400)  # every real clip in the fit: nothing left to judge on
    for name in (TESTLIKE_FILE, META_FILE):
        (ws.models_dir / name).unlink()
    ensure_testlike(ws, comp, folds, per_fold=10, seed=0)
    check = load_testlike_meta(ws).domain_check
    assert check["extra"]["held_out"] is False and check["n_real"] == 120
    assert not shown_faithful({**check, "auc_interval": [0.5, 0.5]})  # in-sample never counts as shown
