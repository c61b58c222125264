"""The competition metric — 0.5·(1 − mean AUC) + 0.25·mean Brier + 0.25·mean ECE, lower is better —
in its three forms: exact, fast (many candidate columns at once) and weighted (bootstrap replicates).

The exact form reproduces the organisers' code, quirks included:

- ECE pairs scikit-learn's `calibration_curve` bins (a value on an inner edge goes to the *lower* bin)
  with `numpy.histogram` weights (a value on an inner edge goes to the *upper* bin), position by
  position over non-empty bins. When both have the same number of non-empty bins the pairs may mix
  neighbouring bins, as in the original. When the counts differ the original broadcasts (one of them
  has a single bin) or fails; we do the same and raise `MetricError` for the failure.
- AUC of a column holding one class is undefined (scikit-learn raises): we raise `MetricError`
  naming the column rather than inventing a value.

The fast and weighted forms use calibration_curve's bins alone (Σ_bins |Σ w·(y − p)| / Σ w), equal to
the exact ECE unless a probability sits exactly on an inner bin edge; they rank candidates inside the
stacker's loops and bootstraps. Arrays are `(rows, labels)`: `y` holds 0/1 targets, `p` probabilities.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ensemble.errors import EnsError

N_BINS = 10
PARTS_GROUP = 4  # label columns sharing each float chunk of the replicates (their ECE one-hots: 4 × rows × 10 floats)
PLAN_BLOCK = 32  # replicates per block of the rank-sum AUC (its working arrays: block × rows int32)
EDGES = np.linspace(0.0, 1.0, N_BINS + 1)


class MetricError(EnsError):
    """The metric is undefined for the given targets (e.g. one class only)."""


@dataclass(frozen=True)
class ScoreParts:
    """The competition score and its parts (means over label columns)."""

    score: float
    auc: float
    brier: float
    ece: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def combine(auc, brier, ece):
    """The competition's formula from its parts (scalars or arrays): the one place it is written."""
    return 0.5 * (1 - auc) + 0.25 * brier + 0.25 * ece


def ece_bins(p: np.ndarray) -> np.ndarray:
    """calibration_curve's bin (0 … N_BINS−1) of each probability: an inner-edge value goes to the lower bin.
    That is `searchsorted(EDGES[1:-1], p)`, the number of inner edges below `p`, counted by comparisons
    (a binary search per unordered value is several times slower); NaN keeps searchsorted's answer."""
    p = np.asarray(p)
    if np.isnan(p).any():
        return np.searchsorted(EDGES[1:-1], p)
    return _inner_edges_passed(p, inclusive=False).astype(np.intp)


def _inner_edges_passed(p: np.ndarray, inclusive: bool) -> np.ndarray:
    """How many inner bin edges lie below each value of `p` (`inclusive`: at or below), by comparisons."""
    passed = np.zeros(p.shape, dtype=np.int8)
    for edge in EDGES[1:-1]:
        passed += (p >= edge) if inclusive else (p > edge)
    return passed


def _as_2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[:, None] if a.ndim == 1 else a


