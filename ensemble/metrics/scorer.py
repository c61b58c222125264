"""Scorers: a metric with its direction, exact per-label form and fast forms for the stacker's loops.

Every consumer that ranks predictions — hill climbing, the calibrator choice, nested CV, the bootstrap
of a gain, the prior sensitivity table — takes a `Scorer` and works with its *loss* (the score, negated
when greater is better), so any registered metric can drive them (AutoGluon's `Scorer`). The
competition scorer brings fast vectorised forms; other scorers fall back to the exact one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ensemble.errors import ConfigError
from ensemble.metrics import dacon
from ensemble.metrics.dacon import MetricError, ScoreParts
from ensemble.registry import Registry

PerLabel = Callable[[np.ndarray, np.ndarray], np.ndarray]       # (y, p) (rows, labels) -> (labels,)
Columns = Callable[[np.ndarray, np.ndarray], np.ndarray]        # (y 1-D, C (rows, cands)) -> (cands,)
Replicates = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (p 1-D, y 1-D, counts (B, rows)) -> (B,)


@dataclass(frozen=True)
class Scorer:
    """A metric that knows its direction; `per_label` is exact, `columns`/`replicates` are fast paths."""

    name: str
    per_label: PerLabel
    greater_is_better: bool = False
    columns: Columns | None = None
    replicates: Replicates | None = None
    parts: Callable[[np.ndarray, np.ndarray, np.ndarray | None], ScoreParts] | None = None

    def __call__(self, y: np.ndarray, p: np.ndarray) -> float:
        """The score (mean over label columns) in the metric's own direction."""
        return float(np.mean(self.per_label(np.asarray(y, float), np.asarray(p, float))))

    @property
    def sign(self) -> float:
        """+1 when lower is better: multiply a score by it to get a loss to minimise."""
        return -1.0 if self.greater_is_better else 1.0

    def is_better(self, a: float, b: float) -> bool:
        """True when score `a` beats score `b`."""
        return a > b if self.greater_is_better else a < b

    def column_losses(self, y: np.ndarray, C: np.ndarray) -> np.ndarray:
        """Loss of each candidate column of `C` `(rows, candidates)` against 1-D targets `y`."""
        if self.columns is not None:
            return self.sign * self.columns(y, C)
        Y = np.broadcast_to(y[:, None], C.shape)
        return self.sign * np.array([self.per_label(Y[:, [k]], C[:, [k]])[0] for k in range(C.shape[1])])

    def replicate_losses(self, p: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Loss of one label column in each replicate of row weights `counts` `(n_boot, rows)`."""
        if self.replicates is not None:
            return self.sign * self.replicates(p, y, counts)
        if not np.array_equal(counts, np.round(counts)):
            raise ConfigError(f"metric {self.name!r} has no weighted form: it cannot use density-ratio weights")
        out = []
        for c in counts.astype(np.int64):
            rows = np.repeat(np.arange(len(p)), c)
            try:
                out.append(self.per_label(y[rows, None], p[rows, None])[0])
            except MetricError:
                out.append(np.nan)
        return self.sign * np.array(out)

    def score_parts(self, y: np.ndarray, p: np.ndarray, weights: np.ndarray | None = None) -> ScoreParts:
        """The score (and the competition's parts where the metric has them), rows weighted by `weights`."""
        if self.parts is not None:
            return self.parts(y, p, weights)
        if weights is None:
            s = self(y, p)
        else:
            s = float(np.mean([self.sign * self.replicate_losses(p[:, j], y[:, j], weights[None, :])[0]
                               for j in range(y.shape[1])]))
        return ScoreParts(score=s, auc=float("nan"), brier=float("nan"), ece=float("nan"))

    def loss(self, y: np.ndarray, p: np.ndarray, weights: np.ndarray | None = None) -> float:
        """The loss (lower is better) of `(rows, labels)` predictions, rows weighted by `weights`."""
        return self.sign * self.score_parts(y, p, weights).score


def _log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-15) -> np.ndarray:
    p = np.clip(p, eps, 1 - eps)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p)).mean(axis=0)


SCORERS: Registry[Scorer] = Registry("metric")
COMPETITION = SCORERS.add("competition", Scorer(
    "competition", dacon.label_scores, columns=dacon.column_scores, replicates=dacon.weighted_label_score,
    parts=dacon.weighted_score))
SCORERS.add("auc", Scorer("auc", lambda y, p: dacon.auc_per_column(y, p), greater_is_better=True))
SCORERS.add("logloss", Scorer("logloss", _log_loss))
SCORERS.add("brier", Scorer("brier", dacon.brier_per_column))
SCORERS.add("accuracy", Scorer("accuracy", lambda y, p: ((p >= 0.5) == y).mean(axis=0), greater_is_better=True))


def get_scorer(name: str | Scorer) -> Scorer:
    """The scorer registered under `name` (a Scorer passes through); an unknown name lists the valid ones."""
    return name if isinstance(name, Scorer) else SCORERS.get(name)
