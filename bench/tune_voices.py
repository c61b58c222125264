"""`ens tune` on a real competition folder: a 10-trial search, then the found options against the defaults.

    python bench/tune_voices.py --data ../shared/data/voices-dev --out /tmp/tune-bench [--trials 10]

1. `tune` the log-mel CNN (the small family that learns on a CPU) on fold 0 of 3 shared folds: wall
   time, CPU time and the load average around it.
2. `finetune` the `--compare-folds` (default: fold 1 only, a fold the search did not score on) twice —
   the base options ("defaults") and the best trial's options ("tuned", read back from the written
   run.toml) — and score the fold models' test predictions (mean fold logit) on `test_answers.csv`, with
   `ens score`'s code. The answers are read only for that last step.
See bench/tune_voices.md for the numbers measured.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tomllib
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.artifacts.competition import Competition
from ensemble.artifacts.workspace import Workspace
from ensemble.commands.finetune import FinetuneOptions, finetune
from ensemble.commands.score import score_file
from ensemble.commands.tune import TuneOptions, tune

BASE = FinetuneOptions(model="logmel-cnn", folds=3, epochs=2, batch_size=32, grad_accum=1, max_seconds=1.5)


def test_submission(ws: Workspace, comp: Competition, run: str, folds: list[int], path: Path) -> Path:
    """The folds' test predictions as a submission: the mean of their logits, in sample order."""
    test = pd.concat([pd.read_parquet(ws.run_dir(run) / f"fold{k}" / "test.parquet") for k in folds])
    p = test[comp.labels].to_numpy(dtype=np.float64).clip(1e-6, 1 - 1e-6)
    logits = pd.DataFrame(np.log(p / (1 - p)), columns=comp.labels).assign(id=test["id"].to_numpy())
    mean = logits.groupby("id")[comp.labels].mean()
    order = pd.read_csv(comp.root / "sample_submission.csv")["id"].astype(str)
    out = (1 / (1 + np.exp(-mean.loc[order]))).reset_index()
    out.to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="competition folder with test_answers.csv")
    parser.add_argument("--out", type=Path, default=Path("/tmp/tune-bench"))
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--compare-folds", default="1", help="folds trained for the comparison, e.g. 0,1,2")
    args = parser.parse_args()
    ws = Workspace(args.out)
    comp = Competition.load(ws.data_dir(args.data))

    load0, wall0, cpu0 = os.getloadavg(), time.perf_counter(), time.process_time()
    events = []
    result = tune(ws, comp, BASE, TuneOptions(trials=args.trials, folds=[0], study="cnn"),
                  progress=lambda e: events.append(e) if e.get("stage") == "trial" else None)
    search = {"wall_s": round(time.perf_counter() - wall0, 1), "cpu_s": round(time.process_time() - cpu0, 1),
              "load_before": [round(x, 2) for x in load0], "load_after": [round(x, 2) for x in os.getloadavg()],
              "trials_run": result.ran, "trials": result.trials, "best": result.best}
    print(json.dumps({k: v for k, v in search.items() if k != "trials"}, indent=1))
    saved = args.out / "bench.json"
    if result.ran == 0 and saved.is_file():  # a resumed call: the search was measured by the first one
        search = json.loads(saved.read_text())["search"]
    tuned = replace(BASE, **tomllib.loads(result.toml_path.read_text()))

    scores = {}
    folds = [int(k) for k in args.compare_folds.split(",")]
    for name, opts in (("cnn-defaults", BASE), ("cnn-tuned", tuned)):
        t0 = time.perf_counter()
        finetune(ws, comp, replace(opts, name=name, only_folds=folds))
        info = [json.loads((ws.run_dir(name) / f"fold{k}" / "fold.json").read_text()) for k in folds]
        sub = test_submission(ws, comp, name, folds, args.out / f"{name}.csv")
        parts, _ = score_file(sub, comp.root / "test_answers.csv")
        scores[name] = {"test": parts.as_dict(), "held_out": [f["cv"]["score"] for f in info],
                        "finetune_s": round(time.perf_counter() - t0, 1), "options": asdict(opts),
                        "n_trainable": [f["model"]["n_trainable"] for f in info]}
        print(name, json.dumps({k: v for k, v in scores[name].items() if k != "options"}))
    (args.out / "bench.json").write_text(json.dumps({"search": search, "runs": scores}, indent=1, default=str))


if __name__ == "__main__":
    main()
