"""`ens report`: PNG figures of a workspace's runs and submissions, and a page (index.md + index.html) linking them.

Figures: a reliability diagram per run (one panel per label; clean OOF and test-like OOF), the same for
each stacked submission whose nested OOF can be reproduced from its recipe, the correlation of the
runs' OOF logits, each run's per-fold score spread, and CV vs recorded leaderboard scores.
Everything is built in a staging folder beside `out` and swapped in at the end: no half-written report.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import numpy as np
import pandas as pd

from ensemble.errors import ConfigError, ContractError, EnsError, ExistsError
from ensemble.folds import load_folds
from ensemble.io import read_csv, read_parquet
from ensemble.metric import N_BINS, ece_per_column
from ensemble.runs import Run, check_compatible, load_run
from ensemble.stack_inputs import TESTLIKE_FILE
from ensemble.workspace import Workspace

REPORT_DIR = "report"
_EPS = 1e-6
_EDGES = np.linspace(0.0, 1.0, N_BINS + 1)
_REPORT_FILES = {"index.md", "index.html"}


@dataclass
class Section:
    """One part of the page: a heading, a sentence or two saying what is shown, and its figures."""

    title: str
    text: str
    figures: list[str] = field(default_factory=list)


@dataclass
class Series:
    """Predictions with their targets, for a reliability diagram: `(rows, labels)` each."""

    name: str
    short: str  # for the ECE in panel titles
    y: np.ndarray
    p: np.ndarray


# ---------------------------------------------------------------- data


def reliability_bins(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean prediction, fraction of positives and row count per non-empty bin, for one label.

    The metric's bins (10 uniform, an inner-edge value goes to the lower bin as in `calibration_curve`),
    so the picture shows what the ECE term scores.
    """
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    which = np.searchsorted(_EDGES[1:-1], p)
    count = np.bincount(which, minlength=N_BINS)
    keep = count > 0
    mean_p = np.bincount(which, weights=p, minlength=N_BINS)[keep] / count[keep]
    frac = np.bincount(which, weights=y, minlength=N_BINS)[keep] / count[keep]
    return mean_p, frac, count[keep]


def quantile_bins(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Mean prediction and fraction of positives in `n_bins` equal-count bins (sorted by prediction).

    Where predictions crowd into one or two of the metric's bins, these still show the curve's shape.
    """
    order = np.argsort(np.asarray(p, dtype=np.float64), kind="stable")
    parts = [part for part in np.array_split(order, min(n_bins, len(order))) if len(part)]
    mean_p = np.array([np.mean(np.asarray(p, dtype=np.float64)[part]) for part in parts])
    frac = np.array([np.mean(np.asarray(y, dtype=np.float64)[part]) for part in parts])
    return mean_p, frac


def logit_correlation(oof: np.ndarray) -> np.ndarray:
    """Pearson correlation of the runs' OOF logits per label: `(rows, runs, labels)` → `(labels, runs, runs)`."""
    p = np.clip(np.asarray(oof, dtype=np.float64), _EPS, 1 - _EPS)
    z = np.log(p) - np.log1p(-p)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([np.atleast_2d(np.corrcoef(z[:, :, j], rowvar=False)) for j in range(z.shape[2])])


def fold_scores(run: Run) -> list[float]:
    """The competition score of each scorable fold, from run.json `metrics.per_fold`."""
    rows = (run.manifest.get("metrics") or {}).get("per_fold") or []
    return [float(r["score"]) for r in rows if r.get("score") is not None]


def _select_runs(ws: Workspace, names: list[str] | None) -> list[Run]:
    if names:
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"run {dup[0]!r} is named twice")
        runs = [load_run(ws, n) for n in names]
        missing = [r.name for r in runs if not r.has_oof]
        if missing:
            raise ContractError(f"run {missing[0]!r} has no OOF predictions to report on (import them with --oof)")
    else:
        runs = [r for r in (load_run(ws, n) for n in ws.run_names()) if r.has_oof]
    if not runs:
        raise EnsError(f"no runs with OOF predictions in {ws.models_dir}; `ens finetune` or `ens import --oof` makes one")
    check_compatible(runs)
    return runs


