"""Mutation check: each entry breaks one behaviour on purpose; the tests selected for it must fail.

    python bench/mutations.py            # every mutation
    python bench/mutations.py -k prior   # those whose name contains "prior"
    python bench/mutations.py --list

For each mutation the repository is copied to a temporary folder (the working tree is never edited),
the exact `old` text is replaced by `new` in one file there, and the mutation's test selection runs in
the copy (`PYTHONPATH` and the working directory point at it). The selection is first run on an
unmutated copy, so a failure is the mutation's doing. Exit code 1 when a mutation SURVIVED (its tests
passed), when its `old` text is not found exactly once (STALE: the code moved on, update the entry), or
when its selection collects no test (NO TESTS). Run on demand, not in every CI run: about a minute
per mutation on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".git", ".venv", "demo", "__pycache__", ".pytest_cache", ".hypothesis", "*.egg-info")


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str            # relative to the repository root
    old: str             # exact text, found exactly once
    new: str
    tests: tuple[str, ...]  # pytest arguments: node ids, files, `-k` expressions


MUTATIONS = [
    Mutation("stack_runs ignores --test-prior", "ensemble/blend.py",
             "calibrate=calibrate, test_prior=prior, fit_on=fit_on,",
             'calibrate=calibrate, test_prior="none", fit_on=fit_on,',
             ("tests/test_stack_cli.py::test_numeric_test_prior_shifts_every_logit_by_hand",)),
    Mutation("check_compatible drops the data-fingerprint check", "ensemble/runs.py",
             "            if a != b:\n                raise ContractError(f\"runs {first.name!r} and {run.name!r} were made on different {what}",
             "            if a != b and key != \"data\":\n                raise ContractError(f\"runs {first.name!r} and {run.name!r} were made on different {what}",
             ("tests/", "-k", "fingerprint or other_data or different_data")),
    Mutation("fold test predictions averaged as probabilities", "ensemble/stack_inputs.py",
             "    return sigmoid(logit(probs).mean(axis=axis))",
             "    return probs.mean(axis=axis)",
             ("tests/", "-k", "fold_aggregation or mean_of_fold_logits")),
    Mutation("validate_submission drops the row-order check", "ensemble/submission.py",
             "    if order.any():", "    if False:",
             ("tests/test_import_score_board.py::test_submission_rows_must_be_in_sample_order",)),
    Mutation("run and submission names not validated", "ensemble/workspace.py",
             'if not name or name.startswith(".") or not set(name) <= allowed:', "if False:",
             ("tests/test_bad_inputs_stack.py", "-k", "name")),
    Mutation("board ranks by clean CV, not the test-like score", "ensemble/board.py",
             'key = frame["cv_testlike"].where(frame["cv_testlike"].notna(), frame["cv"]).astype(float)',
             'key = frame["cv"].astype(float)',
             ("tests/test_import_score_board.py::test_board_ranks_by_the_test_like_score_where_there_is_one",)),
    Mutation("submission created without the lock", "ensemble/submission.py",
             "    with exclusive(_lock(ws)):\n        cleaned = tidy(ws, name)",
             "    if True:\n        cleaned = tidy(ws, name)",
             ("tests/test_faults.py::test_two_writers_of_one_name_exactly_one_wins",)),
    Mutation("lone CSV or sidecar not cleaned", "ensemble/submission.py",
             "    if csv.is_file() != meta.is_file():", "    if False:",
             ("tests/test_faults.py::test_lone_files_and_temp_litter_are_removed_with_a_warning",)),
    Mutation("temp litter not swept from submissions/", "ensemble/submission.py",
             "    swept = sweep_tmp(ws.submissions_dir)", "    swept = []",
             ("tests/test_faults.py::test_lone_files_and_temp_litter_are_removed_with_a_warning",)),
    Mutation("sidecar written after the CSV (CSV no longer the commit point)", "ensemble/submission.py",
             "        with atomic_path(csv) as tmp:\n            csv_to(frame, tmp)\n"
             "            write_json({**sidecar, \"csv_sha256\": file_sha256(tmp)}, meta)",
             "        with atomic_path(csv) as tmp:\n            csv_to(frame, tmp)\n            digest = file_sha256(tmp)\n"
             "        write_json({**sidecar, \"csv_sha256\": digest}, meta)",
             ("tests/test_faults.py::test_stack_killed_at_every_rename",
              "tests/test_faults.py::test_forced_replace_killed_at_every_rename_leaves_old_new_or_nothing")),
    Mutation("readers accept a lone sidecar", "ensemble/submission.py",
             "    if not (meta.is_file() and csv.is_file()):", "    if not meta.is_file():",
             ("tests/test_faults.py::test_stack_killed_at_every_rename",)),
    Mutation("ens stack checks the name only after stacking", "ensemble/cli.py",
             "        check_free(ws, name or default_name(method, runs), force)", "        pass",
             ("tests/test_bad_inputs_stack.py", "-k", "refused-before")),
    Mutation("ens oof leaves temp litter in the run folder", "ensemble/oof.py",
             "        sweep_tmp(run.dir)  # a killed", "        pass  # a killed",
             ("tests/test_finetune.py::test_oof_with_onnx_runtime_reproduces_the_predictions",)),
    Mutation("finetune redoes a fold over its temp litter", "ensemble/finetune.py",
             "        sweep_tmp(run_dir / f\"fold{k}\")", "        pass",
             ("tests/test_faults.py::test_finetune_killed_at_rename_n_resumes_to_the_same_predictions[8]",)),
    Mutation("finetune resumes over the run folder's temp litter", "ensemble/finetune.py",
             "        sweep_tmp(run_dir)  # a killed", "        pass  # a killed",
             ("tests/test_faults.py::test_finetune_killed_at_rename_n_resumes_to_the_same_predictions[12]",)),
]


def copy_repo(dest: Path) -> Path:
    shutil.copytree(REPO, dest, ignore=IGNORE)
    return dest


def apply(m: Mutation, root: Path) -> int:
    """Apply the mutation in `root`; returns how many times its old text was found (1 to apply)."""
    path = root / m.file
    text = path.read_text() if path.is_file() else ""
    count = text.count(m.old)
    if count == 1:
        path.write_text(text.replace(m.old, m.new))
    return count


def run_tests(root: Path, tests: tuple[str, ...]) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("ENS_WORKSPACE", None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return done.returncode, time.perf_counter() - started


def check(m: Mutation, scratch: Path) -> tuple[str, float]:
    """One mutation: its tests on a clean copy (they must pass), then on the mutated copy."""
    root = copy_repo(scratch / "repo")
    count = (root / m.file).read_text().count(m.old) if (root / m.file).is_file() else 0
    if count != 1:
        return f"STALE (old text found {count} times)", 0.0
    base, _ = run_tests(root, m.tests)
    if base == 5:
        return "NO TESTS (the selection collects nothing)", 0.0
    if base != 0:
        return f"BASELINE FAILS (pytest exit {base} without the mutation)", 0.0
    apply(m, root)
    code, seconds = run_tests(root, m.tests)
    return ("killed" if code == 1 else f"SURVIVED (pytest exit {code})"), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only mutations whose name contains this text")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.k.lower() in m.name.lower()]
    if args.list:
        for m in chosen:
            print(f"{m.name} | {m.file} | {' '.join(m.tests)}")
        return 0
    rows = []
    for m in chosen:
        with tempfile.TemporaryDirectory(prefix="ens-mutation-") as scratch:
            outcome, seconds = check(m, Path(scratch))
        rows.append((m.name, outcome, seconds))
        print(f"{m.name}: {outcome}", file=sys.stderr, flush=True)
    width = max(len(r[0]) for r in rows)
    print(f"| {'mutation':<{width}} | outcome | seconds |\n|{'-' * (width + 2)}|---|---|")
    for name, outcome, seconds in rows:
        print(f"| {name:<{width}} | {outcome} | {seconds:.0f} |")
    return 0 if all(outcome == "killed" for _, outcome, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
