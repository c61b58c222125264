"""Presentation for the CLI: rich tables for people, JSON/CSV/Markdown for scripts. No arithmetic."""

from __future__ import annotations

import json
import math
import re

import pandas as pd
from rich.table import Table

from ensemble.artifacts.records import Recipe
from ensemble.commands.board import COLUMN_HEADERS
from ensemble.metrics.dacon import ScoreParts

SCORE_COLUMNS = {"rank", "cv", "auc", "brier", "ece", "cv_testlike", "public", "private", "delta", "score", "nested", "clean", "in-smp", "gain", "s",
                 "in_sample", "gap", "test"}
VALUES = {"submission": "sub", "partial": "part"}


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


PART_DIGITS = {"auc": 3, "brier": 3, "ece": 3, "delta": 3, "gap": 3, "gain": 3, "s": 1, "clean": 3, "in-smp": 3}


NAME_BREAKS = "+-_. "


def _ruled_box():
    """rich's SIMPLE_HEAD with a rule where a row ends a section (`end_section`), and nowhere else."""
    from rich.box import Box

    return Box("    \n    \n ── \n    \n ── \n    \n    \n    \n")


SIMPLE_HEAD_RULED = _ruled_box()


def break_name(name: str, width: int) -> str:
    """`name` on lines of at most `width` characters, broken after `+ - _ .` or a space (mid-word only when a
    part is longer); a line ends without its trailing space."""
    lines, line = [], ""
    for part in re.findall(rf"[^{re.escape(NAME_BREAKS)}]*[{re.escape(NAME_BREAKS)}]?", name):
        if not part:
            continue
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        while len(part) > width:
            lines.append(part[:width])
            part = part[width:]
        line += part
    return "\n".join(part.rstrip(" ") for part in ([*lines, line] if line else lines))


def hang(text: str, width: int = 80, indent: str = "    ") -> str:
    """`text` wrapped at `width` with continuation lines indented, so a wrapped line reads as one."""
    import textwrap

    lead = text[: len(text) - len(text.lstrip())]
    return textwrap.fill(text, width=width, initial_indent="", subsequent_indent=lead + indent,
                         break_on_hyphens=False, break_long_words=False)


def frame_table(frame: pd.DataFrame, title: str | None = None, digits: int = 4, method_width: int = 10,
                width: int = 80, line_after: int | None = None) -> Table:
    """A compact rich table of a DataFrame that fits `width` columns: numbers right-aligned, missing as '–';
    the name column takes the room the others leave, long names breaking after `+`/`-` rather than mid-word."""
    cells = {col: [] for col in frame.columns}
    for row in frame.itertuples(index=False):
        for col, v in zip(frame.columns, row):
            cells[col].append(VALUES.get(v, v) if isinstance(v, str) else fmt(v, PART_DIGITS.get(col, digits)))
    headers = {col: COLUMN_HEADERS.get(col, col) for col in frame.columns}
    used = {col: max([len(headers[col]), *(len(c) for c in cells[col])]) for col in frame.columns if col != "name"}
    if "method" in used:
        used["method"] = min(used["method"], method_width)
    room = width - sum(used.values()) - len(frame.columns) - 1  # one space between columns, one at the edge
    longest = max((len(c) for c in cells.get("name", [])), default=4)
    name_width = max(8, min(longest, room))
    table = Table(title=title, title_justify="left", box=SIMPLE_HEAD_RULED, padding=(0, 0, 0, 0), pad_edge=False,
                  header_style="bold")
    for col in frame.columns:
        numeric = col in SCORE_COLUMNS or pd.api.types.is_numeric_dtype(frame[col])
        if col == "method":  # long methods break like names, never cut to "features…"
            table.add_column(col, overflow="fold", max_width=method_width)
            cells[col] = [break_name(c, method_width) for c in cells[col]]
        elif col == "name":  # long names break at + and - onto more lines rather than squeeze the numbers
            table.add_column(col, overflow="fold", min_width=name_width, max_width=name_width)
            cells[col] = [break_name(c, name_width) for c in cells[col]]
        else:
            table.add_column(headers[col], justify="right" if numeric else "left", no_wrap=True)
    for i in range(len(frame)):  # `line_after`: a rule under that row (rows below it are apart)
        table.add_row(*(cells[col][i] for col in frame.columns), end_section=i == line_after)
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


