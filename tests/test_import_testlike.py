"""`ens import --testlike`: predictions made elsewhere for the workspace's test-like clips."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import LABELS, write_predictions
from ensemble.cli import app
from ensemble.artifacts.io import write_parquet

runner = CliRunner()


def ens(*args):
    return runner.invoke(app, [str(a) for a in args])


def _testlike_clips(workspace) -> pd.DataFrame:
    """The workspace's test-like recipes, made from its shared folds as `ens finetune` makes them."""
    from ensemble.audio.testlike_render import SourceRows, build_testlike_recipes

    folds = pd.read_parquet(workspace / "models" / "folds.parquet")
    clips = build_testlike_recipes(SourceRows(
        ids=folds["id"].tolist(), targets=folds[LABELS].to_numpy(dtype=float), folds=folds["fold"].to_numpy(),
        labels=LABELS, durations=np.full(len(folds), 3.0)), per_fold=8, seed=0)
    write_parquet(clips, workspace / "models" / "testlike.parquet")
    return clips


def test_imported_testlike_predictions_are_stacked_on(tmp_path, csv_competition, workspace):
    ids = pd.read_csv(csv_competition / "sample_submission.csv")["id"].tolist()
    train = pd.read_csv(csv_competition / "train.csv")
    rng = np.random.default_rng(0)
    oof = write_predictions(tmp_path / "oof.csv", train["id"].tolist(), rng.random((len(train), 2)))
    test = write_predictions(tmp_path / "test.csv", ids, rng.random((len(ids), 2)))
    no_clips = ens("import", "a", "--test", test, "--oof", oof, "--testlike", oof, "--data", csv_competition)
    assert no_clips.exit_code == 1 and "no test-like clips in this workspace yet" in no_clips.output
    assert ens("import", "a", "--test", test, "--oof", oof, "--data", csv_competition).exit_code == 0
    clips = _testlike_clips(workspace)
    truth = clips[LABELS].to_numpy(dtype=float)
    tl = write_predictions(tmp_path / "tl.csv", clips["id"].tolist()[::-1], np.clip(truth[::-1] * 0.8 + 0.1, 0, 1))
    result = ens("import", "b", "--test", test, "--oof", oof, "--testlike", tl)
    assert result.exit_code == 0, result.output
    manifest = json.loads((workspace / "models" / "b" / "run.json").read_text())
    assert manifest["metrics"]["cv_testlike"]["auc"] == 1.0
    stored = pd.read_parquet(workspace / "models" / "b" / "oof_testlike.parquet").set_index("id")
    assert (stored.loc[clips["id"], "fold"].to_numpy() == clips["fold"].to_numpy()).all()

    wrong = write_predictions(tmp_path / "wrong.csv", clips["id"].tolist()[1:], truth[1:])
    bad = ens("import", "c", "--test", test, "--oof", oof, "--testlike", wrong)
    assert bad.exit_code == 1 and "id 'TL_00000' from" in bad.output and "is missing (1 missing ids)" in bad.output
    assert not (workspace / "models" / "c").exists()
    alone = ens("import", "d", "--test", test, "--testlike", tl)
    assert alone.exit_code == 1 and "--testlike needs --oof" in alone.output


def test_usable_weights_fall_back_to_none_when_equal_or_concentrated():
    from ensemble.stack.inputs import usable_weights

    assert usable_weights(np.ones(100))[0] is None
    spiky = np.r_[np.full(99, 0.01), 99.0]
    w, why = usable_weights(spiky / spiky.mean())
    assert w is None and "effective sample is 1%" in why
    spread = np.linspace(0.5, 1.5, 100)
    w, why = usable_weights(spread)
    assert w is spread and why.startswith("density ratio (effective sample 92%")


def _workspace_with_clips(tmp_path, csv_competition, workspace, rng):
    """A first imported run (it makes the shared folds), the test-like clips, and its OOF and test CSVs."""
    ids = pd.read_csv(csv_competition / "sample_submission.csv")["id"].tolist()
    train = pd.read_csv(csv_competition / "train.csv")
    oof = write_predictions(tmp_path / "oof.csv", train["id"].tolist(), rng.random((len(train), 2)))
    test = write_predictions(tmp_path / "test.csv", ids, rng.random((len(ids), 2)))
    assert ens("import", "seed", "--test", test, "--oof", oof, "--data", csv_competition).exit_code == 0
    return ids, oof, test, _testlike_clips(workspace)


