"""Scores of prediction frames against known answers: a run's CV overall and per fold, a file vs a key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.competition import check_ids, check_same_ids, require_columns, targets_from_frame
from ensemble.errors import DataError
from ensemble.io import read_csv
from ensemble.metric import MetricError, ScoreParts, competition_score
from ensemble.runs import check_probabilities


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


def read_answers(path: Path, labels: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """An answer key: `id` plus 0/1 label columns (all non-id columns when `labels` is None)."""
    answers = read_csv(path)
    require_columns(answers, ["id"], path)
    check_ids(answers["id"], path)
    labels = labels or [c for c in answers.columns if c != "id"]
    require_columns(answers, labels, path)
    answers[labels] = targets_from_frame(answers, labels, path)
    return answers, labels


def score_file(path: Path, answers_path: Path) -> tuple[ScoreParts, dict[str, dict[str, float]]]:
    """Score a submission CSV against an answer key; validated like a submission first."""
    from ensemble.metric import auc_per_column, brier_per_column, ece_per_column

    answers, labels = read_answers(answers_path)
    pred = read_csv(path)
    require_columns(pred, ["id", *labels], path)
    extra = [c for c in pred.columns if c not in ("id", *labels)]
    if extra:  # scoring fewer columns than the file holds would hide a wrong answer key
        raise DataError(f"{path}: column {extra[0]!r} has no answers in {answers_path} (its label columns: {', '.join(labels)})")
    check_ids(pred["id"], path)
    check_same_ids(pred["id"], answers["id"], path, answers_path)
    check_probabilities(pred, labels, path)
    parts = score_frame(pred, answers, labels)
    y = answers[labels].to_numpy(dtype=np.float64)
    p = pred.set_index("id").loc[answers["id"], labels].to_numpy(dtype=np.float64)
    per_label = {
        label: {"auc": float(a), "brier": float(b), "ece": float(e)}
        for label, a, b, e in zip(labels, auc_per_column(y, p, labels), brier_per_column(y, p), ece_per_column(y, p, labels))
    }
    if not np.isfinite(parts.score):
        raise DataError(f"{path}: score is not finite")
    return parts, per_label
