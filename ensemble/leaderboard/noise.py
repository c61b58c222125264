"""The leaderboard read with its noise.

A public leaderboard scores a random share of the test set. Two submissions' public scores therefore
differ by chance alone, by an amount that depends on how many clips the public part holds and on how
differently the two err. We estimate that noise honestly from rows whose labels we know and which look
like the test: the trusted rows the decision rule scores (test-like clips where the workspace has them,
else the clean OOF rows), with each row's density-ratio weight. For two submissions we draw many random
"public subsets" of the public size from those rows and score both on each (paired: the same rows for
both); the spread of the difference around its mean is the sampling noise of a public difference.

The same rows give the final choice (`final_picks`): the trusted best, then the submission that is not
credibly worse than it (paired bootstrap interval over the trusted rows reaches zero) and whose errors
correlate least with the best's, a hedge against the test differing from what CV saw.

Each row's predictions come from its run's OOF files, or for a stacked submission from its nested
predictions on the trusted rows, written beside it by `ens stack` (`<name>.rows.parquet`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.artifacts.io import file_sha256, read_parquet
from ensemble.artifacts.workspace import Workspace
from ensemble.errors import ConfigError
from ensemble.metrics.scorer import COMPETITION, Scorer

ROWS_SUFFIX = ".rows.parquet"
LEVEL = 0.95          # the noise band: 95 % of public differences between equally good submissions fall inside
N_BOOT = 400          # random public subsets (and bootstrap replicates for the final choice)


def check_share(share: float) -> float:
    """A public share is a fraction of the test set in (0, 1]."""
    if not (0 < share <= 1):
        raise ConfigError(f"--public-share must be a fraction of the test set in (0, 1]; got {share}")
    return float(share)


def public_share(ws: Workspace) -> float | None:
    """The public leaderboard's share of the test set, as `ens lb --public-share` remembered it."""
    value = ws.settings().get("public_share")
    return None if value is None else check_share(float(value))


# ---------------------------------------------------------------- the trusted rows and their predictions


@dataclass
class TrustedRows:
    """The rows the decision rule scores: ids, targets, weights (None: equal) and which set they are."""

    ids: pd.Series
    y: np.ndarray
    weights: np.ndarray | None
    set: str  # "testlike" or "clean"


def trusted_rows(ws: Workspace, labels: list[str], testlike: bool) -> TrustedRows | None:
    """The test-like clips (with `testlike`) or the clean OOF rows, with their labels; None where absent."""
    from ensemble.artifacts.folds import FOLDS_FILE, load_folds
    from ensemble.artifacts.testlike_set import load_testlike, testlike_weights
    from ensemble.stack.inputs import usable_weights

    if testlike:
        clips = load_testlike(ws)
        if clips is None:
            return None
        weights, _ = usable_weights(testlike_weights(clips))
        return TrustedRows(clips["id"].astype(str).reset_index(drop=True), clips[labels].to_numpy(dtype=np.float64),
                           weights, "testlike")
    if not (ws.models_dir / FOLDS_FILE).is_file():
        return None
    folds = load_folds(ws)
    return TrustedRows(folds["id"].astype(str).reset_index(drop=True), folds[labels].to_numpy(dtype=np.float64),
                       None, "clean")


def rows_path(ws: Workspace, name: str) -> Path:
    return ws.submissions_dir / f"{name}{ROWS_SUFFIX}"


def rows_bytes(ids: pd.Series, p: np.ndarray, labels: list[str], which: str) -> tuple[bytes, str]:
    """A submission's nested predictions on the trusted rows (`which`: testlike or clean) as Parquet bytes,
    and their SHA-256, which the sidecar records so a file left by an older submission of the name is never
    read as this one's. Written (`write_rows`) once the submission's pair is in place."""
    import hashlib
    import io

    frame = pd.DataFrame(p, columns=labels).assign(id=ids.astype(str).to_numpy(), set=which)
    buffer = io.BytesIO()
    frame[["id", "set", *labels]].to_parquet(buffer, index=False)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def write_rows(ws: Workspace, name: str, data: bytes) -> Path:
    """`rows_bytes`' Parquet beside the submission, atomically."""
    from ensemble.artifacts.io import atomic_path

    with atomic_path(rows_path(ws, name)) as tmp:
        tmp.write_bytes(data)
    return rows_path(ws, name)


