"""Fine-tune one fold: BCE on logits, AdamW, a warmup schedule (`backbones.schedules`), gradient clipping,
freezing (`backbones.freezing`), gradient accumulation, mixed precision, best checkpoint by validation
score, and resume after interruption.

With a `Shard` (rank, world: one of several processes, `backbones/distributed.py`) the module is wrapped
in DistributedDataParallel: every process draws the same seeded micro-batches and trains on its share
(rows rank, rank + world, …), gradients are averaged across processes, so the effective batch and the
updates are those of one process up to the order of float sums; rank 0 alone validates and writes.

Resume gives the same weights as an uninterrupted run because everything random is a function of the
epoch: torch, numpy's global RNG (transformers draws SpecAugment masks from it) and `random` are
re-seeded with `(seed, epoch)` at the start of each epoch, `batches(epoch)` must be
seeded by its epoch too, and the optimizer, schedule and loss-scaler states are saved after every epoch
(`checkpoint_dir/last`), next to the best model so far (`checkpoint_dir/best`).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ensemble.backbones.model import Classifier, _replace_dir, load_weights
from ensemble.errors import ConfigError, DataError

Batches = Callable[[int], Iterable[tuple[np.ndarray, np.ndarray]]]
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
TRAINER_KEYS = frozenset({"optimizer", "scheduler", "scaler", "history", "best_epoch", "best_score"})


@dataclass
class TrainConfig:
    """Fine-tuning hyper-parameters; `grad_accum=None` means `ceil(effective_batch / batch_size)`.

    `schedule`, `warmup` and `hold`: see `backbones.schedules`; `freeze`: a `backbones.freezing` scheme;
    `max_grad_norm=None` trains without gradient clipping.
    """

    lr: float = 3e-5
    epochs: int = 5
    batch_size: int = 8
    grad_accum: int | None = None
    effective_batch: int = 128
    warmup: float = 0.1
    weight_decay: float = 0.01
    freeze: str = "feature-encoder"
    schedule: str = "cosine"
    hold: float = 0.0
    precision: str = "auto"
    device: str = "auto"
    seed: int = 0
    max_grad_norm: float | None = 1.0
    class_weight: tuple[float, ...] | None = None  # multiclass cross-entropy weight per class (None: equal)

    def accumulation(self) -> int:
        return self.grad_accum or max(1, math.ceil(self.effective_batch / self.batch_size))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "grad_accum": self.accumulation()}


@dataclass(frozen=True)
class Shard:
    """This process's place among the processes training one fold together."""

    rank: int
    world: int


@dataclass
class FitResult:
    """What one fold's training achieved; the classifier holds the best epoch's weights afterwards."""

    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    samples_per_s: float = 0.0
    best_dir: Path | None = None
    device: str = "cpu"
    precision: str = "fp32"


def resolve_device(device: str) -> str:
    import torch

    if device not in DEVICES:
        raise ConfigError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device; use --device cpu or auto")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_precision(precision: str, device: str) -> str:
    """'auto' → bf16 on CUDA where supported, else fp16 (with loss scaling); fp32 on CPU."""
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if device == "cpu":
        if precision == "fp16":
            raise ConfigError("precision 'fp16' needs CUDA; use fp32 or bf16 on CPU")
        return "fp32" if precision == "auto" else precision
    if precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return precision


def _optimizer(module: Any, config: TrainConfig) -> Any:
    import torch

    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)


def _count(batches: Batches, given: int | None) -> int:
    if given is not None:
        return given
    first = batches(0)
    try:
        return len(first)  # type: ignore[arg-type]
    except TypeError:
        return sum(1 for _ in first)


