"""Nested CV is honest: a spy proves no leakage, and the optimism of hill climbing on noise is measured."""

import numpy as np
import pytest

from ensemble.errors import ConfigError, DataError, EnsError
from ensemble.stack import nested_cv_predict
from stacking import compare, stack
from ensemble.stack.base import Blender
from ensemble.stack.simple import LogitBlender
from ensemble.stack.synthetic import make_runs

LABELS = ["fake", "real"]


class Spy(Blender):
    """Remembers the row ids it was fitted on and flags any predicted row it has seen."""

    log: list = []

    def _fit(self, P, y, folds) -> None:
        self.seen_ = set(np.round(P[:, -1, 0] * 1e6).astype(int).tolist())
        self.inner_ = LogitBlender().fit(P, y)

    def _predict(self, P):
        ids = set(np.round(P[:, -1, 0] * 1e6).astype(int).tolist())
        Spy.log.append((len(self.seen_), len(ids), len(ids & self.seen_)))
        return self.inner_.predict(P)


def test_spy_level2_never_sees_the_rows_it_predicts():
    d = make_runs(600, 10, n_runs=3, seed=4)
    P = d.P.copy()
    P[:, -1, 0] = (np.arange(600) + 1) / 1e6  # the last run's first column carries the row id
    Spy.log = []
    oof = nested_cv_predict(Spy, P, d.y, d.folds, calibrate="auto")
    assert oof.shape == (600, 2) and np.isfinite(oof).all()
    assert Spy.log, "the spy was never asked to predict"
    # outer predictions (fold k) and inner ones (the calibrator's OOF blends) all come from fits
    # that excluded the predicted rows
    assert all(overlap == 0 for _, _, overlap in Spy.log)
    # the outer model trained on 4 of 5 folds, the inner ones on 3 of 5
    assert {seen for seen, _, _ in Spy.log} >= {480, 360}


def test_hillclimb_optimism_on_noise_only_runs():
    d = make_runs(1500, 10, n_runs=10, noise=range(10), seed=5)
    r = stack(d.P, d.y, d.folds, d.P_test, method="hillclimb", labels=LABELS, n_boot=20)
    assert r.nested.score > r.in_sample.score
    assert r.optimism > 0
    assert r.nested.auc < r.in_sample.auc


def test_stack_result_fields_and_recipe_are_json():
    import json

    d = make_runs(800, 200, n_runs=4, seed=6)
    r = stack(d.P, d.y, d.folds, d.P_test, method="weighted", labels=LABELS, n_boot=20)
    assert r.test.shape == (200, 2) and r.oof.shape == (800, 2)
    assert r.nested_testlike is None and r.seconds > 0
    assert r.gain["lo"] <= r.gain["gain"] <= r.gain["hi"]
    recipe = json.loads(json.dumps(r.recipe.to_dict()))  # JSON-ready
    assert recipe["method"] == "weighted" and len(recipe["calibrators"]) == 2
    assert recipe["calibrators"][0]["label"] == "fake"
    assert {row["label"] for row in r.sensitivity} == set(LABELS)


def test_testlike_set_is_scored_and_fitted_on():
    d = make_runs(600, 100, n_runs=3, seed=7)
    tl = make_runs(300, 10, n_runs=3, rho=0.8, seed=8)
    kw = dict(P_tl=tl.P, y_tl=tl.y, folds_tl=tl.folds, labels=LABELS, n_boot=10)
    r = stack(d.P, d.y, d.folds, d.P_test, method="logit", **kw)
    assert r.recipe.fit_on == "testlike"
    assert r.nested_testlike is not None and r.oof_testlike.shape == (300, 2)
    both = stack(d.P, d.y, d.folds, d.P_test, method="logit", fit_on="both", **kw)
    assert both.recipe.fit_on == "both"
    rows = compare(d.P, d.y, d.folds, methods=["mean", "logreg"], P_tl=tl.P, y_tl=tl.y, folds_tl=tl.folds,
                   n_boot=10).rows
    runs = [f"run:run{r}" for r in range(3)]
    assert [r["method"] for r in rows] == runs + [f"{name}+cal" for name in runs] + ["mean", "logreg"]
    assert all(r["score"] == r["score_testlike"] for r in rows)
    assert sum(r["chosen"] for r in rows) == 1


def test_test_only_runs():
    d = make_runs(100, 50, n_runs=3, seed=9)
    r = stack(None, None, None, d.P_test, method="rank", labels=LABELS)
    assert r.test.shape == (50, 2) and r.nested is None and r.warnings
    with pytest.raises(EnsError, match="needs OOF.*mean, logit, rank"):
        stack(None, None, None, d.P_test, method="lgbm", labels=LABELS)
    with pytest.raises(ConfigError, match="test_prior"):
        stack(None, None, None, d.P_test, method="mean", test_prior="em", labels=LABELS)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(fit_on="testlike"), ConfigError, "needs test-like"),
        (dict(fit_on="everything"), ConfigError, "--fit-on must be one of"),
        (dict(calibrate="magic"), ConfigError, "unknown calibrator 'magic'"),
        (dict(test_prior="lots"), ConfigError, "--test-prior must be"),
        (dict(test_prior=1.5), ConfigError, "--test-prior must be"),
        (dict(labels=["fake"]), DataError, "labels names 1"),
        (dict(method="nope"), EnsError, "unknown stacking method"),
        (dict(params={"C": -1, "bogus": 1}, method="logreg"), ConfigError, "no parameter 'bogus'"),
    ],
)
def test_stack_bad_options(kwargs, error, message):
    d = make_runs(200, 20, n_runs=2, seed=10)
    args = dict(method="mean", labels=LABELS, n_boot=5) | kwargs
    with pytest.raises(error, match=message):
        stack(d.P, d.y, d.folds, d.P_test, **args)


def test_one_fold_is_refused():
    d = make_runs(200, 20, n_runs=2, seed=10)
    with pytest.raises(DataError, match="at least 2 fold"):
        stack(d.P, d.y, np.zeros(200, dtype=int), d.P_test, method="mean", labels=LABELS)
