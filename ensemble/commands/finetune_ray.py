"""`ens finetune --ray`: every (run, fold) of one or more runs as a Ray task over a shared workspace.

Ray is the engine (scheduling, resources, retries, a cluster of machines); ens adds only what a fold
task is. The driver does everything before the folds (`finetune.prepare`: checks, the shared folds and
test-like files, the run's options), submits one task per pending fold with its CPU/GPU resources, relays
the tasks' progress events to the caller (tagged with the run and the worker), and assembles each run
once its folds are done (`finetune.finish`). A task runs exactly the code a sequential `ens finetune`
runs for that fold (`run_pending_fold`) and writes `fold<k>/` in the workspace, so the files are the
same files, with the same predictions for the same seed. A worker that dies (a killed process, a lost
node) has its task retried by Ray; the retry resumes from the fold's last finished epoch, which gives
the same weights as an uninterrupted fold. A task that raises (bad data, bad options) is not retried:
the other tasks are cancelled and the error is raised here.

Every node must see the workspace and the competition folder at the same path (a shared filesystem),
and have ens's dependencies installed; the driver's `ensemble` package is shipped to the workers with
the job (`py_modules`), so every node runs the same code.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from ensemble.artifacts.competition import Competition
from ensemble.artifacts.runs import Run
from ensemble.artifacts.workspace import Workspace
from ensemble.commands.finetune import FinetuneOptions, FoldContext, finish, keeping_old, prepare, run_pending_fold
from ensemble.errors import ConfigError
from ensemble.progress import POLL_SECONDS, Progress

MAX_RETRIES = 3  # per task, on worker death only (Ray's default for tasks)


@dataclass(frozen=True)
class FoldResources:
    """What one fold task asks Ray for; `gpus=None`: one GPU per training process (`--devices`) when the
    run may use CUDA and the cluster has GPUs, else none."""

    cpus: float = 1.0
    gpus: float | None = None

    def resolve(self, device: str, devices: int, cluster_gpus: float) -> dict[str, float]:
        """Ray's resources for a fold trained by `devices` processes (one GPU each on CUDA)."""
        gpus = self.gpus
        if gpus is None:
            gpus = float(devices) if device != "cpu" and cluster_gpus > 0 else 0.0
        if device == "cuda" and gpus <= 0:
            raise ConfigError("--device cuda on Ray needs GPUs per fold: the cluster has none, or --ray-gpus is 0")
        return {"num_cpus": self.cpus, "num_gpus": gpus}


def connect(address: str | None, **init: Any) -> None:
    """Join the Ray cluster at `address` ("auto": the one running on this machine; None or "local":
    start one here), shipping this `ensemble` package to its workers. A session already open is kept."""
    import logging

    import ray

    import ensemble

    if ray.is_initialized():
        return
    # progress comes back as events: the workers' own logs stay in Ray's session folder
    common = dict(runtime_env={"py_modules": [ensemble]}, log_to_driver=False, logging_level=logging.WARNING, **init)
    if address in (None, "local"):
        ray.init(include_dashboard=False, **common)
    else:
        ray.init(address=address, **common)


def finetune_on_ray(ws: Workspace, comp: Competition, runs: list[FinetuneOptions], force: bool = False,
                    progress: Progress | None = None, resources: FoldResources = FoldResources(),
                    max_retries: int = MAX_RETRIES) -> list[Run | None]:
    """Every pending fold of `runs` as a Ray task on the cluster `connect` joined (a local one if none);
    returns each run (None where folds are missing) in the order given."""
    import ray
    from ray.util.queue import Queue

    emit = progress or (lambda event: None)
    names = [o.run_name for o in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"run names must differ; {sorted(n for n in names if names.count(n) > 1)[0]!r} is given twice")
    with ExitStack() as held:  # each replaced run stays aside until its new one is in (put back on a failure)
        contexts = []
        for o in runs:
            contexts.append(prepare(ws, comp, o, force, _tagged(emit, o.run_name)))
            held.enter_context(keeping_old(contexts[-1][0]))
        connect(None)
        events = Queue()
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        started = time.perf_counter()
        pending: dict[Any, tuple[str, int]] = {}
        for ctx, todo in contexts:
            task = ray.remote(_fold_task).options(max_retries=max_retries, retry_exceptions=False,
                                                  **resources.resolve(ctx.opts.device, ctx.opts.devices, cluster_gpus))
            for k in todo:
                pending[task.remote(_portable(ctx), k, events)] = (ctx.run_dir.name, k)
        try:
            _wait(pending, events, emit)
        finally:
            _drain(events, emit)
        seconds = time.perf_counter() - started
        return [finish(ctx, seconds) for ctx, _ in contexts]


def _wait(pending: dict, events, emit: Progress) -> None:
    """Relay events until every task is done; the first task error cancels the rest and is raised."""
    import ray

    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
        _drain(events, emit)
        for ref in ready:
            pending.pop(ref)
            try:
                ray.get(ref)
            except Exception:
                for other in pending:
                    ray.cancel(other, force=True)
                raise


def _drain(events, emit: Progress) -> None:
    while not events.empty():
        emit(events.get_nowait())


def _tagged(emit: Progress, run: str) -> Progress:
    return lambda event: emit({**event, "run": run})


def _portable(ctx: FoldContext) -> FoldContext:
    """The context without what cannot travel to a worker (the caller's progress callback)."""
    from dataclasses import replace

    return replace(ctx, emit=None)


def _fold_task(ctx: FoldContext, fold: int, events) -> None:
    """One fold on a Ray worker: the sequential code path, its events sent back through `events`."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    run = ctx.run_dir.name

    def emit(event: dict) -> None:
        events.put({**event, "run": run, "worker": worker})

    from dataclasses import replace

    run_pending_fold(replace(ctx, emit=emit), fold)
