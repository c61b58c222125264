"""Test-prior adaptation: estimate each label's test prevalence and shift the probabilities to it.

- EM (Saerens, Latinne & Decaestecker 2002) on calibrated test posteriors: alternate re-weighting the
  posteriors by q/π and re-estimating q as their mean.
- BBSE (Lipton et al. 2018), binary form: with OOF true/false positive rates of the thresholded
  prediction, q = (mean test positive rate − FPR) / (TPR − FPR). Used as a cross-check only.
- The adjustment adds logit(q) − logit(π) to each logit: strictly increasing, so AUC is unchanged.
- `em` adapts a label only when the estimate can be trusted, and otherwise leaves it (one warning line):
  EM and BBSE agree (within DISAGREE_WARN, or within BBSE's own sampling noise where that is larger: on
  a few hundred test rows BBSE alone wanders by more than 0.05), neither lies near 0 or 1, and the test
  predictions look like a label shift: their distribution is the mixture q·F₁ + (1 − q)·F₀ of the OOF
  class-conditional distributions (KS distance within its sampling noise), at EM's q for the adapted
  predictions. Under a label shift every function of the audio keeps its class-conditional
  distributions, so each run's own test predictions must also be such a mixture (Bonferroni over the
  tests): a blend can hide a shift that one of its runs shows. A run is asked whether *some* mixture
  fits it, not the blend's q: its own calibration can put its best q a little away from the blend's by
  chance, and that is no evidence against a label shift. Covariate shift (noisier test audio) breaks
  the mixture form at every q, and there EM's estimate is an artefact. The odds move by at most
  MAX_LOGIT_SHIFT in logit.
- A sensitivity table (score on OOF when a prior q is assumed) and a shift check (two-sample KS
  statistic above 0.1 with p < 0.01 between OOF and test predictions) tell the user how much the choice matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ensemble.artifacts.records import PriorRecord
from ensemble.errors import ConfigError
from ensemble.metrics.dacon import MetricError
from ensemble.metrics.scorer import COMPETITION, Scorer
from ensemble.probability import logit
from ensemble.stack.base import sigmoid
from ensemble.stack.calibration import cal_logit
from ensemble.stack.joint_prior import MAX_JOINT_LABELS

KS_WARN = 0.1      # warn on a shift this large (statistic) …
KS_PVALUE = 0.01   # … that is also unlikely by chance (small test sets)
DISAGREE_WARN = 0.05  # EM and BBSE further apart than this: the estimate is not trusted
EDGE = 0.02           # an estimate within this of 0 or 1 is not trusted
MAX_LOGIT_SHIFT = 2.0  # the most an estimated prior may move the odds: a factor of e² ≈ 7.4
MIXTURE_ALPHA = 0.01   # level of the label-shift (mixture KS) tests, shared by all a label's tests


def adjust_prior(p: np.ndarray, prior_train: float, prior_new: float) -> np.ndarray:
    """Posteriors under a new class prior (monotone odds shift)."""
    return sigmoid(cal_logit(p) + logit(prior_new) - logit(prior_train))


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
    return bbse_with_error(p_oof, y_oof, p_test, threshold)[0]


def bbse_with_error(p_oof: np.ndarray, y_oof: np.ndarray, p_test: np.ndarray,
                    threshold: float = 0.5) -> tuple[float, float]:
    """BBSE's estimate and its standard error (delta method over the test positive rate and the OOF
    true and false positive rates); (NaN, NaN) when the classifier barely separates at the threshold."""
    hard = p_oof >= threshold
    pos, neg = hard[y_oof == 1], hard[y_oof == 0]
    tpr, fpr = pos.mean(), neg.mean()
    if tpr - fpr < 0.05:
        return float("nan"), float("nan")
    rate = (p_test >= threshold).mean()
    q = float(np.clip((rate - fpr) / (tpr - fpr), 0.0, 1.0))
    variance = (rate * (1 - rate) / len(p_test) + q**2 * tpr * (1 - tpr) / len(pos)
                + (1 - q) ** 2 * fpr * (1 - fpr) / len(neg)) / (tpr - fpr) ** 2
    return q, float(np.sqrt(variance))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov statistic and its p-value."""
    from scipy.stats import ks_2samp

    res = ks_2samp(a, b)
    return float(res.statistic), float(res.pvalue)


