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
from ensemble.artifacts.folds import load_folds
from ensemble.artifacts.io import read_csv
from ensemble.artifacts.records import Sidecar
from ensemble.artifacts.runs import Run, check_compatible, load_run
from ensemble.plots import Series, plot_correlation, plot_cv_vs_leaderboard, plot_fold_scores, plot_reliability
from ensemble.probability import logit
from ensemble.artifacts.testlike_set import load_testlike
from ensemble.task import MULTILABEL, Task
from ensemble.artifacts.workspace import Workspace
from ensemble.commands.board import COLUMN_HEADERS

REPORT_DIR = "report"
_REPORT_FILES = {"index.md", "index.html"}


@dataclass
class Section:
    """One part of the page: a heading, a sentence or two saying what is shown, a bullet list, a table with
    its legend (what each column means), and figures."""

    title: str
    text: str
    figures: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None
    legend: list[str] = field(default_factory=list)


DIGITS = {"s": 1, "nested": 4}


# ---------------------------------------------------------------- data


def logit_correlation(oof: np.ndarray) -> np.ndarray:
    """Pearson correlation of the runs' OOF logits per label: `(rows, runs, labels)` → `(labels, runs, runs)`."""
    z = logit(oof)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([np.atleast_2d(np.corrcoef(z[:, :, j], rowvar=False)) for j in range(z.shape[2])])


def fold_scores(run: Run) -> list[float]:
    """The competition score of each scorable fold, from run.json `metrics.per_fold`."""
    return [float(r.score) for r in run.manifest.metrics.per_fold or [] if r.score is not None]


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
    clips = load_testlike(ws)
    series: dict[str, list[Series]] = {}
    for i, run in enumerate(runs):
        series[run.name] = [Series("OOF (clean train clips)", "OOF", y, oof[:, i, :])]
        if run.has_testlike_oof and clips is not None:
            p = _aligned(run.oof_testlike(), clips["id"], labels)
            series[run.name].append(Series("test-like OOF", "test-like", clips[labels].to_numpy(dtype=np.float64), p))
    return oof, series


def stacked_series(ws: Workspace, name: str, sidecar: Sidecar) -> list[Series]:
    """A submission's nested OOF, recomputed from its recipe and checked to reproduce its CSV exactly.

    Submissions do not store their OOF; re-running the recorded stack (same runs, method, parameters,
    seed) gives it. Raises EnsError naming what stops that (changed run, missing data folder, …).
    """
    from ensemble.commands.stack import run_stack
    from ensemble.stack.request import StackRequest
    from ensemble.artifacts.competition import Competition
    from ensemble.artifacts.io import file_sha256
    from ensemble.artifacts.submission import submission_paths

    recipe = sidecar.recipe
    if not recipe.runs:
        raise EnsError(f"submission {name!r}: its recipe names no runs")
    for entry in recipe.runs:
        path = ws.run_dir(entry.run) / "run.json"
        if not path.is_file() or file_sha256(path) != entry.manifest_sha256:
            raise EnsError(f"submission {name!r}: run {entry.run!r} changed or is gone since it was stacked")
    comp = Competition.load(ws.data_dir())
    try:
        result = run_stack(ws, comp, StackRequest.from_recipe(recipe)).result
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
        clips = load_testlike(ws)
        out.append(Series("nested test-like OOF", "test-like", clips[comp.labels].to_numpy(dtype=np.float64), result.oof_testlike))
    if not out:
        raise EnsError(f"submission {name!r}: its runs have no OOF, so it has no nested OOF either")
    return out


