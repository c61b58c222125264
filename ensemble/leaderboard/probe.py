"""Leaderboard probes: constant submissions whose public scores reveal the public part's label mix.

For a proper scoring metric the score of a constant submission depends on the labels only through
their shares, and for the probes chosen here it is affine in them:
- the fake-voice metric (per label 0.5·(1 − AUC) + 0.25·Brier + 0.25·ECE): a constant column c scores
  AUC 0.5, Brier c² − 2c·ȳ + ȳ and ECE |c − ȳ|; with c ∈ {0, 1} the label's term is 0.25 + 0.5·ȳ or
  0.75 − 0.5·ȳ, so L probes (all 0; then label j at 1) give L labels' shares;
- Brier: the same probes; log loss: columns at 1/4 and 3/4 (multi-label), or class k at 2/(K+1) and the
  others at 1/(K+1) (multiclass: K − 1 probes give the K-class prior).
AUC-type and thresholded metrics score every constant alike, so they are refused with that reason.

Solving: the recorded public scores are the exact scores rounded to the digits the site shows, so each
is known within half a unit of the last digit; that bound, carried through the solve, plus the public
share's sampling noise as an estimate of the whole test's mix (a random `public_share` of the test rows,
finite-population corrected, at 95 %) gives each share's interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ensemble.errors import ConfigError, DataError

PROBE_METHOD = "probe"  # the recipe method that marks a probe submission
Z95 = 1.959964
EPS = 1e-15
SUPPORTED = ("competition", "brier", "logloss")
REFUSED = {
    "auc": "a constant submission scores AUC 0.5 whatever the labels",
    "macro-auc": "a constant submission scores AUC 0.5 whatever the labels",
    "accuracy": "accuracy thresholds the probabilities, so a constant tells at most which side of 0.5 a share is",
    "macro-f1": "F1 thresholds the probabilities, so a constant tells at most which side of 0.5 a share is",
}


@dataclass(frozen=True)
class ProbeResult:
    """The public part's label shares (per label; multiclass: per class) and their 95 % half-widths."""

    shares: list[float]
    rounding: list[float]       # half-width from the shown digits alone
    sampling: list[float]       # 1.96 × the public share's sampling sd as an estimate of the whole test
    labels: list[str]

    @property
    def half_width(self) -> list[float]:
        return [r + s for r, s in zip(self.rounding, self.sampling)]

    def record(self) -> dict:
        return {"source": "leaderboard probes", "labels": self.labels, "shares": [round(v, 6) for v in self.shares],
                "half_width": [round(v, 6) for v in self.half_width],
                "rounding": [round(v, 6) for v in self.rounding], "sampling": [round(v, 6) for v in self.sampling]}


def _canonical(metric: str) -> str:
    return "competition" if metric == "dacon-fakevoice" else metric


def check_probeable(metric: str) -> str:
    """The metric's canonical name, or ConfigError saying why constants carry no information under it."""
    name = _canonical(metric)
    if name in REFUSED:
        raise ConfigError(f"metric {metric!r} cannot be probed: {REFUSED[name]}")
    if name not in SUPPORTED:
        raise ConfigError(f"metric {metric!r} cannot be probed; probes exist for: {', '.join(SUPPORTED)}")
    return name


def probe_constants(metric: str, n_labels: int, exclusive: bool) -> list[list[float]]:
    """Each probe's constant row (one value per submission column)."""
    name = check_probeable(metric)
    if exclusive:
        if name == "competition":
            raise ConfigError("the fake-voice metric scores multi-label submissions; a multiclass task has no probes for it")
        K = n_labels
        hi, lo = 2.0 / (K + 1), 1.0 / (K + 1)
        return [[hi if i == k else lo for i in range(K)] for k in range(K - 1)]
    lo, hi = (0.25, 0.75) if name == "logloss" else (0.0, 1.0)
    return [[lo] * n_labels] + [[hi if i == j else lo for i in range(n_labels)] for j in range(1, n_labels)]


def expected_score(metric: str, constants: Sequence[float], shares: Sequence[float], exclusive: bool) -> float:
    """The exact score of a constant submission on rows whose label shares are `shares`."""
    name = check_probeable(metric)
    c, y = np.asarray(constants, dtype=float), np.asarray(shares, dtype=float)
    if exclusive:
        if name == "logloss":
            return float(-(y * np.log(np.clip(c, EPS, 1 - EPS))).sum())
        return float((c**2).sum() - 2 * (c * y).sum() + 1.0)  # brier: mean ‖c − onehot‖²
    brier = c**2 - 2 * c * y + y
    if name == "brier":
        return float(brier.mean())
    if name == "logloss":
        cc = np.clip(c, EPS, 1 - EPS)
        return float((-(y * np.log(cc) + (1 - y) * np.log(1 - cc))).mean())
    return float((0.25 + 0.25 * brier + 0.25 * np.abs(c - y)).mean())


def _shares(x: np.ndarray, exclusive: bool) -> np.ndarray:
    return np.append(x, 1.0 - x.sum()) if exclusive else x


def solve(metric: str, constants: Sequence[Sequence[float]], scores: Sequence[float], digits: int,
          public_share: float, n_test: int, labels: Sequence[str], exclusive: bool) -> ProbeResult:
    """The label shares behind the probes' public scores, with 95 % half-widths (see the module doc)."""
    constants = [list(map(float, c)) for c in constants]
    if len(scores) != len(constants):
        raise DataError(f"{len(constants)} probes but {len(scores)} public scores")
    if not 0 < public_share <= 1:
        raise ConfigError(f"the public share of the test must be in (0, 1]; got {public_share}")
    n = len(constants[0]) - (1 if exclusive else 0)  # free parameters
    base = np.array([expected_score(metric, c, _shares(np.zeros(n), exclusive), exclusive) for c in constants])
    B = np.column_stack([[expected_score(metric, c, _shares(np.eye(n)[k], exclusive), exclusive) for c in constants]
                         - base for k in range(n)])
    if np.linalg.matrix_rank(B) < n:
        raise DataError("the probes' scores do not determine the shares (the probe set is degenerate)")
    inverse = np.linalg.pinv(B)
    x = inverse @ (np.asarray(scores, dtype=float) - base)
    half_unit = 0.5 * 10.0 ** (-digits)
    rounding = np.abs(inverse).sum(axis=1) * half_unit
    if exclusive:  # the last class is 1 − the rest: its bound is the sum's
        rounding = np.append(rounding, (np.abs(inverse.sum(axis=0))).sum() * half_unit)
    shares = np.clip(_shares(x, exclusive), 0.0, 1.0)
    n_public = max(1.0, public_share * n_test)
    fpc = max(0.0, 1.0 - n_public / n_test)
    sampling = Z95 * np.sqrt(shares * (1 - shares) / n_public * fpc)
    return ProbeResult(shares.tolist(), rounding.tolist(), sampling.tolist(), list(labels))
