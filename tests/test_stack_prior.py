"""Test-prior adaptation: EM recovers a shifted prior and improves the score."""

import numpy as np
import pytest

from ensemble.errors import ConfigError
from ensemble.metrics.dacon import auc_per_column, competition_score
from stacking import stack
from ensemble.stack.prior import adapt_prior, adjust_prior, bbse_prior, em_prior, sensitivity_table
from ensemble.stack.synthetic import make_runs


def _posteriors(n: int, prior: float, train_prior: float, rng):
    """Exact posteriors under `train_prior` for N(±1, 1) class scores; the true prior is `prior`."""
    y = (rng.random(n) < prior).astype(float)
    x = rng.standard_normal(n) + (2 * y - 1)
    return 1 / (1 + np.exp(-(2 * x + np.log(train_prior / (1 - train_prior))))), y


def test_em_and_bbse_recover_a_shifted_prior():
    rng = np.random.default_rng(0)
    p_oof, y_oof = _posteriors(20000, 0.3, 0.3, rng)
    p_test, y_test = _posteriors(20000, 0.6, 0.3, rng)
    assert abs(em_prior(p_test, 0.3) - 0.6) < 0.03
    assert abs(bbse_prior(p_oof, y_oof, p_test) - 0.6) < 0.03
    res = adapt_prior(p_test[:, None], p_oof[:, None], y_oof[:, None], "em")
    assert abs(res.prior_used[0] - 0.6) < 0.03
    assert any("shifted" in w for w in res.warnings)
    before = competition_score(y_test[:, None], p_test[:, None])
    after = competition_score(y_test[:, None], res.p_test)
    assert after.score < before.score
    assert after.auc == pytest.approx(before.auc, abs=1e-12)


def test_no_shift_no_change_no_warning():
    rng = np.random.default_rng(1)
    p_oof, y_oof = _posteriors(20000, 0.4, 0.4, rng)
    p_test, _ = _posteriors(20000, 0.4, 0.4, rng)
    res = adapt_prior(p_test[:, None], p_oof[:, None], y_oof[:, None], "em")
    assert abs(res.prior_em[0] - 0.4) < 0.02 and not res.warnings
    none = adapt_prior(p_test[:, None], p_oof[:, None], y_oof[:, None], "none")
    np.testing.assert_array_equal(none.p_test[:, 0], p_test)


def test_value_mode_and_monotone_adjustment():
    p = np.linspace(0.01, 0.99, 50)
    q = adjust_prior(p, 0.3, 0.5)
    assert np.all(np.diff(q) > 0) and np.all(q > p)
    res = adapt_prior(p[:, None], p[:, None], (p[:, None] > 0.5).astype(float), 0.5)
    assert res.mode == "value" and res.prior_used == [0.5]
    with pytest.raises(ConfigError, match="one per label"):
        adapt_prior(p[:, None], p[:, None], (p[:, None] > 0.5).astype(float), [0.2, 0.3])


def test_sensitivity_table_is_best_near_the_true_prior():
    rng = np.random.default_rng(2)
    p, y = _posteriors(10000, 0.3, 0.3, rng)
    table = sensitivity_table(y[:, None], p[:, None], [0.3])
    best = min(table, key=lambda row: row["score"])
    assert best["prior"] == pytest.approx(0.3)


def test_stack_with_em_prior_improves_the_test_score():
    d = make_runs(4000, 4000, n_runs=4, prior=(0.3, 0.3), test_prior=(0.6, 0.5), seed=11)
    kw = dict(method="logreg", labels=["fake", "real"], n_boot=5)
    em = stack(d.P, d.y, d.folds, d.P_test, test_prior="em", **kw)
    none = stack(d.P, d.y, d.folds, d.P_test, test_prior="none", **kw)
    assert np.allclose(em.recipe.prior.prior_used, d.y_test.mean(axis=0), atol=0.03)
    assert competition_score(d.y_test, em.test).score < competition_score(d.y_test, none.test).score
    np.testing.assert_allclose(auc_per_column(d.y_test, em.test), auc_per_column(d.y_test, none.test), atol=1e-12)
