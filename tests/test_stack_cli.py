"""`ens stack` through the CLI on imported runs: hand-checked blends, byte-stable files, honest scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata
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
    # test-only runs: rank is fitted on the test tensor itself, so ranks are the test's own mid-ranks
    for k, test in enumerate(tests):
        assert ens("import", f"t{k}", "--test", tmp_path / f"test{k}.csv").exit_code == 0
    assert ens("stack", "t0", "t1", "--method", "rank", "--name", "rk").exit_code == 0
    got = submission(workspace, "rk")[LABELS].to_numpy()
    n = len(ids)
    expected = np.mean([(rankdata(t, axis=0) - 0.5) / n for t in tests], axis=0)
    order_got, order_expected = rankdata(got, axis=0), rankdata(expected, axis=0)
    np.testing.assert_array_equal(order_got, order_expected)  # same order, ties kept as ties


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
    assert not list((workspace / "submissions").glob("*.csv")) if (workspace / "submissions").exists() else True
    assert ens("stack", "r0", "r1", "--compare", "--write").exit_code == 0
    assert len(list((workspace / "submissions").glob("*.csv"))) == 1


def test_method_auto_writes_the_candidate_the_decision_chose(two_runs, workspace):
    ids, tests = two_runs
    result = ens("stack", "r0", "r1", "--method", "auto", "--name", "au")
    assert result.exit_code == 0, result.output
    decision = json.loads((workspace / "submissions" / "au.json").read_text())["recipe"]["decision"]
    best = decision["baseline"]
    assert decision["chosen"] == best  # 12 rows cannot show that a blend helps
    assert f"chosen: {best} (best single run {best} kept" in result.output
    np.testing.assert_array_equal(submission(workspace, "au")[LABELS].to_numpy(), tests[int(best[-1])])
    compared = ens("stack", "r0", "r1", "--compare")
    assert f"* {best}" in compared.output and f"would write {best}" in compared.output
    assert "(positive is better)" in compared.output  # the legend
