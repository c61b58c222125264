"""Submissions: `submissions/<name>.csv` checked against the sample submission, plus a JSON sidecar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.competition import Competition, check_ids, check_same_ids, require_columns
from ensemble.errors import DataError
from ensemble.io import read_csv, read_json, write_csv, write_json
from ensemble.provenance import now_iso, package_versions
from ensemble.runs import check_probabilities
from ensemble.workspace import Workspace, check_name, check_overwrite


def submission_frame(pred: np.ndarray, comp: Competition) -> pd.DataFrame:
    """`(test rows, labels)` probabilities in sample-submission order → the submission table."""
    frame = pd.DataFrame({"id": comp.test_ids.to_numpy()})
    for j, label in enumerate(comp.labels):
        frame[label] = np.asarray(pred[:, j], dtype=np.float64)
    return frame


def validate_submission(df: pd.DataFrame, comp: Competition, source: Path | str) -> None:
    """Exactly the sample submission's columns, ids and order; probabilities in [0, 1], no NaN."""
    sample_path = comp.root / "sample_submission.csv"
    require_columns(df, ["id", *comp.labels], source)
    if list(df.columns) != list(comp.sample.columns):
        raise DataError(f"{source}: columns {list(df.columns)} differ from {sample_path}'s {list(comp.sample.columns)}")
    check_ids(df["id"], source)
    check_same_ids(df["id"], comp.test_ids, source, sample_path)
    order = df["id"].to_numpy() != comp.test_ids.to_numpy()
    if order.any():
        i = int(np.flatnonzero(order)[0])
        raise DataError(f"{source}: row {i + 2} holds id {df['id'].iloc[i]!r}; {sample_path} has {comp.test_ids.iloc[i]!r} there")
    check_probabilities(df, comp.labels, source)


def submission_paths(ws: Workspace, name: str) -> tuple[Path, Path]:
    check_name(name, "submission")
    csv = ws.submissions_dir / f"{name}.csv"
    return csv, csv.with_suffix(".json")


def write_submission(ws: Workspace, name: str, frame: pd.DataFrame, comp: Competition, sidecar: dict, force: bool = False) -> Path:
    """Validate, then write the CSV and its sidecar atomically; refuse to overwrite without `force`."""
    csv, meta = submission_paths(ws, name)
    check_overwrite(csv, force, "submission")
    validate_submission(frame, comp, csv)
    sidecar = {"name": name, "created": now_iso(), "versions": package_versions(), "leaderboard": {}, **sidecar}
    write_csv(frame, csv)
    write_json(sidecar, meta)
    return csv


def read_sidecar(ws: Workspace, name: str) -> dict:
    csv, meta = submission_paths(ws, name)
    if not meta.is_file():
        known = ", ".join(ws.submission_names()) or "none yet"
        raise DataError(f"submission {name!r} not found in {ws.submissions_dir} (submissions: {known})")
    return read_json(meta)


def record_leaderboard(ws: Workspace, name: str, public: float | None, private: float | None) -> dict:
    """Store leaderboard scores in the submission's sidecar; returns the updated sidecar."""
    if public is None and private is None:
        raise DataError("give --public and/or --private")
    sidecar = read_sidecar(ws, Path(name).stem if name.endswith((".csv", ".json")) else name)
    board = dict(sidecar.get("leaderboard") or {})
    for key, value in (("public", public), ("private", private)):
        if value is not None:
            if not np.isfinite(value):
                raise DataError(f"--{key} must be a finite number, got {value}")
            board[key] = float(value)
    board["recorded"] = now_iso()
    sidecar["leaderboard"] = board
    write_json(sidecar, submission_paths(ws, sidecar["name"])[1])
    return sidecar


def read_submission_csv(path: Path, comp: Competition) -> pd.DataFrame:
    """A submission-shaped CSV (id + label columns, any order of ids) validated against the sample."""
    return check_submission_table(read_csv(path), comp, path)


def check_submission_table(df: pd.DataFrame, comp: Competition, path: Path | str) -> pd.DataFrame:
    """Id and label columns only, unique ids, probabilities in [0, 1]."""
    require_columns(df, ["id", *comp.labels], path)
    extra = [c for c in df.columns if c not in ("id", *comp.labels)]
    if extra:
        raise DataError(f"{path}: unknown column {extra[0]!r}; expected id, {', '.join(comp.labels)}")
    check_ids(df["id"], path)
    check_probabilities(df, comp.labels, path)
    return df
