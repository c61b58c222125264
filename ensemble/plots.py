"""Figures for `ens report`: reliability diagrams, logit correlations, fold spreads, CV vs leaderboard.

Each function draws one PNG with matplotlib's object API (no pyplot state, no display needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.metrics.dacon import EDGES, N_BINS, calibration_bins, ece_per_column


@dataclass
class Series:
    """Predictions with their targets, for a reliability diagram: `(rows, labels)` each."""

    name: str
    short: str  # for the ECE in panel titles
    y: np.ndarray
    p: np.ndarray


def quantile_bins(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Mean prediction and fraction of positives in `n_bins` equal-count bins (sorted by prediction).

    Where predictions crowd into one or two of the metric's bins, these still show the curve's shape.
    """
    order = np.argsort(np.asarray(p, dtype=np.float64), kind="stable")
    parts = [part for part in np.array_split(order, min(n_bins, len(order))) if len(part)]
    mean_p = np.array([np.mean(np.asarray(p, dtype=np.float64)[part]) for part in parts])
    frac = np.array([np.mean(np.asarray(y, dtype=np.float64)[part]) for part in parts])
    return mean_p, frac


# ---------------------------------------------------------------- figures

_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig, path: Path) -> None:
    fig.savefig(path, format="png")


def _ece_text(y: np.ndarray, p: np.ndarray, label: str) -> str:
    """The competition ECE of one column, or 'undefined' where its formula fails (values on bin edges)."""
    from ensemble.metrics.dacon import MetricError

    try:
        return f"{ece_per_column(y, p, [label])[0]:.3f}"
    except MetricError:
        return "undefined"


def plot_reliability(path: Path, title: str, labels: list[str], series: list[Series]) -> None:
    """Per label: fraction of positives vs mean prediction per bin (marker area ∝ rows), and a histogram."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    fig = _figure(max(4.6 * len(labels), 6.5), 6.8)
    grid = fig.add_gridspec(2, len(labels), height_ratios=[3, 1])
    for j, label in enumerate(labels):
        ax = fig.add_subplot(grid[0, j])
        hist = fig.add_subplot(grid[1, j], sharex=ax)
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated" if j == 0 else None)
        eces = []
        for k, s in enumerate(series):
            colour = _COLOURS[k % len(_COLOURS)]
            mean_p, frac, count = calibration_bins(s.y[:, j], s.p[:, j])
            eces.append(f"{s.short} {_ece_text(s.y[:, [j]], s.p[:, [j]], label)}")
            ax.plot(mean_p, frac, "-", color=colour, lw=1.5, label=f"{s.name}, {len(s.y):,} rows" if j == 0 else None)
            ax.scatter(mean_p, frac, s=12 + 150 * count / count.max(), color=colour, zorder=3)
            ax.plot(*quantile_bins(s.y[:, j], s.p[:, j]), ":", marker=".", color=colour, lw=1.2, alpha=0.8)
            hist.hist(s.p[:, j], bins=EDGES, histtype="step", lw=1.5, color=colour)
        if j == 0:
            ax.plot([], [], ":", marker=".", color="grey", label="dotted: 10 equal-count bins")
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), ylabel="fraction of positives",
               title=f"label '{label}': ECE " + (", ".join(eces) if len(eces) > 1 else eces[0].split()[-1]))
        ax.tick_params(labelbottom=False)
        ax.grid(alpha=0.3)
        hist.set(xlabel="predicted probability (10 bins)", ylabel="rows")
        hist.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        counts = np.concatenate([np.histogram(s.p[:, j], bins=EDGES)[0] for s in series])
        if counts.max() >= 100 * counts[counts > 0].min():  # rows crowd the end bins: log keeps the middle visible
            hist.set(yscale="log", ylabel="rows (log scale)")
            hist.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
            hist.yaxis.set_minor_formatter(NullFormatter())
        hist.grid(alpha=0.3)
    # one legend above the panels, so it never hides a bin
    fig.legend(loc="outside lower center", ncols=2 if len(series) > 1 else 3, fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=13)
    _save(fig, path)


def plot_correlation(path: Path, names: list[str], labels: list[str], corr: np.ndarray) -> None:
    """One annotated runs × runs heatmap per label."""
    n = len(names)
    side = max(3.8, 0.6 * n + 2.2)
    fig = _figure(side * len(labels) + 0.8, side)
    axes = fig.subplots(1, len(labels), squeeze=False)[0]
    image = None
    for j, (ax, label) in enumerate(zip(axes, labels)):
        image = ax.imshow(corr[j], vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(n), names, rotation=45, ha="right")
        ax.set_yticks(range(n), names)
        ax.set_title(f"label '{label}'")
        size = 10 if n <= 6 else 8 if n <= 10 else 6
        for a in range(n):
            for b in range(n):
                v = corr[j, a, b]
                ax.text(b, a, "–" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=size,
                        color="white" if abs(v) > 0.6 else "black")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="Pearson correlation of OOF logits")
    fig.suptitle("Correlation of the runs' OOF logits\n(near 1: little for a blend to gain; strongly negative: "
                 "a run with swapped or inverted labels, for flip)", fontsize=11)
    _save(fig, path)


def plot_fold_scores(path: Path, scores: dict[str, list[float]], cv: dict[str, float | None]) -> None:
    """Points (and a box, from 4 folds) of each run's per-fold score, with the overall OOF score as a diamond."""
    names = list(scores)
    fig = _figure(max(5.5, 1.1 * len(names) + 2.5), 4.8)
    ax = fig.add_subplot()
    boxed = [i for i, n in enumerate(names) if len(scores[n]) >= 4]  # quartiles of 2–3 points mean little
    if boxed:
        ax.boxplot([scores[names[i]] for i in boxed], positions=boxed, widths=0.5, showfliers=False,
                   medianprops={"color": "black"})
    rng = np.random.default_rng(0)
    first_cv = next((n for n in names if cv.get(n) is not None), None)
    for i, n in enumerate(names):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(scores[n])), scores[n], s=22, color=_COLOURS[0], alpha=0.8, zorder=3,
                   label="one fold" if i == 0 else None)
        if cv.get(n) is not None:
            ax.scatter([i], [cv[n]], marker="D", s=50, color=_COLOURS[1], zorder=4, label="all OOF rows" if n == first_cv else None)
    ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set(ylabel="competition score (lower is better)", title="Per-fold CV score of each run")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def _padded(values: pd.Series) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    pad = max(0.15 * (hi - lo), 0.005)
    return lo - pad, hi + pad


