"""Submissions: `submissions/<name>.csv` checked against the sample submission, plus a JSON sidecar."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.artifacts.competition import Competition, check_ids, check_same_ids, check_task_rows, require_columns
from ensemble.errors import DataError, ExistsError
from ensemble.artifacts.io import (csv_to, file_sha256, fsync_dir, fsync_file, json_text, pid_alive, read_csv,
                                   read_json, staged_file, sweep_tmp)
from ensemble.artifacts.locking import exclusive
from ensemble.artifacts.provenance import now_iso, package_versions
from ensemble.artifacts.records import CVScores, Recipe, Sidecar
from ensemble.artifacts.runs import check_probabilities
from ensemble.artifacts.workspace import Workspace, check_name


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
    check_task_rows(df, comp.labels, comp.task, source)


def submission_paths(ws: Workspace, name: str) -> tuple[Path, Path]:
    check_name(name, "submission")
    csv = ws.submissions_dir / f"{name}.csv"
    return csv, csv.with_suffix(".json")


@dataclass(frozen=True)
class Written:
    """A submission just written, and what was tidied on the way (files killed writers left)."""

    csv: Path
    sidecar: Path
    cleaned: list[str] = field(default_factory=list)


def submission_lock(ws: Workspace) -> Path:
    """The folder's lock: held for the moments a writer swaps files in (waited for, never refused)."""
    return ws.submissions_dir / ".lock"


def submission_name_lock(ws: Workspace, name: str) -> Path:
    """The lock one submission's writer holds from its name check to its last file: a second writer of the
    name is refused at once ("being written"), not left to stack for minutes and lose."""
    submission_paths(ws, name)  # the name checked before it names a file
    return ws.submissions_dir / f".{name}.lock"


def _exists_error(ws: Workspace, name: str) -> ExistsError:
    return ExistsError(f"submission {name!r} already exists in {ws.submissions_dir}; pass --force to replace it")


def check_free(ws: Workspace, name: str, force: bool = False) -> None:
    """Fail early (before any compute) on a bad name or an existing submission; `write_submission` checks again."""
    csv, meta = submission_paths(ws, name)
    if csv.is_file() and meta.is_file() and not force:
        with exclusive(submission_lock(ws)):  # refused before `write_submission` tidies: tidy here
            tidy(ws, name)
            if csv.is_file() and meta.is_file():
                raise _exists_error(ws, name)


def _backup(path: Path) -> Path:
    """Where a forced write keeps the old `path` (a hard link) until the new pair is in: `.NAME.bak-PID`."""
    return path.with_name(f".{path.name}.bak-{os.getpid()}")


def _put_back(backup: Path, target: Path) -> None:
    """Rename `backup` over `target`; when both are still one file (a hard link), just drop the backup
    (a rename between two links of one file does nothing, POSIX says)."""
    if target.exists() and os.path.samefile(backup, target):
        backup.unlink()
    else:
        os.replace(backup, target)


def _restore_backups(ws: Workspace, name: str) -> list[str]:
    """Put back the old pair a killed forced writer (a dead pid) had backed up and not yet replaced.

    The CSV is the commit point: with the CSV in place the new pair is whole and the backups go; without
    it the writer died mid-swap, and the old pair comes back.
    """
    notes = []
    csv, meta = submission_paths(ws, name)
    committed = csv.is_file()  # decided once: restoring the CSV first must not change what the sidecar gets
    for target in (csv, meta):
        for backup in sorted(ws.submissions_dir.glob(f".{target.name}.bak-*")):
            pid = backup.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or pid_alive(int(pid)):
                continue
            if committed:
                backup.unlink()
            else:
                _put_back(backup, target)
                notes.append(f"restored {target}: a forced write (pid {pid}) was killed while replacing it")
    return notes


