"""Decode audio files to float32 mono at one sample rate, with a per-dataset in-memory cache.

One decode path for training and inference: soundfile (libsndfile: wav, flac, ogg, …, any rate,
mono or stereo), stereo mixed to mono by the mean of the channels, soxr 'HQ' resampling. A
`WaveStore` given a `DecodeCache` (audio/cache.py) reads decoded waves from disk instead, so a clip
is decoded once per workspace and rate, not once per run, fold or process.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import soundfile as sf
import soxr

from ensemble.errors import ConfigError, DataError
from ensemble.progress import Progress, emit

if TYPE_CHECKING:
    from ensemble.audio.cache import DecodeCache



def _check_rate(sr: int) -> int:
    if not isinstance(sr, (int, np.integer)) or isinstance(sr, bool) or sr <= 0:
        raise ConfigError(f"sample rate sr={sr!r} is invalid; accepted: a positive integer (Hz)")
    return int(sr)


def _open_error(path: Path, err: Exception) -> DataError:
    """Why `path` cannot be read: missing, a folder, or present but not decodable.

    libsndfile's own reason is not passed on: for a corrupt file it may say "File does not exist or
    is not a regular file" although the file is there.
    """
    if not path.exists():
        return DataError(f"audio file {path} not found")
    if path.is_dir():
        return DataError(f"audio path {path} is a folder, not an audio file")
    return DataError(f"audio file {path} cannot be decoded (corrupt or truncated); "
                     "accepted: formats libsndfile reads (wav, flac, ogg, …)")


_STDERR_LOCK = threading.Lock()


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 around a decode: libvorbis/mpg123 print to it on corrupt input.

    The reason is reported once, as a DataError; the C libraries' chatter would only confuse it.
    """
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError):
            pass
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def resample(wave: np.ndarray, sr_in: int, sr: int) -> np.ndarray:
    """Resample a mono float32 wave from `sr_in` to `sr` Hz with soxr 'HQ' (identity when equal)."""
    if sr_in == sr or wave.size == 0:
        return np.ascontiguousarray(wave, dtype=np.float32)
    out = soxr.resample(np.ascontiguousarray(wave, dtype=np.float32), sr_in, sr, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def decode_file(path: Path) -> tuple[np.ndarray, int]:
    """Decode `path` to float32 mono at its own rate: `(wave (samples,), rate)`; the expensive part.

    Raises `DataError` naming the path when the file is missing or libsndfile cannot read it.
    Non-finite samples (broken files) are replaced by 0 so they cannot poison a batch.
    """
    path = Path(path)
    try:
        with quiet_stderr():
            data, sr_in = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises LibsndfileError/RuntimeError/TypeError by case
        raise _open_error(path, err) from err
    wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        wave = np.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)
    return wave, int(sr_in)


def load_audio(path: Path, sr: int) -> np.ndarray:
    """Decode `path` to float32 mono at `sr` Hz, shape `(samples,)` (see `decode_file`)."""
    sr = _check_rate(sr)
    wave, sr_in = decode_file(path)
    return resample(wave, sr_in, sr)


def audio_duration(path: Path) -> float:
    """Duration of `path` in seconds from its header (no decode); `DataError` if unreadable."""
    path = Path(path)
    try:
        with quiet_stderr():
            info = sf.info(str(path))
    except Exception as err:
        raise _open_error(path, err) from err
    return float(info.frames) / float(info.samplerate)


class WaveStore:
    """Indexable collection of audio files decoded at `sr` Hz, each decoded at most once when `cache`.

    `store[i]` is item i's float32 mono wave. The cache keeps decoded waves up to `max_bytes`
    (default 4 GiB), evicting the least recently used beyond it: at 16 kHz a 5-s clip takes 320 kB, so
    2,000 clips fit (~0.6 GB) while a 55k-clip contest set (~18 GB) cycles through it. With `decoded`
    (a `DecodeCache`) a wave missing from memory is read from the on-disk cache, not decoded again.
    """

    def __init__(self, paths: Sequence[Path], sr: int, cache: bool = True, max_bytes: int = 4 << 30,
                 decoded: "DecodeCache | None" = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.sr = _check_rate(sr)
        self.decoded = decoded
        self.cache = bool(cache)
        self.max_bytes = int(max_bytes)
        self._waves: OrderedDict[int, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # the cache's bookkeeping; decoding runs outside it

    def __len__(self) -> int:
        return len(self.paths)

    def _index(self, i: int) -> int:
        n = len(self.paths)
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"WaveStore index must be an integer, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"WaveStore index {i} out of range for {n} files")
        return int(i) % n

    def __getitem__(self, i: int) -> np.ndarray:
        """Item i's wave; safe from several threads (two may decode one file at once, one copy is kept)."""
        i = self._index(i)
        with self._lock:
            wave = self._waves.get(i)
            if wave is not None:
                self._waves.move_to_end(i)
                return wave
        wave = self.decoded.load(self.paths[i], self.sr) if self.decoded else load_audio(self.paths[i], self.sr)
        wave.flags.writeable = False  # shared by every caller: nobody may edit it in place
        if self.cache and wave.nbytes <= self.max_bytes:
            with self._lock:
                if i not in self._waves:
                    self._waves[i] = wave
                    self._bytes += wave.nbytes
                while self._bytes > self.max_bytes:
                    _, evicted = self._waves.popitem(last=False)
                    self._bytes -= evicted.nbytes
        return wave

    def preload(self, progress: Progress | None = None) -> None:
        """Decode every file now (so the first epoch is not slower)."""
        total = len(self.paths)
        for i in range(total):
            self[i]
            emit(progress, "decode", done=i + 1, total=total)

    def duration_seconds(self) -> list[float]:
        """Duration of each file in seconds (from the cache when decoded, else from the header)."""
        out = []
        for i, path in enumerate(self.paths):
            wave = self._waves.get(i)
            out.append(wave.size / self.sr if wave is not None else audio_duration(path))
        return out