def _aligned(frame: pd.DataFrame, ids: pd.Series, labels: list[str]) -> np.ndarray:
    return frame.set_index("id").loc[ids.astype(str), labels].to_numpy(dtype=np.float64)


def _run_series(ws: Workspace, runs: list[Run]) -> tuple[np.ndarray, dict[str, list[Series]]]:
    """(OOF tensor `(rows, runs, labels)`, each run's reliability series: clean OOF and test-like OOF when present)."""
    labels = runs[0].labels
    folds = load_folds(ws)
    y = folds[labels].to_numpy(dtype=np.float64)
    oof = np.stack([_aligned(r.oof(), folds["id"], labels) for r in runs], axis=1)
    clips_path = ws.models_dir / TESTLIKE_FILE
    clips = read_parquet(clips_path) if clips_path.is_file() else None
    series: dict[str, list[Series]] = {}
    for i, run in enumerate(runs):
        series[run.name] = [Series("OOF (clean train clips)", "OOF", y, oof[:, i, :])]
        if run.has_testlike and clips is not None:
            p = _aligned(run.oof_testlike(), clips["id"], labels)
            series[run.name].append(Series("test-like OOF", "test-like", clips[labels].to_numpy(dtype=np.float64), p))
    return oof, series


def stacked_series(ws: Workspace, name: str, sidecar: dict) -> list[Series]:
    """A submission's nested OOF, recomputed from its recipe and checked to reproduce its CSV exactly.

    Submissions do not store their OOF; re-running the recorded stack (same runs, method, parameters,
    seed) gives it. Raises EnsError naming what stops that (changed run, missing data folder, …).
    """
    from ensemble.blend import stack_runs
    from ensemble.competition import Competition
    from ensemble.io import file_sha256
    from ensemble.submission import submission_paths

    recipe = sidecar.get("recipe") or {}
    if "method" not in recipe or not recipe.get("runs"):
        raise EnsError(f"submission {name!r}: its sidecar holds no stacking recipe")
    names = [r["run"] for r in recipe["runs"]]
    for entry in recipe["runs"]:
        path = ws.run_dir(entry["run"]) / "run.json"
        if not path.is_file() or file_sha256(path) != entry.get("manifest_sha256"):
            raise EnsError(f"submission {name!r}: run {entry['run']!r} changed or is gone since it was stacked")
    comp = Competition.load(ws.data_dir())
    try:
        result, _ = stack_runs(ws, comp, names, recipe["method"], params=recipe.get("params"),
                               calibrate=recipe.get("calibrate", "auto"), test_prior=str(recipe.get("test_prior", "none")),
                               fit_on=recipe.get("fit_on", "auto"), seed=int(recipe.get("seed", 0)))
    except (TypeError, ValueError) as exc:
        raise EnsError(f"submission {name!r}: its recipe does not re-run ({exc})") from None
    written = read_csv(submission_paths(ws, name)[0])[comp.labels].to_numpy(dtype=np.float64)
    if written.shape != result.test.shape or not np.allclose(written, result.test, rtol=0, atol=1e-9):
        raise EnsError(f"submission {name!r}: re-running its recipe does not reproduce its CSV")
    folds = load_folds(ws)
    out = []
    if result.oof is not None:
        out.append(Series("nested OOF (clean train clips)", "OOF", folds[comp.labels].to_numpy(dtype=np.float64), result.oof))
    if result.oof_testlike is not None:
        clips = read_parquet(ws.models_dir / TESTLIKE_FILE)
        out.append(Series("nested test-like OOF", "test-like", clips[comp.labels].to_numpy(dtype=np.float64), result.oof_testlike))
    if not out:
        raise EnsError(f"submission {name!r}: its runs have no OOF, so it has no nested OOF either")
    return out


# ---------------------------------------------------------------- figures

