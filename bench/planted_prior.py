"""The planted label shift through the CLI as a user meets it: six imported runs (one inverted, one with
its fake/real columns swapped, one over-confident, two near-copies), train mix 0.50/0.50 → test
0.70/0.35 and nothing else changed. Stacks `--compare --write` with `--test-prior em` and `none` and
scores both written files against the planted labels. Usage: `python bench/planted_prior.py [--seeds 1]
[--oof-rows 4000 --test-rows 3000]`.
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

from ensemble.stack.planted import planted_runs, write_competition
from ensemble.metrics.dacon import competition_score

LABELS = ["fake", "real"]


def _ens(*args, cwd: Path) -> str:
    done = subprocess.run([str(Path(sys.executable).with_name("ens")), *map(str, args)], cwd=cwd, text=True,
                          capture_output=True, env={**os.environ, "ENS_WORKSPACE": str(cwd)})
    if done.returncode:
        raise SystemExit(f"ens {' '.join(map(str, args))} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def case(n_oof: int, n_test: int, seed: int, root: Path) -> dict:
    runs = planted_runs(n_oof, n_test, seed=seed)
    paths = write_competition(runs, root)
    ws = root / "ws"
    ws.mkdir()
    for name in runs.names:
        _ens("import", name, "--oof", paths[f"{name}_oof"], "--test", paths[f"{name}_test"], "--data", paths["comp"], cwd=ws)
    out = {}
    for prior in ("em", "none"):
        _ens("stack", *runs.names, "--compare", "--write", "--test-prior", prior, "--name", prior, cwd=ws)
        sub = pd.read_csv(ws / "submissions" / f"{prior}.csv")
        out[prior] = competition_score(runs.y_test, sub[LABELS].to_numpy()).score
    recipe = json.loads((ws / "submissions" / "em.json").read_text())["recipe"]
    out.update(true=runs.y_test.mean(axis=0).round(3).tolist(), used=np.round(recipe["prior"]["prior_used"], 3).tolist(),
               method=recipe["method"], fallback=recipe["prior"]["fallback"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--oof-rows", type=int, default=4000)
    parser.add_argument("--test-rows", type=int, default=3000)
    args = parser.parse_args()
    print(f"{'seed':>4}  {'true mix':<14} {'EM used':<14} {'em':>7} {'none':>7} {'gain':>6}  method / fallback")
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            r = case(args.oof_rows, args.test_rows, seed, Path(tmp))
        gain = 1 - r["em"] / r["none"]
        print(f"{seed:>4}  {str(r['true']):<14} {str(r['used']):<14} {r['em']:>7.4f} {r['none']:>7.4f} {gain:>6.1%}  "
              f"{r['method']} {r['fallback'] or ''}", flush=True)


if __name__ == "__main__":
    main()