def sensitivity_table(y: np.ndarray, p: np.ndarray, priors_train: Sequence[float],
                      grid: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                      labels: Sequence[str] | None = None, scorer: Scorer = COMPETITION) -> list[dict]:
    """Per label and assumed prior q: the OOF label score after adjusting the posteriors to q."""
    rows = []
    for j in range(y.shape[1]):
        name = labels[j] if labels else str(j)
        for q in grid:
            a = adjust_prior(p[:, j], priors_train[j], q)[:, None]
            try:
                score = float(scorer.per_label(y[:, j : j + 1], a)[0])
            except MetricError:
                continue
            rows.append({"label": name, "prior": float(q), "score": score})
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
    fallback: dict[str, str] = field(default_factory=dict)  # label → why its EM estimate was not applied
    joint: dict | None = None  # the joint-label estimate (classes, shares), when the labels were read jointly

    def recipe(self) -> PriorRecord:
        """What the recipe records of it (`recipe.prior`)."""
        return PriorRecord(self.mode, self.prior_train, self.prior_em, self.prior_bbse, self.prior_used, self.ks,
                           self.fallback, self.joint or None)


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


def _critical(tests: int) -> float:
    """The asymptotic KS quantile at MIXTURE_ALPHA split over `tests` tests."""
    return float(np.sqrt(-np.log(MIXTURE_ALPHA / (2 * tests)) / 2))


def mixture_ks(p_oof: np.ndarray, y_oof: np.ndarray, p_test: np.ndarray, q: float | None,
               tests: int = 1) -> tuple[float, float]:
    """KS distance between the test predictions and the label-shift mixture q·F₁ + (1 − q)·F₀ of the OOF
    class-conditional distributions, and the distance sampling noise alone reaches at MIXTURE_ALPHA
    (split over `tests` tests). `q=None`: the mixture that fits best, over every q in [0, 1] (a test of
    the label-shift form itself; its minimum is never above the distance at the true q, so the same
    critical distance keeps the level)."""
    pos, neg = np.sort(p_oof[y_oof == 1]), np.sort(p_oof[y_oof == 0])
    grid = np.sort(p_test)
    test_cdf = np.arange(1, len(grid) + 1) / len(grid)
    cdf = {side: (np.searchsorted(pos, grid, side=side) / len(pos), np.searchsorted(neg, grid, side=side) / len(neg))
           for side in ("right", "left")}

    def distance(q: float) -> float:
        mix, mix_left = (q * f1 + (1 - q) * f0 for f1, f0 in (cdf["right"], cdf["left"]))
        return float(max(np.abs(test_cdf - mix).max(), np.abs(test_cdf - 1 / len(grid) - mix_left).max()))

    if q is None:  # the distance is convex in q (a maximum of absolute values of affine functions)
        from scipy.optimize import minimize_scalar

        q = float(minimize_scalar(distance, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-4}).x)
    n_ref = 1.0 / (q**2 / len(pos) + (1 - q) ** 2 / len(neg))
    return distance(q), float(_critical(tests) * np.sqrt(1 / len(grid) + 1 / n_ref))


