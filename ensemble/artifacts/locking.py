"""Exclusive sections for writers that share a folder (two `ens stack --name x` at once, `ens lb` beside them).

`fcntl.flock` on a lock file: the kernel releases it when the holder exits or is killed, so a killed
writer never leaves a stale lock behind, and the next writer can tidy what it left (`io.recover_dir`,
`io.sweep_tmp`). Lock files are hidden, hold the holder's pid, and are never deleted (deleting one would
let two holders lock different files).

`exclusive` waits for the holder; `name_lock` refuses at once with `LockedError` naming the holder's pid:
a second writer of one name (a run, an export, a folder) is told, not queued behind the first.
"""

from __future__ import annotations

import fcntl
import os
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


def _stamp(fd: int) -> None:
    """Write this process's pid into the held lock file (for the message a refused writer gets)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


@contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (created if needed) for the block; waits for other holders."""
    fd = _open(lock_file)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _stamp(fd)
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
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise LockedError(f"{what} is being written by another ens process (pid {holder})") from None
        _stamp(fd)
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
