"""The full pipeline on a real competition folder (e.g. ../shared/data/voices-dev), scored on its answers.

    python bench/realdata.py --data ../shared/data/voices-dev --out /tmp/realdata [--quick]

Fine-tunes each model family k-fold (ONNX, OOF, test-like OOF), makes the per-clip feature sets in
`FEATURE_SETS` (Silero VAD meta-features, `ens features vad`), then scores every candidate the decision
rule weighs (each run raw and calibrated, each blend method, each meta-feature method with the feature
sets: `logreg+meta`, `lgbm+meta`) by nested CV and on the answers, side by side: the Spearman rank correlation between the two, the written pick (`--method auto`, with and without
`--test-prior em`) against the best single run and `mean`, and each run's test ECE raw and calibrated.
Nothing here is tuned to the answers: they are read only to score at the end.
See bench/realdata.md for the recipe and the numbers measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ensemble.commands.features import make_features
from ensemble.artifacts.submission import submission_frame
from ensemble.commands.stack import run_stack
from ensemble.stack.request import StackRequest
from ensemble.artifacts.competition import Competition
from ensemble.commands.finetune import FinetuneOptions, finetune
from ensemble.artifacts.provenance import package_versions
from ensemble.commands.score import read_answers
from ensemble.metrics.frames import score_frame
from ensemble.artifacts.workspace import Workspace

FAMILIES = {
    # run name: (model, options) — small models trained from scratch on 2 CPU cores: 3-s crops for training,
    # 3-s windows pooled over longer clips at inference, an update every batch (from scratch, small data)
    "cnn": ("logmel-cnn", {"epochs": 5, "batch_size": 32, "grad_accum": 1, "lr": 3e-3, "max_seconds": 3.0}),
    "w2v-tiny": ("tiny-wav2vec2", {"epochs": 5, "batch_size": 32, "grad_accum": 1, "lr": 5e-4, "max_seconds": 3.0}),
    # the same CNN on 1.5-s crops and windows, another seed: a view of the audio the 3-s model does not have
    "cnn-short": ("logmel-cnn", {"epochs": 5, "batch_size": 32, "grad_accum": 1, "lr": 3e-3, "max_seconds": 1.5,
                                 "seed": 1}),
    # per-clip features + LightGBM per label on 5 passes of augmented 5-s examples: errs unlike the CNNs
    "feat-lgbm": ("features-lgbm", {"epochs": 5, "max_seconds": 5.0}),
    # the same + a pretrained speaker encoder's d-vector (Resemblyzer's GE2E weights): what a voice sounds
    # like, learnt from thousands of speakers, where the summary features see only spectra and levels
    "feat-dvec": ("features-dvec-lgbm", {"epochs": 5, "max_seconds": 5.0}),
    # the same features, an RBF SVM per label (Platt-scaled): the background material's classical baseline
    "feat-svm": ("features-svm", {"epochs": 5, "max_seconds": 5.0}),
}
# per-clip meta-features for the stacker (feature set name: kind), made without labels
FEATURE_SETS = {"vad": "vad"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="competition folder with test_answers.csv")
    parser.add_argument("--out", type=Path, default=Path("realdata-workspace"), help="workspace to create")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one epoch per family (a smoke run)")
    parser.add_argument("--runs", help="comma-separated runs of FAMILIES to train and stack (default: all)")
    parser.add_argument("--rebuild-testlike", choices=("default", "fit"),
                        help="remake the test-like set (default or fitted generator) of a trained workspace and "
                             "re-predict the runs' test-like clips with their ONNX folds; no training")
    args = parser.parse_args()

    started = time.perf_counter()
    ws = Workspace(args.out.resolve())
    comp = Competition.load(ws.data_dir(args.data))
    if args.rebuild_testlike:
        rebuild_testlike(ws, comp, fit=args.rebuild_testlike == "fit")
    runs = args.runs.split(",") if args.runs else list(FAMILIES)
    load_before = os.getloadavg()
    train_missing(ws, comp, FAMILIES, runs, args.folds, FEATURE_SETS, quick=args.quick)
    t0 = time.perf_counter()
    asked = StackRequest(runs=tuple(runs), compare=True, write=False)
    comparison = run_stack(ws, comp, asked).comparison
    print(f"stack --compare: {time.perf_counter() - t0:.0f} s", flush=True)
    truth, labels = read_answers(args.data / "test_answers.csv", comp.labels)
    rows = []
    for cand, row in zip(comparison.candidates, comparison.rows):
        result = run_stack(ws, comp, replace(asked.with_candidate(cand), meta=",".join(FEATURE_SETS) if cand.meta
                                             else "none")).result
        rows.append(_row(cand.name, row, result.test, comp, truth, labels))
    for prior in ("none", "em"):
        written = replace(asked, compare=False, method="auto", test_prior=prior, name=f"auto-prior-{prior}",
                          write=True, force=True)
        result = run_stack(ws, comp, written, comparison=comparison).result
        rows.append(_row(f"written (auto, prior {prior})", {}, result.test, comp, truth, labels))
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} (1 min)")
    print_tables(pd.DataFrame(rows), comparison, time.perf_counter() - started)


def train_missing(ws: Workspace, comp: Competition, families: dict, runs: list[str], folds: int,
                  sets: dict[str, str], quick: bool = False) -> None:
    """Train the runs of `families` named in `runs` that the workspace lacks (`quick`: one epoch), then the
    feature sets of `sets` it lacks, printing the seconds each took."""
    from ensemble.artifacts.features import feature_set_names

    for name, (model, options) in families.items():
        if name in ws.run_names() or name not in runs:
            continue
        options = {**options, "epochs": 1} if quick else options
        t0 = time.perf_counter()
        finetune(ws, comp, FinetuneOptions(model=model, name=name, folds=folds, **options))
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    for name, kind in sets.items():
        if name not in feature_set_names(ws):
            t0 = time.perf_counter()
            make_features(ws, comp, kind, name)
            print(f"feature set {name}: {time.perf_counter() - t0:.0f} s", flush=True)


def rebuild_testlike(ws: Workspace, comp: Competition, fit: bool) -> None:
    """A new test-like set for the workspace's folds, then every run's test-like predictions remade (and the
    feature sets, whose test-like rows belong to the old set, dropped: the main loop makes them again)."""
    import shutil

    from ensemble.artifacts.features import feature_set_names, features_dir
    from ensemble.artifacts.folds import load_folds
    from ensemble.commands.oof import run_oof
    from ensemble.artifacts.testlike_set import META_FILE, TESTLIKE_FILE, ensure_testlike

    for name in (TESTLIKE_FILE, META_FILE):
        (ws.models_dir / name).unlink(missing_ok=True)
    for name in feature_set_names(ws):
        shutil.rmtree(features_dir(ws, name))
    t0 = time.perf_counter()
    ensure_testlike(ws, comp, load_folds(ws), per_fold=None, fit=fit)
    print(f"test-like set rebuilt ({'fitted' if fit else 'default'} generator): {time.perf_counter() - t0:.0f} s", flush=True)
    for name in ws.run_names():
        t0 = time.perf_counter()
        run_oof(ws, comp, name, splits=("testlike",), provider="cpu")
        print(f"{name}: test-like re-predicted in {time.perf_counter() - t0:.0f} s", flush=True)


def _row(name: str, compared: dict, pred, comp: Competition, truth: pd.DataFrame, labels: list[str]) -> dict:
    """One candidate: its nested scores (trusted and clean) beside its score on the answers."""
    frame = submission_frame(pred, comp)
    test = score_frame(frame, truth, labels)
    return {"candidate": name, "nested": compared.get("score"), "clean": compared.get("score_clean"),
            "test": test.score, "test_ece": test.ece, "chosen": bool(compared.get("chosen"))}


def print_tables(table: pd.DataFrame, comparison, seconds: float) -> None:
    from scipy.stats import spearmanr

    pd.set_option("display.width", 120)
    print(f"\n{platform.platform()}, python {platform.python_version()}, "
          + ", ".join(f"{k} {v}" for k, v in package_versions().items() if k in ("torch", "transformers", "onnxruntime", "lightgbm")))
    print(f"total {seconds / 60:.1f} min\n\ncandidates: trusted nested CV, clean nested CV, score on the answers (lower is better)")
    print(table.sort_values("nested", na_position="last").to_string(index=False, float_format="%.4f"))
    scored = table.dropna(subset=["nested"])
    rho = spearmanr(scored["nested"], scored["test"]).statistic
    print(f"\nSpearman rank correlation, trusted nested CV vs test, over {len(scored)} candidates: {rho:+.3f}")
    raw = scored[scored["candidate"].str.startswith("run:") & ~scored["candidate"].str.endswith("+cal")]
    baseline = raw.loc[raw["nested"].idxmin()]
    oracle = raw.loc[raw["test"].idxmin()]
    mean = scored[scored["candidate"] == "mean"].iloc[0]
    print(f"decision: {comparison.decision.rule}")
    for _, w in table[table["candidate"].str.startswith("written")].iterrows():
        print(f"{w['candidate']}: test {w['test']:.4f}; vs the best single run by CV ({baseline['candidate']}, "
              f"{baseline['test']:.4f}) {baseline['test'] - w['test']:+.4f}; vs the best run on the answers "
              f"({oracle['candidate']}, {oracle['test']:.4f}) {oracle['test'] - w['test']:+.4f}; vs mean "
              f"({mean['test']:.4f}) {mean['test'] - w['test']:+.4f} (positive = better)")
    for _, r in raw.iterrows():
        cal = scored[scored["candidate"] == r["candidate"] + "+cal"].iloc[0]
        print(f"{r['candidate']}: test ECE raw {r['test_ece']:.4f}, calibrated (auto) {cal['test_ece']:.4f}; "
              f"test score {r['test']:.4f} → {cal['test']:.4f}")


if __name__ == "__main__":
    main()
