"""`ens finetune`: k-fold fine-tuning of one backbone into a complete run.

Per fold (`run_fold`): train on the other folds' rows with augmentation, keep the best epoch by the
competition score on the fold's rows, predict them (OOF), the test set and the fold's test-like clips,
export ONNX and measure its parity. Leakage rules enforced here: the sampler only sees the fold's
training rows (mixing included), the OOF rows and test-like clips predicted are exactly those held out
by this fold. Finished folds are kept in `fold<k>/`, so an
interrupted run resumes; `--fold` runs a subset (folds on different machines, merged by copying
`fold<k>/` folders into one run). Once every fold is done the run's Parquet files and `run.json`
are assembled.

A multiclass task (`Competition.task`) trains a softmax head with cross-entropy (classical families: one
multiclass estimator), keeps one class per training example (no mixing, no voiceless examples), picks
the best epoch by the workspace's metric (default log loss) and has no test-like set: its clips mix
voices, which would give a clip two classes or none.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from ensemble.artifacts.audio_check import check_competition_audio
from ensemble.artifacts.competition import Competition
from ensemble.errors import ConfigError, ContractError, ExistsError
from ensemble.artifacts.folds import ensure_folds, folds_fingerprint
from ensemble.artifacts.io import aside_path, fsync_dir, read_json, recover_dir, sweep_tmp
from ensemble.artifacts.locking import exclusive, run_lock
from ensemble.artifacts.provenance import machine, now_iso, package_versions
from ensemble.artifacts.records import CVScores, FoldRecord, OnnxFile, RunManifest
from ensemble.artifacts.runs import RUN_MANIFEST_FILE, OOF_FILE, OPTIONS_FILE, TEST_FILE, TESTLIKE_OOF_FILE, Run, check_replaceable_run, is_run, load_run, write_manifest, write_run_file
from ensemble.artifacts.io import file_sha256, write_json
from ensemble.metrics.dacon import MetricError
from ensemble.metrics.frames import cv_metrics, score_frame
from ensemble.metrics.scorer import Scorer
from ensemble.progress import Progress, tagged
from ensemble.artifacts.testlike_set import background_loader, ensure_testlike, load_domain_check, testlike_fingerprint
from ensemble.artifacts.workspace import Workspace
from ensemble.backbones.options import KNOBS, FinetuneOptions  # noqa: F401 (the options record, imported from here too)

PARITY_SECONDS = 3.3  # parity is measured on clips of another length than training used
PARITY_BAR = 1e-4  # max |p_onnx − p_torch| a neural (or linear) fold's graph may show; trees: `Estimator.parity_bar`
MIN_UPDATES_PER_EPOCH = 8
SCRATCH_LR = 1e-3  # named configs start from random weights: 3e-5 is a fine-tuning rate


LEGACY_KEYS = {"freeze_feature_encoder": None}  # options.json keys of older versions, at their default


def _check_options(run_dir: Path, opts: FinetuneOptions, force: bool) -> Path | None:
    """A new run, a resumable one with the same options, or an overwrite with --force: then the old run is
    moved aside (`.NAME.old-PID`) and its path returned, kept until the new one is in (`keeping_old`)."""
    saved = run_dir / OPTIONS_FILE
    if (run_dir / RUN_MANIFEST_FILE).is_file() and not force and not opts.only_folds:
        raise ExistsError(f"run {run_dir} exists; pass --force to overwrite it, or another --name")
    aside = None
    if force and (run_dir.exists() or run_dir.is_symlink()):
        check_replaceable_run(run_dir, force)  # --force replaces a run ens made, never a foreign folder
        aside = aside_path(run_dir)
        os.rename(run_dir, aside)
        fsync_dir(run_dir.parent)
    if saved.is_file():
        before = {k: v for k, v in read_json(saved).items() if not (k in LEGACY_KEYS and v == LEGACY_KEYS[k])}
        if before != opts.identity():
            changed = sorted(k for k in set(before) | set(opts.identity()) if before.get(k) != opts.identity().get(k))
            raise ConfigError(f"run {run_dir.name!r} was started with other options ({', '.join(changed)}); "
                              "pass --force to start over or another --name")
        return aside
    write_json(opts.identity(), saved)
    return aside


@contextmanager
def keeping_old(ctx: FoldContext) -> Iterator[None]:
    """The run `--force` replaced stays aside while the new one trains: put back if this call fails, removed
    once it ends (a run, or the folds it was asked for). A kill leaves it for the next call's `recover_dir`,
    which puts it back in place of the unfinished run."""
    try:
        yield
    except BaseException:
        if ctx.replaced is not None and ctx.replaced.exists():
            shutil.rmtree(ctx.run_dir, ignore_errors=True)
            os.rename(ctx.replaced, ctx.run_dir)
            fsync_dir(ctx.run_dir.parent)
        raise
    if ctx.replaced is not None:
        shutil.rmtree(ctx.replaced, ignore_errors=True)


def check_model_ref(model: str) -> str:
    """Where MODEL comes from ('named', 'folder' or 'hub'), checked before any compute; a typo fails at once."""
    from ensemble.backbones.model import check_model_ref as check

    return check(model)


def finetune(ws: Workspace, comp: Competition, opts: FinetuneOptions, force: bool = False,
             progress: Progress | None = None) -> Run | None:
    """Run (or resume) the requested folds; returns the run once every fold is done, else None."""
    ctx, todo = prepare(ws, comp, opts, force, progress)
    started = time.perf_counter()
    with keeping_old(ctx):
        for k in todo:
            run_pending_fold(ctx, k)
        return finish(ctx, time.perf_counter() - started)


def prepare(ws: Workspace, comp: Competition, opts: FinetuneOptions, force: bool = False,
            progress: Progress | None = None) -> tuple[FoldContext, list[int]]:
    """Everything before the folds: checks, the shared folds and test-like files, the run's options.
    Returns what every fold shares and the folds to run (each then runs anywhere: here, or as a Ray task)."""
    from ensemble.backbones.classical import check_classical_options

    emit = progress or (lambda event: None)
    opts = opts.validate()  # every value typed and in range before a folds file, test-like set or run folder
    run_dir = ws.run_dir(opts.run_name)  # a bad name is refused before anything is written
    check_model_ref(opts.model)
    check_devices_option(opts)
    opts = check_knobs(opts)
    check_classical_options(opts.model, opts.max_seconds)
    check_competition_audio(ws, comp, progress=emit)
    with exclusive(ws.models_dir / ".lock"):  # the shared folds and test-like files are made once
        sweep_tmp(ws.models_dir)
        folds = ensure_folds(ws, comp, opts.folds, opts.seed)
        n_folds = int(folds["fold"].nunique())
        opts = replace(opts, folds=n_folds)  # resumed and merged calls need not repeat --folds
        todo = sorted(set(opts.only_folds)) if opts.only_folds else list(range(n_folds))
        bad = [k for k in todo if not 0 <= k < n_folds]
        if bad:
            raise ConfigError(f"--fold {bad[0]} is out of range; the folds file has folds 0..{n_folds - 1}")
        clips = (ensure_testlike(ws, comp, folds, opts.testlike_per_fold, opts.seed, progress=emit)
                 if comp.task.has_testlike else None)
    if clips is not None:
        opts = replace(opts, testlike_per_fold=int(clips.groupby("fold").size().max()))
    if opts.class_weight not in ("none", "balanced"):
        raise ConfigError(f"--class-weight must be none or balanced; got {opts.class_weight!r}")
    opts = replace(opts, metric=ws.metric(comp.task, opts.metric))
    with exclusive(run_lock(ws.models_dir, run_dir.name)):
        for note in recover_dir(run_dir, is_run):  # a killed forced finetune: its old run goes back
            emit({"stage": "tidied", "note": note})
        replaced = _check_options(run_dir, opts, force)
        sweep_tmp(run_dir)  # a killed `ens finetune` or `ens oof` left these
    context = FoldContext(ws=ws, comp=comp, folds=folds, testlike=clips, opts=opts, run_dir=run_dir, emit=emit,
                          decoded=ws.audio_cache(), replaced=replaced)
    return context, todo


def check_devices_option(opts: FinetuneOptions) -> None:
    """--devices: a whole number, no more than the GPUs there are, and only for gradient-trained families."""
    from ensemble.backbones.distributed import check_devices
    from ensemble.backbones.families import is_classical

    check_devices(opts.devices, opts.device)
    if opts.devices > 1 and is_classical(opts.model):
        raise ConfigError(f"--devices {opts.devices}: {opts.model!r} is a classical family (one process fits it); "
                          "use --devices 1")


def run_pending_fold(ctx: FoldContext, k: int) -> None:
    """Fold `k` unless it is finished; what a killed writer left in `fold<k>/` is swept first (a
    checkpoint of finished epochs is kept, so training resumes from it)."""
    if (ctx.run_dir / f"fold{k}" / "fold.json").is_file():
        ctx.emit({"stage": "fold_skipped", "fold": k})
        return
    sweep_tmp(ctx.run_dir / f"fold{k}")
    run_fold(ctx, k)


def finish(ctx: FoldContext, seconds: float) -> Run | None:
    """The assembled run once every fold is done (by this call or elsewhere), else None."""
    n_folds = int(ctx.folds["fold"].nunique())
    missing = [k for k in range(n_folds) if not (ctx.run_dir / f"fold{k}" / "fold.json").is_file()]
    if missing:
        ctx.emit({"stage": "partial", "missing": missing})
        return None
    with exclusive(run_lock(ctx.ws.models_dir, ctx.run_dir.name)):  # folds finished elsewhere may assemble too
        return assemble(ctx.ws, ctx.comp, ctx.folds, ctx.testlike, ctx.opts, ctx.run_dir, seconds)


def check_knobs(opts: FinetuneOptions) -> FinetuneOptions:
    """The knobs checked against MODEL before any compute (a typo fails in a second); `--model-config`
    values come back in the config's own types."""
    from ensemble.backbones.model import check_knobs as check
    from ensemble.backbones.schedules import check_schedule

    opts = opts.validate()
    check_schedule(opts.schedule, opts.warmup, opts.hold)
    if opts.max_grad_norm < 0 or opts.weight_decay < 0:
        raise ConfigError(f"--max-grad-norm {opts.max_grad_norm:g} / --weight-decay {opts.weight_decay:g}: "
                          "must be ≥ 0 (0 turns clipping off)")
    check_pseudo_label(opts)
    return replace(opts, model_config=check(opts.model, dict(opts.model_config), opts.freeze_scheme(), opts.pooling))


