"""Decode cache vs decoding: clips/s of `DecodeCache.load` (a warm cache) and `load_audio`, side by side.

Both sides read the same voices-dev clips at the model rate (16 kHz by default). Rounds are interleaved
(decode, cache, then cache, decode, …: the order alternates each round) so a neighbour's load on shared
cores hits both alike; the table gives each side's median clips/s and ms per clip, the median of the
per-round paired ratios with its spread (min–max), and the load average before and after. The OS page
cache holds the files on both sides after the first round (a contest set on a local NVMe disk behaves
alike; on a network filesystem the cache side also saves the audio file's transfer).

    .venv/bin/python bench/bench_decode_cache.py --data /work/shared/data/voices-dev --split test --clips 200 --rounds 7
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ensemble.audio.cache import DecodeCache  # noqa: E402
from ensemble.audio.load import load_audio  # noqa: E402


def clip_paths(data: Path, split: str, n: int) -> list[Path]:
    """The first `n` clips of `split` (train: 0.4–11 s, test: 5 s each)."""
    return [data / p for p in pd.read_csv(data / f"{split}.csv")["path"][:n]]


def one_pass(load, paths: list[Path], sr: int) -> float:
    """Seconds to load every clip once."""
    t0 = time.perf_counter()
    for p in paths:
        load(p, sr)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/voices-dev"))
    parser.add_argument("--split", choices=("train", "test"), default="train")
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sr", type=int, default=16000)
    args = parser.parse_args()
    paths = clip_paths(args.data, args.split, args.clips)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        cache = DecodeCache(Path(tmp))
        one_pass(cache.load, paths, args.sr)  # fill the cache (and the OS page cache for the audio files)
        seconds = sum(load_audio(p, args.sr).size for p in paths) / args.sr
        sides = {"decode": load_audio, "cache": cache.load}
        times: dict[str, list[float]] = {k: [] for k in sides}
        for r in range(args.rounds):
            order = ("decode", "cache") if r % 2 == 0 else ("cache", "decode")
            for name in order:
                times[name].append(one_pass(sides[name], paths, args.sr))
        disk = sum(f.stat().st_size for f in Path(tmp).rglob("*.npy"))
    load_after = os.getloadavg()
    n = len(paths)
    ratios = np.array(times["decode"]) / np.array(times["cache"])
    print(f"{n} voices-dev {args.split} clips ({seconds / n:.2f} s mean, {seconds:.0f} s of audio) at {args.sr} Hz, "
          f"{args.rounds} interleaved rounds; cache on disk {disk / 1e6:.1f} MB ({disk / seconds / 1e3:.0f} kB per s of audio)")
    print("| side | clips/s (median) | ms per clip (median) | min–max ms per clip |")
    print("| --- | ---: | ---: | ---: |")
    for name in sides:
        t = np.array(times[name])
        print(f"| {name} | {n / np.median(t):,.0f} | {1e3 * np.median(t) / n:.3f} | "
              f"{1e3 * t.min() / n:.3f}–{1e3 * t.max() / n:.3f} |")
    print(f"cache / decode speed: median {np.median(ratios):.1f}× (per-round paired ratios {ratios.min():.1f}–{ratios.max():.1f}×)")
    print(f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
