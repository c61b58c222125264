"""Runs → the stacker's tensors: OOF `(rows, runs, labels)`, targets, folds, test and test-like."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ensemble.competition import Competition
from ensemble.errors import ContractError
from ensemble.folds import load_folds
from ensemble.probability import logit, sigmoid
from ensemble.runs import Run, check_compatible
from ensemble.testlike_set import load_testlike
from ensemble.workspace import Workspace



@dataclass
class StackInputs:
    """Everything a stacker needs, aligned: rows in folds-file order, test rows in submission order."""

    runs: list[str]
    labels: list[str]
    test: np.ndarray                    # (test rows, runs, labels)
    oof: np.ndarray | None = None       # (rows, runs, labels)
    y: np.ndarray | None = None         # (rows, labels)
    folds: np.ndarray | None = None     # (rows,)
    testlike: np.ndarray | None = None  # (test-like rows, runs, labels)
    y_testlike: np.ndarray | None = None
    folds_testlike: np.ndarray | None = None


def mean_of_logits(probs: np.ndarray, axis: int = 0) -> np.ndarray:
    """Aggregate fold models' probabilities as the mean of their logits (one fold: unchanged)."""
    if probs.shape[axis] == 1:
        return np.take(probs, 0, axis=axis)
    return sigmoid(logit(probs).mean(axis=axis))


def test_tensor(runs: list[Run], comp: Competition) -> np.ndarray:
    """Each run's test predictions, folds aggregated by the mean of logits, in submission order."""
    out = np.empty((len(comp.test_ids), len(runs), len(comp.labels)))
    for r, run in enumerate(runs):
        frame = run.test()
        for j, label in enumerate(comp.labels):
            wide = frame.pivot(index="id", columns="fold", values=label).loc[comp.test_ids]
            out[:, r, j] = mean_of_logits(wide.to_numpy(dtype=np.float64), axis=1)
    return out


def _aligned(frames: list[pd.DataFrame], ids: pd.Series, labels: list[str]) -> np.ndarray:
    return np.stack([f.set_index("id").loc[ids, labels].to_numpy(dtype=np.float64) for f in frames], axis=1)


def gather(ws: Workspace, comp: Competition, runs: list[Run]) -> StackInputs:
    """Load and align every run; OOF parts only when every run has them."""
    check_compatible(runs)
    for run in runs:
        if run.labels != comp.labels:
            raise ContractError(f"run {run.name!r} has labels {run.labels}; the competition has {comp.labels}")
    inputs = StackInputs(runs=[r.name for r in runs], labels=comp.labels, test=test_tensor(runs, comp))
    if not all(r.has_oof for r in runs):
        return inputs
    folds = load_folds(ws)
    inputs.oof = _aligned([r.oof() for r in runs], folds["id"], comp.labels)
    inputs.y = folds[comp.labels].to_numpy(dtype=np.float64)
    inputs.folds = folds["fold"].to_numpy()
    clips = load_testlike(ws)
    if all(r.has_testlike for r in runs) and clips is not None:
        inputs.testlike = _aligned([r.oof_testlike() for r in runs], clips["id"], comp.labels)
        inputs.y_testlike = clips[comp.labels].to_numpy(dtype=np.float64)
        inputs.folds_testlike = clips["fold"].to_numpy()
    return inputs
