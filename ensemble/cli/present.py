"""Presentation for the CLI: rich tables for people, JSON/CSV/Markdown for scripts. No arithmetic."""

from __future__ import annotations

import json
import math

import pandas as pd
from rich.table import Table

from ensemble.metrics.dacon import ScoreParts

SCORE_COLUMNS = {"cv", "auc", "brier", "ece", "cv_testlike", "public", "private", "delta", "score", "nested", "clean", "in-smp", "gain", "s",
                 "in_sample", "gap", "test"}
HEADERS = {"cv_testlike": "cv tl", "rank": "#", "public": "pub", "private": "priv"}
VALUES = {"submission": "sub"}


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


PART_DIGITS = {"auc": 3, "brier": 3, "ece": 3, "delta": 3, "gap": 3, "gain": 3, "s": 1, "clean": 3, "in-smp": 3}


def frame_table(frame: pd.DataFrame, title: str | None = None, digits: int = 4, method_width: int = 10) -> Table:
    """A compact rich table of a DataFrame (fits 80 columns): numbers right-aligned, missing as '–'."""
    from rich import box

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 0, 0, 0), pad_edge=False,
                  header_style="bold")
    for col in frame.columns:
        numeric = col in SCORE_COLUMNS or pd.api.types.is_numeric_dtype(frame[col])
        if col == "method":  # the least important text: cut it first
            table.add_column(col, overflow="ellipsis", no_wrap=True, max_width=method_width)
        elif col == "name":  # long names fold onto a second line rather than squeeze the numbers
            table.add_column(col, overflow="fold", min_width=8)
        else:
            table.add_column(HEADERS.get(col, col), justify="right" if numeric else "left", no_wrap=True)
    for row in frame.itertuples(index=False):
        cells = []
        for col, v in zip(frame.columns, row):
            cells.append(VALUES.get(v, v) if isinstance(v, str) else fmt(v, PART_DIGITS.get(col, digits)))
        table.add_row(*cells)
    return table


def text_output(frame: pd.DataFrame, fmt_name: str, extra: dict | None = None) -> str:
    """JSON, CSV or Markdown text of a frame (and optional extra JSON fields)."""
    if fmt_name == "json":
        rows = json.loads(frame.to_json(orient="records"))
        return json.dumps({"rows": rows, **(extra or {})}, indent=2) + "\n"
    if fmt_name == "csv":
        return frame.to_csv(index=False, float_format="%.6f", lineterminator="\n")
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def board_output(frame: pd.DataFrame, correlation: dict | None, fmt_name: str):
    """The board as a rich renderable (table) or text (json/csv/md)."""
    if fmt_name != "table":
        return text_output(frame, fmt_name, {"cv_public_correlation": correlation} if fmt_name == "json" else None)
    from rich.console import Group
    from rich.text import Text

    if frame.empty:
        return Text("no runs or submissions yet: `ens import`, `ens finetune` or `ens stack` make them")
    from ensemble.commands.board import DETAIL

    shown = frame.drop(columns=DETAIL)
    shown = shown.drop(columns=["cv_testlike"]) if shown["cv_testlike"].isna().all() else shown
    parts = [frame_table(shown, title="runs and submissions (lower is better)", digits=3)]
    if correlation:
        parts.append(Text(f"CV vs public over {correlation['n']} submissions: Pearson {correlation['pearson']:.3f}, "
                          f"Spearman {correlation['spearman']:.3f}"))
    return Group(*parts)


def score_table(parts: ScoreParts, per_label: dict[str, dict[str, float]], fmt_name: str):
    """The metric and its parts, overall and per label."""
    rows = [{"label": label, **values} for label, values in per_label.items()]
    rows.append({"label": "mean", "auc": parts.auc, "brier": parts.brier, "ece": parts.ece})
    frame = pd.DataFrame(rows, columns=["label", "auc", "brier", "ece"])
    if fmt_name in ("csv", "md"):
        return text_output(frame, fmt_name) + f"score {parts.score:.6f}\n"
    from rich.console import Group
    from rich.text import Text

    return Group(Text(f"score {parts.score:.6f} (lower is better)"), frame_table(frame, digits=6))


