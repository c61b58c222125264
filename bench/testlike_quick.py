"""Quick held-out domain AUC of generator variants (cached real halves); see bench/testlike_domain.py.

    python bench/testlike_quick.py ../shared/data/voices-dev [--clips 150] [--variants default,...]
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np


def setup(data: str, clips: int, seed: int, cache: str | None):
    from ensemble.audio.load import WaveStore, audio_duration
    from ensemble.audio.stats import ANALYSIS_SR
    from ensemble.competition import Competition
    from ensemble.testlike_fit import analyse_real
    from ensemble.testlike_set import real_clips

    comp = Competition.load(data)
    ids = comp.train["id"].astype(str).tolist()
    files = [comp.audio_path(p) for p in comp.train["path"]]
    store, row = WaveStore(files, ANALYSIS_SR), {i: k for k, i in enumerate(ids)}
    source = dict(ids=ids, targets=comp.targets, folds=np.arange(len(ids)) % 5, labels=comp.labels,
                  durations=[audio_duration(f) for f in files], load=lambda i: store[row[i]])
    paths, ok = real_clips(comp)
    perm = np.random.default_rng(seed + 123).permutation(len(paths))
    halves = [perm[: len(perm) // 2], perm[len(perm) // 2 :]]
    key = Path(cache) / f"real_{clips}_{seed}.pkl" if cache else None
    if key is not None and key.exists():
        real_a, real_b = pickle.loads(key.read_bytes())
    else:
        real_a, real_b = (analyse_real([paths[i] for i in h], [ok[i] for i in h], seed=seed, max_clips=clips)
                          for h in halves)
        if key is not None:
            key.write_bytes(pickle.dumps((real_a, real_b)))
    return source, real_a, real_b, [paths[i] for i in halves[0]], [ok[i] for i in halves[0]]
