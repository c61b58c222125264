"""`ens finetune`: k-fold fine-tuning of one backbone into a complete run.

Per fold (`fold_job.run_fold`): train on the other folds' rows with augmentation, keep the best
epoch by the competition score on the fold's rows, predict them (OOF), the test set and the fold's
test-like clips, export ONNX and measure its parity. Finished folds are kept in `fold<k>/`, so an
interrupted run resumes; `--fold` runs a subset (folds on different machines, merged by copying
`fold<k>/` folders into one run). Once every fold is done the run's Parquet files and `run.json`
are assembled.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from ensemble.audio.check import check_competition_audio
from ensemble.artifacts.competition import Competition
from ensemble.errors import ConfigError, ExistsError
from ensemble.artifacts.folds import ensure_folds, folds_fingerprint
from ensemble.artifacts.io import read_json, sweep_tmp
from ensemble.artifacts.locking import exclusive, run_lock
from ensemble.artifacts.provenance import machine, now_iso, package_versions
from ensemble.artifacts.runs import MANIFEST_FILE, OOF_FILE, TEST_FILE, TESTLIKE_FILE, Run, load_run, write_manifest, write_run_file
from ensemble.metrics.frames import cv_metrics, score_frame
from ensemble.artifacts.testlike_set import ensure_testlike, load_domain_check, testlike_fingerprint
from ensemble.artifacts.workspace import Workspace

Progress = Callable[[dict], None]
OPTIONS_FILE = "options.json"


@dataclass
class FinetuneOptions:
    """Everything that shapes a run; stored in run.json so the run explains itself."""

    model: str
    name: str | None = None
    folds: int | None = None
    only_folds: list[int] | None = None
    epochs: int = 5
    lr: float | None = None  # None: 3e-5 for pretrained checkpoints, 1e-3 for named (random) configs
    batch_size: int = 16
    grad_accum: int | None = None
    max_seconds: float = 5.0
    augment: str = "default"
    device: str = "auto"
    seed: int = 0
    testlike_per_fold: int | None = None
    freeze_feature_encoder: bool | None = None  # None: freeze pretrained encoders, train random ones
    extra: dict = field(default_factory=dict)

    @property
    def run_name(self) -> str:
        return self.name if self.name is not None else Path(self.model.rstrip("/")).name.replace("/", "-")

    def identity(self) -> dict:
        """The options that must match for a resumed or merged run (not the fold subset)."""
        return {k: v for k, v in asdict(self).items() if k not in ("only_folds", "device", "name")}


def _check_options(run_dir: Path, opts: FinetuneOptions, force: bool) -> None:
    """A new run, a resumable one with the same options, or an overwrite with --force."""
    from ensemble.artifacts.io import write_json

    saved = run_dir / OPTIONS_FILE
    if (run_dir / MANIFEST_FILE).is_file() and not force and not opts.only_folds:
        raise ExistsError(f"run {run_dir} exists; pass --force to overwrite it, or another --name")
    if force and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    if saved.is_file():
        before = read_json(saved)
        if before != opts.identity():
            changed = sorted(k for k in set(before) | set(opts.identity()) if before.get(k) != opts.identity().get(k))
            raise ConfigError(f"run {run_dir.name!r} was started with other options ({', '.join(changed)}); "
                              "pass --force to start over or another --name")
        return
    write_json(opts.identity(), saved)


def finetune(ws: Workspace, comp: Competition, opts: FinetuneOptions, force: bool = False,
             progress: Progress | None = None) -> Run | None:
    """Run (or resume) the requested folds; returns the run once every fold is done, else None."""
    from ensemble.commands.fold_job import FoldContext, run_fold

    emit = progress or (lambda event: None)
    run_dir = ws.run_dir(opts.run_name)  # a bad name is refused before anything is written
    check_competition_audio(ws, comp, progress=emit)
    with exclusive(ws.models_dir / ".lock"):  # the shared folds and test-like files are made once
        sweep_tmp(ws.models_dir)
        folds = ensure_folds(ws, comp, opts.folds, opts.seed)
        n_folds = int(folds["fold"].nunique())
        opts = replace(opts, folds=n_folds)  # resumed and merged calls need not repeat --folds
        todo = sorted(set(opts.only_folds)) if opts.only_folds else list(range(n_folds))
        bad = [k for k in todo if not 0 <= k < n_folds]
        if bad:
            raise ConfigError(f"--fold {bad[0]} is out of range; the folds file has folds 0..{n_folds - 1}")
        clips = ensure_testlike(ws, comp, folds, opts.testlike_per_fold, opts.seed)
    opts = replace(opts, testlike_per_fold=int(clips.groupby("fold").size().max()))
    with exclusive(run_lock(ws.models_dir, run_dir.name)):
        _check_options(run_dir, opts, force)
        sweep_tmp(run_dir)  # a killed `ens finetune` or `ens oof` left these
    context = FoldContext(ws=ws, comp=comp, folds=folds, testlike=clips, opts=opts, run_dir=run_dir, emit=emit)
    started = time.perf_counter()
    for k in todo:
        if (run_dir / f"fold{k}" / "fold.json").is_file():
            emit({"stage": "fold_skipped", "fold": k})
            continue
        sweep_tmp(run_dir / f"fold{k}")  # this process redoes fold k: what is there is a killed writer's
        run_fold(context, k)
    missing = [k for k in range(n_folds) if not (run_dir / f"fold{k}" / "fold.json").is_file()]
    if missing:
        emit({"stage": "partial", "missing": missing})
        return None
    with exclusive(run_lock(ws.models_dir, run_dir.name)):  # folds finished elsewhere may assemble too
        return assemble(ws, comp, folds, clips, opts, run_dir, time.perf_counter() - started)


def _concat(run_dir: Path, n_folds: int, filename: str) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(run_dir / f"fold{k}" / filename) for k in range(n_folds)], ignore_index=True)


def assemble(ws: Workspace, comp: Competition, folds: pd.DataFrame, clips: pd.DataFrame, opts: FinetuneOptions,
             run_dir: Path, seconds: float) -> Run:
    """Merge the folds' predictions into the run's Parquet files and write run.json."""
    from ensemble.artifacts.runs import validate_oof, validate_test

    n_folds = int(folds["fold"].nunique())
    fold_info = [read_json(run_dir / f"fold{k}" / "fold.json") for k in range(n_folds)]
    oof, test, testlike = (_concat(run_dir, n_folds, f) for f in (OOF_FILE, TEST_FILE, TESTLIKE_FILE))
    validate_oof(oof, comp.labels, folds, run_dir / OOF_FILE)
    validate_test(test, comp.labels, comp.test_ids, run_dir / TEST_FILE)
    metrics = cv_metrics(oof, folds, comp.labels)
    metrics["cv_testlike"] = score_frame(testlike, clips, comp.labels).as_dict()
    manifest = {
        "name": run_dir.name, "kind": "finetune", "created": now_iso(), "labels": comp.labels,
        "source": {"model_ref": opts.model, "model": fold_info[0].get("model", {})},
        "options": asdict(opts), "folds_fingerprint": folds_fingerprint(folds), "n_folds": n_folds,
        "testlike_fingerprint": testlike_fingerprint(clips), "testlike_domain": load_domain_check(ws),
        "data": comp.fingerprint(),
        "metrics": metrics, "folds": fold_info, "versions": package_versions(), "machine": machine(),
        "seconds": {"total_this_call": round(seconds, 2), "folds": [f.get("seconds") for f in fold_info]},
        "files": {name: write_run_file(frame, run_dir, name)
                  for name, frame in ((OOF_FILE, oof), (TEST_FILE, test), (TESTLIKE_FILE, testlike))},
    }
    write_manifest(run_dir, manifest)
    return load_run(ws, run_dir.name)
