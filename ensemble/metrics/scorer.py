"""Scorers: a metric with its direction, exact per-label form and fast forms for the stacker's loops.

Every consumer that ranks predictions — hill climbing, the calibrator choice, nested CV, the bootstrap
of a gain, the prior sensitivity table — takes a `Scorer` and works with its *loss* (the score, negated
when greater is better), so any registered metric can drive them (AutoGluon's `Scorer`). The
competition scorer brings fast vectorised forms; other scorers fall back to the exact one.

Two task shapes: multi-label (independent 0/1 columns, scored per column and averaged: `per_label`) and
single-label multiclass (rows of class probabilities summing to 1, scored on the whole `(rows, classes)`
matrix: `matrix`). A registered name holds its multi-label form and, where one exists, its multiclass
form (`Scorer.multiclass`); `get_scorer(name, task)` picks the one for the task. Names: `dacon-fakevoice`
(alias `competition`: the fake/real contest's formula, multi-label only), `auc` (multiclass: micro-averaged
over the one-hot matrix), `macro-auc` (mean over columns of each column's AUC; columns holding one class
are skipped, as BirdCLEF does), `logloss`, `brier`, `accuracy` (multiclass: of the arg-max class) and
`macro-f1` (multi-label: per column at 0.5; multiclass: of the arg-max class).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ensemble.errors import ConfigError
from ensemble.metrics import dacon
from ensemble.metrics.dacon import MetricError, ScoreParts
from ensemble.registry import Registry
from ensemble.task import MULTICLASS, MULTILABEL, Task

PerLabel = Callable[[np.ndarray, np.ndarray], np.ndarray]       # (y, p) (rows, labels) -> (labels,)
Columns = Callable[[np.ndarray, np.ndarray], np.ndarray]        # (y 1-D, C (rows, cands)) -> (cands,)
Replicates = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (p 1-D, y 1-D, counts (B, rows)) -> (B,)
Matrix = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], float]  # (Y, P, row weights | None) -> score
Usual = Callable[["Scorer", np.ndarray, np.ndarray, list[str]], dict]  # (scorer, y, p, labels) -> `Scorer.scores`
Detail = Callable[["Scorer", np.ndarray, np.ndarray, list[str]], "tuple[ScoreParts, dict]"]  # -> `Scorer.detail`


def _score_only(scorer: "Scorer", y: np.ndarray, p: np.ndarray, labels: list[str]) -> dict:
    return {"score": scorer(y, p)}


def _per_label_detail(scorer: "Scorer", y: np.ndarray, p: np.ndarray, labels: list[str]) -> tuple[ScoreParts, dict]:
    """The score, and each label's score in the metric."""
    return scorer.score_parts(y, p), {label: {scorer.name: float(v)} for label, v in zip(labels, scorer.per_label(y, p))}


