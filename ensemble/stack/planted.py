"""Planted runs: six imported-style runs on a pure label shift, the case `--test-prior` is for.

Fake/real multi-label rows whose label mix moves between train and test (0.50/0.50 → 0.70/0.35 by
default) while every run's class-conditional predictions stay the same. The runs are the ones a team
blends in practice: an informative one, an inverted one (1 − p), one with its fake/real columns
swapped (the "label swap" mistake), an over-confident one (logits × 4) and two near-copies of the
informative one. Seeded; any size (the contest's is 55,438 OOF rows and 50,000 test rows), so it also
serves timing. `write_competition` lays it out as a CSV-only competition folder plus one OOF and one
test CSV per run, ready for `ens import`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ensemble.stack.synthetic import make_runs

LABELS = ("fake", "real")  # the submission's columns, as in the contest
RUN_NAMES = ("informative", "inverted", "swapped", "overconfident", "copy-a", "copy-b")


@dataclass
class PlantedRuns:
    """OOF and test tensors of the six planted runs, with their labels and folds."""

    names: list[str]
    P: np.ndarray        # (rows, runs, labels)
    y: np.ndarray        # (rows, labels)
    folds: np.ndarray    # (rows,)
    P_test: np.ndarray   # (test rows, runs, labels)
    y_test: np.ndarray   # (test rows, labels)


def planted_runs(n_oof: int = 4000, n_test: int = 3000, seed: int = 0, prior: Sequence[float] = (0.5, 0.5),
                 test_prior: Sequence[float] = (0.7, 0.35), copy_noise: float = 0.15) -> PlantedRuns:
    """Six runs under a pure label shift (each label drawn on its own with `prior` on train rows and
    `test_prior` on test rows); the two copies are the informative run plus a little logit noise."""
    d = make_runs(n_oof, n_test, n_runs=4, prior=prior, test_prior=test_prior, seed=seed,
                  strength=(1.3, 1.2, 1.2, 1.0), inverted=[1], swapped=[2], overconfident=[3])
    rng = np.random.default_rng(seed + 1)

    def copies(P: np.ndarray) -> np.ndarray:
        z = np.log(P[:, :1]) - np.log1p(-P[:, :1])
        noisy = [z + copy_noise * rng.standard_normal(z.shape) for _ in range(2)]
        return np.concatenate([P] + [1 / (1 + np.exp(-n)) for n in noisy], axis=1)

    return PlantedRuns(list(RUN_NAMES), copies(d.P), d.y, d.folds, copies(d.P_test), d.y_test)


def _frame(ids: list[str], values: np.ndarray, fold: np.ndarray | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"id": ids})
    if fold is not None:
        frame["fold"] = fold
    for j, label in enumerate(LABELS):
        frame[label] = values[:, j]
    return frame


def write_competition(runs: PlantedRuns, out: Path) -> dict[str, Path]:
    """Write `out/comp/` (train.csv with multi-hot labels, test.csv, sample_submission.csv; no audio),
    `out/runs/<name>_oof.csv` and `<name>_test.csv` per run, and `out/answers.csv` (the test labels).
    Returns the paths by role."""
    comp, run_dir = out / "comp", out / "runs"
    comp.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_ids = [f"TRAIN_{i:06d}" for i in range(len(runs.y))]
    test_ids = [f"TEST_{i:06d}" for i in range(len(runs.y_test))]
    train = pd.DataFrame({"id": train_ids, "path": [f"./train/{i}.ogg" for i in train_ids]})
    for j, label in enumerate(LABELS):
        train[label] = runs.y[:, j].astype(int)
    train.to_csv(comp / "train.csv", index=False)
    pd.DataFrame({"id": test_ids, "path": [f"./test/{i}.ogg" for i in test_ids]}).to_csv(comp / "test.csv", index=False)
    _frame(test_ids, np.full((len(test_ids), len(LABELS)), 0.5)).to_csv(comp / "sample_submission.csv", index=False)
    _frame(test_ids, runs.y_test.astype(int)).to_csv(out / "answers.csv", index=False)
    paths = {"comp": comp, "answers": out / "answers.csv"}
    for r, name in enumerate(runs.names):
        paths[f"{name}_oof"] = run_dir / f"{name}_oof.csv"
        paths[f"{name}_test"] = run_dir / f"{name}_test.csv"
        _frame(train_ids, runs.P[:, r], runs.folds).to_csv(paths[f"{name}_oof"], index=False)
        _frame(test_ids, runs.P_test[:, r]).to_csv(paths[f"{name}_test"], index=False)
    return paths
