"""`ens lb probe`: probe submissions written, or the public label mix their scores reveal, shown."""

from __future__ import annotations

from pathlib import Path

import typer

from ensemble.cli.shared import say, workspace_and_competition
from ensemble.errors import ConfigError


def probe_cmd(workspace: Path | None, data: Path | None, digits: int, public_share: float | None, force: bool) -> None:
    """Write the probes (first call, or with --force), else report which lack a score or the solved mix."""
    from ensemble.commands.lb_probe import read_probes, write_probes

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
