"""`ens score`: a submission CSV against an answer key, validated like a submission first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.artifacts.competition import check_ids, check_same_ids, require_columns, targets_from_frame
from ensemble.artifacts.io import read_csv
from ensemble.artifacts.runs import check_probabilities
from ensemble.errors import DataError
from ensemble.metrics.dacon import ScoreParts
from ensemble.task import MULTICLASS, MULTILABEL, Task, task_named


def read_answers(path: Path, labels: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """An answer key: `id` plus 0/1 label columns (all non-id columns when `labels` is None)."""
    answers = read_csv(path)
    require_columns(answers, ["id"], path)
    check_ids(answers["id"], path)
    labels = labels or [c for c in answers.columns if c != "id"]
    require_columns(answers, labels, path)
    answers[labels] = targets_from_frame(answers, labels, path)
    return answers, labels


def answers_task(answers: pd.DataFrame, labels: list[str]) -> Task:
    """MULTICLASS when the key has three or more columns and exactly one 1 per row (the competition
    folder's rule: two columns stay multi-label), else MULTILABEL."""
    one_each = (answers[labels].to_numpy(dtype=np.float64).sum(axis=1) == 1).all()
    return MULTICLASS if len(labels) >= 3 and one_each else MULTILABEL


def score_file(path: Path, answers_path: Path, metric: str | None = None,
               task: str | None = None) -> tuple[ScoreParts, dict[str, dict[str, float]]]:
    """Score a submission CSV against an answer key with `metric` (default: the task's); validated like a
    submission first. Multi-label: per label AUC, Brier, ECE. Multiclass (`task`, or detected from the
    key): rows must sum to 1; per class precision, recall, F1, and the whole class report in `per_label['*']`."""
    from ensemble.artifacts.competition import check_task_rows, check_task_targets
    from ensemble.metrics.scorer import get_scorer

    answers, labels = read_answers(answers_path)
    kind = task_named(task) if task is not None else answers_task(answers, labels)
    scorer = get_scorer(metric or kind.default_metric, kind)  # an unknown metric fails before reading more
    pred = read_csv(path)
    require_columns(pred, ["id", *labels], path)
    extra = [c for c in pred.columns if c not in ("id", *labels)]
    if extra:  # scoring fewer columns than the file holds would hide a wrong answer key
        raise DataError(f"{path}: column {extra[0]!r} has no answers in {answers_path} (its label columns: {', '.join(labels)})")
    check_ids(pred["id"], path)
    check_same_ids(pred["id"], answers["id"], path, answers_path)
    check_probabilities(pred, labels, path)
    y = answers[labels].to_numpy(dtype=np.float64)
    check_task_targets(answers, y, labels, kind, answers_path)
    check_task_rows(pred, labels, kind, path)
    p = pred.set_index("id").loc[answers["id"], labels].to_numpy(dtype=np.float64)
    parts, per_label = scorer.detail(y, p, labels)
    if not np.isfinite(parts.score):
        raise DataError(f"{path}: score is not finite")
    return parts, per_label
