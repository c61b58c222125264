"""Stacking at competition scale: every method with nested CV (5 folds) on synthetic runs.

55,438 OOF rows × 10 runs × 2 labels and 50,000 test rows, with one inverted, one swapped, one
over-confident and one noise run among correlated good ones. Prints one row per method: seconds
for `stack` (nested CV + in-sample fit + test prediction + bootstrap of the gain), nested and
in-sample scores. Usage: `python bench/bench_stack.py [method ...]`.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from ensemble.stack import BLENDERS, stack
from ensemble.stack.request import StackInputs, StackRequest
from ensemble.stack.nested import best_single_run
from ensemble.stack.synthetic import make_runs


def main(methods: list[str]) -> None:
    start = time.perf_counter()
    d = make_runs(55_438, 50_000, n_runs=10, n_folds=5, inverted=[1], swapped=[2], overconfident=[3],
                  noise=[9], strength=np.linspace(0.6, 1.0, 10), seed=0)
    best, singles = best_single_run(d.P, d.y)
    print(f"data: {d.P.shape} OOF, {d.P_test.shape} test, made in {time.perf_counter() - start:.1f} s; "
          f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}; best single run {best}: "
          f"{singles[best]:.4f}")
    print(f"{'method':<10} {'seconds':>8} {'nested':>8} {'AUC':>7} {'Brier':>7} {'ECE':>7} {'in-sample':>9} {'gap':>8}")
    inputs = StackInputs(runs=[f"run{r}" for r in range(d.P.shape[1])], labels=["fake", "real"], test=d.P_test,
                         oof=d.P, y=d.y, folds=d.folds)
    for method in methods or list(BLENDERS):
        r = stack(inputs, StackRequest(method=method))
        n = r.nested
        print(f"{method:<10} {r.seconds:>8.1f} {n.score:>8.4f} {n.auc:>7.4f} {n.brier:>7.4f} {n.ece:>7.4f} "
              f"{r.in_sample.score:>9.4f} {r.optimism:>8.4f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
