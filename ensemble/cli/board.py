"""`ens board`: runs and submissions compared side by side."""

from __future__ import annotations

from typing import Annotated

import typer

from ensemble.cli.shared import MetricOpt, WorkspaceOpt, command, console, output_format


@command("board")
def board_cmd(
    format: Annotated[str, typer.Option("--format", help="table (for people), json, csv or md.")] = "table",
    metric: MetricOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Compare runs and submissions: CV score and its parts, recorded leaderboard scores, rank; partial runs
    with the folds they have."""
    from ensemble.commands.board import board_frame, cv_public_correlation
    from ensemble.cli.present import board_output
    from ensemble.artifacts.workspace import Workspace

    format = output_format(format)
    frame = board_frame(Workspace.resolve(workspace), metric)
    out = console()
    output = board_output(frame, cv_public_correlation(frame), format.value, out.width)
    if isinstance(output, str):
        typer.echo(output, nl=not output.endswith("\n"))
    else:
        out.print(output)
        from ensemble.leaderboard.workspace import mix_line

        if (line := mix_line(Workspace.resolve(workspace))) is not None:
            typer.echo(line)
