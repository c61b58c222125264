"""`ens demo`: the whole pipeline on generated audio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ensemble.cli.shared import ForceOpt, command, console, ens_prog, say


@command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's competition data and workspace.")] = Path("demo"),
    seed: Annotated[int, typer.Option("--seed", help="Seed for the generated audio and the models.")] = 0,
    force: ForceOpt = False,
) -> None:
    """Run the whole pipeline on generated demo audio: fine-tune, ONNX, stack --compare, submit, score."""
    from ensemble.commands.demo import run_demo
    from ensemble.cli.present import compare_table, frame_table
    from ensemble.cli.progress import event_printer

    with event_printer(console()) as show:
        result = run_demo(out, force=force, seed=seed, progress=show)
    out_console = console()
    out_console.print(compare_table(result.compare, out_console.width))
    out_console.print(frame_table(result.scores, title="scores on the demo's answer key"))
    runs = result.scores[result.scores["kind"] == "run"]
    best_run = runs.loc[runs["test"].idxmin()]
    sub = result.scores[result.scores["kind"] == "submission"].iloc[0]
    gain = best_run["test"] - sub["test"]
    verdict = ("the stack BEAT the best single run" if gain > 1e-9 else
               "the stack did NOT beat the best single run" if gain < -1e-9 else
               "the written submission scores the same as the best single run")
    say(f"{verdict} on the answer key: written {sub['name']} ({result.compare.chosen.name}) "
        f"{sub['test']:.4f} vs best single run {best_run['name']} {best_run['test']:.4f} "
        f"(lower is better, gain {gain:+.4f})")
    typer.echo(f"workspace: {result.workspace}")
    ens = ens_prog()  # runnable as printed, with the venv activated or not
    say(f"next: `{ens} board -w {result.workspace}` ranks runs and submissions; `{ens} report -w {result.workspace}` "
        "puts them, their recipes and figures on one page")
