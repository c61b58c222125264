"""fsync cost per atomic write: write_parquet (a run file) and write_json (a sidecar), with and without
fsync, interleaved A,B,B,A; medians over rounds."""
import sys, time, tempfile
from pathlib import Path
import numpy as np, pandas as pd
import ensemble.artifacts.io as io

real_file, real_dir = io.fsync_file, io.fsync_dir
def set_fsync(on):
    io.fsync_file = real_file if on else (lambda p: None)
    io.fsync_dir = real_dir if on else (lambda p: None)

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
rng = np.random.default_rng(0)
frame = pd.DataFrame({"id": [f"TRAIN_{i:05d}" for i in range(rows)], "fold": rng.integers(0, 5, rows),
                      "fake": rng.random(rows), "real": rng.random(rows)})
doc = {"recipe": {"weights": rng.random(50).tolist()}, "metrics": {"cv": 0.1}}
folder = Path(tempfile.mkdtemp(dir=sys.argv[2] if len(sys.argv) > 2 else None))
times = {(k, on): [] for k in ("parquet", "json") for on in (True, False)}
for r in range(30):
    for on in ((True, False) if r % 2 == 0 else (False, True)):
        set_fsync(on)
        t = time.perf_counter(); io.write_parquet(frame, folder / "oof.parquet"); times[("parquet", on)].append(time.perf_counter() - t)
        t = time.perf_counter(); io.write_json(doc, folder / "s.json"); times[("json", on)].append(time.perf_counter() - t)
for (k, on), v in times.items():
    q = np.percentile(v, [25, 50, 75]) * 1000
    print(f"{k:8s} fsync={'on ' if on else 'off'} median {q[1]:.2f} ms (IQR {q[0]:.2f}-{q[2]:.2f}), n={len(v)}")
