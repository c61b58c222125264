"""What ens writes when it chooses for the user: the best single run, unless something credibly beats it.

The candidates are every run on its own (raw, and calibrated), and every blend method. The baseline is
the run with the best raw score on the trusted rows (test-like when the runs have them, else clean).
A challenger replaces it only when

1. its nested-CV gain over the baseline on the trusted rows is credibly positive: the lower end of the
   paired bootstrap interval is above zero, at a level corrected for the number of challengers
   (Bonferroni), since the best of many noisy gains is positive by chance alone; and
2. it is not credibly worse on the other rows (the clean ones, when test-like rows are trusted): the
   upper end of that interval is not below zero. This second opinion is asked only while the test-like
   set has not been shown faithful (its domain check, `ensemble.audio.domain.shown_faithful`): the clean
   rows are single clean voices, a domain the test does not resemble, where the best run on clean audio
   beats every mixture of runs (even `mean`, which fits nothing), so once the test-like clips are hard
   to tell from the test's they alone speak for the test.

Among the challengers that pass, the best trusted score wins. Why: on real data the simulated test-like
set is imperfect, and a blend or calibrator that "wins" by a hair has fitted its quirks; a team loses
nothing by keeping its best run when ens cannot show that a blend helps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ensemble.metrics.scorer import COMPETITION, Scorer
from ensemble.artifacts.records import DecisionRecord
from ensemble.stack.base import BLENDERS
from ensemble.metrics.bootstrap import DECISION_BOOT
from ensemble.stack.bootstrap import PairedBootstrap

ALPHA = 0.05
N_BOOT = DECISION_BOOT  # the decision's size (set in ensemble.metrics.bootstrap), under the name importers use


@dataclass(frozen=True)
class Candidate:
    """One way to make the submission: a method with its parameters and calibration."""

    name: str                 # shown in tables: `mean`, `run:cnn`, `run:cnn+cal`
    method: str
    calibrate: str
    params: dict = field(default_factory=dict, hash=False)
    run: str | None = None    # the run, for single-run candidates
    meta: bool = False        # the method also takes the per-clip meta-features

    @property
    def is_raw_run(self) -> bool:
        return self.run is not None and self.calibrate == "none"


def blend_methods() -> list[str]:
    """Every registered method that is a blend candidate (`single` passes one run through: its candidates
    are the runs themselves)."""
    return [name for name, cls in BLENDERS.items() if cls.candidate]


def candidates(run_names: Sequence[str], methods: Sequence[str] | None = None,
               calibrate: str = "auto", with_meta: bool = False) -> list[Candidate]:
    """Each run raw, each run calibrated (unless `calibrate` is 'none'), then each blend method; with
    `with_meta`, each method that takes meta-features once more with them (`logreg+meta`, …)."""
    out = [Candidate(f"run:{name}", "single", "none", {"run": r}, name) for r, name in enumerate(run_names)]
    if calibrate != "none":
        out += [Candidate(f"run:{name}+cal", "single", calibrate, {"run": r}, name)
                for r, name in enumerate(run_names)]
    methods = list(methods or blend_methods())
    out += [Candidate(m, m, calibrate) for m in methods]
    if with_meta:
        out += [Candidate(f"{m}+meta", m, calibrate, meta=True) for m in methods if BLENDERS.get(m).uses_meta]
    return out


def family_alpha(n_challengers: int) -> float:
    """The level of each challenger's gain interval: ALPHA shared over the challengers (Bonferroni). A method
    stacked on its own states its gain at the level a comparison of the same runs would use, so one
    candidate never gets two intervals."""
    return ALPHA / max(1, n_challengers)


@dataclass
class Decision:
    """The chosen candidate, the baseline it had to beat, and the rule that decided, in words."""

    chosen: int
    baseline: int
    rule: str
    tests: list[dict[str, Any]]   # per candidate: gain interval on trusted (and other) rows, passed

    def record(self, cands: Sequence[Candidate]) -> DecisionRecord:
        """What the sidecar keeps of the decision (`recipe.decision`), candidates by name."""
        return DecisionRecord(cands[self.chosen].name, cands[self.baseline].name, self.rule,
                              [{"candidate": c.name, **t} for c, t in zip(cands, self.tests)])


@dataclass(frozen=True)
class Evidence:
    """Each candidate's nested predictions `(rows, labels)` on one set of rows, the rows' targets, and
    their weights (density ratios; None: equal)."""

    predictions: Sequence[np.ndarray]
    y: np.ndarray
    weights: np.ndarray | None = None


def decide(cands: Sequence[Candidate], scores: Sequence[float | None], trusted: Evidence,
           other: Evidence | None = None, *, n_boot: int = DECISION_BOOT, seed: int = 0, scorer: Scorer = COMPETITION,
           note: str = "") -> Decision:
    """Apply the rule above; `scores` are the trusted nested losses (lower is better); `other` the clean rows
    a challenger must also not lose on (None: not asked); `note` ends the rule's words (why)."""
    score = np.array([np.inf if s is None or not np.isfinite(s) else s for s in scores])
    raw = [i for i, c in enumerate(cands) if c.is_raw_run]
    if not raw:
        raise ValueError("the candidates must include at least one raw run")
    base = min(raw, key=lambda i: score[i])
    challengers = [i for i in range(len(cands)) if i != base and np.isfinite(score[i])]
    alpha, level = ALPHA, family_alpha(len(challengers))
    tests: list[dict[str, Any]] = [{} for _ in cands]
    on_trusted = PairedBootstrap(trusted.y, n_boot, seed, trusted.weights, scorer)
    on_other = None if other is None else PairedBootstrap(other.y, n_boot, seed, None, scorer)
    preds = trusted.predictions
    same = {i for i in challengers if np.array_equal(preds[i], preds[base])}  # e.g. the baseline "calibrated" by `none`
    on_trusted.prepare([preds[base]] + [preds[i] for i in challengers if i not in same])  # scored together
    for i in challengers:
        if i in same:
            tests[i] = {"same_as_baseline": True, "passed": False}
            continue
        g = on_trusted.gain(preds[i], preds[base], alpha=level)
        tests[i] = {"gain": g["gain"], "lo": g["lo"], "hi": g["hi"], "alpha": level, "passed": bool(g["lo"] > 0)}
    if on_other is not None:  # the second opinion, for those that passed the first
        asked = [i for i in challengers if tests[i]["passed"]]
        on_other.prepare([other.predictions[base]] + [other.predictions[i] for i in asked])
        for i in asked:
            h = on_other.gain(other.predictions[i], other.predictions[base], alpha=alpha)
            test = {k: v for k, v in tests[i].items() if k != "passed"}
            test.update(other_gain=h["gain"], other_lo=h["lo"], other_hi=h["hi"])
            tests[i] = {**test, "passed": bool(h["hi"] >= 0)}
    winners = [i for i in challengers if tests[i]["passed"]]
    chosen = min(winners, key=lambda i: score[i]) if winners else base
    rule = _rule(cands, tests, base, chosen, level, other is not None)
    return Decision(chosen, base, f"{rule}; {note}" if note else rule, tests)


def _rule(cands: Sequence[Candidate], tests: list[dict], base: int, chosen: int, level: float,
          has_other: bool) -> str:
    conf = f"{100 * (1 - level):.1f} % interval"
    if chosen != base:
        t = tests[chosen]
        other = ", not worse on the clean rows" if has_other else ""
        return (f"{cands[chosen].name} beats the best single run {cands[base].name}: gain {t['gain']:+.4f} "
                f"[{t['lo']:+.4f}, {t['hi']:+.4f}] ({conf}){other}")
    tried = [i for i, t in enumerate(tests) if "gain" in t]
    if not tried:
        return f"best single run {cands[base].name} kept: nothing else to compare"
    best = max(tried, key=lambda i: tests[i]["gain"])
    t = tests[best]
    why = ("worse on the clean rows" if t["lo"] > 0 else f"its interval [{t['lo']:+.4f}, {t['hi']:+.4f}] "
           f"({conf}) reaches zero")
    return (f"best single run {cands[base].name} kept: no candidate beats it credibly (closest: "
            f"{cands[best].name}, gain {t['gain']:+.4f}, {why})")
