"""A workspace at the fake-voice contest's size with six imported runs of known faults, for timing
`ens stack ... --compare` (issue 34).

55,438 train clips (5 folds) and 50,000 test clips, two labels (fake, real: one of them per clip).
Runs: `good`; `inverted` (1 − p); `swapped` (the fake and real columns exchanged); `overconfident`
(logits × 4); `twin_a`, `twin_b` (near-copies of `good`: its logits plus a little noise of their own).
Usage: `python bench/contest_workspace.py --out DIR [--oof-rows N --test-rows M]`, then
`cd DIR/ws && ens stack good inverted swapped overconfident twin_a twin_b --compare`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

RUNS = ("good", "inverted", "swapped", "overconfident", "twin_a", "twin_b")


def _probabilities(fake: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`(rows, 2)` fake/real probabilities of each run for 0/1 `fake` targets."""
    n = len(fake)
    signal = (2 * fake - 1)[:, None] * np.array([1.0, -1.0])
    shared = rng.standard_normal((n, 2))
    z_good = 1.1 * signal + 1.2 * shared
    z = {
        "good": z_good,
        "inverted": -(1.0 * signal + 1.2 * shared + 0.6 * rng.standard_normal((n, 2))),
        "swapped": (1.0 * signal + 1.2 * shared + 0.6 * rng.standard_normal((n, 2)))[:, ::-1],
        "overconfident": 4.0 * (0.9 * signal + 1.2 * shared + 0.6 * rng.standard_normal((n, 2))),
        "twin_a": z_good + 0.05 * rng.standard_normal((n, 2)),
        "twin_b": z_good + 0.05 * rng.standard_normal((n, 2)),
    }
    return {k: np.round(1 / (1 + np.exp(-v)), 6) for k, v in z.items()}


def _frame(ids: list[str], p: np.ndarray, folds: np.ndarray | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"id": ids})
    if folds is not None:
        frame["fold"] = folds
    frame["fake"], frame["real"] = p[:, 0], p[:, 1]
    return frame


def build(out: Path, oof_rows: int, test_rows: int, seed: int = 0) -> Path:
    """Write the competition folder and the workspace with the six runs imported; returns the workspace."""
    rng = np.random.default_rng(seed)
    comp, ws, csvs = out / "comp", out / "ws", out / "csv"
    for d in (comp, ws, csvs):
        d.mkdir(parents=True, exist_ok=True)
    train_ids = [f"TRAIN_{i:06d}" for i in range(oof_rows)]
    test_ids = [f"TEST_{i:06d}" for i in range(test_rows)]
    fake = (rng.random(oof_rows) < 0.5).astype(np.float64)
    fake_test = (rng.random(test_rows) < 0.5).astype(np.float64)
    pd.DataFrame({"id": train_ids, "path": [f"./train/{i}.ogg" for i in train_ids],
                  "label": np.where(fake == 1, "fake", "real")}).to_csv(comp / "train.csv", index=False)
    pd.DataFrame({"id": test_ids, "path": [f"./test/{i}.ogg" for i in test_ids]}).to_csv(comp / "test.csv", index=False)
    pd.DataFrame({"id": test_ids, "fake": 0.5, "real": 0.5}).to_csv(comp / "sample_submission.csv", index=False)
    folds = rng.permutation(oof_rows) % 5
    oof, test = _probabilities(fake, rng), _probabilities(fake_test, rng)
    env = {**os.environ, "ENS_WORKSPACE": str(ws)}
    for name in RUNS:
        _frame(train_ids, oof[name], folds).to_csv(csvs / f"{name}_oof.csv", index=False)
        _frame(test_ids, test[name]).to_csv(csvs / f"{name}_test.csv", index=False)
        subprocess.run([sys.executable, "-m", "ensemble.cli.app", "import", name, "--test", str(csvs / f"{name}_test.csv"),
                        "--oof", str(csvs / f"{name}_oof.csv"), "--data", str(comp), "--force"],
                       check=True, cwd=ws, env=env)
    return ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--oof-rows", type=int, default=55_438)
    parser.add_argument("--test-rows", type=int, default=50_000)
    args = parser.parse_args()
    print(build(args.out, args.oof_rows, args.test_rows))


if __name__ == "__main__":
    main()
