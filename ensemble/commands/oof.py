"""`ens oof`: a run's ONNX folds in ONNX Runtime → the run's OOF, test and test-like predictions.

Each fold model predicts only what it never trained on (its held-out rows and test-like clips) plus
the whole test set, with the same windowing and preprocessing as `finetune` (rebuilt from the ONNX
metadata, so no torch weights are needed). The run's files are replaced atomically and run.json
records the provider and the largest difference to the predictions they replace.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from ensemble.artifacts.competition import Competition
from ensemble.errors import ContractError
from ensemble.artifacts.folds import load_folds
from ensemble.artifacts.io import sweep_tmp
from ensemble.artifacts.locking import exclusive, run_lock
from ensemble.artifacts.provenance import now_iso
from ensemble.artifacts.records import RunManifest
from ensemble.artifacts.runs import OOF_FILE, PREDICTION_SPLITS, TEST_FILE, TESTLIKE_OOF_FILE, load_run, write_manifest, write_run_file
from ensemble.metrics.frames import cv_metrics, score_frame
from ensemble.artifacts.testlike_set import background_loader, load_testlike, testlike_fingerprint
from ensemble.artifacts.workspace import Workspace


def run_oof(ws: Workspace, comp: Competition, name: str, splits: tuple[str, ...] = PREDICTION_SPLITS,
            provider: str = "auto", batch_size: int = 8,
            progress: Callable[[dict], None] | None = None) -> dict[str, float]:
    """Re-predict `splits` with ONNX Runtime; returns the max |Δp| against the files replaced."""
    from ensemble.audio.load import WaveStore
    from ensemble.backbones.ort import OnnxClassifier
    from ensemble.backbones.predict import (WaveSources, fold_splits, onnx_predictor, predict_fold_splits,
                                           test_wave_store)

    emit = progress or (lambda event: None)
    splits = comp.task.splits(splits, f"run {name!r}")
    run = load_run(ws, name)
    manifest = run.manifest
    if manifest.kind != "finetune":
        raise ContractError(f"run {name!r} has no ONNX folds to run (its kind is {manifest.kind!r}; "
                            "only runs made by `ens finetune` have them)")
    if manifest.max_seconds is None or not manifest.folds or any(f.onnx is None for f in manifest.folds):
        raise ContractError(f"{run.dir / 'run.json'}: options.max_seconds or a fold's onnx entry is missing")
    from ensemble.artifacts.audio_check import audio_splits, check_competition_audio

    check_competition_audio(ws, comp, audio_splits(splits), progress=emit)
    folds = load_folds(ws)
    max_seconds = manifest.max_seconds
    clips = load_testlike(ws) if "testlike" in splits else None
    paths = comp.train.set_index(comp.train["id"].astype(str))["path"]
    frames: dict[str, list[pd.DataFrame]] = {s: [] for s in splits}
    used_provider, stores, decoded = None, {}, ws.audio_cache()
    row_of = {rid: i for i, rid in enumerate(folds["id"])}
    for info in manifest.folds:
        k = info.fold
        model = OnnxClassifier(run.dir / info.onnx.path, provider=provider)
        used_provider, sr = model.provider, model.sampling_rate
        if sr not in stores:  # one store per rate, kept across folds: each clip is decoded once per run
            stores[sr] = (WaveStore([comp.audio_path(paths[i]) for i in folds["id"]], sr, decoded=decoded),
                          test_wave_store(comp, sr, decoded), background_loader(comp, sr, decoded))
        store, test_store, load_background = stores[sr]
        sources = WaveSources(sr, lambda rid: store[row_of[rid]], test_store, load_background)
        waves = fold_splits(comp, folds, k, sources, clips, splits)
        predicted = predict_fold_splits(onnx_predictor(model, model.preprocess), waves, k, comp, sr, max_seconds,
                                        batch_size, emit)
        for split, frame in predicted.items():
            frames[split].append(frame)
    with exclusive(run_lock(ws.models_dir, run.name)):
        sweep_tmp(run.dir)  # a killed `ens oof` or `ens finetune` left these
        return _write(run, comp, folds, clips, frames, used_provider)


def run_scorer(manifest: RunManifest, comp: Competition):
    """The scorer a run's CV was recorded with (`cv_metrics` records a multi-label run's competition parts)."""
    from ensemble.metrics.scorer import get_scorer

    return get_scorer((manifest.cv.metric if manifest.cv else None) or comp.task.default_metric, comp.task)


def _write(run, comp: Competition, folds: pd.DataFrame, clips, frames: dict, provider: str) -> dict[str, float]:
    """Replace the run's files with the ONNX Runtime predictions; record the largest change."""
    from ensemble.artifacts.runs import validate_oof, validate_test

    filename = {"train": OOF_FILE, "test": TEST_FILE, "testlike": TESTLIKE_OOF_FILE}
    manifest = run.manifest
    diffs = {}
    for split, parts in frames.items():
        new = pd.concat(parts, ignore_index=True)
        if split == "train":
            validate_oof(new, comp.labels, folds, f"{run.name} ONNX OOF")
        elif split == "test":
            validate_test(new, comp.labels, comp.test_ids, f"{run.name} ONNX test")
        if split == "testlike" and manifest.testlike_fingerprint != testlike_fingerprint(clips):
            diffs[split] = float("nan")  # the test-like set was rebuilt: nothing to compare with
            manifest.testlike_fingerprint = testlike_fingerprint(clips)
        else:
            old = pd.read_parquet(run.dir / filename[split])
            merged = old.merge(new, on=["id", "fold"], suffixes=("_old", ""), validate="one_to_one")
            if len(merged) != len(new):
                raise ContractError(f"{run.dir / filename[split]}: rows differ from the ONNX predictions")
            diffs[split] = float(max(np.abs(merged[f"{c}_old"] - merged[c]).max() for c in comp.labels))
        manifest.files[filename[split]] = write_run_file(new, run.dir, filename[split])
        if split == "train":
            scores = cv_metrics(new, folds, comp.labels, run_scorer(manifest, comp))
            manifest.metrics.cv, manifest.metrics.per_fold = scores["cv"], scores["per_fold"]
        if split == "testlike":
            manifest.metrics.cv_testlike = score_frame(new, clips, comp.labels).as_dict()
    manifest.onnxruntime = {"provider": provider, "predicted": now_iso(), "max_abs_diff_to_previous": diffs}
    write_manifest(run.dir, manifest)
    return diffs
