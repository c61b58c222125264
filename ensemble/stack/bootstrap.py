"""Vectorised bootstrap: replicates as multinomial row counts `(n_boot, rows)`, not index copies, so a
metric scores every replicate at once as row weights (exact with ties; see `Scorer.replicate_losses`).
The replicates of a size and seed are drawn once (`ensemble.metrics.bootstrap.resamples`) and a
baseline's replicate losses once (`PairedBootstrap`), however many challengers meet it.
"""

from __future__ import annotations

import numpy as np

from ensemble.metrics.bootstrap import METHOD_BOOT, multinomial_counts, resamples  # noqa: F401
from ensemble.metrics.scorer import COMPETITION, Scorer


class PairedBootstrap:
    """Paired bootstrap of loss differences on one set of rows `(y, weights)`: every prediction is scored
    on the same replicates, and each prediction's replicate losses are computed once (keyed by identity,
    so pass the same array for the same baseline)."""

    def __init__(self, y: np.ndarray, n_boot: int, seed: int, weights: np.ndarray | None = None,
                 scorer: Scorer = COMPETITION) -> None:
        self.y, self.n_boot, self.seed, self.weights, self.scorer = y, n_boot, seed, weights, scorer
        self._memo: dict[int, tuple[np.ndarray, float, list]] = {}

    def _replicates(self):
        r = resamples(len(self.y), self.n_boot, self.seed)
        if self.weights is None:
            return r
        return [c * self.weights[None, :] for c in r.chunks]

    def _losses(self, p: np.ndarray) -> tuple[float, list]:
        """The loss of `p` and its replicate losses (per label, per chunk; multiclass: per chunk)."""
        self.prepare([p])
        return self._memo[id(p)][1], self._memo[id(p)][2]

    def prepare(self, predictions: list[np.ndarray]) -> None:
        """Score each of `predictions` not scored yet on the replicates, together: the replicates' shared
        work (their float chunks, density-ratio weighted or not) is done once for them all."""
        todo = list({id(p): p for p in predictions
                     if not (id(p) in self._memo and self._memo[id(p)][0] is p)}.values())
        if not todo:
            return
        y, scorer = self.y, self.scorer
        losses = [scorer.loss(y, p, self.weights) for p in todo]
        reps = self._replicates()
        if scorer.matrix is not None or isinstance(reps, list) or scorer.replicates is None:
            per_all: list[list] = [[] for _ in todo]
            for c in (reps if isinstance(reps, list) else reps.chunks):  # float chunks, each made once
                for p, per in zip(todo, per_all):
                    per.append(scorer.matrix_replicate_losses(p, y, c) if scorer.matrix is not None  # multiclass
                               else [scorer.replicate_losses(p[:, j], y[:, j], c) for j in range(y.shape[1])])
        else:  # integer replicates: every replicate at once, then cut in the chunks the sums are paired by
            labels = y.shape[1]
            whole = scorer.replicate_losses_many([(p[:, j], y[:, j]) for p in todo for j in range(labels)], reps)
            edges = np.cumsum(reps.sizes)[:-1]
            per_all = [[list(parts) for parts in zip(*[np.split(w, edges) for w in whole[k * labels:(k + 1) * labels]])]
                       if reps.sizes else [] for k in range(len(todo))]
        for p, loss, per in zip(todo, losses, per_all):
            self._memo[id(p)] = (p, loss, per)

    def gain(self, p_new: np.ndarray, p_base: np.ndarray, alpha: float = 0.05) -> dict[str, float]:
        """Loss of the baseline minus loss of the candidate `(rows, labels)` (positive: the candidate is
        better), with the percentile bootstrap interval of that paired difference."""
        self.prepare([p_base, p_new])
        loss_base, rep_base = self._losses(p_base)
        loss_new, rep_new = self._losses(p_new)
        boots = []
        for b, n in zip(rep_base, rep_new):
            if self.scorer.matrix is not None:
                boots.append(b - n)
            else:
                boots.append(sum(bj - nj for bj, nj in zip(b, n)) / self.y.shape[1])
        out = np.concatenate(boots) if boots else np.array([])
        out = out[np.isfinite(out)]
        lo, hi = np.quantile(out, [alpha / 2, 1 - alpha / 2]) if out.size else (np.nan, np.nan)
        return {"gain": float(loss_base - loss_new), "lo": float(lo), "hi": float(hi), "n_boot": int(out.size),
                "alpha": alpha}


def gain_interval(
    y: np.ndarray, p_new: np.ndarray, p_base: np.ndarray, n_boot: int = METHOD_BOOT, alpha: float = 0.05,
    seed: int = 0, weights: np.ndarray | None = None, scorer: Scorer = COMPETITION,
) -> dict[str, float]:
    """Loss of the baseline minus loss of the candidate `(rows, labels)` (positive: the candidate is
    better), with a percentile bootstrap interval: both scored on the same replicates, so the interval
    is that of the paired difference. Row `weights` multiply each replicate's counts."""
    return PairedBootstrap(y, n_boot, seed, weights, scorer).gain(p_new, p_base, alpha)
