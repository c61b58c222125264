"""Synthetic runs with known structure, for tests, benchmarks and demos of the stacker.

Each label is an independent Bernoulli draw; each good run sees the class signal plus a noise term
shared by all runs (so runs are correlated, as fine-tuned backbones are) and its own noise. Chosen
runs are then broken on purpose: inverted (1 − p), columns swapped, over-confident (logits × 4),
biased (logits + 1.5) or replaced by pure noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ensemble.stack.base import sigmoid


@dataclass
class SyntheticRuns:
    P: np.ndarray       # (rows, runs, labels) OOF probabilities
    y: np.ndarray       # (rows, labels)
    folds: np.ndarray   # (rows,)
    P_test: np.ndarray  # (test_rows, runs, labels)
    y_test: np.ndarray  # (test_rows, labels)


def _logits(y: np.ndarray, n_runs: int, strength: np.ndarray, rho: float, rng: np.random.Generator) -> np.ndarray:
    n, L = y.shape
    shared = rng.standard_normal((n, 1, L))
    own = rng.standard_normal((n, n_runs, L))
    noise = rho * shared + np.sqrt(1 - rho**2) * own
    return strength[None, :, None] * (2 * y[:, None, :] - 1) + 1.2 * noise


@dataclass(frozen=True)
class Faults:
    """Which runs (by index) are broken on purpose, and how."""

    inverted: Sequence[int] = ()       # 1 − p
    swapped: Sequence[int] = ()        # label columns swapped
    overconfident: Sequence[int] = ()  # logits × 4
    biased: Sequence[int] = ()         # logits + 1.5
    noise: Sequence[int] = ()          # pure noise


def _break(Z: np.ndarray, faults: Faults, rng: np.random.Generator) -> np.ndarray:
    Z = Z.copy()
    for r in faults.inverted:
        Z[:, r, :] = -Z[:, r, :]
    for r in faults.swapped:
        Z[:, r, :] = Z[:, r, ::-1]
    for r in faults.overconfident:
        Z[:, r, :] *= 4.0
    for r in faults.biased:
        Z[:, r, :] += 1.5
    for r in faults.noise:
        Z[:, r, :] = rng.standard_normal(Z[:, r, :].shape)
    return Z


def make_runs(
    n_rows: int = 3000,
    n_test: int = 1000,
    n_runs: int = 6,
    n_labels: int = 2,
    n_folds: int = 5,
    prior: Sequence[float] = (0.45, 0.35),
    seed: int = 0,
    **shape: object,
) -> SyntheticRuns:
    """OOF and test tensors for `n_runs` runs. `shape` holds `test_prior` (default `prior`), `strength`
    (each run's class separation, default 1.0–1.5), `rho` (the runs' shared noise, default 0.5) and the
    `Faults` fields (which runs to break)."""
    test_prior = shape.pop("test_prior", None)
    strength = shape.pop("strength", None)
    rho = float(shape.pop("rho", 0.5))
    faults = Faults(**shape)  # an unknown name is a TypeError
    rng = np.random.default_rng(seed)
    prior = np.resize(np.asarray(prior, dtype=float), n_labels)
    tprior = prior if test_prior is None else np.resize(np.asarray(test_prior, dtype=float), n_labels)
    s = np.linspace(1.0, 1.5, n_runs) if strength is None else np.asarray(strength, dtype=float)
    y = (rng.random((n_rows, n_labels)) < prior).astype(float)
    y_test = (rng.random((n_test, n_labels)) < tprior).astype(float)
    folds = rng.permutation(np.arange(n_rows) % n_folds)
    P = sigmoid(_break(_logits(y, n_runs, s, rho, rng), faults, rng))
    P_test = sigmoid(_break(_logits(y_test, n_runs, s, rho, rng), faults, rng))
    return SyntheticRuns(P, y, folds, P_test, y_test)
