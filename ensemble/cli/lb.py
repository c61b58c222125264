"""`ens lb`: leaderboard scores recorded for a submission."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli.shared import DataOpt, ForceOpt, WorkspaceOpt, command, say


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
        return probe_cmd(workspace, data, digits, public_share, force)

    sidecar = record_leaderboard(Workspace.resolve(workspace), Path(submission).stem, public, private)
    board = sidecar.leaderboard
    scores = ", ".join(f"{key} {board[key]:g}" for key in ("public", "private") if board.get(key) is not None)
    typer.echo(f"recorded {sidecar.name}: {scores}")
    say("next: `ens board` ranks it beside the others; from three public scores on it tells whether CV predicts "
        "the leaderboard")


def probe_cmd(workspace: Path | None, data: Path | None, digits: int, public_share: float | None, force: bool) -> None:
    """Write the probes (first call, or with --force), else report which lack a score or the solved mix."""
    from ensemble.cli.shared import workspace_and_competition
    from ensemble.errors import ConfigError
    from ensemble.leaderboard.workspace import read_probes, write_probes

    ws, comp = workspace_and_competition(workspace, data)
    probes = read_probes(ws, comp)
    if not probes.names or force:
        if public_share is None:
            raise ConfigError("`ens lb probe` needs --public-share: the share of the test rows the public "
                              "leaderboard scores (the contest's rules state it, e.g. 0.5)")
        names = write_probes(ws, comp, digits, public_share, force)
        typer.echo(f"wrote {len(names)} probe submissions: {', '.join(names)} (constant predictions for metric "
                   f"{ws.metric(comp.task)}; each costs one leaderboard submission)")
        say(f"next: submit them, then `ens lb {names[0]} --public SCORE` for each; `ens lb probe` then shows the "
            "public label mix and `ens stack … --test-prior lb` uses it")
        return
    if probes.result is None:
        typer.echo(f"probes without a public score: {', '.join(probes.missing)} (`ens lb NAME --public SCORE`)")
        return
    r = probes.result
    typer.echo("public label mix from the probes (95 % interval: shown rounding + the public share's sampling noise):")
    for label, share, half in zip(r.labels, r.shares, r.half_width):
        typer.echo(f"  {label}: {share:.4f} ± {half:.4f}")
    say("next: `ens stack … --test-prior lb` adapts the blend to this mix")