_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig, path: Path) -> None:
    fig.savefig(path, format="png")


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
            mean_p, frac, count = reliability_bins(s.y[:, j], s.p[:, j])
            eces.append(f"{s.short} {ece_per_column(s.y[:, [j]], s.p[:, [j]], [label])[0]:.3f}")
            ax.plot(mean_p, frac, "-", color=colour, lw=1.5, label=f"{s.name}, {len(s.y):,} rows" if j == 0 else None)
            ax.scatter(mean_p, frac, s=12 + 150 * count / count.max(), color=colour, zorder=3)
            ax.plot(*quantile_bins(s.y[:, j], s.p[:, j]), ":", marker=".", color=colour, lw=1.2, alpha=0.8)
            hist.hist(s.p[:, j], bins=_EDGES, histtype="step", lw=1.5, color=colour)
        if j == 0:
            ax.plot([], [], ":", marker=".", color="grey", label="dotted: 10 equal-count bins")
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), ylabel="fraction of positives",
               title=f"label '{label}': ECE " + (", ".join(eces) if len(eces) > 1 else eces[0].split()[-1]))
        ax.tick_params(labelbottom=False)
        ax.grid(alpha=0.3)
        hist.set(xlabel="predicted probability (10 bins)", ylabel="rows")
        hist.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        counts = np.concatenate([np.histogram(s.p[:, j], bins=_EDGES)[0] for s in series])
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
    fig.suptitle("Correlation of the runs' OOF logits (lower = more for a blend to gain)", fontsize=12)
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


def _markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.title}", "", s.text, ""]
        lines += [f"![{f}]({quote(f)})\n" for f in s.figures]
    return "\n".join(lines)


def _html(title: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(s.text))
        body += [f"<h2>{html.escape(s.title)}</h2>", f"<p>{text}</p>"]
        body += [f'<p><a href="{quote(f)}"><img src="{quote(f)}" alt="{html.escape(f)}"></a></p>' for f in s.figures]
    style = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}img{max-width:100%}"
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


def _swap_in(staging: Path, out: Path) -> None:
    """Replace `out` by `staging`; an existing `out` is replaced only when it is an earlier report."""
    if out.exists():
        entries = {p.name for p in out.iterdir()} if out.is_dir() else {out.name}
        earlier = (out / "index.md").is_file() and all(e in _REPORT_FILES or e.endswith(".png") for e in entries)
        if entries and not earlier:
            raise ExistsError(f"{out} exists and is not an ens report (or an empty folder); choose another --out")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


# ---------------------------------------------------------------- the report


def _run_sections(ws: Workspace, runs: list[Run], folder: Path) -> list[Section]:
    labels = runs[0].labels
    oof, series = _run_series(ws, runs)
    figures = []
    for run in runs:
        figures.append(f"reliability-run-{run.name}.png")
        plot_reliability(folder / figures[-1], f"Reliability of run '{run.name}'", labels, series[run.name])
    with_tl = [r.name for r in runs if len(series[r.name]) > 1]
    sections = [Section(
        "Reliability of each run",
        "Fraction of positives against mean predicted probability in the metric's 10 bins (marker area grows with "
        "the bin's rows; dotted: 10 equal-count bins, which keep the curve's shape where predictions crowd into a "
        "few bins; ECE per label in each panel's title), for each run's OOF predictions on the clean train clips"
        + (f" and on the test-like clips ({', '.join(with_tl)})" if with_tl else " (no run has test-like OOF)")
        + "; below, how the predictions spread over the bins. On the dashed diagonal a run is perfectly calibrated.",
        figures)]
    if len(runs) >= 2:
        plot_correlation(folder / "correlation.png", [r.name for r in runs], labels, logit_correlation(oof))
        sections.append(Section("Correlation of the runs", "Pearson correlation of the runs' OOF logits on the clean "
                                "train clips, per label.", ["correlation.png"]))
    else:
        sections.append(Section("Correlation of the runs", "One run only: a correlation needs two or more."))
    scores = {r.name: fold_scores(r) for r in runs}
    scores = {k: v for k, v in scores.items() if v}
    if scores:
        cv = {r.name: ((r.manifest.get("metrics") or {}).get("cv") or {}).get("score") for r in runs}
        plot_fold_scores(folder / "fold-scores.png", scores, cv)
        skipped = [r.name for r in runs if r.name not in scores]
        sections.append(Section("Per-fold score spread", "Each run's competition score on each fold's held-out rows "
                                "(from run.json), and on all OOF rows together (diamond)."
                                + (f" No per-fold scores recorded for: {', '.join(skipped)}." if skipped else ""),
                                ["fold-scores.png"]))
    else:
        sections.append(Section("Per-fold score spread", "No run records per-fold scores in its run.json."))
    return sections