def check_pseudo_label(opts: FinetuneOptions) -> None:
    """--pseudo-label: 0 (off) or a confidence in (0.5, 1), and only for the classical families (their second
    fit round costs seconds; a neural family's would cost a second training)."""
    from ensemble.backbones.families import is_classical

    if opts.pseudo_label == 0:
        return
    if not 0.5 < opts.pseudo_label < 1:
        raise ConfigError(f"--pseudo-label {opts.pseudo_label:g}: a confidence in (0.5, 1), or 0 for none")
    if not is_classical(opts.model):
        raise ConfigError(f"--pseudo-label: {opts.model!r} is not a classical family; pseudo-labelling refits "
                          "the classical families (features-lgbm, features-dvec-lgbm, …) only")


def _concat(run_dir: Path, n_folds: int, filename: str) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(run_dir / f"fold{k}" / filename) for k in range(n_folds)], ignore_index=True)


def assemble(ws: Workspace, comp: Competition, folds: pd.DataFrame, clips: pd.DataFrame | None, opts: FinetuneOptions,
             run_dir: Path, seconds: float) -> Run:
    """Merge the folds' predictions into the run's Parquet files and write run.json."""
    from ensemble.artifacts.runs import validate_oof, validate_test

    n_folds = int(folds["fold"].nunique())
    fold_info = [FoldRecord.from_dict(read_json(run_dir / f"fold{k}" / "fold.json"), run_dir / f"fold{k}" / "fold.json")
                 for k in range(n_folds)]
    _check_same_model(fold_info, run_dir)
    names = (OOF_FILE, TEST_FILE) if clips is None else (OOF_FILE, TEST_FILE, TESTLIKE_OOF_FILE)
    frames = {name: _concat(run_dir, n_folds, name) for name in names}
    oof, test = frames[OOF_FILE], frames[TEST_FILE]
    validate_oof(oof, comp.labels, folds, run_dir / OOF_FILE)
    validate_test(test, comp.labels, comp.test_ids, run_dir / TEST_FILE)
    metrics = CVScores.from_dict(cv_metrics(oof, folds, comp.labels, _scorer(comp, opts)), run_dir / "run.json")
    if clips is not None:
        metrics.cv_testlike = score_frame(frames[TESTLIKE_OOF_FILE], clips, comp.labels).as_dict()
    manifest = RunManifest(
        name=run_dir.name, kind="finetune", created=now_iso(), labels=comp.labels,
        source={"model_ref": opts.model, "model": fold_info[0].model},
        options=asdict(opts), folds_fingerprint=folds_fingerprint(folds), n_folds=n_folds,
        testlike_fingerprint=None if clips is None else testlike_fingerprint(clips),
        testlike_domain=load_domain_check(ws), task=comp.task.name, data=comp.fingerprint(),
        metrics=metrics, folds=fold_info, versions=package_versions(), machine=machine(),
        seconds={"total_this_call": round(seconds, 2), "folds": [f.seconds for f in fold_info]},
        files={name: write_run_file(frame, run_dir, name) for name, frame in frames.items()},
    )
    write_manifest(run_dir, manifest)
    return load_run(ws, run_dir.name)


