"""Meta-features in the stacker: they reach the meta-learners through the same nested folds as the runs'
logits, help when they carry information, and a column that copies a label is refused."""

from __future__ import annotations

from ensemble.task import MULTILABEL

import numpy as np
import pytest

from ensemble.errors import ConfigError, ContractError, DataError
from stacking import compare, stack
from ensemble.stack.base import Blender, make_blender
from ensemble.stack.decide import candidates
from ensemble.stack.metafeatures import MetaFeatures
from ensemble.stack.nested import EvalSet, FitCache, nested_predict
from ensemble.stack.simple import LogitBlender
from ensemble.stack.synthetic import make_runs
from ensemble.stack.state import blender_state

LABELS = ["fake", "real"]


class MetaSpy(Blender):
    """Remembers the row ids (meta column 0) it was fitted on, flags any predicted row it has seen, and
    checks that each row's meta-features travel with its own predictions (meta column 1 = P[:, 0, 0])."""

    uses_meta = True
    log: list = []

    def _fit(self, P, y, folds, meta) -> None:
        assert np.array_equal(meta[:, 1], P[:, 0, 0]), "meta rows were split apart from their P rows"
        self.seen_ = set(meta[:, 0].astype(int).tolist())
        self.inner_ = LogitBlender().fit(P, y)

    def _predict(self, P, meta) -> np.ndarray:
        assert np.array_equal(meta[:, 1], P[:, 0, 0]), "meta rows were split apart from their P rows"
        ids = set(meta[:, 0].astype(int).tolist())
        MetaSpy.log.append((len(self.seen_), len(ids & self.seen_)))
        return self.inner_.predict(P)


def _meta(d, columns: np.ndarray, test: np.ndarray | None = None) -> MetaFeatures:
    names = [f"m{c}" for c in range(columns.shape[1])]
    return MetaFeatures(names, columns, test if test is not None else np.zeros((len(d.P_test), columns.shape[1])))


def test_spy_meta_features_of_fold_k_never_fit_what_scores_fold_k():
    d = make_runs(600, 10, n_runs=2, seed=4)
    meta = np.column_stack([np.arange(600), d.P[:, 0, 0]])
    MetaSpy.log = []
    cache = FitCache(MetaSpy, d.P, d.y, d.folds, meta=meta)
    oof = nested_predict(MetaSpy, (d.P, d.y, d.folds), {"oof": EvalSet(d.P, d.folds, meta)}, "auto", cache=cache)["oof"]
    assert oof.shape == (600, 2) and np.isfinite(oof).all()
    assert MetaSpy.log, "the spy was never asked to predict"
    # outer predictions and the calibrators' inner blends alike: no predicted row was in its fit
    assert all(overlap == 0 for _, overlap in MetaSpy.log)
    assert {seen for seen, _ in MetaSpy.log} >= {480, 360}


def test_informative_meta_features_improve_the_nested_score_and_noise_ones_do_not_break_it():
    rng = np.random.default_rng(0)
    d = make_runs(3000, 300, n_runs=2, strength=[0.6, 0.4], seed=1)
    # the label's base rate moves with a clip property the runs do not see (voiced share, say)
    voiced = rng.random(3000)
    d.y[:, 0] = (rng.random(3000) < 0.1 + 0.8 * voiced).astype(float)
    plain = stack(d.P, d.y, d.folds, d.P_test, method="logreg", labels=LABELS, n_boot=0)
    with_meta = stack(d.P, d.y, d.folds, d.P_test, method="logreg", labels=LABELS, n_boot=0,
                      meta=_meta(d, voiced[:, None], rng.random((300, 1))))
    assert with_meta.nested.score < plain.nested.score - 0.02
    assert with_meta.recipe.meta_features["columns"] == ["m0"]
    assert plain.recipe.meta_features is None
    noise = stack(d.P, d.y, d.folds, d.P_test, method="lgbm", labels=LABELS, n_boot=0,
                  meta=_meta(d, rng.random((3000, 2)), rng.random((300, 2))))
    assert np.isfinite(noise.test).all() and noise.recipe.state.meta_columns == 2


