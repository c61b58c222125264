"""Scores of prediction frames against known answers: a run's CV overall and per fold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemble.metrics.dacon import MetricError, ScoreParts, competition_score


def score_frame(pred: pd.DataFrame, truth: pd.DataFrame, labels: list[str]) -> ScoreParts:
    """Competition score of `pred` against `truth`, matched by id (order does not matter)."""
    aligned = pred.set_index("id").loc[truth["id"], labels].to_numpy(dtype=np.float64)
    return competition_score(truth[labels].to_numpy(dtype=np.float64), aligned, labels)


def cv_metrics(oof: pd.DataFrame, truth: pd.DataFrame, labels: list[str]) -> dict:
    """CV score of an OOF frame overall and per fold (None where a fold is not scorable)."""
    per_fold = []
    for fold, part in oof.groupby("fold", sort=True):
        try:
            parts = score_frame(part, truth[truth["id"].isin(part["id"])], labels).as_dict()
        except MetricError:
            parts = None
        per_fold.append({"fold": int(fold), **(parts or {})})
    return {"cv": score_frame(oof, truth, labels).as_dict(), "per_fold": per_fold}
