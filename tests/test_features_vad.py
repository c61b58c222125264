"""`ens features vad`: Silero VAD meta-features (real ONNX weights, ONNX Runtime) as a feature set, and
`ens stack --meta` using them, recorded in the sidecar, refused by `ens export`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import write_predictions
from ensemble.cli import app
from ensemble.demo import DemoSpec, generate_competition

runner = CliRunner()


def ens(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    return generate_competition(tmp_path_factory.mktemp("comp") / "data",
                                DemoSpec(n_train=30, n_test=8, n_unlabeled=2, seed=3))


@pytest.fixture(scope="module")
def featured(tmp_path_factory, competition) -> tuple[Path, str]:
    """A workspace with 3 folds, 4 test-like clips per fold, and `ens features vad`'s feature set (and its output)."""
    from ensemble.artifacts.competition import Competition
    from ensemble.artifacts.folds import ensure_folds
    from ensemble.artifacts.testlike_set import ensure_testlike
    from ensemble.artifacts.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("featured") / "ws")
    comp = Competition.load(ws.data_dir(competition))
    ensure_testlike(ws, comp, ensure_folds(ws, comp, 3), per_fold=4, fit=False)
    result = ens("features", "vad", "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    return ws.root, result.output


@pytest.fixture
def ws_with_features(featured, workspace) -> Path:
    shutil.copytree(featured[0], workspace, dirs_exist_ok=True)
    return workspace


def test_clip_features_hear_voices_not_silence_and_measure_duration_and_level(competition):
    from ensemble.audio.load import load_audio
    from ensemble.audio.vad import FEATURES, SR, clip_features

    train = pd.read_csv(competition / "train.csv")
    voice = load_audio(competition / train["path"].iloc[0], SR)
    silence = np.zeros(SR * 2, np.float32)
    x = dict(zip(FEATURES, clip_features([voice, silence, voice * 0.1]).T))
    assert x["vad_voiced_fraction"][0] > 0.2 and x["vad_voiced_fraction"][1] == 0.0
    assert x["vad_longest_voiced_s"][0] > 0.2 and x["vad_peak"][1] < 0.5
    assert x["duration_s"][0] == pytest.approx(len(voice) / SR) and x["duration_s"][1] == 2.0
    assert x["level_db"][0] - x["level_db"][2] == pytest.approx(20.0, abs=1e-6) and x["level_db"][1] == -100.0
    again = clip_features([voice, silence, voice * 0.1])
    assert np.array_equal(again, np.column_stack(list(x.values())))  # deterministic


def _import_runs(tmp_path: Path, workspace: Path, competition: Path) -> None:
    """Two imported runs with OOF, test and test-like predictions on the workspace's folds and clips."""
    folds = pd.read_parquet(workspace / "models" / "folds.parquet")
    clips = pd.read_parquet(workspace / "models" / "testlike.parquet")
    test_ids = pd.read_csv(competition / "sample_submission.csv")["id"].tolist()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        def noisy(y):
            return np.clip(0.5 + 0.3 * (y - 0.5) + 0.2 * rng.standard_normal(y.shape), 0.01, 0.99)

        y, y_tl = folds[["fake", "real"]].to_numpy(float), clips[["fake", "real"]].to_numpy(float)
        oof = write_predictions(tmp_path / f"{name}-oof.csv", folds["id"].tolist(), noisy(y))
        tl = write_predictions(tmp_path / f"{name}-tl.csv", clips["id"].tolist(), noisy(y_tl))
        test = write_predictions(tmp_path / f"{name}-test.csv", test_ids, rng.random((len(test_ids), 2)))
        result = ens("import", name, "--test", test, "--oof", oof, "--testlike", tl)
        assert result.exit_code == 0, result.output


def test_features_vad_then_stack_with_meta(competition, featured, tmp_path, ws_with_features):
    from ensemble.artifacts.io import file_sha256
    from ensemble.audio.vad import FEATURES, model_path

    workspace = ws_with_features
    assert "feature set vad: 6 columns for 30 train, 8 test, 12 testlike clips" in featured[1]
    folder = workspace / "models" / "features" / "vad"
    manifest = json.loads((folder / "features.json").read_text())
    assert manifest["labels_used"] is False and manifest["columns"] == list(FEATURES)
    assert manifest["model"]["sha256"] == file_sha256(model_path())
    assert manifest["versions"]["silero-vad"] and manifest["versions"]["onnxruntime"]
    folds = pd.read_parquet(workspace / "models" / "folds.parquet")
    clips = pd.read_parquet(workspace / "models" / "testlike.parquet")
    train = pd.read_parquet(folder / "train.parquet")
    assert train["id"].tolist() == folds["id"].astype(str).tolist()
    assert pd.read_parquet(folder / "testlike.parquet")["id"].tolist() == clips["id"].astype(str).tolist()
    test = pd.read_parquet(folder / "test.parquet")
    assert test["id"].tolist() == pd.read_csv(competition / "sample_submission.csv")["id"].astype(str).tolist()
    assert (test["duration_s"] == 5.0).all() and train["vad_voiced_fraction"].between(0, 1).all()
    again = ens("features", "vad")
    assert again.exit_code == 1 and "pass --force" in again.output

    _import_runs(tmp_path, workspace, competition)
    wrong = ens("stack", "a", "b", "--method", "mean", "--meta", "vad")
    assert wrong.exit_code == 1 and "method 'mean' takes no meta-features; use one of logreg, lgbm" in wrong.output
    unknown = ens("stack", "a", "b", "--method", "logreg", "--meta", "nope")
    assert unknown.exit_code == 1 and "feature set 'nope' not found" in unknown.output
    assert "known: vad" in unknown.output
    done = ens("stack", "a", "b", "--method", "logreg", "--meta", "vad", "--name", "m")
    assert done.exit_code == 0, done.output
    assert "meta-features beside the logits: vad:vad_voiced_fraction" in done.output  # the recipe in words
    recipe = json.loads((workspace / "submissions" / "m.json").read_text())["recipe"]
    assert recipe["meta_features"]["columns"] == [f"vad:{c}" for c in FEATURES]
    assert recipe["meta_features"]["sets"][0]["model_sha256"] == manifest["model"]["sha256"]
    assert recipe["state"]["blender"]["meta"] == len(FEATURES)
    plain = ens("stack", "a", "b", "--method", "logreg", "--name", "p")  # auto: an explicit method takes none
    assert plain.exit_code == 0
    assert json.loads((workspace / "submissions" / "p.json").read_text())["recipe"]["meta_features"] is None
    refused = ens("export", "m")
    assert refused.exit_code == 1 and "blends per-clip meta-features (vad:vad_voiced_fraction" in refused.output
    assert not (workspace / "exports").exists()
    compared = ens("stack", "a", "b", "--compare", "--calibrate", "none")  # tiny data: no calibrator choice
    assert compared.exit_code == 0, compared.output
    assert "logreg+meta" in compared.output and "lgbm+meta" in compared.output
    assert "logreg+meta" not in ens("stack", "a", "b", "--compare", "--calibrate", "none", "--meta", "none").output


def test_stale_or_damaged_feature_sets_are_refused(competition, tmp_path, ws_with_features):
    workspace = ws_with_features
    _import_runs(tmp_path, workspace, competition)
    folder = workspace / "models" / "features" / "vad"
    manifest_path = folder / "features.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "folds_fingerprint": "0" * 64}))
    stale = ens("stack", "a", "b", "--method", "lgbm", "--meta", "vad")
    assert stale.exit_code == 1 and "feature set 'vad' was made for other folds" in stale.output
    manifest_path.write_text(json.dumps({**manifest, "labels_used": True}))
    labelled = ens("stack", "a", "b", "--method", "lgbm", "--meta", "vad")
    assert labelled.exit_code == 1 and "made with labels" in labelled.output
    manifest_path.write_text(json.dumps(manifest))
    train = pd.read_parquet(folder / "train.parquet")
    train.iloc[1:].to_parquet(folder / "train.parquet")
    missing = ens("stack", "a", "b", "--method", "lgbm", "--meta", "vad")
    first = train["id"].iloc[0]
    assert missing.exit_code == 1 and f"id {first!r} from models/folds.parquet is missing" in missing.output
    assert not list((workspace / "submissions").glob("*.csv"))
