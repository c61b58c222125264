"""Runs → the stacker's tensors: OOF `(rows, runs, labels)`, targets, folds, test and test-like."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ensemble.artifacts.competition import Competition, check_same_ids
from ensemble.errors import ConfigError, ContractError, DataError
from ensemble.artifacts.features import FEATURES_MANIFEST_FILE, FeatureSet, load_feature_set
from ensemble.artifacts.folds import FOLDS_FILE, folds_fingerprint, load_folds
from ensemble.artifacts.io import file_sha256
from ensemble.probability import logit, sigmoid
from ensemble.artifacts.runs import OOF_FILE, TEST_FILE, TESTLIKE_OOF_FILE, Run, check_compatible, validate_oof, validate_test
from ensemble.artifacts.testlike_set import load_domain_check, load_testlike, testlike_fingerprint, testlike_weights
from ensemble.artifacts.workspace import Workspace
from ensemble.stack.metafeatures import MetaFeatures
from ensemble.stack.request import StackInputs


MIN_WEIGHT_ESS = 0.25


def mean_of_logits(probs: np.ndarray, axis: int = 0) -> np.ndarray:
    """Aggregate fold models' probabilities as the mean of their logits (one fold: unchanged)."""
    if probs.shape[axis] == 1:
        return np.take(probs, 0, axis=axis)
    return sigmoid(logit(probs).mean(axis=axis))


def test_tensor(runs: list[Run], comp: Competition) -> np.ndarray:
    """Each run's test predictions, folds aggregated in the task's blending space (`Task.pool`: the mean of
    logits, or of log-probabilities renormalised to sum to 1), in submission order."""
    out = np.empty((len(comp.test_ids), len(runs), len(comp.labels)))
    for r, run in enumerate(runs):
        frame = run.test()
        validate_test(frame, comp.labels, comp.test_ids, run.dir / TEST_FILE)
        folds = np.stack([frame.pivot(index="id", columns="fold", values=label).loc[comp.test_ids]
                          .to_numpy(dtype=np.float64) for label in comp.labels], axis=1)  # (rows, labels, folds)
        out[:, r, :] = comp.task.pool(folds)
    return out


def _aligned(frames: list[pd.DataFrame], ids: pd.Series, labels: list[str]) -> np.ndarray:
    return np.stack([f.set_index("id").loc[ids, labels].to_numpy(dtype=np.float64) for f in frames], axis=1)


def _check_testlike(frame: pd.DataFrame, clips: pd.DataFrame, source: Path) -> None:
    """One row per shared test-like clip, no more, no less."""
    dup = frame["id"][frame["id"].duplicated()]
    if len(dup):
        raise DataError(f"{source}: duplicate id {dup.iloc[0]!r}")
    check_same_ids(frame["id"], clips["id"].astype(str), source, "models/testlike.parquet")


def current_folds_fingerprint(ws: Workspace) -> str | None:
    """Fingerprint of the workspace's folds file, or None before any run made it."""
    return folds_fingerprint(load_folds(ws)) if (ws.models_dir / FOLDS_FILE).is_file() else None