def _cell(value, column: str) -> str:
    """A table cell as text: numbers to 3 decimals (4 for scores to trust), missing as '–'."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{DIGITS.get(column, 3)}f}"
    return str(value)


def _rows(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    headers = [COLUMN_HEADERS.get(c, c) for c in frame.columns]
    return headers, [[_cell(v, c) for c, v in zip(frame.columns, row)] for row in frame.itertuples(index=False)]


def _markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.title}", "", s.text, ""]
        lines += [f"- {item}" for item in s.items] + ([""] if s.items else [])
        if s.table is not None:
            headers, rows = _rows(s.table)
            lines += ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
            lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
        lines += [f"_{line}_  " for line in s.legend] + ([""] if s.legend else [])
        lines += [f"![{f}]({quote(f)})\n" for f in s.figures]
    return "\n".join(lines)


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _html_table(frame: pd.DataFrame) -> str:
    headers, rows = _rows(frame)
    numeric = [c not in ("name", "kind", "method") for c in frame.columns]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="{"num" if n else "txt"}">{html.escape(v)}</td>'
                                    for v, n in zip(row, numeric)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(title: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        body += [f"<h2>{html.escape(s.title)}</h2>", f"<p>{_inline(s.text)}</p>"]
        if s.items:
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in s.items) + "</ul>")
        if s.table is not None:
            body.append(_html_table(s.table))
        if s.legend:
            body.append('<p class="legend">' + "<br>".join(_inline(line) for line in s.legend) + "</p>")
        body += [f'<p><a href="{quote(f)}"><img src="{quote(f)}" alt="{html.escape(f)}"></a></p>' for f in s.figures]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}img{max-width:100%}"
             "table{border-collapse:collapse;font-size:90%}th,td{padding:2px 8px;border-bottom:1px solid #ddd}"
             "td.num{text-align:right;font-variant-numeric:tabular-nums}.legend{color:#555;font-size:90%}")
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


def _board_section(ws: Workspace) -> Section:
    """`ens board`'s table, its legend and the CV-vs-public verdict."""
    from ensemble.commands.board import board_frame, board_view, board_legend, correlation_sentence, cv_public_correlation

    frame = board_frame(ws)
    shown = board_view(frame)
    corr = cv_public_correlation(frame)
    verdict = (correlation_sentence(corr) if corr else "CV vs public: record three or more public scores "
               "(`ens lb NAME --public X`) to see whether CV predicts the leaderboard.")
    return Section("Board: runs and submissions", "Every run and submission, best first (lower is better), as "
                   "`ens board` shows it.", table=shown, legend=[*board_legend(frame), verdict])


def _scores_text(sidecar: Sidecar) -> str:
    metrics = sidecar.metrics
    parts = []
    for m, what in ((metrics.cv, "nested CV"), (metrics.cv_testlike, "test-like nested CV")):
        if m and m.logloss is not None:  # multiclass: the metric, then the usual numbers
            parts.append(f"{what} {m.metric or ''} {m.score:.4f} (log loss {m.logloss:.3f}, accuracy "
                         f"{m.accuracy:.3f}, macro-F1 {m.macro_f1:.3f})")
        elif m and m.auc == m.auc:
            parts.append(f"{what} {m.score:.4f} (AUC {m.auc:.3f}, Brier {m.brier:.3f}, ECE {m.ece:.3f})")
        elif m:  # another metric than the competition's: no parts
            parts.append(f"{what} {sidecar.recipe.metric or ''} {m.score:.4f}")
    gain = metrics.gain
    if gain:
        parts.append(f"gain over the best single run {gain.gain:+.4f} [{gain.lo:+.4f}, {gain.hi:+.4f}] "
                     "(positive = better)")
    parts += [f"{key} leaderboard {value:g}" for key, value in sidecar.leaderboard.scores().items()]
    return "; ".join(parts) + "." if parts else "No scores recorded."


def _recipe_sections(ws: Workspace) -> list[Section]:
    """Each submission's scores and recipe in words; the comparison behind it when the decision rule chose it."""
    from ensemble.artifacts.submission import read_sidecar
    from ensemble.stack.explain import compare_frame, compare_legend, recipe_lines

    sections = []
    for name in ws.submission_names():
        sidecar = read_sidecar(ws, name)
        recipe = sidecar.recipe
        section = Section(f"Submission {name}", _scores_text(sidecar), items=recipe_lines(recipe))
        rows = sidecar.comparison
        if rows:
            section.table, testlike = compare_frame(rows)
            rule = recipe.decision.rule if recipe.decision else None
            section.legend = compare_legend(testlike) + ([f"decision: {rule}"] if rule else [])
        sections.append(section)
    return sections


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
        cv = {r.name: r.manifest.cv.score if r.manifest.cv else None for r in runs}
        plot_fold_scores(folder / "fold-scores.png", scores, cv)
        skipped = [r.name for r in runs if r.name not in scores]
        sections.append(Section("Per-fold score spread", "Each run's competition score on each fold's held-out rows "
                                "(from run.json), and on all OOF rows together (diamond)."
                                + (f" No per-fold scores recorded for: {', '.join(skipped)}." if skipped else ""),
                                ["fold-scores.png"]))
    else:
        sections.append(Section("Per-fold score spread", "No run records per-fold scores in its run.json."))
    return sections


def _made_of(sidecar: Sidecar) -> str:
    """What a submission's figure shows: one run as it is, one run calibrated, or a stack."""
    from ensemble.commands.board import single_run_of

    recipe = sidecar.recipe
    if recipe.method != "single":
        return f"stacked: {recipe.method}"
    run = single_run_of(recipe)
    if run is not None:
        return f"run {run} alone"
    k, names = recipe.chosen_run or 0, recipe.run_names
    return f"run {names[k] if 0 <= k < len(names) else '?'} with a calibrator or test prior"


