"""`ens demo`: the whole pipeline on embedded audio, in about a minute on 2 CPU cores.

Generates a small competition folder (`ensemble.demo.synth`), trains two model families that err in
different ways (per-clip features + LightGBM, seconds per fold, and the log-mel CNN), adds a
label-flipped copy of one of them (the kind of run `flip` must catch), re-predicts the test split with
ONNX Runtime,
compares every stacking candidate by nested CV, writes what the decision rule chooses and scores
everything on the answer key. The tiny random-init transformer it used to train learnt nothing on a
CPU in the time (answer-key AUC 0.54) and took a third of the demo's time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

import os
import shutil

from ensemble.artifacts.competition import Competition
from ensemble.artifacts.io import aside_path, recover_dir
from ensemble.artifacts.locking import lock_beside, name_lock
from ensemble.artifacts.owned import check_replaceable, is_complete, mark
from ensemble.errors import ExistsError
from ensemble.artifacts.workspace import Workspace
from ensemble.progress import Progress

if TYPE_CHECKING:
    from ensemble.stack.pipeline import Comparison


DEMO_MODELS = (
    # (run name, model, options): small enough for 2 CPU cores, different enough to disagree; windows of
    # `max_seconds` in training, the same windows pooled over the 5-s test clips. The classical family sees
    # 5 augmented passes over the training rows, as in bench/realdata.py (features of each example, then
    # LightGBM per label; 8 passes cost 5 s more for an answer-key score of 0.1758 against 0.1769). The CNN's
    # 10 epochs (15 before) keep the demo within a minute on 2 idle cores; it still learns (answer-key AUC 0.67).
    ("feat-lgbm", "features-lgbm", {"epochs": 5, "batch_size": 32, "max_seconds": 3.0}),
    ("cnn", "logmel-cnn", {"epochs": 10, "lr": 3e-3, "batch_size": 16, "grad_accum": 1, "max_seconds": 1.5}),
)
FLIPPED = "cnn-flipped"


@dataclass
class DemoResult:
    workspace: Path
    data: Path
    submission: Path
    compare: Comparison  # every candidate and the decision the submission follows
    scores: pd.DataFrame  # name, kind, cv, cv_testlike, test (score on the answer key)


def _swap_columns(frame: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Predictions whose label columns are swapped: the mistake `flip` must catch."""
    out = frame.copy()
    out[labels] = frame[labels[::-1]].to_numpy()
    return out


def add_flipped_run(ws: Workspace, comp: Competition, source: str, name: str) -> None:
    """A copy of run `source` with fake/real swapped in every prediction file (no ONNX folds)."""
    from dataclasses import replace

    from ensemble.artifacts.folds import load_folds
    from ensemble.artifacts.runs import RUN_MANIFEST_FILE, OOF_FILE, TEST_FILE, TESTLIKE_OOF_FILE, read_manifest, write_manifest, write_run_file
    from ensemble.artifacts.records import CVScores
    from ensemble.metrics.frames import cv_metrics, score_frame
    from ensemble.artifacts.testlike_set import load_testlike

    src, dst = ws.run_dir(source), ws.run_dir(name)
    dst.mkdir(parents=True, exist_ok=True)
    frames = {f: _swap_columns(pd.read_parquet(src / f), comp.labels) for f in (OOF_FILE, TEST_FILE, TESTLIKE_OOF_FILE)}
    metrics = CVScores.from_dict(cv_metrics(frames[OOF_FILE], load_folds(ws), comp.labels), dst / RUN_MANIFEST_FILE)
    metrics.cv_testlike = score_frame(frames[TESTLIKE_OOF_FILE], load_testlike(ws), comp.labels).as_dict()
    manifest = replace(read_manifest(src / RUN_MANIFEST_FILE), name=name, kind="derived", derived_from=source,
                       transform="label columns swapped", metrics=metrics, folds=None,
                       files={f: write_run_file(frame, dst, f) for f, frame in frames.items()})
    write_manifest(dst, manifest)


