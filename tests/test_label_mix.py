"""The test's label mix: joint-label EM/BBSE and its label-shift check on planted runs (a swapped and an
inverted run are no evidence of covariate shift), leaderboard probes and `--test-prior lb`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.stack.planted import planted_runs, write_competition
from ensemble.errors import ConfigError
from ensemble.leaderboard.probe import expected_score, probe_constants, solve
from ensemble.metrics.scorer import get_scorer
from ensemble.stack.joint_prior import joint_codes, joint_mixture_ks
from ensemble.stack.prior import adapt_prior, mixture_ks
from ensemble.stack.probed import ipf, probed_weights
from ensemble.task import MULTICLASS

LABELS = ["fake", "real"]
runner = CliRunner()


@pytest.fixture(scope="module")
def planted():
    return planted_runs(4000, 3000, seed=0)


def test_planted_runs_are_seeded_and_broken_as_named(planted):
    again = planted_runs(4000, 3000, seed=0)
    np.testing.assert_array_equal(again.P_test, planted.P_test)
    assert planted.names == ["informative", "inverted", "swapped", "overconfident", "copy-a", "copy-b"]
    assert planted.P.shape == (4000, 6, 2) and planted.P_test.shape == (3000, 6, 2)
    np.testing.assert_allclose(planted.y.mean(axis=0), [0.5, 0.5], atol=0.03)
    np.testing.assert_allclose(planted.y_test.mean(axis=0), [0.7, 0.35], atol=0.03)
    corr = lambda r, j, k: np.corrcoef(planted.P[:, r, j], planted.y[:, k])[0, 1]  # noqa: E731
    assert corr(0, 0, 0) > 0.4 and corr(1, 0, 0) < -0.4 and corr(2, 0, 1) > 0.4  # informative, inverted, swapped
    assert np.corrcoef(planted.P[:, 0, 0], planted.P[:, 4, 0])[0, 1] > 0.95  # a near-copy


def test_a_swapped_run_is_no_evidence_of_covariate_shift(planted):
    d = planted
    runs = (d.P, d.P_test)
    res = adapt_prior(d.P_test[:, 0], d.P[:, 0], d.y, "em", LABELS, runs=runs)
    assert not res.fallback, res.fallback
    np.testing.assert_allclose(res.prior_used, d.y_test.mean(axis=0), atol=0.03)
    assert res.joint["classes"] == ["none", "fake", "real", "fake+real"]
    # the per-label check rejects the swapped run's columns: they move with the other label
    distance, noise = mixture_ks(d.P[:, 2, 0], d.y[:, 0], d.P_test[:, 2, 0], None, 7)
    assert distance > noise
    code, _ = joint_codes(d.y)
    distance, noise = joint_mixture_ks(d.P[:, 2, 0], code, d.P_test[:, 2, 0], None, 7)
    assert distance < noise


def test_joint_check_still_falls_back_under_covariate_shift(planted):
    d = planted
    z = np.log(d.P_test / (1 - d.P_test))
    squeezed = 1 / (1 + np.exp(-(0.5 * z - 0.4)))  # noisier test audio: every run squeezed and shifted
    res = adapt_prior(squeezed[:, 0], d.P[:, 0], d.y, "em", LABELS, runs=(d.P, squeezed))
    assert set(res.fallback) == set(LABELS) and res.prior_used == res.prior_train
    assert all("covariate shift" in why or "disagree" in why for why in res.fallback.values())


def test_the_free_mixture_is_the_best_over_the_simplex(planted):
    d = planted
    code, combos = joint_codes(d.y)
    best, _ = joint_mixture_ks(d.P[:, 3, 1], code, d.P_test[:, 3, 1], None)
    rng = np.random.default_rng(0)
    for shares in rng.dirichlet(np.ones(len(combos)), 50):
        assert best <= joint_mixture_ks(d.P[:, 3, 1], code, d.P_test[:, 3, 1], shares)[0] + 1e-9


@pytest.mark.parametrize("metric", ["competition", "brier", "logloss"])
def test_probe_scores_are_the_metric_of_a_constant_and_solve_back_to_the_shares(metric):
    rng = np.random.default_rng(1)
    y = (rng.random((6000, 2)) < [0.7, 0.35]).astype(float)
    constants = probe_constants(metric, 2, exclusive=False)
    assert len(constants) == 2
    scores = [get_scorer(metric)(y, np.tile(c, (len(y), 1))) for c in constants]
    np.testing.assert_allclose([expected_score(metric, c, y.mean(axis=0), False) for c in constants], scores, atol=1e-9)
    r = solve(metric, constants, np.round(scores, 5), 5, 1.0, len(y), LABELS, exclusive=False)
    assert np.all(np.abs(np.array(r.shares) - y.mean(axis=0)) <= np.array(r.rounding) + 1e-12)
    assert max(r.rounding) < 1e-4 and r.sampling == [0.0, 0.0]  # the whole test is public: no sampling noise


@pytest.mark.parametrize("metric", ["logloss", "brier"])
def test_k_minus_one_probes_give_a_k_class_prior(metric):
    rng = np.random.default_rng(2)
    Y = np.eye(4)[rng.choice(4, 5000, p=[0.1, 0.2, 0.3, 0.4])]
    constants = probe_constants(metric, 4, exclusive=True)
    assert len(constants) == 3
    scores = [get_scorer(metric, MULTICLASS)(Y, np.tile(c, (len(Y), 1))) for c in constants]
    r = solve(metric, constants, np.round(scores, 4), 4, 0.5, 10000, list("abcd"), exclusive=True)
    np.testing.assert_allclose(r.shares, Y.mean(axis=0), atol=max(r.rounding) + 1e-12)
    assert min(r.sampling) > 0


def test_probing_is_refused_where_constants_say_nothing():
    with pytest.raises(ConfigError, match="AUC 0.5 whatever the labels"):
        probe_constants("auc", 2, exclusive=False)
    with pytest.raises(ConfigError, match="thresholds"):
        probe_constants("macro-f1", 2, exclusive=False)


def test_ipf_matches_the_marginals_closest_to_the_current_shares():
    combos = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=float)
    out = ipf(np.full(4, 0.25), combos, np.array([0.7, 0.35]))
    np.testing.assert_allclose(out @ combos, [0.7, 0.35], atol=1e-9)
    np.testing.assert_allclose(out, [0.3 * 0.65, 0.7 * 0.65, 0.3 * 0.35, 0.7 * 0.35], atol=1e-9)  # independence kept
    y = np.repeat(combos, [10, 40, 30, 20], axis=0)
    w, record = probed_weights(y, None, [0.7, 0.35], False, LABELS)
    np.testing.assert_allclose(np.average(y, axis=0, weights=w), [0.7, 0.35], atol=1e-9)
    assert record["classes"] == ["none", "fake", "real", "fake+real"] and record["marginal_gap"] < 1e-9


def _ens(*args):
    return runner.invoke(app, [str(a) for a in args])


def _public_scores(ws, y_public) -> list[float]:
    out = []
    for k in (1, 2):
        p = pd.read_csv(ws / "submissions" / f"probe-{k}.csv")[LABELS].to_numpy()[: len(y_public)]
        out.append(round(get_scorer("competition")(y_public, p), 5))
    return out


def test_lb_probe_then_stack_with_the_probed_mix(tmp_path, workspace):
    d = planted_runs(1500, 1200, seed=3)
    paths = write_competition(d, tmp_path / "planted")
    comp = paths["comp"]
    done = _ens("lb", "probe", "--data", comp)
    assert done.exit_code == 1 and "--public-share" in done.output
    done = _ens("lb", "probe", "--data", comp, "--public-share", "0.5")
    assert done.exit_code == 0 and "each costs one leaderboard submission" in done.output, done.output
    for name in d.names[:2]:
        assert _ens("import", name, "--oof", paths[f"{name}_oof"], "--test", paths[f"{name}_test"]).exit_code == 0
    done = _ens("stack", *d.names[:2], "--method", "logreg", "--test-prior", "lb", "--name", "x")
    assert done.exit_code == 1 and "no public score recorded for probe-1, probe-2" in done.output
    public = d.y_test[:600]  # the site scores the first half here
    for k, score in enumerate(_public_scores(workspace, public), start=1):
        assert _ens("lb", f"probe-{k}", "--public", score).exit_code == 0
    done = _ens("lb", "probe")
    assert "fake: " in done.output and "±" in done.output
    done = _ens("stack", *d.names[:2], "--method", "logreg", "--test-prior", "lb", "--name", "x")
    assert done.exit_code == 0, done.output
    assert "read off the public leaderboard by probes" in " ".join(done.output.split())
    recipe = json.loads((workspace / "submissions" / "x.json").read_text())["recipe"]
    prior = recipe["prior"]
    assert prior["mode"] == "lb" and recipe["test_prior"] == "lb"
    np.testing.assert_allclose(prior["prior_used"], public.mean(axis=0), atol=1e-3)
    probed = prior["joint"]["probed"]
    assert all(h > 0 for h in probed["half_width"])
    assert "public label mix from the probes" in " ".join(_ens("board").output.split())


def _stack_lb(P, y, folds, P_test, probed, task=None, **kw):
    import sys
    from dataclasses import replace as dc_replace
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from stacking import arrays

    from ensemble.stack.pipeline import stack
    from ensemble.stack.request import StackRequest
    from ensemble.task import MULTILABEL

    tl = {k: kw.pop(k) for k in ("P_tl", "y_tl", "folds_tl") if k in kw}
    inputs = dc_replace(arrays(P, y, folds, P_test, task=task or MULTILABEL, **tl), probed=probed)
    return stack(inputs, StackRequest(runs=tuple(inputs.runs), **kw))


def test_lb_reweights_the_testlike_rows_and_moves_the_test_predictions_to_the_probed_mix(planted):
    d = planted
    # test-like rows: the same runs on other rows drawn at the train mix (what a generator makes)
    tl = planted_runs(2000, 10, seed=5)
    probed = {"labels": LABELS, "shares": [0.7, 0.35], "half_width": [0.01, 0.01]}
    kw = dict(method="logreg", calibrate="auto", n_boot=5, P_tl=tl.P, y_tl=tl.y, folds_tl=tl.folds)
    lb = _stack_lb(d.P, d.y, d.folds, d.P_test, probed, test_prior="lb", **kw)
    none = _stack_lb(d.P, d.y, d.folds, d.P_test, None, test_prior="none", **kw)
    reweighting = lb.recipe.prior.joint["probed"]["reweighting"]
    assert reweighting["marginal_gap"] < 1e-6 and reweighting["after"] != reweighting["before"]
    assert lb.nested_testlike.score != none.nested_testlike.score  # scored at the probed mix
    np.testing.assert_allclose(lb.recipe.prior.prior_used, [0.7, 0.35])
    score = get_scorer("competition")
    assert score(d.y_test, lb.test) < 0.9 * score(d.y_test, none.test)
    assert abs(lb.test[:, 0].mean() - 0.7) < abs(none.test[:, 0].mean() - 0.7)


def test_lb_gives_a_multiclass_stack_the_probed_class_mix():
    rng = np.random.default_rng(0)
    y = np.eye(3)[rng.integers(0, 3, 900)]
    y_test = np.eye(3)[rng.choice(3, 600, p=[0.6, 0.3, 0.1])]

    def run(Y, noise):
        z = 2 * Y + np.random.default_rng(int(noise * 10)).normal(0, noise, Y.shape)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    P = np.stack([run(y, 1.5), run(y, 2.0)], axis=1)
    P_test = np.stack([run(y_test, 1.5), run(y_test, 2.0)], axis=1)
    probed = {"labels": list("abc"), "shares": [0.6, 0.3, 0.1], "half_width": [0.01] * 3}
    kw = dict(method="mean", calibrate="none", metric="logloss", n_boot=5)
    lb = _stack_lb(P, y, np.arange(900) % 3, P_test, probed, task=MULTICLASS, test_prior="lb", **kw)
    none = _stack_lb(P, y, np.arange(900) % 3, P_test, None, task=MULTICLASS, test_prior="none", **kw)
    assert np.abs(lb.test.sum(axis=1) - 1).max() < 1e-9
    logloss = get_scorer("logloss", MULTICLASS)
    assert logloss(y_test, lb.test) < logloss(y_test, none.test)
    assert lb.recipe.prior.mode == "lb" and lb.recipe.prior.prior_used == [0.6, 0.3, 0.1]
