"""`ens oof`: a run re-predicted with ONNX Runtime."""

from __future__ import annotations

from typing import Annotated

import typer

from ensemble.cli.shared import DataOpt, WorkspaceOpt, command, console, fail, workspace_and_competition


@command("oof")
def oof_cmd(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Run whose ONNX folds to run.")],
    data: DataOpt = None,
    split: Annotated[str, typer.Option("--split", help="train, test, testlike or all.")] = "all",
    provider: Annotated[str, typer.Option("--provider", help="auto (CUDA when available), cuda or cpu.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per ONNX Runtime call.")] = 8,
    workspace: WorkspaceOpt = None,
) -> None:
    """Re-predict a run with ONNX Runtime (OOF from the fold that never saw each row), replacing its files."""
    from ensemble.artifacts.runs import PREDICTION_SPLITS
    from ensemble.commands.oof import run_oof
    from ensemble.cli.progress import event_printer

    if split != "all" and split not in PREDICTION_SPLITS:
        fail(f"--split must be one of all, {', '.join(PREDICTION_SPLITS)}; got {split!r}")
    from ensemble.artifacts.audio_check import audio_splits

    splits = PREDICTION_SPLITS if split == "all" else (split,)
    ws, comp = workspace_and_competition(workspace, data, audio=audio_splits(splits))
    with event_printer(console()) as show:
        diffs = run_oof(ws, comp, run, splits, provider, batch_size, progress=show)
    for name, diff in diffs.items():
        change = "new test-like clips, nothing to compare" if diff != diff else f"max |p_onnx - p_previous| = {diff:.2e}"
        typer.echo(f"{run} {name}: {change}")
