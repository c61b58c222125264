"""A submission's recipe in words: which runs with what weights, the calibrator per label, the test prior,
and the rule that chose the method. Shared by `ens stack`'s summary and `ens report`'s page, so the
sidecar JSON never has to be read to know what a submission is.
"""

from __future__ import annotations

from typing import Any

from ensemble.artifacts.records import Recipe

ONE_RUN = 0.95  # a share of the weight this large means the blend is, in effect, that run


def _num(value: float) -> str:
    return f"{value:.2f}"


def weight_lines(names: list[str], labels: list[str], weights: list[list[float]], word: str) -> list[str]:
    """One line per label: `run weight` pairs; a note when one run takes (nearly) all the weight."""
    lines = []
    heavy = set()
    for label, row in zip(labels, weights):
        pairs = ", ".join(f"{n} {_num(w)}" for n, w in zip(names, row))
        lines.append(f"{word}, {label}: {pairs}")
        top = max(range(len(row)), key=lambda r: abs(row[r])) if row else None
        heavy.add(names[top] if top is not None and abs(row[top]) >= ONE_RUN * sum(abs(w) for w in row) else None)
    if len(heavy) == 1 and None not in heavy and len(names) > 1:
        lines.append(f"note: (nearly) all weight on {heavy.pop()}: this blend is that run, so any gain over it "
                     "comes from calibration, not from blending")
    return lines


def coefficient_lines(names: list[str], labels: list[str], coef: list[Any], meta: list[str]) -> list[str]:
    lines = []
    for label, row in zip(labels, coef):
        if isinstance(row, float):
            lines.append(f"logistic regression, {label}: constant {row:.3f} (one class in the fit rows)")
            continue
        if len(row) - len(meta) == len(names):
            feats = names + meta
        else:  # every label's logit of every run, run-major, then the meta-features (standardised)
            feats = [f"{n}:{lab}" for n in names for lab in labels] + meta
        lines.append(f"logistic regression on logits, {label}: "
                     + ", ".join(f"{f} {c:+.2f}" for f, c in zip(feats, row)))
    return lines


def blender_lines(recipe: Recipe) -> list[str]:
    """How the runs are combined, in words: the meta-features beside the logits, then the method's own
    words (`Blender.describe`)."""
    from ensemble.stack.base import BLENDERS

    names, labels, method = recipe.run_names, list(recipe.labels), recipe.method
    meta = recipe.meta_columns
    lines = [f"meta-features beside the logits: {', '.join(meta)}"] if meta else []
    if method in BLENDERS:
        lines += BLENDERS[method].describe(recipe.blender, names, labels, meta)
    return lines


def calibrator_lines(recipe: Recipe) -> list[str]:
    """The calibrator per label and why `auto` picked it."""
    out = []
    for cal in recipe.calibrators:
        why = f" ({cal.rule})" if cal.rule else ""
        out.append(f"calibrator, {cal.label}: {cal.calibrator}{why}")
    return out


def prior_lines(recipe: Recipe) -> list[str]:
    """What `--test-prior` did per label: not asked, adapted, or kept (and why)."""
    prior, labels = recipe.prior, list(recipe.labels)
    if prior is None or not prior.adapted:
        return ["test prior: not adapted (--test-prior none)"]
    out, mode = [], prior.mode
    used, train = prior.prior_used or [], prior.prior_train or []
    fallback, probed = prior.fallback or {}, prior.probed
    for j, label in enumerate(labels):
        if label in fallback:
            out.append(f"test prior, {label}: kept the train prior {train[j]:.3f} ({fallback[label]})")
        elif j < len(used) and j < len(train):
            how = {"em": "estimated by EM", "lb": "read off the public leaderboard by probes"}.get(mode, "assumed")
            if mode == "lb" and j < len(probed.get("half_width", [])):
                how += f", ± {probed['half_width'][j]:.3f} at 95 %"
            out.append(f"test prior, {label}: {train[j]:.3f} in the fit rows → {used[j]:.3f} ({how})"
                       if mode == "lb" else f"test prior, {label}: {train[j]:.3f} in train → {used[j]:.3f} ({how})")
    if (reweighting := probed.get("reweighting")):
        out.append("test-like rows reweighted to the probed mix for calibration and nested scores: "
                   + ", ".join(f"{c} {b:.3f}→{a:.3f}" for c, b, a in
                               zip(reweighting["classes"], reweighting["before"], reweighting["after"]))
                   + (f" (marginals missed by up to {reweighting['marginal_gap']:.3f}: the rows hold no such mix)"
                      if reweighting["marginal_gap"] > 0.005 else ""))
    return out


def decision_line(recipe: Recipe) -> str:
    """Why this method: the decision rule's sentence, or the user's explicit choice."""
    if recipe.decision:
        return f"chosen by the decision rule: {recipe.decision.rule}"
    return (f"method {recipe.method} as asked (--method); `--compare` or `--method auto` lets the "
            "decision rule choose")


def recipe_lines(recipe: Recipe) -> list[str]:
    """The whole recipe in words, most important first: why this method, how runs combine, calibration, prior."""
    return [decision_line(recipe), *blender_lines(recipe), *calibrator_lines(recipe), *prior_lines(recipe)]


def compare_legend(testlike: bool) -> list[str]:
    """What `--compare`'s columns mean, in words (the terminal table and the report page share it)."""
    where = "the test-like clips" if testlike else "the clean OOF rows"
    return [
        f"nested: score on rows the candidate never fitted on (nested CV on {where}; lower is better); "
        "auc, brier, ece: its parts" + ("; clean: the same on the clean train rows" if testlike else ""),
        "in-sample: fitted and scored on the same rows; gap = nested − in-sample (how much fitting flatters it)",
        "gain: best single run's nested score − this one's (positive = better than the best run); sec: seconds",
        "run:X is run X alone, +cal with a calibrator; * marks the decision's choice (what --write writes)",
    ]


COMPARE_KEYS = ["method", "chosen", "score", "auc", "brier", "ece", "score_clean", "score_testlike", "in_sample", "gap",
                "gain", "seconds"]


def compare_frame(rows: list[dict]):
    """`--compare`'s rows (best first) as the shown table: short column names that `compare_legend` explains;
    and whether the nested scores are on test-like rows."""
    import pandas as pd

    frame = pd.DataFrame([{**r, "method": ("* " if r.get("chosen") else "") + r["method"]} for r in rows])
    keep = ["method", "score", "auc", "brier", "ece", "score_clean", "in_sample", "gap", "gain", "seconds"]
    testlike = "score_testlike" in frame.columns and frame["score_testlike"].notna().any()
    if not testlike:
        keep.remove("score_clean")  # without test-like rows the clean score is the nested score
    frame = frame.reindex(columns=keep)
    return frame.rename(columns={"score": "nested", "score_clean": "clean", "in_sample": "in-smp",
                                 "seconds": "s"}), testlike
