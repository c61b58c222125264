"""`ens stack` through the CLI on imported runs: hand-checked blends, byte-stable files, honest scores."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import LABELS, write_predictions
from ensemble.cli import app

runner = CliRunner()


def ens(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


@pytest.fixture
def two_runs(tmp_path, csv_competition):
    """Two imported runs with OOF; test values chosen by hand, with ties."""
    ids = pd.read_csv(csv_competition / "sample_submission.csv")["id"].tolist()
    train = pd.read_csv(csv_competition / "train.csv")
    y = (train["label"] == "fake").to_numpy()
    rng = np.random.default_rng(3)
    tests = [np.tile([[0.2, 0.8], [0.6, 0.4], [0.6, 0.3]], (4, 1)), np.tile([[0.4, 0.6], [0.2, 0.9], [0.8, 0.3]], (4, 1))]
    for k, test in enumerate(tests):
        score = y + rng.normal(0, 0.8 + 0.4 * k, len(y))
        oof = np.stack([1 / (1 + np.exp(-score)), 1 / (1 + np.exp(score))], axis=1)
        write_predictions(tmp_path / f"oof{k}.csv", train["id"].tolist(), oof)
        write_predictions(tmp_path / f"test{k}.csv", ids, test)
        args = ["import", f"r{k}", "--test", tmp_path / f"test{k}.csv", "--oof", tmp_path / f"oof{k}.csv"]
        assert ens(*args, "--data", csv_competition).exit_code == 0
    return ids, tests


def submission(workspace, name):
    return pd.read_csv(workspace / "submissions" / f"{name}.csv")


def test_mean_of_imported_runs_is_the_plain_mean(two_runs, workspace):
    ids, tests = two_runs
    result = ens("stack", "r0", "r1", "--method", "mean", "--calibrate", "none", "--name", "m")
    assert result.exit_code == 0, result.output
    got = submission(workspace, "m")
    assert got["id"].tolist() == ids
    np.testing.assert_allclose(got[LABELS].to_numpy(), (tests[0] + tests[1]) / 2, rtol=0, atol=1e-15)
    sidecar = json.loads((workspace / "submissions" / "m.json").read_text())
    assert sidecar["recipe"]["method"] == "mean" and [r["run"] for r in sidecar["recipe"]["runs"]] == ["r0", "r1"]
    assert sidecar["metrics"]["cv"]["score"] > 0 and "in_sample" in sidecar["metrics"]


def test_rank_blend_averages_ties(two_runs, workspace, tmp_path, csv_competition):
    ids, tests = two_runs
    # test-only runs: rank is fitted on the test tensor itself, so ranks are the test's own mid-ranks.
    # 12 rows, each run's column takes 2 or 3 values (4 or 8 rows each): mid-ranks 2.5, 6.5, 8.5, 10.5,
    # scaled by (r - 0.5) / 12 to 2/12, 6/12, 8/12, 10/12; the blend is the mean over the two runs.
    # fake: run 0 (.2 .6 .6) -> 2 8 8, run 1 (.4 .2 .8) -> 6 2 10; real: run 0 (.8 .4 .3) -> 10 6 2,
    # run 1 (.6 .9 .3) -> 6 10 2 (all /12)
    for k, test in enumerate(tests):
        assert ens("import", f"t{k}", "--test", tmp_path / f"test{k}.csv").exit_code == 0
    assert ens("stack", "t0", "t1", "--method", "rank", "--name", "rk").exit_code == 0
    got = submission(workspace, "rk")[LABELS].to_numpy()
    by_hand = np.array([[(2 + 6) / 24, (10 + 6) / 24], [(8 + 2) / 24, (6 + 10) / 24], [(8 + 10) / 24, (2 + 2) / 24]])
    np.testing.assert_allclose(got, np.tile(by_hand, (4, 1)), rtol=0, atol=1e-15)


def test_submissions_are_byte_stable(two_runs, workspace):
    for name in ("a", "b"):
        assert ens("stack", "r0", "r1", "--method", "hillclimb", "--name", name).exit_code == 0
    a = (workspace / "submissions" / "a.csv").read_bytes()
    assert a == (workspace / "submissions" / "b.csv").read_bytes()


def test_refuses_to_overwrite_and_runs_from_other_folds(two_runs, workspace, tmp_path, csv_competition):
    assert ens("stack", "r0", "r1", "--name", "s").exit_code == 0
    again = ens("stack", "r0", "r1", "--name", "s")
    assert again.exit_code == 1 and "--force" in again.output
    manifest = workspace / "models" / "r1" / "run.json"
    data = json.loads(manifest.read_text())
    data["folds_fingerprint"] = "something else"
    manifest.write_text(json.dumps(data))
    result = ens("stack", "r0", "r1", "--name", "t")
    assert result.exit_code == 1 and "different folds" in result.output
    assert not (workspace / "submissions" / "t.csv").exists()


def test_compare_writes_only_when_asked(two_runs, workspace):
    result = ens("stack", "r0", "r1", "--compare")
    assert result.exit_code == 0, result.output
    for method in ("mean", "hillclimb", "flip", "lgbm"):
        assert method in result.output
    assert not (workspace / "submissions").exists()  # --compare alone writes nothing
    assert ens("stack", "r0", "r1", "--compare", "--write").exit_code == 0
    assert len(list((workspace / "submissions").glob("*.csv"))) == 1


def test_method_auto_writes_the_candidate_the_decision_chose(two_runs, workspace):
    ids, tests = two_runs
    result = ens("stack", "r0", "r1", "--method", "auto", "--name", "au")
    assert result.exit_code == 0, result.output
    decision = json.loads((workspace / "submissions" / "au.json").read_text())["recipe"]["decision"]
    best = decision["baseline"]
    assert decision["chosen"] == best  # 12 rows cannot show that a blend helps
    said = " ".join(result.output.split())  # wrapped at 80 columns
    assert f"chosen by the decision rule: best single run {best} kept" in said
    assert f"uses run {best.removeprefix('run:')} alone" in said  # the recipe in words
    np.testing.assert_array_equal(submission(workspace, "au")[LABELS].to_numpy(), tests[int(best[-1])])
    compared = ens("stack", "r0", "r1", "--compare")
    said = " ".join(compared.output.split())
    assert f"* {best}" in compared.output and f"--compare --write` writes {best} as auto-r0+r1" in said
    assert "(positive = better than the best run)" in said  # the legend


def test_numeric_test_prior_shifts_every_logit_by_hand(two_runs, workspace):
    """`--test-prior 0.3` always applies: logit(p) + logit(0.3) - logit(train prior 0.5), AUC kept."""
    assert ens("stack", "r0", "r1", "--calibrate", "none", "--name", "plain").exit_code == 0
    result = ens("stack", "r0", "r1", "--calibrate", "none", "--test-prior", "0.3", "--name", "shifted")
    assert result.exit_code == 0, result.output
    plain = submission(workspace, "plain")[LABELS].to_numpy()
    shifted = submission(workspace, "shifted")[LABELS].to_numpy()
    odds = plain / (1 - plain) * (0.3 / 0.7) / (0.5 / 0.5)  # train prior of both labels: 20 of 40 rows
    np.testing.assert_allclose(shifted, odds / (1 + odds), rtol=0, atol=1e-12)
    sidecar = json.loads((workspace / "submissions" / "shifted.json").read_text())
    assert sidecar["recipe"]["test_prior"] == "0.3" and sidecar["recipe"]["prior"]["prior_used"] == [0.3, 0.3]


def test_a_missing_run_fails_before_the_data_folder_is_remembered(two_runs, workspace, csv_competition, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(csv_competition, other)
    before = (workspace / "ens.toml").read_bytes()
    result = ens("stack", "r0", "nope", "--data", other)
    assert result.exit_code == 1 and "nope" in result.output, result.output
    assert (workspace / "ens.toml").read_bytes() == before
