"""`ens score`: a submission CSV against an answer key, validated like a submission first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.artifacts.competition import check_ids, check_same_ids, require_columns, targets_from_frame
from ensemble.artifacts.io import read_csv
from ensemble.artifacts.runs import check_probabilities
from ensemble.errors import DataError
from ensemble.metrics.dacon import ScoreParts, auc_per_column, brier_per_column, ece_per_column
from ensemble.metrics.frames import score_frame


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
