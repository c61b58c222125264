"""Check every audio file of a competition before any compute: it opens, decodes, has a sane rate and samples.

A corrupt test clip found after a fold has trained costs a GPU hour; on the contest's 105k clips this
check reads headers and the first block of each file (no full decode) and reports every problem at once.
Files found good are remembered by size and modification time (`models/.audio_checked.json`), so a
second `ens finetune` only looks at what changed. The cache is written only when every file passed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import soundfile as sf

from ensemble.audio.load import quiet_stderr
from ensemble.errors import DataError

MIN_RATE, MAX_RATE = 1_000, 384_000
FIRST_BLOCK = 4096  # frames decoded per file: catches files whose header opens but whose data does not
SHOWN = 5
CACHE_NAME = ".audio_checked.json"


@dataclass(frozen=True)
class AudioFile:
    """One audio file the competition uses: where it is listed (csv, id) and its path as written."""

    source: str
    id: str
    relative: str
    path: Path


def probe(path: Path) -> str | None:
    """None when `path` is usable audio, else the reason in a few words."""
    if not path.exists():
        return "not found"
    if not path.is_file():
        return "not a regular file"
    if path.stat().st_size == 0:
        return "empty file"
    try:
        with quiet_stderr(), sf.SoundFile(str(path)) as f:
            rate, frames = int(f.samplerate), int(f.frames)
            block = f.read(min(max(frames, 0), FIRST_BLOCK), dtype="float32")
    except Exception:  # libsndfile raises LibsndfileError/RuntimeError/TypeError by case
        return "cannot be decoded"
    if not MIN_RATE <= rate <= MAX_RATE:
        return f"sample rate {rate} Hz, expected {MIN_RATE}–{MAX_RATE}"
    if frames <= 0 or len(block) == 0:
        return "no audio samples"
    return None


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _read_cache(cache: Path | None) -> dict[str, list[int]]:
    if cache is None or not cache.is_file():
        return {}
    try:
        stored = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}  # a broken cache only costs a full check
    return stored if isinstance(stored, dict) else {}


def check_audio_files(files: list[AudioFile], cache: Path | None = None) -> int:
    """Probe every file (skipping those the cache says are unchanged); returns how many were probed.

    Raises one DataError listing the first few problems and their count.
    """
    from ensemble.artifacts.io import write_json

    known = _read_cache(cache)
    good: dict[str, list[int]] = {}
    problems: list[tuple[AudioFile, str]] = []
    probed = 0
    for item in files:
        key, stamp = str(item.path), _stamp(item.path)
        if stamp is not None and known.get(key) == stamp:
            good[key] = stamp
            continue
        probed += 1
        reason = probe(item.path)
        if reason is None and stamp is not None:
            good[key] = stamp
        elif reason is not None:
            problems.append((item, reason))
    if problems:
        raise DataError(_describe(problems))
    if cache is not None and good != known:
        write_json(good, cache)
    return probed


def _describe(problems: list[tuple[AudioFile, str]]) -> str:
    shown = [f"{p.relative} ({p.source} id {p.id!r}: {why})" for p, why in problems[:SHOWN]]
    more = f", and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    n = len(problems)
    return f"{n} audio file{'s' if n != 1 else ''} cannot be used: {', '.join(shown)}{more}"


def competition_audio(comp, splits: tuple[str, ...] = ("train", "test", "unlabeled")) -> list[AudioFile]:
    """Every audio file `comp` (a Competition) uses in `splits`, in CSV order."""
    files: list[AudioFile] = []
    for split in ("train", "test"):
        if split in splits:
            frame = comp.train if split == "train" else comp.test
            files += [AudioFile(f"{split}.csv", str(i), str(rel), comp.audio_path(rel))
                      for i, rel in zip(frame["id"], frame["path"])]
    if "unlabeled" in splits:
        files += [AudioFile("unlabeled_data", p.stem, os.path.relpath(p, comp.root), p) for p in comp.unlabeled_paths()]
    return files


ALL_SPLITS = ("train", "test", "unlabeled")


def audio_splits(prediction_splits) -> tuple[str, ...]:
    """The audio `ens oof` reads for its splits: test-like clips are rendered from train audio."""
    wanted = {"train": "train", "test": "test", "testlike": "train"}
    return tuple(sorted({wanted[s] for s in prediction_splits}))


def check_competition_audio(ws, comp, splits: tuple[str, ...] = ALL_SPLITS,
                            progress: Callable[[dict], None] | None = None) -> None:
    """Every audio file of `comp` in `splits` is usable, checked before any compute (cached in `ws`)."""
    files = competition_audio(comp, splits)
    started = time.perf_counter()
    probed = check_audio_files(files, ws.models_dir / CACHE_NAME)
    if progress is not None and probed:
        progress({"stage": "audio_checked", "files": len(files), "probed": probed,
                  "seconds": round(time.perf_counter() - started, 2)})