def _submission_sections(ws: Workspace, runs: list[Run], folder: Path, restack: bool,
                         progress: Callable[[dict], None] | None) -> list[Section]:
    from ensemble.commands.board import board_frame, cv_public_correlation
    from ensemble.artifacts.submission import read_sidecar

    chosen = {r.name for r in runs}
    todo = []
    for name in ws.submission_names() if restack else []:
        sidecar = read_sidecar(ws, name)
        used = set(sidecar.recipe.run_names)
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
        plot_reliability(folder / figures[-1], f"Reliability of submission '{name}' ({_made_of(sidecar)})",
                         runs[0].labels, series)
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
    frame = board_frame(ws, fold=False)
    subs = frame[frame["kind"] == "submission"].set_index("name", drop=False)
    if subs["public"].notna().any():
        plot_cv_vs_leaderboard(folder / "cv-vs-leaderboard.png", subs.rename_axis(None))
        corr = cv_public_correlation(frame)
        extra = (f" Over {corr['n']} submissions: Pearson {corr['pearson']:.2f}, Spearman {corr['spearman']:.2f} "
                 f"({'test-like' if corr.get('basis') == 'cv_testlike' else 'clean'} CV vs public)." if corr else " Correlations need three or more submissions with both scores.")
        sections.append(Section("CV vs leaderboard", "Every recorded submission's nested CV score against its public "
                                "(circles) and private (squares) leaderboard score." + extra, ["cv-vs-leaderboard.png"]))
    else:
        sections.append(Section("CV vs leaderboard", "No submission has a public leaderboard score yet: record one with "
                                "`ens lb SUBMISSION --public X`."))
    return sections


def _class_sections(ws: Workspace, runs: list[Run], folder: Path) -> list[Section]:
    """Multiclass runs: per-class precision, recall and F1 of each run's OOF arg-max, and their confusion
    matrices (nothing for a multi-label workspace)."""
    from ensemble.artifacts.folds import load_folds
    from ensemble.plots import plot_confusion

    if not runs:
        return []
    from ensemble.metrics.scorer import get_scorer

    task = runs[0].manifest.task_type if runs[0].manifest.task is not None else _workspace_task(ws)
    scorer = get_scorer(task.default_metric, task)
    labels, folds = runs[0].labels, load_folds(ws)
    y = folds[labels].to_numpy(dtype=np.float64)
    rows, matrices = [], {}
    for run in runs:
        report = scorer.class_report(y, _aligned(run.oof(), folds["id"], labels), labels)
        if report is None:
            return []
        matrices[run.name] = np.asarray(report["confusion"])
        for label, v in report["per_class"].items():
            rows.append({"run": run.name, "class": label, **{k: round(v[k], 4) for k in ("precision", "recall", "f1")},
                         "support": v["support"]})
        rows.append({"run": run.name, "class": "(accuracy, macro-F1)", "precision": None,
                     "recall": round(report["accuracy"], 4), "f1": round(report["macro_f1"], 4), "support": len(y)})
    plot_confusion(folder / "confusion.png", labels, matrices)
    return [Section("Per-class scores of each run", "Precision, recall and F1 of each run's arg-max class on its OOF "
                    "predictions, per class; the last row of a run holds its accuracy (recall column) and macro-F1 "
                    "(F1 column).", table=pd.DataFrame(rows)),
            Section("Confusion matrices", "Rows: the true class; columns: the class each run's OOF prediction puts "
                    "first.", ["confusion.png"])]


def _workspace_task(ws: Workspace) -> Task:
    """The workspace competition's task, for runs written before runs recorded theirs."""
    from ensemble.artifacts.competition import Competition
    from ensemble.errors import EnsError

    try:
        return Competition.load(ws.data_dir(), ws.settings().get("task")).task
    except (EnsError, OSError):  # a report without its competition folder shows what the runs record
        return MULTILABEL


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
            sections = ([_board_section(ws), *_recipe_sections(ws)] + _run_sections(ws, chosen, staging)
                        + _class_sections(ws, chosen, staging)
                        + _submission_sections(ws, chosen, staging, restack, progress))
        title = f"ens report: {len(chosen)} run{'s' if len(chosen) > 1 else ''} in {ws.root.name}"
        intro = Section("Contents", f"Runs: {', '.join(r.name for r in chosen)}. Labels: {', '.join(chosen[0].labels)}. "
                        "Scores are the competition's (lower is better). Below: the board (as `ens board` shows it), each "
                        "submission's recipe in words (with the comparison behind it when the decision rule chose "
                        "it), then the figures: reliability, correlation of the runs, per-fold spread, CV vs "
                        "leaderboard.")
        (staging / "index.md").write_text(_markdown(title, [intro, *sections]))
        (staging / "index.html").write_text(_html(title, [intro, *sections]))
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
