"""Log-odds and the logistic function: the one place probabilities become logits and back."""

from __future__ import annotations

import numpy as np

LOGIT_EPS = 1e-6         # blenders and fold aggregation
CALIBRATION_EPS = 1e-12  # calibrators and the prior shift: a tight clip keeps small probabilities apart
WINDOW_EPS = 1e-7        # a clip's window probabilities, before their logits are pooled


def logit(p: np.ndarray, eps: float = LOGIT_EPS) -> np.ndarray:
    """Log-odds of probabilities clipped to [eps, 1 − eps] (so 0 and 1 stay finite)."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    from scipy.special import expit

    return expit(np.asarray(z, dtype=np.float64))