def plot_cv_vs_leaderboard(path: Path, subs: pd.DataFrame) -> None:
    """Leaderboard score vs nested CV score per submission (one panel per CV kind present), y = x dashed."""
    subs = subs[subs["public"].notna() | subs["private"].notna()]  # the axes span the points drawn, nothing else
    kinds = [(c, t) for c, t in (("cv", "nested CV (clean OOF)"), ("cv_testlike", "nested CV (test-like OOF)"))
             if subs[c].notna().any()]
    fig = _figure(5.4 * len(kinds) + 0.4, 5.0)
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    for ax, (col, title) in zip(axes, kinds):
        part = subs[subs[col].notna()]
        for board, marker, colour in (("public", "o", _COLOURS[0]), ("private", "s", _COLOURS[1])):
            has = part[part[board].notna()]
            if len(has):
                ax.scatter(has[col], has[board], marker=marker, s=45, color=colour, label=f"{board} leaderboard", zorder=3)
        for row in part.itertuples():
            y = row.public if pd.notna(row.public) else row.private
            if pd.notna(y):
                ax.annotate(row.name, (getattr(row, col), y), xytext=(7, 0), textcoords="offset points", fontsize=8,
                            va="center")
        # limits from the points only: when CV and leaderboard differ a lot, the points matter more than y = x
        (x0, x1), (y0, y1) = _padded(part[col]), _padded(pd.concat([part["public"], part["private"]]))
        ax.set(xlim=(x0, x1), ylim=(y0, y1))
        if max(x0, y0) < min(x1, y1):
            ax.axline((0, 0), slope=1, ls="--", color="grey", lw=1, label="leaderboard = CV")
        ax.set(xlabel=f"{title} score", ylabel="leaderboard score", title=f"Leaderboard vs {title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Does CV predict the leaderboard? (lower is better on both axes)", fontsize=12)
    _save(fig, path)


# ---------------------------------------------------------------- page


def plot_confusion(path: Path, labels: list[str], matrices: dict[str, np.ndarray]) -> None:
    """One confusion matrix per run (rows: true class, columns: predicted; colour: share of the true class,
    so rare classes show as clearly as common ones; numbers: counts)."""
    k, n = len(labels), len(matrices)
    side = max(3.6, 0.55 * k + 2.0)
    fig = _figure(side * n + 0.8, side)
    axes = fig.subplots(1, n, squeeze=False)[0]
    image = None
    for ax, (name, cm) in zip(axes, matrices.items()):
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        image = ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
        ax.set_xticks(range(k), labels, rotation=45, ha="right")
        ax.set_yticks(range(k), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"run '{name}'")
        for a in range(k):
            for b in range(k):
                ax.text(b, a, f"{int(cm[a, b])}", ha="center", va="center", fontsize=9,
                        color="white" if share[a, b] > 0.6 else "black")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="share of the true class's rows")
    fig.suptitle("Confusion matrices of the runs' OOF predictions (arg-max class)", fontsize=11)
    _save(fig, path)