@dataclass(frozen=True)
class Scorer:
    """A metric that knows its direction; `per_label` is exact, `columns`/`replicates` are fast paths."""

    name: str
    per_label: PerLabel
    greater_is_better: bool = False
    columns: Columns | None = None
    replicates: Replicates | None = None
    parts: Callable[[np.ndarray, np.ndarray, np.ndarray | None], ScoreParts] | None = None
    matrix: Matrix | None = None          # set: a multiclass form, scored on whole (rows, classes) matrices
    multiclass: "Scorer | None" = None    # the multiclass form of a multi-label scorer, where one exists
    task: Task = MULTILABEL               # the task this form scores (MULTICLASS: the `matrix` form)
    usual: Usual = _score_only            # `scores`: the score and the numbers shown beside it
    records_as: str = "competition"       # the metric a run's CV is recorded in when this one is chosen (`recorder`)
    detail_of: Detail = _per_label_detail  # `detail`: a scored file's score and its breakdown per label
    replicates_many: Callable[[list, object], list] | None = None  # `replicates` of many (p, y) on `Resamples`

    def __call__(self, y: np.ndarray, p: np.ndarray) -> float:
        """The score (mean over label columns; multiclass: of the whole matrix) in the metric's own direction."""
        if self.matrix is not None:
            return float(self.matrix(np.asarray(y, float), np.asarray(p, float), None))
        return float(np.mean(self.per_label(np.asarray(y, float), np.asarray(p, float))))

    def scores(self, y: np.ndarray, p: np.ndarray, labels: list[str]) -> dict:
        """The score of `(rows, labels)` predictions with the numbers usually shown beside it: the competition
        metric's parts; a multiclass form's metric name, log loss, accuracy, macro-F1 and Brier; else the score
        alone. Arrays are scored in their own dtypes (multiclass: float64)."""
        return self.usual(self, y, p, labels)

    def detail(self, y: np.ndarray, p: np.ndarray, labels: list[str]) -> tuple[ScoreParts, dict[str, dict]]:
        """A scored file's score (with the competition's parts where the metric has them) and its breakdown per
        label: the competition's AUC, Brier and ECE of each label; a multiclass form's precision, recall and F1
        of each class, with the whole class report under '*'; else each label's score in the metric."""
        return self.detail_of(self, y, p, labels)

    def class_report(self, y: np.ndarray, p: np.ndarray, labels: list[str]) -> dict | None:
        """Per-class numbers of `(rows, classes)` predictions beside the metric (`class_report`: log loss,
        accuracy, macro-F1, Brier, precision / recall / F1 per class, the confusion matrix); None where the
        labels are no classes of one choice (a multi-label form)."""
        return None if self.matrix is None else class_report(y, p, labels)

    def recorder(self) -> "Scorer":
        """The scorer a run's CV is recorded in (`Scorer.scores`) when this metric is chosen: a multiclass run
        records the chosen metric with its usual numbers; a multi-label run the competition's parts whatever
        the metric (the board rescores its OOF by another)."""
        return get_scorer(self.records_as, self.task)

    def form(self, task: Task) -> "Scorer | None":
        """This metric's form for `task`, or None where it has none."""
        if task is self.task:
            return self
        return {MULTICLASS: self.multiclass}.get(task)

    def for_task(self, task: Task) -> "Scorer":
        """This metric's form for `task`; a one-line error where it has none."""
        form = self.form(task)
        if form is None:
            usable = [n for n, s in SCORERS.items() if s.form(task) is not None]
            raise ConfigError(f"metric {self.name!r} has no {task} form; choose one of: {', '.join(usable)}")
        return form

    def matrix_replicate_losses(self, P: np.ndarray, Y: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Multiclass: loss of the whole matrix in each replicate of row weights `counts` `(n_boot, rows)`."""
        out = []
        for c in counts:
            try:
                out.append(self.matrix(Y, P, c))
            except MetricError:
                out.append(np.nan)
        return self.sign * np.array(out)

    @property
    def sign(self) -> float:
        """+1 when lower is better: multiply a score by it to get a loss to minimise."""
        return -1.0 if self.greater_is_better else 1.0

    def is_better(self, a: float, b: float) -> bool:
        """True when score `a` beats score `b`."""
        return a > b if self.greater_is_better else a < b

    def column_losses(self, y: np.ndarray, C: np.ndarray) -> np.ndarray:
        """Loss of each candidate column of `C` `(rows, candidates)` against 1-D targets `y`."""
        if self.matrix is not None:
            raise ConfigError(f"metric {self.name!r} scores whole multiclass matrices, not single columns")
        if self.columns is not None:
            return self.sign * self.columns(y, C)
        Y = np.broadcast_to(y[:, None], C.shape)
        return self.sign * np.array([self.per_label(Y[:, [k]], C[:, [k]])[0] for k in range(C.shape[1])])

    def replicate_losses(self, p: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Loss of one label column in each replicate of row weights `counts` `(n_boot, rows)`."""
        if self.replicates is not None:
            return self.sign * self.replicates(p, y, counts)
        counts = _counts(counts)
        if not np.array_equal(counts, np.round(counts)):
            raise ConfigError(f"metric {self.name!r} has no weighted form: it cannot use density-ratio weights")
        out = []
        for c in counts.astype(np.int64):
            rows = np.repeat(np.arange(len(p)), c)
            try:
                out.append(self.per_label(y[rows, None], p[rows, None])[0])
            except MetricError:
                out.append(np.nan)
        return self.sign * np.array(out)

    def replicate_losses_many(self, columns: list[tuple[np.ndarray, np.ndarray]], counts) -> list[np.ndarray]:
        """`replicate_losses` of many 1-D `(p, y)` label columns on the same replicates; with bootstrap
        `Resamples` and a batched form, their shared work is done once (the same numbers)."""
        if self.replicates_many is not None and hasattr(counts, "chunks"):
            return [self.sign * v for v in self.replicates_many(columns, counts)]
        return [self.replicate_losses(p, y, counts) for p, y in columns]

    def score_parts(self, y: np.ndarray, p: np.ndarray, weights: np.ndarray | None = None) -> ScoreParts:
        """The score (and the competition's parts where the metric has them), rows weighted by `weights`."""
        if self.parts is not None:
            return self.parts(y, p, weights)
        if self.matrix is not None:
            return ScoreParts(score=float(self.matrix(y, p, weights)), auc=float("nan"), brier=float("nan"),
                              ece=float("nan"))
        if weights is None:
            s = self(y, p)
        else:
            s = float(np.mean([self.sign * self.replicate_losses(p[:, j], y[:, j], weights[None, :])[0]
                               for j in range(y.shape[1])]))
        return ScoreParts(score=s, auc=float("nan"), brier=float("nan"), ece=float("nan"))

    def loss(self, y: np.ndarray, p: np.ndarray, weights: np.ndarray | None = None) -> float:
        """The loss (lower is better) of `(rows, labels)` predictions, rows weighted by `weights`."""
        return self.sign * self.score_parts(y, p, weights).score


def _contest_parts(scorer: Scorer, y: np.ndarray, p: np.ndarray, labels: list[str]) -> dict:
    """The competition's score with its parts (AUC, Brier, ECE)."""
    return dacon.competition_score(y, p, labels).as_dict()


def _contest_detail(scorer: Scorer, y: np.ndarray, p: np.ndarray, labels: list[str]) -> tuple[ScoreParts, dict]:
    """The competition's parts, and each label's AUC, Brier and ECE."""
    per_label = {label: {"auc": float(a), "brier": float(b), "ece": float(e)} for label, a, b, e in
                 zip(labels, dacon.auc_per_column(y, p, labels), dacon.brier_per_column(y, p),
                     dacon.ece_per_column(y, p, labels))}
    return dacon.competition_score(y, p, labels), per_label


def _class_detail(scorer: Scorer, y: np.ndarray, p: np.ndarray, labels: list[str]) -> tuple[ScoreParts, dict]:
    """The metric's score, and each class's precision, recall and F1 with the whole class report under '*'."""
    report = class_report(y, p, labels)
    per_label = {label: {k: v[k] for k in ("precision", "recall", "f1")} for label, v in report["per_class"].items()}
    per_label["*"] = report
    return scorer.score_parts(y, p), per_label


def _class_scores(scorer: Scorer, y: np.ndarray, p: np.ndarray, labels: list[str]) -> dict:
    """A multiclass metric's score (named) beside the class report's log loss, accuracy, macro-F1 and Brier."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    report = class_report(y, p, labels)
    return {"score": scorer(y, p), "metric": scorer.name,
            **{k: report[k] for k in ("logloss", "accuracy", "macro_f1", "brier")}}


def _log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-15) -> np.ndarray:
    p = np.clip(p, eps, 1 - eps)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p)).mean(axis=0)


def _macro_auc(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-column AUC where a column holds both classes; the others get the mean of those (so the mean over
    columns is the mean over scorable columns)."""
    both = (y.min(axis=0) != y.max(axis=0))
    if not both.any():
        raise MetricError("macro-auc: no label column holds both classes")
    auc = dacon.auc_per_column(y[:, both], p[:, both])
    out = np.full(y.shape[1], auc.mean())
    out[both] = auc
    return out


def _f1_per_column(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    hit = p >= 0.5
    tp = (hit & (y == 1)).sum(axis=0)
    wrong = (hit != (y == 1)).sum(axis=0)
    return np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)


# ---- weighted forms of one label column: row weights `counts` `(n_boot, rows)` (or `Resamples`) -> (n_boot,) ----

def _counts(counts) -> np.ndarray:
    """`(n_boot, rows)` row weights from an array or from bootstrap `Resamples`."""
    return counts.counts() if hasattr(counts, "chunks") else np.asarray(counts, dtype=np.float64)


def _weighted_mean(counts, per_row: np.ndarray) -> np.ndarray:
    """Σ w·v / Σ w in each replicate (NaN where a replicate weighs no row)."""
    c = _counts(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return c @ per_row / c.sum(axis=1)


def rep_logloss(p: np.ndarray, y: np.ndarray, counts, eps: float = 1e-15) -> np.ndarray:
    q = np.clip(p, eps, 1 - eps)
    return _weighted_mean(counts, -(y * np.log(q) + (1 - y) * np.log1p(-q)))


def rep_brier(p: np.ndarray, y: np.ndarray, counts) -> np.ndarray:
    return _weighted_mean(counts, (p - y) ** 2)


def rep_accuracy(p: np.ndarray, y: np.ndarray, counts) -> np.ndarray:
    return _weighted_mean(counts, ((p >= 0.5) == y).astype(np.float64))


def rep_f1(p: np.ndarray, y: np.ndarray, counts) -> np.ndarray:
    """F1 at 0.5 (0 where nothing is predicted or true, as `_f1_per_column`)."""
    c = _counts(counts)
    hit = p >= 0.5
    tp = c @ (hit & (y == 1)).astype(np.float64)
    wrong = c @ (hit != (y == 1)).astype(np.float64)
    den = 2 * tp + wrong
    return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1.0), 0.0)


