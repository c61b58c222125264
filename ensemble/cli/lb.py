"""`ens lb`: leaderboard scores recorded for a submission."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli.shared import DataOpt, ForceOpt, WorkspaceOpt, command, ens_prog, say


@command("lb")
def lb_cmd(
    submission: Annotated[str, typer.Argument(metavar="SUBMISSION", help="Submission name (or its CSV path).")],
    public: Annotated[Optional[float], typer.Option("--public", help="Public leaderboard score.")] = None,
    private: Annotated[Optional[float], typer.Option("--private", help="Private leaderboard score.")] = None,
    digits: Annotated[int, typer.Option("--digits", help="`ens lb probe`: decimals the site shows of a score.")] = 5,
    public_share: Annotated[Optional[float], typer.Option("--public-share", help="`ens lb probe`: the share of the test rows the public leaderboard scores, e.g. 0.5.")] = None,
    data: DataOpt = None,
    force: ForceOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Record leaderboard scores for a submission (stored in its JSON sidecar). `ens lb probe` writes the
    constant probe submissions whose public scores reveal the public part's label mix, and shows that mix
    once their scores are recorded."""
    from ensemble.commands.lb import record_leaderboard
    from ensemble.artifacts.workspace import Workspace

    if submission == "probe" and public is None and private is None:
        from ensemble.cli.lb_probe import probe_cmd

        return probe_cmd(workspace, data, digits, public_share, force)

    sidecar = record_leaderboard(Workspace.resolve(workspace), Path(submission).stem, public, private)
    board = sidecar.leaderboard
    scores = ", ".join(f"{key} {board[key]:g}" for key in ("public", "private") if board.get(key) is not None)
    typer.echo(f"recorded {sidecar.name}: {scores}")
    say(f"next: `{ens_prog()} board` ranks it beside the others; from three public scores on it tells whether CV predicts "
        "the leaderboard")
