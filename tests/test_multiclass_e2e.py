"""A multiclass toy set through finetune → oof → stack → score (real models, ONNX Runtime, LightGBM)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from multiclass_toy import CLASSES, write_tone_competition

pytestmark = pytest.mark.slow
runner = CliRunner()


def ens(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    return write_tone_competition(tmp_path_factory.mktemp("tones") / "comp", n_per_class=8)


def test_toy_multiclass_finetune_oof_stack_score(tones, tmp_path):
    ws = tmp_path / "ws"
    for model, name in (("features-logreg", "lr"), ("features-lgbm", "gbm")):
        out = ens("finetune", model, "--data", tones, "--folds", "3", "--epochs", "1", "--max-seconds", "1",
                  "--name", name, "-w", ws).output
        assert "CV logloss" in out and "accuracy" in out
    manifest = json.loads((ws / "models" / "lr" / "run.json").read_text())
    assert manifest["task"] == "multiclass" and manifest["metrics"]["cv"]["metric"] == "logloss"
    assert not (ws / "models" / "lr" / "oof_testlike.parquet").exists()  # no test-like set for classes
    for fold in manifest["folds"]:
        assert fold["onnx"]["parity_max_abs_diff"] <= 1e-4
    before = pd.read_parquet(ws / "models" / "gbm" / "test.parquet")
    assert np.abs(before[CLASSES].sum(axis=1) - 1).max() < 1e-5
    out = ens("oof", "gbm", "--provider", "cpu", "-w", ws).output
    assert "testlike" not in out
    after = pd.read_parquet(ws / "models" / "gbm" / "test.parquet")
    assert np.abs(after[CLASSES].to_numpy() - before[CLASSES].to_numpy()).max() <= 1e-6
    out = ens("stack", "lr", "gbm", "--compare", "--write", "--metric", "logloss", "--name", "pick", "-w", ws).output
    assert "nested CV (logloss)" in out and "rank" not in out
    sub = pd.read_csv(ws / "submissions" / "pick.csv")
    assert list(sub.columns) == ["id", *CLASSES] and np.abs(sub[CLASSES].sum(axis=1) - 1).max() < 1e-6
    scored = json.loads(ens("score", ws / "submissions" / "pick.csv", "--answers", tones / "test_answers.csv",
                            "--format", "json").output)
    assert scored["labels"]["*"]["accuracy"] >= 0.5  # three pitches, six test clips: chance is 1/3
    board = json.loads(ens("board", "--format", "json", "-w", ws).output)
    shown = {r["name"] for r in board["rows"]} | {w for r in board["rows"] for w in (r.get("written_as") or "").split(", ")}
    assert shown >= {"lr", "gbm", "pick"}  # a one-run pick is shown on its run's row
    assert all(r["accuracy"] is not None for r in board["rows"])
    ens("report", "--no-restack", "-w", ws)
    page = (ws / "report" / "index.md").read_text()
    assert (ws / "report" / "confusion.png").is_file() and "Per-class scores" in page


def test_metric_auc_picks_another_best_epoch_and_softmax_rows_sum_to_one_in_onnx(tones, tmp_path, monkeypatch):
    """Validation sees constructed predictions: epoch 0 puts every true class barely on top (AUC 1, log
    loss high), epoch 1 is confident with one row wrong (lower log loss, AUC below 1). The log-mel CNN's
    softmax head is exported: ONNX Runtime's rows sum to 1 and match torch."""
    import onnxruntime as ort

    import ensemble.backbones.predict as predict_module
    from ensemble.artifacts.competition import Competition
    from ensemble.artifacts.workspace import Workspace
    from ensemble.commands.finetune import FinetuneOptions, finetune

    original = predict_module.predict_split
    folds = {}

    def constructed(predict, waves, count, *args, **kwargs):
        if inspect.stack()[1].function != "validate":
            return original(predict, waves, count, *args, **kwargs)
        ctx = inspect.stack()[1].frame.f_locals
        y = ctx["data"].targets[ctx["data"].held_idx].astype(np.float64)
        epoch = folds.setdefault(ctx["fold"], [])
        epoch.append(len(epoch))
        if len(epoch) == 1:
            k = y.shape[1]
            return (1 / k - 0.01) + 0.01 * k * y
        p = 0.02 + 0.94 * y
        p[0] = np.roll(p[0], 1)  # one confident mistake
        return p

    monkeypatch.setattr(predict_module, "predict_split", constructed)
    comp = Competition.load(tones)
    best, runs = {}, {}
    for metric in (None, "auc"):
        folds.clear()
        runs[metric] = run = finetune(Workspace(tmp_path / f"ws-{metric}"), comp,
                       FinetuneOptions(model="logmel-cnn", name="cnn", folds=2, epochs=2, batch_size=8,
                                       max_seconds=1.0, metric=metric))
        best[metric] = [f.fields["best_epoch"] for f in run.manifest.folds]
    assert best == {None: [1, 1], "auc": [0, 0]}
    run = runs["auc"]
    assert max(f.onnx.parity_max_abs_diff for f in run.manifest.folds) <= 1e-4
    session = ort.InferenceSession(str(run.dir / "fold0" / "model.onnx"), providers=["CPUExecutionProvider"])
    waves = np.random.default_rng(0).normal(0, 0.1, (3, 16000)).astype(np.float32)
    probs = session.run(None, {session.get_inputs()[0].name: waves})[0]
    assert probs.shape == (3, 3) and np.abs(probs.sum(axis=1) - 1).max() < 1e-5
    for frame in (run.oof(), run.test()):
        assert np.abs(frame[CLASSES].sum(axis=1) - 1).max() < 1e-6
