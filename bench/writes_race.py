"""N tries of two (or three) concurrent `ens import NAME` of different CSVs as real processes: winners per try."""
import collections, os, subprocess, sys, shutil, tempfile
from pathlib import Path
import numpy as np, pandas as pd
root = Path(tempfile.mkdtemp(prefix="i30a_race"))
comp = root / "comp"; comp.mkdir()
train = [f"TRAIN_{i:03d}" for i in range(40)]
pd.DataFrame({"id": train, "path": [f"./train/{i}.ogg" for i in train], "label": np.where(np.arange(40) % 2, "fake", "real")}).to_csv(comp / "train.csv", index=False)
test = [f"TEST_{i:03d}" for i in range(12)]
pd.DataFrame({"id": test, "path": [f"./test/{i}.ogg" for i in test]}).to_csv(comp / "test.csv", index=False)
pd.DataFrame({"id": test, "fake": 0.5, "real": 0.5}).to_csv(comp / "sample_submission.csv", index=False)
csvs = []
for k in range(3):
    p = root / f"t{k}.csv"; pd.DataFrame({"id": test, "fake": np.random.default_rng(k).random(12), "real": 0.5}).to_csv(p, index=False); csvs.append(p)
env = {**os.environ}; env.pop("ENS_WORKSPACE", None)
cmd = [sys.executable, "-c", "from ensemble.cli import main; main()"]
ws = root / "ws"
subprocess.run([*cmd, "import", "seed", "--test", csvs[0], "--data", comp, "-w", ws], check=True, env=env, capture_output=True)
N, writers = int(sys.argv[1]), int(sys.argv[2])
tally, errors = collections.Counter(), collections.Counter()
for t in range(N):
    name = f"x{t}"
    procs = [subprocess.Popen([*cmd, "import", name, "--test", csvs[k], "-w", ws], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(writers)]
    res = [(p.wait(), p.stderr.read().strip().splitlines()) for p in procs]
    wins = [k for k, (rc, _) in enumerate(res) if rc == 0]
    tally[len(wins)] += 1
    for rc, err in res:
        if rc:
            errors["locked" if "being written" in err[-1] else "exists" if "exists" in err[-1] else err[-1]] += 1
            assert len(err) == 1, err
    got = pd.read_parquet(ws / "models" / name / "test.parquet").set_index("id").sort_index()["fake"].to_numpy()
    want = pd.read_csv(csvs[wins[0]]).set_index("id").sort_index()["fake"].to_numpy()
    assert np.allclose(got, want)
    assert not [p for p in (ws / "models").iterdir() if p.name.startswith(f".{name}.") and not p.name.endswith(".lock")]
print(f"{N} tries x {writers} writers: winners per try {dict(tally)}; losers' one-line errors {dict(errors)}")
shutil.rmtree(root)
