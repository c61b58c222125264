"""The sidecar's nested records: typed on reading, written back to exactly the JSON they were read from."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ensemble.artifacts.records import (BlendState, CalibratorState, ClassifierManifest, CVScores, DecisionRecord,
                                        FoldRecord, GainRecord, LeaderboardRecord, PriorRecord, Recipe, RunManifest,
                                        ScoreRecord, Sidecar)
from ensemble.artifacts.set_records import FeatureManifest, TestlikeMeta
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


OLD_SIDECAR_METRICS = {  # as `ens stack` writes them: no OOF clean rows (null), a multiclass cv with its report
    "cv": {"score": 0.41, "auc": float("nan"), "brier": 0.2, "ece": 0.03, "metric": "logloss", "logloss": 0.41,
           "accuracy": 0.8, "macro_f1": 0.79},
    "cv_testlike": None, "in_sample": {"score": 0.39, "auc": 0.9, "brier": 0.1, "ece": 0.02}, "optimism": 0.02,
    "gain": {"gain": 0.01, "lo": -0.002, "hi": 0.03, "n_boot": 200, "alpha": 0.05, "best_run": 1,
             "best_run_score": 0.42, "on": "clean", "challengers": 3},
    "cv_report": {"logloss": 0.41, "per_class": {"a": {"f1": 0.8}}}, "rows_sha256": None}
OLD_RUN_METRICS = {"cv": {"score": 0.3, "auc": 0.9, "brier": 0.1, "ece": 0.05},
                   "per_fold": [{"fold": 0, "score": 0.31, "auc": 0.9, "brier": 0.1, "ece": 0.05}, {"fold": 1}]}


@pytest.mark.parametrize("raw", [OLD_SIDECAR_METRICS, OLD_RUN_METRICS, {}, {"cv": None, "gain": None},
                                 {k: v for k, v in OLD_SIDECAR_METRICS.items() if k != "rows_sha256"}])
def test_cv_scores_read_typed_and_write_back_exactly_the_keys_they_had(raw):
    scores = CVScores.from_dict(json.loads(json.dumps(raw)), "m.json")
    assert json.dumps(scores.to_dict(), sort_keys=True) == json.dumps(raw, sort_keys=True)


def test_cv_scores_are_attributes_and_a_field_set_later_is_written():
    scores = CVScores.from_dict(OLD_SIDECAR_METRICS, "m.json")
    assert isinstance(scores.cv, ScoreRecord) and scores.cv.logloss == 0.41 and scores.cv_testlike is None
    assert isinstance(scores.gain, GainRecord) and scores.gain.level == pytest.approx(0.95)
    run = CVScores.from_dict(OLD_RUN_METRICS, "run.json")
    assert [f.score for f in run.per_fold] == [0.31, None] and "cv_testlike" not in run.to_dict()
    run.cv_testlike = {"score": 0.5, "auc": 0.8, "brier": 0.2, "ece": 0.1}
    assert run.cv_testlike.auc == 0.8 and run.to_dict()["cv_testlike"]["score"] == 0.5
    run.rows_sha256 = None  # set to null: written as null
    assert run.to_dict()["rows_sha256"] is None


def test_a_manifest_given_its_metrics_as_a_dict_holds_the_record():
    manifest = RunManifest(name="r", kind="import", created="t", labels=["fake"], data={}, versions={}, source={},
                           files={}, metrics=OLD_RUN_METRICS)
    assert manifest.cv.score == 0.3
    manifest.metrics = {}
    assert manifest.cv is None and manifest.to_dict()["metrics"] == {}


@pytest.mark.parametrize("raw, message", [
    ({"cv": {"score": 0.3, "auk": 0.9}}, "unknown key 'auk'"),
    ({"cvv": {}}, "unknown key 'cvv'"),
    ({"gain": {"lo": 0.0, "hi": 0.1}}, "missing key 'gain'"),
    ({"per_fold": {"fold": 0}}, "'per_fold' must be a list"),
    ([1], "must be an object"),
])
def test_malformed_cv_scores_are_one_line_naming_the_file(raw, message):
    with pytest.raises(DataError, match=message) as err:
        CVScores.from_dict(raw, "sub.json")
    assert "sub.json" in str(err.value) and "\n" not in str(err.value)


OLD_PRIOR = {"mode": "em", "prior_train": [0.5, 0.4], "prior_em": [0.3, None], "prior_bbse": [0.31, 0.2],
             "prior_used": [0.3, 0.4], "ks": [0.1, 0.02]}  # before labels could fall back (no "fallback")


@pytest.mark.parametrize("raw", [OLD_PRIOR, {**OLD_PRIOR, "fallback": {"real": "no credible gain"}},
                                 {**OLD_PRIOR, "mode": "lb", "fallback": {}, "joint": {"probed": {"shares": [0.3, 0.7]}}}])
def test_a_recorded_prior_reads_as_its_record(raw):
    prior = Recipe.from_dict({**OLD_RECIPE, "prior": raw}, "x.json").prior
    assert isinstance(prior, PriorRecord) and prior.adapted and prior.prior_used == raw["prior_used"]
    assert prior.probed == (raw.get("joint") or {}).get("probed", {})
    assert prior.to_dict() == {"fallback": {}, **raw}


def test_no_prior_is_no_record_and_an_unknown_prior_key_is_one_line():
    assert Recipe.from_dict(OLD_RECIPE, "x.json").prior is None
    assert PriorRecord.from_dict({}, "x.json") is None
    with pytest.raises(DataError, match="unknown key 'prior_x'"):
        PriorRecord.from_dict({**OLD_PRIOR, "prior_x": 1}, "x.json")


# A fold.json as a neural fold writes it (trainer fields between the rows and the augmentation; cv null).
OLD_FOLD = {"fold": 1, "model": {"model_ref": "tiny", "n_params": 10, "n_trainable": 4}, "train_rows": 8,
            "held_out_rows": 4, "testlike_clips": 0, "best_epoch": 2, "history": [{"epoch": 1}], "augment": {},
            "onnx": {"path": "fold1/model.onnx", "sha256": "ab", "parity_max_abs_diff": 1e-6,
                     "parity_clip_seconds": 1.5, "parity_bar": 1e-4},
            "files": {"oof.parquet": "cd"}, "seconds": {"train": 1.0}, "cv": None}


def test_a_fold_record_reads_typed_and_writes_back_the_same_json():
    fold = FoldRecord.from_dict(json.loads(json.dumps(OLD_FOLD)), "fold.json")
    assert fold.fold == 1 and fold.onnx.path == "fold1/model.onnx" and fold.onnx.parity_bar == 1e-4 and fold.cv is None
    assert fold.fields["best_epoch"] == 2
    assert fold.to_dict() == OLD_FOLD  # `cv: null` kept
    manifest = RunManifest(name="r", kind="finetune", created="t", labels=["fake"], data={}, versions={},
                           source={"model": OLD_FOLD["model"]}, files={}, folds=[fold], options={"max_seconds": 2})
    again = RunManifest.from_dict(json.loads(json.dumps(manifest.to_dict())), "run.json")
    assert again.to_dict() == manifest.to_dict() and again.folds[0].onnx.sha256 == "ab"
    assert again.max_seconds == 2.0 and again.weights == (4, 10)


@pytest.mark.parametrize("raw, message", [({**OLD_FOLD, "fold": "1"}, "'fold' must be the fold's number"),
                                          ({**OLD_FOLD, "onnx": {"path": "x", "hash": 1}}, "unknown key 'hash'")])
def test_a_malformed_fold_record_is_one_line(raw, message):
    with pytest.raises(DataError, match=message):
        FoldRecord.from_dict(raw, "fold.json")


def test_runs_and_leaderboard_read_typed_and_write_back_what_they_had():
    raw = {**OLD_RECIPE, "runs": [{"run": "a", "manifest_sha256": "0" * 64, "files": {"test.parquet": "x"}}]}
    recipe = Recipe.from_dict(raw, "x.json")
    assert recipe.runs[0].run == "a" and recipe.runs[0].files == {"test.parquet": "x"} and recipe.run_names == ["a"]
    assert recipe.to_dict()["runs"] == raw["runs"]
    board = LeaderboardRecord.from_dict({"private": 0.3, "recorded": "t"}, "lb")
    later = dataclasses.replace(board, public=0.2, recorded="u")  # as `ens lb` records a public score later
    assert later.to_dict() == {"public": 0.2, "private": 0.3, "recorded": "u"}
    assert later.scores() == {"public": 0.2, "private": 0.3} and LeaderboardRecord().to_dict() == {}
    with pytest.raises(DataError, match="unknown key 'top'"):
        LeaderboardRecord.from_dict({"top": 1}, "lb")


def test_testlike_meta_writes_back_exactly_the_keys_it_had():
    for raw in ({}, {"domain_check": {"auc": 0.6}},
                {"recipe_version": 3, "seed": 0, "n_real": 16, "fitted": False, "reason": "too few", "params": {}}):
        meta = TestlikeMeta.from_dict(json.loads(json.dumps(raw)), "testlike.json")
        assert meta.to_dict() == raw
    assert meta.fitted is False and meta.domain_auc is None
    with pytest.raises(DataError, match="unknown key 'fitted_to'"):
        TestlikeMeta.from_dict({"fitted_to": 1}, "testlike.json")


def test_a_feature_manifest_round_trips_and_an_unknown_key_is_one_line():
    raw = {"kind": "vad", "name": "vad", "columns": ["a"], "features_version": 1, "speech_prob": 0.5,
           "labels_used": False, "model": {"file": "m.onnx", "sha256": "ab", "package": "silero-vad"},
           "data_fingerprint": "d", "folds_fingerprint": "f", "testlike_fingerprint": "t", "rows": {"train": 3},
           "versions": {"silero-vad": None}, "machine": {}, "created": "now", "seconds": 1.0}
    manifest = FeatureManifest.from_dict(raw, "features.json")
    assert manifest.model.sha256 == "ab" and manifest.fingerprints["folds_fingerprint"] == "f"
    assert manifest.to_dict() == raw
    with pytest.raises(DataError, match="unknown key 'colums'"):
        FeatureManifest.from_dict({"colums": []}, "features.json")


def test_a_classifier_manifest_reads_an_old_one_without_pooling_and_writes_the_same_keys_in_order():
    old = {"model_ref": "tiny", "labels": ["fake", "real"], "model_type": "wav2vec2", "preprocessor": {"kind": "raw"}}
    manifest = ClassifierManifest.from_dict(old, "ens_classifier.json")
    assert manifest.pooling is None and manifest.to_dict() == old
    new = {**old, "pooling": "attention"}
    assert json.dumps(ClassifierManifest.from_dict(new, "x").to_dict()) == json.dumps(new)  # order kept: unsorted file
    with pytest.raises(DataError, match="missing key 'model_type'"):
        ClassifierManifest.from_dict({"model_ref": "m", "labels": [], "preprocessor": {}}, "ens_classifier.json")
