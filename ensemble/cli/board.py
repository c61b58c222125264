"""`ens board`: runs and submissions compared side by side."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ensemble.cli.shared import MetricOpt, WorkspaceOpt, command, console, fail, output_format


@command("board")
def board_cmd(
    format: Annotated[str, typer.Option("--format", help="table (for people), json, csv or md.")] = "table",
    final: Annotated[Optional[int], typer.Option("--final", help="Propose this many final submissions (e.g. 2): the trusted best, then the best hedges within its noise that err differently, with the reason.")] = None,
    metric: MetricOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Compare runs and submissions: CV score and its parts, recorded leaderboard scores, rank; partial runs
    with the folds they have."""
    from ensemble.commands.board import board_frame, cv_public_correlation, final_lines, noise_lines
    from ensemble.cli.present import board_output
    from ensemble.artifacts.workspace import Workspace

    format = output_format(format)
    if final is not None and final < 1:
        fail(f"--final must be 1 or more submissions; got {final}")
    ws = Workspace.resolve(workspace)
    frame = board_frame(ws, metric)
    notes = list(frame.attrs.get("changed", [])) + (noise_lines(ws, frame, metric) if not frame.empty else [])
    if final is not None and not frame.empty:
        notes += final_lines(ws, frame, final, metric)
    out = console()
    output = board_output(frame, cv_public_correlation(frame), format.value, out.width, notes)
    if isinstance(output, str):
        typer.echo(output, nl=not output.endswith("\n"))
    else:
        out.print(output)
        from ensemble.leaderboard.workspace import mix_line

        if (line := mix_line(Workspace.resolve(workspace))) is not None:
            typer.echo(line)
