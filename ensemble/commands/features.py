"""`ens features vad`: per-clip voice-activity meta-features for the stacker, from Silero VAD's ONNX weights.

Train clips (every row: nothing here is fitted, so each value is out-of-fold by construction), test
clips and the shared test-like clips (rendered as finetune renders them) go through the same
detector; the result is a feature set in `models/features/<name>/` (`ensemble.artifacts.features`).
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from ensemble.artifacts.audio_check import check_competition_audio
from ensemble.artifacts.competition import Competition
from ensemble.artifacts.features import FEATURES_MANIFEST_FILE, features_dir, write_feature_set
from ensemble.artifacts.folds import ensure_folds, folds_fingerprint
from ensemble.artifacts.io import file_sha256
from ensemble.artifacts.locking import exclusive
from ensemble.artifacts.provenance import machine, now_iso, package_versions
from ensemble.artifacts.set_records import FeatureManifest, FeatureModel
from ensemble.artifacts.testlike_set import background_loader, ensure_testlike, testlike_fingerprint, train_loader
from ensemble.artifacts.workspace import Workspace, check_overwrite
from ensemble.errors import ConfigError
from ensemble.progress import Progress, emit
from ensemble.stack.base import check_meta_task

FEATURE_KINDS = ("vad",)
BATCH = 256  # clips per detector pass: the recurrent model runs them side by side


def _features(waves: Iterable[np.ndarray], count: int, split: str, progress: Progress | None) -> np.ndarray:
    """`clip_features` over a stream of waves, `BATCH` clips at a time (a 50k-clip test never sits in memory)."""
    from ensemble.audio.vad import FEATURES, clip_features

    out, part = np.empty((count, len(FEATURES))), []
    done = 0
    for wave in waves:
        part.append(wave)
        if len(part) == BATCH:
            out[done : done + len(part)] = clip_features(part, BATCH)
            done += len(part)
            part = []
            emit(progress, f"vad {split}", done=done, total=count)
    if part:
        out[done : done + len(part)] = clip_features(part, BATCH)
        done += len(part)
    if done != count:
        raise ValueError(f"expected {count} clips, got {done}")
    emit(progress, f"vad {split}", done=done, total=count)
    return out


def _frame(ids, values: np.ndarray) -> pd.DataFrame:
    from ensemble.audio.vad import FEATURES

    return pd.concat([pd.DataFrame({"id": [str(i) for i in ids]}), pd.DataFrame(values, columns=list(FEATURES))],
                     axis=1)


def _splits(comp: Competition, folds: pd.DataFrame, clips: pd.DataFrame) -> dict[str, tuple[list, Callable]]:
    """Each split's ids and a stream of its 16-kHz waves."""
    from ensemble.audio.load import load_audio
    from ensemble.audio.testlike_render import render_testlike_waves
    from ensemble.audio.vad import SR

    load_row = train_loader(comp, folds, SR)
    paths = comp.test.set_index(comp.test["id"].astype(str))["path"]
    background = background_loader(comp, SR)
    train_ids = folds["id"].astype(str).tolist()
    return {
        "train": (train_ids, lambda: (load_row(i) for i in train_ids)),
        "test": (list(comp.test_ids), lambda: (load_audio(comp.audio_path(paths[i]), SR) for i in comp.test_ids)),
        "testlike": (clips["id"].astype(str).tolist(),
                     lambda: render_testlike_waves(clips["recipe"], load_row, SR, background)),
    }


def make_features(ws: Workspace, comp: Competition, kind: str = "vad", name: str | None = None, seed: int = 0,
                  force: bool = False, progress: Progress | None = None, n_folds: int | None = None) -> FeatureManifest:
    """Compute a feature set for train, test and test-like clips; returns its manifest.

    The shared folds and test-like set are made first when the workspace has none (as `ens finetune`
    makes them; `n_folds` as `ens finetune --folds`), so the rows line up with every run's.
    """
    from ensemble.audio.vad import FEATURES, SPEECH_PROB, VAD_FEATURES_VERSION, model_path

    if kind not in FEATURE_KINDS:
        raise ConfigError(f"unknown feature kind {kind!r}; choose one of: {', '.join(FEATURE_KINDS)}")
    check_meta_task(comp.task)  # a set no stack of this task could take is not worth its test-like set
    name = name or kind
    folder = features_dir(ws, name)  # a bad name is refused before any compute
    check_overwrite(folder / FEATURES_MANIFEST_FILE, force, "feature set")
    weights = model_path()
    check_competition_audio(ws, comp, progress=progress)
    with exclusive(ws.models_dir / ".lock"):
        folds = ensure_folds(ws, comp, n_folds, seed)
        clips = ensure_testlike(ws, comp, folds, seed=seed)
    started = time.perf_counter()
    frames = {}
    for split, (ids, waves) in _splits(comp, folds, clips).items():
        frames[split] = _frame(ids, _features(waves(), len(ids), split, progress))
    manifest = FeatureManifest(
        kind=kind, name=name, columns=list(FEATURES), features_version=VAD_FEATURES_VERSION,
        speech_prob=SPEECH_PROB, labels_used=False,
        model=FeatureModel(file=weights.name, sha256=file_sha256(weights), package="silero-vad"),
        data_fingerprint=comp.fingerprint(), folds_fingerprint=folds_fingerprint(folds),
        testlike_fingerprint=testlike_fingerprint(clips), rows={s: len(f) for s, f in frames.items()},
        versions={**package_versions(), "silero-vad": _version("silero-vad")}, machine=machine(),
        created=now_iso(), seconds=round(time.perf_counter() - started, 2),
    )
    write_feature_set(ws, name, frames, manifest)
    return manifest


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
