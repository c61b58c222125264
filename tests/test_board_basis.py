"""`ens board` ranks every row on the score the decision rule trusts, shows a one-run submission as its run,
and marks the decision rule's pick with its reason."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemble.artifacts.io import write_parquet
from ensemble.cli import app
from test_import_testlike import _workspace_with_clips
from conftest import write_predictions
from test_stack_cli import two_runs  # noqa: F401  (fixture: imported runs r0, r1 with OOF)


def ens(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "80"})


def test_a_one_run_submission_is_its_run_and_the_pick_says_why(two_runs, workspace):  # noqa: F811
    assert ens("stack", "r0", "r1", "--method", "auto", "--name", "au").exit_code == 0
    assert ens("stack", "r0", "r1", "--method", "logit", "--name", "forced").exit_code == 0
    chosen = json.loads((workspace / "submissions" / "au.json").read_text())["recipe"]["decision"]["chosen"]
    run = chosen.removeprefix("run:")
    rows = json.loads(ens("board", "--format", "json").output)["rows"]
    assert "au" not in [r["name"] for r in rows]  # one prediction, one row
    folded = next(r for r in rows if r["name"] == run)
    assert folded["written_as"] == "au" and folded["pick"].startswith("chosen by the decision rule: best single run")
    assert next(r for r in rows if r["name"] == "forced")["pick"] is None  # asked for, not chosen
    out = ens("board").output
    said = " ".join(out.split())
    line = next(line for line in out.splitlines() if f"{run} =" in line)
    assert line.split()[0].endswith("*")
    assert f"* {run} = au (submission au is run {run} unchanged, one row): chosen by the decision rule" in said
    assert "t-like:" not in said and " t-like " not in out  # no test-like column shown, none explained


def test_runs_are_scored_on_test_like_rows_as_the_decision_rule_scores_them(tmp_path, csv_competition, workspace):
    rng = np.random.default_rng(1)
    ids, oof, test, clips = _workspace_with_clips(tmp_path, csv_competition, workspace, rng)
    tl = write_predictions(tmp_path / "tl.csv", clips["id"].tolist(), rng.random((len(clips), 2)))
    assert ens("import", "b", "--test", test, "--oof", oof, "--testlike", tl, "--force").exit_code == 0
    clips["weight"] = np.linspace(0.5, 1.5, len(clips))
    write_parquet(clips, workspace / "models" / "testlike.parquet")
    assert ens("stack", "b", "--method", "mean", "--calibrate", "none", "--name", "w").exit_code == 0
    nested = json.loads((workspace / "submissions" / "w.json").read_text())["metrics"]["cv_testlike"]["score"]
    recorded = json.loads((workspace / "models" / "b" / "run.json").read_text())["metrics"]["cv_testlike"]["score"]
    assert recorded != pytest.approx(nested, abs=1e-6)  # unweighted, as the run recorded it
    rows = {r["name"]: r for r in json.loads(ens("board", "--format", "json").output)["rows"]}
    assert rows["b"]["cv_testlike"] == pytest.approx(nested, abs=1e-9)  # the mean of one run is that run
    assert rows["w"]["cv_testlike"] == pytest.approx(nested, abs=1e-9)
    assert rows["seed"]["rank"] is None  # no test-like predictions: apart, not ranked by another score
    said = " ".join(ens("board").output.split())
    assert "weighted as the decision rule weighs them: density ratio" in said
    assert "below the line, not ranked (no test-like CV): seed" in said


def test_one_method_states_its_gain_at_the_level_the_comparison_uses(two_runs, workspace):  # noqa: F811
    result = ens("stack", "r0", "r1", "--method", "logreg", "--name", "lr")
    assert result.exit_code == 0, result.output
    assert ens("stack", "r0", "r1", "--method", "auto", "--name", "au").exit_code == 0
    gain = json.loads((workspace / "submissions" / "lr.json").read_text())["metrics"]["gain"]
    tests = json.loads((workspace / "submissions" / "au.json").read_text())["recipe"]["decision"]["tests"]
    test = next(t for t in tests if t["candidate"] == "logreg")
    assert gain["alpha"] == pytest.approx(test["alpha"]) and gain["alpha"] < 0.05  # shared over the challengers
    assert (gain["lo"], gain["hi"]) == pytest.approx((test["lo"], test["hi"]))  # one interval for one candidate
    said = " ".join(result.output.split())
    assert f"({100 * (1 - gain['alpha']):.1f} % interval, the level --compare uses for its " in said


def test_a_run_whose_files_changed_is_named_apart_never_ranked(two_runs, workspace):  # noqa: F811
    oof = workspace / "models" / "r1" / "oof.parquet"
    frame = pd.read_parquet(oof)
    frame["fake"] = 1.0 - frame["fake"]  # edited after import: run.json's scores no longer describe it
    write_parquet(frame, oof)
    result = ens("board", "--format", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [r["name"] for r in out["rows"]] == ["r0"]
    assert any(n.startswith("warning: run r1 is not listed:") and "oof.parquet" in n for n in out["notes"])
    said = " ".join(ens("board").output.split())
    assert "warning: run r1 is not listed:" in said and "SHA-256 differs" in said
