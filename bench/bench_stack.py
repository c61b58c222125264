"""Stacking at competition scale: every method with nested CV (5 folds) on synthetic runs, and the whole
comparison (`ens stack --compare`: every candidate the decision weighs, then the decision).

55,438 OOF rows × 10 runs × 2 labels and 50,000 test rows, with one inverted, one swapped, one
over-confident and one noise run among correlated good ones. Prints the machine's load, one row per
method: wall and CPU seconds for `stack` (nested CV + in-sample fit + test prediction + bootstrap of the
gain), nested and in-sample scores; then the comparison's wall and CPU seconds and its choice.
Usage: `python bench/bench_stack.py [method ...] [--compare-only | --no-compare]`.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from ensemble.stack import BLENDERS, stack
from ensemble.stack.nested import best_single_run
from ensemble.stack.pipeline import compare
from ensemble.stack.request import StackInputs, StackRequest
from ensemble.stack.synthetic import make_runs


def _load() -> str:
    return "load " + "/".join(f"{v:.1f}" for v in os.getloadavg())


def main(args: list[str]) -> None:
    methods = [a for a in args if not a.startswith("--")]
    start = time.perf_counter()
    d = make_runs(55_438, 50_000, n_runs=10, n_folds=5, inverted=[1], swapped=[2], overconfident=[3],
                  noise=[9], strength=np.linspace(0.6, 1.0, 10), seed=0)
    best, singles = best_single_run(d.P, d.y)
    print(f"data: {d.P.shape} OOF, {d.P_test.shape} test, made in {time.perf_counter() - start:.1f} s; "
          f"cores {os.cpu_count()}, {_load()}; best single run {best}: {singles[best]:.4f}")
    inputs = StackInputs(runs=[f"run{r}" for r in range(d.P.shape[1])], labels=["fake", "real"], test=d.P_test,
                         oof=d.P, y=d.y, folds=d.folds)
    if "--compare-only" not in args:
        print(f"{'method':<10} {'wall s':>7} {'CPU s':>7} {'nested':>8} {'AUC':>7} {'Brier':>7} {'ECE':>7} "
              f"{'in-sample':>9} {'gap':>8}  load")
        for method in methods or list(BLENDERS):
            cpu = time.process_time()
            r = stack(inputs, StackRequest(method=method))
            n = r.nested
            print(f"{method:<10} {r.seconds:>7.1f} {time.process_time() - cpu:>7.1f} {n.score:>8.4f} {n.auc:>7.4f} "
                  f"{n.brier:>7.4f} {n.ece:>7.4f} {r.in_sample.score:>9.4f} {r.optimism:>8.4f}  {_load()}", flush=True)
    if "--no-compare" not in args:
        cpu, wall = time.process_time(), time.perf_counter()
        c = compare(inputs, StackRequest(method="auto"), methods=methods or None)
        print(f"compare: {len(c.candidates)} candidates, wall {time.perf_counter() - wall:.1f} s, CPU "
              f"{time.process_time() - cpu:.1f} s, chose {c.chosen.name}; {_load()}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
