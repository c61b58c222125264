"""`ens tune`: an Optuna search over the fine-tuning knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli.config import merge_config, parse_folds
from ensemble.cli.shared import DataOpt, MetricOpt, WorkspaceOpt, command, console, say, workspace_and_competition


@command("tune")
def tune_cmd(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Hub id, local folder, or a named config, as for finetune.")],
    data: DataOpt = None,
    trials: Annotated[int, typer.Option("--trials", help="Complete trials the study should hold (a resumed study runs the rest).")] = 10,
    fold: Annotated[Optional[str], typer.Option("--fold", help="Folds each trial trains and scores, e.g. 0,1 (default 0).")] = None,
    metric: MetricOpt = None,
    study: Annotated[Optional[str], typer.Option("--study", help="Study name: tune/<study>.db in the workspace (default: from MODEL).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write the best options (default tune/<study>.toml).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Most epochs a trial may draw.")] = 5,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Centre of the learning-rate range (a decade either side; default as finetune's).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per step (fixed).")] = 16,
    grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", help="Steps per update (fixed; default as finetune's).")] = None,
    max_seconds: Annotated[float, typer.Option("--max-seconds", help="Longest crop a trial may draw (from half of it).")] = 5.0,
    augment: Annotated[str, typer.Option("--augment", help="Augmentation (fixed), as for finetune.")] = "default",
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file with any of these options (command-line values win).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampler and of every trial's training.")] = 0,
    workspace: WorkspaceOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Start the study over (its stored trials are deleted).")] = False,
) -> None:
    """Search the fine-tuning knobs with Optuna on the workspace's folds; write the best options as a run.toml."""
    from ensemble.cli.progress import event_printer, first_saying
    from ensemble.commands.finetune import FinetuneOptions
    from ensemble.commands.tune import TuneOptions, check_tune, tune

    values = dict(model=model, epochs=epochs, lr=lr, batch_size=batch_size, grad_accum=grad_accum,
                  max_seconds=max_seconds, augment=augment, device=device, seed=seed, trials=trials,
                  only_folds=parse_folds(fold), metric=metric, study=study, out=out)
    if config is not None:
        values = merge_config(config, values, ctx)
    settings = TuneOptions(trials=values.pop("trials"), folds=values.pop("only_folds"), metric=values.pop("metric"),
                           study=values.pop("study"), out=Path(values["out"]) if values.pop("out") else None)
    base = check_tune(FinetuneOptions(**values), settings)  # before the folder's audio is checked
    ws, comp = workspace_and_competition(workspace, data, audio=("train",), metric=metric)
    with event_printer(console()) as show:
        show = first_saying(comp.task_note(), show, say)
        result = tune(ws, comp, base, settings, force=force, progress=show)
    from ensemble.cli.present import trial_lines

    typer.echo(f"study {result.study}: {result.ran} trial(s) run now, {len(result.trials)} complete, "
               f"{result.seconds:.0f} s")
    for line in trial_lines(result.trials[:5], ws.metric(comp.task)):
        say(line)
    say(f"best options (trial {result.best['number']}) → {result.toml_path}; next: "
        f"`ens finetune {model} --config {result.toml_path}`")
