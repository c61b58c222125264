"""Vectorised bootstrap: replicates as multinomial row counts `(n_boot, rows)`, not index copies, so a
metric scores every replicate at once as row weights (exact with ties; see `Scorer.replicate_losses`).
"""

from __future__ import annotations

import numpy as np

from ensemble.metrics.scorer import COMPETITION, Scorer


def multinomial_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`(n_boot, n)` counts of each row in `n_boot` bootstrap replicates of `n` rows."""
    draws = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def gain_interval(
    y: np.ndarray, p_new: np.ndarray, p_base: np.ndarray, n_boot: int = 100, alpha: float = 0.05, seed: int = 0,
    weights: np.ndarray | None = None, scorer: Scorer = COMPETITION,
) -> dict[str, float]:
    """Loss of the baseline minus loss of the candidate `(rows, labels)` (positive: the candidate is
    better), with a percentile bootstrap interval: both scored on the same replicates, so the interval
    is that of the paired difference. Row `weights` multiply each replicate's counts."""
    gain = scorer.loss(y, p_base, weights) - scorer.loss(y, p_new, weights)
    rng = np.random.default_rng(seed)
    boots = []
    for start in range(0, n_boot, 20):
        counts = multinomial_counts(len(y), min(20, n_boot - start), rng)
        if weights is not None:
            counts = counts * weights[None, :]
        if scorer.matrix is not None:  # multiclass: the whole matrix per replicate
            boots.append(scorer.matrix_replicate_losses(p_base, y, counts)
                         - scorer.matrix_replicate_losses(p_new, y, counts))
            continue
        diff = sum(scorer.replicate_losses(p_base[:, j], y[:, j], counts)
                   - scorer.replicate_losses(p_new[:, j], y[:, j], counts) for j in range(y.shape[1]))
        boots.append(diff / y.shape[1])
    b = np.concatenate(boots) if boots else np.array([])
    b = b[np.isfinite(b)]
    lo, hi = np.quantile(b, [alpha / 2, 1 - alpha / 2]) if b.size else (np.nan, np.nan)
    return {"gain": float(gain), "lo": float(lo), "hi": float(hi), "n_boot": int(b.size), "alpha": alpha}
