"""Run an exported submission with ONNX Runtime alone (no torch): `ensemble.load(path).predict(waves)`.

Clips are grouped by exact length and sent in batches of up to `batch_size` clips, because the graph
windows whole rows (padding a batch to a common length would change a clip's windows and its
prediction). Waves must be mono float at the model's `sampling_rate`; `load_audio` decodes and
resamples files as `ens finetune` does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble.errors import ConfigError, ContractError, DataError
from ensemble.export.graph import INPUT, OUTPUT
from ensemble.progress import Progress, emit



class ExportedEnsemble:
    """An `ens export` file in an ONNX Runtime session: `predict(waves) -> (clips, labels)` float64."""

    def __init__(self, path: Path | str, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: model file not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
            raise DataError(f"{self.path}: not a loadable ONNX model ({str(err).splitlines()[0][:200]})") from err
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if "ens_export_format" not in self.metadata:
            raise ContractError(f"{self.path}: not made by `ens export` (no ens_export_format in its metadata)")
        self.labels: list[str] = json.loads(self.metadata["labels"])
        self.sampling_rate = int(self.metadata["sampling_rate"])
        self.recipe = json.loads(self.metadata.get("recipe", "{}"))

    def load_audio(self, paths: Sequence[Path | str]) -> list[np.ndarray]:
        """Decode files to mono float32 at the model's rate (DataError names a bad file)."""
        from ensemble.audio.load import load_audio

        return [load_audio(Path(p), self.sampling_rate) for p in paths]

    def predict(self, waves: Sequence[np.ndarray], batch_size: int = 8, progress: Progress | None = None) -> np.ndarray:
        """Calibrated probabilities `(len(waves), labels)` for mono waves at `sampling_rate`."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be ≥ 1; got {batch_size}")
        clips = []
        for i, w in enumerate(waves):
            w = np.asarray(w, dtype=np.float32)
            if w.ndim != 1 or w.size == 0:
                raise DataError(f"wave {i} has shape {w.shape}; expected a non-empty mono (samples,) array")
            if not np.isfinite(w).all():
                raise DataError(f"wave {i} holds NaN or infinite samples")
            clips.append(w)
        return predict_grouped(self.session, clips, len(self.labels), batch_size, progress)


def predict_grouped(session, clips: list[np.ndarray], n_labels: int, batch_size: int = 8,
                    progress: Progress | None = None) -> np.ndarray:
    """Run a `waves → probabilities` session on clips grouped by exact length, in input order."""
    out = np.empty((len(clips), n_labels), dtype=np.float64)
    order = sorted(range(len(clips)), key=lambda i: clips[i].size)
    done, i = 0, 0
    while i < len(order):
        size = clips[order[i]].size
        group = [order[i]]
        while i + len(group) < len(order) and len(group) < batch_size and clips[order[i + len(group)]].size == size:
            group.append(order[i + len(group)])
        out[group] = session.run([OUTPUT], {INPUT: np.stack([clips[k] for k in group])})[0]
        i += len(group)
        done += len(group)
        emit(progress, "predict", done=done, total=len(clips))
    return out


def load(path: Path | str, threads: int | None = None) -> ExportedEnsemble:
    """An exported submission ready to `predict(waves)`."""
    return ExportedEnsemble(path, threads)
