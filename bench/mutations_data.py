"""Mutation check for the data-side hardening (issue 9): each mutation must make a test fail.

Applies one textual change at a time to the source, runs the tests selected by `-k`, reverts, and
prints CAUGHT or SURVIVED. Run on demand, not in CI: `python bench/mutations_data.py` (about a minute).
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
T = "tests/test_bad_inputs_data.py"
MUTATIONS = [
    ("weights_only=False", "ensemble/backbones/train.py", "weights_only=True)", "weights_only=False)", "resume_crafted"),
    ("no data check in check_compatible", "ensemble/runs.py", "made_on[key] != ref_data[key]:", "False:", "other_train_csv or other_test_csv or pairwise"),
    ("lone run not checked (old gather)", "ensemble/stack_inputs.py", "check_compatible(runs, data=comp.fingerprint(), folds=current_folds_fingerprint(ws), labels=comp.labels)", "check_compatible(runs)", "lone_run"),
    ("mean of probabilities", "ensemble/stack_inputs.py", "return sigmoid(logit(probs).mean(axis=axis))", "return probs.mean(axis=axis)", "logits"),
    ("no path check", "ensemble/competition.py", "        if os.path.commonpath([inside, real]) != inside:", "        if False:", "path_dot or symlink"),
    ("no absolute-path check", "ensemble/competition.py", "        if os.path.isabs(rel):", "        if False:", "absolute"),
    ("no header-only check", "ensemble/competition.py", "    if df.empty:\n", "    if False:\n", "header_only"),
    ("no audio check", "ensemble/audio/check.py", "    if problems:\n", "    if False:\n", "audio"),
    ("no check_name", "ensemble/workspace.py", "    if not name or name.startswith(\".\") or not set(name) <= allowed:", "    if False:", "name_"),
    ("ens.toml before validation", "ensemble/competition.py", "comp = Competition.load(ws.data_dir(data, remember=False)).validate()", "comp = Competition.load(ws.data_dir(data, remember=True)).validate()", "header_only or path_ or audio"),
    ("no oof row validation in gather", "ensemble/stack_inputs.py", "        validate_oof(frame, comp.labels, folds, run.dir / OOF_FILE)\n", "", "oof_"),
    ("no test row validation", "ensemble/stack_inputs.py", "        validate_test(frame, comp.labels, comp.test_ids, run.dir / TEST_FILE)\n", "", "test_parquet"),
    ("no chmod in atomic_path", "ensemble/io.py", "    os.chmod(tmp, umask_mode(directory=False))", "    pass", "umask"),
    ("no chmod of import staging", "ensemble/importer.py", "    staging.chmod(umask_mode(directory=True))\n", "", "umask"),
    ("libsndfile reason passed on", "ensemble/audio/load.py", 'return DataError(f"audio file {path} cannot be decoded', 'return DataError(f"audio file {path} {err}', "stderr_clean"),
]
results = []
for name, rel, old, new, k in MUTATIONS[int(sys.argv[1]) if len(sys.argv) > 1 else 0:]:
    path = ROOT / rel
    text = path.read_text()
    assert text.count(old) == 1, (name, text.count(old))
    path.write_text(text.replace(old, new))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", T, "-k", k, "-p", "no:cacheprovider"],
                           cwd=ROOT, capture_output=True, text=True)
    finally:
        path.write_text(text)
    tail = r.stdout.strip().splitlines()[-1]
    results.append((name, r.returncode != 0))
    print(f"{name}: {'CAUGHT' if r.returncode != 0 else 'SURVIVED'} ({tail})", flush=True)
sys.exit(0 if all(caught for _, caught in results) else 1)
