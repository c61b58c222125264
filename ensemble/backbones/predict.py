"""One inference path for torch and ONNX Runtime: fixed-length windows, batched, pooled per clip.

Every clip is cut into `n`-sample windows (a short clip is one window, zero-padded at the end, as
training pads); windows are predicted in batches of equal length and each clip's probability is
the mean of its windows' logits. Clips are streamed, so a 50k-clip test set never sits in memory.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from ensemble.audio.clip import windows
from ensemble.probability import logit, sigmoid
from ensemble.progress import Progress, emit

BatchPredict = Callable[[np.ndarray], np.ndarray]  # (batch, n) waves -> (batch, labels) probabilities
_EPS = 1e-7


def predict_clips(clips: Iterable[np.ndarray], n_clips: int, n: int, hop: int, predict: BatchPredict,
                  batch_size: int, progress: Progress | None = None) -> np.ndarray:
    """Probabilities `(n_clips, labels)` for a stream of waves, windows pooled by mean logit."""
    pending: list[np.ndarray] = []
    owners: list[int] = []
    sums: dict[int, np.ndarray] = {}
    counts = np.zeros(n_clips, dtype=np.int64)

    def flush() -> None:
        probs = predict(np.stack(pending))
        for owner, z in zip(owners, logit(probs, _EPS)):
            sums[owner] = sums.get(owner, 0) + z
        pending.clear()
        owners.clear()

    done = 0
    for i, wave in enumerate(clips):
        for window in windows(wave, n, hop):
            pending.append(window)
            owners.append(i)
            counts[i] += 1
            if len(pending) == batch_size:
                flush()
        done = i + 1
        emit(progress, "predict", done=done, total=n_clips)
    if pending:
        flush()
    if done != n_clips:
        raise ValueError(f"expected {n_clips} clips, got {done}")
    z = np.stack([sums[i] / counts[i] for i in range(n_clips)])
    return sigmoid(z)


def torch_predictor(classifier, device: str) -> BatchPredict:
    """Batch predictor running the classifier's torch module (eval mode, no grad)."""
    from ensemble.backbones.train import predict_proba_torch

    def predict(batch: np.ndarray) -> np.ndarray:
        return predict_proba_torch(classifier, list(batch), batch_size=len(batch), device=device)

    return predict


def onnx_predictor(model, preprocess: Callable[[list[np.ndarray]], dict]) -> BatchPredict:
    """Batch predictor running an ONNX Runtime session on the same preprocessing as training."""

    def predict(batch: np.ndarray) -> np.ndarray:
        return model.predict_proba(preprocess(list(batch)))

    return predict