def legend(lines: list[str], width: int = 80):
    """Dim lines under a table, each wrapped with a hanging indent."""
    from rich.text import Text

    return Text("\n".join(hang(line, width) for line in lines), style="dim")


def board_output(frame: pd.DataFrame, correlation: dict | None, fmt_name: str, width: int = 80,
                 notes: list[str] = ()):
    """The board as a rich renderable (table with its legend) or text (json/csv/md); `notes`: the public
    scores read against their noise, and the final picks, one line each."""
    if fmt_name != "table":
        extra = {"cv_public_correlation": correlation, "notes": list(notes)} if fmt_name == "json" else None
        return text_output(frame, fmt_name, extra)
    from rich.console import Group
    from rich.text import Text

    if frame.empty:
        return Group(Text("no runs or submissions yet: `ens import`, `ens finetune` or `ens stack` make them"),
                     *(Text(hang(line, width), style="bold") for line in notes))
    from ensemble.commands.board import board_legend, board_view, correlation_sentence

    shown = board_view(frame)
    title = f"runs and submissions ({frame.attrs.get('metric', 'lower is better')})"
    ranked = int(frame["rank"].notna().sum())
    apart = len(frame.attrs.get("apart") or [])
    parts = [frame_table(shown, title=title, digits=3, method_width=9, width=width,
                         line_after=ranked - 1 if ranked and apart else None),
             legend(board_legend(frame), width)]
    if correlation:
        parts.append(Text(hang(correlation_sentence(correlation), width)))
    elif (frame["kind"] == "submission").any():
        parts.append(Text(hang("CV vs public: record three or more public scores (`ens lb NAME --public X`) "
                               "to see whether CV predicts the leaderboard", width), style="dim"))
    parts.extend(Text(hang(line, width), style="bold" if line.startswith(("warning", "final")) else "")
                 for line in notes)
    return Group(*parts)


def score_table(parts: ScoreParts, per_label: dict[str, dict[str, float]], fmt_name: str, metric: str = "competition",
                greater_is_better: bool = False):
    """The metric and its parts, overall and per label (multiclass: per class, and the usual numbers)."""
    direction = "higher" if greater_is_better else "lower"
    if "*" in per_label or not all({"auc", "brier", "ece"} <= set(v) for v in per_label.values()):
        report = per_label.get("*")
        rows = [{"label": label, **values} for label, values in per_label.items() if label != "*"]
        if report:
            for row in rows:
                row["support"] = report["per_class"][row["label"]]["support"]
        frame = pd.DataFrame(rows)
        head = f"{metric} {parts.score:.6f} ({direction} is better)"
        if report:
            head += (f"; log loss {report['logloss']:.4f}, accuracy {report['accuracy']:.4f}, "
                     f"macro-F1 {report['macro_f1']:.4f}")
        if fmt_name in ("csv", "md"):
            return text_output(frame, fmt_name) + head + "\n"
        from rich.console import Group
        from rich.text import Text

        return Group(Text(head), frame_table(frame, digits=4))
    rows = [{"label": label, **values} for label, values in per_label.items()]
    rows.append({"label": "mean", "auc": parts.auc, "brier": parts.brier, "ece": parts.ece})
    frame = pd.DataFrame(rows, columns=["label", "auc", "brier", "ece"])
    if fmt_name in ("csv", "md"):
        return text_output(frame, fmt_name) + f"score {parts.score:.6f}\n"
    from rich.console import Group
    from rich.text import Text

    return Group(Text(f"score {parts.score:.6f} (lower is better)"), frame_table(frame, digits=6))


