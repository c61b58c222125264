"""Shared fixtures: every test runs in its own temp workspace, never touching real runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

LABELS = ["fake", "real"]


@pytest.fixture(autouse=True)
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh workspace folder, also the current directory and $ENS_WORKSPACE."""
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.setenv("ENS_WORKSPACE", str(ws))
    monkeypatch.delenv("ENS_DEBUG", raising=False)
    monkeypatch.chdir(ws)
    return ws


@pytest.fixture
def csv_competition(tmp_path: Path) -> Path:
    """A competition folder with CSVs only (no audio): 40 train rows (single label), 12 test rows."""
    root = tmp_path / "comp"
    root.mkdir()
    rng = np.random.default_rng(0)
    train_ids = [f"TRAIN_{i:03d}" for i in range(40)]
    labels = np.where(np.arange(40) % 2 == 0, "fake", "real")
    pd.DataFrame({"id": train_ids, "path": [f"./train/{i}.ogg" for i in train_ids], "label": labels}).to_csv(root / "train.csv", index=False)
    test_ids = [f"TEST_{i:03d}" for i in rng.permutation(12)]
    pd.DataFrame({"id": test_ids, "path": [f"./test/{i}.ogg" for i in test_ids]}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": test_ids, "fake": 0.5, "real": 0.5}).to_csv(root / "sample_submission.csv", index=False)
    return root


@pytest.fixture
def sampled_rows(monkeypatch: pytest.MonkeyPatch) -> dict[int, set[int]]:
    """Spy on every training example: fold → the train rows its sampler drew (mixing partners included),
    keyed by the fold its seed encodes (`seed * 1000 + fold`)."""
    import ensemble.audio.augment as augment

    used: dict[int, set[int]] = {}
    original = augment.ExampleSampler.epoch

    def spy_epoch(self, epoch, batch_size):
        for waves, y, sources in original(self, epoch, batch_size):
            used.setdefault(self.seed % 1000, set()).update(i for s in sources for i in s)
            yield waves, y, sources

    monkeypatch.setattr(augment.ExampleSampler, "epoch", spy_epoch)
    return used


def write_predictions(path: Path, ids: list[str], values: np.ndarray, fold: np.ndarray | None = None) -> Path:
    """A prediction CSV (id, [fold], fake, real)."""
    frame = pd.DataFrame({"id": ids})
    if fold is not None:
        frame["fold"] = fold
    for j, label in enumerate(LABELS):
        frame[label] = values[:, j]
    frame.to_csv(path, index=False)
    return path


def hand_sidecar(name: str, method: str = "mean", metrics: dict | None = None):
    """A sidecar as a hand-made submission has it: a bare recipe (no fitted state) and the given scores."""
    from ensemble.artifacts.records import Recipe
    from ensemble.artifacts.submission import new_sidecar

    recipe = Recipe(method=method, params={}, labels=list(LABELS), fit_on="clean", calibrate="none", blender={},
                    calibrators=[], decisions=[], state=None)
    return new_sidecar(name, recipe, metrics or {})
