"""The full pipeline on a real competition folder (e.g. ../shared/data/voices-dev), scored on its answers.

    python bench/realdata.py --data ../shared/data/voices-dev --out /tmp/realdata [--quick]

Fine-tunes each model family k-fold (ONNX, OOF, test-like OOF), stacks them with every method, writes
each method's submission and prints side by side: each run's CV, test-like CV and test score, every
stack method's nested-CV and test score, and the gain of the best stack over the best single run and
over `mean`. Nothing here is tuned to the answers: they are read only to score at the end.
See bench/realdata.md for the recipe and the numbers measured.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import pandas as pd

from ensemble.blend import compare_methods, method_names, stack_runs
from ensemble.competition import Competition
from ensemble.demo_run import score_all
from ensemble.finetune import FinetuneOptions, finetune
from ensemble.provenance import package_versions
from ensemble.submission import submission_frame, write_submission
from ensemble.workspace import Workspace

FAMILIES = {
    # run name: (model, options) — small models trained from scratch on 2 CPU cores: 3-s crops for training,
    # 3-s windows pooled over longer clips at inference, an update every batch (from scratch, small data)
    "cnn": ("logmel-cnn", {"epochs": 5, "batch_size": 32, "grad_accum": 1, "lr": 3e-3, "max_seconds": 3.0}),
    "w2v-tiny": ("tiny-wav2vec2", {"epochs": 5, "batch_size": 32, "grad_accum": 1, "lr": 5e-4, "max_seconds": 3.0}),
    # the same CNN on 1.5-s crops and windows, another seed: a view of the audio the 3-s model does not have
    "cnn-short": ("logmel-cnn", {"epochs": 5, "batch_size": 32, "grad_accum": 1, "lr": 3e-3, "max_seconds": 1.5,
                                 "seed": 1}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="competition folder with test_answers.csv")
    parser.add_argument("--out", type=Path, default=Path("realdata-workspace"), help="workspace to create")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one epoch per family (a smoke run)")
    args = parser.parse_args()

    started = time.perf_counter()
    ws = Workspace(args.out.resolve())
    comp = Competition.load(ws.data_dir(args.data))
    seconds = {}
    for name, (model, options) in FAMILIES.items():
        if name in ws.run_names():
            continue
        options = {**options, "epochs": 1} if args.quick else options
        t0 = time.perf_counter()
        finetune(ws, comp, FinetuneOptions(model=model, name=name, folds=args.folds, **options))
        seconds[name] = time.perf_counter() - t0
        print(f"{name}: {seconds[name]:.0f} s", flush=True)
    runs = list(FAMILIES)
    rows = compare_methods(ws, comp, runs)
    for method in method_names():
        result, sidecar = stack_runs(ws, comp, runs, method)
        write_submission(ws, f"stack-{method}", submission_frame(result.test, comp), comp, sidecar, force=True)
    scores = score_all(ws, comp, args.data / "test_answers.csv")
    print_tables(scores, rows, time.perf_counter() - started)


def print_tables(scores: pd.DataFrame, compare_rows: list[dict], seconds: float) -> None:
    pd.set_option("display.width", 120)
    runs = scores[scores["kind"] == "run"]
    subs = scores[scores["kind"] == "submission"].copy()
    nested = {r["method"]: r for r in compare_rows}
    subs["method"] = subs["name"].str.removeprefix("stack-")
    subs["nested_clean"] = subs["method"].map(lambda m: nested.get(m, {}).get("score_clean"))
    print(f"\n{platform.platform()}, python {platform.python_version()}, "
          + ", ".join(f"{k} {v}" for k, v in package_versions().items() if k in ("torch", "transformers", "onnxruntime", "lightgbm")))
    print(f"total {seconds / 60:.1f} min\n\nruns (lower is better)")
    print(runs[["name", "method", "cv", "cv_testlike", "test"]].to_string(index=False, float_format="%.4f"))
    print("\nstack methods: nested CV (test-like, clean) and test score")
    print(subs[["method", "cv_testlike", "nested_clean", "test"]].sort_values("cv_testlike")
          .to_string(index=False, float_format="%.4f"))
    best_stack = subs.loc[subs["cv_testlike"].astype(float).idxmin()]
    best_run = runs.loc[runs["cv_testlike"].astype(float).idxmin()]
    mean = subs[subs["method"] == "mean"].iloc[0]
    print(f"\nbest stack by test-like nested CV: {best_stack['method']} (test {best_stack['test']:.4f}); "
          f"best single run by test-like CV: {best_run['name']} (test {best_run['test']:.4f}); mean: {mean['test']:.4f}")
    print(f"gain of the chosen stack: {best_run['test'] - best_stack['test']:+.4f} over the best single run, "
          f"{mean['test'] - best_stack['test']:+.4f} over mean (positive = better)")


if __name__ == "__main__":
    main()