def test_stack_weighs_testlike_rows_by_the_sets_weights(tmp_path, csv_competition, workspace):
    rng = np.random.default_rng(1)
    ids, oof, test, clips = _workspace_with_clips(tmp_path, csv_competition, workspace, rng)
    tl = write_predictions(tmp_path / "tl.csv", clips["id"].tolist(), rng.random((len(clips), 2)))
    assert ens("import", "b", "--test", test, "--oof", oof, "--testlike", tl, "--force").exit_code == 0
    sidecars = {}
    for weighted in (False, True):
        clips["weight"] = np.linspace(0.5, 1.5, len(clips)) if weighted else 1.0
        write_parquet(clips, workspace / "models" / "testlike.parquet")
        name = f"w{int(weighted)}"
        assert ens("stack", "b", "--method", "mean", "--calibrate", "none", "--name", name).exit_code == 0
        sidecars[weighted] = json.loads((workspace / "submissions" / f"{name}.json").read_text())
    assert sidecars[False]["recipe"]["testlike_weighting"].startswith("none")
    assert sidecars[True]["recipe"]["testlike_weighting"].startswith("density ratio")
    scores = [s["metrics"]["cv_testlike"]["score"] for s in sidecars.values()]
    assert scores[0] != pytest.approx(scores[1], abs=1e-6)


def test_prediction_check_tells_squashed_test_predictions_from_testlike_ones(tmp_path, csv_competition, workspace):
    from ensemble.artifacts.competition import Competition
    from ensemble.artifacts.testlike_set import load_testlike_meta
    from ensemble.commands.testlike import check_predictions
    from ensemble.artifacts.workspace import Workspace

    rng = np.random.default_rng(2)
    ids, oof, _, clips = _workspace_with_clips(tmp_path, csv_competition, workspace, rng)
    tl = write_predictions(tmp_path / "tl.csv", clips["id"].tolist(), rng.uniform(0.05, 0.95, (len(clips), 2)))
    alike = write_predictions(tmp_path / "alike.csv", ids, rng.uniform(0.05, 0.95, (len(ids), 2)))
    squashed = write_predictions(tmp_path / "sq.csv", ids, rng.uniform(0.48, 0.52, (len(ids), 2)))
    ws, comp = Workspace(workspace), Competition.load(csv_competition)
    aucs = {}
    for name, csv in (("alike", alike), ("squashed", squashed)):
        assert ens("import", name, "--test", csv, "--oof", oof, "--testlike", tl).exit_code == 0
        check = check_predictions(ws, comp, [name])
        aucs[name] = check.auc
    assert aucs["squashed"] > 0.9 and aucs["alike"] < aucs["squashed"] - 0.2
    assert load_testlike_meta(ws).prediction_check["runs"] == ["squashed"]
    assert check.top(1)[0][0] in ("|squashed:fake|", "|squashed:real|")  # less confident on the test


def test_the_recorded_domain_check_reaches_the_decision(tmp_path, csv_competition, workspace):
    rng = np.random.default_rng(2)
    ids, oof, test, clips = _workspace_with_clips(tmp_path, csv_competition, workspace, rng)
    for name in ("a", "b"):
        tl = write_predictions(tmp_path / f"tl-{name}.csv", clips["id"].tolist(), rng.random((len(clips), 2)))
        assert ens("import", name, "--test", test, "--oof", oof, "--testlike", tl, "--force").exit_code == 0
    faithful = {"auc": 0.55, "auc_interval": [0.5, 0.6], "threshold": 0.65, "extra": {"held_out": True}}
    rules = {}
    for recorded in (False, True):
        (workspace / "models" / "testlike.json").write_text(json.dumps({"domain_check": faithful} if recorded else {}))
        name = f"auto{int(recorded)}"
        result = ens("stack", "a", "b", "--method", "auto", "--calibrate", "none", "--name", name)
        assert result.exit_code == 0, result.output
        rules[recorded] = json.loads((workspace / "submissions" / f"{name}.json").read_text())["recipe"]["decision"]["rule"]
    assert "clean rows were not asked" in rules[True] and "were not asked" not in rules[False]
