"""Honest scores: the whole pipeline (blender + calibrator) cross-validated over the runs' folds.

For outer fold k the pipeline is fitted on rows with fold ≠ k only, and predicts fold k. Inside that
fit, the calibrator is fitted on inner out-of-fold blend predictions (the blender refitted on the
training part's other folds) and `auto` picks it by cross-validation over those inner folds, so
neither the blend nor its calibration ever sees fold k. Methods that learn nothing from targets
(`mean`, `logit`, `rank`) skip the inner refits: their in-sample blend is already honest. Per-clip
meta-features, when given, travel with their rows through the same splits.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ensemble.metrics.scorer import COMPETITION, Scorer
from ensemble.progress import Progress, emit
from ensemble.stack.base import Blender, check_folds, check_targets, check_tensor
from ensemble.stack.calibration import Calibrator, check_calibrate, fit_calibrators

BlenderFactory = Callable[[], Blender]


class EvalSet(NamedTuple):
    """Rows to predict out of fold: their runs, fold ids and (for the methods that take them) meta-features."""

    P: np.ndarray
    folds: np.ndarray
    meta: np.ndarray | None = None


class GuardSet(NamedTuple):
    """Labelled rows outside the fit set that `--calibrate auto` must also help (`choose_calibrator`)."""

    P: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    meta: np.ndarray | None = None


class FitCache:
    """Blenders fitted on the fit set minus a set of folds, each fitted once.

    Outer fold k's inner refit without fold f trains on the same rows as outer fold f's refit
    without k, and the final pipeline's inner refits are the outer fits: 1 + K + K(K−1)/2 fits
    instead of 1 + K + K² for the whole nested run.
    """

    def __init__(self, factory: BlenderFactory, P: np.ndarray, y: np.ndarray, folds: np.ndarray,
                 weights: np.ndarray | None = None, meta: np.ndarray | None = None,
                 guard: GuardSet | None = None) -> None:
        self.factory, self.P, self.y, self.folds, self.weights = factory, P, y, folds, weights
        self.meta = meta  # (rows, features) or None
        self.guard = guard  # rows outside the fit set that `auto` must not hurt
        self.fits: dict[frozenset, Blender] = {}
        self.blends: dict[tuple[frozenset, int], np.ndarray] = {}

    def rows(self, excluded: frozenset) -> np.ndarray:
        return ~np.isin(self.folds, list(excluded)) if excluded else np.ones(len(self.folds), dtype=bool)

    def get(self, excluded: frozenset) -> Blender:
        if excluded not in self.fits:
            keep = self.rows(excluded)
            meta = None if self.meta is None else self.meta[keep]
            self.fits[excluded] = self.factory().fit(self.P[keep], self.y[keep], folds=self.folds[keep], meta=meta)
        return self.fits[excluded]

    def fold_blend(self, excluded: frozenset, fold: int) -> np.ndarray:
        """The blend of the fit set's rows of `fold` by the blender fitted without `excluded`, made once: the
        final pipeline's inner blend of fold f is what outer fold f predicted (before calibration)."""
        key = (excluded, fold)
        if key not in self.blends:
            rows = self.folds == fold
            self.blends[key] = self.get(excluded).predict(self.P[rows], None if self.meta is None else self.meta[rows])
        return self.blends[key]


class PerLabel:
    """One calibrator per label column of a blend `(rows, labels)`, the result clipped to [0, 1]."""

    def __init__(self, calibrators: list[Calibrator]) -> None:
        self.calibrators = calibrators

    def predict(self, S: np.ndarray) -> np.ndarray:
        return np.clip(np.column_stack([c.predict(S[:, j]) for j, c in enumerate(self.calibrators)]), 0.0, 1.0)


