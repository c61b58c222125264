"""Every registered metric has a weighted form: bootstrap replicates (integer row counts) match the metric
computed on explicitly repeated rows, and density-ratio (fractional) weights are accepted."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.metrics import SCORERS
from ensemble.metrics.bootstrap import resamples
from ensemble.metrics.dacon import weighted_auc
from ensemble.task import MULTICLASS

NAMES = sorted(set(SCORERS))


def _column(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.float64)
    p = np.round(0.35 * y + 0.65 * rng.random(n), 2)  # ties, on purpose
    # off the ECE bin edges, where the competition's exact ECE pairs two binnings (see ensemble.metrics.dacon)
    p[np.isclose(p * 10, np.round(p * 10))] += 0.005
    return np.clip(p, 0.0, 1.0), y


def _repeated(scorer, p: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    out = []
    for c in counts.astype(np.int64):
        rows = np.repeat(np.arange(len(p)), c)
        out.append(scorer.sign * scorer.per_label(y[rows, None], p[rows, None])[0])
    return np.array(out)


@pytest.mark.parametrize("name", NAMES)
def test_replicates_match_repeated_rows(name):
    scorer = SCORERS.get(name)
    p, y = _column()
    counts = resamples(len(p), 30, 3).counts()
    np.testing.assert_allclose(scorer.replicate_losses(p, y, counts), _repeated(scorer, p, y, counts), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_resamples_give_the_counts_numbers(name):
    scorer = SCORERS.get(name)
    p, y = _column(seed=1)
    r = resamples(len(p), 45, 7)
    np.testing.assert_allclose(scorer.replicate_losses(p, y, r), scorer.replicate_losses(p, y, r.counts()), rtol=1e-13)


@pytest.mark.parametrize("name", NAMES)
def test_fractional_weights_are_a_weighted_form(name):
    """Density-ratio weights: scaling them changes nothing, equal weights give the unweighted score, and
    twice the weight on a row is that row repeated."""
    scorer = SCORERS.get(name)
    p, y = _column(seed=2)
    P, Y = np.column_stack([p, p[::-1]]), np.column_stack([y, y[::-1]])
    w = np.random.default_rng(0).uniform(0.2, 3.0, len(p))
    weighted = scorer.loss(Y, P, w)
    assert np.isfinite(weighted)
    assert scorer.loss(Y, P, 3.7 * w) == pytest.approx(weighted, rel=1e-12)
    assert scorer.loss(Y, P, np.full(len(p), 0.5)) == pytest.approx(scorer.loss(Y, P), rel=1e-12)
    twice = np.ones(len(p))
    twice[:40] = 2.0
    rows = np.r_[np.arange(len(p)), np.arange(40)]
    assert scorer.loss(Y, P, twice) == pytest.approx(scorer.loss(Y[rows], P[rows]), rel=1e-12)


def _classes(n: int = 240, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, k, n)
    Y = np.eye(k)[t]
    logits = 1.5 * Y + rng.standard_normal((n, k))
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Y, np.round(P, 3)


@pytest.mark.parametrize("name", [n for n in NAMES if SCORERS.get(n).form(MULTICLASS) is not None])
def test_multiclass_forms_weighted_as_repeated_rows(name):
    scorer = SCORERS.get(name).for_task(MULTICLASS)
    Y, P = _classes()
    counts = resamples(len(Y), 5, 11).counts()
    for c in counts:
        rows = np.repeat(np.arange(len(Y)), c.astype(np.int64))
        assert scorer.matrix(Y, P, c) == pytest.approx(scorer.matrix(Y[rows], P[rows], None), rel=1e-12)
    w = np.random.default_rng(1).uniform(0.2, 3.0, len(Y))
    assert scorer.matrix(Y, P, 2.5 * w) == pytest.approx(scorer.matrix(Y, P, w), rel=1e-12)


def test_integer_rank_sum_auc_equals_the_float_formula():
    """Integer counts take the rank-sum path; the same counts as fractions (halved) take the float one."""
    p, y = _column(n=2000, seed=4)
    counts = resamples(len(p), 60, 0).counts()
    np.testing.assert_allclose(weighted_auc(p, y, counts), weighted_auc(p, y, counts * 0.5), rtol=1e-13)
