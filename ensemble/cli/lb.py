"""`ens lb`: leaderboard scores recorded for a submission, and the public leaderboard's share of the test."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli.shared import DataOpt, ForceOpt, WorkspaceOpt, command, ens_prog, fail, say


@command("lb")
def lb_cmd(
    submission: Annotated[Optional[str], typer.Argument(metavar="SUBMISSION", help="Submission name (or its CSV path).")] = None,
    public: Annotated[Optional[float], typer.Option("--public", help="Public leaderboard score.")] = None,
    private: Annotated[Optional[float], typer.Option("--private", help="Private leaderboard score.")] = None,
    digits: Annotated[int, typer.Option("--digits", help="`ens lb probe`: decimals the site shows of a score.")] = 5,
    public_share: Annotated[Optional[float], typer.Option("--public-share", help="The share of the test set the public leaderboard scores, e.g. 0.5 (remembered in ens.toml): `ens board` then tells public differences beyond the noise of so many clips from chance, and `ens lb probe` bounds the probed label mix by it.")] = None,
    data: DataOpt = None,
    force: ForceOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Record leaderboard scores for a submission (stored in its JSON sidecar), and the public share of the test.
    `ens lb probe` writes the constant probe submissions whose public scores reveal the public part's label
    mix, and shows that mix once their scores are recorded."""
    from ensemble.artifacts.workspace import Workspace
    from ensemble.commands.lb import record_leaderboard
    from ensemble.leaderboard.noise import check_share

    ws = Workspace.resolve(workspace)
    if submission is None and public_share is None:
        fail("give a SUBMISSION with --public/--private, `probe`, or --public-share")
    share = None if public_share is None else check_share(public_share)  # checked before anything is written
    if submission == "probe" and public is None and private is None:
        from ensemble.leaderboard.noise import public_share as remembered_share

        if share is not None:
            _remember_share(ws, share)
        return probe_cmd(workspace, data, digits, remembered_share(ws), force)
    if submission is not None:
        sidecar = record_leaderboard(ws, Path(submission).stem, public, private)
        scores = ", ".join(f"{key} {value:g}" for key, value in sidecar.leaderboard.scores().items())
        typer.echo(f"recorded {sidecar.name}: {scores}")
    if share is not None:
        _remember_share(ws, share)
    if submission is None:
        return
    say(f"next: `{ens_prog()} board` ranks it beside the others; from three public scores on it tells whether CV predicts "
        "the leaderboard")


def _remember_share(ws, share: float) -> None:
    ws.remember(public_share=share)
    typer.echo(f"public leaderboard: {share:g} of the test set (remembered in {ws.root / 'ens.toml'})")


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