def tidy(ws: Workspace, name: str) -> list[str]:
    """Under the lock: restore what a killed forced writer replaced, remove temp litter and a lone CSV or
    sidecar of `name`; returns what was done.

    The sidecar is written first and the CSV last, so a lone file is what a killed writer left (or a
    file put there by hand, which is not a submission either): the pair is the submission.
    """
    notes = _restore_backups(ws, name)
    swept = sweep_tmp(ws.submissions_dir)
    if swept:
        notes.append(f"removed {len(swept)} temp file(s) killed writers left in {ws.submissions_dir}")
    csv, meta = submission_paths(ws, name)
    if csv.is_file() != meta.is_file():
        lone, twin = (csv, "sidecar") if csv.is_file() else (meta, "CSV")
        lone.unlink()
        notes.append(f"removed {lone}: it had no {twin} (left by a killed or failed writer)")
    return notes


def write_submission(ws: Workspace, frame: pd.DataFrame, comp: Competition, sidecar: Sidecar,
                     force: bool = False) -> Written:
    """Validate, then write the sidecar and the CSV as a pair (named `sidecar.name`); refuse to replace a
    submission without `force`.

    Under the submissions lock, so of two writers of one name exactly one wins. Both new files are written
    and fsynced aside first (a full disk fails there, the old pair untouched); a forced write then keeps
    the old pair as hard links (`.NAME.csv.bak-PID`), un-commits it (removes the CSV), renames the sidecar
    and last the CSV in (the commit point), and drops the backups. A writer killed at any moment leaves
    the whole old pair, the whole new one, or neither plus backups and litter that the next writer puts
    back or removes. The sidecar records the CSV's SHA-256 and its recipe's.
    """
    name = sidecar.name
    csv, meta = submission_paths(ws, name)
    validate_submission(frame, comp, csv)
    with exclusive(submission_lock(ws)):
        cleaned = tidy(ws, name)
        if csv.is_file() and not force:
            raise _exists_error(ws, name)
        csv_tmp, meta_tmp = staged_file(csv), staged_file(meta)
        backups: list[tuple[Path, Path]] = []
        try:
            csv_to(frame, csv_tmp)
            final = replace(sidecar, csv_sha256=file_sha256(csv_tmp), recipe_sha256=recipe_sha256(sidecar.recipe))
            meta_tmp.write_text(json_text(final.to_dict()))
            fsync_file(csv_tmp)
            fsync_file(meta_tmp)
            if csv.is_file():
                for target in (csv, meta):
                    if target.is_file():
                        os.link(target, _backup(target))
                        backups.append((_backup(target), target))
                fsync_dir(ws.submissions_dir)
                csv.unlink()  # un-commit: from here a kill leaves backups, which the next writer puts back
            os.replace(meta_tmp, meta)
            os.replace(csv_tmp, csv)  # the commit point
            fsync_dir(ws.submissions_dir)
        except BaseException:
            if not csv.is_file() or csv_tmp.exists():  # not committed: the old pair comes back whole
                for backup, target in backups:
                    _put_back(backup, target)
            raise
        finally:
            for path in (csv_tmp, meta_tmp, *(b for b, _ in backups)):
                path.unlink(missing_ok=True)
    return Written(csv, meta, cleaned)


def recipe_sha256(recipe: Recipe) -> str:
    """Hex SHA-256 of a recipe's canonical JSON: a sidecar edited after stacking no longer matches it."""
    import hashlib

    as_read = json.loads(json_text(recipe.to_dict(), compact=True))  # int keys become strings, tuples lists
    return hashlib.sha256(json_text(as_read, compact=True).encode()).hexdigest()


def read_sidecar(ws: Workspace, name: str) -> Sidecar:
    """A submission's sidecar; a submission exists only as a pair (CSV and sidecar)."""
    csv, meta = submission_paths(ws, name)
    if not (meta.is_file() and csv.is_file()):
        known = ", ".join(ws.submission_names()) or "none yet"
        raise DataError(f"submission {name!r} not found in {ws.submissions_dir} (submissions: {known})")
    return Sidecar.from_dict(read_json(meta), meta)


def new_sidecar(name: str, recipe: Recipe, metrics: dict | CVScores, **more) -> Sidecar:
    """A sidecar for a submission about to be written: named, dated, with the package versions (`metrics`: its
    on-disk dict or the record)."""
    return Sidecar(name=name, created=now_iso(), versions=package_versions(), recipe=recipe, metrics=metrics, **more)


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
    check_task_rows(df, comp.labels, comp.task, path)
    return df
