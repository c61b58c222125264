"""`ens import`: prediction CSVs made elsewhere become a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli.shared import DataOpt, ForceOpt, TaskOpt, WorkspaceOpt, command, ens_prog, say, workspace_and_competition


@command("import")
def import_cmd(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the new run.")],
    test: Annotated[Path, typer.Option("--test", help="Test predictions: CSV with id and the label columns.")],
    oof: Annotated[Optional[Path], typer.Option("--oof", help="Out-of-fold predictions for train ids (CSV, optional `fold` column).")] = None,
    testlike: Annotated[Optional[Path], typer.Option("--testlike", help="Predictions for the workspace's test-like clips (CSV with id and the label columns; see `ens testlike export`). Needs --oof.")] = None,
    task: TaskOpt = None,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
    force: ForceOpt = False,
) -> None:
    """Turn prediction CSVs made elsewhere into a run that can be blended (and learned from, with --oof)."""
    from ensemble.commands.import_ import import_run

    ws, comp = workspace_and_competition(workspace, data, task=task)
    run = import_run(ws, comp, name, test, oof, force=force, testlike_csv=testlike)
    cv = run.manifest.cv
    tail = f" (CV {cv.score:.5f})" if cv else " (no OOF: can be averaged, not learned from)"
    typer.echo(f"imported run {name} into {run.dir}{tail}")
    say(comp.task_note())
    if cv:
        say(f"next: `{ens_prog()} board` lists it; `{ens_prog()} stack {name} OTHER_RUN --compare` tells whether a blend helps")
    else:  # a comparison needs every run's OOF
        say(f"next: `{ens_prog()} board` lists it; `{ens_prog()} stack {name} OTHER_RUN --method mean` averages it with another run")
