"""The sidecar's nested records: typed on reading, written back to exactly the JSON they were read from."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ensemble.artifacts.records import BlendState, CalibratorState, DecisionRecord, Recipe, Sidecar
from ensemble.errors import DataError
from stacking import stack
from ensemble.stack.synthetic import make_runs

OLD_RECIPE = {  # a recipe as e356ccc wrote it (keys as on disk)
    "method": "weighted", "params": {"objective": "logloss"}, "labels": ["fake", "real"], "fit_on": "clean",
    "calibrate": "auto", "blender": {"weights": [[0.5, 0.5], [0.5, 0.5]]}, "decisions": [],
    "calibrators": [{"label": "fake", "calibrator": "none", "params": {}, "cv_scores": {"none": 0.2, "platt": 0.19},
                     "gain": {"gain": 0.01, "lo": 0.001, "hi": 0.02}, "guard_gain": None,
                     "rule": "none: platt's gain +0.0100 on the fit rows is not shared by the clean rows (cannot be scored)"},
                    {"label": "real", "calibrator": "temperature", "params": {"temperature": 0.8, "bias": 0.1},
                     "rule": "temperature: gain over none +0.0200, interval above zero"}],
    "state": {"version": 1, "blender": {"method": "weighted", "runs": 2, "labels": 2, "weights": [[0.5, 0.5], [0.5, 0.5]],
                                        "space": "logit"},
              "calibrators": [{"kind": "temperature", "a": 1.5, "b": -0.1}, {"kind": "none"},
                              {"kind": "beta", "coef": [1.0, 0.5, 0.0]},
                              {"kind": "isotonic", "x": [-1.0, 1.0], "y": [0.2, 0.8], "mix": 0.0001}]},
    "runs": [{"run": "a", "manifest_sha256": "0" * 64}], "seed": 0, "metric": None, "task": "multilabel",
    "test_prior": "none", "prior": None, "meta_features": None, "meta_offered": None, "testlike_weighting": None,
    "decision": {"chosen": "weighted", "baseline": "run:a", "rule": "weighted: gain above zero",
                 "tests": [{"candidate": "run:a", "same_as_baseline": True, "passed": False}]},
}


def test_an_old_recipe_reads_typed_and_writes_back_the_same_json():
    recipe = Recipe.from_dict(json.loads(json.dumps(OLD_RECIPE)), "x.json")
    assert isinstance(recipe.state, BlendState) and recipe.state.method == "weighted"
    assert [c.kind for c in recipe.state.calibrators] == ["temperature", "none", "beta", "isotonic"]
    assert recipe.state.calibrators[0] == CalibratorState("temperature", a=1.5, b=-0.1)
    assert isinstance(recipe.decision, DecisionRecord) and recipe.decision.rule == "weighted: gain above zero"
    fake, real = recipe.calibrators
    assert fake.guarded and fake.guard_gain is None and not real.guarded and real.params["temperature"] == 0.8
    assert json.dumps(recipe.to_dict(), sort_keys=True) == json.dumps(OLD_RECIPE, sort_keys=True)


def test_a_bare_recipe_has_no_state_and_keeps_its_empty_object():
    bare = {**OLD_RECIPE, "state": {}, "decision": None}
    recipe = Recipe.from_dict(bare, "x.json")
    assert recipe.state is None and recipe.decision is None
    assert recipe.to_dict() == bare


@pytest.mark.parametrize("state, message", [
    ({"version": 1, "blender": {"runs": 2}, "calibrators": []}, "naming its 'method'"),
    ({"version": 1, "blender": {"method": "mean"}, "calibrators": [{"kind": "platt", "slope": 2}]}, "unknown key 'slope'"),
    ([1, 2], "expected a JSON object"),
])
def test_a_malformed_state_is_one_line_naming_the_file(state, message):
    with pytest.raises(DataError, match=message) as err:
        Recipe.from_dict({**OLD_RECIPE, "state": state}, "sub.json")
    assert "sub.json" in str(err.value) and "\n" not in str(err.value)


def test_a_fresh_stack_round_trips_through_its_sidecar_json():
    from ensemble.artifacts.submission import new_sidecar

    d = make_runs(200, 20, n_runs=2, seed=1)
    result = stack(d.P, d.y, d.folds, d.P_test, method="flip", calibrate="temperature")
    sidecar = new_sidecar("s", result.recipe, {"cv": None})
    raw = json.loads(json.dumps(sidecar.to_dict()))
    assert raw["recipe"]["state"]["calibrators"][0]["kind"] == "temperature"
    assert set(raw["recipe"]["state"]["calibrators"][0]) == {"kind", "a", "b"}  # only the kind's own keys
    again = Sidecar.from_dict(raw, "s.json")
    assert again.recipe.state == result.recipe.state
    assert json.dumps(again.to_dict(), sort_keys=True) == json.dumps(raw, sort_keys=True)
    assert np.isfinite(again.recipe.state.calibrators[0].a)


def test_export_of_a_hand_made_submission_says_it_has_no_fitted_blend(workspace):
    import pandas as pd
    from typer.testing import CliRunner

    from conftest import hand_sidecar
    from ensemble.artifacts.io import write_json
    from ensemble.cli import app

    (workspace / "submissions").mkdir()
    pd.DataFrame({"id": ["a"], "fake": [0.5], "real": [0.5]}).to_csv(workspace / "submissions" / "hand.csv", index=False)
    write_json(hand_sidecar("hand").to_dict(), workspace / "submissions" / "hand.json")
    result = CliRunner().invoke(app, ["export", "hand"])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "holds no fitted blend" in lines[0], result.output