def _check(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, p = _as_2d(y), _as_2d(p)
    if y.shape != p.shape:
        raise MetricError(f"targets have shape {y.shape} but predictions {p.shape}")
    if y.shape[0] == 0:
        raise MetricError("no rows to score")
    return y, p


def _column_names(names: list[str] | None, k: int) -> list[str]:
    return list(names) if names is not None else [f"column {j}" for j in range(k)]


# ---- exact -------------------------------------------------------------------------------------------

def auc_per_column(y: np.ndarray, p: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """ROC AUC per column (ties count half, as `roc_auc_score`); shape `(labels,)`."""
    y, p = _check(y, p)
    positives = y.sum(axis=0)
    negatives = y.shape[0] - positives
    for j in np.flatnonzero((positives == 0) | (negatives == 0)):
        name = _column_names(names, y.shape[1])[j]
        raise MetricError(f"AUC is undefined for {name}: the answers hold only one class")
    rank_sum = mid_rank_sums(np.ascontiguousarray(y.T), np.ascontiguousarray(p.T))
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def mid_rank_sums(yT: np.ndarray, PT: np.ndarray) -> np.ndarray:
    """Σ of the positives' mid-ranks (1-based, ties share their mean rank, as `scipy.stats.rankdata`) in
    each row of `PT` `(columns, rows)` against 0/1 `yT` (same shape, or 1-D for every column): one sort per
    column. Ranks are whole or half numbers, so the sums are exact whatever their order."""
    if PT.shape[0] and zero_one(yT) and not np.isnan(PT).any():
        return _split_rank_sums(yT, PT)
    return _sorted_rank_sums(yT, PT)


def zero_one(y: np.ndarray) -> bool:
    """Whether every target is 0 or 1 (what the split path of `mid_rank_sums` and counted isotonic fits need)."""
    return bool(((y == 0) | (y == 1)).all())


def _split_rank_sums(yT: np.ndarray, PT: np.ndarray) -> np.ndarray:
    """`mid_rank_sums` for 0/1 targets without NaN, from two half-size sorts per column: the positives'
    mid-ranks sum to U + n₊(n₊ + 1)/2, U = Σ over positives of (negatives below + half the tied negatives),
    each count found by `searchsorted` in the sorted negatives. Integers and halves below 2⁵³: the same
    float as the one-sort sum (`_sorted_rank_sums`)."""
    out = np.empty(PT.shape[0])
    for c in range(PT.shape[0]):
        pos = (yT if yT.ndim == 1 else yT[c]) == 1
        a, b = np.sort(PT[c][pos]), np.sort(PT[c][~pos])
        below = np.searchsorted(b, a, side="left").sum() + np.searchsorted(b, a, side="right").sum()
        n_pos = len(a)
        out[c] = below / 2 + n_pos * (n_pos + 1) / 2
    return out


def _sorted_rank_sums(yT: np.ndarray, PT: np.ndarray) -> np.ndarray:
    """`mid_rank_sums` by one sort of each column (any targets, NaN each its own rank)."""
    order = np.argsort(PT, axis=1)
    Ps = np.take_along_axis(PT, order, axis=1)
    ys = yT[order] if yT.ndim == 1 else np.take_along_axis(yT, order, axis=1)
    k, n = Ps.shape
    idx = np.broadcast_to(np.arange(n), (k, n))
    new = np.ones((k, n), dtype=bool)
    np.not_equal(Ps[:, 1:], Ps[:, :-1], out=new[:, 1:])
    if new.all():
        return ys @ np.arange(1, n + 1, dtype=np.float64) if k else np.zeros(0)
    first = np.maximum.accumulate(np.where(new, idx, 0), axis=1)
    end = np.ones((k, n), dtype=bool)
    end[:, :-1] = new[:, 1:]
    last = np.minimum.accumulate(np.where(end, idx, n - 1)[:, ::-1], axis=1)[:, ::-1]
    return (ys * ((first + last) / 2 + 1)).sum(axis=1)


def brier_per_column(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Mean squared error of the probability per column; shape `(labels,)`."""
    y, p = _check(y, p)
    return ((p - y) ** 2).mean(axis=0)


def calibration_bins(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean prediction, fraction of positives and row count of each non-empty bin of one label column
    (calibration_curve's bins): what the ECE term scores, and what a reliability diagram draws."""
    cal_bin = ece_bins(p)
    total = np.bincount(cal_bin, minlength=N_BINS)
    nonempty = total != 0
    prob_true = np.bincount(cal_bin, weights=y, minlength=N_BINS)[nonempty] / total[nonempty]
    prob_pred = np.bincount(cal_bin, weights=p, minlength=N_BINS)[nonempty] / total[nonempty]
    return prob_pred, prob_true, total[nonempty]


def histogram_counts(p: np.ndarray) -> np.ndarray:
    """`numpy.histogram(p, bins=EDGES)[0]` (half-open bins, the last one closed, values outside [0, 1]
    left out) by comparisons with the edges: the same integer counts without histogram's sort of `p`."""
    if np.isnan(p).any():
        return np.histogram(p, bins=EDGES)[0]
    upper = _inner_edges_passed(p, inclusive=True)
    inside = (p >= EDGES[0]) & (p <= EDGES[-1])
    return np.bincount(upper[inside] if not inside.all() else upper, minlength=N_BINS)


def _ece_one(y: np.ndarray, p: np.ndarray, name: str) -> float:
    prob_pred, prob_true, _ = calibration_bins(y, p)
    # numpy.histogram: half-open bins, the last one closed (edge value -> upper bin)
    hist = histogram_counts(p)
    weights = hist[hist > 0] / p.shape[0]
    gaps = np.abs(prob_true - prob_pred)
    if weights.shape != gaps.shape and 1 not in (weights.shape[0], gaps.shape[0]):
        raise MetricError(
            f"ECE is undefined for {name}: probabilities on bin edges give "
            f"{gaps.shape[0]} calibration bins but {weights.shape[0]} histogram bins "
            "(the organisers' formula fails here too)"
        )
    return float(np.sum(weights * gaps))


def ece_per_column(y: np.ndarray, p: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """Expected calibration error per column (10 uniform bins), as the organisers compute it."""
    y, p = _check(y, p)
    cols = _column_names(names, y.shape[1])
    return np.array([_ece_one(y[:, j], p[:, j], cols[j]) for j in range(y.shape[1])])


def label_scores(y: np.ndarray, p: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """The competition score of each label column, exact; shape `(labels,)`."""
    return combine(auc_per_column(y, p, names), brier_per_column(y, p), ece_per_column(y, p, names))


def competition_score(y: np.ndarray, p: np.ndarray, names: list[str] | None = None) -> ScoreParts:
    """0.5·(1 − mean AUC) + 0.25·mean Brier + 0.25·mean ECE over label columns; lower is better."""
    y, p = _check(y, p)
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise MetricError("predictions must be probabilities in [0, 1] without NaN")
    auc = float(auc_per_column(y, p, names).mean())
    brier = float(brier_per_column(y, p).mean())
    ece = float(ece_per_column(y, p, names).mean())
    return ScoreParts(score=combine(auc, brier, ece), auc=auc, brier=brier, ece=ece)


# ---- fast: one label, many candidate columns -----------------------------------------------------------

def fast_auc(y: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Exact ROC AUC of each column of `C` `(rows, candidates)` for 1-D 0/1 `y`: one sort per column,
    mid-ranks for ties (`mid_rank_sums`)."""
    pos = y.sum()
    neg = len(y) - pos
    rank_sum = mid_rank_sums(np.asarray(y, dtype=np.float64), np.ascontiguousarray(C.T))
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def fast_ece(y: np.ndarray, C: np.ndarray) -> np.ndarray:
    """ECE of each column of `C` for 1-D `y` with calibration_curve's bins alone (see the module doc)."""
    n, m = C.shape
    bins = ece_bins(C) + N_BINS * np.arange(m)[None, :]
    diff = np.bincount(bins.ravel(), weights=(np.broadcast_to(y[:, None], C.shape) - C).ravel(), minlength=N_BINS * m)
    return np.abs(diff.reshape(m, N_BINS)).sum(axis=1) / n


def column_scores(y: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Competition score of each candidate column of `C` `(rows, candidates)` against 1-D `y`."""
    return combine(fast_auc(y, C), ((C - y[:, None]) ** 2).mean(axis=0), fast_ece(y, C))


# ---- weighted: rows counted by bootstrap replicates or density ratios ------------------------------------

def weighted_auc(s: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUC of 1-D scores `s` for 0/1 `y` in each replicate (row weights `counts` `(n_boot, rows)`; NaN
    where a replicate holds one class). Exact with ties: Σ over groups of tied scores of positive
    weight × (negative weight below + half the tied negative weight) / (W+ · W−). Integer counts (the
    bootstrap's) take the rank-sum path (`plan_auc`), which gives the same numbers."""
    counts = np.asarray(counts)
    if counts.size and counts.max() <= np.iinfo(np.int32).max // 4 and np.array_equal(counts, np.floor(counts)):
        return plan_auc(rank_plan(s, y), counts.astype(np.int32) if counts.dtype.kind == "f" else counts)
    order = np.argsort(s, kind="stable")
    s, y, w = s[order], y[order], counts[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * (1 - y), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)


@dataclass(frozen=True)
class RankPlan:
    """One score column sorted once, for the AUC of any number of integer-weighted replicates: the
    positives' rows, the negatives' rows in score order, and for each positive the number of negatives
    scored strictly below it (`lo`) and at or below it (`hi`); `tied`: whether any positive ties a
    negative (`lo` ≠ `hi` somewhere)."""

    pos: np.ndarray
    neg: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    tied: bool = True


def rank_plan(s: np.ndarray, y: np.ndarray) -> RankPlan:
    """The sort of 1-D scores `s` against 0/1 targets `y` that every replicate's AUC reuses: the negatives
    alone are sorted (the positives' order changes no integer sum of `plan_auc`), and the positives are
    sorted by score only for `searchsorted` to walk the negatives in order."""
    positive = y == 1
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    pos, neg = pos[np.argsort(s[pos], kind="stable")], neg[np.argsort(s[neg], kind="stable")]
    s_neg, s_pos = s[neg], s[pos]
    lo, hi = np.searchsorted(s_neg, s_pos, "left"), np.searchsorted(s_neg, s_pos, "right")
    return RankPlan(pos, neg, lo, hi, bool((lo != hi).any()))


def plan_auc(plan: RankPlan, counts: np.ndarray) -> np.ndarray:
    """AUC in each replicate of integer row counts `counts` `(n_boot, rows)`; NaN where a replicate holds
    one class. In integers: 2·Σ over positives of count × (negatives below + half the tied ones) is
    Σ count × (C[lo] + C[hi]) with C the running count of negatives (2·C[lo] when no positive ties a
    negative), so the one division is the only rounding (the float formula of `weighted_auc` sums
    integers and halves exactly: the same numbers). A block of `PLAN_BLOCK` replicates at a time, each
    replicate's counts contiguous (the running count runs along memory)."""
    n_neg, columns = len(plan.neg), np.concatenate([plan.neg, plan.pos])
    out = np.empty(counts.shape[0])
    for b in range(0, counts.shape[0], PLAN_BLOCK):  # replicates are independent: blocks bound the work arrays
        T = np.take(counts[b:b + PLAN_BLOCK], columns, axis=1)  # the negatives in score order, then the positives
        C = np.zeros((T.shape[0], n_neg + 1), dtype=np.int32)
        np.cumsum(T[:, :n_neg], axis=1, dtype=np.int32, out=C[:, 1:])
        W = T[:, n_neg:]
        G = np.take(C, plan.lo, axis=1)
        if plan.tied:
            G += np.take(C, plan.hi, axis=1)
        else:
            G *= 2
        wide = W.size and int(W.max()) * (2 * int(C[:, -1].max()) + 1) >= np.iinfo(np.int32).max
        num2 = (W.astype(np.int64) * G if wide else W * G).sum(axis=1, dtype=np.int64)
        n_pos = W.sum(axis=1, dtype=np.int64).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[b:b + PLAN_BLOCK] = (num2.astype(np.float64) / 2) / (n_pos * C[:, -1].astype(np.float64))
    return out


def weighted_label_parts(p: np.ndarray, y: np.ndarray, counts) -> tuple[np.ndarray, ...]:
    """AUC, Brier and ECE of one label column in each replicate: row weights `counts` `(n_boot, rows)`, or
    `Resamples` (bootstrap replicates drawn once: one sort for every replicate's AUC)."""
    if hasattr(counts, "chunks"):
        return resampled_parts([(p, y)], counts)[0]
    total = counts.sum(axis=1)
    brier = counts @ (p - y) ** 2 / total
    ece = np.abs(counts @ _ece_onehot(p, y)).sum(axis=1) / total
    return weighted_auc(p, y, counts), brier, ece


def resampled_parts(columns: list[tuple[np.ndarray, np.ndarray]], counts) -> list[tuple[np.ndarray, ...]]:
    """`weighted_label_parts` of many 1-D `(p, y)` label columns on the same bootstrap `Resamples`: each
    chunk's float counts and their totals are made once for a group of `PARTS_GROUP` columns, and each
    column's Brier and ECE are the same products of them (the same floats as one column at a time)."""
    out = []
    for g in range(0, len(columns), PARTS_GROUP):
        group = columns[g:g + PARTS_GROUP]
        d2 = [(p - y) ** 2 for p, y in group]
        onehot = [_ece_onehot(p, y) for p, y in group]
        brier: list[list[np.ndarray]] = [[] for _ in group]
        ece: list[list[np.ndarray]] = [[] for _ in group]
        for c in counts.chunks:
            total = c.sum(axis=1)
            for k in range(len(group)):
                brier[k].append(c @ d2[k] / total)
                ece[k].append(np.abs(c @ onehot[k]).sum(axis=1) / total)
        empty = np.zeros(0)
        out += [(plan_auc(rank_plan(p, y), counts.counts_b), np.concatenate(b) if b else empty,
                 np.concatenate(e) if e else empty) for (p, y), b, e in zip(group, brier, ece)]
    return out


def resampled_scores(columns: list[tuple[np.ndarray, np.ndarray]], counts) -> list[np.ndarray]:
    """The competition score of each 1-D `(p, y)` label column in each replicate of `Resamples`
    (`weighted_label_score` of each, the chunks' float work shared: `resampled_parts`)."""
    return [combine(*parts) for parts in resampled_parts(columns, counts)]


def _ece_onehot(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    onehot = np.zeros((len(p), N_BINS))
    onehot[np.arange(len(p)), ece_bins(p)] = y - p
    return onehot


def weighted_label_score(p: np.ndarray, y: np.ndarray, counts) -> np.ndarray:
    """The competition score of one label column in each replicate."""
    return combine(*weighted_label_parts(p, y, counts))


def weighted_score(y: np.ndarray, p: np.ndarray, weights: np.ndarray | None = None) -> ScoreParts:
    """The competition score of `(rows, labels)` predictions with row weights (None: the exact metric).

    Density-ratio weights make the test-like rows stand for the real test's mix of conditions.
    """
    if weights is None:
        return competition_score(y, p)
    parts = np.array([[float(v[0]) for v in weighted_label_parts(p[:, j], y[:, j], weights[None, :])]
                      for j in range(y.shape[1])])
    if not np.isfinite(parts).all():
        raise MetricError("a label column holds one class: AUC is undefined")
    auc, brier, ece = (float(v) for v in parts.mean(axis=0))
    return ScoreParts(score=float(combine(auc, brier, ece)), auc=auc, brier=brier, ece=ece)