def _submission_sections(ws: Workspace, runs: list[Run], folder: Path, restack: bool,
                         progress: Callable[[dict], None] | None) -> list[Section]:
    from ensemble.board import board_frame, cv_public_correlation
    from ensemble.submission import read_sidecar

    chosen = {r.name for r in runs}
    todo = []
    for name in ws.submission_names() if restack else []:
        sidecar = read_sidecar(ws, name)
        used = {r.get("run") for r in (sidecar.get("recipe") or {}).get("runs") or []}
        if used and used <= chosen:
            todo.append((name, sidecar))
    figures, notes = [], []
    for done, (name, sidecar) in enumerate(todo):
        if progress:
            progress({"stage": "report_restack", "done": done, "total": len(todo)})
        try:
            series = stacked_series(ws, name, sidecar)
        except EnsError as exc:
            notes.append(str(exc))
            continue
        figures.append(f"reliability-sub-{name}.png")
        plot_reliability(folder / figures[-1], f"Reliability of submission '{name}' (stacked)", runs[0].labels, series)
    if progress and todo:
        progress({"stage": "report_restack", "done": len(todo), "total": len(todo)})
    text = ("Submissions do not store their OOF predictions: each submission stacked from the runs above is re-run "
            "from its recipe, and shown only when that reproduces its CSV exactly; the curves are its nested-CV "
            "predictions (the blender never saw the rows it predicts).")
    if not restack:
        text = "Skipped (re-running the stacks was turned off)."
    elif not figures and not notes:
        text += " No submission here was stacked from these runs."
    if notes:
        text += " Not shown: " + " ".join(notes)
    sections = [Section("Reliability of stacked submissions", text, figures)]
    frame = board_frame(ws)
    subs = frame[frame["kind"] == "submission"].set_index("name", drop=False)
    if subs["public"].notna().any():
        plot_cv_vs_leaderboard(folder / "cv-vs-leaderboard.png", subs.rename_axis(None))
        corr = cv_public_correlation(frame)
        extra = (f" Over {corr['n']} submissions: Pearson {corr['pearson']:.2f}, Spearman {corr['spearman']:.2f} "
                 "(clean CV vs public)." if corr else " Correlations need three or more submissions with both scores.")
        sections.append(Section("CV vs leaderboard", "Every recorded submission's nested CV score against its public "
                                "(circles) and private (squares) leaderboard score." + extra, ["cv-vs-leaderboard.png"]))
    else:
        sections.append(Section("CV vs leaderboard", "No submission has a public leaderboard score yet: record one with "
                                "`ens lb SUBMISSION --public X`."))
    return sections


def write_report(ws: Workspace, out: Path | None = None, runs: list[str] | None = None, *,
                 restack: bool = True, progress: Callable[[dict], None] | None = None) -> Path:
    """Write the figures, `index.md` and `index.html` into `out` (default `<workspace>/report`); returns `out`.

    `runs`: the runs to show (default: every run with OOF). `restack`: re-run each submission stacked from
    those runs to draw its reliability (takes as long as its `ens stack` did; `progress` hears of each).
    """
    import matplotlib

    chosen = _select_runs(ws, runs)
    out = Path(out) if out is not None else ws.root / REPORT_DIR
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a report is meant to be shared
    try:
        with matplotlib.rc_context({"font.size": 10, "axes.titlesize": 11}):
            sections = _run_sections(ws, chosen, staging) + _submission_sections(ws, chosen, staging, restack, progress)
        title = f"ens report: {len(chosen)} run{'s' if len(chosen) > 1 else ''} in {ws.root.name}"
        intro = Section("Contents", f"Runs: {', '.join(r.name for r in chosen)}. Labels: {', '.join(chosen[0].labels)}. "
                        "Scores are the competition's (lower is better); `ens board` lists them all.")
        (staging / "index.md").write_text(_markdown(title, [intro, *sections]))
        (staging / "index.html").write_text(_html(title, [intro, *sections]))
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
