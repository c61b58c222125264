"""`ens testlike check|export`: how test-like the simulated test-like set is, and its clips as WAV files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli.shared import DataOpt, ForceOpt, WorkspaceOpt, app, handles_errors, workspace_and_competition


testlike_app = typer.Typer(help="The simulated test-like set: how test-like it is.", no_args_is_help=True,
                           rich_markup_mode=None)
app.add_typer(testlike_app, name="testlike")


@testlike_app.command("check")
@handles_errors
def testlike_check_cmd(
    runs: Annotated[Optional[list[str]], typer.Argument(metavar="RUN", help="Runs whose predictions to check too (test-like vs test clips).")] = None,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
    clips: Annotated[int, typer.Option("--clips", help="Test-like and real clips compared (each side).")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the samples and the classifier's folds.")] = 0,
) -> None:
    """Domain check: cross-validated AUC of a classifier telling rendered test-like clips from the real
    test (and unlabeled) clips on per-clip audio statistics (0.5: indistinguishable), the statistics
    that differ most, and a warning above the threshold; real clips the generator's fit never saw are
    used when at least 50 are left. With RUNS, the same on the runs' predictions. Recorded in
    models/testlike.json; a pass on held-out clips lets the test-like rows alone decide what to write."""
    from ensemble.commands.testlike import check_predictions, check_testlike

    ws, comp = workspace_and_competition(workspace, data)
    _show_domain_check(check_testlike(ws, comp, clips, seed), "statistic", "clips")
    if runs:
        _show_domain_check(check_predictions(ws, comp, runs, seed), "run:label logit", "predictions")


def _show_domain_check(check, feature: str, what: str) -> None:
    low, high = check.auc_interval
    held = " held out from the generator's fit" if check.extra.get("held_out") else ""
    typer.echo(f"domain AUC on {what} {check.auc:.3f} (95% {low:.3f}–{high:.3f}, fold std {check.auc_fold_std:.3f}; "
               f"{check.n_simulated} test-like vs {check.n_real} real clips{held})")
    typer.echo(f"{feature:<18} {'real − test-like (SMD)':>22}")
    for stat, smd in check.top(5):
        typer.echo(f"{stat:<18} {smd:>+22.2f}")
    if check.warn:
        typer.echo(f"warning: domain AUC on {what} {check.auc:.3f} > {check.threshold:.2f}: the test-like set is easy "
                   "to tell from the test; its scores and calibrators may not carry over", err=True)


@testlike_app.command("export")
@handles_errors
def testlike_export_cmd(
    out: Annotated[Path, typer.Argument(metavar="DIR", help="Folder for <id>.wav files and ids.csv.")],
    rate: Annotated[int, typer.Option("--rate", help="Sample rate of the WAV files (Hz).")] = 16000,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
    force: ForceOpt = False,
) -> None:
    """Write the workspace's test-like clips as WAV files (+ ids.csv) for models made outside ens; their
    predictions come back with `ens import NAME --test … --oof … --testlike PREDS.csv`."""
    from ensemble.commands.testlike import export_testlike

    ws, comp = workspace_and_competition(workspace, data)
    folder = export_testlike(ws, comp, out, rate, force)
    typer.echo(f"wrote {len(list(folder.glob('*.wav')))} test-like clips at {rate} Hz and ids.csv → {folder}")
