"""`ens features`: per-clip meta-features for the stacker."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ensemble.cli.shared import DataOpt, ForceOpt, WorkspaceOpt, command, console, workspace_and_competition


@command("features")
def features_cmd(
    kind: Annotated[str, typer.Argument(metavar="KIND", help="vad: Silero VAD voice activity (voiced fraction, longest voiced stretch, peak and mean P(speech)), duration and level.")],
    name: Annotated[Optional[str], typer.Option("--name", help="Feature set name (default: KIND).")] = None,
    folds: Annotated[Optional[int], typer.Option("--folds", help="Number of folds when this command makes the shared folds file (default 5).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the shared folds and test-like set, when this command makes them.")] = 0,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
    force: ForceOpt = False,
) -> None:
    """Per-clip meta-features for the stacker (train, test and test-like clips) in models/features/NAME/; `ens stack --meta NAME` uses them."""
    from ensemble.cli.progress import event_printer
    from ensemble.commands.features import make_features

    ws, comp = workspace_and_competition(workspace, data, audio=("train", "test", "unlabeled"))
    with event_printer(console()) as show:
        manifest = make_features(ws, comp, kind, name, seed=seed, force=force, progress=show, n_folds=folds)
    rows = ", ".join(f"{n} {split}" for split, n in manifest.rows.items())
    typer.echo(f"feature set {manifest.name}: {len(manifest.columns)} columns for {rows} clips in "
               f"{manifest.seconds:.0f} s → {ws.models_dir / 'features' / manifest.name}")
