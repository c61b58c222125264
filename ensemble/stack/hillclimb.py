"""Greedy ensemble selection with replacement (Caruana et al. 2004), bagged, on the competition score.

As AutoGluon writes it: a running mean of the chosen runs, each step adds the run that gives the best
score (ties go to a run already chosen, then to the lower index), the best prefix of the trajectory
is kept and weights come from the counts. The score is separable over labels, so each label gets its
own selection. Bagging: each of `n_bags` selections sees a seeded random `bag_fraction` of the runs
and the weights are averaged, which resists the overfitting of a single greedy path. Scoring uses at
most `max_rows` seeded rows, with exact AUC and Brier; ECE is the textbook one, equal to the
metric's except for values exactly on a bin edge (see `fast_ece`).
"""

from __future__ import annotations

import math

import numpy as np

from ensemble.errors import ConfigError
from ensemble.metric import N_BINS, auc_per_column
from ensemble.stack.base import Blender, logit, register, sigmoid


def fast_auc(y: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Exact ROC AUC of each column of `C` `(rows, candidates)` for 1-D 0/1 `y`.

    One argsort per column; the rank-sum formula is exact when a column has no ties, and columns
    with ties fall back to mid-ranks (`auc_per_column`).
    """
    CT = np.ascontiguousarray(C.T)
    order = np.argsort(CT, axis=1)
    Cs = np.take_along_axis(CT, order, axis=1)
    pos = y.sum()
    neg = len(y) - pos
    rank_sum = y[order] @ np.arange(1, len(y) + 1, dtype=np.float64)
    auc = (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
    tied = (Cs[:, 1:] == Cs[:, :-1]).any(axis=1)
    if tied.any():
        auc[tied] = auc_per_column(np.broadcast_to(y[:, None], (len(y), int(tied.sum()))), C[:, tied])
    return auc


def fast_ece(y: np.ndarray, C: np.ndarray) -> np.ndarray:
    """ECE of each column (10 uniform bins): Σ_bins |Σ y − Σ p| / n.

    Equals the metric's ECE whenever no probability lies exactly on an inner bin edge (where the
    organisers' formula mixes two binning rules); used only to rank candidates during selection.
    """
    n, m = C.shape
    # ceil(10p) − 1 is calibration_curve's bin (an inner-edge value goes to the lower bin)
    bins = np.clip(np.ceil(C * N_BINS).astype(np.int64) - 1, 0, N_BINS - 1) + N_BINS * np.arange(m)[None, :]
    diff = np.bincount(bins.ravel(), weights=(np.broadcast_to(y[:, None], C.shape) - C).ravel(), minlength=N_BINS * m)
    return np.abs(diff.reshape(m, N_BINS)).sum(axis=1) / n


def column_scores(y: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Competition score of each candidate column of `C` `(rows, candidates)` against 1-D `y`."""
    brier = ((C - y[:, None]) ** 2).mean(axis=0)
    return 0.5 * (1 - fast_auc(y, C)) + 0.25 * brier + 0.25 * fast_ece(y, C)


def greedy_select(y: np.ndarray, X: np.ndarray, n_iter: int, space: str) -> np.ndarray:
    """Counts per run of the best prefix of a greedy selection; `X` `(rows, runs)` logits or probabilities."""
    n_runs = X.shape[1]
    counts = np.zeros(n_runs, dtype=np.int64)
    total = np.zeros(X.shape[0])
    best_score, best_counts = math.inf, counts.copy()
    for step in range(1, n_iter + 1):
        cand = (total[:, None] + X) / step
        scores = column_scores(y, sigmoid(cand) if space == "logit" else cand)
        low = scores.min()
        ties = np.flatnonzero(scores <= low + 1e-12)
        chosen = ties[counts[ties] > 0]
        pick = int(chosen[0] if chosen.size else ties[0])
        counts[pick] += 1
        total += X[:, pick]
        if low < best_score - 1e-12:
            best_score, best_counts = low, counts.copy()
    return best_counts


@register("hillclimb")
class HillClimbBlender(Blender):
    """Bagged greedy selection with replacement; blends in `space` 'logit' or 'prob'."""

    def __init__(
        self,
        n_iter: int = 15,
        n_bags: int = 3,
        bag_fraction: float = 0.8,
        space: str = "logit",
        max_rows: int = 6000,
        seed: int = 0,
    ) -> None:
        self.n_iter = n_iter
        self.n_bags = n_bags
        self.bag_fraction = bag_fraction
        self.space = space
        self.max_rows = max_rows
        self.seed = seed

    def _check_params(self) -> None:
        if self.space not in ("logit", "prob"):
            raise ConfigError(f"hillclimb: space must be 'logit' or 'prob'; got {self.space!r}")
        if not 0 < self.bag_fraction <= 1:
            raise ConfigError(f"hillclimb: bag_fraction must be in (0, 1]; got {self.bag_fraction}")
        if self.n_iter < 1 or self.n_bags < 1:
            raise ConfigError(f"hillclimb: n_iter and n_bags must be ≥ 1; got {self.n_iter}, {self.n_bags}")

    def _fit(self, P, y, folds) -> None:
        self._check_params()
        rng = np.random.default_rng(self.seed)
        n_rows, n_runs, n_labels = P.shape
        rows = np.sort(rng.permutation(n_rows)[: self.max_rows])
        X = logit(P[rows]) if self.space == "logit" else P[rows]
        per_bag = max(1, math.ceil(self.bag_fraction * n_runs))
        weights = np.zeros((n_runs, n_labels))
        self.counts_ = []
        for j in range(n_labels):
            yj = y[rows, j]
            if yj.min() == yj.max():
                weights[:, j] = 1.0 / n_runs
                continue
            for _ in range(self.n_bags):
                bag = np.sort(rng.permutation(n_runs)[:per_bag])
                counts = greedy_select(yj, X[:, bag, j], self.n_iter, self.space)
                weights[bag, j] += counts / counts.sum() / self.n_bags
                self.counts_.append({"label": j, "runs": bag.tolist(), "counts": counts.tolist()})
        self.weights_ = weights

    def _predict(self, P: np.ndarray) -> np.ndarray:
        if self.space == "logit":
            return sigmoid(np.einsum("nrl,rl->nl", logit(P), self.weights_))
        return np.einsum("nrl,rl->nl", P, self.weights_)

    def recipe(self) -> dict:
        return {"weights": self.weights_.T.round(6).tolist(), "space": self.space}
