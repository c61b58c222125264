"""`ens tune`: a seeded Optuna study in the workspace, trials that never score rows they trained on, a
resumable study, and a run.toml that `ens finetune --config` reads back as the best options."""

from __future__ import annotations

import sqlite3
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemble.artifacts.competition import Competition
from ensemble.artifacts.workspace import Workspace
from ensemble.cli import app
from ensemble.commands.finetune import FinetuneOptions
from ensemble.commands.tune import TuneOptions, tune
from ensemble.commands.tune.space import freeze_choices, suggest
from ensemble.demo import DemoSpec, generate_competition
from ensemble.errors import ConfigError

runner = CliRunner()
BASE = dict(model="logmel-cnn", folds=3, epochs=2, batch_size=8, max_seconds=1.0, augment="none")


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    return generate_competition(tmp_path_factory.mktemp("comp") / "data",
                                DemoSpec(n_train=36, n_test=3, n_unlabeled=0, seed=7))


def test_the_space_is_seeded_and_fits_the_family() -> None:
    import optuna

    from ensemble.backbones.model import load_config

    base = FinetuneOptions(**BASE)
    config = load_config("tiny-wav2vec2")
    assert freeze_choices(config) == ["feature-encoder", "none", "first:1", "all-but-head"]
    draws = []
    for _ in range(2):
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3))
        draws.append([suggest(study.ask(), FinetuneOptions(**{**BASE, "model": "tiny-wav2vec2"}), config)
                      for _ in range(3)])
    assert draws[0] == draws[1] and len({(o.lr, o.schedule) for o in draws[0]}) == 3
    for opts in draws[0]:
        assert base.lr is None and 1e-4 <= opts.lr <= 1e-2 and 1 <= opts.epochs <= 2 and opts.max_seconds in (0.5, 0.75, 1.0)
        assert set(opts.model_config) == {"attention_dropout", "hidden_dropout", "activation_dropout",
                                          "mask_time_prob", "layerdrop"}
        assert (opts.hold > 0) == (opts.schedule == "tri-stage")
    cnn = suggest(optuna.create_study().ask(), base, load_config("logmel-cnn"))
    assert set(cnn.model_config) == {"dropout"} and cnn.pooling == "mean" and cnn.freeze != "feature-encoder"


@pytest.mark.slow
def test_a_study_trains_on_fold_rows_scores_held_out_rows_resumes_and_writes_run_toml(
        competition, workspace, sampled_rows, monkeypatch) -> None:
    import ensemble.commands.finetune as ft
    import ensemble.commands.tune.study as study_module

    ws, comp = Workspace(workspace), Competition.load(competition)
    scored: list[np.ndarray] = []
    real_fit = ft.fit_held_out

    def spy(*args, **kwargs):
        ids, y, p = real_fit(*args, **kwargs)
        scored.append(ids)
        return ids, y, p

    monkeypatch.setattr(study_module, "fit_held_out", spy)
    events: list[dict] = []
    result = tune(ws, comp, FinetuneOptions(**BASE), TuneOptions(trials=2, folds=[1], study="cnn"),
                  progress=events.append)
    folds = pd.read_parquet(ws.models_dir / "folds.parquet")
    held = set(folds.loc[folds["fold"] == 1, "id"].astype(str))
    held_rows = set(np.flatnonzero(folds["fold"].to_numpy() == 1))
    assert set(sampled_rows) == {1} and sampled_rows[1] and not sampled_rows[1] & held_rows  # no leakage
    assert len(scored) == 2 and all(set(ids) == held and len(ids) == len(held) for ids in scored)
    assert [e["trial"] for e in events if e["stage"] == "trial"] == [0, 1]
    assert (ws.root / "tune" / "cnn.db").is_file() and result.ran == 2 and len(result.trials) == 2
    assert not list((ws.root / "tune").glob(".cnn.trial*"))  # checkpoints are not kept
    assert result.trials[0]["score"] <= result.trials[1]["score"]  # best first (lower is better)
    assert not (ws.models_dir / "cnn-trial0").exists()  # trials are not runs

    again = tune(ws, comp, FinetuneOptions(**BASE), TuneOptions(trials=3, folds=[1], study="cnn"))
    assert again.ran == 1 and [t["number"] for t in sorted(again.trials, key=lambda t: t["number"])] == [0, 1, 2]
    with sqlite3.connect(ws.root / "tune" / "cnn.db") as db:
        assert db.execute("select count(*) from trials").fetchone()[0] == 3
    with pytest.raises(ConfigError, match="started with other settings .*folds"):
        tune(ws, comp, FinetuneOptions(**BASE), TuneOptions(trials=3, folds=[0], study="cnn"))

    written = tomllib.loads(again.toml_path.read_text())
    assert written == again.best["options"] and written["lr"] == again.best_options.lr
    seen = []
    monkeypatch.setattr(ft, "finetune", lambda ws_, comp_, opts, **kw: seen.append(opts))
    out = runner.invoke(app, ["finetune", "logmel-cnn", "--config", str(again.toml_path), "--data", str(competition)])
    assert out.exit_code == 0, out.output
    (opts,) = seen
    for key, value in written.items():
        assert getattr(opts, key) == value, key


def test_bad_tune_settings_fail_before_training(competition, workspace) -> None:
    ws, comp = Workspace(workspace), Competition.load(competition)
    with pytest.raises(ConfigError, match="unknown metric 'aucc'"):
        tune(ws, comp, FinetuneOptions(**BASE), TuneOptions(metric="aucc"))
    with pytest.raises(ConfigError, match="classical family has none"):
        tune(ws, comp, FinetuneOptions(**{**BASE, "model": "features-lgbm"}), TuneOptions())
    out = runner.invoke(app, ["tune", "tiny-wav2vec2", "--trials", "0", "--data", str(competition)])
    assert out.exit_code == 1 and out.output.startswith("Error: --trials 0") and not (workspace / "tune").exists()


def test_a_trial_left_running_by_a_killed_search_counts_as_failed(tmp_path) -> None:
    import optuna

    from ensemble.commands.tune.study import _complete, _fail_stale

    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    study.ask()  # the search was killed during this trial
    done = study.ask()
    done.set_user_attr("options", {"lr": 0.1})
    study.tell(done, 0.3)
    resumed = optuna.load_study(study_name="s", storage=storage)
    _fail_stale(resumed)
    states = [t.state for t in resumed.get_trials(deepcopy=False)]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert [t["number"] for t in _complete(resumed)] == [1]