def untrusted_reason(em: float, bbse: float, train: float, mixture: tuple[float, float],
                     run_mixtures: Sequence[tuple[float, float]] = (), bbse_error: float = 0.0) -> str | None:
    """Why an EM prior estimate should not be applied, or None when it can be; `mixture` is the label-shift
    test of the predictions, `run_mixtures` those of each run's own predictions, `bbse_error` BBSE's
    standard error (EM and BBSE disagree only beyond DISAGREE_WARN and beyond BBSE's noise at the level)."""
    if not np.isfinite(bbse):
        return f"BBSE cannot cross-check EM's {em:.3f} (the predictions barely separate the classes)"
    from scipy.stats import norm

    tolerance = max(DISAGREE_WARN, float(norm.isf(MIXTURE_ALPHA / 2)) * bbse_error)
    if abs(em - bbse) > tolerance:
        return f"EM prior {em:.3f} and BBSE prior {bbse:.3f} disagree (by more than {tolerance:.3f})"
    if min(em, bbse) < EDGE or max(em, bbse) > 1 - EDGE:
        return f"the estimate ({em:.3f}) lies at the edge of [0, 1]"
    for what, (distance, noise) in [("the test predictions", mixture)] + [
            (f"run {r + 1}'s test predictions", m) for r, m in enumerate(run_mixtures)]:
        if distance > noise:
            return (f"{what} are no reweighting of the OOF ones (KS {distance:.3f} > {noise:.3f}): "
                    "covariate shift, not label shift")
    return None


def adjust_classes(P: np.ndarray, train: Sequence[float], target: Sequence[float]) -> np.ndarray:
    """Multiclass posteriors under new class shares: each class reweighted by target/train, rows renormalised."""
    ratio = np.asarray(target, dtype=float) / np.clip(np.asarray(train, dtype=float), 1e-12, None)
    Q = P * ratio[None, :]
    return Q / Q.sum(axis=1, keepdims=True)


def bounded_prior(q: float, train: float) -> float:
    """`q`, moved back towards `train` so the odds change by at most MAX_LOGIT_SHIFT."""
    shift = np.clip(logit(q) - logit(train), -MAX_LOGIT_SHIFT, MAX_LOGIT_SHIFT)
    return float(sigmoid(logit(train) + shift))


def adapt_prior(p_test: np.ndarray, p_oof: np.ndarray, y_oof: np.ndarray, mode: str | float | Sequence[float],
                labels: Sequence[str] | None = None,
                runs: tuple[np.ndarray, np.ndarray] | None = None,
                fitted_prior: Sequence[float] | None = None) -> PriorResult:
    """Estimate test priors (EM, BBSE), warn on shift, and apply `mode`: 'none', a given value, or 'em'
    where the estimate can be trusted (else the label is left as it is, with a warning). `runs` are the
    blended runs' own predictions on the same OOF and test rows, `(rows, runs, labels)` each;
    `fitted_prior` the label shares the predictions were fitted to, where not the fit rows' plain shares
    (a calibrator fitted on reweighted rows)."""
    L = y_oof.shape[1]
    kind, values = _parse_mode(mode, L)
    names = list(labels) if labels else [str(j) for j in range(L)]
    train = [float(v) for v in fitted_prior] if fitted_prior is not None else [float(y_oof[:, j].mean()) for j in range(L)]
    em = [em_prior(p_test[:, j], train[j]) for j in range(L)]
    bbse, bbse_error = zip(*[bbse_with_error(p_oof[:, j], y_oof[:, j], p_test[:, j]) for j in range(L)])
    bbse = list(bbse)
    ks_p = [ks_statistic(p_oof[:, j], p_test[:, j]) for j in range(L)]
    ks = [k for k, _ in ks_p]
    warnings = [f"label {names[j]}: test predictions differ from OOF (KS {ks[j]:.3f} > {KS_WARN}); "
                "the test set looks shifted" for j in range(L) if ks[j] > KS_WARN and ks_p[j][1] < KS_PVALUE]
    fallback: dict[str, str] = {}
    used = list(train) if kind == "none" else list(values) if kind == "value" else []
    joint = None
    if kind == "em" and 2 <= L <= MAX_JOINT_LABELS:
        joint, em, bbse, used, fallback = _adapt_joint(p_test, p_oof, y_oof, names, train, runs, em)
        if fallback:
            warnings.append("test prior not adapted for " + "; ".join(f"{k}: {v}" for k, v in fallback.items()))
    elif kind == "em":
        R_oof, R_test = runs if runs is not None else (np.zeros((len(y_oof), 0, L)), None)
        tests = 1 + R_oof.shape[1]  # the blend's label-shift test and each run's share one level
        for j in range(L):
            reason = untrusted_reason(em[j], bbse[j], train[j],
                                      mixture_ks(p_oof[:, j], y_oof[:, j], p_test[:, j], em[j], tests),
                                      [mixture_ks(R_oof[:, r, j], y_oof[:, j], R_test[:, r, j], None, tests)
                                       for r in range(R_oof.shape[1])], bbse_error[j])
            if reason:
                fallback[names[j]] = reason
            used.append(train[j] if reason else bounded_prior(em[j], train[j]))
        if fallback:
            warnings.append("test prior not adapted for " + "; ".join(f"{k}: {v}" for k, v in fallback.items()))
    out = np.column_stack([p_test[:, j] if used[j] == train[j] and kind != "value"
                           else adjust_prior(p_test[:, j], train[j], used[j]) for j in range(L)])
    return PriorResult(kind, train, em, bbse, used, ks, np.clip(out, 0.0, 1.0), warnings, fallback, joint)