@pytest.mark.parametrize("where", ["OOF", "test-like"])
def test_a_meta_feature_that_copies_a_label_is_refused(where):
    d = make_runs(400, 20, n_runs=2, seed=2)
    tl = make_runs(200, 20, n_runs=2, seed=3)
    meta_oof = np.random.default_rng(0).random((400, 1))
    meta_tl = np.random.default_rng(1).random((200, 1))
    if where == "OOF":
        meta_oof = d.y[:, [1]] + 0.01 * meta_oof  # a label, thinly disguised
    else:
        meta_tl = tl.y[:, [1]] * 2.0
    meta = MetaFeatures(["vad:leaky"], meta_oof, np.zeros((20, 1)), meta_tl)
    message = rf"meta-feature 'vad:leaky' separates label 'real' perfectly on the {where} rows"
    with pytest.raises(ContractError, match=message):
        stack(d.P, d.y, d.folds, d.P_test, method="logreg", labels=LABELS, P_tl=tl.P, y_tl=tl.y,
              folds_tl=tl.folds % 5, meta=meta)
    with pytest.raises(ContractError, match="separates label 'real' perfectly"):
        compare(d.P, d.y, d.folds, P_tl=tl.P, y_tl=tl.y, folds_tl=tl.folds % 5, meta=meta, labels=LABELS,
                methods=["logreg"], n_boot=0)


def test_meta_features_go_only_where_they_are_taken_and_must_match_the_fit():
    d = make_runs(300, 10, n_runs=2, seed=3)
    meta = _meta(d, np.random.default_rng(0).random((300, 1)))
    with pytest.raises(ConfigError, match="method 'mean' takes no meta-features; these do: logreg, lgbm"):
        stack(d.P, d.y, d.folds, d.P_test, method="mean", labels=LABELS, meta=meta)
    with pytest.raises(ConfigError, match="method 'hillclimb' takes no meta-features"):
        make_blender("hillclimb", MULTILABEL).fit(d.P, d.y, meta=meta.oof)
    fitted = make_blender("logreg", MULTILABEL).fit(d.P, d.y, meta=meta.oof)
    with pytest.raises(DataError, match="meta has 0 feature columns; the blender was fitted on 1"):
        fitted.predict(d.P)
    with pytest.raises(DataError, match=r"meta \(OOF rows\) must have shape \(rows, features\) with 300 rows"):
        stack(d.P, d.y, d.folds, d.P_test, method="logreg", labels=LABELS, meta=_meta(d, np.zeros((299, 1))))
    state = blender_state(fitted)
    assert state["meta"] == 1 and len(state["meta_mean"]) == 1 and len(state["meta_scale"]) == 1


def test_the_comparison_offers_meta_candidates_only_with_meta_features():
    names = [c.name for c in candidates(["a"], ["mean", "logreg", "lgbm"], "auto", with_meta=True)]
    assert names[-2:] == ["logreg+meta", "lgbm+meta"]
    assert not any(n.endswith("+meta") for n in (c.name for c in candidates(["a"], ["mean", "logreg"], "auto")))
    d = make_runs(600, 10, n_runs=2, seed=5)
    voiced = np.random.default_rng(1).random(600)
    d.y[:, 0] = (np.random.default_rng(2).random(600) < 0.05 + 0.9 * voiced).astype(float)
    comp = compare(d.P, d.y, d.folds, methods=["logreg"], meta=_meta(d, voiced[:, None]), n_boot=50, labels=LABELS)
    rows = {r["method"]: r for r in comp.rows}
    assert rows["logreg+meta"]["score"] < rows["logreg"]["score"]
    assert comp.chosen.name == "logreg+meta" and comp.chosen.meta
