"""The two kinds of contest ens blends, and everything that differs between them.

Binary multi-label (`multilabel`): independent 0/1 columns (fake/real), a sigmoid per column, logits as
the blending space, the contest's own metric. Single-label multiclass (`multiclass`): exactly one class
per clip, one softmax over the classes (rows of probabilities sum to 1), log-probabilities as the
blending space, log loss. The task's name is what `ens.toml`, manifests and sidecars store and what
`--task` takes; `task_named` turns it into its `Task` once, at that boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    needs code (checks, targets, losses, fold pooling) is a method here (`bad_rows`, `bad_targets`,
    `class_targets`, `confident_targets`, `training_loss`, `class_weights`, `pool`) or on the blender base
    (`_fit_joint`, `_form`), not a branch at the call site.
    """

    name: str            # as files and the command line spell it
    exclusive: bool      # classes exclude each other: one per clip, rows of probabilities sum to 1
    default_metric: str  # what every decision optimises until `--metric` says otherwise
    activation: str      # a network head's output activation ('sigmoid' per label or 'softmax' per row)
    usual_scores: tuple[str, ...] = ()  # shown beside the metric on the board (keys of a class report)
    blend_eps: float = LOGIT_EPS        # the clip of `link` where blenders average runs
    fixed_augment: tuple[tuple[str, float], ...] = ()  # training augmentation settings the task fixes (`for_task`)

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

    def splits(self, asked: tuple[str, ...], what: str) -> tuple[str, ...]:
        """The prediction splits of `asked` a run of this task has: `testlike` only where a test-like set can
        be built (`has_testlike`), dropped elsewhere; asking for it alone there is a one-line error naming
        `what` (the option or the run)."""
        if self.has_testlike:
            return tuple(asked)
        if tuple(asked) == ("testlike",):
            raise ConfigError(f"{what}: a {self.name} task has no test-like set (its clips mix voices)")
        return tuple(s for s in asked if s != "testlike")

    def link(self, p: np.ndarray, eps: float = LOGIT_EPS) -> np.ndarray:
        """Probabilities → the space where runs and windows are averaged (any shape; 0 and 1 stay finite)."""
        raise NotImplementedError

    def inverse_link(self, z: np.ndarray) -> np.ndarray:
        """Scores from `link` (averaged or blended) → probabilities (multiclass: over the last axis)."""
        raise NotImplementedError

    def pool(self, p: np.ndarray) -> np.ndarray:
        """Several models' probabilities of the same clips `(..., labels, models)` → `(..., labels)`: the mean
        over the last axis in the blending space (`link` at `blend_eps`); one model: unchanged."""
        if p.shape[-1] == 1:
            return p[..., 0]
        return self.inverse_link(self.link(p, self.blend_eps).mean(axis=-1))

    def bad_rows(self, p: np.ndarray, tol: float) -> np.ndarray:
        """Which rows of probabilities `(..., labels)` break what the task asks of a row beyond each value lying
        in [0, 1] (multiclass: a sum of 1 within `tol`); independent labels ask nothing more."""
        return np.zeros(np.shape(p)[:-1], dtype=bool)

    def bad_targets(self, y: np.ndarray) -> np.ndarray:
        """Which rows of 0/1 targets `(rows, labels)` break the task (multiclass: not exactly one class set)."""
        return np.zeros(np.shape(y)[:-1], dtype=bool)

    def training_loss(self, logits: Any, y: Any, class_weight: Any = None, share: float | None = None) -> Any:
        """A network head's training loss on a batch of `(rows, labels)` float logits and targets (torch
        tensors): the mean over the rows, or with `share` the rows' sum times `share` (a process's part of
        a sharded batch's mean). `class_weight`: one weight per class, where the task has classes to weigh."""
        raise NotImplementedError

    def class_weights(self, targets: np.ndarray) -> tuple[float, ...] | None:
        """`balanced` class weights from training targets `(rows, labels)`, n / (classes · count) as
        scikit-learn's; None where each label's loss is its own (a sigmoid per label weighs no class)."""
        return None

    def confident_targets(self, p: np.ndarray, confidence: float) -> np.ndarray:
        """Targets from predictions `(rows, labels)` (pseudo-labels): 1 / 0 where a label's probability is at
        least `confidence` / at most 1 − `confidence`, NaN (unknown) between."""
        return np.where(p >= confidence, 1.0, np.where(p <= 1.0 - confidence, 0.0, np.nan))

    def class_targets(self, y: np.ndarray, labels: list[str]) -> list[tuple[np.ndarray, np.ndarray, slice]]:
        """What estimators of integer classes fit from 0/1 targets `(rows, labels)` (NaN: unknown), one
        `(known rows, class of each, columns)` per estimator, `columns` being the columns of its class
        probabilities that are label columns (in order; `slice(None)`: all of them). Here one estimator per
        label, on its known rows' 0/1, whose class 1 is the label. An estimator missing a class is a
        one-line error, before any is fitted."""
        out = []
        for j, label in enumerate(labels):
            known = ~np.isnan(y[:, j])
            target = (y[known, j] > 0.5).astype(np.int64)
            if target.min() == target.max():
                raise ConfigError(f"label {label!r} has one class in the training examples; cannot fit")
            out.append((known, target, slice(1, 2)))
        return out

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

    def training_loss(self, logits: Any, y: Any, class_weight: Any = None, share: float | None = None) -> Any:
        """Binary cross-entropy of each label's sigmoid, averaged over the labels too."""
        import torch.nn.functional as F

        if share is None:
            return F.binary_cross_entropy_with_logits(logits, y)
        return F.binary_cross_entropy_with_logits(logits, y, reduction="sum") * (share / y.shape[1])


