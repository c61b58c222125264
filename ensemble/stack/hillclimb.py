"""Greedy ensemble selection with replacement (Caruana et al. 2004), bagged, on the competition score.

As AutoGluon writes it: a running mean of the chosen runs, each step adds the run that gives the best
score (ties go to a run already chosen, then to the lower index), the best prefix of the trajectory
is kept and weights come from the counts. The score is separable over labels, so each label gets its
own selection. Bagging: each of `n_bags` selections sees a seeded random `bag_fraction` of the runs
and the weights are averaged, which resists the overfitting of a single greedy path. Scoring uses at
most `max_rows` seeded rows, with exact AUC and Brier; ECE is the textbook one, equal to the
metric's except for values exactly on a bin edge (see `ensemble.metrics.dacon`). Any registered metric
can drive the selection (`metric=`); the competition score has a vectorised fast path.
"""

from __future__ import annotations

import math

import numpy as np

from ensemble.errors import ConfigError
from ensemble.metrics.scorer import COMPETITION, Scorer, get_scorer
from ensemble.stack.base import logit, register, sigmoid
from ensemble.stack.simple import WeightsBlender
from ensemble.task import MULTILABEL, Task


def greedy_select(y: np.ndarray, X: np.ndarray, n_iter: int, space: str, scorer: Scorer = COMPETITION) -> np.ndarray:
    """Counts per run of the best prefix of a greedy selection; `X` `(rows, runs)` logits or probabilities."""
    def losses(total: np.ndarray, step: int) -> np.ndarray:
        cand = (total[:, None] + X) / step
        return scorer.column_losses(y, sigmoid(cand) if space == "logit" else cand)

    return _greedy(X, n_iter, losses)


def greedy_select_matrix(y: np.ndarray, L: np.ndarray, n_iter: int, scorer: Scorer) -> np.ndarray:
    """Multiclass `greedy_select`: `L` `(rows, runs, classes)` log-probabilities, candidates scored as whole
    softmax matrices by the scorer's multiclass form."""
    from ensemble.stack.multiclass import softmax_rows

    def losses(total: np.ndarray, step: int) -> np.ndarray:
        return np.array([scorer.loss(y, softmax_rows((total + L[:, r]) / step)) for r in range(L.shape[1])])

    return _greedy(L, n_iter, losses)


def _greedy(X: np.ndarray, n_iter: int, losses) -> np.ndarray:
    """The selection loop: `X` `(rows, runs, ...)`; `losses(total, step)` scores adding each run to the
    running sum `total` (`X[:, run]`'s shape) at `step`."""
    n_runs = X.shape[1]
    counts = np.zeros(n_runs, dtype=np.int64)
    total = np.zeros((X.shape[0],) + X.shape[2:])
    best_score, best_counts = math.inf, counts.copy()
    for step in range(1, n_iter + 1):
        scores = losses(total, step)
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
class HillClimbBlender(WeightsBlender):
    """Bagged greedy selection with replacement; blends in `space` 'logit' or 'prob'. Multiclass: one
    selection for all classes, blending log-probabilities (softmax of the weighted sum)."""

    summary = "greedy forward selection of runs, with repeats, bagged"

    def __init__(
        self,
        n_iter: int = 15,
        n_bags: int = 3,
        bag_fraction: float = 0.8,
        space: str = "logit",
        max_rows: int = 6000,
        seed: int = 0,
        metric: str = "competition",
        task: Task = MULTILABEL,
    ) -> None:
        self.task = task
        self.n_iter = n_iter
        self.n_bags = n_bags
        self.bag_fraction = bag_fraction
        self.space = space
        self.max_rows = max_rows
        self.seed = seed
        self.metric = metric

    def _check_params(self) -> None:
        if self.space not in ("logit", "prob"):
            raise ConfigError(f"hillclimb: space must be 'logit' or 'prob'; got {self.space!r}")
        if not 0 < self.bag_fraction <= 1:
            raise ConfigError(f"hillclimb: bag_fraction must be in (0, 1]; got {self.bag_fraction}")
        if self.n_iter < 1 or self.n_bags < 1:
            raise ConfigError(f"hillclimb: n_iter and n_bags must be ≥ 1; got {self.n_iter}, {self.n_bags}")

    def _draw(self, P: np.ndarray) -> tuple[Scorer, np.random.Generator, np.ndarray]:
        """The checked parameters' scorer, the seeded generator and the rows it draws (at most `max_rows`)."""
        self._check_params()
        scorer = get_scorer(self.metric, self.task)
        rng = np.random.default_rng(self.seed)
        return scorer, rng, np.sort(rng.permutation(P.shape[0])[: self.max_rows])

    def _fit_joint(self, P, y, folds) -> None:
        scorer, rng, rows = self._draw(P)
        self.space_ = "logit"  # log-probabilities: a weighted sum of them is softmaxed
        self._fit_multiclass(P[rows], y[rows], scorer, rng)

    def _fit(self, P, y, folds) -> None:
        scorer, rng, rows = self._draw(P)
        n_rows, n_runs, n_labels = P.shape
        self.space_ = self.space
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
                counts = greedy_select(yj, X[:, bag, j], self.n_iter, self.space, scorer)
                weights[bag, j] += counts / counts.sum() / self.n_bags
                self.counts_.append({"label": j, "runs": bag.tolist(), "counts": counts.tolist()})
        self.weights_ = weights

    def _fit_multiclass(self, P: np.ndarray, y: np.ndarray, scorer: Scorer, rng: np.random.Generator) -> None:
        from ensemble.stack.multiclass import log_probs

        n_runs = P.shape[1]
        L, per_bag = log_probs(P), max(1, math.ceil(self.bag_fraction * n_runs))
        weights = np.zeros(n_runs)
        self.counts_ = []
        for _ in range(self.n_bags):
            bag = np.sort(rng.permutation(n_runs)[:per_bag])
            counts = greedy_select_matrix(y, L[:, bag], self.n_iter, scorer)
            weights[bag] += counts / counts.sum() / self.n_bags
            self.counts_.append({"label": "all classes", "runs": bag.tolist(), "counts": counts.tolist()})
        self.weights_ = np.repeat(weights[:, None], P.shape[2], axis=1)

    def recipe(self) -> dict:
        return {"weights": self.weights_.T.round(6).tolist(), "space": self.space}
