"""Test-prior adaptation: estimate each label's test prevalence and shift the probabilities to it.

- EM (Saerens, Latinne & Decaestecker 2002) on calibrated test posteriors: alternate re-weighting the
  posteriors by q/π and re-estimating q as their mean.
- BBSE (Lipton et al. 2018), binary form: with OOF true/false positive rates of the thresholded
  prediction, q = (mean test positive rate − FPR) / (TPR − FPR). Used as a cross-check only.
- The adjustment adds logit(q) − logit(π) to each logit: strictly increasing, so AUC is unchanged.
- A sensitivity table (score on OOF when a prior q is assumed) and a shift check (two-sample KS
  statistic above 0.1 with p < 0.01 between OOF and test predictions) tell the user how much the choice matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ensemble.errors import ConfigError
from ensemble.metric import MetricError, auc_per_column, brier_per_column, ece_per_column
from ensemble.stack.base import sigmoid
from ensemble.stack.calibration import cal_logit

KS_WARN = 0.1      # warn on a shift this large (statistic) …
KS_PVALUE = 0.01   # … that is also unlikely by chance (small test sets)
DISAGREE_WARN = 0.05


def _prior_logit(q: float) -> float:
    q = min(max(q, 1e-6), 1 - 1e-6)
    return float(np.log(q) - np.log1p(-q))


def adjust_prior(p: np.ndarray, prior_train: float, prior_new: float) -> np.ndarray:
    """Posteriors under a new class prior (monotone odds shift)."""
    return sigmoid(cal_logit(p) + _prior_logit(prior_new) - _prior_logit(prior_train))


def em_prior(p: np.ndarray, prior_train: float, max_iter: int = 500, tol: float = 1e-8) -> float:
    """Saerens–Latinne–Decaestecker EM estimate of the prior behind 1-D posteriors `p`."""
    q = float(np.mean(p))
    for _ in range(max_iter):
        new = float(adjust_prior(p, prior_train, q).mean())
        if abs(new - q) < tol:
            return new
        q = new
    return q


def bbse_prior(p_oof: np.ndarray, y_oof: np.ndarray, p_test: np.ndarray, threshold: float = 0.5) -> float:
    """Black-box shift estimate of the test prior (NaN when the classifier barely separates at the threshold)."""
    hard = p_oof >= threshold
    tpr, fpr = hard[y_oof == 1].mean(), hard[y_oof == 0].mean()
    if tpr - fpr < 0.05:
        return float("nan")
    return float(np.clip(((p_test >= threshold).mean() - fpr) / (tpr - fpr), 0.0, 1.0))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov statistic and its p-value."""
    from scipy.stats import ks_2samp

    res = ks_2samp(a, b)
    return float(res.statistic), float(res.pvalue)


def sensitivity_table(y: np.ndarray, p: np.ndarray, priors_train: Sequence[float],
                      grid: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                      labels: Sequence[str] | None = None) -> list[dict]:
    """Per label and assumed prior q: the OOF label score after adjusting the posteriors to q."""
    rows = []
    for j in range(y.shape[1]):
        name = labels[j] if labels else str(j)
        t = y[:, j : j + 1]
        try:
            auc = float(auc_per_column(t, p[:, j : j + 1])[0])  # the adjustment is monotone: AUC is fixed
        except MetricError:
            continue
        for q in grid:
            a = adjust_prior(p[:, j], priors_train[j], q)[:, None]
            try:
                brier, ece = float(brier_per_column(t, a)[0]), float(ece_per_column(t, a)[0])
            except MetricError:
                continue
            score = 0.5 * (1 - auc) + 0.25 * brier + 0.25 * ece
            rows.append({"label": name, "prior": float(q), "score": score, "brier": brier, "ece": ece})
    return rows


@dataclass
class PriorResult:
    """What the adaptation estimated and applied, per label."""

    mode: str
    prior_train: list[float]
    prior_em: list[float]
    prior_bbse: list[float]
    prior_used: list[float]
    ks: list[float]
    p_test: np.ndarray
    warnings: list[str] = field(default_factory=list)

    def recipe(self) -> dict:
        return {k: getattr(self, k) for k in ("mode", "prior_train", "prior_em", "prior_bbse", "prior_used", "ks")}


def _parse_mode(mode: str | float | Sequence[float], n_labels: int) -> tuple[str, list[float] | None]:
    if isinstance(mode, str):
        if mode in ("em", "none"):
            return mode, None
        try:
            mode = float(mode)
        except ValueError:
            raise ConfigError(f"test_prior must be 'em', 'none' or a prior in (0, 1); got {mode!r}") from None
    values = [float(mode)] * n_labels if np.isscalar(mode) else [float(v) for v in mode]
    if len(values) != n_labels or not all(0 < v < 1 for v in values):
        raise ConfigError(f"test_prior must be in (0, 1), one value or one per label ({n_labels}); got {mode!r}")
    return "value", values


def adapt_prior(p_test: np.ndarray, p_oof: np.ndarray, y_oof: np.ndarray, mode: str | float | Sequence[float],
                labels: Sequence[str] | None = None) -> PriorResult:
    """Estimate test priors (EM, BBSE), warn on shift or disagreement, and apply `mode` ('em', 'none', value)."""
    L = y_oof.shape[1]
    kind, values = _parse_mode(mode, L)
    names = list(labels) if labels else [str(j) for j in range(L)]
    train = [float(y_oof[:, j].mean()) for j in range(L)]
    em = [em_prior(p_test[:, j], train[j]) for j in range(L)]
    bbse = [bbse_prior(p_oof[:, j], y_oof[:, j], p_test[:, j]) for j in range(L)]
    ks_p = [ks_statistic(p_oof[:, j], p_test[:, j]) for j in range(L)]
    ks = [k for k, _ in ks_p]
    warnings = []
    for j in range(L):
        if ks[j] > KS_WARN and ks_p[j][1] < KS_PVALUE:
            warnings.append(f"label {names[j]}: test predictions differ from OOF (KS {ks[j]:.3f} > {KS_WARN}); "
                            "the test set looks shifted")
        if np.isfinite(bbse[j]) and abs(em[j] - bbse[j]) > DISAGREE_WARN:
            warnings.append(f"label {names[j]}: EM prior {em[j]:.3f} and BBSE prior {bbse[j]:.3f} disagree")
    used = train if kind == "none" else em if kind == "em" else values
    out = np.column_stack([p_test[:, j] if kind == "none" else adjust_prior(p_test[:, j], train[j], used[j])
                           for j in range(L)])
    return PriorResult(kind, train, em, bbse, list(used), ks, np.clip(out, 0.0, 1.0), warnings)
