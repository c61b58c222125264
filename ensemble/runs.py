"""Runs: `models/<run>/` with `oof.parquet`, `test.parquet`, `oof_testlike.parquet` and `run.json`.

The Parquet contracts (DESIGN.md) are checked on write and again on read:
- oof: `id`, `fold`, label columns; exactly one row per train id, fold as in the shared folds file.
- test: `id`, `fold`, label columns; one row per test id and fold.
- oof_testlike: like oof, for the shared test-like clips.
Probabilities are floats in [0, 1] without NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.errors import ContractError, DataError
from ensemble.io import file_sha256, read_json, read_parquet, write_json, write_parquet
from ensemble.workspace import Workspace

OOF_FILE = "oof.parquet"
TEST_FILE = "test.parquet"
TESTLIKE_FILE = "oof_testlike.parquet"
MANIFEST_FILE = "run.json"


def check_probabilities(df: pd.DataFrame, labels: list[str], source: Path | str) -> None:
    """Every label column present, numeric, in [0, 1], no NaN; the first bad cell is named."""
    for label in labels:
        if label not in df.columns:
            raise DataError(f"{source}: missing label column {label!r}")
        values = pd.to_numeric(df[label], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(values) | (values < 0) | (values > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            cell = df[label].iloc[i]
            cell = cell.item() if hasattr(cell, "item") else cell
            raise DataError(
                f"{source}: id {df['id'].iloc[i]!r} column {label!r} is {cell!r}; "
                "expected a probability in [0, 1]"
            )


def _check_frame(df: pd.DataFrame, labels: list[str], source: Path | str) -> None:
    for col in ("id", "fold"):
        if col not in df.columns:
            raise DataError(f"{source}: missing column {col!r}")
    extra = [c for c in df.columns if c not in ("id", "fold", *labels)]
    if extra:
        raise DataError(f"{source}: unknown column {extra[0]!r}; expected id, fold and {', '.join(labels)}")
    check_probabilities(df, labels, source)


def validate_oof(df: pd.DataFrame, labels: list[str], folds: pd.DataFrame, source: Path | str) -> None:
    """One row per id of `folds`, with the fold the folds file gives it."""
    _check_frame(df, labels, source)
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise DataError(f"{source}: duplicate id {dup.iloc[0]!r}")
    expected = folds.set_index("id")["fold"]
    unknown = ~df["id"].isin(expected.index)
    if unknown.any():
        raise DataError(f"{source}: id {df['id'][unknown].iloc[0]!r} is not a train id")
    if len(df) != len(expected):
        missing = sorted(set(expected.index) - set(df["id"]))
        raise DataError(f"{source}: id {missing[0]!r} has no prediction ({len(missing)} train ids missing)")
    wrong = df["fold"].to_numpy() != expected.loc[df["id"]].to_numpy()
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise ContractError(
            f"{source}: id {df['id'].iloc[i]!r} has fold {df['fold'].iloc[i]} but the shared folds say "
            f"{expected.loc[df['id'].iloc[i]]}"
        )


def validate_test(df: pd.DataFrame, labels: list[str], test_ids: pd.Series, source: Path | str) -> None:
    """One row per (test id, fold); every fold predicts every test id."""
    _check_frame(df, labels, source)
    dup = df[df.duplicated(["id", "fold"])]
    if len(dup):
        raise DataError(f"{source}: duplicate row for id {dup['id'].iloc[0]!r} fold {dup['fold'].iloc[0]}")
    from ensemble.competition import check_same_ids

    for fold, part in df.groupby("fold", sort=True):
        check_same_ids(part["id"], test_ids, f"{source} (fold {fold})", "the test ids")


@dataclass
class Run:
    """A run folder, read and validated lazily."""

    name: str
    dir: Path
    manifest: dict

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def has_oof(self) -> bool:
        return (self.dir / OOF_FILE).is_file()

    @property
    def has_testlike(self) -> bool:
        return (self.dir / TESTLIKE_FILE).is_file()

    def oof(self) -> pd.DataFrame:
        return _read_predictions(self.dir / OOF_FILE, self.labels)

    def test(self) -> pd.DataFrame:
        return _read_predictions(self.dir / TEST_FILE, self.labels)

    def oof_testlike(self) -> pd.DataFrame:
        return _read_predictions(self.dir / TESTLIKE_FILE, self.labels)


def _read_predictions(path: Path, labels: list[str]) -> pd.DataFrame:
    df = read_parquet(path)
    _check_frame(df, labels, path)
    df["id"] = df["id"].astype(str)
    return df


def load_run(ws: Workspace, name: str) -> Run:
    """A run by name; an unknown name lists the runs there are."""
    folder = ws.run_dir(name)
    if not (folder / MANIFEST_FILE).is_file():
        known = ", ".join(ws.run_names()) or "none yet"
        raise DataError(f"run {name!r} not found in {ws.models_dir} (runs: {known})")
    return Run(name=name, dir=folder, manifest=read_json(folder / MANIFEST_FILE))


def write_run_file(df: pd.DataFrame, run_dir: Path, filename: str) -> str:
    """Write one prediction file of a run atomically; returns its SHA-256 for the manifest."""
    out = df.sort_values(["fold", "id"] if filename == TEST_FILE else ["id"], kind="stable")
    write_parquet(out.reset_index(drop=True), run_dir / filename)
    return file_sha256(run_dir / filename)


def write_manifest(run_dir: Path, manifest: dict) -> None:
    write_json(manifest, run_dir / MANIFEST_FILE)


def check_compatible(runs: list[Run]) -> None:
    """Runs blend only when they share labels, folds and data; the first mismatch is named."""
    first = runs[0]
    for run in runs[1:]:
        for key, what in (("labels", "label columns"), ("folds_fingerprint", "folds"), ("data", "data")):
            a, b = first.manifest.get(key), run.manifest.get(key)
            if key == "data":
                a = {k: v for k, v in (a or {}).items() if k in ("test.csv", "sample_submission.csv", "train.csv")}
                b = {k: v for k, v in (b or {}).items() if k in a}
                a = {k: v for k, v in a.items() if k in b}
            if key == "folds_fingerprint" and (a is None or b is None):
                continue
            if a != b:
                raise ContractError(f"runs {first.name!r} and {run.name!r} were made on different {what}; they cannot be blended")
