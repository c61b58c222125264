"""Vectorised bootstrap of the metric's parts: replicates as multinomial row counts, not index copies.

Resampling rows duplicates values, so rank-based AUC on copied arrays would need a tie-aware sort per
replicate. Instead each replicate is a row of counts `(n_boot, rows)`: sorting the scores once, the
AUC of a replicate is Σ over groups of tied scores of positive weight × (negative weight below +
half the tied negative weight) / (W+ · W−), exact with ties. Brier and ECE are weighted sums.
"""

from __future__ import annotations

import numpy as np

from ensemble.metric import N_BINS, MetricError, ScoreParts, competition_score


def multinomial_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`(n_boot, n)` counts of each row in `n_boot` bootstrap replicates of `n` rows."""
    draws = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def weighted_auc(s: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUC of 1-D scores `s` for 0/1 `y` in each replicate (NaN where a replicate holds one class)."""
    order = np.argsort(s, kind="stable")
    s, y, w = s[order], y[order], counts[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * (1 - y), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)


def weighted_label_parts(p: np.ndarray, y: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """AUC, Brier and ECE of one label column in each replicate (row weights `counts` `(n_boot, rows)`).

    ECE is Σ_bins |Σ w·(y − p)| / Σ w with calibration_curve's bins (equal to the metric's unless a
    probability sits exactly on an inner bin edge).
    """
    total = counts.sum(axis=1)
    brier = counts @ (p - y) ** 2 / total
    bins = np.clip(np.ceil(p * N_BINS).astype(np.int64) - 1, 0, N_BINS - 1)
    onehot = np.zeros((len(p), N_BINS))
    onehot[np.arange(len(p)), bins] = y - p
    ece = np.abs(counts @ onehot).sum(axis=1) / total
    return weighted_auc(p, y, counts), brier, ece


def weighted_label_score(p: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """0.5·(1 − AUC) + 0.25·Brier + 0.25·ECE of one label column in each replicate."""
    auc, brier, ece = weighted_label_parts(p, y, counts)
    return 0.5 * (1 - auc) + 0.25 * brier + 0.25 * ece


def weighted_score(y: np.ndarray, p: np.ndarray, weights: np.ndarray | None = None) -> ScoreParts:
    """The competition score of `(rows, labels)` predictions with row weights (None: the exact metric).

    Density-ratio weights make the test-like rows stand for the real test's mix of conditions.
    """
    if weights is None:
        return competition_score(y, p)
    parts = np.array([[float(v[0]) for v in weighted_label_parts(p[:, j], y[:, j], weights[None, :])]
                      for j in range(y.shape[1])])
    if not np.isfinite(parts).all():
        raise MetricError("a label column holds one class: AUC is undefined")
    auc, brier, ece = parts.mean(axis=0)
    return ScoreParts(score=float(0.5 * (1 - auc) + 0.25 * brier + 0.25 * ece), auc=float(auc), brier=float(brier),
                      ece=float(ece))


def gain_interval(
    y: np.ndarray, p_new: np.ndarray, p_base: np.ndarray, n_boot: int = 100, alpha: float = 0.05, seed: int = 0,
    weights: np.ndarray | None = None,
) -> dict[str, float]:
    """Score of the baseline minus score of the candidate `(rows, labels)` (positive: the candidate is
    better), with a percentile bootstrap interval: both scored on the same replicates, so the interval
    is that of the paired difference. Row `weights` multiply each replicate's counts."""
    gain = weighted_score(y, p_base, weights).score - weighted_score(y, p_new, weights).score
    rng = np.random.default_rng(seed)
    boots = []
    for start in range(0, n_boot, 20):
        counts = multinomial_counts(len(y), min(20, n_boot - start), rng)
        if weights is not None:
            counts = counts * weights[None, :]
        diff = sum(weighted_label_score(p_base[:, j], y[:, j], counts)
                   - weighted_label_score(p_new[:, j], y[:, j], counts) for j in range(y.shape[1]))
        boots.append(diff / y.shape[1])
    b = np.concatenate(boots) if boots else np.array([])
    b = b[np.isfinite(b)]
    lo, hi = np.quantile(b, [alpha / 2, 1 - alpha / 2]) if b.size else (np.nan, np.nan)
    return {"gain": float(gain), "lo": float(lo), "hi": float(hi), "n_boot": int(b.size), "alpha": alpha}