def _check_same_model(fold_info: list[FoldRecord], run_dir: Path) -> None:
    """Every fold describes the same model: a run resumed across an ens upgrade that changed the model or
    its features (`CLIP_FEATURES_VERSION`) would otherwise mix two definitions in one run."""
    first = fold_info[0].model
    for k, info in enumerate(fold_info[1:], start=1):
        other = info.model
        if other != first:
            key = next(key for key in sorted(set(first) | set(other)) if first.get(key) != other.get(key))
            raise ContractError(f"{run_dir / f'fold{k}' / 'fold.json'}: fold {k} was made with another model than "
                                f"fold 0 ({key!r} differs; an ens upgrade between the calls?); start the run "
                                "over with --force")


# ---- one fold ------------------------------------------------------------------------------------------

@dataclass
class FoldContext:
    """What every fold of one `finetune` call shares."""

    ws: Workspace
    comp: Competition
    folds: pd.DataFrame
    testlike: pd.DataFrame | None  # None: a multiclass task, which has no test-like set
    opts: FinetuneOptions
    run_dir: Path
    emit: Progress
    decoded: Any = None  # the workspace's DecodeCache (None: decode every time)
    stores: dict = field(default_factory=dict)  # sampling rate → decoded train audio, shared by calls
    test_features: np.ndarray | None = None  # the test clips' feature rows, once made (pseudo-labelling)
    replaced: Path | None = None  # the old run `--force` moved aside, until this call ends (`keeping_old`)