class StackPipeline:
    """Blender then per-label calibrator, fitted together on `(P, y, folds)`; the calibrators count rows by
    the cache's weights (density ratios of test-like rows) where it has them, the blenders do not."""

    def __init__(self, factory: BlenderFactory, calibrate: str = "auto", scorer: Scorer = COMPETITION) -> None:
        self.factory = factory
        self.calibrate = check_calibrate(calibrate)
        self.scorer = scorer

    def fit(self, P: np.ndarray, y: np.ndarray, folds: np.ndarray) -> "StackPipeline":
        return self.fit_cached(FitCache(self.factory, P, y, folds), frozenset())

    def fit_cached(self, cache: FitCache, excluded: frozenset) -> "StackPipeline":
        """Fit on the cache's rows outside the `excluded` folds, reusing blenders fitted before."""
        train = cache.rows(excluded)
        P, y, folds = cache.P[train], cache.y[train], cache.folds[train]
        meta = None if cache.meta is None else cache.meta[train]
        self.blender_ = cache.get(excluded)
        if self.scorer.task.exclusive:  # one temperature over the classes: rows keep summing to 1
            from ensemble.stack.multiclass import fit_temperature

            S = self._inner_blend(cache, excluded, P, folds, meta, own_rows=True)
            w = None if cache.weights is None else cache.weights[train]
            cal, note = fit_temperature(S, y, folds, self.calibrate, w, self.scorer)
            self.calibrators_, self.calibrator_ = [], cal
            self.calibration_ = [{"label": "all classes", "calibrator": cal.name, "params": cal.params(), **note}]
            return self
        if self.calibrate == "none":
            self.calibrators_ = [Calibrator() for _ in range(P.shape[2])]
            self.calibration_ = [{"label": j, "calibrator": "none", "params": {}} for j in range(P.shape[2])]
            self.calibrator_ = PerLabel(self.calibrators_)
            return self
        S = self._inner_blend(cache, excluded, P, folds, meta, own_rows=True)
        w = None if cache.weights is None else cache.weights[train]
        guard = None
        if cache.guard is not None and self.calibrate == "auto":
            g = cache.guard
            keep = ~np.isin(g.folds, list(excluded))
            guard = (self._inner_blend(cache, excluded, g.P[keep], g.folds[keep], None if g.meta is None else g.meta[keep]),
                     g.y[keep], g.folds[keep])
        self.calibrators_, self.calibration_ = fit_calibrators(S, y, folds, self.calibrate, w, self.scorer, guard)
        self.calibrator_ = PerLabel(self.calibrators_)
        return self

    def _inner_blend(self, cache: FitCache, excluded: frozenset, P: np.ndarray, folds: np.ndarray,
                     meta: np.ndarray | None, own_rows: bool = False) -> np.ndarray:
        """The blend of rows `P`, each from a blender that never saw its fold (when the blender learns);
        `own_rows`: `P` are the cache's rows outside `excluded`, whose fold blends the cache keeps."""
        inner = np.unique(cache.folds[cache.rows(excluded)])
        if not (self.blender_.needs_targets and len(inner) >= 2):
            return self.blender_.predict(P, meta)
        S = np.empty((P.shape[0], P.shape[2]))
        for f in np.unique(folds):
            rows = folds == f
            if own_rows:
                S[rows] = cache.fold_blend(excluded | {f}, f)
                continue
            blender = cache.get(excluded | {f}) if f in inner else self.blender_
            S[rows] = blender.predict(P[rows], None if meta is None else meta[rows])
        return S

    def predict(self, P: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        return self.calibrator_.predict(self.blender_.predict(P, meta))


def nested_predict(
    factory: BlenderFactory,
    fit_set: tuple[np.ndarray, np.ndarray, np.ndarray],
    eval_sets: dict[str, EvalSet],
    calibrate: str = "auto",
    progress: Progress | None = None,
    cache: FitCache | None = None,
    scorer: Scorer = COMPETITION,
) -> dict[str, np.ndarray]:
    """Out-of-fold predictions for each eval set, the pipeline fitted on `fit_set` rows of other folds."""
    P, y, folds = fit_set
    cache = cache or FitCache(factory, P, y, folds)
    out = {name: np.empty((e.P.shape[0], P.shape[2])) for name, e in eval_sets.items()}
    all_folds = np.unique(np.concatenate([folds] + [e.folds for e in eval_sets.values()]))
    for i, k in enumerate(all_folds):
        pipe = StackPipeline(factory, calibrate, scorer).fit_cached(cache, frozenset({k}))
        for name, e in eval_sets.items():
            rows = e.folds == k
            if not rows.any():
                continue
            if e.P is cache.P and e.meta is cache.meta:  # the fit set's own rows: their blend is the cache's
                out[name][rows] = pipe.calibrator_.predict(cache.fold_blend(frozenset({k}), k))
            else:
                out[name][rows] = pipe.predict(e.P[rows], None if e.meta is None else e.meta[rows])
        emit(progress, "nested_cv", done=i + 1, total=len(all_folds))
    return out


def nested_cv_predict(
    factory: BlenderFactory, P: np.ndarray, y: np.ndarray, folds: np.ndarray, *, calibrate: str = "auto"
) -> np.ndarray:
    """Nested out-of-fold predictions `(rows, labels)`: fold k predicted by a pipeline fitted without it."""
    P = check_tensor(P)
    y = check_targets(y, P)
    folds = check_folds(folds, P.shape[0])
    return nested_predict(factory, (P, y, folds), {"oof": EvalSet(P, folds)}, calibrate)["oof"]


def best_single_run(P: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
                    scorer: Scorer = COMPETITION) -> tuple[int, np.ndarray]:
    """Index of the run with the best raw OOF score (rows weighted when `weights`), and every run's loss."""
    losses = np.array([scorer.loss(y, P[:, r, :], weights) for r in range(P.shape[1])])
    return int(np.argmin(losses)), losses
