"""Feature sets: `models/features/<name>/` with per-clip meta-features for the stacker.

Files: `train.parquet` (one row per train id, in folds-file order), `test.parquet` (one row per test id,
in submission order), `testlike.parquet` (one row per shared test-like clip), each `id` + float
columns, and `features.json` (what made them: kind, columns, model file hash, package versions, the
data, folds and test-like fingerprints). A feature set is made without labels by a model that never
fitted on this competition (a pretrained voice-activity detector), so every train row's value is
out-of-fold by construction; `labels_used: false` in the manifest says so and the stacker refuses a
set that says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.artifacts.io import read_json, read_parquet, write_json, write_parquet
from ensemble.artifacts.set_records import FeatureManifest
from ensemble.artifacts.workspace import Workspace, check_name
from ensemble.errors import ConfigError, ContractError, DataError

FEATURES_DIR = "features"
FEATURES_MANIFEST_FILE = "features.json"


@dataclass
class FeatureSet:
    """One loaded feature set: its manifest and, per split, a frame of `id` + feature columns."""

    name: str
    dir: Path
    manifest: FeatureManifest

    @property
    def columns(self) -> list[str]:
        return list(self.manifest.columns)

    def frame(self, split: str) -> pd.DataFrame:
        path = self.dir / f"{split}.parquet"
        if not path.is_file():
            raise ContractError(f"{path}: missing; make the feature set again (`ens features {self.manifest.kind}`)")
        frame = read_parquet(path)
        _check_frame(frame, self.columns, path)
        return frame


def features_dir(ws: Workspace, name: str) -> Path:
    check_name(name, "feature set")
    return ws.models_dir / FEATURES_DIR / name


def feature_set_names(ws: Workspace) -> list[str]:
    """Feature sets in the workspace, sorted: folders of `models/features/` holding a manifest."""
    root = ws.models_dir / FEATURES_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if not p.name.startswith(".") and (p / FEATURES_MANIFEST_FILE).is_file())


def _check_frame(frame: pd.DataFrame, columns: list[str], source: Path) -> None:
    missing = [c for c in ["id", *columns] if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column {missing[0]!r}")
    dup = frame["id"][frame["id"].duplicated()]
    if len(dup):
        raise DataError(f"{source}: duplicate id {dup.iloc[0]!r}")
    values = frame[columns].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        bad = frame.loc[~np.isfinite(values).all(axis=1), "id"].iloc[0]
        raise DataError(f"{source}: id {bad!r} holds NaN or infinite feature values")


def write_feature_set(ws: Workspace, name: str, frames: dict[str, pd.DataFrame], manifest: FeatureManifest) -> Path:
    """Write every split's frame, then the manifest last (a set without it is not a set)."""
    folder = features_dir(ws, name)
    for split, frame in frames.items():
        _check_frame(frame, manifest.columns or [], folder / f"{split}.parquet")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FEATURES_MANIFEST_FILE).unlink(missing_ok=True)
    for split, frame in frames.items():
        write_parquet(frame, folder / f"{split}.parquet")
    write_json(manifest.to_dict(), folder / FEATURES_MANIFEST_FILE)
    return folder


def load_feature_set(ws: Workspace, name: str) -> FeatureSet:
    folder = features_dir(ws, name)
    if not (folder / FEATURES_MANIFEST_FILE).is_file():
        known = ", ".join(feature_set_names(ws)) or "none (make one with `ens features vad`)"
        raise ConfigError(f"feature set {name!r} not found in {folder.parent}; known: {known}")
    manifest = FeatureManifest.from_dict(read_json(folder / FEATURES_MANIFEST_FILE), folder / FEATURES_MANIFEST_FILE)
    if manifest.labels_used is not False:
        raise ContractError(f"{folder / FEATURES_MANIFEST_FILE}: the features were made with labels (or do not say "
                            "`labels_used: false`); the stacker takes only label-free meta-features")
    if not isinstance(manifest.columns, list) or not manifest.columns:
        raise ContractError(f"{folder / FEATURES_MANIFEST_FILE}: 'columns' must list the feature columns")
    return FeatureSet(name, folder, manifest)

