"""One inference path for torch and ONNX Runtime: fixed-length windows, batched, pooled per clip.

Every clip is cut into `n`-sample windows (a short clip is one window, zero-padded at the end, as
training pads); windows are predicted in batches of equal length and each clip's probability is
the mean of its windows' logits (multiclass: the softmax of the mean of its windows' log-probabilities,
so rows sum to 1). Clips are streamed, so a 50k-clip test set never sits in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

import pandas as pd

from ensemble.artifacts.runs import PREDICTION_SPLITS
from ensemble.audio.clip import windows
from ensemble.probability import WINDOW_EPS
from ensemble.progress import Progress, emit, tagged
from ensemble.task import MULTILABEL, Task

if TYPE_CHECKING:
    from ensemble.artifacts.competition import Competition

BatchPredict = Callable[[np.ndarray], np.ndarray]  # (batch, n) waves -> (batch, labels) probabilities
HOP_FRACTION = 0.5  # windows overlap by half


def predict_clips(clips: Iterable[np.ndarray], n_clips: int, n: int, hop: int, predict: BatchPredict,
                  batch_size: int, progress: Progress | None = None, task: Task = MULTILABEL) -> np.ndarray:
    """Probabilities `(n_clips, labels)` for a stream of waves, windows pooled by the mean of the task's link
    (mean logit; multiclass: mean log-probability)."""
    pending: list[np.ndarray] = []
    owners: list[int] = []
    sums: dict[int, np.ndarray] = {}
    counts = np.zeros(n_clips, dtype=np.int64)

    def flush() -> None:
        probs = predict(np.stack(pending))
        for owner, z in zip(owners, task.link(np.asarray(probs, dtype=np.float64), WINDOW_EPS)):
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
    return task.inverse_link(np.stack([sums[i] / counts[i] for i in range(n_clips)]))


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


@dataclass
class Split:
    """One split's clips for one fold model: their ids, a stream of their waves, and how many."""

    ids: Sequence[str]
    waves: Iterable[np.ndarray]
    count: int


def prediction_frame(ids, fold: int, probs: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """The Parquet contract's rows for one fold: `id`, `fold`, one probability column per label."""
    frame = pd.DataFrame({"id": list(ids), "fold": np.full(len(ids), fold, dtype=np.int64)})
    for j, label in enumerate(labels):
        frame[label] = probs[:, j].astype(np.float64)
    return frame


def predict_split(predict: BatchPredict, waves: Iterable[np.ndarray], count: int, sr: int, max_seconds: float,
                  batch_size: int, progress: Progress | None = None, task: Task = MULTILABEL) -> np.ndarray:
    """Probabilities `(count, labels)` of one fold model: `max_seconds` windows overlapping by half, pooled
    by mean logit (the task's link). `ens finetune` (torch) and `ens oof` (ONNX Runtime) both predict through here."""
    n = int(round(max_seconds * sr))
    return predict_clips(waves, count, n, max(1, int(n * HOP_FRACTION)), predict, batch_size, progress, task)


def predict_fold_splits(predict: BatchPredict, splits: dict[str, Split], fold: int, comp: Competition, sr: int,
                        max_seconds: float, batch_size: int,
                        progress: Progress | None = None) -> dict[str, pd.DataFrame]:
    """Each split's prediction frame (`comp`'s labels, pooled in its task's link) from fold `fold`'s model,
    in the order given."""
    return {name: prediction_frame(s.ids, fold, predict_split(predict, s.waves, s.count, sr, max_seconds, batch_size,
                                                               tagged(progress, stage=f"predict {name}", fold=fold),
                                                               comp.task),
                                   comp.labels)
            for name, s in splits.items()}


@dataclass(frozen=True)
class WaveSources:
    """Where a fold model's clips are decoded from, at `sr` Hz: `load_row(id)` gives a train row (the
    held-out rows, and the voices of test-like clips), `test_store` the test clips in `comp.test_ids`
    order (a `WaveStore` kept across folds, so each clip is decoded once per run; None: one is opened),
    `load_background(source)` a real clip that test-like recipes use as background."""

    sr: int
    load_row: Callable[[str], np.ndarray]
    test_store: Any = None
    load_background: Callable[[str], np.ndarray] | None = None


def fold_splits(comp: Competition, folds: pd.DataFrame, fold: int, waves: WaveSources, testlike: pd.DataFrame | None,
                which: Sequence[str] = PREDICTION_SPLITS) -> dict[str, Split]:
    """The clips fold `fold`'s model predicts: its held-out train rows (OOF), the test set, and its own
    test-like clips (rendered from held-out rows only, over real backgrounds)."""
    from ensemble.audio.testlike_render import render_testlike_waves

    out: dict[str, Split] = {}
    load_row, sr = waves.load_row, waves.sr
    if "train" in which:
        held = folds.loc[folds["fold"] == fold, "id"].tolist()
        out["train"] = Split(held, (load_row(i) for i in held), len(held))
    if "test" in which:
        store = waves.test_store if waves.test_store is not None else test_wave_store(comp, sr, cache=False)
        out["test"] = Split(comp.test_ids, (store[i] for i in range(len(store))), len(comp.test_ids))
    if "testlike" in which:
        own = testlike[testlike["fold"] == fold]
        out["testlike"] = Split(own["id"], render_testlike_waves(own["recipe"], load_row, sr, waves.load_background),
                                len(own))
    return out


def test_wave_store(comp, sr: int, decoded=None, cache: bool = True):
    """A `WaveStore` over the test clips in `comp.test_ids` order, at `sr` Hz (see `WaveSources`)."""
    from ensemble.audio.load import WaveStore

    paths = comp.test.set_index(comp.test["id"].astype(str))["path"]
    return WaveStore([comp.audio_path(paths[i]) for i in comp.test_ids], sr, cache=cache, decoded=decoded)