class _Trainer:
    """The mutable state of one fold's training (model, optimizer, schedule, scaler, history)."""

    def __init__(self, clf: Classifier, config: TrainConfig, device: str, precision: str, total: int,
                 shard: Shard | None = None) -> None:
        import torch

        from ensemble.backbones.schedules import check_schedule, lr_factor

        check_schedule(config.schedule, config.warmup, config.hold)
        self.clf, self.config, self.device, self.precision, self.shard = clf, config, device, precision, shard
        clf.freeze(config.freeze)
        clf.module.to(device)
        self.forward = clf.module
        if shard is not None:
            from torch.nn.parallel import DistributedDataParallel

            if device == "cuda":  # batch-norm statistics over the whole batch, as one process has them
                torch.nn.SyncBatchNorm.convert_sync_batchnorm(clf.module)

            # wav2vec2's mask embedding is used only on steps that draw a SpecAugment mask
            self.forward = DistributedDataParallel(clf.module, find_unused_parameters=True)
        self.optimizer = _optimizer(clf.module, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total, config.warmup, config.schedule, config.hold))
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
        self.history: list[dict[str, float]] = []
        self.best_epoch, self.best_score = -1, math.inf
        self.class_weight = (None if config.class_weight is None else
                             torch.tensor(config.class_weight, dtype=torch.float32, device=device))

    def state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "history": self.history,
                "best_epoch": self.best_epoch, "best_score": self.best_score}

    def restore(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.history = state["history"]
        self.best_epoch, self.best_score = state["best_epoch"], state["best_score"]

    def _step(self, n_accumulated: int) -> None:
        import torch

        accum = self.config.accumulation()
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.clf.module.parameters() if p.grad is not None]
        if n_accumulated != accum:  # a short last step of the epoch: average over what it holds
            for p in params:
                p.grad.mul_(accum / n_accumulated)
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def train_epoch(self, batches: Iterable[tuple[np.ndarray, np.ndarray]],
                    progress: Callable[[dict], None] | None, epoch: int) -> tuple[float, int]:
        import torch

        module, accum = self.clf.module, self.config.accumulation()
        module.train()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        loss_sum, samples, pending = 0.0, 0, 0
        for waves, targets in batches:
            n_batch, weight = len(waves), 1.0
            if self.shard is not None:  # this process's rows; DDP averages the gradients over processes
                mine = slice(self.shard.rank, None, self.shard.world)
                if len(waves[mine]) == 0:  # a last batch smaller than the group: join the gradient sum with 0
                    mine, weight = slice(0, 1), 0.0
                waves, targets = waves[mine], targets[mine]
            inputs = {k: torch.from_numpy(v).to(self.device) for k, v in self.clf.preprocess(list(waves)).items()}
            y = torch.as_tensor(np.asarray(targets), dtype=torch.float32, device=self.device)
            with torch.autocast(self.device, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = self.forward(**inputs)
            # sharded: this share's part of the whole batch's mean, times world (DDP divides by it)
            share = None if self.shard is None else weight * self.shard.world / n_batch
            loss = self.clf.task.training_loss(logits.float(), y, self.class_weight, share)
            self.scaler.scale(loss / accum).backward()
            rows_loss = loss.item() * (len(y) if self.shard is None else n_batch / self.shard.world)
            loss_sum, samples, pending = loss_sum + rows_loss, samples + int(weight) * len(y), pending + 1
            if pending == accum:
                self._step(pending)
                pending = 0
                if progress:
                    progress({"stage": "step", "epoch": epoch, "loss": loss.item(),
                              "lr": self.scheduler.get_last_lr()[0], "samples": samples})
        if pending:
            self._step(pending)
        if self.shard is not None:  # the whole batch's loss and rows, as one process reports them
            import torch.distributed as dist

            total = torch.tensor([loss_sum, float(samples)], dtype=torch.float64)
            dist.all_reduce(total)
            loss_sum, samples = float(total[0]), int(total[1])
        return loss_sum / max(1, samples), samples


def fit_fold(classifier: Classifier, batches: Batches, validate: Callable[[Classifier], float],
             config: TrainConfig, checkpoint_dir: Path, progress: Callable[[dict], None] | None = None,
             micro_batches_per_epoch: int | None = None, shard: Shard | None = None) -> FitResult:
    """Train `classifier` in place for `config.epochs`, resuming from `checkpoint_dir/last` if present.

    `batches(epoch)` yields `(waves (b, n), targets (b, labels))`, seeded by epoch; its length gives the
    schedule (pass `micro_batches_per_epoch` when it has no `len`, else epoch 0 is iterated once to
    count). `validate(classifier)` returns a score where lower is better. On return the classifier holds
    the best epoch's weights (also in `checkpoint_dir/best`). With `shard`, this is one of the processes
    training the fold together (see the module's docstring); every one of them calls `fit_fold`.
    """
    checkpoint_dir = Path(checkpoint_dir)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    per_epoch = max(1, math.ceil(_count(batches, micro_batches_per_epoch) / config.accumulation()))
    trainer = _Trainer(classifier, config, device, precision, per_epoch * config.epochs, shard)
    writer = shard is None or shard.rank == 0
    last, best = checkpoint_dir / "last", checkpoint_dir / "best"
    if (last / "trainer.pt").is_file():
        load_weights(classifier.module, last / "model.safetensors", device,
                     f"; delete {checkpoint_dir} to restart this fold")
        trainer.restore(load_trainer_state(last / "trainer.pt", device))
        if progress:
            progress({"stage": "resume", "epoch": len(trainer.history)})
    if progress:
        described = classifier.describe()
        progress({"stage": "trainable", "freeze": config.freeze, "n_trainable": described["n_trainable"],
                  "n_params": described["n_params"]})
    start = time.perf_counter()
    trained = 0
    for epoch in range(len(trainer.history), config.epochs):
        t0 = time.perf_counter()
        _seed_epoch(config.seed, epoch, shard.rank if shard else 0)
        train_loss, n = trainer.train_epoch(batches(epoch), progress, epoch)
        trained += n
        classifier.module.eval()
        score = _validate(validate, classifier, shard)
        classifier.module.to(device)  # in case validate moved it
        if score < trainer.best_score:
            trainer.best_epoch, trainer.best_score = epoch, score
            if writer:
                classifier.save(best)
        record = {"epoch": epoch, "train_loss": train_loss, "val_score": score,
                  "lr": trainer.scheduler.get_last_lr()[0], "seconds": time.perf_counter() - t0}
        trainer.history.append(record)
        if writer:
            _save_last(classifier, trainer, last)
        _barrier(shard)  # the others read `best` at the end: it must be written
        if progress:
            progress({"stage": "epoch", **record, "best_epoch": trainer.best_epoch,
                      "best_score": trainer.best_score})
    seconds = time.perf_counter() - start
    if trainer.best_epoch < 0:
        raise ConfigError(f"config.epochs={config.epochs}: nothing was trained; epochs must be ≥ 1")
    load_weights(classifier.module, best / "model.safetensors", device, f"; delete {checkpoint_dir} to restart this fold")
    classifier.module.eval()
    return FitResult(trainer.best_epoch, trainer.best_score, trainer.history, seconds,
                     trained / seconds if seconds > 0 else 0.0, best, device, precision)


def load_trainer_state(path: Path, device: str) -> dict[str, Any]:
    """The saved optimizer/schedule/scaler state, unpickled with `weights_only=True`.

    Fold folders are copied between machines, so `trainer.pt` is untrusted: a full unpickle would run
    whatever code a crafted file names. Only tensors and plain containers load; anything else is refused.
    """
    import pickle

    import torch

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        reason = (f"it names the Python object {found.group(1)}, which could run code when loaded" if found
                  else "not a checkpoint of tensors and plain values")
        raise DataError(f"{path}: refused to load the trainer state: {reason}; "
                        f"delete {path.parent.parent} to restart this fold") from None
    if not isinstance(state, dict) or not TRAINER_KEYS <= set(state):
        raise DataError(f"{path}: not a trainer state (expected keys {', '.join(sorted(TRAINER_KEYS))}); "
                        f"delete {path.parent.parent} to restart this fold")
    return state


def _validate(validate: Callable[[Classifier], float], classifier: Classifier, shard: Shard | None) -> float:
    """The validation score; with several processes rank 0 computes it and sends it to the others."""
    if shard is None:
        return float(validate(classifier))
    import torch
    import torch.distributed as dist

    score = torch.tensor([float(validate(classifier)) if shard.rank == 0 else 0.0], dtype=torch.float64)
    dist.broadcast(score, 0)
    return float(score[0])


def _barrier(shard: Shard | None) -> None:
    if shard is not None:
        import torch.distributed as dist

        dist.barrier()


def _seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed every RNG training draws from (dropout: torch; SpecAugment masks in transformers: numpy);
    each process of a fold draws its own dropout masks."""
    import random

    import torch

    value = seed * 100_003 + epoch + 7_919 * rank
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)


def _save_last(classifier: Classifier, trainer: _Trainer, last: Path) -> None:
    import torch

    tmp = last.with_name(".last.tmp")
    classifier.save(tmp)
    torch.save(trainer.state(), tmp / "trainer.pt")
    _replace_dir(tmp, last)


def predict_proba_torch(classifier: Classifier, waves: list[np.ndarray], batch_size: int,
                        device: str | None = None) -> np.ndarray:
    """Probabilities `(len(waves), labels)` in fp32, batching clips of similar length; input order kept.

    `device=None` uses wherever the module is (so a `validate` callback run inside `fit_fold` stays on
    the training device); otherwise the module is moved there.
    """
    import torch

    module = classifier.module
    if device is None:
        device = next(module.parameters()).device.type
    device = resolve_device(device)
    was_training = module.training
    module.eval().to(device)
    order = np.argsort([len(w) for w in waves], kind="stable")
    out = np.zeros((len(waves), len(classifier.labels)), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            inputs = classifier.preprocess([waves[i] for i in idx])
            logits = module(**{k: torch.from_numpy(v).to(device) for k, v in inputs.items()})
            out[idx] = classifier.probabilities(logits.float()).cpu().numpy()
    module.train(was_training)
    return out
