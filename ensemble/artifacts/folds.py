"""The one shared folds file per dataset: stratified (grouped where a `group` column exists), fingerprinted."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemble.artifacts.competition import Competition
from ensemble.errors import ContractError, DataError
from ensemble.artifacts.io import frame_sha256, read_parquet, write_parquet
from ensemble.artifacts.workspace import Workspace

FOLDS_FILE = "folds.parquet"
DEFAULT_FOLDS = 5


def make_folds(comp: Competition, n_folds: int, seed: int) -> pd.DataFrame:
    """`id`, `fold` and the label columns for every train row, in train.csv order.

    Stratified on the combination of labels (multi-hot rows keep their mix across folds); grouped by
    `group` when present, so a speaker never sits on both sides of a split.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    targets = comp.targets
    strata = np.array(["".join(str(int(v)) for v in row) for row in targets])
    if n_folds < 2:
        raise DataError(f"--folds must be at least 2, got {n_folds}")
    smallest = pd.Series(strata).value_counts().min()
    if smallest < n_folds and comp.groups is None:
        raise DataError(f"{comp.root / 'train.csv'}: a label combination has {smallest} rows, fewer than {n_folds} folds")
    fold = np.empty(len(strata), dtype=np.int64)
    if comp.groups is not None:
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(strata)), strata, comp.groups)
    else:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(strata)), strata)
    for k, (_, held_out) in enumerate(splits):
        fold[held_out] = k
    frame = pd.DataFrame({"id": comp.train["id"].astype(str).to_numpy(), "fold": fold})
    for j, label in enumerate(comp.labels):
        frame[label] = targets[:, j].astype(np.int8)
    return frame


def folds_fingerprint(folds: pd.DataFrame) -> str:
    """Hash of the id → fold assignment: runs made on different folds are never blended."""
    return frame_sha256(folds[["id", "fold"]].reset_index(drop=True))


def load_folds(ws: Workspace) -> pd.DataFrame:
    """The workspace's folds file, validated."""
    path = ws.models_dir / FOLDS_FILE
    if not path.is_file():
        raise ContractError(f"{path}: no folds yet; `ens finetune` or `ens import --oof` creates them")
    folds = read_parquet(path)
    if "id" not in folds.columns or "fold" not in folds.columns:
        raise DataError(f"{path}: folds file needs columns 'id' and 'fold'")
    return folds


def ensure_folds(ws: Workspace, comp: Competition, n_folds: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Load the shared folds, or write them once (5 unless `n_folds`); refuse folds made for other data."""
    path = ws.models_dir / FOLDS_FILE
    if not path.is_file():
        folds = make_folds(comp, n_folds or DEFAULT_FOLDS, seed)
        write_parquet(folds, path)
        return folds
    folds = load_folds(ws)
    train_ids = comp.train["id"].astype(str)
    if len(folds) != len(train_ids) or set(folds["id"]) != set(train_ids):
        raise ContractError(f"{path}: folds were made for other train data; use another workspace")
    existing = int(folds["fold"].nunique())
    if n_folds is not None and existing != n_folds:
        raise ContractError(f"{path}: has {existing} folds but {n_folds} were asked for; runs must share folds")
    return folds
