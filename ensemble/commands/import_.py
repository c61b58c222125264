"""`ens import`: predictions made elsewhere (a teammate's submission, an OOF file) become a run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.artifacts.competition import Competition, check_same_ids
from ensemble.errors import DataError
from ensemble.artifacts.folds import FOLDS_FILE, ensure_folds, folds_fingerprint, load_folds
from ensemble.artifacts.io import file_sha256, read_csv, recover_dir, replace_dir, staged_dir, write_parquet
from ensemble.artifacts.locking import name_lock, run_lock
from ensemble.artifacts.provenance import now_iso, package_versions
from ensemble.artifacts.records import RunManifest
from ensemble.artifacts.runs import (OOF_FILE, check_replaceable_run, is_run, TEST_FILE, TESTLIKE_OOF_FILE, Run, load_run,
                           validate_oof, validate_test, write_manifest, write_run_file)
from ensemble.metrics.frames import cv_metrics, score_frame
from ensemble.artifacts.testlike_set import TESTLIKE_FILE, load_testlike, testlike_fingerprint
from ensemble.artifacts.submission import check_submission_table, read_submission_csv
from ensemble.artifacts.workspace import Workspace

IMPORTED_FOLD = -1  # test predictions not tied to one fold model


def import_run(ws: Workspace, comp: Competition, name: str, test_csv: Path, oof_csv: Path | None = None,
               force: bool = False, testlike_csv: Path | None = None) -> Run:
    """Validate the CSVs, then write the run folder (built aside, moved into place at the end).

    `testlike_csv` holds predictions for the workspace's test-like clips (`ens testlike export`), so an
    imported run is judged, blended and calibrated on them like a fine-tuned one.
    """
    run_dir = ws.run_dir(name)
    if run_dir.exists() or run_dir.is_symlink() or any(ws.models_dir.glob(f".{name}.*")):
        with name_lock(run_lock(ws.models_dir, name), f"run {name!r}"):  # before any compute: tidy, then check
            recover_dir(run_dir, is_run)
            check_replaceable_run(run_dir, force)
    if testlike_csv is not None:
        comp.task.splits(("testlike",), "--testlike")  # refused where the task has no test-like set
    if testlike_csv is not None and oof_csv is None:
        raise DataError("--testlike needs --oof too: test-like predictions are used only beside OOF ones")
    test = read_submission_csv(test_csv, comp)
    check_same_ids(test["id"], comp.test_ids, test_csv, comp.root / "sample_submission.csv")
    test = test.set_index("id").loc[comp.test_ids].reset_index()
    test.insert(1, "fold", IMPORTED_FOLD)
    validate_test(test, comp.labels, comp.test_ids, test_csv)
    oof, folds = _read_oof(ws, comp, oof_csv) if oof_csv is not None else (None, None)
    testlike, clips = _read_testlike(ws, comp, testlike_csv) if testlike_csv is not None else (None, None)

    manifest = RunManifest(
        name=name, kind="import", created=now_iso(), labels=comp.labels, task=comp.task.name,
        data=comp.fingerprint(), versions=package_versions(), source={}, files={},
    )
    source = {"test": {"path": str(test_csv), "sha256": file_sha256(test_csv)}}
    ws.models_dir.mkdir(parents=True, exist_ok=True)
    with name_lock(run_lock(ws.models_dir, name), f"run {name!r}"):
        recover_dir(run_dir, is_run)
        check_replaceable_run(run_dir, force)  # again, under the lock: a writer may have finished meanwhile
        staging = staged_dir(run_dir)
        try:
            files = {TEST_FILE: write_run_file(test, staging, TEST_FILE)}
            if oof is not None:
                source["oof"] = {"path": str(oof_csv), "sha256": file_sha256(oof_csv)}
                files[OOF_FILE] = write_run_file(oof, staging, OOF_FILE)
                manifest.folds_fingerprint = folds_fingerprint(folds)
                manifest.metrics = cv_metrics(oof, folds, comp.labels, _cv_scorer(ws, comp))
            if testlike is not None:
                source["testlike"] = {"path": str(testlike_csv), "sha256": file_sha256(testlike_csv)}
                files[TESTLIKE_OOF_FILE] = write_run_file(testlike, staging, TESTLIKE_OOF_FILE)
                manifest.testlike_fingerprint = testlike_fingerprint(clips)
                manifest.metrics.cv_testlike = score_frame(testlike, clips, comp.labels).as_dict()
            manifest.source, manifest.files = source, files
            write_manifest(staging, manifest)
            replace_dir(staging, run_dir)  # the old run stays whole until the new one is in place
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return load_run(ws, name)


def _cv_scorer(ws: Workspace, comp: Competition):
    """The workspace's metric, which a run's CV is recorded with (`cv_metrics`: multi-label, the competition's parts)."""
    from ensemble.metrics.scorer import get_scorer

    return get_scorer(ws.metric(comp.task), comp.task)


def _read_oof(ws: Workspace, comp: Competition, oof_csv: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """OOF rows with their folds: a `fold` column must agree with the shared folds (or makes them)."""
    raw = read_csv(oof_csv)
    fold = raw.pop("fold") if "fold" in raw.columns else None
    oof = check_submission_table(raw, comp, oof_csv)
    check_same_ids(oof["id"], comp.train["id"].astype(str), oof_csv, comp.root / "train.csv")
    if fold is None:
        folds = ensure_folds(ws, comp)
        oof.insert(1, "fold", folds.set_index("id").loc[oof["id"], "fold"].to_numpy())
    else:
        numeric = pd.to_numeric(fold, errors="coerce")
        if numeric.isna().any() or (numeric % 1 != 0).any():
            raise DataError(f"{oof_csv}: column 'fold' must hold whole numbers")
        oof.insert(1, "fold", numeric.astype(np.int64).to_numpy())
        if not (ws.models_dir / FOLDS_FILE).is_file():
            write_parquet(_folds_from(oof, comp), ws.models_dir / FOLDS_FILE)
        folds = load_folds(ws)
    validate_oof(oof, comp.labels, folds, oof_csv)
    return oof, folds


def _read_testlike(ws: Workspace, comp: Competition, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions for exactly the workspace's test-like clips, each given its clip's fold."""
    clips = load_testlike(ws)
    if clips is None:
        raise DataError(f"{ws.models_dir / TESTLIKE_FILE}: no test-like clips in this workspace yet; they are made "
                        "by the first `ens finetune` (then `ens testlike export DIR` writes them as audio)")
    raw = read_csv(path)
    if "fold" in raw.columns:
        raise DataError(f"{path}: unexpected column 'fold'; a test-like clip's fold comes from {TESTLIKE_FILE}")
    frame = check_submission_table(raw, comp, path)
    check_same_ids(frame["id"], clips["id"].astype(str), path, ws.models_dir / TESTLIKE_FILE)
    frame.insert(1, "fold", clips.set_index("id").loc[frame["id"], "fold"].to_numpy(dtype=np.int64))
    validate_oof(frame, comp.labels, clips[["id", "fold"]], path)
    return frame, clips


def _folds_from(oof: pd.DataFrame, comp: Competition) -> pd.DataFrame:
    """A shared folds file taken from an imported OOF file's `fold` column."""
    folds = pd.DataFrame({"id": comp.train["id"].astype(str).to_numpy()})
    folds["fold"] = oof.set_index("id").loc[folds["id"], "fold"].to_numpy(dtype=np.int64)
    for j, label in enumerate(comp.labels):
        folds[label] = comp.targets[:, j].astype(np.int8)
    return folds
