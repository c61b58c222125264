"""One fold of `ens finetune`: train, pick the best epoch, predict, export ONNX, check parity.

Leakage rules enforced here: the sampler only sees the fold's training rows (mixing included), the
OOF rows and test-like clips predicted are exactly those held out by this fold.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ensemble.progress import tagged
from ensemble.artifacts.competition import Competition
from ensemble.artifacts.io import write_json
from ensemble.metrics.dacon import MetricError, competition_score
from ensemble.artifacts.runs import OOF_FILE, TEST_FILE, TESTLIKE_FILE, write_run_file
from ensemble.artifacts.workspace import Workspace

PARITY_SECONDS = 3.3  # parity is measured on clips of another length than training used
HOP_FRACTION = 0.5


@dataclass
class FoldContext:
    ws: Workspace
    comp: Competition
    folds: pd.DataFrame
    testlike: pd.DataFrame
    opts: Any  # ensemble.commands.finetune.FinetuneOptions (that module imports this one)
    run_dir: Path
    emit: Callable[[dict], None]


def prediction_frame(ids, fold: int, probs: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """The Parquet contract's rows for one fold: `id`, `fold`, one probability column per label."""
    frame = pd.DataFrame({"id": list(ids), "fold": np.full(len(ids), fold, dtype=np.int64)})
    for j, label in enumerate(labels):
        frame[label] = probs[:, j].astype(np.float64)
    return frame


MIN_UPDATES_PER_EPOCH = 8
SCRATCH_LR = 1e-3  # named configs start from random weights: 3e-5 is a fine-tuning rate


def default_lr(model: str) -> float:
    """3e-5 fine-tunes a pretrained checkpoint; a named config starts from random weights."""
    from ensemble.backbones.families import NAMED_CONFIGS

    return SCRATCH_LR if model in NAMED_CONFIGS else 3e-5


