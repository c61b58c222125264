"""`ens score`: a submission scored against an answer key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli.shared import Format, MetricOpt, command, console, output_format


@command("score")
def score_cmd(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Submission CSV to score.")],
    answers: Annotated[Path, typer.Option("--answers", help="Answer key: CSV with id and 0/1 label columns.")],
    format: Annotated[str, typer.Option("--format", help="table, json, csv or md.")] = "table",
    metric: MetricOpt = None,
    task: Annotated[Optional[str], typer.Option("--task", help="multilabel or multiclass (default: multiclass when the key has 3+ columns and one 1 per row).")] = None,
) -> None:
    """Score a submission against an answer key (default: the competition metric, lower is better;
    multiclass: log loss, with accuracy, macro-F1 and per-class precision/recall/F1)."""
    from ensemble.commands.score import score_file
    from ensemble.metrics.scorer import SCORERS

    format = output_format(format)
    parts, per_label = score_file(file, answers, metric, task)
    if format == Format.json:
        typer.echo(json.dumps({**{k: v for k, v in parts.as_dict().items() if v == v}, "labels": per_label}, indent=2))
        return
    from ensemble.cli.present import score_table

    name = metric or ("logloss" if "*" in per_label else "competition")
    console().print(score_table(parts, per_label, format.value, name, SCORERS[name].greater_is_better))
