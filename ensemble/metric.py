"""The competition metric, vectorised over label columns, and scorers that know their direction.

Score = 0.5·(1 − mean AUC) + 0.25·mean Brier + 0.25·mean ECE over the label columns; lower is better.
It reproduces the organisers' code exactly, quirks included:

- ECE pairs scikit-learn's `calibration_curve` bins (a value on an inner edge goes to the *lower* bin)
  with `numpy.histogram` weights (a value on an inner edge goes to the *upper* bin), position by
  position over non-empty bins. When both have the same number of non-empty bins the pairs may mix
  neighbouring bins, as in the original. When the counts differ the original broadcasts (one of them
  has a single bin) or fails; we do the same and raise `MetricError` for the failure.
- AUC of a column holding one class is undefined (scikit-learn raises): we raise `MetricError`
  naming the column rather than inventing a value.

Arrays are `(rows, labels)`: `y` holds 0/1 targets, `p` probabilities in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
from scipy.stats import rankdata

from ensemble.errors import EnsError

N_BINS = 10
_EDGES = np.linspace(0.0, 1.0, N_BINS + 1)


class MetricError(EnsError):
    """The metric is undefined for the given targets (e.g. one class only)."""


@dataclass(frozen=True)
class ScoreParts:
    """The competition score and its parts (means over label columns)."""

    score: float
    auc: float
    brier: float
    ece: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _as_2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[:, None] if a.ndim == 1 else a


def _check(y: np.ndarray, p: np.ndarray, names: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    y, p = _as_2d(y), _as_2d(p)
    if y.shape != p.shape:
        raise MetricError(f"targets have shape {y.shape} but predictions {p.shape}")
    if y.shape[0] == 0:
        raise MetricError("no rows to score")
    return y, p


def _column_names(names: list[str] | None, k: int) -> list[str]:
    return list(names) if names is not None else [f"column {j}" for j in range(k)]


def auc_per_column(y: np.ndarray, p: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """ROC AUC per column (ties count half, as `roc_auc_score`); shape `(labels,)`."""
    y, p = _check(y, p, names)
    positives = y.sum(axis=0)
    negatives = y.shape[0] - positives
    for j in np.flatnonzero((positives == 0) | (negatives == 0)):
        name = _column_names(names, y.shape[1])[j]
        raise MetricError(f"AUC is undefined for {name}: the answers hold only one class")
    ranks = rankdata(p, axis=0)
    rank_sum = (ranks * y).sum(axis=0)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def brier_per_column(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Mean squared error of the probability per column; shape `(labels,)`."""
    y, p = _check(y, p, None)
    return ((p - y) ** 2).mean(axis=0)


def _ece_one(y: np.ndarray, p: np.ndarray, name: str) -> float:
    # calibration_curve: searchsorted on inner edges, side="left" (edge value -> lower bin)
    cal_bin = np.searchsorted(_EDGES[1:-1], p)
    total = np.bincount(cal_bin, minlength=N_BINS)
    nonempty = total != 0
    prob_true = np.bincount(cal_bin, weights=y, minlength=N_BINS)[nonempty] / total[nonempty]
    prob_pred = np.bincount(cal_bin, weights=p, minlength=N_BINS)[nonempty] / total[nonempty]
    # numpy.histogram: half-open bins, the last one closed (edge value -> upper bin)
    hist = np.histogram(p, bins=_EDGES)[0]
    weights = hist[hist > 0] / p.shape[0]
    gaps = np.abs(prob_true - prob_pred)
    if weights.shape != gaps.shape and 1 not in (weights.shape[0], gaps.shape[0]):
        raise MetricError(
            f"ECE is undefined for {name}: probabilities on bin edges give "
            f"{gaps.shape[0]} calibration bins but {weights.shape[0]} histogram bins "
            "(the organisers' formula fails here too)"
        )
    return float(np.sum(weights * gaps))


def ece_per_column(y: np.ndarray, p: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """Expected calibration error per column (10 uniform bins), as the organisers compute it."""
    y, p = _check(y, p, names)
    cols = _column_names(names, y.shape[1])
    return np.array([_ece_one(y[:, j], p[:, j], cols[j]) for j in range(y.shape[1])])


def competition_score(y: np.ndarray, p: np.ndarray, names: list[str] | None = None) -> ScoreParts:
    """0.5·(1 − mean AUC) + 0.25·mean Brier + 0.25·mean ECE over label columns; lower is better."""
    y, p = _check(y, p, names)
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise MetricError("predictions must be probabilities in [0, 1] without NaN")
    auc = float(auc_per_column(y, p, names).mean())
    brier = float(brier_per_column(y, p).mean())
    ece = float(ece_per_column(y, p, names).mean())
    return ScoreParts(score=0.5 * (1 - auc) + 0.25 * brier + 0.25 * ece, auc=auc, brier=brier, ece=ece)


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy over rows and columns."""
    y, p = _check(y, p, None)
    p = np.clip(p, eps, 1 - eps)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())


@dataclass(frozen=True)
class Scorer:
    """A metric that knows its direction, so no caller has to guess (AutoGluon's `Scorer`)."""

    name: str
    func: Callable[[np.ndarray, np.ndarray], float]
    greater_is_better: bool

    def __call__(self, y: np.ndarray, p: np.ndarray) -> float:
        return float(self.func(y, p))

    def is_better(self, a: float, b: float) -> bool:
        """True when score `a` beats score `b`."""
        return a > b if self.greater_is_better else a < b

    def sign(self) -> float:
        """+1 when lower is better: multiply by it to get a loss to minimise."""
        return -1.0 if self.greater_is_better else 1.0


SCORERS: dict[str, Scorer] = {
    "competition": Scorer("competition", lambda y, p: competition_score(y, p).score, False),
    "auc": Scorer("auc", lambda y, p: float(auc_per_column(y, p).mean()), True),
    "logloss": Scorer("logloss", log_loss, False),
    "brier": Scorer("brier", lambda y, p: float(brier_per_column(y, p).mean()), False),
    "accuracy": Scorer("accuracy", lambda y, p: float(((_as_2d(p) >= 0.5) == _as_2d(y)).mean()), True),
}


def get_scorer(name: str) -> Scorer:
    """The scorer registered under `name`; an unknown name lists the valid ones."""
    try:
        return SCORERS[name]
    except KeyError:
        raise EnsError(f"unknown metric {name!r}; choose one of: {', '.join(SCORERS)}") from None
