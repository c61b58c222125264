"""Decode once: an on-disk store of decoded, resampled waves, shared by every run, fold and process.

Decoding a 32 kHz Vorbis clip and resampling it costs about 4 ms of a core; a GPU infers thousands of
clips a second, and `ens finetune`/`ens oof` would otherwise decode the same clips again in every fold,
run and worker. A `DecodeCache` keeps each clip's wave as `load_audio` returns it, one `.npy` file per
(content hash, rate):

    <root>/<FORMAT>/<rate>/<sha256[:2]>/<sha256>.npy

- **float32 at the model's rate**, so a cached read is bit-identical to a decode: runs and `ens oof`
  give the same predictions with or without the cache, on any machine. Cost: twice the disk of int16
  (16 kHz: 64 kB per second of audio; a 105k-clip, 5-s contest set ≈ 34 GB).
- **Keyed by the file's content** (SHA-256), not its path: a renamed or copied file hits, an edited one
  misses; the key is a hex digest and the rate an integer, so no entry can point outside `root`.
- **Validated on read**: an entry that is not a 1-D finite float32 `.npy` (truncated, edited) is decoded
  again and replaced. No pickle is ever loaded (`allow_pickle=False`).
- **Safe to share**: entries are written to a temp file and renamed, so concurrent processes (Ray
  workers, folds on several GPUs, machines on a shared filesystem) never read a half-written wave.
- One file per clip rather than one big memmap per split: many writers need no coordination, and a
  cluster without a shared filesystem can sync the folder with rsync.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from ensemble.audio.load import _check_rate, load_audio

FORMAT = "f32-mono-soxrhq-v1"  # what an entry holds; a change of decode or resampler bumps it
_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class DecodeCache:
    """`load(path, sr)`: `load_audio(path, sr)`, decoded once per content and rate under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) → hash: hash each file once

    def entry(self, path: Path, sr: int) -> Path:
        """Where `path`'s wave at `sr` Hz is (or would be) stored."""
        digest = self._digest(Path(path))
        return self.root / FORMAT / str(_check_rate(sr)) / digest[:2] / f"{digest}.npy"

    def load(self, path: Path, sr: int) -> np.ndarray:
        """The wave of `path` at `sr` Hz, float32 `(samples,)`: read from the cache, else decoded and stored."""
        path = Path(path)
        if not path.is_file():
            return load_audio(path, sr)  # raises the DataError every decode gives for this path
        entry = self.entry(path, sr)
        wave = _read(entry)
        if wave is None:
            wave = load_audio(path, sr)
            _write(entry, wave)
        return wave

    def _digest(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._digests:
            self._digests[key] = file_digest(path)
        return self._digests[key]


def _read(entry: Path) -> np.ndarray | None:
    """The stored wave, or None when the entry is missing or not a valid wave (then it is rewritten)."""
    try:
        wave = np.load(entry, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(wave, np.ndarray) or wave.dtype != np.float32 or wave.ndim != 1 or not np.isfinite(wave).all():
        return None
    return wave


def _write(entry: Path, wave: np.ndarray) -> None:
    """Store atomically: a temp file in the entry's folder, then a rename."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f".{entry.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npy")  # one per writer
    try:
        np.save(tmp, np.ascontiguousarray(wave, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, entry)
    finally:
        tmp.unlink(missing_ok=True)
