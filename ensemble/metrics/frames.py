"""Scores of prediction frames against known answers: a run's CV overall and per fold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemble.metrics.dacon import MetricError, ScoreParts, competition_score
from ensemble.metrics.scorer import Scorer, class_report


def score_frame(pred: pd.DataFrame, truth: pd.DataFrame, labels: list[str]) -> ScoreParts:
    """Competition score of `pred` against `truth`, matched by id (order does not matter)."""
    aligned = pred.set_index("id").loc[truth["id"], labels].to_numpy(dtype=np.float64)
    return competition_score(truth[labels].to_numpy(dtype=np.float64), aligned, labels)


def multiclass_scores(pred: pd.DataFrame, truth: pd.DataFrame, labels: list[str], scorer: Scorer) -> dict:
    """Multiclass: the chosen metric as `score` (named in `metric`) beside log loss, accuracy, macro-F1 and
    Brier, of `pred` against `truth` matched by id."""
    p = pred.set_index("id").loc[truth["id"], labels].to_numpy(dtype=np.float64)
    y = truth[labels].to_numpy(dtype=np.float64)
    report = class_report(y, p, labels)
    return {"score": scorer(y, p), "metric": scorer.name,
            **{k: report[k] for k in ("logloss", "accuracy", "macro_f1", "brier")}}


def cv_metrics(oof: pd.DataFrame, truth: pd.DataFrame, labels: list[str], scorer: Scorer | None = None) -> dict:
    """CV score of an OOF frame overall and per fold (None where a fold is not scorable); a multiclass
    `scorer` gives `multiclass_scores` instead of the competition's parts."""
    def score(pred: pd.DataFrame, part: pd.DataFrame) -> dict:
        if scorer is not None and scorer.task.exclusive:
            return multiclass_scores(pred, part, labels, scorer)
        return score_frame(pred, part, labels).as_dict()

    per_fold = []
    for fold, part in oof.groupby("fold", sort=True):
        try:
            parts = score(part, truth[truth["id"].isin(part["id"])])
        except MetricError:
            parts = None
        per_fold.append({"fold": int(fold), **(parts or {})})
    return {"cv": score(oof, truth), "per_fold": per_fold}
