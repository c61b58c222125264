"""Training-example throughput: 5-s examples at 16 kHz with every augmentation on, per second.

The sampler feeds fine-tuning, so it must stay far ahead of a model's step (a small transformer takes
tens of ms per example on CPU). Clips are real files (wav, flac, ogg at 8, 16 and 22.05 kHz, 0.5–3 s)
preloaded into a `WaveStore`; each round draws five epochs of 12 examples. Prints the load before and
after, each round's examples/s, and their median and spread.

    .venv/bin/python bench/bench_sampler.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ensemble.audio.augment import AugmentConfig, ExampleSampler  # noqa: E402
from ensemble.audio.load import WaveStore  # noqa: E402

RATE = 16_000


def _clips(root: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        seconds = rng.uniform(0.5, 3.0)
        t = np.arange(int(seconds * 8000)) / 8000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) * np.hanning(t.size)
        fmt = ("wav", "flac", "ogg")[i % 3]
        sf.write(root / f"c{i}.{fmt}", wave.astype(np.float32), (8000, 16000, 22050)[i % 3])
        paths.append(root / f"c{i}.{fmt}")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"cores {os.cpu_count()}, load before {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        store = WaveStore(_clips(Path(tmp)), RATE)
        store.preload()
        targets = np.zeros((12, 2), np.float32)
        targets[::2, 0], targets[1::2, 1] = 1, 1
        sampler = ExampleSampler(store, np.arange(12), targets, 5 * RATE, AugmentConfig(), seed=0)
        list(sampler.epoch(0, 12))  # builds the noise bank
        rates = []
        for r in range(args.rounds):
            start = time.perf_counter()
            count = sum(len(x) for e in range(1, 6) for x, _, _ in sampler.epoch(5 * r + e, 12))
            rates.append(count / (time.perf_counter() - start))
            print(f"round {r + 1}: {rates[-1]:.0f} examples/s", flush=True)
    print(f"median {statistics.median(rates):.0f} examples/s (min {min(rates):.0f}, max {max(rates):.0f}); "
          f"load after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