@dataclass(frozen=True)
class _MultiClass(Task):
    def link(self, p: np.ndarray, eps: float = LOGIT_EPS) -> np.ndarray:
        """Log-probabilities clipped to [eps, 1]: a softmax of them gives the row back."""
        return np.log(np.clip(np.asarray(p, dtype=np.float64), eps, 1.0))

    def inverse_link(self, z: np.ndarray) -> np.ndarray:
        """The softmax over the last axis: rows summing to 1."""
        return softmax(z, axis=-1)

    def bad_rows(self, p: np.ndarray, tol: float) -> np.ndarray:
        """Rows whose probabilities do not sum to 1 within `tol`."""
        return np.abs(np.asarray(p).sum(axis=-1) - 1.0) > tol

    def bad_targets(self, y: np.ndarray) -> np.ndarray:
        """Rows with no class or several classes set."""
        return np.asarray(y).sum(axis=-1) != 1

    def confident_targets(self, p: np.ndarray, confidence: float) -> np.ndarray:
        """The one-hot arg-max of rows whose top class reaches `confidence`; NaN rows elsewhere."""
        y = np.full(p.shape, np.nan)
        sure = p.max(axis=1) >= confidence
        y[sure] = np.eye(p.shape[1])[p[sure].argmax(axis=1)]
        return y

    def class_targets(self, y: np.ndarray, labels: list[str]) -> list[tuple[np.ndarray, np.ndarray, slice]]:
        """One estimator over all classes: the rows with every label known, the class each holds; its every
        class is a label."""
        known = ~np.isnan(y).any(axis=1)
        target = y[known].argmax(axis=1)
        missing = [label for k, label in enumerate(labels) if not (target == k).any()]
        if missing:
            raise ConfigError(f"class {missing[0]!r} has no training examples in this fold; cannot fit")
        return [(known, target, slice(None))]

    def training_loss(self, logits: Any, y: Any, class_weight: Any = None, share: float | None = None) -> Any:
        """Cross-entropy of the softmax over the classes, each class weighed by `class_weight`."""
        import torch.nn.functional as F

        if share is None:
            return F.cross_entropy(logits, y, weight=class_weight)
        return F.cross_entropy(logits, y, weight=class_weight, reduction="sum") * share

    def class_weights(self, targets: np.ndarray) -> tuple[float, ...] | None:
        """n / (classes · count) per class (a class absent from `targets` counted once)."""
        counts = targets.sum(axis=0)
        return tuple(float(len(targets) / (len(counts) * max(c, 1.0))) for c in counts)


MULTILABEL: Task = _MultiLabel("multilabel", exclusive=False, default_metric="competition", activation="sigmoid")
MULTICLASS: Task = _MultiClass("multiclass", exclusive=True, default_metric="logloss", activation="softmax",
                               usual_scores=("logloss", "accuracy", "macro_f1"), blend_eps=1e-7,
                               fixed_augment=(("p_mix", 0.0), ("p_empty", 0.0)))  # one class per example
TASKS: dict[str, Task] = {t.name: t for t in (MULTILABEL, MULTICLASS)}


def task_named(name: str) -> Task:
    """The task `name` spells ('multilabel' or 'multiclass'); else a one-line error listing them."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None
