"""The pretrained speaker encoder behind `features-dvec-lgbm`: real weights (Resemblyzer's file, read with
weights_only), ONNX parity, and d-vectors that tell recorded voices from synthesized ones."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ensemble.backbones import voice_embedding
from ensemble.backbones.voice_embedding import VoiceEmbedding
from ensemble.errors import ConfigError

SAMPLE = Path(__file__).parents[1] / "examples" / "voices-src-sample"


def _waves(n: int, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, int(16000 * seconds))) * rng.uniform(0.001, 0.3, (n, 1))).astype(np.float32)


def test_dvectors_are_unit_vectors_level_free_and_the_onnx_graph_matches_torch():
    import onnxruntime as ort

    from ensemble.backbones.classical import _export_frontend
    from ensemble.backbones.features import ClipFeatures, FeatureSpec, clip_features

    module = ClipFeatures(FeatureSpec(embedding="dvector")).eval()
    assert "resemblyzer" not in sys.modules  # only its weights file is read, never its code
    waves = _waves(3, 3.3, 0)
    x = clip_features(module, waves)
    dvec = x[:, -256:]
    assert x.shape == (3, len(module.spec.names())) and np.isfinite(x).all()
    np.testing.assert_allclose(np.linalg.norm(dvec, axis=1), 1.0, atol=1e-5)
    quiet = waves[:1] / np.abs(waves[:1]).max() * 1e-3  # both below −30 dBFS: levelled up alike
    with torch.no_grad():
        a, b = (VoiceEmbedding()(torch.from_numpy(w)).numpy() for w in (quiet, quiet * 5))
    np.testing.assert_allclose(a, b, atol=1e-4)
    session = ort.InferenceSession(_export_frontend(module).SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (waves, _waves(2, 5.0, 1), _waves(2, 1.6, 2)):  # the time axis stays dynamic
        assert np.abs(session.run(None, {"input_values": batch})[0] - clip_features(module, batch)).max() < 1e-3


def test_a_missing_weights_file_or_too_short_clips_are_refused_before_any_audio(monkeypatch):
    from ensemble.backbones.classical import check_classical_options

    check_classical_options("features-dvec-lgbm", 5.0)
    check_classical_options("features-lgbm", 0.5)  # the summary features take any length
    with pytest.raises(ConfigError, match="at least 1.59"):
        check_classical_options("features-dvec-lgbm", 1.0)
    with pytest.raises(ConfigError, match="raise --max-seconds"):
        VoiceEmbedding()(torch.zeros(1, 16000))
    monkeypatch.setattr(voice_embedding.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps resemblyzer"):
        check_classical_options("features-dvec-lgbm", 5.0)


@pytest.mark.slow
def test_pretrained_dvectors_tell_recorded_voices_from_synthesized_ones_across_speakers():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    from ensemble.audio.clip import fit_length
    from ensemble.audio.load import load_audio

    train = pd.read_csv(SAMPLE / "train.csv")
    waves = torch.from_numpy(np.stack([fit_length(load_audio(SAMPLE / p, 16000), 48000) for p in train["path"]]))
    human = (train["label"] == "human").to_numpy()

    def grouped_auc(module: VoiceEmbedding) -> float:
        with torch.no_grad():
            x = module(waves).numpy()
        p = cross_val_predict(LogisticRegression(max_iter=1000), x, human, cv=GroupKFold(4), groups=train["group"],
                              method="predict_proba")[:, 1]
        return float(roc_auc_score(human, p))

    assert grouped_auc(VoiceEmbedding()) > 0.8  # speakers and voices of the held-out folds never seen
    torch.manual_seed(0)
    scrambled = VoiceEmbedding()
    for weight in scrambled.encoder.parameters():
        torch.nn.init.normal_(weight, std=0.1)
    assert grouped_auc(scrambled) < 0.7  # the same network without its training


@pytest.mark.slow
def test_features_dvec_lgbm_keeps_the_run_contract(tmp_path):
    """`ens finetune features-dvec-lgbm`: ONNX folds with parity, OOF for every train row, the d-vector in
    the recorded feature spec; `--max-seconds` below one window is refused before any fold runs."""
    from ensemble.artifacts.competition import Competition
    from ensemble.artifacts.workspace import Workspace
    from ensemble.commands.finetune import FinetuneOptions, finetune
    from ensemble.demo import DemoSpec, generate_competition

    data = generate_competition(tmp_path / "data", DemoSpec(n_train=36, n_test=6, n_unlabeled=3, seed=5))
    ws, comp = Workspace(tmp_path / "ws"), Competition.load(data)
    opts = dict(folds=3, epochs=1, batch_size=8, testlike_per_fold=4)
    with pytest.raises(ConfigError, match="--max-seconds 1"):
        finetune(ws, comp, FinetuneOptions(model="features-dvec-lgbm", name="short", max_seconds=1.0, **opts))
    assert not (ws.models_dir / "short").exists()
    run = finetune(ws, comp, FinetuneOptions(model="features-dvec-lgbm", name="dvec", max_seconds=2.0, **opts))
    assert sorted(run.oof()["id"]) == sorted(comp.train["id"])
    for fold in run.manifest.folds:
        assert fold.onnx.parity_max_abs_diff <= 1e-4
        assert fold.model["config"]["features"]["embedding"] == "dvector"
        assert fold.model["n_features"] == 281 + 256
