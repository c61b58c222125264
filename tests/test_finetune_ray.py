"""`ens finetune --ray` on a real local Ray cluster: the same files and predictions as a sequential run,
also when a worker is killed in the middle of a fold."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from ensemble.artifacts.competition import Competition  # noqa: E402
from ensemble.artifacts.workspace import Workspace  # noqa: E402
from ensemble.commands.board import board_frame  # noqa: E402
from ensemble.commands.finetune import FinetuneOptions, finetune  # noqa: E402
from ensemble.commands.finetune_ray import connect, finetune_on_ray  # noqa: E402
from ensemble.demo import DemoSpec, generate_competition  # noqa: E402

pytestmark = pytest.mark.slow
FAST = dict(model="logmel-cnn", folds=3, epochs=2, batch_size=8, max_seconds=1.0, testlike_per_fold=3)
RUNS = [FinetuneOptions(name="cnn-a", seed=0, **FAST), FinetuneOptions(name="cnn-b", seed=0, lr=3e-3, **FAST)]
FILES = ("oof.parquet", "test.parquet", "oof_testlike.parquet")


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    return generate_competition(tmp_path_factory.mktemp("comp") / "data",
                                DemoSpec(n_train=24, n_test=4, n_unlabeled=3, seed=3))


@pytest.fixture(scope="module")
def sequential(tmp_path_factory, competition) -> Workspace:
    """The reference: both runs made one fold after another in this process, on one CPU thread as each
    1-CPU Ray task is (torch's CPU kernels split their sums by thread, so the count changes the last bits)."""
    import torch

    ws = Workspace(tmp_path_factory.mktemp("seq"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for opts in RUNS:
            finetune(ws, Competition.load(competition), opts)
    finally:
        torch.set_num_threads(threads)
    return ws


@pytest.fixture(scope="module")
def cluster():
    connect("local", num_cpus=2)
    yield
    ray.shutdown()


def fold_files(ws: Workspace, run: str) -> list[str]:
    return sorted(str(p.relative_to(ws.run_dir(run))) for p in ws.run_dir(run).rglob("*") if p.is_file())


def assert_same_runs(ray_ws: Workspace, seq_ws: Workspace) -> None:
    for opts in RUNS:
        assert fold_files(ray_ws, opts.run_name) == fold_files(seq_ws, opts.run_name)
        for name in FILES:
            pd.testing.assert_frame_equal(pd.read_parquet(ray_ws.run_dir(opts.run_name) / name),
                                          pd.read_parquet(seq_ws.run_dir(opts.run_name) / name), check_exact=True)
        manifest = json.loads((ray_ws.run_dir(opts.run_name) / "run.json").read_text())
        assert manifest["metrics"] == json.loads((seq_ws.run_dir(opts.run_name) / "run.json").read_text())["metrics"]


def test_two_runs_by_three_folds_on_ray_match_the_sequential_runs_even_when_a_worker_dies(
        cluster, sequential, competition, tmp_path):
    """Six fold tasks on two CPUs; the worker running cnn-b's fold 1 is killed once its first epoch is
    saved: Ray reruns that task in another process, it resumes from the epoch, and every file ends as
    the sequential runs wrote it."""
    ws = Workspace(tmp_path / "ray")
    ws.models_dir.mkdir(parents=True)
    for shared in sequential.models_dir.glob("*.*"):  # the dataset's folds and test-like set, made once
        shutil.copy(shared, ws.models_dir)
    events: list[dict] = []
    killed: list[str] = []

    boards = []

    def kill_once(event: dict) -> None:
        events.append(event)
        if event.get("stage") == "fold_done" and not boards:  # `ens board` while the runs are under way
            boards.append(board_frame(ws))
        if not killed and event.get("stage") == "epoch" and (event["run"], event["fold"], event["epoch"]) == ("cnn-b", 1, 0):
            killed.append(event["worker"])
            os.kill(int(event["worker"].split(":")[1]), signal.SIGKILL)

    runs = finetune_on_ray(ws, Competition.load(competition), RUNS, progress=kill_once)
    assert [r.name for r in runs] == ["cnn-a", "cnn-b"]
    assert set(boards[0]["name"]) == {"cnn-a", "cnn-b"} and set(boards[0]["kind"]) == {"partial"}
    assert_same_runs(ws, sequential)
    done = {(e["run"], e["fold"]) for e in events if e.get("stage") == "fold_done"}
    assert done == {(r, k) for r in ("cnn-a", "cnn-b") for k in range(3)}
    workers = {e["worker"] for e in events if "worker" in e}
    assert len(workers) >= 2 and all(w.split(":")[1] != str(os.getpid()) for w in workers)  # other processes
    assert killed
    starts = [e for e in events if e.get("stage") == "fold_start" and (e["run"], e["fold"]) == ("cnn-b", 1)]
    assert len(starts) == 2 and starts[1]["worker"] != killed[0]  # ran again, in another process
    assert any(e.get("stage") == "resume" and (e["run"], e["fold"]) == ("cnn-b", 1) for e in events)
