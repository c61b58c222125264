"""`ens predict`: an exported submission (`ens export`) on new audio, in ONNX Runtime alone (no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ensemble.artifacts.io import write_csv
from ensemble.errors import ConfigError, DataError, ExistsError
from ensemble.export.runtime import ExportedEnsemble, load
from ensemble.progress import Progress, emit

DATA_SPLITS = ("test", "train")  # the splits of a competition folder (--data) that `ens predict` reads


def predict_files(model: ExportedEnsemble, ids: Sequence[str], paths: Sequence[Path], batch_size: int = 8,
                  progress: Progress | None = None) -> pd.DataFrame:
    """A frame `id` + label columns for audio files, decoded in chunks so memory stays bounded."""
    parts, chunk = [], max(batch_size * 16, 64)
    for start in range(0, len(paths), chunk):
        waves = model.load_audio(paths[start:start + chunk])
        parts.append(model.predict(waves, batch_size))
        emit(progress, "predict", done=min(start + chunk, len(paths)), total=len(paths))
    probs = np.concatenate(parts) if parts else np.empty((0, len(model.labels)))
    frame = pd.DataFrame({"id": list(ids)})
    for j, label in enumerate(model.labels):
        frame[label] = probs[:, j]
    return frame


def audio_to_predict(model: ExportedEnsemble, model_path: Path, audio: Sequence[Path] | None, data: Path | None,
                     split: str) -> tuple[list[str], list[Path]]:
    """Ids and paths of the clips to predict: files given one by one, or a competition folder's split."""
    if bool(audio) == (data is not None):
        raise ConfigError("give audio files or --data DIR (not both, not neither)")
    if data is None:
        paths = list(audio)
        missing = [str(p) for p in paths if not Path(p).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(f"audio file {missing[0]} not found{more}")
        return [str(p) for p in paths], paths
    if split not in DATA_SPLITS:
        raise ConfigError(f"--split must be {' or '.join(DATA_SPLITS)}; got {split!r}")
    from ensemble.artifacts.competition import Competition

    comp = Competition.load(data)
    if comp.labels != model.labels:
        raise DataError(f"{model_path} predicts {model.labels}; {data / 'sample_submission.csv'} has {comp.labels}")
    frame = comp.test.set_index(comp.test["id"]).loc[comp.test_ids] if split == "test" else comp.train
    return frame["id"].astype(str).tolist(), [comp.audio_path(p) for p in frame["path"]]


def predict_command(model_path: Path, audio: Sequence[Path] | None, data: Path | None, split: str, out: Path,
                    batch_size: int = 8, force: bool = False, progress: Progress | None = None) -> pd.DataFrame:
    """Validate everything, predict, then write `out` (id + label columns) atomically."""
    if out.exists() and not force:
        raise ExistsError(f"{out} exists; pass --force to overwrite it")
    model = load(model_path)
    ids, paths = audio_to_predict(model, model_path, audio, data, split)
    frame = predict_files(model, ids, paths, batch_size, progress)
    write_csv(frame, out)
    return frame
