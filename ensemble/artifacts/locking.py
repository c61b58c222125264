"""Exclusive sections for writers that share a folder (two `ens stack --name x` at once, `ens lb` beside them).

`fcntl.flock` on a lock file: the kernel releases it when the holder exits or is killed, so a killed
writer never leaves a stale lock behind, and the next writer can tidy what it left (`io.recover_dir`,
`io.sweep_tmp`). Lock files are hidden, hold the holder's pid while held (cleared on release), and are
never deleted (deleting one would let two holders lock different files).

`exclusive` waits for the holder; `name_lock` refuses at once with `LockedError` naming the holder's pid:
a second writer of one name (a run, an export, a folder) is told, not queued behind the first.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ensemble.errors import EnsError


class LockedError(EnsError):
    """Another live ens process holds the name this one means to write."""


def _open(lock_file: Path) -> int:
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    return os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)


HOLDER_WAIT_S = 2.0  # how long a refused writer waits for the holder to write its pid (it does so at once)


@contextmanager
def _held(fd: int) -> Iterator[None]:
    """Stamp this process's pid into the lock file `fd` holds, and clear it on release.

    Cleared on release, so a file that names a live process names its holder (a process that released
    the name and lives on, such as a server, is never named)."""
    stamp = f"{os.getpid()}\n".encode()
    os.pwrite(fd, stamp, 0)
    os.ftruncate(fd, len(stamp))
    try:
        yield
    finally:
        os.ftruncate(fd, 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(fd: int) -> str:
    """The pid of the live process holding the lock on `fd`'s file, or "unknown".

    The holder writes its pid just after taking the lock, so the file may still be empty, or hold the pid
    of a writer killed while holding it: wait (briefly) for a live pid."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        first = os.pread(fd, 32, 0).decode(errors="replace").split("\n", 1)[0].strip()
        if first.isdigit() and int(first) > 0 and _alive(int(first)):
            return first
        if time.monotonic() >= deadline:
            return "unknown"
        time.sleep(0.01)


@contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (created if needed) for the block; waits for other holders."""
    fd = _open(lock_file)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with _held(fd):
            yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def name_lock(lock_file: Path, what: str) -> Iterator[None]:
    """Hold `lock_file` for the block, or refuse at once: `what` (e.g. "run 'x'") is being written by the
    live process whose pid the file holds."""
    fd = _open(lock_file)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"{what} is being written by another ens process (pid {_holder(fd)})") from None
        with _held(fd):
            yield
    finally:
        os.close(fd)


def lock_beside(target: Path) -> Path:
    """The lock file guarding `target` (a file or folder): `.NAME.lock` beside it."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def run_lock(models_dir: Path, run: str) -> Path:
    """The lock file guarding `models/<run>/`'s top-level files; beside the folder, so copies of it stay clean."""
    return Path(models_dir) / f".{run}.lock"
