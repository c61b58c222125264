"""Domain AUC of the default vs the fitted test-like generators on a real competition folder.

The real unlabeled clips (test + unlabeled_data/) are split in two halves by a seeded permutation:
the generator is fitted to half A (the density-ratio fit `ratio_generator` that `ensure_testlike(fit=True)`
uses, and with --coordinate also the older coordinate search), and all are then judged against half B with fresh
render seeds (N test-like vs up to N real clips), so the fit's selection does not flatter it. No
labels and no answer key are read.

    python bench/testlike_domain.py ../shared/data/voices-dev [--clips 300] [--seed 0] [--coordinate]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from ensemble.audio.generator import GeneratorParams
    from ensemble.audio.load import WaveStore, audio_duration
    from ensemble.audio.stats import ANALYSIS_SR
    from ensemble.artifacts.competition import Competition
    from ensemble.audio.domain import domain_check
    from ensemble.audio.testlike_fit import (analyse_real, fit_generator, pool_renderer, pool_size, ratio_generator,
                                       recipe_renderer)
    from ensemble.artifacts.testlike_set import background_loader, real_clips
    from ensemble.audio.testlike_render import SourceRows

    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--coordinate", action="store_true", help="also run the (slow) coordinate search")
    parser.add_argument("--fit-voices", action="store_true", help="let the fit move the voice-count shares too")
    args = parser.parse_args()
    comp = Competition.load(args.data)
    ids = comp.train["id"].astype(str).tolist()
    files = [comp.audio_path(p) for p in comp.train["path"]]
    store, row = WaveStore(files, ANALYSIS_SR), {i: k for k, i in enumerate(ids)}
    rows = SourceRows(ids=ids, targets=comp.targets, folds=np.arange(len(ids)) % 5, labels=comp.labels,
                      durations=[audio_duration(f) for f in files])
    renderer_args = dict(source=rows, load=lambda i: store[row[i]],
                         load_background=background_loader(comp, ANALYSIS_SR))
    paths, ok = real_clips(comp)
    perm = np.random.default_rng(args.seed + 123).permutation(len(paths))
    halves = [perm[: len(perm) // 2], perm[len(perm) // 2 :]]
    real_a, real_b = (analyse_real([paths[i] for i in h], [ok[i] for i in h], seed=args.seed, max_clips=args.clips,
                                   root=comp.root)
                      for h in halves)
    started = time.perf_counter()
    pool = pool_renderer(**renderer_args, n_clips=pool_size(len(real_a.stats)), seed=args.seed)
    ratio = ratio_generator(pool, real_a, seed=args.seed, fit_voices=args.fit_voices)
    print(f"ratio fit: {time.perf_counter() - started:.0f} s on this machine")
    candidates = [("default", GeneratorParams()), ("ratio", ratio)]
    if args.coordinate:
        started = time.perf_counter()
        fit = fit_generator(recipe_renderer(**renderer_args, seed=args.seed), real_a, seed=args.seed)
        print(f"coordinate fit: {time.perf_counter() - started:.0f} s; trajectory (fit half, {len(real_a.stats)} real clips):")
        for step in fit.history:
            print(f"  {step['step']:<60} AUC {step['auc']:.3f}")
        candidates.append(("coord", fit.params))
    judge = recipe_renderer(**renderer_args, n_clips=args.clips, seed=args.seed + 7)
    for name, params in candidates:
        check = domain_check(judge(params, real_a.backgrounds), real_b.stats, seed=args.seed)
        low, high = check.auc_interval
        top = ", ".join(f"{s} {d:+.2f}" for s, d in check.top(5))
        print(f"{name:8s} AUC {check.auc:.3f} (95% {low:.3f}-{high:.3f}, fold std {check.auc_fold_std:.3f}) top: {top}")
    print("ratio-fitted params:", ratio.to_dict())


if __name__ == "__main__":
    main()
