"""Hostile users and faults against ens's files: nothing lost, nothing silently replaced (issue 30, item 1).

Concurrent writers and kill -9 run `ens` as real child processes (`test_faults.spawn`: a wrapper that
SIGKILLs the child at its N-th rename); full disks are a write that raises ENOSPC part-way through.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import write_predictions
from ensemble.cli import app
from test_faults import renames, run, spawn

runner = CliRunner()


def ens(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, *parts: str) -> str:
    """The output is exactly one `Error: …` line holding every part."""
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` and its hash (what "byte-identical" compares)."""
    return {str(p.relative_to(folder)): sha(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith("lock")}  # a lock file holds its holder's pid while held


def staging_left(models: Path, name: str) -> list[str]:
    """Hidden `.NAME.*` entries beside a run other than its lock file: staging or aside folders, temp files."""
    return sorted(p.name for p in models.iterdir() if p.name.startswith(f".{name}.") and p.name != f".{name}.lock")


def sample_ids(comp: Path) -> list[str]:
    return pd.read_csv(comp / "sample_submission.csv")["id"].tolist()


def train_ids(comp: Path) -> list[str]:
    return pd.read_csv(comp / "train.csv")["id"].tolist()


def predictions(tmp_path: Path, comp: Path, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    test = write_predictions(tmp_path / f"test{seed}.csv", sample_ids(comp), rng.random((12, 2)))
    oof = write_predictions(tmp_path / f"oof{seed}.csv", train_ids(comp), rng.random((40, 2)))
    return test, oof


# ------------------------------------------------------------------------------------------- ens import

def test_two_concurrent_imports_of_one_name_exactly_one_wins(tmp_path, csv_competition, workspace):
    """Both used to exit 0, the second silently replacing the first."""
    ensure = ens("import", "seed", "--test", predictions(tmp_path, csv_competition, 9)[0], "--data", csv_competition)
    assert ensure.exit_code == 0, ensure.output  # ens.toml remembers the data; folds need no OOF here
    for round_ in range(3):
        name = f"x{round_}"
        tests = [predictions(tmp_path, csv_competition, 10 * round_ + k)[0] for k in range(2)]
        # each child pauses 1 s before its first rename, inside the writer's section
        procs = [spawn(["import", name, "--test", t, "-w", workspace], pause=1.0) for t in tests]
        results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
        winners = [k for k, (rc, _) in enumerate(results) if rc == 0]
        assert len(winners) == 1, results
        rc, err = results[1 - winners[0]]
        last = err.strip().splitlines()[-1]
        assert rc == 1 and (
            last == f"Error: run '{name}' is being written by another ens process (pid {procs[winners[0]].pid})"
            or last == f"Error: run {workspace / 'models' / name} exists; pass --force to overwrite it"), err
        written = pd.read_parquet(workspace / "models" / name / "test.parquet").set_index("id").sort_index()
        expected = pd.read_csv(tests[winners[0]], dtype={"id": str}).set_index("id").sort_index()
        np.testing.assert_allclose(written[["fake", "real"]].to_numpy(), expected[["fake", "real"]].to_numpy())
        assert staging_left(workspace / "models", name) == []


def test_a_held_run_name_is_refused_with_the_holders_pid(tmp_path, csv_competition, workspace):
    from ensemble.artifacts.locking import name_lock, run_lock

    test, _ = predictions(tmp_path, csv_competition, 1)
    with name_lock(run_lock(workspace / "models", "held"), "run 'held'"):
        result = ens("import", "held", "--test", test, "--data", csv_competition)
    one_error_line(result, f"Error: run 'held' is being written by another ens process (pid {os.getpid()})")
    assert not (workspace / "models" / "held").exists()


def _raw_hold(lock_file: Path, content: str) -> int:
    """Take the lock as a writer does, with `content` in the file: a holder that has not stamped its pid yet."""
    import fcntl
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, content.encode(), 0)
    return fd


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("left_behind", ["", "dead"], ids=["empty", "a-killed-writers-pid"])
def test_a_refused_writer_waits_for_the_holder_to_stamp_its_pid(tmp_path, left_behind):
    """The holder writes its pid just after taking the lock; a refusal in between once said "pid unknown"
    (CI, two concurrent imports) and could name a dead writer's pid."""
    import threading
    from ensemble.artifacts.locking import LockedError, name_lock

    lock = tmp_path / ".x.lock"
    fd = _raw_hold(lock, f"{_dead_pid()}\n" if left_behind else "")
    stamp = threading.Timer(0.3, lambda: os.pwrite(fd, f"{os.getpid()}\n".encode(), 0))
    stamp.start()
    try:
        with pytest.raises(LockedError, match=rf"^run 'x' is being written by another ens process \(pid {os.getpid()}\)$"):
            with name_lock(lock, "run 'x'"):
                pass
    finally:
        stamp.join()
        os.close(fd)


def test_a_released_lock_names_nobody(tmp_path):
    """A process that released a name and lives on (a server) must not be named by the next refusal."""
    from ensemble.artifacts.locking import LockedError, exclusive, name_lock

    lock = tmp_path / ".x.lock"
    for hold in (exclusive(lock), name_lock(lock, "run 'x'")):
        with hold:
            assert lock.read_text() == f"{os.getpid()}\n"
        assert lock.read_text() == ""
    fd = _raw_hold(lock, "")  # a holder that never stamps: the refusal says so rather than naming us
    try:
        with pytest.raises(LockedError, match=r"\(pid unknown\)$"):
            with name_lock(lock, "run 'x'"):
                pass
    finally:
        os.close(fd)


def test_import_without_force_leaves_the_existing_run_byte_identical(tmp_path, csv_competition, workspace):
    test, oof = predictions(tmp_path, csv_competition, 1)
    assert ens("import", "a", "--test", test, "--oof", oof, "--data", csv_competition).exit_code == 0
    before = tree(workspace / "models" / "a")
    other, _ = predictions(tmp_path, csv_competition, 2)
    one_error_line(ens("import", "a", "--test", other), "exists; pass --force")
    assert tree(workspace / "models" / "a") == before


def test_import_force_refuses_a_folder_ens_did_not_write(tmp_path, csv_competition, workspace):
    mine = workspace / "models" / "notes"
    mine.mkdir(parents=True)
    (mine / "thesis.txt").write_text("my own work")
    test, _ = predictions(tmp_path, csv_competition, 1)
    one_error_line(ens("import", "notes", "--test", test, "--data", csv_competition, "--force"),
                   f"{mine} was not written by ens")
    assert (mine / "thesis.txt").read_text() == "my own work"


def test_import_killed_at_every_rename_leaves_the_old_run_or_the_new(tmp_path, csv_competition, workspace):
    """kill -9 of a forced import at each rename: the run is the old or the new one (put back by the
    next import when the kill came between moving the old aside and renaming the new in), and the
    next import sweeps the staging the killed one left."""
    test_old, oof_old = predictions(tmp_path, csv_competition, 1)
    test_new, oof_new = predictions(tmp_path, csv_competition, 2)
    assert ens("import", "r", "--test", test_old, "--oof", oof_old, "--data", csv_competition).exit_code == 0
    template = tmp_path / "template"
    shutil.copytree(workspace, template)
    old = tree(template / "models" / "r")
    args = ["import", "r", "--test", test_new, "--oof", oof_new, "--force"]
    done = renames([*args, "-w", workspace], tmp_path)
    new = tree(workspace / "models" / "r")
    assert old != new and [line.split()[0] for line in done][-2:] == ["rename", "rename"]  # old aside, new in
    for n in range(1, len(done) + 1):
        ws = tmp_path / f"kill{n}"
        shutil.copytree(template, ws)
        killed = run([*args, "-w", ws], kill_at=n)
        assert killed.returncode == -signal.SIGKILL
        models = ws / "models"
        assert (models / "r").is_dir() or staging_left(models, "r"), n  # at worst aside, never gone
        again = run(["import", "r", "--test", test_old, "-w", ws])  # not forced: refused, after tidying
        assert again.returncode == 1 and "exists; pass --force" in again.stderr, (n, again.stderr)
        assert tree(models / "r") in (old, new), n
        assert staging_left(models, "r") == [], (n, staging_left(models, "r"))


# -------------------------------------------------------------------------------------------- ens stack

def imported_runs(tmp_path: Path, comp: Path) -> None:
    for k in range(2):
        test, oof = predictions(tmp_path, comp, k)
        result = ens("import", f"r{k}", "--test", test, "--oof", oof, "--data", comp)
        assert result.exit_code == 0, result.output


def test_a_submission_name_being_stacked_is_refused_at_once_with_the_holders_pid(tmp_path, csv_competition, workspace):
    """A second stack of one name used to stack for as long as the first, then lose with "already exists"."""
    from ensemble.artifacts.locking import name_lock
    from ensemble.artifacts.submission import submission_name_lock
    from ensemble.artifacts.workspace import Workspace

    imported_runs(tmp_path, csv_competition)
    with name_lock(submission_name_lock(Workspace.resolve(workspace), "s"), "submission 's'"):
        one_error_line(ens("stack", "r0", "r1", "--method", "mean", "--name", "s"),
                       f"Error: submission 's' is being written by another ens process (pid {os.getpid()})")
        assert ens("stack", "r0", "r1", "--method", "mean", "--name", "s", "--compare").exit_code == 0  # writes nothing
    assert not list((workspace / "submissions").glob("s.*"))
    assert ens("stack", "r0", "r1", "--method", "mean", "--name", "s").exit_code == 0


def test_forced_stack_on_a_full_disk_keeps_the_old_submission(tmp_path, csv_competition, workspace, monkeypatch):
    """The old CSV used to be removed before the new one was written."""
    import ensemble.artifacts.submission as submission

    imported_runs(tmp_path, csv_competition)
    args = ["stack", "r0", "r1", "--method", "mean", "--calibrate", "none", "--name", "s"]
    assert ens(*args).exit_code == 0
    subs = workspace / "submissions"
    before = tree(subs)

    def full_disk(frame, path):
        Path(path).write_text("id,fake,real\n")  # part of it, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(submission, "csv_to", full_disk)
        one_error_line(ens("stack", "r0", "r1", "--method", "logit", "--calibrate", "none", "--name", "s", "--force"),
                       "No space left on device")
    assert tree(subs) == before  # byte-identical, and no temp file left
    assert ens("lb", "s", "--public", "0.3").exit_code == 0


def test_forced_stack_killed_mid_swap_is_put_back_by_the_next_command(tmp_path, csv_competition, workspace):
    imported_runs(tmp_path, csv_competition)
    args = ["stack", "r0", "r1", "--method", "mean", "--calibrate", "none", "--name", "s", "-w", workspace]
    assert run(args).returncode == 0
    subs = workspace / "submissions"
    old_csv, old_meta = (subs / "s.csv").read_bytes(), (subs / "s.json").read_bytes()
    forced = [*args[:4], "logit", *args[5:], "--force"]
    # link csv, link json (backups), sidecar in, CSV in (the commit), then the trusted rows' predictions
    steps = renames(forced, tmp_path)
    assert [s.split()[0] for s in steps] == ["link", "link", "replace", "replace", "replace"], steps
    for n in (3, 4):  # after the old CSV was un-committed, before the new one landed
        (subs / "s.csv").write_bytes(old_csv)
        (subs / "s.json").write_bytes(old_meta)
        assert run(forced, kill_at=n).returncode == -signal.SIGKILL
        assert not (subs / "s.csv").exists()  # readers see no submission, not a torn pair
        again = run(args)  # the same unforced stack: puts the old pair back, then refuses
        assert again.returncode == 1 and "already exists" in again.stderr, again.stderr
        assert (subs / "s.csv").read_bytes() == old_csv and (subs / "s.json").read_bytes() == old_meta
        assert sorted(p.name for p in subs.iterdir()) == [".lock", ".s.lock", "s.csv", "s.json", "s.rows.parquet"]  # old rows kept


# ------------------------------------------------------------------------------- folders ens replaces

def test_demo_force_refuses_a_folder_of_the_users_own_files(tmp_path):
    """`ens demo --out DIR --force` used to rmtree whatever DIR held."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("my own work")
    one_error_line(ens("demo", "--out", out, "--force"), f"{out} was not written by ens; refusing to replace it")
    assert (out / "thesis.txt").read_text() == "my own work"


def test_testlike_export_force_refuses_a_folder_of_the_users_own_files(tmp_path, csv_competition):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("my own work")
    one_error_line(ens("testlike", "export", out, "--force", "--data", csv_competition),
                   f"{out} was not written by ens; refusing to replace it")
    assert (out / "thesis.txt").read_text() == "my own work"


def test_replace_dir_swaps_a_marked_folder_and_keeps_the_old_until_the_new_is_in(tmp_path):
    from ensemble.artifacts.io import replace_dir, staged_dir
    from ensemble.artifacts.owned import check_replaceable, mark

    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("old")
    mark(target, "testlike-export")
    check_replaceable(target, True, "folder")  # marked: --force may replace it
    with pytest.raises(OSError):  # the rename in fails (here: nothing staged): the old folder must come back
        replace_dir(tmp_path / ".out.new-1-gone", target)
    staged = staged_dir(target)
    (staged / "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "old"
    replace_dir(staged, target)
    assert (target / "a.txt").read_text() == "new" and not list(tmp_path.glob(".out*"))


def test_recover_dir_sweeps_only_what_dead_writers_left(tmp_path):
    from ensemble.artifacts.io import recover_dir

    target = tmp_path / "sub.onnx"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".sub.onnx.{dead.pid}.abcd_123.tmp"
        busy = tmp_path / f".sub.onnx.{live.pid}.abcd_123.tmp"
        staging = tmp_path / f".sub.onnx.new-{dead.pid}-x1y2z3"
        other = tmp_path / f".other.onnx.{dead.pid}.abcd_123.tmp"
        for path in (stale, busy, other):
            path.write_text("half")
        staging.mkdir()
        notes = recover_dir(target)
        assert len(notes) == 2 and not stale.exists() and not staging.exists()
        assert busy.exists() and other.exists()  # a live writer's, and another name's
    finally:
        live.kill()
        live.wait()


def test_recover_dir_puts_back_a_folder_a_killed_writer_moved_aside(tmp_path):
    from ensemble.artifacts.io import recover_dir
    from ensemble.artifacts.owned import is_complete, mark

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "demo"
    aside = tmp_path / f".demo.old-{dead.pid}"
    aside.mkdir()
    (aside / "a.txt").write_text("old")
    target.mkdir()
    mark(target, "demo", complete=False)  # the killed writer's half-built replacement
    assert recover_dir(target, is_complete) == [f"restored {target}: a writer (pid {dead.pid}) was killed while replacing it"]
    assert (target / "a.txt").read_text() == "old" and not aside.exists()


def test_demo_force_keeps_the_old_demo_until_the_new_one_is_complete(tmp_path, monkeypatch):
    """The demo's pipeline (minutes) is stood in for: first one that fails half-way, then one that works."""
    import ensemble.commands.demo as demo
    from ensemble.artifacts.owned import mark

    out = tmp_path / "demo"
    out.mkdir()
    (out / "old.txt").write_text("the earlier demo")
    mark(out, "demo")
    before = tree(out)

    def fails(folder, seed, emit):
        (folder / "half.txt").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(demo, "_build_demo", fails)
    with pytest.raises(OSError):
        demo.run_demo(out, force=True)
    assert tree(out) == before and [p.name for p in tmp_path.iterdir() if p.name.startswith(".demo.old")] == []
    monkeypatch.setattr(demo, "_build_demo", lambda folder, seed, emit: (folder / "new.txt").write_text("new"))
    demo.run_demo(out, force=True)
    assert sorted(p.name for p in out.iterdir()) == [".ens-output.json", "new.txt"]
    assert json.loads((out / ".ens-output.json").read_text())["complete"] is True
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".demo.") and not p.name.endswith(".lock")] == []