def _aligned(frame: pd.DataFrame, rows: TrustedRows, labels: list[str]) -> np.ndarray | None:
    frame = frame.assign(id=frame["id"].astype(str))
    if frame["id"].duplicated().any() or len(frame) != len(rows.ids) or set(frame["id"]) != set(rows.ids):
        return None  # made for other rows: no comparable predictions
    return frame.set_index("id").loc[rows.ids, labels].to_numpy(dtype=np.float64)


def row_predictions(ws: Workspace, name: str, kind: str, rows: TrustedRows, labels: list[str]) -> np.ndarray | None:
    """A board row's predictions on the trusted rows: a run's OOF (test-like or clean), a submission's
    recorded nested predictions; None where there are none for these rows."""
    if kind == "run":
        from ensemble.artifacts.runs import load_run

        run = load_run(ws, name)
        has = run.has_testlike_oof if rows.set == "testlike" else run.has_oof
        if not has:
            return None
        return _aligned(run.oof_testlike() if rows.set == "testlike" else run.oof(), rows, labels)
    if kind != "submission":
        return None
    from ensemble.artifacts.submission import read_sidecar

    path = rows_path(ws, name)
    recorded = read_sidecar(ws, name).metrics.rows_sha256
    if not path.is_file() or recorded is None or file_sha256(path) != recorded:
        return None
    frame = read_parquet(path)
    if (frame["set"] != rows.set).any():
        return None
    return _aligned(frame, rows, labels)


# ---------------------------------------------------------------- noise of a public difference