@dataclass
class FoldData:
    """Fold `fold`'s rows: the training part (sampled with augmentation) and the held-out part."""

    fold: int
    train_store: Any    # WaveStore over every train row, in the folds file's order
    train_idx: np.ndarray
    held_idx: np.ndarray
    targets: np.ndarray
    sampler: Any        # ExampleSampler over the training part only
    augment: Any


def default_lr(model: str) -> float:
    """3e-5 fine-tunes a pretrained checkpoint; a named config starts from random weights."""
    from ensemble.backbones.families import NAMED_CONFIGS

    return SCRATCH_LR if model in NAMED_CONFIGS else 3e-5


def _train_config(ctx: FoldContext, fold: int, batches_per_epoch: int):
    """Effective batch 128 by accumulation, fewer where an epoch would give under 8 optimizer updates."""
    from ensemble.backbones.train import TrainConfig

    o = ctx.opts
    accum = o.grad_accum or max(1, min(-(-128 // o.batch_size), batches_per_epoch // MIN_UPDATES_PER_EPOCH))
    return TrainConfig(lr=o.lr or default_lr(o.model), epochs=o.epochs, batch_size=o.batch_size, grad_accum=accum,
                       freeze=o.freeze_scheme(), schedule=o.schedule, warmup=o.warmup, hold=o.hold,
                       weight_decay=o.weight_decay, max_grad_norm=o.max_grad_norm or None,
                       device=o.device, seed=o.seed + fold)


def _relay(ctx: FoldContext, fold: int, rows_per_epoch: int) -> Progress:
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


def _fold_data(ctx: FoldContext, fold: int, sr: int) -> FoldData:
    """The fold's stores and its augmenting sampler (background noise: one half of the unlabeled clips;
    the other half is the test-like set's)."""
    from ensemble.audio.augment import AugmentConfig, ExampleSampler, for_task
    from ensemble.audio.load import WaveStore
    from ensemble.audio.nuisance import stable_half

    comp, opts = ctx.comp, ctx.opts
    n = int(round(opts.max_seconds * sr))
    paths = comp.train.set_index(comp.train["id"].astype(str))["path"]
    train_store = ctx.stores.get(sr) or WaveStore([comp.audio_path(paths[i]) for i in ctx.folds["id"]], sr,
                                                  decoded=ctx.decoded)
    ctx.stores[sr] = train_store
    unlabeled = [p for p in comp.unlabeled_paths() if stable_half(p) == 0]
    background = WaveStore(unlabeled, sr, decoded=ctx.decoded) if unlabeled else None
    in_fold = ctx.folds["fold"].to_numpy() == fold
    train_idx, held_idx = np.flatnonzero(~in_fold), np.flatnonzero(in_fold)
    targets = ctx.folds[comp.labels].to_numpy(dtype=np.float32)
    augment = for_task(AugmentConfig.from_spec(opts.augment), opts.augment, comp.task)
    sampler = ExampleSampler(train_store, train_idx, targets, n, augment, seed=opts.seed * 1000 + fold,
                             background=background)
    return FoldData(fold, train_store, train_idx, held_idx, targets, sampler, augment)


def _train(ctx: FoldContext, data: FoldData, classifier):
    """Train with the best epoch chosen by the metric's loss on the held-out rows (`validation_loss`)."""
    from ensemble.backbones.predict import predict_split, torch_predictor
    from ensemble.backbones.train import fit_fold, resolve_device

    fold, batch = data.fold, max(1, ctx.opts.batch_size)
    config = replace(_train_config(ctx, fold, data.sampler.n_batches(batch)), class_weight=_class_weights(ctx, data))
    predict = torch_predictor(classifier, resolve_device(config.device))
    parallel = ctx.opts.devices > 1  # validation then runs in a child process: it reports nothing

    scorer = _scorer(ctx.comp, ctx.opts)
    fallbacks: list[dict] = []  # epochs the metric could not score (fold.json's `validation_fallbacks`)

    def validate(model) -> float:
        probs = predict_split(predict, (data.train_store[i] for i in data.held_idx), len(data.held_idx),
                              classifier.sampling_rate, ctx.opts.max_seconds, batch,
                              None if parallel else tagged(ctx.emit, stage="validate_progress", fold=fold),
                              ctx.comp.task)
        seen = len(fallbacks)
        loss = validation_loss(scorer, data.targets[data.held_idx], probs, fallbacks)
        if len(fallbacks) > seen and not parallel:
            ctx.emit({"stage": "validation_fallback", "fold": fold, **fallbacks[-1]})
        return loss

    def batches(epoch: int):
        for waves, y, _sources in data.sampler.epoch(epoch, batch):
            yield waves, y

    ctx.emit({"stage": "fold_start", "fold": fold, "train_rows": int(data.train_idx.size),
              "held_out": int(data.held_idx.size), "batches_per_epoch": data.sampler.n_batches(batch)})
    fit_args = dict(progress=_relay(ctx, fold, int(data.train_idx.size)),
                    micro_batches_per_epoch=data.sampler.n_batches(batch))
    checkpoint = ctx.run_dir / f"fold{fold}" / "checkpoint"
    if parallel:
        from ensemble.backbones.distributed import fit_fold_parallel

        result = fit_fold_parallel(classifier, batches, validate, config, checkpoint, ctx.opts.devices, **fit_args)
    else:
        result = fit_fold(classifier, batches, validate, config, checkpoint, **fit_args)
    return result, config, predict, fallbacks


def _predict(ctx: FoldContext, data: FoldData, predict, sr: int) -> dict[str, pd.DataFrame]:
    """OOF (the held-out rows), test and the fold's own test-like clips, by the trained fold model."""
    from ensemble.backbones.predict import WaveSources, fold_splits, predict_fold_splits, test_wave_store

    row_of = {rid: i for i, rid in enumerate(ctx.folds["id"])}
    which = ("train", "test") if ctx.testlike is None else ("train", "test", "testlike")
    sources = WaveSources(sr, lambda rid: data.train_store[row_of[rid]],
                          test_store=test_wave_store(ctx.comp, sr, ctx.decoded, cache=False),
                          load_background=background_loader(ctx.comp, sr, ctx.decoded))
    splits = fold_splits(ctx.comp, ctx.folds, data.fold, sources, ctx.testlike, which)
    return predict_fold_splits(predict, splits, data.fold, ctx.comp, sr, ctx.opts.max_seconds,
                               max(1, ctx.opts.batch_size), ctx.emit)


@dataclass
class Trained:
    """A fold's fitted model, whichever trainer made it: how to predict, and what fold.json records."""

    data: FoldData
    sr: int
    predict: Any             # BatchPredict for predict_split
    model: dict              # describe() of the model
    fit: dict                # trainer-specific fields of fold.json (best epoch and history, or examples)
    export: Any              # () -> the fold.json "onnx" entry (exports, measures parity)


def _fit_neural(ctx: FoldContext, fold: int, fold_dir: Path) -> Trained:
    """Gradient training of a torch classifier, exported to ONNX. Trained on a CPU, its predictions come
    from the exported graph in ONNX Runtime (3.3× faster than eager torch for the log-mel CNN, measured,
    and `ens oof` then reproduces them exactly); trained on a GPU, from torch there."""
    from ensemble.audio.clip import fit_length
    from ensemble.backbones.model import build_classifier
    from ensemble.backbones.ort import OnnxClassifier
    from ensemble.backbones.predict import onnx_predictor

    classifier = build_classifier(ctx.opts.model, ctx.comp.labels, seed=ctx.opts.seed + fold,
                                  overrides=ctx.opts.model_config, pooling=ctx.opts.pooling)
    classifier.task = ctx.comp.task
    sr = classifier.sampling_rate
    data = _fold_data(ctx, fold, sr)
    result, config, predict, fallbacks = _train(ctx, data, classifier)
    fit = {"best_epoch": result.best_epoch, "best_val_score": result.best_score, "history": result.history,
           "samples_per_second": result.samples_per_s, "device": result.device, "precision": result.precision,
           "train_config": config.as_dict()}
    if fallbacks:  # recorded only where it happened (fold.json otherwise unchanged)
        fit["validation_fallbacks"] = fallbacks

    def export() -> dict:
        probe = [fit_length(data.train_store[i], int(PARITY_SECONDS * sr)) for i in data.held_idx[:4]]
        return _export(ctx, classifier, fold_dir, fold, probe)

    if result.device != "cpu":
        return Trained(data, sr, predict, classifier.describe(), fit, export)
    onnx_info = export()
    model = OnnxClassifier(fold_dir / "model.onnx", provider="cpu")
    return Trained(data, sr, onnx_predictor(model, model.preprocess), classifier.describe(), fit, lambda: onnx_info)


def _fit_classical(ctx: FoldContext, fold: int, fold_dir: Path) -> Trained:
    """Per-clip features of `epochs` passes of augmented examples, one estimator per label; exported to
    ONNX first, and every prediction is made by that ONNX graph (so `ens oof` reproduces them exactly)."""
    from ensemble.audio.clip import fit_length
    from ensemble.backbones.classical import PseudoLabels, build_classical, fit_on_examples
    from ensemble.backbones.ort import OnnxClassifier
    from ensemble.backbones.predict import onnx_predictor

    o = ctx.opts
    classifier = build_classical(o.model, ctx.comp.labels, lr=o.lr)
    classifier.task = ctx.comp.task
    if o.class_weight == "balanced":
        classifier.params["class_weight"] = "balanced"
    sr = classifier.sampling_rate
    data = _fold_data(ctx, fold, sr)
    batch = max(1, o.batch_size)
    ctx.emit({"stage": "fold_start", "fold": fold, "train_rows": int(data.train_idx.size),
              "held_out": int(data.held_idx.size), "batches_per_epoch": data.sampler.n_batches(batch)})
    batches = ((waves, y) for epoch in range(o.epochs) for waves, y, _ in data.sampler.epoch(epoch, batch))
    pseudo = PseudoLabels(o.pseudo_label, lambda: _test_features(ctx, classifier)) if o.pseudo_label else None
    t0, cpu0 = time.perf_counter(), time.process_time()
    fit = fit_on_examples(classifier, batches, o.epochs * int(data.train_idx.size), seed=o.seed + fold,
                          progress=tagged(ctx.emit, fold=fold), pseudo=pseudo)
    fit.update(epochs=o.epochs, seconds_fit=round(time.perf_counter() - t0, 2),
               cpu_seconds_fit=round(time.process_time() - cpu0, 2), device="cpu")
    path = fold_dir / "model.onnx"
    classifier.export_onnx(path, {"run_id": ctx.run_dir.name, "fold": str(fold), "max_seconds": str(o.max_seconds)})
    model = OnnxClassifier(path, provider="cpu")
    probe = [fit_length(data.train_store[i], int(PARITY_SECONDS * sr)) for i in data.held_idx[:4]]
    native = classifier.predict_proba_native(classifier.features(np.stack(probe)))
    parity = float(np.max(np.abs(model.predict_proba(model.preprocess(probe)) - native)))
    onnx_info = {"path": f"fold{fold}/model.onnx", "sha256": file_sha256(path), "parity_max_abs_diff": parity,
                 "parity_clip_seconds": PARITY_SECONDS, "parity_bar": classifier.estimator.parity_bar,
                 "parity_reference": "torch features + the estimators' own predict_proba"}
    return Trained(data, sr, onnx_predictor(model, model.preprocess), classifier.describe(), fit, lambda: onnx_info)


def parity_words(onnx: OnnxFile) -> str:
    """`max |p_onnx − p_native| 5.5e-03 ≤ bar 2e-02`: the measured parity beside the bar it must meet."""
    parity, bar = onnx.parity_max_abs_diff, PARITY_BAR if onnx.parity_bar is None else onnx.parity_bar
    verdict = "≤" if parity <= bar else "ABOVE"
    return f"max |p_onnx − p_native| {parity:.1e} {verdict} bar {bar:.0e}"


def _test_features(ctx: FoldContext, classifier) -> np.ndarray:
    """The test clips' feature rows (cropped as training crops), made once per run: the fixed front end
    gives every fold the same. Pseudo-labelling reads them; no label is."""
    from ensemble.audio.clip import fit_length
    from ensemble.backbones.predict import test_wave_store

    if ctx.test_features is None:
        sr, n = classifier.sampling_rate, int(round(ctx.opts.max_seconds * classifier.sampling_rate))
        store = test_wave_store(ctx.comp, sr, ctx.decoded, cache=False)
        batch = max(1, ctx.opts.batch_size)  # a batch of waves at a time: a large test never sits in memory
        ctx.test_features = np.concatenate([
            classifier.features(np.stack([fit_length(store[i], n) for i in range(s, min(s + batch, len(store)))]))
            for s in range(0, len(store), batch)])
    return ctx.test_features


def run_fold(ctx: FoldContext, fold: int) -> dict:
    """Train and evaluate fold `fold`; writes `fold<k>/` (predictions, model.onnx, fold.json)."""
    from ensemble.backbones.families import is_classical

    started = time.perf_counter()
    fold_dir = ctx.run_dir / f"fold{fold}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    trained = (_fit_classical if is_classical(ctx.opts.model) else _fit_neural)(ctx, fold, fold_dir)
    data = trained.data
    train_seconds = time.perf_counter() - started
    frames = _predict(ctx, data, trained.predict, trained.sr)
    onnx_info = trained.export()
    hashes = {name: write_run_file(frames[split], fold_dir, name)
              for split, name in (("train", OOF_FILE), ("test", TEST_FILE), ("testlike", TESTLIKE_OOF_FILE))
              if split in frames}
    info = {
        "fold": fold, "model": trained.model, "train_rows": int(data.train_idx.size),
        "held_out_rows": int(data.held_idx.size), "testlike_clips": int(len(frames.get("testlike", ()))),
        **trained.fit, "augment": data.augment.to_dict(), "onnx": onnx_info, "files": hashes,
        "seconds": {"train": round(train_seconds, 2), "total": round(time.perf_counter() - started, 2)},
    }
    try:
        # in the arrays' own dtypes, as recorded (`score_frame`'s float64 differs in the last digits)
        oof = frames["train"][ctx.comp.labels].to_numpy()
        info["cv"] = _scorer(ctx.comp, ctx.opts).recorder().scores(data.targets[data.held_idx], oof, ctx.comp.labels)
    except MetricError:
        info["cv"] = None
    write_json(info, fold_dir / "fold.json")
    shutil.rmtree(fold_dir / "checkpoint", ignore_errors=True)
    ctx.emit({"stage": "fold_done", "fold": fold, "cv": info["cv"], "parity": parity_words(OnnxFile.from_dict(onnx_info, fold_dir / "fold.json"))})
    return info


def _scorer(comp: Competition, opts: FinetuneOptions) -> Scorer:
    """The best-epoch metric's scorer: `--metric`, else the task's default (the competition's metric for
    fake/real), in its form for the task."""
    from ensemble.metrics.scorer import get_scorer

    return get_scorer(opts.metric or comp.task.default_metric, comp.task)


def validation_loss(scorer: Scorer, y: np.ndarray, probs: np.ndarray, fallbacks: list[dict]) -> float:
    """The held-out rows' loss on `scorer` (lower is better), which picks the best epoch. Where the metric is
    undefined on them (one class held out), mean squared error stands in, and `fallbacks` records it: the
    run's fold.json keeps the record and the command prints it."""
    try:
        return scorer.loss(np.asarray(y, dtype=np.float64), probs)
    except MetricError as err:
        fallbacks.append({"metric": scorer.name, "scored_by": "mean squared error", "reason": str(err)})
        return float(((probs - y) ** 2).mean())


def _class_weights(ctx: FoldContext, data: FoldData) -> tuple[float, ...] | None:
    """`balanced`: the task's class weights from the fold's training rows (`Task.class_weights`; none for sigmoids)."""
    if ctx.opts.class_weight != "balanced":
        return None
    return ctx.comp.task.class_weights(data.targets[data.train_idx])


def fit_held_out(ws: Workspace, comp: Competition, opts: FinetuneOptions, work_dir: Path, folds: list[int],
                 progress: Progress | None = None, stores: dict | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train `opts` on each fold of `folds` (its training rows only) and predict its held-out rows; no
    export, no test predictions, nothing kept (hyper-parameter search). Returns the held-out rows'
    `(ids, targets, probabilities)`, fold by fold. `work_dir` holds the checkpoints meanwhile; pass the
    same `stores` dict to calls on the same data so the audio is decoded once, not once per call."""
    from ensemble.backbones.families import is_classical
    from ensemble.backbones.predict import predict_split

    emit = progress or (lambda event: None)
    opts = check_knobs(opts)
    check_competition_audio(ws, comp, progress=emit)
    with exclusive(ws.models_dir / ".lock"):  # the same shared folds as every run
        shared = ensure_folds(ws, comp, opts.folds, opts.seed)
    n_folds = int(shared["fold"].nunique())
    bad = [k for k in folds if not 0 <= k < n_folds]
    if bad:
        raise ConfigError(f"--fold {bad[0]} is out of range; the folds file has folds 0..{n_folds - 1}")
    ctx = FoldContext(ws=ws, comp=comp, folds=shared, testlike=pd.DataFrame(), opts=opts, run_dir=work_dir, emit=emit,
                      decoded=ws.audio_cache(), stores=stores if stores is not None else {})
    ids, targets, probs = [], [], []
    try:
        for k in folds:
            fold_dir = work_dir / f"fold{k}"
            fold_dir.mkdir(parents=True, exist_ok=True)
            trained = (_fit_classical if is_classical(opts.model) else _fit_neural)(ctx, k, fold_dir)
            held = trained.data.held_idx
            probs.append(predict_split(trained.predict, (trained.data.train_store[i] for i in held), len(held),
                                       trained.sr, opts.max_seconds, max(1, opts.batch_size),
                                       tagged(emit, stage="predict held-out", fold=k), comp.task))
            ids.append(shared["id"].to_numpy()[held].astype(str))
            targets.append(trained.data.targets[held])
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return np.concatenate(ids), np.concatenate(targets), np.concatenate(probs)


def _export(ctx: FoldContext, classifier, fold_dir: Path, fold: int, probe: list[np.ndarray]) -> dict:
    """ONNX export with metadata, then parity against torch on clips of another length."""
    from ensemble.backbones.onnx_export import export_onnx, measure_parity

    path = fold_dir / "model.onnx"
    metadata = {"run_id": ctx.run_dir.name, "fold": str(fold), "max_seconds": str(ctx.opts.max_seconds)}
    export_onnx(classifier, path, metadata)
    parity = measure_parity(classifier, path, probe)
    return {"path": f"fold{fold}/model.onnx", "sha256": file_sha256(path), "parity_max_abs_diff": parity,
            "parity_clip_seconds": PARITY_SECONDS, "parity_bar": PARITY_BAR}
