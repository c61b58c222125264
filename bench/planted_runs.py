"""Write the planted label-shift runs (`ensemble.stack.planted`) as a competition folder + importable CSVs.

Usage: `python bench/planted_runs.py --oof-rows 4000 --test-rows 3000 --out DIR [--seed 0]`, then for
each run `ens import NAME --oof DIR/runs/NAME_oof.csv --test DIR/runs/NAME_test.csv --data DIR/comp`
(the commands are printed). `DIR/answers.csv` holds the test labels. The contest's size is
`--oof-rows 55438 --test-rows 50000`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ensemble.stack.planted import planted_runs, write_competition


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oof-rows", type=int, default=4000)
    parser.add_argument("--test-rows", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs = planted_runs(args.oof_rows, args.test_rows, seed=args.seed)
    paths = write_competition(runs, args.out)
    for name in runs.names:
        print(f"ens import {name} --oof {paths[name + '_oof']} --test {paths[name + '_test']} --data {paths['comp']}")


if __name__ == "__main__":
    main()
