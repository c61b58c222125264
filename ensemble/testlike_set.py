"""The shared test-like set (`models/testlike.parquet`): seeded mixtures of each fold's held-out clips.

Train clips are clean and single-voice, the test is not. Each fold's held-out rows are mixed into
5-second clips with 0–2 voices, noise, gain and band limits; a run predicts a fold's clips with the
fold model that never saw their sources. Recipes are stored, not audio: rendering is deterministic
at any sample rate, so every run (whatever its model's rate) sees the same clips.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemble.competition import Competition
from ensemble.errors import ContractError
from ensemble.io import frame_sha256, read_parquet, write_parquet
from ensemble.workspace import Workspace

TESTLIKE_FILE = "testlike.parquet"


def default_per_fold(n_train: int, n_folds: int) -> int:
    """About half a fold's size, between 50 and 2,000 clips per fold."""
    return int(min(2000, max(50, n_train // n_folds // 2)))


def ensure_testlike(ws: Workspace, comp: Competition, folds: pd.DataFrame, per_fold: int | None = None,
                    seed: int = 0, seconds: float = 5.0) -> pd.DataFrame:
    """Load the workspace's test-like recipes, or build them once from the shared folds."""
    from ensemble.audio.load import audio_duration
    from ensemble.audio.testlike import build_testlike_recipes

    clips = load_testlike(ws)
    if clips is not None:
        unknown = set(clips["fold"]) - set(folds["fold"])
        if unknown:
            raise ContractError(f"{ws.models_dir / TESTLIKE_FILE}: made for other folds (fold {sorted(unknown)[0]} is unknown)")
        return clips
    n_folds = int(folds["fold"].nunique())
    paths = comp.train.set_index(comp.train["id"].astype(str))["path"]
    durations = [audio_duration(comp.audio_path(paths[i])) for i in folds["id"]]
    clips = build_testlike_recipes(
        ids=folds["id"].tolist(), targets=folds[comp.labels].to_numpy(dtype=np.float64),
        folds=folds["fold"].to_numpy(), labels=comp.labels, durations=durations,
        per_fold=per_fold or default_per_fold(len(folds), n_folds), seed=seed, seconds=seconds)
    write_parquet(clips, ws.models_dir / TESTLIKE_FILE)
    return clips


def load_testlike(ws: Workspace) -> pd.DataFrame | None:
    """The workspace's test-like recipes (id, fold, label columns, recipe), or None before any run made them."""
    path = ws.models_dir / TESTLIKE_FILE
    return read_parquet(path) if path.is_file() else None


def testlike_fingerprint(clips: pd.DataFrame) -> str:
    return frame_sha256(clips[["id", "fold", "recipe"]])
