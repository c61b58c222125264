"""A tiny single-label multiclass competition: tones of three pitches in noise, as WAV files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ["low", "mid", "high"]
PITCH = {"low": 220.0, "mid": 660.0, "high": 1980.0}


def write_tone_competition(root: Path, n_per_class: int = 12, n_test: int = 6, sr: int = 16000,
                           seed: int = 0) -> Path:
    """`train.csv` (id, path, label, group), `test.csv`, `sample_submission.csv` (1/3 each), `test_answers.csv`."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "train").mkdir(exist_ok=True)
    (root / "test").mkdir(exist_ok=True)

    def clip(label: str) -> np.ndarray:
        t = np.arange(int(sr * rng.uniform(0.6, 1.4))) / sr
        wave = 0.3 * np.sin(2 * np.pi * PITCH[label] * rng.uniform(0.95, 1.05) * t) + 0.05 * rng.normal(size=t.size)
        return wave.astype(np.float32)

    rows = []
    for i in range(n_per_class * len(CLASSES)):
        label = CLASSES[i % len(CLASSES)]
        rid = f"TRAIN_{i:03d}"
        sf.write(root / "train" / f"{rid}.wav", clip(label), sr)
        rows.append({"id": rid, "path": f"train/{rid}.wav", "label": label, "group": f"g{i % 6}"})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    test, answers = [], []
    for i in range(n_test):
        label = CLASSES[i % len(CLASSES)]
        rid = f"TEST_{i:03d}"
        sf.write(root / "test" / f"{rid}.wav", clip(label), sr)
        test.append({"id": rid, "path": f"test/{rid}.wav"})
        answers.append({"id": rid, **{c: int(c == label) for c in CLASSES}})
    pd.DataFrame(test).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": [r["id"] for r in test], **{c: 1 / 3 for c in CLASSES}}).to_csv(
        root / "sample_submission.csv", index=False)
    pd.DataFrame(answers).to_csv(root / "test_answers.csv", index=False)
    return root