def _losses(scorer: Scorer, y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Loss (lower is better) of `p` in each replicate of row weights `counts` `(n_boot, rows)`."""
    if scorer.matrix is not None:
        return scorer.matrix_replicate_losses(p, y, counts)
    return sum(scorer.replicate_losses(p[:, j], y[:, j], counts) for j in range(y.shape[1])) / y.shape[1]


def _subset_counts(n: int, size: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`(n_boot, n)` counts of `size` rows drawn at random (with replacement) in each replicate."""
    draws = rng.integers(0, n, size=(n_boot, size)) + n * np.arange(n_boot)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def public_noise(rows: TrustedRows, p_a: np.ndarray, p_b: np.ndarray, public_rows: int,
                 scorer: Scorer = COMPETITION, n_boot: int = N_BOOT, seed: int = 0) -> float:
    """How far apart two submissions' public scores fall by chance: the LEVEL quantile of |d − mean d|, d the
    score difference of `p_a` and `p_b` on random public subsets of `public_rows` rows (paired, weighted)."""
    rng = np.random.default_rng(seed)
    counts = _subset_counts(len(rows.ids), public_rows, n_boot, rng)
    if rows.weights is not None:
        counts = counts * rows.weights[None, :]
    d = _losses(scorer, rows.y, p_a, counts) - _losses(scorer, rows.y, p_b, counts)
    d = d[np.isfinite(d)]
    return float(np.quantile(np.abs(d - d.mean()), LEVEL)) if d.size else float("nan")


@dataclass
class PairVerdict:
    """Two rows' public scores read against the public subset's noise, and against trusted CV's order."""

    better: str        # better on the public leaderboard
    worse: str
    difference: float  # public score gap (positive: `better` is better)
    noise: float       # LEVEL half-width of a chance difference
    cv_agrees: bool | None  # trusted CV orders them the same way (None: a row has no trusted score)

    @property
    def beyond(self) -> bool:
        return self.difference > self.noise

    def sentence(self, public_rows: int, n_test: int) -> str:
        size = f"{public_rows} of {n_test} test rows public"
        if not self.beyond:
            return (f"pub {self.better} vs {self.worse}: {self.difference:.4f} apart, within the public noise "
                    f"(±{self.noise:.4f} at {LEVEL:.0%}, {size}): the leaderboard cannot tell them apart")
        return (f"pub {self.better} beats {self.worse} by {self.difference:.4f}, beyond the public noise "
                f"(±{self.noise:.4f} at {LEVEL:.0%}, {size})")

    def warning(self) -> str | None:
        if not self.beyond or self.cv_agrees is not False:
            return None
        return (f"warning: the public leaderboard prefers {self.better} to {self.worse} beyond its noise, trusted CV "
                f"the other way: the test differs from what CV sees (or the public part is unusual); do not "
                f"drop the CV pick on the leaderboard alone")


def pair_verdicts(frame: pd.DataFrame, predictions: dict[str, np.ndarray], rows: TrustedRows, public_rows: int,
                  basis: str, scorer: Scorer = COMPETITION) -> tuple[list[PairVerdict], list[PairVerdict]]:
    """Neighbours in public order (each against the next), and every pair whose public order disagrees with
    trusted CV's beyond the noise. `frame`: the board (name, public, the `basis` column)."""
    sign = scorer.sign
    scored = frame[frame["public"].notna() & frame["name"].isin(list(predictions))]
    order = scored.assign(_k=sign * scored["public"].astype(float)).sort_values("_k", kind="stable")
    names = order["name"].tolist()
    public = dict(zip(order["name"], order["public"].astype(float)))
    trusted = dict(zip(order["name"], order[basis]))

    def verdict(a: str, b: str) -> PairVerdict:
        noise = public_noise(rows, predictions[a], predictions[b], public_rows, scorer)
        ta, tb = trusted[a], trusted[b]
        agrees = None if pd.isna(ta) or pd.isna(tb) else bool(sign * (ta - tb) <= 0)
        return PairVerdict(a, b, sign * (public[b] - public[a]), noise, agrees)

    neighbours = [verdict(a, b) for a, b in zip(names, names[1:])]
    disagree = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            v = verdict(a, b)
            if v.warning() is not None:
                disagree.append(v)
    return neighbours, disagree


# ---------------------------------------------------------------- the final submissions


def error_correlation(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> float:
    """Pearson correlation of two predictions' errors (p − y) over every row and label."""
    ea, eb = (p_a - y).ravel(), (p_b - y).ravel()
    if ea.std() == 0 or eb.std() == 0:
        return 1.0
    return float(np.corrcoef(ea, eb)[0, 1])


@dataclass
class FinalPick:
    name: str
    reason: str


def final_picks(ranked: list[str], predictions: dict[str, np.ndarray], rows: TrustedRows, k: int = 2,
                scorer: Scorer = COMPETITION, seed: int = 0, first: FinalPick | None = None) -> list[FinalPick]:
    """The trusted best (`first`, the decision rule's pick, where given; else rank 1), then (up to `k` in all)
    the rows not credibly worse than it (their paired bootstrap interval over the trusted rows reaches zero,
    at LEVEL) whose errors correlate least with those chosen; where none is within the noise, the next best
    by the trusted score. `ranked`: names best first."""
    from ensemble.stack.bootstrap import gain_interval

    ranked = [n for n in ranked if n in predictions]
    if first is not None and first.name in ranked:
        ranked = [first.name] + [n for n in ranked if n != first.name]
    if not ranked:
        return []
    best = ranked[0]
    picks = [first if first is not None and first.name == best else
             FinalPick(best, "the trusted best (rank 1 on the score the decision rule trusts)")]
    tests = {n: gain_interval(rows.y, predictions[n], predictions[best], n_boot=N_BOOT, alpha=1 - LEVEL, seed=seed,
                              weights=rows.weights, scorer=scorer) for n in ranked[1:]}
    while len(picks) < k and len(picks) < len(ranked):
        chosen = {p.name for p in picks}
        left = [n for n in ranked if n not in chosen]
        close = [n for n in left if tests[n]["hi"] >= 0]  # not credibly worse than the best (or better)
        if close:
            corr = {n: max(error_correlation(rows.y, predictions[n], predictions[p.name]) for p in picks) for n in close}
            name = min(close, key=lambda n: (corr[n], left.index(n)))
            t = tests[name]
            picks.append(FinalPick(name, f"a hedge: within the noise of {best} (loss difference {-t['gain']:+.4f}, "
                                         f"{LEVEL:.0%} interval [{-t['hi']:+.4f}, {-t['lo']:+.4f}] reaches zero) "
                                         f"and errs least like the picks before it (error correlation "
                                         f"{corr[name]:.2f}; others within the noise: "
                                         f"{', '.join(f'{n} {corr[n]:.2f}' for n in close if n != name) or 'none'})"))
            continue
        name = left[0]
        t = tests[name]
        picks.append(FinalPick(name, f"the next best: nothing else is within the noise of {best} ({name} is worse "
                                     f"by {-t['gain']:+.4f}, {LEVEL:.0%} interval [{-t['hi']:+.4f}, {-t['lo']:+.4f}])"))
    return picks
