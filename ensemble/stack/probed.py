"""`--test-prior lb`: the stacker's test-like rows reweighted to the label mix the leaderboard probes
revealed (`ensemble.leaderboard.probe`), so calibrators and nested scores see the test's mix.

Multi-label: the probes give each label's share, the rows hold label combinations; iterative
proportional fitting finds the combination shares closest (in KL divergence) to the rows' current ones
that match the probed marginals, and each row's weight is multiplied by its combination's new/old
share. Multiclass: the probes give the class shares directly. The test predictions are then moved
from the fit rows' (weighted) shares to the probed ones (`ensemble.stack.prior`), which is no change
where the calibrators were fitted on reweighted rows.
"""

from __future__ import annotations

import numpy as np

from ensemble.errors import DataError

IPF_ITER = 500
IPF_TOL = 1e-10


def ipf(shares: np.ndarray, combos: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The joint shares closest to `shares` whose marginals over `combos` (K, L) are `target` (L,)."""
    s = shares.astype(float).copy()
    for _ in range(IPF_ITER):
        before = s.copy()
        for j, m in enumerate(target):
            on = combos[:, j] > 0.5
            cur = s[on].sum()
            if 0 < cur < 1:
                s[on] *= m / cur
                s[~on] *= (1 - m) / (1 - cur)
        if np.abs(s - before).max() < IPF_TOL:
            break
    return s / s.sum()


def probed_weights(y: np.ndarray, w: np.ndarray | None, target: list[float], exclusive: bool,
                   labels: list[str]) -> tuple[np.ndarray, dict]:
    """Row weights (mean 1) moving rows with targets `y` (weighted by `w`) to the probed shares, and a
    record of the joint shares before and after and how closely the marginals were met."""
    from ensemble.stack.joint_prior import joint_codes

    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=float)
    t = np.asarray(target, dtype=float)
    if exclusive:
        code, combos = np.argmax(y, axis=1), np.eye(y.shape[1])
    else:
        code, combos = joint_codes(y)
        code = np.where(code < 0, -1, code)
    K = len(combos)
    before = np.array([w[code == c].sum() for c in range(K)]) / w[code >= 0].sum()
    if exclusive:
        if len(t) != K:
            raise DataError(f"the probes give {len(t)} class shares; the rows hold {K} classes")
        after = t / t.sum()
    else:
        if len(t) != combos.shape[1]:
            raise DataError(f"the probes give {len(t)} label shares; the rows hold {combos.shape[1]} labels")
        after = ipf(before, combos, t)
    ratio = np.divide(after, before, out=np.ones(K), where=before > 0)
    out = w * np.where(code >= 0, ratio[np.clip(code, 0, None)], 1.0)
    reached = (after @ combos) if not exclusive else after
    names = (labels if exclusive else
             ["+".join(l for l, on in zip(labels, c) if on) or "none" for c in combos])
    record = {"classes": names, "before": before.round(6).tolist(), "after": after.round(6).tolist(),
              "marginal_gap": float(np.abs(reached - t).max())}
    return out / out.mean(), record
