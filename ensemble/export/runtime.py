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
        self.labels, self.sampling_rate, self.recipe = _checked_metadata(self.path, self.metadata)
        _check_signature(self.path, self.session, len(self.labels))

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
        try:
            return predict_grouped(self.session, clips, len(self.labels), batch_size, progress)
        except ContractError as err:
            raise ContractError(f"{self.path}: {err}") from None


def _checked_metadata(path: Path, metadata: dict[str, str]) -> tuple[list[str], int, dict]:
    """Labels, sampling rate and recipe from an export's metadata, which must be what `ens export` wrote:
    its digest matches (a relabelled column would otherwise be served under the wrong name) and the labels
    agree with the recipe's."""
    from ensemble.export.graph import METADATA_DIGEST, metadata_digest

    recorded = metadata.get(METADATA_DIGEST)
    if recorded is not None and recorded != metadata_digest(metadata):
        raise ContractError(f"{path}: its metadata differs from what `ens export` wrote ({METADATA_DIGEST} does not "
                            "match; labels or recipe edited?); export the submission again")
    try:
        labels = json.loads(metadata["labels"])
        rate = int(metadata["sampling_rate"])
        recipe = json.loads(metadata.get("recipe", "{}"))
    except (KeyError, ValueError) as err:
        raise ContractError(f"{path}: export metadata unreadable ({type(err).__name__}: {err})") from None
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise ContractError(f"{path}: export metadata 'labels' is {labels!r}; expected a list of label names")
    if not isinstance(recipe, dict):
        raise ContractError(f"{path}: export metadata 'recipe' is not an object")
    if isinstance(recipe.get("labels"), list) and recipe["labels"] != labels:
        raise ContractError(f"{path}: export metadata labels {labels} differ from its recipe's {recipe['labels']}")
    if rate <= 0:
        raise ContractError(f"{path}: export metadata sampling_rate is {rate}; expected a positive rate")
    return labels, rate, recipe


def _check_signature(path: Path, session, n_labels: int) -> None:
    """The graph takes `waves` (clips, samples) and gives `probabilities` (clips, labels), as exports do."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if INPUT not in inputs or len(inputs[INPUT].shape) != 2 or OUTPUT not in outputs:
        raise ContractError(f"{path}: graph inputs {list(inputs)} / outputs {list(outputs)}; an export takes "
                            f"{INPUT!r} (clips, samples) and gives {OUTPUT!r} (clips, labels)")
    shape = outputs[OUTPUT].shape
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != n_labels):
        raise ContractError(f"{path}: output {OUTPUT!r} has shape {shape}; its metadata names {n_labels} labels")


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
        try:
            got = session.run([OUTPUT], {INPUT: np.stack([clips[k] for k in group])})[0]
        except Exception as err:  # onnxruntime raises its own types (a crafted graph's bad shapes, types)
            raise ContractError(f"the graph failed on {len(group)} clip(s) of {size} samples "
                                f"({str(err).splitlines()[0][:200]})") from None
        if np.shape(got) != (len(group), n_labels):
            raise ContractError(f"output {OUTPUT!r} has shape {np.shape(got)}; expected ({len(group)}, {n_labels}): "
                                "one row per clip, one column per label")
        out[group] = got
        i += len(group)
        done += len(group)
        emit(progress, "predict", done=done, total=len(clips))
    return out


def load(path: Path | str, threads: int | None = None) -> ExportedEnsemble:
    """An exported submission ready to `predict(waves)`."""
    return ExportedEnsemble(path, threads)
