"""How test-like is the test-like set: a domain classifier between simulated and real clips.

A logistic regression on standardised per-clip statistics (`ensemble.audio.stats`) learns to tell
rendered test-like clips (class 0) from real test / unlabeled clips (class 1); its stratified 5-fold
cross-validated AUC says how far the simulation is from the test (0.5: indistinguishable). The same
classifier gives density-ratio weights p/(1−p) that up-weight the test-like clips that look real
(covariate-shift correction for blenders, calibrators and nested scores). Run on the runs' predictions
instead of audio statistics (`ensemble.commands.testlike.check_predictions`), it asks whether the models see
the test-like clips as they see the test clips.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from ensemble.audio.stats import STAT_NAMES
from ensemble.errors import ConfigError, DataError
from ensemble.metrics.bootstrap import DOMAIN_BOOT

WARN_AUC = 0.65
N_FOLDS = 5
WEIGHT_CLIP = (0.05, 20.0)  # weights (relative to their mean) outside this range are clipped


@dataclass(frozen=True)
class DomainCheck:
    """Result of the domain classifier: AUC, its spread, and the statistics that differ most.

    `differences` holds (statistic, standardised mean difference real − simulated), largest |d| first.
    """

    auc: float
    auc_fold_std: float
    auc_interval: tuple[float, float]  # bootstrap 95 % interval of the out-of-fold AUC
    n_simulated: int
    n_real: int
    differences: list[tuple[str, float]]
    threshold: float = WARN_AUC
    extra: dict = field(default_factory=dict)

    @property
    def warn(self) -> bool:
        """True when the simulated clips are easy to tell from the real ones."""
        return self.auc > self.threshold

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        return self.differences[:k]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["auc_interval"] = list(self.auc_interval)
        out["differences"] = [{"stat": s, "smd": d} for s, d in self.differences]
        out["warn"] = self.warn
        return out


def _check(sim: np.ndarray, real: np.ndarray, names: Sequence[str] = STAT_NAMES) -> tuple[np.ndarray, np.ndarray]:
    sim, real = np.asarray(sim, np.float64), np.asarray(real, np.float64)
    for name, x in (("simulated", sim), ("real", real)):
        if x.ndim != 2 or x.shape[1] != len(names):
            raise DataError(f"{name} statistics have shape {x.shape}; accepted: (clips, {len(names)})")
        if x.shape[0] < N_FOLDS:
            raise DataError(f"{x.shape[0]} {name} clips; accepted: at least {N_FOLDS} for {N_FOLDS}-fold CV")
        if not np.isfinite(x).all():
            raise DataError(f"{name} statistics hold non-finite values")
    return sim, real


def _model(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))


def shown_faithful(check: dict | None) -> bool:
    """Whether a recorded domain check (`DomainCheck.to_dict()`) shows the test-like clips hard to tell
    from the real ones: judged on real clips the generator's fit never saw (`extra.held_out`), the upper
    end of its AUC interval at or below its warning threshold."""
    if not check or "auc_interval" not in check or not (check.get("extra") or {}).get("held_out"):
        return False
    return float(check["auc_interval"][1]) <= float(check.get("threshold", WARN_AUC))


def standardized_differences(sim: np.ndarray, real: np.ndarray,
                             names: Sequence[str] = STAT_NAMES) -> list[tuple[str, float]]:
    """(statistic, (mean_real − mean_sim) / pooled std), largest |difference| first."""
    pooled = np.sqrt(0.5 * (sim.var(axis=0) + real.var(axis=0))) + 1e-12
    smd = (real.mean(axis=0) - sim.mean(axis=0)) / pooled
    order = np.argsort(-np.abs(smd), kind="stable")
    return [(names[i], round(float(smd[i]), 4)) for i in order]


def domain_oof(sim: np.ndarray, real: np.ndarray, seed: int = 0,
               names: Sequence[str] = STAT_NAMES) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Out-of-fold P(real) for every row of [sim; real], the 0/1 domain labels and the per-fold AUCs."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    sim, real = _check(sim, real, names)
    x = np.concatenate([sim, real])
    y = np.r_[np.zeros(len(sim)), np.ones(len(real))]
    p = np.zeros(len(y))
    aucs = []
    for train, test in StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed).split(x, y):
        p[test] = _model(seed).fit(x[train], y[train]).predict_proba(x[test])[:, 1]
        aucs.append(float(roc_auc_score(y[test], p[test])))
    return p, y, aucs


def domain_check(sim: np.ndarray, real: np.ndarray, seed: int = 0, threshold: float = WARN_AUC,
                 names: Sequence[str] = STAT_NAMES) -> DomainCheck:
    """Cross-validated domain AUC of simulated vs real features `(clips, len(names))` each (by default the
    per-clip audio statistics)."""
    from sklearn.metrics import roc_auc_score

    if not 0.5 <= threshold <= 1.0:
        raise ConfigError(f"threshold={threshold!r} is invalid; accepted: an AUC in [0.5, 1]")
    p, y, aucs = domain_oof(sim, real, seed, names)
    auc = float(roc_auc_score(y, p))
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(DOMAIN_BOOT):
        idx = np.r_[rng.choice(np.flatnonzero(y == 0), int((y == 0).sum())),
                    rng.choice(np.flatnonzero(y == 1), int((y == 1).sum()))]
        boot.append(roc_auc_score(y[idx], p[idx]))
    low, high = np.percentile(boot, [2.5, 97.5])
    return DomainCheck(auc=round(auc, 4), auc_fold_std=round(float(np.std(aucs)), 4),
                       auc_interval=(round(float(low), 4), round(float(high), 4)),
                       n_simulated=len(sim), n_real=len(real),
                       differences=standardized_differences(np.asarray(sim, float), np.asarray(real, float), names),
                       threshold=threshold)


def domain_auc(sim: np.ndarray, real: np.ndarray, seed: int = 0) -> float:
    """The cross-validated domain AUC alone (the quantity the generator fit minimises)."""
    from sklearn.metrics import roc_auc_score

    p, y, _ = domain_oof(sim, real, seed)
    return float(roc_auc_score(y, p))


def density_ratio_weights(sim: np.ndarray, real: np.ndarray, rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """Weights w = p/(1−p) for the clips with statistics `rows`, clipped and normalised to mean 1.

    p is P(real | statistics) from a classifier fitted on `sim` vs `real`; the ratio is corrected for
    the two samples' sizes, so w estimates p_test(x)/p_testlike(x): a clip that looks like the real
    test counts more when blenders and calibrators are fitted on the test-like rows.
    """
    sim, real = _check(sim, real)
    rows = np.asarray(rows, np.float64)
    if rows.ndim != 2 or rows.shape[1] != len(STAT_NAMES) or not np.isfinite(rows).all():
        raise DataError(f"rows to weight have shape {rows.shape} or non-finite values; "
                        f"accepted: finite (clips, {len(STAT_NAMES)})")
    x = np.concatenate([sim, real])
    y = np.r_[np.zeros(len(sim)), np.ones(len(real))]
    p = _model(seed).fit(x, y).predict_proba(rows)[:, 1]
    ratio = p / np.maximum(1.0 - p, 1e-12) * (len(sim) / len(real))
    w = ratio / ratio.mean()
    for _ in range(10):  # clip relative to the mean, renormalise, until both hold
        w = np.clip(w, *WEIGHT_CLIP)
        w = w / w.mean()
    return w
