"""`ens testlike check` and `ens testlike export`: how test-like the test-like set is, and its clips as
WAV files for models made outside ens."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.artifacts.competition import Competition
from ensemble.artifacts.runs import load_runs
from ensemble.artifacts.set_records import TestlikeMeta
from ensemble.artifacts.testlike_set import (CHECK_CLIPS, TESTLIKE_FILE, background_loader, ensure_testlike,
                                             held_out_real, judged_real, load_testlike, load_testlike_meta, real_clips,
                                             train_loader, write_testlike_meta)
from ensemble.artifacts.workspace import Workspace
from ensemble.errors import DataError


def check_testlike(ws: Workspace, comp: Competition, n_clips: int = CHECK_CLIPS, seed: int = 0):
    """Domain check of the workspace's test-like set against the real clips; recorded in testlike.json.

    Builds the shared folds and test-like set first when the workspace has none (as `ens finetune`
    would). Returns the `DomainCheck`.
    """
    comp.task.splits(("testlike",), "ens testlike check")  # refused where the task has no test-like set
    from ensemble.audio.load import load_audio
    from ensemble.audio.stats import ANALYSIS_SR, stats_matrix
    from ensemble.audio.testlike_render import rendered_stats
    from ensemble.audio.domain import domain_check
    from ensemble.errors import ConfigError
    from ensemble.artifacts.folds import ensure_folds

    if not isinstance(n_clips, int) or n_clips < 10:
        raise ConfigError(f"--clips {n_clips!r} is invalid; accepted: an integer ≥ 10")
    paths, _ = real_clips(comp)
    folds = ensure_folds(ws, comp, None, seed)
    clips = ensure_testlike(ws, comp, folds, seed=seed)
    meta = load_testlike_meta(ws) or TestlikeMeta()
    rng = np.random.default_rng(seed)
    rows = clips.iloc[np.sort(rng.permutation(len(clips))[:n_clips])]
    load = train_loader(comp, folds, ANALYSIS_SR)
    sim = rendered_stats(rows["recipe"], load, background_loader(comp, ANALYSIS_SR))
    # real clips the generator's fit never saw, when enough are left: a check the fit cannot flatter
    held = judged_real(held_out_real(paths, int(meta.seed or 0)), n_clips, seed) if meta.fitted else []
    judged = held or [paths[i] for i in np.sort(rng.permutation(len(paths))[:n_clips])]
    check = replace(domain_check(sim, stats_matrix(load_audio(p, ANALYSIS_SR) for p in judged), seed=seed),
                    extra={"held_out": bool(held)})
    meta.domain_check = check.to_dict()
    write_testlike_meta(ws, meta)
    return check


def check_predictions(ws: Workspace, comp: Competition, run_names: list[str], seed: int = 0):
    """Domain check on the runs' predictions: can a classifier tell the logits (and their sizes) the fold
    models give the test-like clips from those they give the real test clips? Each test clip is taken from one fold model
    drawn at random (seeded), as each test-like clip comes from one. Recorded in testlike.json."""
    from ensemble.audio.domain import domain_check
    from ensemble.errors import ConfigError
    from ensemble.probability import logit
    from ensemble.stack.inputs import gather

    runs = load_runs(ws, run_names)
    inputs = gather(ws, comp, runs)
    if inputs.testlike is None:
        lacking = ", ".join(repr(r.name) for r in runs if not r.has_testlike_oof) or "every run"
        raise ConfigError(f"the prediction check needs test-like predictions for every run; runs without: {lacking}")
    rng = np.random.default_rng(seed)
    real = np.empty(inputs.test.shape)
    for r, run in enumerate(runs):
        per_fold = {f: part.set_index("id").loc[comp.test_ids, comp.labels].to_numpy(dtype=np.float64)
                    for f, part in run.test().groupby("fold", sort=True)}
        folds = np.array(sorted(per_fold))
        pick = folds[rng.integers(0, len(folds), len(comp.test_ids))]
        real[:, r, :] = np.stack([per_fold[f][i] for i, f in enumerate(pick)])
    names = [f"{run.name}:{label}" for run in runs for label in comp.labels]
    names += [f"|{name}|" for name in names]  # confidence: a linear classifier cannot see spread in the logit

    def features(P: np.ndarray) -> np.ndarray:
        z = logit(P).reshape(len(P), -1)
        return np.hstack([z, np.abs(z)])

    check = domain_check(features(inputs.testlike), features(real), seed=seed, names=names)
    meta = load_testlike_meta(ws) or TestlikeMeta()
    meta.prediction_check = {**check.to_dict(), "runs": list(run_names)}
    write_testlike_meta(ws, meta)
    return check


def export_testlike(ws: Workspace, comp: Competition, out: Path, sr: int = 16000, force: bool = False) -> Path:
    """Render the workspace's test-like clips as float WAV files `<id>.wav` plus `ids.csv` (id, path),
    so models made outside ens can predict them (`ens import --testlike`). Built aside, moved at the end."""
    import shutil

    import soundfile as sf

    from ensemble.artifacts.io import recover_dir, replace_dir, staged_dir
    from ensemble.artifacts.locking import lock_beside, name_lock
    from ensemble.artifacts.owned import check_replaceable, is_complete, mark
    from ensemble.audio.testlike_render import render_testlike
    from ensemble.errors import ConfigError
    from ensemble.artifacts.folds import load_folds
    from ensemble.artifacts.workspace import check_name

    if not isinstance(sr, int) or not 1000 <= sr <= 384_000:
        raise ConfigError(f"--rate {sr!r} is invalid; accepted: an integer sample rate in 1000–384000 Hz")
    out = Path(out)
    check_replaceable(out, force, "folder")
    clips = load_testlike(ws)
    if clips is None:
        raise DataError(f"{ws.models_dir / TESTLIKE_FILE}: no test-like clips in this workspace yet; "
                        "the first `ens finetune` (or `ens testlike check`) makes them")
    for clip_id in clips["id"].astype(str):
        check_name(clip_id, "test-like clip")
    load, load_background = train_loader(comp, load_folds(ws), sr), background_loader(comp, sr)
    out.parent.mkdir(parents=True, exist_ok=True)
    with name_lock(lock_beside(out), f"folder {out}"):
        recover_dir(out, is_complete)
        check_replaceable(out, force, "folder")  # again, under the lock
        staging = staged_dir(out)
        try:
            for clip_id, recipe in zip(clips["id"].astype(str), clips["recipe"]):
                wave = render_testlike(recipe, load, sr, load_background)
                sf.write(staging / f"{clip_id}.wav", wave, sr, subtype="FLOAT")
            index = pd.DataFrame({"id": clips["id"].astype(str), "path": [f"{i}.wav" for i in clips["id"].astype(str)]})
            index.to_csv(staging / "ids.csv", index=False)
            mark(staging, "testlike-export")
            replace_dir(staging, out)  # the old export stays whole until the new one is in place
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out
