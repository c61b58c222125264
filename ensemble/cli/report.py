"""`ens report`: figures and a page about the workspace's runs and submissions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli.shared import DataOpt, WorkspaceOpt, command, console


@command("report")
def report_cmd(
    runs: Annotated[Optional[list[str]], typer.Argument(metavar="RUN", help="Runs to show (default: every run with OOF).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the figures and index.html (default: <workspace>/report); an earlier report there is replaced.")] = None,
    restack: Annotated[bool, typer.Option("--restack/--no-restack", help="Re-run each submission stacked from these runs to draw its reliability diagram.")] = True,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """PNG figures and a page: reliability diagrams, logit correlations, fold spread, CV vs leaderboard."""
    from ensemble.cli.progress import event_printer
    from ensemble.commands.report import write_report
    from ensemble.artifacts.workspace import Workspace

    ws = Workspace.resolve(workspace)
    if data is not None:
        from ensemble.artifacts.competition import open_competition

        open_competition(ws, data)
    with event_printer(console()) as show:
        folder = write_report(ws, out, runs or None, restack=restack, progress=show)
    typer.echo(f"report: {folder / 'index.html'}")
