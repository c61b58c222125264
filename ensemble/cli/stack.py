"""`ens stack`: runs blended into a calibrated submission."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ensemble.cli.config import parse_params
from ensemble.stack.base import BLENDERS
from ensemble.cli.shared import DataOpt, ForceOpt, MetricOpt, TaskOpt, WorkspaceOpt, command, console, fail, ens_prog, say, workspace_and_competition

# every registered method with its own one-phrase summary: a new method is listed by registering it
METHOD_HELP = ("auto (the best single run unless a blend or calibration credibly beats it); "
               + "; ".join(f"{name} ({cls.summary})" for name, cls in BLENDERS.items()) + ".")


@command("stack")
def stack_cmd(
    runs: Annotated[list[str], typer.Argument(metavar="RUN", help="Runs to blend (names in models/).")],
    method: Annotated[str, typer.Option("--method", "-m", help=METHOD_HELP)] = "mean",
    name: Annotated[Optional[str], typer.Option("--name", help="Submission name (default: <method>-<runs>).")] = None,
    calibrate: Annotated[str, typer.Option("--calibrate", help="auto (a calibrator only where it credibly beats none), none, temperature, platt, isotonic or beta.")] = "auto",
    test_prior: Annotated[str, typer.Option("--test-prior", help="Adapt to the test set's class mix: none, em, lb (the mix `ens lb probe` read off the public leaderboard), or an assumed prior such as 0.4.")] = "none",
    fit_on: Annotated[str, typer.Option("--fit-on", help="auto (test-like when every run has it), testlike, clean or both.")] = "auto",
    param: Annotated[list[str], typer.Option("--param", help="Method parameter key=value (repeatable), e.g. n_bags=20.")] = [],
    compare: Annotated[bool, typer.Option("--compare", help="Score every run (raw and calibrated) and every method side by side; writes nothing unless --write.")] = False,
    write: Annotated[bool, typer.Option("--write", help="With --compare: write what the decision rule chooses (as --method auto).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for bagging, bootstrap and LightGBM.")] = 0,
    meta: Annotated[str, typer.Option("--meta", help="Per-clip meta-features (feature sets made by `ens features`) for logreg and lgbm: auto (with --compare or --method auto, every feature set joins as extra candidates such as logreg+meta, written only when one credibly beats the best single run; none otherwise), none, or NAME[,NAME].")] = "auto",
    metric: MetricOpt = None,
    task: TaskOpt = None,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
    force: ForceOpt = False,
) -> None:
    """Blend runs into a calibrated submission scored by nested CV (the blender never scores rows it saw)."""
    from ensemble.cli.present import compare_table, prior_table, stack_summary
    from ensemble.cli.progress import event_printer
    from ensemble.commands.stack import run_stack
    from ensemble.stack.request import StackRequest

    if write and not compare:
        fail("--write only goes with --compare (it writes what the comparison chooses); without --compare "
             "every `ens stack` writes its submission")
    request = StackRequest(runs=tuple(runs), method=method, params=parse_params(param), calibrate=calibrate,
                           test_prior=test_prior, fit_on=fit_on, seed=seed, meta=meta, metric=metric, name=name,
                           compare=compare, write=write or not compare, force=force)
    request.check()  # before any data is read
    from ensemble.artifacts.runs import load_runs
    from ensemble.artifacts.submission import check_free
    from ensemble.artifacts.workspace import Workspace

    if request.write:
        check_free(Workspace.resolve(workspace), request.out_name, force)  # a taken name is the first thing to hear
    # runs that are not there fail before ens.toml remembers the folder
    ws, comp = workspace_and_competition(workspace, data, task=task, metric=metric,
                                         then=lambda ws, comp: load_runs(ws, list(runs)))
    with event_printer(console()) as show:
        done = run_stack(ws, comp, request, progress=show)
    out = console()
    if compare:
        out.print(compare_table(done.comparison, out.width))
        if done.written is None:
            say(f"next: `{ens_prog()} stack {' '.join(runs)} --compare --write` writes {done.comparison.chosen.name} "
                f"as {done.name}")
            return
    say(comp.task_note())
    for note in done.written.cleaned:
        typer.echo(f"warning: {note}", err=True)  # whole: it names files to find
    typer.echo(stack_summary(done.written.csv, done.result, done.sidecar.recipe, out.width))
    if test_prior != "none" and (table := prior_table(done.result)) is not None:
        out.print(table)
    say(f"next: submit {done.written.csv.name} on the contest site, then `{ens_prog()} lb {done.name} --public SCORE`; "
        f"`{ens_prog()} report` shows it with figures")