def rep_auc(p: np.ndarray, y: np.ndarray, counts) -> np.ndarray:
    """AUC in each replicate; NaN where it holds one class (the exact form raises there)."""
    if hasattr(counts, "chunks"):
        return dacon.plan_auc(dacon.rank_plan(p, y), counts.counts_b)
    return dacon.weighted_auc(p, y, _counts(counts))


# ---- multiclass forms: `Y` one-hot (rows, classes), `P` rows summing to 1, `w` row weights or None ----

def _weights(w: np.ndarray | None, n: int) -> np.ndarray:
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    if w.sum() <= 0:
        raise MetricError("no rows to score")
    return w


def mc_logloss(Y: np.ndarray, P: np.ndarray, w: np.ndarray | None = None, eps: float = 1e-15) -> float:
    """Mean negative log-probability of the true class."""
    w = _weights(w, len(Y))
    return float(w @ -np.log(np.clip((Y * P).sum(axis=1), eps, 1.0)) / w.sum())


def mc_brier(Y: np.ndarray, P: np.ndarray, w: np.ndarray | None = None) -> float:
    """Mean over rows of the squared distance between the probability row and the one-hot target."""
    w = _weights(w, len(Y))
    return float(w @ ((P - Y) ** 2).sum(axis=1) / w.sum())


