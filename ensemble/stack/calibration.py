"""Per-label calibrators: strictly increasing maps from a blend's probability to a calibrated one.

AUC is half the metric and unchanged by a strictly increasing map, so ranking (the blend) and
calibration are separate steps: blend first, then calibrate each label with one of

- `temperature`: sigmoid(a·z + b) on the logit z (temperature 1/a with a bias), a > 0;
- `platt`: sigmoid(a·p + b) on the probability with Platt's smoothed targets, a > 0;
- `beta`: sigmoid(a·ln p − b·ln(1 − p) + c) with a, b ≥ 0 (Kull et al. 2017);
- `isotonic`: isotonic regression on z. It is a step function and would create ties (changing AUC),
  so ties are broken by the raw score: the output is (1 − 1e-4)·iso(z) + 1e-4·sigmoid(z), strictly
  increasing; Brier and ECE move by at most 1e-4;
- `none`: identity.

Slopes are kept ≥ 1e-3 so every map is strictly increasing: AUC stays the same up to float ties
(sigmoid saturates at 1.0 beyond z ≈ 37, which a calibrated blend does not reach in practice).
`auto` picks per label the calibrator with the best cross-validated competition score, and keeps it only
when its gain over `none` is credibly positive (else `none`: a calibrator that cannot be shown to help on
held-out rows is not applied).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

import numpy as np

from ensemble.metrics.bootstrap import CALIBRATOR_BOOT
from ensemble.metrics.dacon import MetricError, zero_one
from ensemble.metrics.scorer import COMPETITION, Scorer
from ensemble.probability import CALIBRATION_EPS, logit
from ensemble.registry import Registry
from ensemble.stack.base import sigmoid

MIN_SLOPE = 1e-3
ISO_MIX = 1e-4
AUTO_ALPHA = 0.05  # `auto` keeps a calibrator only when its gain interval is above zero
AUTO_BOOT_ROWS = 10_000


def cal_logit(p: np.ndarray) -> np.ndarray:
    """Logit with a tight clip, so calibration does not merge distinct small probabilities."""
    return logit(p, CALIBRATION_EPS)


PREFIT_ROWS = 8192  # from this many rows, Newton starts from a fit on every k-th row (`fit_logistic`)
PREFIT_STRIDE_ROWS = 2048  # about this many rows in that first fit


def fit_logistic(X: np.ndarray, t: np.ndarray, l2: float = 1e-6, n_iter: int = 50,
                 sample_weight: np.ndarray | None = None, tol: float = 1e-10) -> np.ndarray:
    """Newton's method for logistic regression with intercept; `X` `(rows, d)`, targets `t` in [0, 1].

    Returns `(d + 1,)` coefficients, the intercept last. Small and exact: calibrators have 1–2 inputs.
    Each step costs a logistic of every row, so on many rows Newton starts from the fit on every k-th
    row (a few cheap steps) and needs about half the full ones; it stops at the same fixed point (steps
    below `tol`), so the coefficients are those of a start from zero to rounding (≤ 1e-14 measured).
    """
    n, d = X.shape
    s = sample_weight  # None: every row weighs 1, and the products by 1.0 it would take are left out
    w = np.zeros(d + 1)
    if n >= PREFIT_ROWS:
        k = n // PREFIT_STRIDE_ROWS
        ts = t[::k]
        if min(ts.sum(), len(ts) - ts.sum()) >= 20:  # both classes well present, else start from zero
            start = fit_logistic(X[::k], ts, l2, n_iter, None if s is None else s[::k], tol=1e-6)
            w = start if np.isfinite(start).all() else w
    A = np.empty((d + 1, n))  # features as rows, then the intercept's ones: each product one pass
    A[:d] = X.T
    A[d] = 1.0
    reg = l2 * (float(n) if s is None else s.sum()) * np.eye(d + 1)
    reg[-1, -1] = 0.0
    tiny = 1e-9 * np.eye(d + 1)
    for _ in range(n_iter):
        p = sigmoid(w @ A)
        r, v = p - t, p * (1 - p)
        if s is not None:
            r, v = s * r, s * v
        g = A @ r + reg @ w
        H = (A * v) @ A.T + reg + tiny
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < tol:
            break
    return w


def _fit_intercept(x: np.ndarray, t: np.ndarray, slope: float, sample_weight: np.ndarray | None = None) -> float:
    """Best intercept for sigmoid(slope·x + b) with the slope fixed."""
    s = sample_weight  # None: weights of 1, left out as in `fit_logistic`
    b = 0.0
    for _ in range(50):
        p = sigmoid(slope * x + b)
        h = float((p * (1 - p) if s is None else s * p * (1 - p)).sum()) + 1e-9
        step = float((p - t if s is None else s * (p - t)).sum()) / h
        b -= step
        if abs(step) < 1e-10:
            break
    return b


class Calibrator:
    """A strictly increasing map fitted on 1-D probabilities `p` and 0/1 targets `y`."""

    name = "none"

    def fit(self, p: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "Calibrator":
        return self

    def predict(self, p: np.ndarray) -> np.ndarray:
        return np.asarray(p, dtype=np.float64)

    def params(self) -> dict[str, Any]:
        return {}


class _LinearLogistic(Calibrator):
    """sigmoid(a·f(p) + b) with a ≥ MIN_SLOPE."""

    def _feature(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _targets(self, y: np.ndarray) -> np.ndarray:
        return y

    def fit(self, p: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "Calibrator":
        x, t = self._feature(p), self._targets(y)
        a, b = fit_logistic(x[:, None], t, sample_weight=sample_weight)
        if a < MIN_SLOPE:
            a, b = MIN_SLOPE, _fit_intercept(x, t, MIN_SLOPE, sample_weight)
        self.a_, self.b_ = float(a), float(b)
        return self

    def predict(self, p: np.ndarray) -> np.ndarray:
        return sigmoid(self.a_ * self._feature(p) + self.b_)

    def params(self) -> dict[str, Any]:
        return {"a": self.a_, "b": self.b_}


class TemperatureCalibrator(_LinearLogistic):
    name = "temperature"

    def _feature(self, p: np.ndarray) -> np.ndarray:
        return cal_logit(p)

    def params(self) -> dict[str, Any]:
        return {"temperature": 1.0 / self.a_, "bias": self.b_}


class PlattCalibrator(_LinearLogistic):
    name = "platt"

    def _feature(self, p: np.ndarray) -> np.ndarray:
        return np.asarray(p, dtype=np.float64)

    def _targets(self, y: np.ndarray) -> np.ndarray:
        n_pos = y.sum()
        n_neg = len(y) - n_pos
        return np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))


class BetaCalibrator(Calibrator):
    name = "beta"

    def fit(self, p: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "Calibrator":
        F = self._features(p)
        keep = [0, 1]
        w = fit_logistic(F, y, sample_weight=sample_weight)
        while any(w[k] < 0 for k in range(len(keep))) and keep:
            keep.pop(int(np.argmin(w[: len(keep)])))
            w = fit_logistic(F[:, keep], y, sample_weight=sample_weight) if keep else None
        coef = np.zeros(3)
        if keep:
            coef[keep] = w[:-1]
            coef[2] = w[-1]
        if not keep or coef[:2].max() < MIN_SLOPE:
            coef[:] = [MIN_SLOPE, 0.0, 0.0]
            coef[2] = _fit_intercept(F[:, 0], y, MIN_SLOPE, sample_weight)
        self.coef_ = coef
        return self

    @staticmethod
    def _features(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, CALIBRATION_EPS, 1 - CALIBRATION_EPS)
        return np.column_stack([np.log(p), -np.log1p(-p)])

    def predict(self, p: np.ndarray) -> np.ndarray:
        return sigmoid(self._features(p) @ self.coef_[:2] + self.coef_[2])

    def params(self) -> dict[str, Any]:
        return {"a": float(self.coef_[0]), "b": float(self.coef_[1]), "c": float(self.coef_[2])}


class IsotonicCalibrator(Calibrator):
    name = "isotonic"

    def fit(self, p: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "Calibrator":
        z = cal_logit(p)
        y = np.asarray(y, dtype=np.float64)
        if sample_weight is None and len(z) and zero_one(y):
            return self.fit_sorted(np.sort(z), np.sort(z[y == 1]))
        self.iso_ = _isotonic().fit(z, y, sample_weight=sample_weight)
        return self

    def fit_sorted(self, zs: np.ndarray, zs_pos: np.ndarray) -> "IsotonicCalibrator":
        """The unweighted fit on 0/1 targets from the rows' logits sorted (`zs`) and the positives' logits
        sorted (`zs_pos`): what `fit` does once it has sorted them (`_cross_fitted` sorts once per fold set)."""
        self.iso_ = _isotonic_counts(_isotonic(), zs, zs_pos)
        return self

    def predict(self, p: np.ndarray) -> np.ndarray:
        z = cal_logit(p)
        return (1 - ISO_MIX) * self.iso_.predict(z) + ISO_MIX * sigmoid(z)

    def params(self) -> dict[str, Any]:
        return {
            "thresholds": self.iso_.X_thresholds_.round(6).tolist(),
            "values": self.iso_.y_thresholds_.round(6).tolist(),
            "mix": ISO_MIX,
        }


def _isotonic() -> Any:
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")


def _isotonic_counts(iso: Any, xs: np.ndarray, xp: np.ndarray) -> Any:
    """`iso.fit(z, y)` for 0/1 `y` and no weights, from `xs` (`z` sorted) and `xp` (the positives' `z`
    sorted): the same thresholds without scikit-learn's input checks and `lexsort`. It merges ties (values
    within 1e-15 of a group's first) into their mean target, which here is positives / rows, both whole
    numbers whatever the order, so the two sorted arrays give every group's counts (the float division
    is the one scikit-learn makes)."""
    from scipy.optimize import isotonic_regression
    from sklearn._isotonic import _make_unique

    d = np.diff(xs)
    eps = np.finfo(np.float64).resolution  # scikit-learn's tie tolerance
    if ((d == 0) | (d >= eps)).all():  # ties are exact: groups are runs of equal values
        starts = np.flatnonzero(np.concatenate([[True], d != 0]))
        ux = xs[starts]
        uw = np.diff(np.append(starts, len(xs))).astype(np.float64)
    else:  # near-ties chain from each group's first value: scikit-learn's own walk
        ux, _, uw = _make_unique(xs, np.zeros_like(xs), np.ones_like(xs))
    pos = np.diff(np.append(np.searchsorted(xp, ux, "left"), len(xp)))  # positives in [ux[i], ux[i + 1])
    # scipy's pool-adjacent-violators, as scikit-learn's `isotonic_regression` calls it, without its checks
    uy = np.clip(isotonic_regression(pos / uw, weights=uw, increasing=True).x, iso.y_min, iso.y_max)
    iso.increasing_ = True
    iso.X_min_, iso.X_max_ = np.min(ux), np.max(ux)
    keep = np.ones(len(uy), dtype=bool)  # scikit-learn's trim: drop points inside a flat run
    keep[1:-1] = np.logical_or(np.not_equal(uy[1:-1], uy[:-2]), np.not_equal(uy[1:-1], uy[2:]))
    iso.X_thresholds_, iso.y_thresholds_ = ux[keep], uy[keep]
    iso._build_f(iso.X_thresholds_, iso.y_thresholds_)
    return iso


CALIBRATOR_CLASSES: Registry[type[Calibrator]] = Registry("calibrator", also=("auto",))
for _cls in (Calibrator, TemperatureCalibrator, PlattCalibrator, IsotonicCalibrator, BetaCalibrator):
    CALIBRATOR_CLASSES.add(_cls.name, _cls)
CALIBRATORS = tuple(CALIBRATOR_CLASSES)  # the order `auto` tries them in


def make_calibrator(name: str) -> Calibrator:
    """A new calibrator by name; an unknown name lists the valid ones."""
    return CALIBRATOR_CLASSES.get(name)()


def check_calibrate(name: str) -> str:
    """`name` when it is a calibrator or `auto`; else an error listing them."""
    if name != "auto":
        CALIBRATOR_CLASSES.get(name)
    return name


_FITTED: dict[bytes, Calibrator] = {}
_FITTED_MAX = 256


def _rows_digest(p: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None) -> "hashlib._Hash":
    """A digest of the rows a calibrator is fitted on (what `fitted_calibrator` keys its fits by)."""
    digest = hashlib.sha1()
    for a in (p, y) if sample_weight is None else (p, y, sample_weight):
        a = np.ascontiguousarray(a, dtype=np.float64)
        digest.update(str(a.shape).encode())
        digest.update(a.data)
    return digest


def fitted_calibrator(name: str, p: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None,
                      rows: "hashlib._Hash | None" = None, fit: Callable[[], Calibrator] | None = None) -> Calibrator:
    """Calibrator `name` fitted on `(p, y, sample_weight)`, once per distinct rows: the nested CV meets the
    same rows again (outer fold k's inner fit without fold f is outer fold f's without k, and a blend that
    learns nothing gives the same probabilities in both), so a fit is kept by a digest of its inputs
    (`rows`: that digest, when the caller made it already; `fit`: the caller's shortcut to the same fit)."""
    digest = (rows or _rows_digest(p, y, sample_weight)).copy()
    digest.update(name.encode())
    key = digest.digest()
    cal = _FITTED.get(key)
    if cal is None:
        cal = fit() if fit is not None else make_calibrator(name).fit(p, y, sample_weight)
        if len(_FITTED) >= _FITTED_MAX:
            _FITTED.pop(next(iter(_FITTED)))
        _FITTED[key] = cal
    return cal


def _cross_fitted(names: Sequence[str], p: np.ndarray, y: np.ndarray, folds: np.ndarray,
                  sample_weight: np.ndarray | None, p_eval: np.ndarray, folds_eval: np.ndarray) -> np.ndarray:
    """`(rows of p_eval, names)`: each calibrator's predictions for the rows `p_eval`, each by a calibrator
    fitted on the rows of `p` outside its fold (left as they are where those rows hold one class)."""
    p_eval = np.asarray(p_eval, dtype=np.float64)
    out = np.repeat(p_eval[:, None], len(names), axis=1)
    by_logit = _SortedLogits(p, y, folds) if sample_weight is None and len(p) and zero_one(y) else None
    for k in np.unique(folds_eval):
        train = folds != k
        yt = y[train]
        if yt.min() == yt.max():
            continue
        pt = p[train]
        w = None if sample_weight is None else sample_weight[train]
        digest = _rows_digest(pt, yt, w)
        rows = np.flatnonzero(folds_eval == k)
        pe = p_eval[rows]
        out[rows] = np.column_stack([
            fitted_calibrator(name, pt, yt, w, digest,
                              by_logit.isotonic_without(k) if by_logit and name == "isotonic" else None).predict(pe)
            for name in names])
    return out


class _SortedLogits:
    """The rows' logits sorted once (when an isotonic fit first needs them), so each fold's isotonic fit takes
    its rows' sorted logits by a mask instead of sorting them again: the same arrays, the same fit."""

    def __init__(self, p: np.ndarray, y: np.ndarray, folds: np.ndarray) -> None:
        self.p, self.y, self.folds = p, y, folds
        self._sorted: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def isotonic_without(self, k: int) -> Callable[[], Calibrator]:
        def fit() -> Calibrator:
            if self._sorted is None:
                z = cal_logit(self.p)
                order = np.argsort(z)
                self._sorted = z[order], self.y[order] == 1, self.folds[order]
            zs, positive, folds = self._sorted
            keep = folds != k
            return IsotonicCalibrator().fit_sorted(zs[keep], zs[keep & positive])

        return fit


def cv_calibrator_predictions(p: np.ndarray, y: np.ndarray, folds: np.ndarray,
                              sample_weight: np.ndarray | None = None) -> np.ndarray:
    """`(rows, calibrators)`: each calibrator's predictions for 1-D `p`, cross-validated over `folds`."""
    return _cross_fitted(CALIBRATORS, p, y, folds, sample_weight, p, folds)


def _guard_gain(name: str, p: np.ndarray, y: np.ndarray, folds: np.ndarray, sample_weight: np.ndarray | None,
                guard: tuple[np.ndarray, np.ndarray, np.ndarray], scorer: Scorer) -> float | None:
    """The gain of calibrator `name` over `none` on the guard rows, each row calibrated by a calibrator
    fitted on the fit rows of other folds; None where it cannot be measured (the metric raises, or is
    undefined, e.g. an AUC on guard rows of one class)."""
    pg, yg, fg = guard
    out = _cross_fitted([name], p, y, folds, sample_weight, pg, fg)[:, 0]
    try:
        none, cal = scorer.column_losses(yg, np.column_stack([pg, out]))
    except MetricError:
        return None
    gain = float(none - cal)
    return gain if np.isfinite(gain) else None


def choose_calibrator(p: np.ndarray, y: np.ndarray, folds: np.ndarray, seed: int = 0,
                      sample_weight: np.ndarray | None = None, scorer: Scorer = COMPETITION,
                      guard: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[str, dict]:
    """`auto`: the calibrator with the best cross-validated score, kept only when its gain over `none`
    is credibly positive (paired bootstrap interval above zero, Bonferroni over the calibrators) and,
    with `guard` (the blend, targets and folds of labelled rows outside the fit set: the clean rows
    when the fit rows are test-like), when it also helps those rows, calibrated from the fit rows of
    other folds; else `none`. Why the guard: a calibrator fitted to simulated test-like rows learns
    their quirks (their class mix, how sure the runs are on them) as readily as a real miscalibration,
    and on real tests such a map raised the ECE it was meant to lower; a real miscalibration of the
    runs shows on both kinds of rows. Rows count by `sample_weight` (density-ratio weights) in fits
    and scores. Returns the name and what decided it."""
    from ensemble.stack.bootstrap import gain_interval

    if len(np.unique(folds)) < 2 or y.min() == y.max():
        return "none", {"rule": "none: too few folds or one class, so no calibrator can be shown to help"}
    oof = cv_calibrator_predictions(p, y, folds, sample_weight)
    try:
        if sample_weight is None:
            values = scorer.column_losses(y, oof)
        else:
            values = np.array([scorer.replicate_losses(oof[:, c], y, sample_weight[None, :])[0]
                               for c in range(oof.shape[1])])
    except MetricError as err:  # the organisers' ECE fails on some bin-edge predictions: nothing is shown
        return "none", {"rule": f"none: the metric is undefined for these predictions ({err})"}
    scores = dict(zip(CALIBRATORS, values.tolist()))
    best = min(scores, key=scores.get)
    note: dict[str, Any] = {"cv_scores": {k: round(v, 6) for k, v in scores.items()}}
    if best == "none":
        return "none", {**note, "rule": "none: no calibrator scores better in cross-validation"}
    alpha = AUTO_ALPHA / (len(CALIBRATORS) - 1)
    rows = np.arange(len(p))
    if len(p) > AUTO_BOOT_ROWS:  # a subsample widens the interval (errs towards none) and bounds the cost
        rows = np.sort(np.random.default_rng(seed).choice(len(p), AUTO_BOOT_ROWS, replace=False))
    try:
        g = gain_interval(y[rows, None], oof[rows][:, [CALIBRATORS.index(best)]], p[rows, None], n_boot=CALIBRATOR_BOOT,
                          alpha=alpha, seed=seed, weights=None if sample_weight is None else sample_weight[rows],
                          scorer=scorer)
    except MetricError as err:
        return "none", {**note, "rule": f"none: the metric is undefined for these predictions ({err})"}
    note["gain"] = {k: round(g[k], 6) for k in ("gain", "lo", "hi")}
    if g["lo"] > 0 and guard is not None:
        other = _guard_gain(best, p, y, folds, sample_weight, guard, scorer)
        note["guard_gain"] = None if other is None else round(other, 6)
        if other is None or other <= 0:
            shown = "cannot be scored" if other is None else f"{other:+.4f}"
            return "none", {**note, "rule": f"none: {best}'s gain {g['gain']:+.4f} on the fit rows is not "
                                            f"shared by the clean rows ({shown})"}
    if g["lo"] > 0:
        return best, {**note, "rule": f"{best}: gain over none {g['gain']:+.4f}, interval above zero"}
    return "none", {**note, "rule": f"none: {best}'s gain {g['gain']:+.4f} [{g['lo']:+.4f}, {g['hi']:+.4f}] "
                                    "reaches zero"}


def fit_calibrators(S: np.ndarray, y: np.ndarray, folds: np.ndarray, method: str,
                    sample_weight: np.ndarray | None = None, scorer: Scorer = COMPETITION,
                    guard: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                    ) -> tuple[list[Calibrator], list[dict]]:
    """Fit one calibrator per label on blend `S` `(rows, labels)`; `auto` chooses by `choose_calibrator`
    (with `guard`: the blend `(rows, labels)`, targets and folds of rows it must also help)."""
    check_calibrate(method)
    cals, notes = [], []
    for j in range(S.shape[1]):
        name, note = method, {}
        if method == "auto":
            label_guard = None if guard is None else (guard[0][:, j], guard[1][:, j], guard[2])
            name, note = choose_calibrator(S[:, j], y[:, j], folds, sample_weight=sample_weight, scorer=scorer,
                                           guard=label_guard)
        if y[:, j].min() != y[:, j].max():
            cal = fitted_calibrator(name, S[:, j], y[:, j], sample_weight)
        else:
            cal = make_calibrator("none")
        cals.append(cal)
        notes.append({"label": j, "calibrator": cal.name, "params": cal.params(), **note})
    return cals, notes
