"""Kill -9 at every rename and at random moments, and two writers of one name at once.

Each command runs as a child process through a tiny wrapper (`KILLER`, passed to `python -c`) that
counts the calls to `os.replace`/`os.rename`/`os.link` and SIGKILLs its own process at the N-th, so
no test hook lives in library code. After every kill: readers see a submission as a whole pair or not
at all, the next command leaves no temp litter, and rerunning the same command succeeds (or, when
the pair was complete, is refused with the exists line).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import write_predictions
from ensemble.cli import app
from ensemble.artifacts.io import TMP_NAME

REPO = Path(__file__).resolve().parents[1]
RENAMES = ("replace", "rename", "link")
KILLER = """
import os, signal, sys, time
kill_at, log, pause = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
calls = [0]
def wrap(real):
    def patched(*args, **kwargs):
        calls[0] += 1
        if log:
            with open(log, "a") as f:
                f.write(f"{real.__name__} {args[-1]}\\n")
        if calls[0] == 1:
            time.sleep(pause)
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return patched
for name in ("replace", "rename", "link"):
    setattr(os, name, wrap(getattr(os, name)))
sys.argv = ["ens", *sys.argv[4:]]
from ensemble.cli import main
main()
"""


def child_env() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("ENS_WORKSPACE", None)
    env.pop("ENS_DEBUG", None)
    return env


def spawn(args: list, kill_at: int = 0, log: Path | None = None, pause: float = 0.0) -> subprocess.Popen:
    """`ens ARGS…` as a child that kills itself at rename number `kill_at` (0: never), pausing `pause`
    seconds before its first rename (to hold a writer inside its critical section)."""
    cmd = [sys.executable, "-c", KILLER, str(kill_at), str(log or ""), str(pause), *map(str, args)]
    return subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(args: list, kill_at: int = 0, log: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = spawn(args, kill_at, log)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def renames(args: list, tmp_path: Path) -> list[str]:
    """The renames an unkilled run of `ens ARGS…` does, in order."""
    log = tmp_path / "renames.log"
    log.unlink(missing_ok=True)
    done = run(args, log=log)
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def tmp_litter(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if TMP_NAME.match(p.name)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------- stack

@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, Path]:
    """A competition folder and a workspace holding two imported runs with OOF (made in-process)."""
    root = tmp_path_factory.mktemp("faults")
    comp = root / "comp"
    comp.mkdir()
    rng = np.random.default_rng(0)
    train_ids = [f"TRAIN_{i:03d}" for i in range(40)]
    pd.DataFrame({"id": train_ids, "path": [f"./train/{i}.ogg" for i in train_ids],
                  "label": np.where(np.arange(40) % 2 == 0, "fake", "real")}).to_csv(comp / "train.csv", index=False)
    test_ids = [f"TEST_{i:03d}" for i in rng.permutation(12)]
    pd.DataFrame({"id": test_ids, "path": [f"./test/{i}.ogg" for i in test_ids]}).to_csv(comp / "test.csv", index=False)
    pd.DataFrame({"id": test_ids, "fake": 0.5, "real": 0.5}).to_csv(comp / "sample_submission.csv", index=False)
    ws = root / "ws"
    y = np.arange(40) % 2 == 0
    for k in range(2):
        score = y + rng.normal(0, 0.8 + 0.4 * k, 40)
        write_predictions(root / f"oof{k}.csv", train_ids, np.stack([1 / (1 + np.exp(-score)), 1 / (1 + np.exp(score))], 1))
        write_predictions(root / f"test{k}.csv", test_ids, rng.random((12, 2)))
        result = CliRunner().invoke(app, ["import", f"r{k}", "--test", str(root / f"test{k}.csv"), "--oof",
                                          str(root / f"oof{k}.csv"), "--data", str(comp), "-w", str(ws)])
        assert result.exit_code == 0, result.output
    return comp, ws


@pytest.fixture
def ws(template, tmp_path) -> Path:
    """A fresh copy of the template workspace."""
    copy = tmp_path / "stackws"
    shutil.copytree(template[1], copy)
    return copy


def stack_args(ws: Path, method: str = "mean", *extra: str) -> list:
    return ["stack", "r0", "r1", "--method", method, "--calibrate", "none", "--name", "sub", "-w", ws, *extra]


@pytest.fixture(scope="module")
def reference(template, tmp_path_factory) -> dict[str, bytes]:
    """The CSV bytes an unkilled, unraced `ens stack` writes for each method used below."""
    out = {}
    for method in ("mean", "logit"):
        copy = tmp_path_factory.mktemp("ref") / "ws"
        shutil.copytree(template[1], copy)
        done = run(stack_args(copy, method))
        assert done.returncode == 0, done.stderr
        out[method] = (copy / "submissions" / "sub.csv").read_bytes()
    return out


def board_names(ws: Path) -> list[str]:
    result = CliRunner().invoke(app, ["board", "--format", "json", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    return [r["name"] for r in json.loads(result.output)["rows"] if r["kind"] == "submission"]


def check_pair_or_nothing(ws: Path) -> bool:
    """Readers see `sub` only as a whole pair whose sidecar describes its CSV; returns whether it is there."""
    csv, meta = ws / "submissions" / "sub.csv", ws / "submissions" / "sub.json"
    listed = "sub" in board_names(ws)
    assert listed == (csv.is_file() and meta.is_file())
    lb = CliRunner().invoke(app, ["lb", "sub", "--public", "0.3", "-w", str(ws)])
    if listed:
        assert lb.exit_code == 0, lb.output
        assert json.loads(meta.read_text())["csv_sha256"] == sha256(csv)
    else:
        assert lb.exit_code == 1 and lb.output.startswith("Error: submission 'sub' not found"), lb.output
    return listed


def check_rerun(ws: Path, complete: bool, reference: bytes, method: str = "mean") -> None:
    """The same command again: refused when the pair was complete, else it writes the reference pair."""
    again = run(stack_args(ws, method))
    if complete:
        assert again.returncode == 1
        assert again.stderr.strip().splitlines()[-1] == (
            f"Error: submission 'sub' already exists in {ws / 'submissions'}; pass --force to replace it")
    else:
        assert again.returncode == 0, again.stderr
        assert (ws / "submissions" / "sub.csv").read_bytes() == reference
    assert check_pair_or_nothing(ws)
    assert not tmp_litter(ws / "submissions")


@pytest.mark.slow
def test_stack_killed_at_every_rename(ws, tmp_path, reference):
    done = renames(stack_args(ws), tmp_path)
    # the sidecar, then the CSV (the commit), then the trusted rows' predictions the board reads beside it
    assert [line.split()[0] for line in done] == ["replace", "replace", "replace"]
    assert done[0].endswith("sub.json") and done[1].endswith("sub.csv") and done[2].endswith("sub.rows.parquet")
    for n in range(1, len(done) + 1):
        fresh = tmp_path / f"kill{n}"
        shutil.copytree(ws.parent / "stackws", fresh, ignore=shutil.ignore_patterns("submissions"))
        killed = run(stack_args(fresh), kill_at=n)
        assert killed.returncode == -signal.SIGKILL
        committed = check_pair_or_nothing(fresh)
        assert committed == (n == 3), n  # nothing is committed before the CSV rename has happened
        check_rerun(fresh, complete=committed, reference=reference["mean"])


@pytest.mark.slow
def test_forced_replace_killed_at_every_rename_leaves_old_new_or_nothing(ws, tmp_path, reference):
    assert run(stack_args(ws, "logit")).returncode == 0
    args = stack_args(ws, "mean", "--force")
    count = len(renames(args, tmp_path))
    for n in range(1, count + 1):
        fresh = tmp_path / f"force{n}"
        shutil.copytree(ws.parent / "stackws", fresh, ignore=shutil.ignore_patterns("submissions"))
        assert run(stack_args(fresh, "logit")).returncode == 0
        killed = run(stack_args(fresh, "mean", "--force"), kill_at=n)
        assert killed.returncode == -signal.SIGKILL
        if check_pair_or_nothing(fresh):
            assert (fresh / "submissions" / "sub.csv").read_bytes() in (reference["logit"], reference["mean"])
        # the same forced command again: it puts back what the kill left half-swapped, then replaces it
        again = run(stack_args(fresh, "mean", "--force"))
        assert again.returncode == 0, again.stderr
        assert (fresh / "submissions" / "sub.csv").read_bytes() == reference["mean"]
        assert check_pair_or_nothing(fresh) and not tmp_litter(fresh / "submissions")
        assert not list((fresh / "submissions").glob(".*.bak-*"))


@pytest.mark.slow
def test_stack_killed_at_random_moments(ws, tmp_path, reference):
    rng = random.Random(9)
    for round_ in range(3):
        fresh = tmp_path / f"random{round_}"
        shutil.copytree(ws, fresh)
        proc = spawn(stack_args(fresh))
        time.sleep(rng.uniform(0.3, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        complete = check_pair_or_nothing(fresh)
        if complete:
            assert (fresh / "submissions" / "sub.csv").read_bytes() == reference["mean"]
        check_rerun(fresh, complete, reference["mean"])


@pytest.mark.slow
def test_two_writers_of_one_name_exactly_one_wins(ws, tmp_path, reference):
    # each writer pauses 2 s before its first rename (the sidecar's), so without exclusive creation
    # both would pass the exists check before either commits
    for round_ in range(2):
        fresh = tmp_path / f"race{round_}"
        shutil.copytree(ws, fresh)
        procs = {method: spawn(stack_args(fresh, method), pause=2.0) for method in ("mean", "logit")}
        results = {method: (proc.wait(timeout=300), proc.stderr.read()) for method, proc in procs.items()}
        winners = [m for m, (rc, _) in results.items() if rc == 0]
        assert len(winners) == 1, results
        loser = "logit" if winners[0] == "mean" else "mean"
        rc, err = results[loser]
        # refused at once while the winner holds the name, or by the exists check once it has committed
        assert rc == 1 and err.strip().splitlines()[-1] in (
            f"Error: submission 'sub' is being written by another ens process (pid {procs[winners[0]].pid})",
            f"Error: submission 'sub' already exists in {fresh / 'submissions'}; pass --force to replace it")
        csv, meta = fresh / "submissions" / "sub.csv", fresh / "submissions" / "sub.json"
        sidecar = json.loads(meta.read_text())
        assert sidecar["recipe"]["method"] == winners[0] and sidecar["csv_sha256"] == sha256(csv)
        assert csv.read_bytes() == reference[winners[0]]
        assert not tmp_litter(fresh / "submissions")


def test_two_writers_of_one_submission_in_one_process_exactly_one_wins(ws, monkeypatch):
    """`write_submission` holds the submissions lock itself (callers other than `ens stack` hold no name
    lock): two threads writing one name, each pausing inside its critical section, give one pair and
    one 'already exists'."""
    import threading
    from dataclasses import replace

    from ensemble.artifacts.competition import open_competition
    from ensemble.artifacts.submission import read_sidecar, write_submission
    from ensemble.artifacts.workspace import Workspace
    from ensemble.errors import ExistsError

    assert run(stack_args(ws, "mean")).returncode == 0
    w = Workspace.resolve(ws)
    comp, frame = open_competition(w), pd.read_csv(ws / "submissions" / "sub.csv")
    sidecar = replace(read_sidecar(w, "sub"), name="twin")
    real_replace, paused = os.replace, threading.local()

    def slow_replace(*args, **kwargs):  # the first rename of each writer waits: both inside at once
        if not getattr(paused, "done", False):
            paused.done = True
            time.sleep(1.0)
        return real_replace(*args, **kwargs)

    monkeypatch.setattr(os, "replace", slow_replace)
    outcomes: list[str] = []

    def writer() -> None:
        try:
            write_submission(w, frame, comp, sidecar)
            outcomes.append("written")
        except ExistsError as err:
            outcomes.append(str(err))

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes)[1:] == ["written"] and "submission 'twin' already exists" in sorted(outcomes)[0]
    assert not tmp_litter(ws / "submissions")


def test_lone_files_and_temp_litter_are_removed_with_a_warning(ws):
    """What a killed writer (or an older ens, which wrote the CSV first) left is not a submission."""
    subs = ws / "submissions"
    subs.mkdir()
    (subs / "sub.csv").write_text("id,fake,real\n")
    (subs / ".other.json.k3j_x9a0.tmp").write_text("{")
    (subs / "notes.tmp").write_text("mine")  # not atomic_path's pattern: kept
    assert board_names(ws) == []
    result = CliRunner().invoke(app, [str(a) for a in stack_args(ws)])
    assert result.exit_code == 0, result.output
    assert f"warning: removed {subs / 'sub.csv'}: it had no sidecar (left by a killed or failed writer)" in result.output
    assert f"warning: removed 1 temp file(s) killed writers left in {subs}" in result.output
    assert sorted(p.name for p in subs.iterdir()) == [".lock", ".sub.lock", "notes.tmp", "sub.csv", "sub.json", "sub.rows.parquet"]
    (subs / "sub.csv").unlink()  # now a lone sidecar
    result = CliRunner().invoke(app, [str(a) for a in stack_args(ws)])
    assert result.exit_code == 0, result.output
    assert f"warning: removed {subs / 'sub.json'}: it had no CSV (left by a killed or failed writer)" in result.output
    assert check_pair_or_nothing(ws)


# ------------------------------------------------------------------------------------------- finetune

FINETUNE = ["finetune", "logmel-cnn", "--folds", "2", "--epochs", "1", "--batch-size", "8", "--max-seconds", "1",
            "--testlike-per-fold", "2", "--augment", "none", "--name", "cnn"]
FINETUNE_RENAMES = 12  # checkpoint best/last (3), model.onnx, 3 fold files, fold.json, 3 run files, run.json
# every rename costs a fine-tune (~10-30 s on 2 busy cores): the suite kills at three that stand for the
# others (a checkpoint saved, fold files without fold.json, run files without run.json);
# ENS_FAULTS=all kills at each of them
KILL_POINTS = range(1, FINETUNE_RENAMES + 1) if os.environ.get("ENS_FAULTS") == "all" else (3, 8, 12)


@pytest.fixture(scope="module")
def finetune_template(tmp_path_factory) -> Path:
    """A workspace whose run `cnn` has fold 1 done, so `--fold 0` trains one fold and then assembles the run."""
    from ensemble.demo import DemoSpec, generate_competition

    root = tmp_path_factory.mktemp("ftfaults")
    data = generate_competition(root / "data", DemoSpec(n_train=24, n_test=6, n_unlabeled=0, seed=5))
    done = run([*FINETUNE, "--fold", "1", "--data", data, "-w", root / "ws"])
    assert done.returncode == 0, done.stderr
    return root / "ws"


@pytest.fixture(scope="module")
def finetune_reference(finetune_template, tmp_path_factory) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """An unkilled `--fold 0`: the run's predictions, and the renames it did."""
    ws = tmp_path_factory.mktemp("ftref") / "ws"
    shutil.copytree(finetune_template, ws)
    done = renames([*FINETUNE, "--fold", "0", "-w", ws], ws.parent)
    return {f: pd.read_parquet(ws / "models" / "cnn" / f) for f in ("oof.parquet", "test.parquet")}, done


