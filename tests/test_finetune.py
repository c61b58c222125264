"""`ens finetune` and `ens oof` end to end on a small generated competition (real models, ONNX, ORT)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.artifacts.competition import Competition
from ensemble.demo import DemoSpec, generate_competition
from ensemble.commands.finetune import FinetuneOptions, finetune
from ensemble.artifacts.workspace import Workspace

pytestmark = pytest.mark.slow
runner = CliRunner()
FAST = dict(folds=3, epochs=1, batch_size=8, max_seconds=1.0, testlike_per_fold=6)


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    return generate_competition(tmp_path_factory.mktemp("comp") / "data",
                                DemoSpec(n_train=48, n_test=9, n_unlabeled=3, seed=5))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, competition) -> Path:
    """A workspace with one finished tiny-wav2vec2 run, made through the CLI."""
    ws = tmp_path_factory.mktemp("ws")
    result = runner.invoke(app, ["finetune", "tiny-wav2vec2", "--data", str(competition), "--folds", "3", "--epochs", "1",
                                 "--batch-size", "8", "--max-seconds", "1", "--testlike-per-fold", "6", "--name", "w2v",
                                 "-w", str(ws)])
    assert result.exit_code == 0, result.output
    assert "ONNX parity" in result.output
    return ws


def test_finetune_writes_the_run_contract(finished, competition):
    comp = Competition.load(competition)
    run = finished / "models" / "w2v"
    manifest = json.loads((run / "run.json").read_text())
    assert sorted(p.name for p in run.glob("fold*/model.onnx")) == ["model.onnx"] * 3
    oof = pd.read_parquet(run / "oof.parquet")
    assert sorted(oof["id"]) == sorted(comp.train["id"]) and oof["id"].is_unique
    test = pd.read_parquet(run / "test.parquet")
    assert len(test) == 3 * len(comp.test_ids) and set(test.groupby("fold")["id"].nunique()) == {len(comp.test_ids)}
    folds = pd.read_parquet(finished / "models" / "folds.parquet")
    assert (oof.set_index("id").loc[folds["id"], "fold"].to_numpy() == folds["fold"].to_numpy()).all()
    assert set(manifest["metrics"]["cv"]) == {"score", "auc", "brier", "ece"}
    assert manifest["metrics"]["cv_testlike"]["score"] > 0
    assert len(manifest["metrics"]["per_fold"]) == 3
    for fold in manifest["folds"]:
        assert fold["onnx"]["parity_max_abs_diff"] <= 1e-4
    assert manifest["data"]["train.csv"] and manifest["versions"]["torch"] and manifest["folds_fingerprint"]
    assert (run / "oof_testlike.parquet").is_file()


def test_oof_with_onnx_runtime_reproduces_the_predictions(finished, competition, tmp_path):
    ws = tmp_path / "copy"
    shutil.copytree(finished, ws)
    before = {f: pd.read_parquet(ws / "models" / "w2v" / f) for f in ("oof.parquet", "test.parquet")}
    litter = ws / "models" / "w2v" / ".oof.parquet.a1b2c3d4.tmp"  # what an `ens oof` killed mid-write leaves
    litter.write_bytes(b"PAR1")
    result = runner.invoke(app, ["oof", "w2v", "--provider", "cpu", "-w", str(ws), "--data", str(competition)])
    assert result.exit_code == 0, result.output
    assert not litter.exists()
    for name, old in before.items():
        new = pd.read_parquet(ws / "models" / "w2v" / name)
        merged = old.merge(new, on=["id", "fold"], suffixes=("_finetune", "_oof"))
        assert len(merged) == len(old) == len(new)
        for label in ("fake", "real"):  # trained on a CPU, finetune predicted with the same ONNX graph
            assert (merged[f"{label}_finetune"] == merged[f"{label}_oof"]).all()
    manifest = json.loads((ws / "models" / "w2v" / "run.json").read_text())
    assert manifest["onnxruntime"]["provider"] == "CPUExecutionProvider"
    assert max(manifest["onnxruntime"]["max_abs_diff_to_previous"].values()) == 0.0


def test_oof_decodes_each_clip_once_per_run_and_the_cache_changes_no_prediction(finished, competition, tmp_path,
                                                                                monkeypatch):
    """Three folds predict the test set three times, from one decode per clip; a warm cache decodes
    nothing; with the cache off the predictions are the same to the bit."""
    from collections import Counter

    import ensemble.audio.load as load_module
    from ensemble.commands.oof import run_oof

    decodes: Counter = Counter()
    original = load_module.decode_file
    monkeypatch.setattr(load_module, "decode_file", lambda path: (decodes.update([str(path)]), original(path))[1])
    comp = Competition.load(competition)
    ws = Workspace(tmp_path / "copy")
    shutil.copytree(finished, ws.root)
    shutil.rmtree(ws.root / "cache")  # finetune filled it; start cold
    files = {f: ws.run_dir("w2v") / f for f in ("oof.parquet", "test.parquet", "oof_testlike.parquet")}
    run_oof(ws, comp, "w2v", provider="cpu")
    cold = {f: pd.read_parquet(p) for f, p in files.items()}
    test_paths = {str(comp.audio_path(p)) for p in comp.test["path"]}
    assert test_paths <= set(decodes) and max(decodes.values()) == 1
    decodes.clear()
    run_oof(ws, comp, "w2v", provider="cpu")
    assert not decodes  # warm: every wave read from the cache
    monkeypatch.setenv("ENS_AUDIO_CACHE", "off")
    run_oof(ws, comp, "w2v", provider="cpu")
    assert max(decodes.values()) == 1  # off: still once per run (the in-memory stores span the folds)
    for name, path in files.items():
        pd.testing.assert_frame_equal(pd.read_parquet(path), cold[name], check_exact=True)


def test_no_leakage_training_rows_and_testlike_sources(competition, tmp_path, monkeypatch, sampled_rows):
    """Spy on every training example and every test-like clip a fold model predicts."""
    import ensemble.commands.finetune as fold_job

    used = sampled_rows
    rendered: dict[int, list[str]] = {}
    import ensemble.audio.testlike_render as testlike

    real_render = testlike.render_testlike

    def spy_render(recipe, load, sr, *rest):
        rendered.setdefault(spy_render.fold, []).append(recipe)
        return real_render(recipe, load, sr, *rest)

    monkeypatch.setattr(testlike, "render_testlike", spy_render)
    real_run_fold = fold_job.run_fold

    def run_fold(ctx, fold):
        spy_render.fold = fold
        return real_run_fold(ctx, fold)

    monkeypatch.setattr(fold_job, "run_fold", run_fold)
    ws, comp = Workspace(tmp_path / "ws"), Competition.load(competition)
    run = finetune(ws, comp, FinetuneOptions(model="logmel-cnn", name="cnn", **FAST, augment="default,p_mix=0.9"))
    folds = pd.read_parquet(ws.models_dir / "folds.parquet")
    clips = pd.read_parquet(ws.models_dir / "testlike.parquet")
    oof = run.oof()
    for k in range(3):
        held = set(np.flatnonzero(folds["fold"].to_numpy() == k))
        assert used[k] and not used[k] & held, f"fold {k} trained on its held-out rows"
        assert set(oof[oof["fold"] == k]["id"]) == set(folds["id"].to_numpy()[sorted(held)])
        held_ids = set(folds["id"].to_numpy()[sorted(held)])
        own = clips[clips["fold"] == k]
        assert sorted(rendered[k]) == sorted(own["recipe"])
        for sources in own["sources"]:
            assert set(json.loads(sources)) <= held_ids
    assert (clips["n_voices"] == 2).any()  # mixtures really happen


def test_interrupted_run_resumes_to_the_same_predictions(competition, tmp_path):
    comp = Competition.load(competition)
    opts = dict(model="logmel-cnn", name="cnn", **{**FAST, "epochs": 2})
    straight = finetune(Workspace(tmp_path / "a"), comp, FinetuneOptions(**opts))

    class Stop(Exception):
        pass

    def interrupt(event):
        if event.get("stage") == "epoch" and event["fold"] == 1 and event["epoch"] == 0:
            raise Stop

    ws = Workspace(tmp_path / "b")
    with pytest.raises(Stop):
        finetune(ws, comp, FinetuneOptions(**opts), progress=interrupt)
    assert (ws.run_dir("cnn") / "fold0" / "fold.json").is_file()
    assert not (ws.run_dir("cnn") / "fold1" / "fold.json").is_file()
    events = []
    resumed = finetune(ws, comp, FinetuneOptions(**opts), progress=events.append)
    assert {"stage": "fold_skipped", "fold": 0} in events
    assert any(e.get("stage") == "resume" for e in events)
    for name in ("oof", "test", "oof_testlike"):
        a, b = getattr(straight, name)(), getattr(resumed, name)()
        pd.testing.assert_frame_equal(a, b)


def test_resume_with_other_options_is_refused(competition, tmp_path):
    comp = Competition.load(competition)
    ws = Workspace(tmp_path / "ws")
    finetune(ws, comp, FinetuneOptions(model="logmel-cnn", name="cnn", only_folds=[0], **FAST))
    result = runner.invoke(app, ["finetune", "logmel-cnn", "--name", "cnn", "--fold", "1", "--folds", "3",
                                 "--epochs", "2", "--batch-size", "8", "--max-seconds", "1", "--testlike-per-fold", "6", "-w", str(ws.root),
                                 "--data", str(competition)])
    # the refusal is the one error line (the task line ens decided comes before it once audio is read)
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith(" ")]
    assert result.exit_code == 1 and lines[-1].startswith("Error: ") and "epochs" in lines[-1], result.output
    assert all(line.startswith("task: ") for line in lines[:-1]), result.output


def test_force_refuses_a_run_folder_ens_did_not_write(competition, tmp_path):
    """`--force` used to rmtree whatever `models/NAME/` held."""
    ws = Workspace(tmp_path / "ws")
    mine = ws.models_dir / "cnn"
    mine.mkdir(parents=True)
    (mine / "thesis.txt").write_text("my own work")
    result = runner.invoke(app, ["finetune", "logmel-cnn", "--name", "cnn", "--folds", "3", "--epochs", "1",
                                 "--batch-size", "8", "--max-seconds", "1", "--testlike-per-fold", "6", "--force",
                                 "-w", str(ws.root), "--data", str(competition)])
    assert result.exit_code == 1 and "was not written by ens" in result.output.splitlines()[-1], result.output
    assert (mine / "thesis.txt").read_text() == "my own work"


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


W2V_AGAIN = ["finetune", "tiny-wav2vec2", "--folds", "3", "--epochs", "1", "--batch-size", "8", "--max-seconds", "1",
             "--testlike-per-fold", "6", "--name", "w2v"]


def test_a_forced_finetune_that_fails_puts_the_old_run_back(finished, competition, tmp_path, monkeypatch):
    """`--force` used to delete the old run before training the new one: a failure lost both."""
    import ensemble.commands.finetune as finetune_module

    ws = tmp_path / "copied"
    shutil.copytree(finished, ws)
    before = _tree(ws / "models" / "w2v")

    def fails(ctx, k):
        (ctx.run_dir / f"fold{k}").mkdir(parents=True, exist_ok=True)  # the new run has begun
        raise RuntimeError("out of memory")

    monkeypatch.setattr(finetune_module, "run_fold", fails)
    result = runner.invoke(app, [*W2V_AGAIN, "--force", "-w", str(ws), "--data", str(competition)])
    assert result.exit_code != 0
    assert _tree(ws / "models" / "w2v") == before
    assert list((ws / "models").glob(".w2v.old-*")) == []


def test_the_run_a_killed_forced_finetune_had_moved_aside_is_put_back(finished, competition, tmp_path):
    import subprocess

    ws = tmp_path / "copied"
    shutil.copytree(finished, ws)
    models = ws / "models"
    before = _tree(models / "w2v")
    dead = subprocess.Popen(["true"])
    dead.wait()
    (models / "w2v").rename(models / f".w2v.old-{dead.pid}")  # what `--force` leaves when killed mid-training
    (models / "w2v" / "fold0").mkdir(parents=True)
    shutil.copy(models / f".w2v.old-{dead.pid}" / "options.json", models / "w2v" / "options.json")
    result = runner.invoke(app, [*W2V_AGAIN, "-w", str(ws), "--data", str(competition)])
    assert result.exit_code == 1 and "exists; pass --force" in result.output, result.output
    assert "restored" in result.output
    assert _tree(models / "w2v") == before
    assert list(models.glob(".w2v.old-*")) == []
