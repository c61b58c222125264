"""kill -9 of a forced `ens import` and a forced `ens stack` at each rename, then the next command: what is left."""
import hashlib, shutil, signal, sys, tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import numpy as np, pandas as pd
from test_faults import run, renames
root = Path(tempfile.mkdtemp(prefix="i30a_kill"))
comp = root / "comp"; comp.mkdir()
train = [f"TRAIN_{i:03d}" for i in range(40)]; test = [f"TEST_{i:03d}" for i in range(12)]
pd.DataFrame({"id": train, "path": [f"./train/{i}.ogg" for i in train], "label": np.where(np.arange(40) % 2, "fake", "real")}).to_csv(comp / "train.csv", index=False)
pd.DataFrame({"id": test, "path": [f"./test/{i}.ogg" for i in test]}).to_csv(comp / "test.csv", index=False)
pd.DataFrame({"id": test, "fake": 0.5, "real": 0.5}).to_csv(comp / "sample_submission.csv", index=False)
def csvs(k):
    r = np.random.default_rng(k)
    t, o = root / f"t{k}.csv", root / f"o{k}.csv"
    pd.DataFrame({"id": test, "fake": r.random(12), "real": r.random(12)}).to_csv(t, index=False)
    pd.DataFrame({"id": train, "fake": r.random(40), "real": r.random(40)}).to_csv(o, index=False)
    return t, o
def digest(folder):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith("lock"))).hexdigest()
ws0 = root / "ws"
(t0, o0), (t1, o1) = csvs(0), csvs(1)
for k, (t, o) in enumerate([(t0, o0), (t1, o1)]):
    assert run(["import", f"r{k}", "--test", t, "--oof", o, "--data", comp, "-w", ws0]).returncode == 0
assert run(["stack", "r0", "r1", "--method", "mean", "--calibrate", "none", "--name", "s", "-w", ws0]).returncode == 0
old_run, old_csv = digest(ws0 / "models" / "r0"), (ws0 / "submissions" / "s.csv").read_bytes()
for what, args, check in [
    ("import --force", ["import", "r0", "--test", t1, "--oof", o1, "--force"], lambda ws: digest(ws / "models" / "r0") == old_run),
    ("stack --force", ["stack", "r0", "r1", "--method", "logit", "--calibrate", "none", "--name", "s", "--force"],
     lambda ws: (ws / "submissions" / "s.csv").read_bytes() == old_csv)]:
    probe = root / "probe"; shutil.rmtree(probe, ignore_errors=True); shutil.copytree(ws0, probe)
    n = len(renames([*args, "-w", probe], root))
    outcome = []
    for k in range(1, n + 1):
        ws = root / f"k{k}"; shutil.rmtree(ws, ignore_errors=True); shutil.copytree(ws0, ws)
        assert run([*args, "-w", ws], kill_at=k).returncode == -signal.SIGKILL
        there = (ws / "models" / "r0" / "run.json") if what.startswith("import") else (ws / "submissions" / "s.csv")
        visible = "old visible" if there.is_file() else "nothing visible"
        nxt = run([*(["import", "r0", "--test", t0] if what.startswith("import") else
                     ["stack", "r0", "r1", "--method", "mean", "--calibrate", "none", "--name", "s"]), "-w", ws])
        litter = [p.name for p in (ws / ("models" if what.startswith("import") else "submissions")).iterdir()
                  if p.name.startswith(".") and not p.name.endswith("lock")]
        outcome.append(f"kill@{k}: {visible}; after next cmd: {'OLD' if check(ws) else 'NEW'}, litter {len(litter)}")
    print(what, f"({n} renames):", "; ".join(outcome))
shutil.rmtree(root)
