"""The two kinds of contest ens blends, and everything that differs between them.

Binary multi-label (`multilabel`): independent 0/1 columns (fake/real), a sigmoid per column, logits as
the blending space, the contest's own metric. Single-label multiclass (`multiclass`): exactly one class
per clip, one softmax over the classes (rows of probabilities sum to 1), log-probabilities as the
blending space, log loss. The task's name is what `ens.toml`, manifests and sidecars store and what
`--task` takes; `task_named` turns it into its `Task` once, at that boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

from ensemble.errors import ConfigError
from ensemble.probability import LOGIT_EPS, logit, sigmoid


@dataclass(frozen=True)
class Task:
    """One kind of contest: its name, its link between probabilities and scores, and its defaults.

    `label_by_label` (column-by-column methods apply) and `has_testlike` (a test-like set can be built)
    both follow from `exclusive` today, but answer different questions: ask the one you mean, so that a
    third kind of task changes one answer without auditing every `not exclusive`. A difference that
    needs code (checks, fits) is a method here, in `ensemble.artifacts.competition` (`check_task_rows`,
    `check_task_targets`) or on the blender base (`_fit_joint`), not a branch at the call site.
    """

    name: str            # as files and the command line spell it
    exclusive: bool      # classes exclude each other: one per clip, rows of probabilities sum to 1
    default_metric: str  # what every decision optimises until `--metric` says otherwise
    activation: str      # a network head's output activation ('sigmoid' per label or 'softmax' per row)
    usual_scores: tuple[str, ...] = ()  # shown beside the metric on the board (keys of a class report)
    blend_eps: float = LOGIT_EPS        # the clip of `link` where blenders average runs

    @property
    def label_by_label(self) -> bool:
        """Whether column-by-column methods apply: rank and flip blending, per-label calibrators, test-prior
        adaptation, meta-features and per-label sensitivity (each would break a row's sum to 1)."""
        return not self.exclusive

    @property
    def has_testlike(self) -> bool:
        """Whether a test-like set can be built: its clips mix voices (two classes or none), so only
        independent labels can name them."""
        return not self.exclusive

    def link(self, p: np.ndarray, eps: float = LOGIT_EPS) -> np.ndarray:
        """Probabilities → the space where runs and windows are averaged (any shape; 0 and 1 stay finite)."""
        raise NotImplementedError

    def inverse_link(self, z: np.ndarray) -> np.ndarray:
        """Scores from `link` (averaged or blended) → probabilities (multiclass: over the last axis)."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name

    def __reduce__(self) -> tuple:
        """Unpickle (in a Ray worker, a subprocess) to the same instance: tasks are compared by identity."""
        return task_named, (self.name,)


@dataclass(frozen=True)
class _MultiLabel(Task):
    def link(self, p: np.ndarray, eps: float = LOGIT_EPS) -> np.ndarray:
        """Log-odds of each column, clipped to [eps, 1 − eps]."""
        return logit(p, eps)

    def inverse_link(self, z: np.ndarray) -> np.ndarray:
        """The logistic function of each column."""
        return sigmoid(z)


@dataclass(frozen=True)
class _MultiClass(Task):
    def link(self, p: np.ndarray, eps: float = LOGIT_EPS) -> np.ndarray:
        """Log-probabilities clipped to [eps, 1]: a softmax of them gives the row back."""
        return np.log(np.clip(np.asarray(p, dtype=np.float64), eps, 1.0))

    def inverse_link(self, z: np.ndarray) -> np.ndarray:
        """The softmax over the last axis: rows summing to 1."""
        return softmax(z, axis=-1)


MULTILABEL: Task = _MultiLabel("multilabel", exclusive=False, default_metric="competition", activation="sigmoid")
MULTICLASS: Task = _MultiClass("multiclass", exclusive=True, default_metric="logloss", activation="softmax",
                               usual_scores=("logloss", "accuracy", "macro_f1"), blend_eps=1e-7)
TASKS: dict[str, Task] = {t.name: t for t in (MULTILABEL, MULTICLASS)}


def task_named(name: str) -> Task:
    """The task `name` spells ('multilabel' or 'multiclass'); else a one-line error listing them."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None
