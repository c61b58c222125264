"""`ens import`: predictions made elsewhere (a teammate's submission, an OOF file) become a run."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.competition import Competition, check_same_ids
from ensemble.errors import DataError
from ensemble.folds import FOLDS_FILE, ensure_folds, folds_fingerprint, load_folds
from ensemble.io import file_sha256, read_csv, umask_mode, write_parquet
from ensemble.provenance import now_iso, package_versions
from ensemble.runs import OOF_FILE, TEST_FILE, Run, load_run, validate_oof, validate_test, write_manifest, write_run_file
from ensemble.scoring import cv_metrics
from ensemble.submission import check_submission_table, read_submission_csv
from ensemble.workspace import Workspace, check_overwrite

IMPORTED_FOLD = -1  # test predictions not tied to one fold model


def import_run(ws: Workspace, comp: Competition, name: str, test_csv: Path, oof_csv: Path | None = None,
               force: bool = False) -> Run:
    """Validate the CSVs, then write the run folder (built aside, moved into place at the end)."""
    run_dir = ws.run_dir(name)
    check_overwrite(run_dir, force, "run")
    test = read_submission_csv(test_csv, comp)
    check_same_ids(test["id"], comp.test_ids, test_csv, comp.root / "sample_submission.csv")
    test = test.set_index("id").loc[comp.test_ids].reset_index()
    test.insert(1, "fold", IMPORTED_FOLD)
    validate_test(test, comp.labels, comp.test_ids, test_csv)
    oof, folds = _read_oof(ws, comp, oof_csv) if oof_csv is not None else (None, None)

    manifest = {
        "name": name, "kind": "import", "created": now_iso(), "labels": comp.labels,
        "data": comp.fingerprint(), "versions": package_versions(),
        "source": {"test": {"path": str(test_csv), "sha256": file_sha256(test_csv)}},
        "files": {}, "metrics": {},
    }
    ws.models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=ws.models_dir))
    staging.chmod(umask_mode(directory=True))
    try:
        manifest["files"][TEST_FILE] = write_run_file(test, staging, TEST_FILE)
        if oof is not None:
            manifest["source"]["oof"] = {"path": str(oof_csv), "sha256": file_sha256(oof_csv)}
            manifest["files"][OOF_FILE] = write_run_file(oof, staging, OOF_FILE)
            manifest["folds_fingerprint"] = folds_fingerprint(folds)
            manifest["metrics"] = cv_metrics(oof, folds, comp.labels)
        write_manifest(staging, manifest)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        staging.rename(run_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_run(ws, name)


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


def _folds_from(oof: pd.DataFrame, comp: Competition) -> pd.DataFrame:
    """A shared folds file taken from an imported OOF file's `fold` column."""
    folds = pd.DataFrame({"id": comp.train["id"].astype(str).to_numpy()})
    folds["fold"] = oof.set_index("id").loc[folds["id"], "fold"].to_numpy(dtype=np.int64)
    for j, label in enumerate(comp.labels):
        folds[label] = comp.targets[:, j].astype(np.int8)
    return folds