def gather(ws: Workspace, comp: Competition, runs: list[Run], meta: Sequence[str] = ()) -> StackInputs:
    """Load and align every run (and the feature sets named in `meta`); OOF parts only when every run has them.

    Every run, a lone one too, must have been made on the competition's current data and the
    workspace's folds; every file must hold exactly the rows its contract says.
    """
    check_compatible(runs, data=comp.fingerprint(), folds=current_folds_fingerprint(ws), labels=comp.labels)
    inputs = StackInputs(runs=[r.name for r in runs], labels=comp.labels, test=test_tensor(runs, comp),
                         task=comp.task)
    if not all(r.has_oof for r in runs):
        if meta:
            lacking = ", ".join(repr(r.name) for r in runs if not r.has_oof)
            raise ConfigError(f"meta-features need OOF predictions for every run; runs without: {lacking}")
        return inputs
    folds = load_folds(ws)
    frames = [r.oof() for r in runs]
    for run, frame in zip(runs, frames):
        validate_oof(frame, comp.labels, folds, run.dir / OOF_FILE)
    inputs.oof = _aligned(frames, folds["id"], comp.labels)
    inputs.y = folds[comp.labels].to_numpy(dtype=np.float64)
    inputs.folds = folds["fold"].to_numpy()
    clips = load_testlike(ws)
    if all(r.has_testlike_oof for r in runs) and clips is not None:
        frames = [r.oof_testlike() for r in runs]
        current = testlike_fingerprint(clips)
        for run, frame in zip(runs, frames):
            made_for = run.manifest.testlike_fingerprint
            if made_for is not None and made_for != current:
                raise ContractError(f"run {run.name!r} predicted other test-like clips than models/testlike.parquet "
                                    f"holds now; re-predict them with `ens oof {run.name} --split testlike`")
            _check_testlike(frame, clips, run.dir / TESTLIKE_OOF_FILE)
        inputs.testlike = _aligned(frames, clips["id"].astype(str), comp.labels)
        inputs.y_testlike = clips[comp.labels].to_numpy(dtype=np.float64)
        inputs.folds_testlike = clips["fold"].to_numpy()
        inputs.w_testlike, inputs.weighting = usable_weights(testlike_weights(clips))
        inputs.testlike_check = load_domain_check(ws)
    if meta:
        inputs.meta = gather_meta(ws, comp, list(meta), folds, clips if inputs.testlike is not None else None)
    return inputs


def _meta_part(feature_set: FeatureSet, split: str, ids: pd.Series, reference: str) -> np.ndarray:
    frame = feature_set.frame(split)
    check_same_ids(frame["id"].astype(str), ids, feature_set.dir / f"{split}.parquet", reference)
    return frame.set_index(frame["id"].astype(str)).loc[ids, feature_set.columns].to_numpy(dtype=np.float64)


def gather_meta(ws: Workspace, comp: Competition, names: list[str], folds: pd.DataFrame,
                clips: pd.DataFrame | None) -> MetaFeatures:
    """The named feature sets' columns for OOF, test and (with `clips`) test-like rows, aligned like the runs.

    A set must have been made on the current data, folds and test-like clips, like every run.
    """
    current = {"data_fingerprint": comp.fingerprint(), "folds_fingerprint": folds_fingerprint(folds)}
    if clips is not None:
        current["testlike_fingerprint"] = testlike_fingerprint(clips)
    parts: dict[str, list[np.ndarray]] = {"train": [], "test": [], "testlike": []}
    columns, sources = [], []
    for name in dict.fromkeys(names):
        fs = load_feature_set(ws, name)
        stale = [k for k, v in current.items() if fs.manifest.fingerprints[k] != v]
        if stale:
            remake = f"ens features {fs.manifest.kind or 'vad'} --name {name} --force"
            raise ContractError(f"feature set {name!r} was made for other {stale[0].split('_')[0]} than the workspace "
                                f"holds now; make it again with `{remake}`")
        parts["train"].append(_meta_part(fs, "train", folds["id"].astype(str), "models/folds.parquet"))
        parts["test"].append(_meta_part(fs, "test", comp.test_ids.astype(str), "test.csv"))
        if clips is not None:
            parts["testlike"].append(_meta_part(fs, "testlike", clips["id"].astype(str), "models/testlike.parquet"))
        columns += [f"{name}:{c}" for c in fs.columns]
        sources.append({"name": name, "kind": fs.manifest.kind, "columns": fs.columns,
                        "manifest_sha256": file_sha256(fs.dir / FEATURES_MANIFEST_FILE),
                        "model_sha256": None if fs.manifest.model is None else fs.manifest.model.sha256})
    return MetaFeatures(columns, np.hstack(parts["train"]), np.hstack(parts["test"]),
                        np.hstack(parts["testlike"]) if clips is not None else None, sources)


def usable_weights(w: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Density-ratio weights, or None where they are all equal or concentrated on a few rows (an
    effective sample under MIN_WEIGHT_ESS of the rows makes every weighted score noise)."""
    if np.allclose(w, w[0]):
        return None, "none: the test-like set has no density-ratio weights"
    share = float(w.sum() ** 2 / (w**2).sum()) / len(w)
    if share < MIN_WEIGHT_ESS:
        return None, f"none: the weights' effective sample is {share:.0%} of the rows (< {MIN_WEIGHT_ESS:.0%})"
    return w, f"density ratio (effective sample {share:.0%} of the rows)"
