"""A real multiclass competition end to end (e.g. ../shared/data/voices-dev-src), scored on its answers.

    python bench/realdata_multiclass.py --data ../shared/data/voices-dev-src --out /tmp/realdata-mc

Fine-tunes a few model families k-fold (softmax heads, grouped folds, ONNX, OOF), runs
`ens stack --compare --write --metric logloss` (the decision rule's pick), and scores each run (its
test predictions, folds pooled) and the written pick on `test_answers.csv`: log loss, accuracy and
macro-F1, beside the references in the data's README. The answers are read only to score at the end;
nothing is tuned to them. See bench/realdata_multiclass.md for the numbers measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.artifacts.competition import open_competition
from ensemble.artifacts.runs import load_run
from ensemble.artifacts.workspace import Workspace
from ensemble.commands.finetune import FinetuneOptions, finetune
from ensemble.commands.score import read_answers
from ensemble.commands.stack import run_stack
from ensemble.stack.request import StackRequest
from ensemble.metrics.scorer import class_report
from ensemble.stack.inputs import test_tensor

FAMILIES = {
    # run name: (model, options) — cheap on 2 shared CPU cores: per-clip features with two estimators
    # (one multiclass estimator each), and a small log-mel CNN trained from scratch on 3-s crops
    "feat-lgbm": ("features-lgbm", {"epochs": 2, "max_seconds": 5.0}),
    "feat-logreg": ("features-logreg", {"epochs": 2, "max_seconds": 5.0}),
    "cnn": ("logmel-cnn", {"epochs": 4, "batch_size": 32, "grad_accum": 1, "lr": 3e-3, "max_seconds": 3.0}),
}
REFERENCES = [  # the data's README: summary features, fitted on train, scored on the answers
    ("reference: constant (train class shares)", 1.046, 0.500, 0.167),
    ("reference: summary features + logistic regression", 0.315, 0.900, 0.833),
    ("reference: summary features + LightGBM", 0.426, 0.890, 0.740),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="multiclass competition folder with test_answers.csv")
    parser.add_argument("--out", type=Path, default=Path("realdata-mc-workspace"), help="workspace to create")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--runs", default=",".join(FAMILIES), help="comma list of the families above")
    args = parser.parse_args()

    started = time.perf_counter()
    ws = Workspace(args.out.resolve())
    comp = open_competition(ws, args.data)
    if not comp.task.exclusive:
        raise SystemExit(f"{args.data}: not a multiclass task")
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    seconds = {}
    for name in runs:
        if name in ws.run_names():
            continue
        model, options = FAMILIES[name]
        t0 = time.perf_counter()
        finetune(ws, comp, FinetuneOptions(model=model, name=name, folds=args.folds, **options))
        seconds[name] = time.perf_counter() - t0
        print(f"{name}: {seconds[name]:.0f} s", flush=True)
    t0 = time.perf_counter()
    done = run_stack(ws, comp, StackRequest(runs=tuple(runs), compare=True, write=True, metric="logloss", force=True))
    seconds["stack --compare --write"] = time.perf_counter() - t0
    truth, labels = read_answers(args.data / "test_answers.csv", comp.labels)
    y = truth.set_index("id").loc[comp.test_ids, labels].to_numpy(dtype=np.float64)
    rows = []
    for name in runs:
        p = test_tensor([load_run(ws, name)], comp)[:, 0, :]
        cv = load_run(ws, name).manifest.cv
        rows.append(_row(f"run {name}", y, p, labels, cv["logloss"]))
    pick = pd.read_csv(done.written.csv).set_index("id").loc[comp.test_ids, labels].to_numpy(dtype=np.float64)
    rows.append(_row(f"pick ({done.comparison.chosen.name})", y, pick, labels, done.sidecar.cv["score"]))
    frame = pd.DataFrame(rows)
    best = frame[frame["name"].str.startswith("run ")]["test logloss"].min()
    print("| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns))
    for row in frame.itertuples(index=False):
        print("| " + " | ".join(v if isinstance(v, str) else f"{v:.3f}" for v in row) + " |")
    for name, ll, acc, f1 in REFERENCES:
        print(f"| {name} | – | {ll:.3f} | {acc:.3f} | {f1:.3f} |")
    print(f"\npick {done.comparison.chosen.name}: test log loss {frame.iloc[-1]['test logloss']:.4f} vs best single "
          f"run {best:.4f} → {'beat' if frame.iloc[-1]['test logloss'] < best - 1e-9 else 'did not beat'} it")
    print(f"decision: {done.comparison.decision.rule}")
    print()
    for row in done.comparison.sorted_rows():
        print(f"  {row['method']:<22} nested log loss {row['score']:.4f}" + (" *" if row.get("chosen") else ""))
    print(f"\nseconds: {', '.join(f'{k} {v:.0f}' for k, v in seconds.items())}; total {time.perf_counter() - started:.0f}; "
          f"load average {os.getloadavg()[0]:.1f}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")


def _row(name: str, y: np.ndarray, p: np.ndarray, labels: list[str], cv_logloss: float) -> dict:
    report = class_report(y, p, labels)
    return {"name": name, "CV log loss": cv_logloss, "test logloss": report["logloss"],
            "test accuracy": report["accuracy"], "test macro-F1": report["macro_f1"]}


if __name__ == "__main__":
    main()
