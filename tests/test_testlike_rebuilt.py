"""A rebuilt test-like set: runs that predicted the old clips are refused until `ens oof --split testlike`."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.artifacts.competition import Competition
from ensemble.demo import DemoSpec, generate_competition
from ensemble.artifacts.folds import load_folds
from ensemble.artifacts.testlike_set import TESTLIKE_FILE, ensure_testlike
from ensemble.artifacts.workspace import Workspace

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_stack_refuses_predictions_of_other_testlike_clips_until_repredicted(tmp_path):
    data = generate_competition(tmp_path / "data", DemoSpec(n_train=36, n_test=6, n_unlabeled=2, seed=3))
    ws = tmp_path / "ws"
    args = ["-w", str(ws), "--data", str(data)]
    made = runner.invoke(app, ["finetune", "logmel-cnn", "--folds", "2", "--epochs", "1", "--batch-size", "8",
                               "--max-seconds", "1", "--testlike-per-fold", "4", "--name", "cnn", *args])
    assert made.exit_code == 0, made.output
    (ws / "models" / TESTLIKE_FILE).unlink()
    workspace = Workspace(ws)
    ensure_testlike(workspace, Competition.load(data), load_folds(workspace), per_fold=4, seed=1)

    refused = runner.invoke(app, ["stack", "cnn", "--method", "mean", "--name", "s", *args])
    assert refused.exit_code == 1
    assert "run 'cnn' predicted other test-like clips" in refused.output and "--split testlike" in refused.output
    assert not (ws / "submissions" / "s.csv").exists()

    again = runner.invoke(app, ["oof", "cnn", "--split", "testlike", "--provider", "cpu", *args])
    assert again.exit_code == 0, again.output
    assert "cnn testlike: new test-like clips, nothing to compare" in again.output
    assert runner.invoke(app, ["stack", "cnn", "--method", "mean", "--name", "s", *args]).exit_code == 0
