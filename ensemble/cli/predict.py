"""`ens predict`: audio predicted with an exported submission, without torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli.shared import ForceOpt, command, console


@command("predict")
def predict_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX file written by `ens export`.")],
    audio: Annotated[Optional[list[Path]], typer.Argument(help="Audio files to predict (or --data DIR --split test).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Competition folder whose split to predict.")] = None,
    split: Annotated[str, typer.Option("--split", help="With --data: test or train.")] = "test",
    out: Annotated[Path, typer.Option("--out", help="CSV to write (id + label columns; submission order with --data).")] = Path("preds.csv"),
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips of one length per ONNX Runtime call.")] = 8,
    force: ForceOpt = False,
) -> None:
    """Predict audio with an exported submission in ONNX Runtime alone (no torch)."""
    from ensemble.cli.progress import event_printer
    from ensemble.commands.predict import predict_command

    with event_printer(console()) as show:
        frame = predict_command(model, audio, data, split, out, batch_size, force, progress=show)
    typer.echo(f"wrote {len(frame)} predictions → {out}")