def mc_accuracy(Y: np.ndarray, P: np.ndarray, w: np.ndarray | None = None) -> float:
    """Share of rows whose arg-max class is the true class."""
    w = _weights(w, len(Y))
    return float(w @ (P.argmax(axis=1) == Y.argmax(axis=1)) / w.sum())


def confusion(Y: np.ndarray, P: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """`(classes, classes)` weighted counts: row = true class, column = arg-max predicted class."""
    w = _weights(w, len(Y))
    k = Y.shape[1]
    return np.bincount(Y.argmax(axis=1) * k + P.argmax(axis=1), weights=w, minlength=k * k).reshape(k, k)


def per_class_prf(Y: np.ndarray, P: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """`(classes, 3)` precision, recall and F1 of the arg-max class (0 where undefined, as scikit-learn)."""
    cm = confusion(Y, P, w)
    tp, pred, true = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    precision = np.where(pred > 0, tp / np.maximum(pred, 1e-300), 0.0)
    recall = np.where(true > 0, tp / np.maximum(true, 1e-300), 0.0)
    f1 = np.where(pred + true > 0, 2 * tp / np.maximum(pred + true, 1e-300), 0.0)
    return np.column_stack([precision, recall, f1])


def mc_macro_f1(Y: np.ndarray, P: np.ndarray, w: np.ndarray | None = None) -> float:
    """Mean F1 over the classes that occur as truth or prediction (scikit-learn's `average='macro'`)."""
    cm = confusion(Y, P, w)
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    return float(per_class_prf(Y, P, w)[present, 2].mean())


def _weighted_aucs(Y: np.ndarray, P: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """One-vs-rest AUC of each class column with row weights `w` (NaN where a column holds one class)."""
    w = _weights(w, len(Y))
    return np.array([dacon.weighted_auc(P[:, k], Y[:, k], w[None, :])[0] for k in range(Y.shape[1])])


def mc_macro_auc(Y: np.ndarray, P: np.ndarray, w: np.ndarray | None = None) -> float:
    """One-vs-rest AUC per class, averaged over the classes that hold both kinds of rows."""
    if w is None:
        return float(_macro_auc(Y, P).mean())
    aucs = _weighted_aucs(Y, P, w)
    if not np.isfinite(aucs).any():
        raise MetricError("macro-auc: no label column holds both classes")
    return float(aucs[np.isfinite(aucs)].mean())


def mc_micro_auc(Y: np.ndarray, P: np.ndarray, w: np.ndarray | None = None) -> float:
    """One AUC over every (row, class) cell of the one-hot matrix (a row's weight counts for each of its cells)."""
    if w is None:
        return float(dacon.auc_per_column(Y.reshape(-1, 1), P.reshape(-1, 1))[0])
    w = _weights(w, len(Y))
    auc = dacon.weighted_auc(P.reshape(-1), Y.reshape(-1), np.repeat(w, Y.shape[1])[None, :])[0]
    if not np.isfinite(auc):
        raise MetricError("auc: the answers hold only one class")
    return float(auc)


def class_report(Y: np.ndarray, P: np.ndarray, labels: list[str]) -> dict:
    """A multiclass prediction's usual numbers: log loss, accuracy, macro-F1, Brier, per-class precision /
    recall / F1 / support, and the confusion matrix (rows: true class, columns: predicted)."""
    prf = per_class_prf(Y, P)
    return {"logloss": mc_logloss(Y, P), "accuracy": mc_accuracy(Y, P), "macro_f1": mc_macro_f1(Y, P),
            "brier": mc_brier(Y, P),
            "per_class": {label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                          for label, (p, r, f), s in zip(labels, prf, Y.sum(axis=0))},
            "confusion": confusion(Y, P).astype(int).tolist(), "labels": list(labels)}


SCORERS: Registry[Scorer] = Registry("metric")


def _add(names: tuple[str, ...], scorer: Scorer, multiclass: Matrix | None = None) -> Scorer:
    if multiclass is not None:
        mc = Scorer(scorer.name, scorer.per_label, scorer.greater_is_better, matrix=multiclass, task=MULTICLASS,
                    usual=_class_scores, records_as=scorer.name, detail_of=_class_detail)
        scorer = replace(scorer, multiclass=mc)
    for name in names:
        SCORERS.add(name, scorer)
    return scorer


COMPETITION = _add(("competition", "dacon-fakevoice"), Scorer(
    "competition", dacon.label_scores, columns=dacon.column_scores, replicates=dacon.weighted_label_score,
    replicates_many=dacon.resampled_scores, parts=dacon.weighted_score, usual=_contest_parts,
    detail_of=_contest_detail))
_add(("auc",), Scorer("auc", lambda y, p: dacon.auc_per_column(y, p), greater_is_better=True, replicates=rep_auc),
     mc_micro_auc)
_add(("macro-auc",), Scorer("macro-auc", _macro_auc, greater_is_better=True, replicates=rep_auc), mc_macro_auc)
_add(("logloss",), Scorer("logloss", _log_loss, replicates=rep_logloss), mc_logloss)
_add(("brier",), Scorer("brier", dacon.brier_per_column, replicates=rep_brier), mc_brier)
_add(("accuracy",), Scorer("accuracy", lambda y, p: ((p >= 0.5) == y).mean(axis=0), greater_is_better=True,
                           replicates=rep_accuracy), mc_accuracy)
_add(("macro-f1",), Scorer("macro-f1", _f1_per_column, greater_is_better=True, replicates=rep_f1), mc_macro_f1)


def get_scorer(name: str | Scorer, task: Task = MULTILABEL) -> Scorer:
    """The scorer registered under `name` in its form for `task` (a Scorer passes through); an unknown name
    lists the valid ones."""
    return (name if isinstance(name, Scorer) else SCORERS.get(name)).for_task(task)
