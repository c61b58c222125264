"""`ens export`: a submission's whole chain as one ONNX file."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli.shared import DataOpt, ForceOpt, WorkspaceOpt, command, console, workspace_and_competition


@command("export")
def export_cmd(
    submission: Annotated[str, typer.Argument(help="Submission name (in submissions/) to export.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="ONNX file to write (default: exports/<submission>.onnx in the workspace).")] = None,
    quantize: Annotated[str, typer.Option("--quantize", help="none, or int8: dynamic int8 MatMul weights, kept only if the score check allows.")] = "none",
    max_score_change: Annotated[float, typer.Option("--max-score-change", help="With --quantize int8: refuse when the OOF score worsens by more.")] = 0.002,
    check_rows: Annotated[int, typer.Option("--check-rows", help="With --quantize int8: OOF rows (train clips, each by the folds that never saw it) the score check predicts.")] = 2000,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
    force: ForceOpt = False,
) -> None:
    """Export a submission's whole chain (fold models, pooling, blend, calibration, prior) as one ONNX file."""
    from ensemble.commands.export import Int8Check, export_submission
    from ensemble.cli.progress import event_printer
    from ensemble.artifacts.workspace import Workspace
    from ensemble.commands.export import QUANTIZE
    from ensemble.errors import ConfigError

    if quantize not in QUANTIZE:  # options before the workspace or the competition folder is read
        raise ConfigError(f"--quantize {quantize}: accepted: {', '.join(QUANTIZE)}")
    if not math.isfinite(max_score_change):  # below 0: int8 must improve the score by that much
        raise ConfigError(f"--max-score-change {max_score_change:g}: accepted: a finite score change")
    if check_rows < 1:
        raise ConfigError(f"--check-rows {check_rows}: accepted: at least 1 row")
    ws = Workspace.resolve(workspace)
    comp = workspace_and_competition(workspace, data, audio=("train",))[1] if quantize == "int8" else None
    target = out if out is not None else ws.root / "exports" / f"{submission}.onnx"
    with event_printer(console()) as show:
        done = export_submission(ws, submission, target, quantize=quantize, force=force, comp=comp,
                                 int8=Int8Check(max_score_change, check_rows), progress=show)
    typer.echo(f"wrote {done.path} ({done.bytes / 1e6:.1f} MB): runs {', '.join(done.runs)}, {done.folds} fold graphs")
    if done.score_check:
        c = done.score_check
        typer.echo(f"int8 score check on {c['rows']} OOF rows: fp32 {c['fp32']:.5f}, int8 {c['int8']:.5f} "
                   f"(change {c['change']:+.5f}, limit {c['max_change']}; max |Δp| {c['max_abs_diff']:.2e})")
        typer.echo(f"whole chain on {c['speed_clips']} clips, interleaved: fp32 {c['fp32_clips_per_s']:.1f} clips/s, "
                   f"int8 {c['int8_clips_per_s']:.1f} clips/s; size {c['fp32_bytes'] / 1e6:.1f} → "
                   f"{c['int8_bytes'] / 1e6:.1f} MB")