def _train_config(ctx: FoldContext, fold: int, batches_per_epoch: int):
    """Effective batch 128 by accumulation, fewer where an epoch would give under 8 optimizer updates."""
    from ensemble.backbones.train import TrainConfig

    o = ctx.opts
    accum = o.grad_accum or max(1, min(-(-128 // o.batch_size), batches_per_epoch // MIN_UPDATES_PER_EPOCH))
    from ensemble.backbones.families import NAMED_CONFIGS

    freeze = o.freeze_feature_encoder if o.freeze_feature_encoder is not None else o.model not in NAMED_CONFIGS
    return TrainConfig(lr=o.lr or default_lr(o.model), epochs=o.epochs, batch_size=o.batch_size, grad_accum=accum,
                       freeze_feature_encoder=freeze, device=o.device, seed=o.seed + fold)


def _relay(ctx: FoldContext, fold: int, rows_per_epoch: int) -> Callable[[dict], None]:
    """fit_fold's events → progress events: a bar per epoch, a line per finished epoch."""
    def relay(event: dict) -> None:
        kind = event.get("stage")
        if kind == "step":
            ctx.emit({"stage": f"train epoch {event['epoch']}", "fold": fold, "done": event["samples"],
                      "total": rows_per_epoch})
        elif kind == "epoch":
            ctx.emit({"stage": "epoch", "fold": fold, "epoch": event["epoch"], "train_loss": event["train_loss"],
                      "val_score": event["val_score"], "best_epoch": event["best_epoch"]})
        else:
            ctx.emit({**event, "stage": kind or "train", "fold": fold})

    return relay


def run_fold(ctx: FoldContext, fold: int) -> dict:
    """Train and evaluate fold `fold`; writes `fold<k>/` (predictions, model.onnx, fold.json)."""
    from ensemble.audio.augment import AugmentConfig, ExampleSampler
    from ensemble.audio.load import WaveStore
    from ensemble.audio.nuisance import stable_half
    from ensemble.audio.testlike_render import render_testlike
    from ensemble.backbones.model import build_classifier
    from ensemble.backbones.train import fit_fold, resolve_device
    from ensemble.backbones.predict import predict_clips, torch_predictor

    started = time.perf_counter()
    comp, opts, labels = ctx.comp, ctx.opts, ctx.comp.labels
    fold_dir = ctx.run_dir / f"fold{fold}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    classifier = build_classifier(opts.model, labels, seed=opts.seed + fold)
    sr = classifier.sampling_rate
    n = int(round(opts.max_seconds * sr))
    hop = max(1, int(n * HOP_FRACTION))
    paths = comp.train.set_index(comp.train["id"].astype(str))["path"]
    train_store = WaveStore([comp.audio_path(paths[i]) for i in ctx.folds["id"]], sr)
    unlabeled = [p for p in comp.unlabeled_paths() if stable_half(p) == 0]  # the other half: test-like backgrounds
    background = WaveStore(unlabeled, sr) if unlabeled else None
    in_fold = ctx.folds["fold"].to_numpy() == fold
    train_idx, held_idx = np.flatnonzero(~in_fold), np.flatnonzero(in_fold)
    targets = ctx.folds[labels].to_numpy(dtype=np.float32)
    augment = AugmentConfig.from_spec(opts.augment)
    sampler = ExampleSampler(train_store, train_idx, targets, n, augment, seed=opts.seed * 1000 + fold,
                             background=background)
    batch = max(1, opts.batch_size)
    config = _train_config(ctx, fold, sampler.n_batches(batch))
    device = resolve_device(config.device)

    def predict(waves_of, count: int, stage: str) -> np.ndarray:
        return predict_clips(waves_of, count, n, hop, torch_predictor(classifier, device), batch,
                             progress=tagged(ctx.emit, stage=f"{stage}_progress", fold=fold))

    def validate(model) -> float:
        probs = predict((train_store[i] for i in held_idx), len(held_idx), "validate")
        try:
            return competition_score(targets[held_idx], probs, labels).score
        except MetricError:
            return float(((probs - targets[held_idx]) ** 2).mean())

    def batches(epoch: int):
        for waves, y, _sources in sampler.epoch(epoch, batch):
            yield waves, y

    ctx.emit({"stage": "fold_start", "fold": fold, "train_rows": int(train_idx.size), "held_out": int(held_idx.size),
              "batches_per_epoch": sampler.n_batches(batch)})
    result = fit_fold(classifier, batches, validate, config, fold_dir / "checkpoint",
                      progress=_relay(ctx, fold, int(train_idx.size)), micro_batches_per_epoch=sampler.n_batches(batch))
    train_seconds = time.perf_counter() - started

    held_ids = ctx.folds["id"].to_numpy()[held_idx]
    oof = prediction_frame(held_ids, fold, predict((train_store[i] for i in held_idx), len(held_idx), "predict_oof"), labels)
    test_paths = comp.test.set_index(comp.test["id"].astype(str))["path"]
    test_store = WaveStore([comp.audio_path(test_paths[i]) for i in comp.test_ids], sr, cache=False)
    test = prediction_frame(comp.test_ids, fold, predict((test_store[i] for i in range(len(test_store))), len(test_store),
                                               "predict_test"), labels)
    own_clips = ctx.testlike[ctx.testlike["fold"] == fold]
    row_of = {rid: i for i, rid in enumerate(ctx.folds["id"])}
    renders = (render_testlike(r, lambda rid: train_store[row_of[rid]], sr) for r in own_clips["recipe"])
    testlike = prediction_frame(own_clips["id"], fold, predict(renders, len(own_clips), "predict_testlike"), labels)

    from ensemble.audio.clip import fit_length

    probe = [fit_length(train_store[i], int(PARITY_SECONDS * sr)) for i in held_idx[:4]]
    onnx_info = _export(ctx, classifier, fold_dir, fold, probe)
    hashes = {name: write_run_file(frame, fold_dir, name)
              for name, frame in ((OOF_FILE, oof), (TEST_FILE, test), (TESTLIKE_FILE, testlike))}
    info = {
        "fold": fold, "model": classifier.describe(), "train_rows": int(train_idx.size),
        "held_out_rows": int(held_idx.size), "testlike_clips": int(len(own_clips)),
        "best_epoch": result.best_epoch, "best_val_score": result.best_score, "history": result.history,
        "samples_per_second": result.samples_per_s, "device": result.device, "precision": result.precision,
        "train_config": config.as_dict(), "augment": augment.to_dict(),
        "onnx": onnx_info, "files": hashes,
        "seconds": {"train": round(train_seconds, 2), "total": round(time.perf_counter() - started, 2)},
    }
    try:
        info["cv"] = competition_score(targets[held_idx], oof[labels].to_numpy(), labels).as_dict()
    except MetricError:
        info["cv"] = None
    write_json(info, fold_dir / "fold.json")
    shutil.rmtree(fold_dir / "checkpoint", ignore_errors=True)
    ctx.emit({"stage": "fold_done", "fold": fold, "cv": info["cv"], "parity": onnx_info["parity_max_abs_diff"]})
    return info


def _export(ctx: FoldContext, classifier, fold_dir: Path, fold: int, probe: list[np.ndarray]) -> dict:
    """ONNX export with metadata, then parity against torch on clips of another length."""
    from ensemble.backbones.onnx_export import export_onnx, measure_parity
    from ensemble.artifacts.io import file_sha256

    path = fold_dir / "model.onnx"
    metadata = {"run_id": ctx.run_dir.name, "fold": str(fold), "max_seconds": str(ctx.opts.max_seconds)}
    export_onnx(classifier, path, metadata)
    parity = measure_parity(classifier, path, probe)
    return {"path": f"fold{fold}/model.onnx", "sha256": file_sha256(path), "parity_max_abs_diff": parity,
            "parity_clip_seconds": PARITY_SECONDS}
