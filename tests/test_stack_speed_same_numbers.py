"""The stacker's shortcuts give the numbers of the long way: replicates drawn once (kept as small integer
counts), the baseline scored once, calibrators fitted once per distinct rows, isotonic fits by counts, the
written candidate's fits reused from the comparison, flip's AUCs looked up, a folder's real path resolved
once and its clips' inside-ness decided as realpath + commonpath would."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

from ensemble.metrics.bootstrap import CHUNK, multinomial_counts, resamples
from ensemble.metrics.scorer import COMPETITION
from ensemble.stack.bootstrap import PairedBootstrap
from ensemble.stack.calibration import CALIBRATORS, fitted_calibrator, make_calibrator


def _long_way_gain(y, p_new, p_base, n_boot, alpha, seed):
    """The paired bootstrap as the stacker drew it before: chunks of fresh counts, both scored per chunk."""
    rng = np.random.default_rng(seed)
    boots = []
    for start in range(0, n_boot, CHUNK):
        counts = multinomial_counts(len(y), min(CHUNK, n_boot - start), rng)
        diff = sum(COMPETITION.replicate_losses(p_base[:, j], y[:, j], counts)
                   - COMPETITION.replicate_losses(p_new[:, j], y[:, j], counts) for j in range(y.shape[1]))
        boots.append(diff / y.shape[1])
    b = np.concatenate(boots)
    b = b[np.isfinite(b)]
    return np.quantile(b, [alpha / 2, 1 - alpha / 2])


def test_paired_bootstrap_is_bit_identical_to_fresh_chunks():
    rng = np.random.default_rng(0)
    y = (rng.random((3000, 2)) < 0.45).astype(float)
    base = np.clip(np.round(0.3 * y + 0.7 * rng.random((3000, 2)), 3), 0, 1)
    challengers = [np.clip(np.round(0.4 * y + 0.6 * rng.random((3000, 2)), 3), 0, 1) for _ in range(3)]
    paired = PairedBootstrap(y, 70, 5)
    for p in challengers:
        g = paired.gain(p, base, alpha=0.01)
        lo, hi = _long_way_gain(y, p, base, 70, 0.01, 5)
        assert (g["lo"], g["hi"]) == (lo, hi)  # exactly: same draws, same sums
        assert g["gain"] == COMPETITION.loss(y, base) - COMPETITION.loss(y, p)


def test_resamples_are_the_chunked_draws():
    r = resamples(500, 45, 9)
    rng = np.random.default_rng(9)
    fresh = [multinomial_counts(500, k, rng) for k in (20, 20, 5)]
    chunks = list(r.chunks)
    assert [len(c) for c in chunks] == r.sizes == [20, 20, 5]
    assert all(np.array_equal(a, b) and a.dtype == np.float64 and a.flags.c_contiguous for a, b in zip(chunks, fresh))
    assert np.array_equal(r.counts_b, np.concatenate(fresh))
    assert r.counts_b.dtype == np.uint8 and (r.n_boot, r.rows) == (45, 500)  # kept small; floats made per chunk
    assert resamples(500, 45, 9) is r


def test_a_cached_calibrator_is_the_fresh_fit():
    rng = np.random.default_rng(1)
    y = (rng.random(800) < 0.3).astype(float)
    p = np.clip(0.5 * y + 0.5 * rng.random(800), 0, 1)
    for name in CALIBRATORS:
        cached = fitted_calibrator(name, p, y)
        assert fitted_calibrator(name, p.copy(), y.copy()) is cached  # the same rows: fitted once
        np.testing.assert_array_equal(cached.predict(p), make_calibrator(name).fit(p, y).predict(p))
    other = fitted_calibrator("platt", p[::-1].copy(), y[::-1].copy())
    assert other is not fitted_calibrator("platt", p, y)


def test_split_rank_sums_are_the_one_sort_sums():
    from scipy.stats import rankdata

    from ensemble.metrics.dacon import _sorted_rank_sums, mid_rank_sums

    rng = np.random.default_rng(3)
    n = 5001
    P = np.round(rng.random((4, n)), 2)  # many ties within and across the classes
    P[1] = np.round(P[1], 0)
    for yT in ((rng.random(n) < 0.4).astype(float), (rng.random((4, n)) < 0.6).astype(float)):
        split = mid_rank_sums(yT, P)
        np.testing.assert_array_equal(split, _sorted_rank_sums(yT, P))
    y = (rng.random(n) < 0.4).astype(float)
    expected = [y @ rankdata(c) for c in P]  # scipy's mid-ranks: what the sums stand for
    np.testing.assert_array_equal(mid_rank_sums(y, P), expected)


def _long_way_logistic(X, t, l2=1e-6, n_iter=50, sample_weight=None):
    """`fit_logistic` as it was: every row's weight a 1.0 multiplied in."""
    from ensemble.stack.base import sigmoid

    A = np.column_stack([X, np.ones(len(X))])
    s = np.ones(len(X)) if sample_weight is None else sample_weight
    w = np.zeros(A.shape[1])
    reg = l2 * s.sum() * np.eye(A.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(n_iter):
        p = sigmoid(A @ w)
        g = A.T @ (s * (p - t)) + reg @ w
        H = (A * (s * p * (1 - p))[:, None]).T @ A + reg + 1e-9 * np.eye(A.shape[1])
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


def test_unweighted_logistic_fits_are_the_weighted_by_one_fits():
    from ensemble.stack.calibration import _fit_intercept, fit_logistic

    rng = np.random.default_rng(4)
    y = (rng.random(7001) < 0.35).astype(float)
    x = rng.standard_normal(7001) + 1.3 * y
    for X in (x[:, None], np.column_stack([x, np.tanh(x)])):
        # features as rows: the same Newton steps, sums in another order
        np.testing.assert_allclose(fit_logistic(X, y), _long_way_logistic(X, y), rtol=1e-13, atol=1e-14)
        np.testing.assert_array_equal(fit_logistic(X, y, sample_weight=np.ones(len(y))), fit_logistic(X, y))
    assert _fit_intercept(x, y, 0.2) == _fit_intercept(x, y, 0.2, np.ones(len(y)))


@pytest.mark.parametrize("share", [0.4, 0.002])  # 0.002: too few positives in the prefit rows, start from zero
def test_logistic_started_from_every_kth_row_reaches_the_fit_from_zero(monkeypatch, share):
    from ensemble.stack import calibration

    rng = np.random.default_rng(6)
    n = 3 * calibration.PREFIT_ROWS
    y = (rng.random(n) < share).astype(float)
    X = np.column_stack([rng.standard_normal(n) + 2.0 * y, rng.standard_normal(n)])
    w = rng.uniform(0.5, 2.0, n)
    prefit = [calibration.fit_logistic(X, y), calibration.fit_logistic(X, y, sample_weight=w)]
    monkeypatch.setattr(calibration, "PREFIT_ROWS", 10 * n)
    for fast, slow in zip(prefit, [calibration.fit_logistic(X, y), calibration.fit_logistic(X, y, sample_weight=w)]):
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(fast, _long_way_logistic(X, y) if fast is prefit[0] else fast, rtol=1e-12)


def test_flip_auc_interval_is_the_float_counts_interval():
    from ensemble.metrics.dacon import weighted_auc
    from ensemble.stack.flip import bootstrap_auc_ci

    rng = np.random.default_rng(5)
    y = (rng.random(3000) < 0.4).astype(float)
    s = np.round(0.2 * y + rng.random(3000), 2)  # ties across the classes
    for max_rows in (10_000, 1000):
        got = bootstrap_auc_ci(s, y, 150, 0.05, np.random.default_rng(8), max_rows)
        r = np.random.default_rng(8)
        s2, y2 = s, y
        if len(s) > max_rows:
            keep = r.permutation(len(s))[:max_rows]
            s2, y2 = s[keep], y[keep]
        aucs = weighted_auc(s2, y2, multinomial_counts(len(s2), 150, r))
        lo, hi = np.quantile(aucs[np.isfinite(aucs)], [0.025, 0.975])
        assert got == (float(lo), float(hi))


def test_rank_plan_of_split_sorts_is_the_one_sort_plan():
    from ensemble.metrics.dacon import plan_auc, rank_plan

    rng = np.random.default_rng(6)
    y = (rng.random(4000) < 0.3).astype(float)
    s = np.round(0.3 * y + rng.random(4000), 2)
    order = np.argsort(s, kind="stable")  # the plan as one sort of every row made it
    positive = y[order] == 1
    plan = rank_plan(s, y)
    np.testing.assert_array_equal(plan.neg, order[~positive])
    np.testing.assert_array_equal(plan.pos, order[positive])
    counts = multinomial_counts(4000, 30, rng)
    np.testing.assert_array_equal(plan_auc(plan, counts.astype(np.int32)), _float_weighted_auc(s, y, counts))


def _float_weighted_auc(s, y, counts):
    """The AUC of integer-weighted replicates by the float formula (`weighted_auc`'s path for real weights):
    Σ over tied groups of positive weight × (negative weight below + half the tied negative weight)."""
    order = np.argsort(s, kind="stable")
    s, y, w = s[order], y[order], counts[:, order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos, neg = np.add.reduceat(w * y, starts, axis=1), np.add.reduceat(w * (1 - y), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def test_plan_auc_by_replicate_rows_is_the_float_formula():
    """`plan_auc` on replicate-major counts, block by block, with and without ties between the classes,
    uint8 (`Resamples`) and int64 (`row_counts`) counts: the float formula's numbers exactly."""
    from ensemble.metrics.bootstrap import row_counts
    from ensemble.metrics.dacon import PLAN_BLOCK, plan_auc, rank_plan

    rng = np.random.default_rng(11)
    y = (rng.random(5000) < 0.35).astype(float)
    n_boot = 2 * PLAN_BLOCK + 7  # crosses the blocks
    for s in (np.round(0.3 * y + rng.random(5000), 2), 0.3 * y + rng.random(5000)):  # tied, untied
        plan = rank_plan(s, y)
        assert plan.tied == bool(len(np.intersect1d(s[y == 1], s[y == 0])))
        counts = row_counts(5000, n_boot, np.random.default_rng(3))
        want = _float_weighted_auc(s, y, counts)
        np.testing.assert_array_equal(plan_auc(plan, counts), want)
        np.testing.assert_array_equal(plan_auc(plan, counts.astype(np.uint8)), want)
    r = resamples(5000, n_boot, 4)
    from ensemble.metrics.dacon import weighted_label_parts
    np.testing.assert_array_equal(weighted_label_parts(s, y, r)[0], _float_weighted_auc(s, y, r.counts_b))


def test_lgbm_relabelled_datasets_give_the_fresh_datasets_models():
    import lightgbm as lgb

    from ensemble.stack.meta import LGBMBlender, _features, _validation_rows

    rng = np.random.default_rng(7)
    n = 3000
    fake = (rng.random(n) < 0.45).astype(float)
    y = np.column_stack([fake, (rng.random(n) < 0.3 + 0.4 * fake).astype(float)])
    P = np.clip(0.35 * y[:, None, :] + 0.65 * rng.random((n, 3, 2)), 0.001, 0.999)
    folds = rng.integers(0, 3, n)
    b = LGBMBlender(n_estimators=40, min_child_samples=20).fit(P, y, folds)
    valid = _validation_rows(y, folds, 0)
    for j in range(2):  # the long way: each label's datasets built afresh
        X, t = _features(P, j, True), y[:, j]
        train = lgb.Dataset(X[~valid], t[~valid], free_raw_data=True)
        booster = lgb.train(b._params(int((~valid).sum())), train, num_boost_round=40,
                            valid_sets=[lgb.Dataset(X[valid], t[valid], reference=train)],
                            callbacks=[lgb.early_stopping(20, verbose=False)])
        assert b.best_iterations_[j] == int(booster.best_iteration or 40)
        np.testing.assert_array_equal(b.models_[j].predict(X, num_iteration=b.best_iterations_[j]),
                                      booster.predict(X, num_iteration=b.best_iterations_[j]))


def test_stack_reusing_the_comparisons_fits_is_the_fresh_stack():
    """`ens stack --compare --write` stacks the chosen candidate with the fits the comparison made: the
    written predictions, scores, gain and recipe are those of stacking it afresh."""
    import json
    from dataclasses import asdict

    from ensemble.stack.pipeline import compare, stack
    from ensemble.stack.request import StackRequest
    from ensemble.stack.synthetic import make_runs
    from tests.stacking import arrays

    d = make_runs(n_rows=1200, n_test=300, n_runs=3, seed=4, inverted=[2])
    inputs = arrays(d.P, d.y, d.folds, d.P_test)
    request = StackRequest(runs=tuple(inputs.runs), compare=True, n_boot=40)
    comparison = compare(inputs, request, methods=["mean", "logreg"], n_boot=40)
    for cand in comparison.candidates[-3:]:  # with and without a calibrator, a blend that learns
        asked = replace(request, compare=False).with_candidate(cand)
        reused, fresh = stack(inputs, asked, comparison=comparison), stack(inputs, asked)
        assert comparison.fitted_for(asked, False) is not None
        np.testing.assert_array_equal(reused.test, fresh.test)
        np.testing.assert_array_equal(reused.oof, fresh.oof)
        assert (reused.nested, reused.in_sample, reused.optimism) == (fresh.nested, fresh.in_sample, fresh.optimism)
        assert reused.gain == fresh.gain
        assert json.dumps(asdict(reused.recipe), default=str) == json.dumps(asdict(fresh.recipe), default=str)  # NaN too
    other = replace(request, compare=False, seed=1).with_candidate(comparison.candidates[-1])
    assert comparison.fitted_for(other, False) is None  # another seed: fitted afresh
    assert comparison.fitted_for(replace(request, compare=False).with_candidate(comparison.candidates[-1]),
                                 True) is None  # with meta-features: fitted afresh


@pytest.mark.parametrize("listable", [True, False], ids=["listed", "unreadable-folders"])
def test_check_paths_decides_each_path_as_realpath_and_commonpath(tmp_path, monkeypatch, listable):
    """A plain name in a listed folder inside the competition folder is not resolved: every path is
    accepted or refused as the long way (realpath, then commonpath) decides, and refused with the same
    message: symlinked files and folders, `..`, `.`, missing files and folders, a file taken for a folder."""
    import pandas as pd

    from ensemble.artifacts.competition import check_paths
    from ensemble.errors import DataError

    root = tmp_path / "comp"
    (root / "a").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.wav").write_bytes(b"")
    (root / "a" / "link.wav").symlink_to(tmp_path / "out" / "x.wav")
    (root / "a" / "ok.wav").write_bytes(b"")
    (root / "up").symlink_to(tmp_path)
    (root / "in").symlink_to(root / "a")  # a symlinked folder that stays inside
    (root / "a" / "inner.wav").symlink_to(root / "a" / "ok.wav")
    if not listable:  # a folder one may enter but not list (mode --x; tests run as root, who lists anything)
        def unreadable(path):
            raise PermissionError(13, "Permission denied", path)
        monkeypatch.setattr(os, "scandir", unreadable)
    inside = os.path.realpath(root)
    paths = ["a/ok.wav", "a/link.wav", "a/new.wav", "../comp", "../comp/a/ok.wav", "a/../../out/x.wav",
             "up/comp", "up/out/x.wav", "a/./ok.wav", "a/..", "../comp/../out/x.wav", "ok.wav", "a//ok.wav",
             "a/ok.wav/x", "a/", "a/.", "missing/x.wav", "missing/../../out/x.wav", "in/ok.wav", "in/link.wav",
             "a/inner.wav", "./a/ok.wav", "up/comp/a/ok.wav", "../comp/..", "a/../.."]
    for rel in paths:
        real = os.path.realpath(os.path.join(inside, rel))
        for frame in (pd.DataFrame({"id": ["a1"], "path": [rel]}),
                      pd.DataFrame({"id": ["a0", "a1"], "path": ["a/ok.wav", rel]})):  # a folder seen first
            if os.path.commonpath([inside, real]) == inside:
                check_paths(frame, root, "t.csv")
            else:
                with pytest.raises(DataError) as refused:
                    check_paths(frame, root, "t.csv")
                assert str(refused.value) == (f"t.csv: id 'a1' has path {rel!r}, which resolves to {real}, outside "
                                              f"the competition folder {root}; paths must stay inside it"), rel


def test_validate_oof_names_an_id_not_in_the_folds():
    import pandas as pd

    from ensemble.artifacts.runs import validate_oof
    from ensemble.errors import DataError

    folds = pd.DataFrame({"id": ["t0", "t1", "t2"], "fold": [0, 1, 0]})
    oof = pd.DataFrame({"id": ["t0", "t9", "t2"], "fold": [0, 1, 0], "fake": [0.1, 0.2, 0.3]})
    with pytest.raises(DataError, match="id 't9' is not a train id"):
        validate_oof(oof, ["fake"], folds, "oof.csv")
    validate_oof(oof.assign(id=["t2", "t0", "t1"], fold=[0, 0, 1]), ["fake"], folds, "oof.csv")  # any order
    with pytest.raises(DataError, match="id 't9' is not a train id"):  # duplicate fold ids: the long way
        validate_oof(oof, ["fake"], pd.concat([folds, folds]), "oof.csv")


def test_isotonic_by_counts_is_scikit_learns_fit():
    """The isotonic calibrator's unweighted 0/1 fit (counts from two sorts) has scikit-learn's thresholds,
    bounds and predictions bit for bit: exact ties, near-ties (within 1e-15), saturated probabilities."""
    from sklearn.isotonic import IsotonicRegression

    from ensemble.stack.calibration import IsotonicCalibrator, cal_logit

    rng = np.random.default_rng(3)
    n = 4000
    y = (rng.random(n) < 0.4).astype(float)
    base = 1 / (1 + np.exp(-(2 * y - 1) - rng.normal(size=n)))
    near = base.copy()
    near[:300] = 0.3 + rng.integers(0, 3, 300) * 1e-17 + rng.integers(0, 2, 300) * 5.6e-17  # a chain of near-ties
    cases = [(base, y), (np.round(base, 2), y), (near, y),
             (np.where(rng.random(n) < 0.05, 1.0, np.where(rng.random(n) < 0.05, 0.0, base)), y)]
    ulps = np.array([0.5 + k * np.spacing(0.5) for k in range(6)])  # logits 0, 4.4e-16, 8.9e-16, 1.3e-15, …
    cases.append((np.r_[0.2, ulps, 0.9], np.array([0, 1, 0, 0, 1, 1, 0, 1], dtype=float)))  # one chain, then another
    q = np.concatenate([base, rng.random(500), ulps, [0.0, 1.0]])
    for p, y in cases:
        ours = IsotonicCalibrator().fit(p, y).iso_
        theirs = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(cal_logit(p), y)
        for attr in ("X_thresholds_", "y_thresholds_", "X_min_", "X_max_"):
            np.testing.assert_array_equal(getattr(ours, attr), getattr(theirs, attr))
        np.testing.assert_array_equal(ours.predict(cal_logit(q)), theirs.predict(cal_logit(q)))


def test_flip_looks_up_the_reoriented_aucs_it_computed_before():
    """`flip` reads the AUCs of its re-ordered columns from the matrix of the runs as given: each is the
    one `auc_matrix` of the re-ordered runs gives, exactly, and the inverted run is still found."""
    from ensemble.stack.flip import FlipBlender, auc_matrix, bootstrap_auc_ci

    rng = np.random.default_rng(2)
    n = 2000
    fake = (rng.random(n) < 0.5).astype(float)
    real = np.where(rng.random(n) < 0.8, 1 - fake, rng.random(n) < 0.5).astype(float)  # mostly the other label
    y = np.column_stack([fake, real])
    P = 1 / (1 + np.exp(-(2 * y[:, None, :] - 1) * 1.5 - rng.normal(size=(n, 4, 2))))
    P[:, 1] = P[:, 1, ::-1].copy()  # run 1: columns swapped (its fake column scores below 0.5 against fake)
    P[:, 2] = 1 - P[:, 2]           # run 2: inverted
    b = FlipBlender(n_boot=50).fit(P, y, rng.integers(0, 3, n))
    assert (b.perm_[1] == [1, 0]).all() and b.invert_[2].all() and not b.invert_[[0, 1, 3]].any()
    A_P, A_Q = auc_matrix(P, y), auc_matrix(np.take_along_axis(P, b.perm_[None], axis=2), y)
    rng, Q, expected = np.random.default_rng(0), np.take_along_axis(P, b.perm_[None], axis=2), []
    for r in range(4):
        for j in range(2):
            assert A_P[r, b.perm_[r, j], j] == A_Q[r, j, j]
            if A_Q[r, j, j] < 0.5:  # the long way: a bootstrap for each column the re-ordered AUCs flag
                lo, hi = bootstrap_auc_ci(Q[:, r, j], y[:, j], 50, 0.05, rng, 10000)
                expected.append([round(lo, 4), round(hi, 4)])
    assert [d["ci"] for d in b.decisions_ if d["kind"] == "invert"] == expected


@pytest.mark.parametrize("method", ["logreg", "hillclimb"])
def test_nested_predictions_sharing_fold_blends_are_each_fold_fitted_alone(method):
    """The nested run takes each fold's blend of the fit rows from one cache (the final pipeline's inner
    blend of fold f is outer fold f's prediction): the numbers of fitting every outer fold's pipeline alone."""
    from ensemble.stack.base import make_blender
    from ensemble.stack.nested import EvalSet, FitCache, StackPipeline, nested_predict
    from ensemble.stack.synthetic import make_runs
    from ensemble.task import MULTILABEL

    d = make_runs(n_rows=1500, n_test=10, n_runs=3, seed=8, swapped=[1])
    params = {"n_bags": 3} if method == "hillclimb" else {}
    factory = lambda: make_blender(method, MULTILABEL, **params)  # noqa: E731
    cache = FitCache(factory, d.P, d.y, d.folds)
    shared = nested_predict(factory, (d.P, d.y, d.folds), {"oof": EvalSet(d.P, d.folds)}, "auto", cache=cache)["oof"]
    final = StackPipeline(factory, "auto").fit_cached(cache, frozenset())
    for k in np.unique(d.folds):
        train, rows = d.folds != k, d.folds == k
        alone = StackPipeline(factory, "auto").fit(d.P[train], d.y[train], d.folds[train])
        np.testing.assert_array_equal(shared[rows], alone.predict(d.P[rows]))
    alone = StackPipeline(factory, "auto").fit(d.P, d.y, d.folds)
    assert final.calibration_ == alone.calibration_
    np.testing.assert_array_equal(final.predict(d.P), alone.predict(d.P))


def test_a_comparisons_gain_and_gap_are_those_the_long_way_scores():
    """A comparison's row takes its gain over the best single run and its fit-set score from the nested
    score it made (no second scoring of the same predictions): the long way's numbers."""
    from ensemble.stack.bootstrap import gain_interval
    from ensemble.stack.nested import best_single_run
    from ensemble.stack.pipeline import compare
    from ensemble.stack.request import StackRequest
    from ensemble.stack.synthetic import make_runs
    from tests.stacking import arrays

    d = make_runs(n_rows=1200, n_test=300, n_runs=3, seed=5, inverted=[2])
    c = compare(arrays(d.P, d.y, d.folds, d.P_test), StackRequest(method="auto"), methods=["mean", "logreg"])
    best = best_single_run(d.P, d.y)[0]
    for _, _, final, ev in c.fitted:
        long = gain_interval(d.y, ev.oof["clean"], d.P[:, best, :], n_boot=0, seed=0)
        assert ev.gain["gain"] == long["gain"] and ev.gain["n_boot"] == 0
        assert ev.optimism == COMPETITION.loss(d.y, ev.oof["clean"]) - COMPETITION.loss(d.y, final.predict(d.P))


def test_lgbm_complementary_label_is_one_fit_whose_trees_are_negated(monkeypatch):
    """fake/real with real = 1 − fake: one boosting fit; the real model predicts what fitting real afresh
    predicts (to rounding), the same inputs give the same predictions, and its saved state predicts them."""
    import lightgbm as lgb

    from ensemble.stack.base import Blender
    from ensemble.stack.meta import LGBMBlender, _features, _validation_rows

    rng = np.random.default_rng(11)
    n = 3000
    fake = (rng.random(n) < 0.45).astype(float)
    y = np.column_stack([fake, 1.0 - fake])
    P = np.clip(0.35 * y[:, None, :] + 0.65 * rng.random((n, 3, 2)), 0.001, 0.999)
    folds = rng.integers(0, 3, n)
    fits = []
    train = lgb.train
    monkeypatch.setattr(lgb, "train", lambda *a, **k: fits.append(1) or train(*a, **k))
    b = LGBMBlender(n_estimators=60, min_child_samples=20).fit(P, y, folds)
    assert len(fits) == 1
    monkeypatch.setattr(lgb, "train", train)
    valid = _validation_rows(y, folds, 0)
    X, t = _features(P, 1, True), y[:, 1]  # the long way: the real label boosted on its own
    first = lgb.Dataset(X[~valid], t[~valid], free_raw_data=True)
    booster = lgb.train(b._params(int((~valid).sum())), first, num_boost_round=60,
                        valid_sets=[lgb.Dataset(X[valid], t[valid], reference=first)],
                        callbacks=[lgb.early_stopping(20, verbose=False)])
    assert b.best_iterations_[1] == b.best_iterations_[0] == int(booster.best_iteration or 60)
    np.testing.assert_allclose(b.predict(P)[:, 1], booster.predict(X, num_iteration=b.best_iterations_[1]),
                               rtol=0, atol=1e-14)
    again = LGBMBlender(n_estimators=60, min_child_samples=20).fit(P, y, folds)
    np.testing.assert_array_equal(again.predict(P), b.predict(P))
    np.testing.assert_array_equal(Blender.from_state(b.state()).predict(P), b.predict(P))


def test_lgbm_mirrored_label_is_predicted_from_its_twins_raw_scores(monkeypatch):
    """One LightGBM prediction for a fake/real pair: the logistic of the raw scores is LightGBM's own
    `binary` output and the negated raw scores are the mirrored booster's, so each label is what its own
    booster predicts, bit for bit (the old path, one `predict` per label)."""
    import lightgbm as lgb

    from ensemble.stack.meta import LGBMBlender, _features

    rng = np.random.default_rng(13)
    n = 4000
    fake = (rng.random(n) < 0.45).astype(float)
    y = np.column_stack([fake, 1.0 - fake])
    P = np.clip(0.35 * y[:, None, :] + 0.65 * rng.random((n, 3, 2)), 0.001, 0.999)
    b = LGBMBlender(n_estimators=80, min_child_samples=20).fit(P, y, rng.integers(0, 3, n))
    assert b.mirror_of_ == [None, 0]
    P_new = np.clip(rng.random((6000, 3, 2)), 0.001, 0.999)
    X = _features(P_new, 0, True)
    direct = np.column_stack([m.predict(X, num_iteration=it, num_threads=1)
                              for m, it in zip(b.models_, b.best_iterations_)])
    calls = []
    predict = lgb.Booster.predict
    monkeypatch.setattr(lgb.Booster, "predict", lambda self, *a, **k: calls.append(1) or predict(self, *a, **k))
    np.testing.assert_array_equal(b.predict(P_new), direct)
    assert len(calls) == 1


def test_challengers_scored_together_are_scored_as_one_at_a_time():
    """`PairedBootstrap.prepare` scores many predictions on shared float chunks (groups of `PARTS_GROUP`
    label columns): each gain is the long way's, bit for bit, with and without density-ratio weights."""
    from ensemble.metrics.dacon import PARTS_GROUP

    rng = np.random.default_rng(12)
    y = (rng.random((2500, 2)) < 0.4).astype(float)
    base = np.clip(np.round(0.3 * y + 0.7 * rng.random((2500, 2)), 3), 0, 1)
    challengers = [np.clip(0.4 * y + 0.6 * rng.random((2500, 2)), 0, 1) for _ in range(PARTS_GROUP)]
    together = PairedBootstrap(y, 50, 3)
    together.prepare([base] + challengers)
    for p in challengers:
        g = together.gain(p, base, alpha=0.05)
        assert (g["lo"], g["hi"]) == tuple(_long_way_gain(y, p, base, 50, 0.05, 3))
        assert g == PairedBootstrap(y, 50, 3).gain(p, base, alpha=0.05)
    w = rng.random(2500) + 0.5
    weighted = PairedBootstrap(y, 50, 3, w)
    weighted.prepare(challengers[:3] + [base])
    for p in challengers[:3]:
        assert weighted.gain(p, base) == PairedBootstrap(y, 50, 3, w).gain(p, base)


def test_ece_bins_by_comparisons_are_searchsorted():
    """The ECE bin of a probability counted by comparisons with the inner edges is `searchsorted`'s: on
    the edges, one step either side of them, at 0 and 1, NaN, and random values, 1-D and 2-D."""
    from ensemble.metrics.dacon import EDGES, ece_bins

    rng = np.random.default_rng(13)
    edgy = np.concatenate([EDGES, np.nextafter(EDGES, 2.0), np.nextafter(EDGES, -1.0), np.round(rng.random(500), 1),
                           rng.random(500), [np.nan, -np.inf, np.inf]])
    for p in (edgy, edgy[:-3], rng.random((300, 4))):
        got = ece_bins(p)
        assert got.dtype == np.intp
        np.testing.assert_array_equal(got, np.searchsorted(EDGES[1:-1], p))


def test_histogram_counts_by_comparisons_are_numpys():
    """The exact ECE's histogram weights counted by comparisons are `numpy.histogram`'s: edge values go
    to the upper bin but 1.0 to the last, values outside [0, 1] are left out, NaN as numpy has it."""
    from ensemble.metrics.dacon import EDGES, histogram_counts

    rng = np.random.default_rng(14)
    edgy = np.concatenate([EDGES, np.nextafter(EDGES, 2.0), np.nextafter(EDGES, -1.0), np.round(rng.random(500), 1),
                           rng.random(500), [-0.5, 1.5]])
    for p in (edgy, edgy[:-2], np.r_[edgy, np.nan], rng.random(1000)):
        got, want = histogram_counts(p), np.histogram(p, bins=EDGES)[0]
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_cross_fitted_isotonic_from_one_sort_is_each_folds_own_fit():
    """`_cross_fitted` sorts the logits once and hands each fold's isotonic fit its rows' sorted logits:
    the thresholds and predictions of sorting each fold's rows afresh (ties included)."""
    from ensemble.stack import calibration

    rng = np.random.default_rng(9)
    n = 5000
    y = (rng.random(n) < 0.4).astype(float)
    p = np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0.0, 1.0), 3)  # ties, and exact 0s and 1s
    folds = rng.integers(0, 4, n)
    calibration._FITTED.clear()
    got = calibration._cross_fitted(["isotonic"], p, y, folds, None, p, folds)[:, 0]
    for k in range(4):
        train, rows = folds != k, folds == k
        alone = make_calibrator("isotonic").fit(p[train], y[train])
        cached = fitted_calibrator("isotonic", p[train], y[train])
        np.testing.assert_array_equal(cached.iso_.X_thresholds_, alone.iso_.X_thresholds_)
        np.testing.assert_array_equal(cached.iso_.y_thresholds_, alone.iso_.y_thresholds_)
        np.testing.assert_array_equal(got[rows], alone.predict(p[rows]))
