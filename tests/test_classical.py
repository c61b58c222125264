"""Classical families (`features-lgbm`, `features-logreg`, `features-svm`): features, one ONNX graph, the
finetune/oof contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemble.artifacts.competition import Competition
from ensemble.artifacts.workspace import Workspace
from ensemble.cli import app
from ensemble.commands.finetune import FinetuneOptions, finetune
from ensemble.demo import DemoSpec, generate_competition

runner = CliRunner()
FAST = dict(folds=3, epochs=2, batch_size=8, max_seconds=1.0, testlike_per_fold=6)


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    return generate_competition(tmp_path_factory.mktemp("comp") / "data",
                                DemoSpec(n_train=48, n_test=9, n_unlabeled=3, seed=5))


def _waves(n: int, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, int(16000 * seconds))) * rng.uniform(0.01, 0.3, (n, 1))).astype(np.float32)


def test_features_are_finite_named_and_the_onnx_front_end_matches_torch():
    import onnxruntime as ort

    from ensemble.backbones.classical import _export_frontend
    from ensemble.backbones.features import ClipFeatures, FeatureSpec, clip_features

    spec = FeatureSpec()
    module = ClipFeatures(spec).eval()
    waves = _waves(3, 1.3, 0)
    waves[2, 8000:] = 0.0  # a padded clip: silence must not make NaN or inf
    x = clip_features(module, waves)
    assert x.shape == (3, len(spec.names())) and np.isfinite(x).all()
    session = ort.InferenceSession(_export_frontend(module).SerializeToString(), providers=["CPUExecutionProvider"])
    other_length = _waves(2, 0.77, 1)  # exported on 1-s clips: the time axis must stay dynamic
    for batch in (waves, other_length):
        onnx_x = session.run(None, {"input_values": batch})[0]
        assert np.abs(onnx_x - clip_features(module, batch)).max() < 1e-3
    loud = clip_features(module, waves * 10)
    level = spec.names().index("rms_db")
    assert np.allclose(loud[:, level] - x[:, level], 20.0, atol=0.01)  # the level feature measures level


@pytest.mark.parametrize("estimator", ["lgbm", "logreg", "svm"])
def test_one_onnx_graph_matches_the_estimators(estimator, tmp_path):
    from ensemble.backbones.classical import build_classical
    from ensemble.backbones.ort import OnnxClassifier

    waves = _waves(120, 1.0, 2)
    level = np.sqrt((waves ** 2).mean(axis=1))
    y = np.stack([level > np.median(level), np.arange(120) % 3 == 0], axis=1).astype(np.float32)
    clf = build_classical(f"features-{estimator}", ["fake", "real"])
    clf.fit(clf.features(waves), y, seed=0)
    path = tmp_path / "model.onnx"
    clf.export_onnx(path, {"run_id": "r"})
    model = OnnxClassifier(path, provider="cpu")
    assert model.labels == ["fake", "real"] and model.input_names == ["input_values"]
    probe = _waves(5, 1.7, 3)
    p_onnx = model.predict_proba(model.preprocess(list(probe)))
    assert p_onnx.shape == (5, 2)
    assert np.abs(p_onnx - clf.predict_proba_native(clf.features(probe))).max() <= 1e-4
    p_train = model.predict_proba(model.preprocess(list(waves)))
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y[:, 0], p_train[:, 0]) > 0.9  # the level-driven label is learnt
    assert json.loads(model.metadata["features"])["version"] == clf.config.spec.version


@pytest.mark.slow
def test_finetune_and_oof_contract_without_leakage(competition, tmp_path, sampled_rows):
    """features-lgbm through `ens finetune` and `ens oof`: the run contract, parity, no held-out row seen."""
    used = sampled_rows
    ws, comp = Workspace(tmp_path / "ws"), Competition.load(competition)
    run = finetune(ws, comp, FinetuneOptions(model="features-lgbm", name="feat", **FAST))
    folds = pd.read_parquet(ws.models_dir / "folds.parquet")
    for k in range(3):
        held = set(np.flatnonzero(folds["fold"].to_numpy() == k))
        assert used[k] and not used[k] & held, f"fold {k} trained on its held-out rows"
    manifest = run.manifest
    assert sorted(p.name for p in run.dir.glob("fold*/model.onnx")) == ["model.onnx"] * 3
    assert not list(run.dir.rglob("*.pkl")) and not list(run.dir.rglob("*.joblib"))
    oof = run.oof()
    assert sorted(oof["id"]) == sorted(comp.train["id"])
    for fold in manifest.folds:
        assert fold.onnx.parity_max_abs_diff <= 1e-4
        assert fold.fields["examples"] == 2 * fold.fields["train_rows"]
        assert fold.model["config"]["features"]["version"]
    before = {f: pd.read_parquet(run.dir / f) for f in ("oof.parquet", "test.parquet", "oof_testlike.parquet")}
    result = runner.invoke(app, ["oof", "feat", "--provider", "cpu", "-w", str(ws.root), "--data", str(competition)])
    assert result.exit_code == 0, result.output
    for name, old in before.items():
        new = pd.read_parquet(run.dir / name)
        merged = old.merge(new, on=["id", "fold"], suffixes=("_a", "_b"), validate="one_to_one")
        assert len(merged) == len(old) == len(new)
        for label in comp.labels:
            assert np.abs(merged[f"{label}_a"] - merged[f"{label}_b"]).max() <= 1e-4
    again = finetune(ws, comp, FinetuneOptions(model="features-lgbm", name="feat", **FAST, only_folds=[0]))
    assert again is not None  # finished folds are kept: a repeated call only reassembles


def test_classical_families_are_told_apart_from_neural_ones():
    from ensemble.backbones.classical import ClassicalConfig, FeatureClassifier
    from ensemble.backbones.families import is_classical
    from ensemble.errors import ConfigError

    assert is_classical("features-lgbm") and is_classical("features-logreg") and is_classical("features-svm")
    assert not is_classical("logmel-cnn") and not is_classical("facebook/wav2vec2-base")
    with pytest.raises(ConfigError, match="classical estimator"):
        FeatureClassifier(ClassicalConfig("features-x", "svm-nope"), "x", ["fake", "real"])


def _voice(pitches_hz: list[float], seconds: float = 1.2, sr: int = 16000) -> np.ndarray:
    """A harmonic voice whose pitch steps through `pitches_hz` in equal parts (a held note: one pitch)."""
    f = np.repeat(np.asarray(pitches_hz, dtype=np.float64), int(sr * seconds) // len(pitches_hz))
    phase = 2 * np.pi * np.cumsum(f) / sr
    return (0.1 * sum(np.sin(k * phase) / k for k in range(1, 15))).astype(np.float32)


def test_pitch_features_find_the_pitch_and_how_it_moves():
    from ensemble.backbones.features import ClipFeatures, FeatureSpec, clip_features

    spec = FeatureSpec()
    col = {name: i for i, name in enumerate(spec.names())}
    held, high = _voice([120.0]), _voice([240.0])
    alternating = _voice([200.0, 320.0] * 12)  # a new pitch every 50 ms
    glide = _voice(list(np.linspace(150.0, 300.0, 60)))
    noise = _waves(1, held.size / 16000, 4)[0]
    third = held.size // 3
    broken = high.copy()  # a held note broken by a noise burst as loud: the burst has no pitch to step to
    broken[third:2 * third] = noise[third:2 * third] * (high.std() / noise.std())
    x = clip_features(ClipFeatures(spec).eval(), np.stack([held, high, alternating, glide, noise, broken]))
    assert np.exp(x[0, col["log_f0_mean"]]) == pytest.approx(120.0, rel=0.03)
    assert np.exp(x[1, col["log_f0_mean"]]) == pytest.approx(240.0, rel=0.03)
    assert x[0, col["log_f0_std"]] < 0.01 and x[0, col["f0_jump_mean"]] < 1e-3  # a held note
    assert x[2, col["log_f0_std"]] == pytest.approx(np.log(320 / 200) / 2, rel=0.1)  # two pitches, half the time each
    assert x[3, col["f0_jump_mean"]] > 2e-3 and x[3, col["log_f0_std"]] > 0.05  # a glide moves frame to frame
    assert x[4, col["cpp_max"]] < 0.5 * x[1, col["cpp_max"]]  # noise has no periodic peak
    assert x[5, col["f0_jump_mean"]] < 1e-3 and x[5, col["voiced_share"]] < 0.8  # steps only between voiced frames


@pytest.mark.slow
def test_a_run_resumed_across_a_features_upgrade_is_refused(competition, tmp_path):
    """Folds made with another feature definition (an older ens) never assemble into one run with new ones."""
    from ensemble.errors import ContractError

    ws, comp = Workspace(tmp_path / "ws"), Competition.load(competition)
    assert finetune(ws, comp, FinetuneOptions(model="features-logreg", name="mixed", **FAST, only_folds=[0])) is None
    fold0 = ws.run_dir("mixed") / "fold0" / "fold.json"
    info = json.loads(fold0.read_text())
    info["model"]["config"]["features"]["version"] = "clip-features-2"  # as the previous ens wrote it
    fold0.write_text(json.dumps(info))
    with pytest.raises(ContractError, match=r"fold 1 was made with another model than fold 0 \('config' differs"):
        finetune(ws, comp, FinetuneOptions(model="features-logreg", name="mixed", **FAST, only_folds=[1, 2]))
    assert not (ws.run_dir("mixed") / "run.json").exists()