def compare_table(comparison, width: int = 80):
    """`ens stack --compare`: every candidate's nested score and parts, best first, with a legend.

    `nested` is the score to trust: on test-like rows when the runs have them (then `clean` is the nested
    score on the clean train rows), else on the clean rows.
    """
    from rich.console import Group
    from rich.text import Text

    from ensemble.stack.explain import compare_frame, compare_legend

    frame, testlike = compare_frame(comparison.sorted_rows())
    where = "test-like rows" if testlike else "OOF rows"
    metric = comparison.scorer.name
    on = f"nested CV on {where}" if metric == "competition" else f"nested CV ({metric}) on {where}"
    table = frame_table(frame, title=f"candidates, {on}", method_width=18, width=width)
    return Group(table, legend(compare_legend(testlike), width),
                 Text(hang(f"decision: {comparison.decision.rule}", width)))


def stack_summary(path, result, recipe: Recipe, width: int = 80) -> str:
    """The written submission: its honest scores, then its recipe in words (why this method, weights per run,
    calibrator per label, test prior), so the JSON sidecar need not be read."""
    from ensemble.stack.explain import recipe_lines

    lines = [f"wrote {path}"]
    for what, parts in (("nested CV", result.nested), ("test-like nested CV", result.nested_testlike),
                        ("in-sample", result.in_sample)):
        if parts is not None:
            if parts.auc != parts.auc:  # another metric than the competition's: no parts
                lines.append(f"  {what} ({recipe.metric}): {parts.score:.5f}")
            else:
                lines.append(f"  {what}: {parts.score:.5f} (AUC {parts.auc:.4f}, Brier {parts.brier:.4f}, ECE {parts.ece:.4f})")
    if result.gain:
        g = result.gain
        level = f" ({100 * (1 - g['alpha']):.1f} % interval" if g.get("alpha") is not None else ""
        if level and g.get("challengers"):
            level += f", the level --compare uses for its {g['challengers']} challengers"
        lines.append(f"  gain over best single run (positive = better): {g['gain']:+.5f} [{g['lo']:+.5f}, "
                     f"{g['hi']:+.5f}]{level + ')' if level else ''}")
    lines.extend(f"  {line}" for line in recipe_lines(recipe))
    lines.extend(f"  warning: {w}" for w in result.warnings)
    return "\n".join([lines[0], *(hang(line, width) for line in lines[1:])])  # a path is never broken


def prior_table(result) -> Table | None:
    """Estimated test priors per label and the OOF score at each assumed prior (`--test-prior`)."""
    prior = result.recipe.prior
    if not result.sensitivity or prior is None:
        return None
    frame = pd.DataFrame(result.sensitivity).pivot(index="prior", columns="label", values="score").reset_index()
    from rich.console import Group
    from rich.text import Text

    labels = result.recipe.labels
    lines = [f"test prior of {label}: train {prior.prior_train[j]:.3f}, EM {fmt(prior.prior_em[j], 3)}, "
             f"BBSE {fmt(prior.prior_bbse[j], 3)}, used {fmt(prior.prior_used[j], 3) if prior.prior_used else '–'}"
             for j, label in enumerate(labels)]
    return Group(Text("\n".join(lines)), frame_table(frame, title="OOF score vs prior", digits=4))


def trial_lines(trials: list[dict], metric: str) -> list[str]:
    """`ens tune`'s trials, one line each: score, time, and the options it drew."""
    lines = []
    for t in trials:
        options = dict(t["options"])
        config = options.pop("model_config", {})
        drawn = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in options.items()
                          if k in ("lr", "epochs", "max_seconds", "schedule", "warmup", "hold", "weight_decay",
                                   "max_grad_norm", "freeze", "pooling"))
        drawn += "".join(f", {k} {v:.3g}" if isinstance(v, float) else f", {k} {v}" for k, v in config.items())
        lines.append(f"trial {t['number']}: {metric} {t['score']:.5f} ({t['seconds']:.0f} s): {drawn}")
    return lines
