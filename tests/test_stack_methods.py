"""Synthetic runs with known structure: flip finds and fixes each fault; learned blends beat the best run and mean."""

import numpy as np
import pytest

from ensemble.task import MULTILABEL
from ensemble.metrics.dacon import competition_score
from ensemble.stack import make_blender
from stacking import stack
from ensemble.stack.flip import bootstrap_auc_ci
from ensemble.metrics.dacon import column_scores
from ensemble.stack.hillclimb import greedy_select
from ensemble.stack.nested import best_single_run
from ensemble.stack.synthetic import make_runs

# runs 0, 4, 5: correlated good ones; 1 inverted, 2 columns swapped, 3 over-confident
FAULTS = dict(inverted=[1], swapped=[2], overconfident=[3])


@pytest.fixture(scope="module")
def runs():
    return make_runs(3000, 500, n_runs=6, strength=[0.8, 1.0, 1.0, 1.0, 0.9, 1.1], seed=12, **FAULTS)


def test_flip_finds_and_fixes_each_fault(runs):
    flip = make_blender("flip", MULTILABEL).fit(runs.P, runs.y)
    kinds = {(d["kind"], d["run"]) for d in flip.decisions_}
    assert ("swap", 2) in kinds
    assert {d["label"] for d in flip.decisions_ if d["kind"] == "invert" and d["run"] == 1} == {0, 1}
    assert {d["label"] for d in flip.decisions_ if d["kind"] == "overconfident" and d["run"] == 3} == {0, 1}
    # nothing else is swapped or inverted
    assert {r for k, r in kinds if k in ("swap", "invert")} == {1, 2}
    assert flip.perm_[2].tolist() == [1, 0] and flip.invert_[1].all()
    temps = {(d["run"], d["label"]): d["temperature"] for d in flip.decisions_ if d["kind"] == "overconfident"}
    assert all(t > 2.5 for t in temps.values())
    # after the fixes, every run's oriented column ranks its own label well
    Q = flip._orient(runs.P)
    for r in range(6):
        assert competition_score(runs.y, Q[:, r, :]).auc > 0.75


@pytest.fixture(scope="module")
def nested_scores(runs):
    out = {}
    for method in ("mean", "flip", "hillclimb", "logreg", "lgbm"):
        out[method] = stack(runs.P, runs.y, runs.folds, runs.P_test, method=method, labels=["fake", "real"],
                            n_boot=10).nested.score
    return out


@pytest.mark.parametrize("method", ["flip", "hillclimb", "logreg", "lgbm"])
def test_nested_score_beats_best_single_run_and_mean(runs, nested_scores, method):
    best, singles = best_single_run(runs.P, runs.y)
    assert nested_scores[method] <= singles[best]
    assert nested_scores[method] < nested_scores["mean"]


def test_bootstrap_ci_excludes_half_only_for_inverted(runs):
    rng = np.random.default_rng(0)
    lo, hi = bootstrap_auc_ci(1 - runs.P[:, 0, 0], runs.y[:, 0], 200, 0.05, rng, 10_000)
    assert hi < 0.5
    lo, hi = bootstrap_auc_ci(rng.random(3000), runs.y[:, 0], 200, 0.05, rng, 10_000)
    assert lo < 0.5 < hi


def test_greedy_selection_ties_and_best_prefix():
    y = np.array([0, 0, 1, 1, 0, 1], dtype=float)
    good = np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7])
    X = np.column_stack([good, good, 1 - good])
    counts = greedy_select(y, X, n_iter=5, space="prob")
    # the two identical good runs tie: the first is taken and then kept (ties go to chosen runs);
    # adding the inverted run never helps, so the best prefix is the first step
    assert counts.tolist() == [1, 0, 0]
    scores = column_scores(y, X)
    assert scores[0] == scores[1] < scores[2]


def test_hillclimb_weights_from_counts_sum_to_one(runs):
    hc = make_blender("hillclimb", MULTILABEL, n_bags=2).fit(runs.P, runs.y)
    assert np.allclose(hc.weights_.sum(axis=0), 1) and (hc.weights_ >= 0).all()
    assert hc.weights_[1].max() == 0  # the inverted run never helps


def test_lgbm_still_splits_on_a_small_fit_set():
    d = make_runs(300, 50, n_runs=4, seed=13)
    r = stack(d.P, d.y, d.folds, d.P_test, method="lgbm", labels=["fake", "real"], n_boot=5)
    assert r.nested.auc > 0.85
    assert all(n > 1 for n in r.recipe.blender["best_iterations"])