def _adapt_joint(p_test: np.ndarray, p_oof: np.ndarray, y_oof: np.ndarray, names: list[str], train: list[float],
                 runs: tuple[np.ndarray, np.ndarray] | None, em_label: list[float]):
    """`em` on a few labels read jointly (`ensemble.stack.joint_prior`): EM and BBSE over the label
    combinations, and the blend's column and each run's checked as some mixture of the same joint
    classes. A label is adapted only where its own EM estimate (`em_label`) and the joint EM's and BBSE's
    marginals agree, and then by the smaller of the two EM moves: on voices-dev (800 test clips, one run) the joint EM moved
    the mix further from the truth than the per-label one (0.436/0.488 against 0.477/0.526, truth
    0.556/0.598), its four-class posteriors being less sure of the both-voices class than two
    two-class ones. The blend is not held to EM's shares: its fit rows hold nested predictions (one
    model per fold) and its test rows the final model's, two functions of the audio whose calibration
    differs a little (on the planted runs `flip`'s fit at the true shares missed by KS 0.08 against a
    noise level of 0.05)."""
    from ensemble.stack.joint_prior import estimate, joint_mixture_ks

    L = y_oof.shape[1]
    jp, code = estimate(p_oof, y_oof, p_test)
    em_joint, bbse = jp.marginals(jp.em), jp.marginals(jp.bbse)
    R_oof, R_test = runs if runs is not None else (np.zeros((len(y_oof), 0, L)), None)
    tests = 1 + R_oof.shape[1]
    fallback: dict[str, str] = {}
    used = []
    for j in range(L):
        blend = joint_mixture_ks(p_oof[:, j], code, p_test[:, j], None, tests)
        per_run = [joint_mixture_ks(R_oof[:, r, j], code, R_test[:, r, j], None, tests) for r in range(R_oof.shape[1])]
        reason = untrusted_reason(em_label[j], bbse[j], train[j], blend, per_run, float(jp.bbse_error[j]))
        if reason is None and abs(em_label[j] - em_joint[j]) > DISAGREE_WARN:
            reason = (f"EM on this label ({em_label[j]:.3f}) and on the label combinations ({em_joint[j]:.3f}) "
                      f"disagree (by more than {DISAGREE_WARN})")
        if reason:
            fallback[names[j]] = reason
        # the smaller move of the two agreeing estimates: no further than both support (per-label EM
        # assumes calibrated posteriors and overshoots where they are not; the joint one can overshoot
        # where its four-class posteriors are unsure)
        nearer = min(em_label[j], em_joint[j], key=lambda q: abs(q - train[j]))
        used.append(train[j] if reason else bounded_prior(nearer, train[j]))
    return jp.record(names), list(em_label), bbse, used, fallback
