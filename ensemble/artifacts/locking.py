"""Exclusive sections for writers that share a folder (two `ens stack --name x` at once, `ens lb` beside them).

`fcntl.flock` on a lock file: the kernel releases it when the holder exits or is killed, so a killed
writer never leaves a stale lock behind, and the next writer can tidy what it left (`io.sweep_tmp`).
Lock files are hidden, empty and never deleted (deleting one would let two holders lock different files).
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (created if needed) for the block; waits for other holders."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def run_lock(models_dir: Path, run: str) -> Path:
    """The lock file guarding `models/<run>/`'s top-level files; beside the folder, so copies of it stay clean."""
    return Path(models_dir) / f".{run}.lock"
