"""`ens tune`: an Optuna search over the fine-tuning knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.cli.config import option_values, training_commands
from ensemble.cli.shared import DataOpt, MetricOpt, WorkspaceOpt, console, say, workspace_and_competition


@training_commands.command("tune")
def tune_cmd(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Hub id, local folder, or a named config, as for finetune.")],
    data: DataOpt = None,
    trials: Annotated[int, typer.Option("--trials", help="Complete trials the study should hold (a resumed study runs the rest).")] = 10,
    metric: MetricOpt = None,
    study: Annotated[Optional[str], typer.Option("--study", help="Study name: tune/<study>.db in the workspace (default: from MODEL).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write the best options (default tune/<study>.toml).")] = None,
    training: dict = None,  # --fold --epochs --lr --batch-size --grad-accum --max-seconds --augment --config --device --seed
    workspace: WorkspaceOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Start the study over (its stored trials are deleted).")] = False,
) -> None:
    """Search the fine-tuning knobs with Optuna on the workspace's folds; write the best options as a run.toml."""
    from ensemble.cli.progress import event_printer, first_saying
    from ensemble.commands.finetune import FinetuneOptions
    from ensemble.commands.tune import TuneOptions, check_tune, tune
    from ensemble.errors import ConfigError

    values = option_values(ctx, model, training, trials=trials, metric=metric, study=study, out=out)
    out = values.pop("out")
    if out is not None and not isinstance(out, (str, Path)):
        raise ConfigError(f"--out {out!r} is {type(out).__name__}; accepted: a file path")
    settings = TuneOptions(trials=values.pop("trials"), folds=values.pop("only_folds"), metric=values.pop("metric"),
                           study=values.pop("study"), out=Path(out) if out else None)
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
