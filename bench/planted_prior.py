"""The planted label shift through the CLI as a user meets it: six imported runs (one inverted, one with
its fake/real columns swapped, one over-confident, two near-copies), train mix 0.50/0.50 → test
0.70/0.35 and nothing else changed. Stacks `--compare --write` with `--test-prior em` and `none` and
scores both written files against the planted labels. Usage: `python bench/planted_prior.py [--seeds 1]
[--oof-rows 4000 --test-rows 3000]`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ensemble.stack.planted import planted_runs, write_competition
from prior_shift import _ens, em_against_none  # bench/ is the script's folder, so on sys.path


def case(n_oof: int, n_test: int, seed: int, root: Path) -> dict:
    runs = planted_runs(n_oof, n_test, seed=seed)
    paths = write_competition(runs, root)
    ws = root / "ws"
    ws.mkdir()
    for name in runs.names:
        _ens("import", name, "--oof", paths[f"{name}_oof"], "--test", paths[f"{name}_test"], "--data", paths["comp"], cwd=ws)
    return em_against_none(ws, list(runs.names), runs.y_test)


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
