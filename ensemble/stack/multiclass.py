"""Single-label multiclass stacking: rows of class probabilities that sum to 1.

Runs are blended in log-probability space (a weighted geometric mean, renormalised by the softmax:
the multiclass form of the mean of logits) and calibrated by one temperature over all classes
(Guo et al. 2017), which keeps each row's arg-max and so accuracy and macro-F1. Per-label calibrators
would break the rows' sum; methods that work column by column (`rank`, `flip`) refuse multiclass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from ensemble.errors import ConfigError
from ensemble.metrics.scorer import Scorer
from ensemble.task import MULTICLASS

LOG_EPS = MULTICLASS.blend_eps
LOG_T_BOUNDS = (-np.log(10.0), np.log(10.0))  # temperatures in [0.1, 10]: wider ones only fit noise
CALIBRATE = ("auto", "none", "temperature")


def log_probs(P: np.ndarray) -> np.ndarray:
    """Log of probabilities clipped to [LOG_EPS, 1] (0 stays finite); any shape."""
    return MULTICLASS.link(P, LOG_EPS)


def softmax_rows(Z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis: rows of probabilities summing to 1."""
    return MULTICLASS.inverse_link(Z)


def fit_logloss_weights(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Simplex weights over runs minimising the multiclass log loss of softmax(Σ_r w_r · log P[:, r, :])."""
    from scipy.optimize import minimize

    L = log_probs(P)
    truth = y.argmax(axis=1)

    def loss(theta: np.ndarray) -> float:
        w = softmax(theta)
        ls = log_softmax(np.einsum("nrk,r->nk", L, w), axis=1)
        return float(-ls[np.arange(len(truth)), truth].mean())

    res = minimize(loss, np.zeros(P.shape[1]), method="L-BFGS-B", options={"maxiter": 200})
    return softmax(res.x)


def check_calibrate_multiclass(calibrate: str) -> str:
    if calibrate not in CALIBRATE:
        raise ConfigError(f"--calibrate {calibrate} works label by label and would break the rows' sum to 1; "
                          f"a multiclass task uses one of: {', '.join(CALIBRATE)}")
    return calibrate


class TemperatureScaling:
    """softmax(log p / T), one T > 0 for all classes, fitted by weighted log loss; `none` keeps T = 1."""

    def __init__(self, name: str = "temperature") -> None:
        self.name = name
        self.temperature_ = 1.0

    def fit(self, S: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "TemperatureScaling":
        if self.name == "none":
            return self
        L, truth = log_probs(S), y.argmax(axis=1)
        w = np.ones(len(S)) if sample_weight is None else sample_weight

        def loss(log_t: float) -> float:
            ls = log_softmax(L / np.exp(log_t), axis=1)
            return float(-(w * ls[np.arange(len(truth)), truth]).sum() / w.sum())

        self.temperature_ = float(np.exp(minimize_scalar(loss, bounds=LOG_T_BOUNDS, method="bounded").x))
        return self

    def predict(self, S: np.ndarray) -> np.ndarray:
        return S if self.name == "none" else softmax_rows(log_probs(S) / self.temperature_)

    def params(self) -> dict[str, Any]:
        return {} if self.name == "none" else {"temperature": self.temperature_}


def fit_temperature(S: np.ndarray, y: np.ndarray, folds: np.ndarray, method: str, sample_weight: np.ndarray | None,
                    scorer: Scorer, seed: int = 0) -> tuple[TemperatureScaling, dict]:
    """The calibrator for a multiclass blend `S`; `auto` keeps a temperature only when its cross-validated
    gain over none (on the chosen metric) has a bootstrap interval above zero."""
    from ensemble.stack.bootstrap import gain_interval
    from ensemble.metrics.bootstrap import CALIBRATOR_BOOT
    from ensemble.stack.calibration import AUTO_ALPHA

    note: dict[str, Any] = {}
    if method == "auto":
        method = "none"
        if len(np.unique(folds)) >= 2:
            cv = np.empty_like(S)
            for k in np.unique(folds):
                test = folds == k
                w = None if sample_weight is None else sample_weight[~test]
                cv[test] = TemperatureScaling().fit(S[~test], y[~test], w).predict(S[test])
            g = gain_interval(y, cv, S, n_boot=CALIBRATOR_BOOT, alpha=AUTO_ALPHA, seed=seed, weights=sample_weight,
                              scorer=scorer)
            note["gain"] = {k: round(g[k], 6) for k in ("gain", "lo", "hi")}
            method = "temperature" if g["lo"] > 0 else "none"
            shown = f"gain over none {g['gain']:+.4f} [{g['lo']:+.4f}, {g['hi']:+.4f}] by cross-validated {scorer.name}"
            note["rule"] = (f"temperature: {shown}, interval above zero" if method != "none"
                            else f"none: temperature's {shown} reaches zero")
        else:
            note["rule"] = "none: too few folds, so no temperature can be shown to help"
    return TemperatureScaling(method).fit(S, y, sample_weight), note