@pytest.mark.slow
def test_finetune_rename_count_is_the_one_the_kills_cover(finetune_reference):
    names = [Path(line.split()[1]).name for line in finetune_reference[1]]
    assert len(names) == FINETUNE_RENAMES, names
    assert names[-1] == "run.json"  # the manifest is the run's commit point


@pytest.mark.slow
@pytest.mark.parametrize("n", KILL_POINTS)
def test_finetune_killed_at_rename_n_resumes_to_the_same_predictions(n, finetune_template, finetune_reference, tmp_path):
    ws = tmp_path / "ftws"
    shutil.copytree(finetune_template, ws)
    killed = run([*FINETUNE, "--fold", "0", "-w", ws], kill_at=n)
    assert killed.returncode == -signal.SIGKILL
    board = CliRunner().invoke(app, ["board", "--format", "json", "-w", str(ws)])
    rows = json.loads(board.output)["rows"] if board.exit_code == 0 else None
    # run.json comes last: the killed run is at most listed as partial, unranked and without scores
    assert rows is not None and [r for r in rows if r["kind"] != "partial"] == [], rows
    assert all(r["name"] == "cnn" and r["rank"] is None and r["cv"] is None for r in rows), rows
    again = run([*FINETUNE, "--fold", "0", "-w", ws])
    assert again.returncode == 0, again.stderr
    assert not tmp_litter(ws), tmp_litter(ws)
    for name, expected in finetune_reference[0].items():
        pd.testing.assert_frame_equal(pd.read_parquet(ws / "models" / "cnn" / name), expected)
