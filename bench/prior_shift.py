"""A planted label shift through the CLI: does `ens stack --compare --write --test-prior em` adapt it?

Synthetic runs (`ensemble.stack.synthetic.make_runs`) whose test rows are drawn with another class prior
than the training rows, each run's class-conditional predictions unchanged: a pure label shift. Each
case is imported into a fresh workspace, stacked with `--test-prior em` and `--test-prior none`, and the
written files are scored against the planted labels. Prints one row a case: the prior EM used, the
true prior, both scores and what fell back. Usage: `python bench/prior_shift.py [--seeds 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.metrics.dacon import competition_score
from ensemble.stack.synthetic import make_runs

LABELS = ["fake", "real"]
CASES = [  # (test rows, runs, the runs' class separation: weakest, strongest)
    (300, 1, 1.0, 1.0), (300, 4, 1.0, 1.5), (500, 3, 0.6, 1.0), (800, 1, 1.0, 1.0), (800, 4, 1.0, 1.5),
]


def _write(path: Path, ids: list[str], values: np.ndarray) -> Path:
    pd.DataFrame({"id": ids, **{label: values[:, j] for j, label in enumerate(LABELS)}}).to_csv(path, index=False)
    return path


def _ens(*args, cwd: Path) -> str:
    done = subprocess.run([str(Path(sys.executable).with_name("ens")), *map(str, args)], cwd=cwd, text=True,
                          capture_output=True, env={**os.environ, "ENS_WORKSPACE": str(cwd)})
    if done.returncode:
        raise SystemExit(f"ens {' '.join(map(str, args))} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def case(n_test: int, n_runs: int, weakest: float, strongest: float, seed: int, root: Path) -> dict:
    d = make_runs(2000, n_test, n_runs=n_runs, prior=(0.3, 0.3), test_prior=(0.6, 0.5),
                  strength=np.linspace(weakest, strongest, n_runs), seed=seed)
    comp, ws = root / "comp", root / "ws"
    comp.mkdir()
    ws.mkdir()
    train_ids = [f"TRAIN_{i:05d}" for i in range(len(d.y))]
    test_ids = [f"TEST_{i:05d}" for i in range(len(d.y_test))]
    pd.DataFrame({"id": train_ids, "path": [f"./train/{i}.ogg" for i in train_ids],
                  **{label: d.y[:, j].astype(int) for j, label in enumerate(LABELS)}}).to_csv(comp / "train.csv", index=False)
    pd.DataFrame({"id": test_ids, "path": [f"./test/{i}.ogg" for i in test_ids]}).to_csv(comp / "test.csv", index=False)
    _write(comp / "sample_submission.csv", test_ids, np.full((len(test_ids), 2), 0.5))
    answers = _write(root / "answers.csv", test_ids, d.y_test)
    runs = []
    for r in range(n_runs):
        oof, test = _write(root / f"oof{r}.csv", train_ids, d.P[:, r]), _write(root / f"test{r}.csv", test_ids, d.P_test[:, r])
        _ens("import", f"r{r}", "--oof", oof, "--test", test, "--data", comp, cwd=ws)
        runs.append(f"r{r}")
    return em_against_none(ws, runs, d.y_test)


def em_against_none(ws: Path, runs: list[str], y_test: np.ndarray) -> dict:
    """`--compare --write` with `--test-prior em` and `none`: each written pick's score on the answers, the
    true test prior, the prior EM used, the method and any fallback."""
    out = {}
    for prior in ("em", "none"):
        _ens("stack", *runs, "--compare", "--write", "--test-prior", prior, "--name", prior, cwd=ws)
        sub = pd.read_csv(ws / "submissions" / f"{prior}.csv")
        out[prior] = competition_score(y_test, sub[LABELS].to_numpy()).score
    recipe = json.loads((ws / "submissions" / "em.json").read_text())["recipe"]
    out.update(true=y_test.mean(axis=0).round(3).tolist(), used=np.round(recipe["prior"]["prior_used"], 3).tolist(),
               method=recipe["method"], fallback=recipe["prior"]["fallback"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'test rows':>9} {'runs':>4} {'seed':>4}  {'true prior':<14} {'EM used':<14} {'em':>7} {'none':>7} "
          f"{'gain':>6}  method / fallback")
    gains = []
    for n_test, n_runs, weakest, strongest in CASES:
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                r = case(n_test, n_runs, weakest, strongest, seed, Path(tmp))
            gains.append(1 - r["em"] / r["none"])
            print(f"{n_test:>9} {n_runs:>4} {seed:>4}  {str(r['true']):<14} {str(r['used']):<14} {r['em']:>7.4f} "
                  f"{r['none']:>7.4f} {gains[-1]:>6.1%}  {r['method']} {r['fallback'] or ''}", flush=True)
    print(f"median gain of em over none: {np.median(gains):.1%} (min {min(gains):.1%})")


if __name__ == "__main__":
    main()
