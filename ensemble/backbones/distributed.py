"""Several processes for one fold (`--devices N`): PyTorch DistributedDataParallel, gloo on CPU, nccl on GPUs.

`fit_fold_parallel` forks N processes (before CUDA is initialised here, so fork is safe); each joins one
process group, takes one GPU (rank r: `cuda:r`) or a share of the CPU threads, and runs `fit_fold` with
its `Shard`: every process draws the same seeded micro-batches and trains on rows r, r + N, …, gradients
are averaged, so the effective batch is the one a single process uses and the updates differ only in the
order of float sums (and in which dropout masks are drawn). Rank 0 validates, writes the checkpoints and
sends its progress events and result back through a queue; this process then loads the best epoch's
weights and goes on (predictions, ONNX export) as after a one-process fit.
"""

from __future__ import annotations

import os
import socket
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ensemble.backbones.model import Classifier
from ensemble.backbones.train import Batches, FitResult, Shard, TrainConfig, fit_fold, resolve_device
from ensemble.errors import ConfigError, EnsError
from ensemble.progress import POLL_SECONDS


def check_devices(devices: int, device: str) -> int:
    """`devices` processes are possible for `device` (any number on CPU, at most the GPUs on CUDA)."""
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ConfigError(f"--devices {devices!r} is invalid; accepted: a whole number ≥ 1")
    if devices > 1 and resolve_device(device) == "cuda":
        import torch

        if devices > torch.cuda.device_count():
            raise ConfigError(f"--devices {devices} but torch sees {torch.cuda.device_count()} GPUs")
    return devices


def fit_fold_parallel(classifier: Classifier, batches: Batches, validate: Callable[[Classifier], float],
                      config: TrainConfig, checkpoint_dir: Path, devices: int,
                      progress: Callable[[dict], None] | None = None,
                      micro_batches_per_epoch: int | None = None) -> FitResult:
    """`fit_fold` on `devices` processes; on return `classifier` holds the best epoch's weights."""
    import multiprocessing as mp
    import queue as queue_module

    from ensemble.backbones.model import load_weights

    check_devices(devices, config.device)
    context = mp.get_context("fork")
    events = context.Queue()
    port = _free_port()
    job = _FoldJob(classifier, batches, validate, config, Path(checkpoint_dir), micro_batches_per_epoch)
    procs = [context.Process(target=_rank_main, args=(Shard(r, devices), job, port, events), daemon=True)
             for r in range(devices)]
    for p in procs:
        p.start()
    result: dict[str, Any] | None = None
    error: str | None = None
    while any(p.is_alive() for p in procs) or not events.empty():
        try:
            kind, payload = events.get(timeout=POLL_SECONDS)
        except queue_module.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                break
            continue
        if kind == "event" and progress:
            progress(payload)
        elif kind == "result":
            result = payload
        elif kind == "error":
            error = payload
    for p in procs:
        p.join(timeout=5 if error or result is None else None)
        if p.is_alive():
            p.terminate()
    if result is None:
        codes = [p.exitcode for p in procs]
        raise EnsError(error or f"a training process of the fold died (exit codes {codes})")
    load_weights(classifier.module, Path(result["best_dir"]) / "model.safetensors")
    classifier.module.eval()
    return FitResult(**{**result, "best_dir": Path(result["best_dir"])})


@dataclass(frozen=True)
class _FoldJob:
    """What every process of the group trains: `fit_fold`'s arguments, the same in each (forked, not pickled)."""

    classifier: Classifier
    batches: Batches
    validate: Callable[[Classifier], float]
    config: TrainConfig
    checkpoint_dir: Path
    micro_batches_per_epoch: int | None


def _rank_main(shard: Shard, job: _FoldJob, port: int, events) -> None:
    """One process of the group: join it, train this process's share, report (rank 0)."""
    import torch
    import torch.distributed as dist

    device = resolve_device(job.config.device)
    if device == "cuda":
        torch.cuda.set_device(shard.rank)
    else:
        torch.set_num_threads(max(1, torch.get_num_threads() // shard.world))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=shard.rank, world_size=shard.world)
    try:
        progress = (lambda event: events.put(("event", event))) if shard.rank == 0 else None
        result = fit_fold(job.classifier, job.batches, job.validate, replace(job.config, device=device),
                          job.checkpoint_dir, progress=progress, micro_batches_per_epoch=job.micro_batches_per_epoch,
                          shard=shard)
        if shard.rank == 0:
            events.put(("result", {**asdict(result), "best_dir": str(result.best_dir)}))
    except Exception as err:  # the message travels back; the traceback stays here
        message = str(err) if isinstance(err, EnsError) else f"rank {shard.rank}: {traceback.format_exc(limit=3)}"
        events.put(("error", message))
        raise SystemExit(1)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
