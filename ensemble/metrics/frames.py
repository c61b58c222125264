"""Scores of prediction frames against known answers: a run's CV overall and per fold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemble.metrics.dacon import MetricError, ScoreParts, competition_score
from ensemble.metrics.scorer import COMPETITION, Scorer


def score_frame(pred: pd.DataFrame, truth: pd.DataFrame, labels: list[str]) -> ScoreParts:
    """Competition score of `pred` against `truth`, matched by id (order does not matter)."""
    aligned = pred.set_index("id").loc[truth["id"], labels].to_numpy(dtype=np.float64)
    return competition_score(truth[labels].to_numpy(dtype=np.float64), aligned, labels)


def frame_scores(pred: pd.DataFrame, truth: pd.DataFrame, labels: list[str], scorer: Scorer) -> dict:
    """`scorer.scores` of `pred` against `truth` matched by id: the score with the numbers usually beside it
    (multiclass: the metric named, log loss, accuracy, macro-F1, Brier)."""
    p = pred.set_index("id").loc[truth["id"], labels].to_numpy(dtype=np.float64)
    return scorer.scores(truth[labels].to_numpy(dtype=np.float64), p, labels)


def cv_metrics(oof: pd.DataFrame, truth: pd.DataFrame, labels: list[str], scorer: Scorer = COMPETITION) -> dict:
    """CV score of an OOF frame overall and per fold (None where a fold is not scorable), in what a run
    records when `scorer` is chosen (`Scorer.recorder`: multi-label, the competition's parts)."""
    recorder = scorer.recorder()

    def score(pred: pd.DataFrame, part: pd.DataFrame) -> dict:
        return frame_scores(pred, part, labels, recorder)

    per_fold = []
    for fold, part in oof.groupby("fold", sort=True):
        try:
            parts = score(part, truth[truth["id"].isin(part["id"])])
        except MetricError:
            parts = None
        per_fold.append({"fold": int(fold), **(parts or {})})
    return {"cv": score(oof, truth), "per_fold": per_fold}