def compare_table(comparison):
    """`ens stack --compare`: every candidate's nested score and parts, best first, with a legend.

    `nested` is the score to trust: on test-like rows when the runs have them (then `clean` is the nested
    score on the clean train rows), else on the clean rows.
    """
    from rich.console import Group
    from rich.text import Text

    rows = [{**r, "method": ("* " if r["chosen"] else "") + r["method"]} for r in comparison.sorted_rows()]
    frame = pd.DataFrame(rows)
    keep = ["method", "score", "auc", "brier", "ece", "score_clean", "in_sample", "gap", "gain", "seconds"]
    testlike = "score_testlike" in frame.columns
    if not testlike:
        keep.remove("score_clean")  # without test-like rows the clean score is the nested score
    frame = frame[keep].rename(columns={"score": "nested", "score_clean": "clean", "in_sample": "in-smp",
                                        "seconds": "s"})
    where = "test-like rows" if testlike else "OOF rows"
    legend = ("nested: score of the pipeline on rows it never saw (lower is better)"
              + ("; clean: the same on the clean train rows" if testlike else "")
              + "; in-smp: fitted and scored on the same rows; gap = nested − in-smp (optimism);"
              " gain: best single run's nested score − this one (positive is better); s: seconds."
              " run:X is run X alone, +cal calibrated; * is what --write writes.")
    table = frame_table(frame, title=f"candidates, nested CV on {where}", method_width=18)
    return Group(table, Text(legend, style="dim"), Text(f"decision: {comparison.decision.rule}"))


def stack_summary(path, result, decision: dict | None = None) -> str:
    """The written submission: its honest scores, what was chosen and why, the calibrators and the prior."""
    lines = [f"wrote {path}"]
    if decision:
        lines.append(f"  chosen: {decision['chosen']} ({decision['rule']})")
    for what, parts in (("nested CV", result.nested), ("test-like nested CV", result.nested_testlike),
                        ("in-sample", result.in_sample)):
        if parts is not None:
            lines.append(f"  {what}: {parts.score:.5f} (AUC {parts.auc:.4f}, Brier {parts.brier:.4f}, ECE {parts.ece:.4f})")
    if result.gain:
        g = result.gain
        lines.append(f"  gain over best single run: {g['gain']:+.5f} [{g['lo']:+.5f}, {g['hi']:+.5f}]")
    recipe = result.recipe
    blender = recipe.get("blender") or {}
    if "weights" in blender:
        lines.append(f"  weights per label (runs in order): {blender['weights']}")
    if "coef" in blender:
        lines.append(f"  coefficients per label (runs in order): {blender['coef']}")
    cals = ", ".join(f"{c['label']}: {c['calibrator']}" for c in recipe.get("calibrators", []))
    if cals:
        lines.append(f"  calibrators: {cals}")
    prior = recipe.get("prior") or {}
    if prior.get("mode", "none") != "none":
        used = ", ".join(f"{label} {q:.3f}" for label, q in zip(recipe.get("labels", []), prior["prior_used"]))
        lines.append(f"  test prior used: {used}")
    lines.extend(f"  warning: {w}" for w in result.warnings)
    return "\n".join(lines)


def prior_table(result) -> Table | None:
    """Estimated test priors per label and the OOF score at each assumed prior (`--test-prior`)."""
    prior = result.recipe.get("prior") or {}
    if not result.sensitivity or not prior:
        return None
    frame = pd.DataFrame(result.sensitivity).pivot(index="prior", columns="label", values="score").reset_index()
    from rich.console import Group
    from rich.text import Text

    labels = result.recipe.get("labels", [])
    lines = [f"test prior of {label}: train {prior['prior_train'][j]:.3f}, EM {prior['prior_em'][j]:.3f}, "
             f"BBSE {prior['prior_bbse'][j]:.3f}, used {fmt(prior['prior_used'][j], 3) if prior.get('prior_used') else '–'}"
             for j, label in enumerate(labels)]
    return Group(Text("\n".join(lines)), frame_table(frame, title="OOF score vs prior", digits=4))