def share_cpu_politely(max_threads: int = 2) -> None:
    """Keep torch's intra-op pool small and its OpenMP workers from spin-waiting, so a shared machine is
    not slowed for everyone (the demo's models are too small to gain from more threads). Waiting policy
    only takes effect if torch is not imported yet."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(max(1, min(max_threads, os.cpu_count() or 1)))


def run_demo(out: Path, force: bool = False, seed: int = 0, progress: Progress | None = None) -> DemoResult:
    """Generate, fine-tune, re-predict with ONNX Runtime, stack, submit and score; everything under `out`.

    `--force` replaces only a folder an earlier demo made (its `.ens-output.json`); the old demo is kept
    aside until the new one is complete, and put back if this one fails (or, killed, by the next demo).
    """
    emit = progress or (lambda event: None)
    share_cpu_politely()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with name_lock(lock_beside(out), f"demo folder {out}"):
        recover_dir(out, is_complete)
        if out.exists() and not (out.is_dir() and not any(out.iterdir())) and not force:
            raise ExistsError(f"{out} exists and is not empty; pass --force to replace the demo there")
        check_replaceable(out, force, "demo folder")
        aside = None
        if out.exists():  # kept whole until the new demo is complete (absolute paths in ens.toml: built in place)
            aside = aside_path(out)
            os.rename(out, aside)
        try:
            out.mkdir()
            mark(out, "demo", complete=False)
            result = _build_demo(out, seed, emit)
            mark(out, "demo")
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            if aside is not None:
                os.rename(aside, out)
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    return result


def _build_demo(out: Path, seed: int, emit: Progress) -> DemoResult:
    """The demo's competition, runs and submission, all under `out`."""
    from ensemble.commands.stack import run_stack
    from ensemble.stack.request import StackRequest
    from ensemble.demo import DemoSpec, generate_competition
    from ensemble.commands.finetune import FinetuneOptions, finetune
    from ensemble.commands.oof import run_oof

    data = out / "competition"
    emit({"stage": "generating demo audio", "folder": str(data)})
    generate_competition(data, DemoSpec(seed=seed), progress=emit)
    ws = Workspace((out / "workspace").resolve())
    comp = Competition.load(ws.data_dir(data))
    for name, model, options in DEMO_MODELS:
        emit({"stage": "fine-tuning", "run": name, "model": model})
        finetune(ws, comp, FinetuneOptions(model=model, name=name, folds=3, seed=seed, **options), progress=emit)
        emit({"stage": "onnx runtime", "run": name})  # the test split, as a submission is made of
        run_oof(ws, comp, name, splits=("test",), progress=emit)
    add_flipped_run(ws, comp, "cnn", FLIPPED)
    runs = [name for name, _, _ in DEMO_MODELS] + [FLIPPED]
    emit({"stage": "comparing stack methods", "runs": ", ".join(runs)})
    stacked = run_stack(ws, comp, StackRequest(runs=tuple(runs), method="auto", name="demo-auto", seed=seed, force=True))
    return DemoResult(ws.root, data, stacked.written.csv, stacked.comparison,
                      score_all(ws, comp, data / "test_answers.csv"))


def score_all(ws: Workspace, comp: Competition, answers: Path) -> pd.DataFrame:
    """Every run (folds aggregated) and submission scored on the answer key, beside its CV scores."""
    from ensemble.commands.board import board_frame
    from ensemble.artifacts.runs import load_run
    from ensemble.commands.score import read_answers
    from ensemble.metrics.frames import score_frame
    from ensemble.stack.inputs import test_tensor

    truth, labels = read_answers(answers, comp.labels)
    frame = board_frame(ws, fold=False)  # the written submission scored as itself too
    test_scores = []
    for row in frame.itertuples():
        if row.kind == "run":
            probs = test_tensor([load_run(ws, row.name)], comp)[:, 0, :]
            pred = pd.DataFrame(probs, columns=labels).assign(id=comp.test_ids.to_numpy())
        else:
            pred = pd.read_csv(ws.submissions_dir / f"{row.name}.csv", dtype={"id": str})
        test_scores.append(score_frame(pred, truth, labels).score)
    return frame.assign(test=test_scores)[["name", "kind", "method", "cv", "cv_testlike", "test"]]
