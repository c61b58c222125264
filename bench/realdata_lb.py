"""The public leaderboard simulated honestly on a real competition folder with answers (voices-dev,
voices-dev-src): do the probes read the test's label mix, and does `--test-prior lb` help the pick?

    python bench/realdata_lb.py --data ../shared/data/voices-dev --out /tmp/rdlb --runs feat-lgbm

1. Train the asked runs of bench/realdata.py's families (bench/realdata_multiclass.py's for a multiclass
   folder) where the workspace lacks them, and the VAD feature set (multi-label only).
2. `ens lb probe`'s submissions are scored on a seeded public part of the test (`--public-share`, default
   0.5, drawn with `--seed`) with the workspace's metric, rounded to `--digits` decimals (5: what the
   contest site shows), and recorded as their public scores. Nothing else reads the answers.
3. The written pick (`--compare --write`) with `--test-prior none`, `em` and `lb`, scored on the whole
   test's answers: score and ECE; the probed mix against the whole test's mix and the public part's.
4. Each run raw and with `--calibrate auto`, with and without the probed mix: the answers' ECE, and the
   calibrator each label got with the rule's reason.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from ensemble.artifacts.competition import Competition  # noqa: E402
from ensemble.artifacts.workspace import Workspace  # noqa: E402
from ensemble.commands.lb import record_leaderboard  # noqa: E402
from ensemble.leaderboard.workspace import probed_mix, write_probes  # noqa: E402
from ensemble.commands.score import read_answers  # noqa: E402
from ensemble.commands.stack import run_stack  # noqa: E402
from ensemble.metrics.scorer import get_scorer  # noqa: E402
from ensemble.stack.explain import calibrator_lines  # noqa: E402
from ensemble.stack.request import StackRequest  # noqa: E402


def _ece(y: np.ndarray, p: np.ndarray) -> float:
    """Mean over label columns of the competition's ECE (multiclass: over the one-hot columns)."""
    from ensemble.metrics.dacon import competition_score

    return float(competition_score(y, p).ece)


def train(ws: Workspace, comp: Competition, runs: list[str], folds: int) -> None:
    from realdata import train_missing

    if comp.task.exclusive:
        from realdata_multiclass import FAMILIES
        sets = {}
    else:
        from realdata import FAMILIES, FEATURE_SETS as sets
    unknown = [name for name in runs if name not in FAMILIES]
    if unknown:
        raise SystemExit(f"--runs: {unknown[0]!r} is no family of this task's; choose from {', '.join(FAMILIES)}")
    train_missing(ws, comp, FAMILIES, runs, folds, sets)


def probe(ws: Workspace, comp: Competition, y: np.ndarray, share: float, digits: int, seed: int) -> np.ndarray:
    """Write the probes, score them on a seeded public part of the test, record the rounded scores."""
    names = write_probes(ws, comp, digits, share, force=True)
    public = np.random.default_rng(seed).permutation(len(y))[: int(round(share * len(y)))]
    scorer = get_scorer(ws.metric(comp.task), comp.task)
    for name in names:
        import pandas as pd

        p = pd.read_csv(ws.submissions_dir / f"{name}.csv")[comp.labels].to_numpy(dtype=float)
        record_leaderboard(ws, name, round(float(scorer(y[public], p[public])), digits), None)
    return public


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", required=True, help="comma-separated families to train and stack")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--metric", help="the workspace's metric (multiclass: logloss)")
    parser.add_argument("--public-share", type=float, default=0.5)
    parser.add_argument("--digits", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    ws = Workspace(args.out.resolve())
    comp = Competition.load(ws.data_dir(args.data))
    if args.metric:
        ws.remember_metric(comp.task, args.metric)
    runs = args.runs.split(",")
    train(ws, comp, runs, args.folds)
    truth, labels = read_answers(args.data / "test_answers.csv", comp.labels)
    y = truth.set_index("id").loc[comp.test_ids, labels].to_numpy(dtype=float)
    public = probe(ws, comp, y, args.public_share, args.digits, args.seed)
    mix = probed_mix(ws, comp)
    print(f"metric {ws.metric(comp.task)}; public part {len(public)} of {len(y)} rows (seed {args.seed}), scores "
          f"rounded to {args.digits} decimals")
    for j, label in enumerate(mix.labels):
        k = min(j, y.shape[1] - 1)
        print(f"  {label}: probed {mix.shares[j]:.4f} ± {mix.half_width[j]:.4f}; public part {y[public, k].mean():.4f}; "
              f"whole test {y[:, k].mean():.4f}; |probed − whole| {abs(mix.shares[j] - y[:, k].mean()):.4f}")
    scorer = get_scorer(ws.metric(comp.task), comp.task)
    asked = StackRequest(runs=tuple(runs), compare=True, write=False)
    print("\n| written pick | method | answers score | answers ECE |\n| --- | --- | --- | --- |")
    for prior in ("none", "em", "lb"):
        if prior == "em" and comp.task.exclusive:
            continue
        done = run_stack(ws, comp, replace(asked, test_prior=prior, write=True, force=True, name=f"pick-{prior}"))
        p = done.result.test
        print(f"| --test-prior {prior} | {done.sidecar.recipe.method} | {scorer(y, p):.4f} | {_ece(y, p):.4f} |",
              flush=True)
    print("\n| run | prior | raw ECE | --calibrate auto ECE | worse by | calibrators (rule) |\n| --- | --- | --- | --- | --- | --- |")
    for run in runs:
        for prior in ("none", "lb"):
            raw = run_stack(ws, comp, StackRequest(runs=(run,), method="single", calibrate="none", test_prior=prior,
                                                   write=False)).result
            cal = run_stack(ws, comp, StackRequest(runs=(run,), method="single", calibrate="auto", test_prior=prior,
                                                   write=False)).result
            worse = _ece(y, cal.test) - _ece(y, raw.test)
            rules = "; ".join(calibrator_lines(cal.recipe)) or "none"
            print(f"| {run} | {prior} | {_ece(y, raw.test):.4f} | {_ece(y, cal.test):.4f} | {worse:+.4f} | {rules} |",
                  flush=True)
    print(f"\nload average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}; "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
