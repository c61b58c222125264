"""The `ens` command line: parses options, calls one library function, presents the result.

Library errors (`EnsError`) become one line on stderr, `Error: …`, and exit code 1; set ENS_DEBUG=1 for
the traceback. Heavy libraries (torch, transformers, onnxruntime) are imported only by the commands
that need them, so `ens --help`, `ens stack` and `ens board` start fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from ensemble.errors import EnsError

app = typer.Typer(
    help="ens: fine-tune audio models k-fold, export ONNX, stack their predictions into an honest, calibrated submission.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

WorkspaceOpt = Annotated[Optional[Path], typer.Option("--workspace", "-w", envvar="ENS_WORKSPACE",
                                                      help="Workspace folder (holds models/ and submissions/). Default: current directory.")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Competition folder; remembered in the workspace's ens.toml.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    md = "md"


def fail(message: str) -> None:
    """Print one error line and exit 1."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


def handles_errors(func: Callable) -> Callable:
    """Turn library errors into one `Error: …` line and exit code 1 (traceback with ENS_DEBUG=1)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (EnsError, OSError) as exc:
            if os.environ.get("ENS_DEBUG"):
                raise
            fail(str(exc))

    return wrapper


def command(*args, **kwargs) -> Callable:
    """`app.command` with the one-line error handling every command shares."""
    def decorate(func: Callable) -> Callable:
        return app.command(*args, **kwargs)(handles_errors(func))

    return decorate


def _context(workspace: Path | None, data: Path | None):
    from ensemble.competition import Competition
    from ensemble.workspace import Workspace

    ws = Workspace.resolve(workspace)
    return ws, Competition.load(ws.data_dir(data))


def console():
    from rich.console import Console

    return Console(width=max(80, min(140, Console().width)))


@command("import")
def import_cmd(
    name: Annotated[str, typer.Argument(help="Name of the new run.")],
    test: Annotated[Path, typer.Option("--test", help="Test predictions: CSV with id and the label columns.")],
    oof: Annotated[Optional[Path], typer.Option("--oof", help="Out-of-fold predictions for train ids (CSV, optional `fold` column).")] = None,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
    force: ForceOpt = False,
) -> None:
    """Turn prediction CSVs made elsewhere into a run that can be blended (and learned from, with --oof)."""
    from ensemble.importer import import_run

    ws, comp = _context(workspace, data)
    run = import_run(ws, comp, name, test, oof, force=force)
    cv = (run.manifest.get("metrics") or {}).get("cv")
    tail = f" (CV {cv['score']:.5f})" if cv else " (no OOF: can be averaged, not learned from)"
    typer.echo(f"imported run {name} into {run.dir}{tail}")


@command("score")
def score_cmd(
    file: Annotated[Path, typer.Argument(help="Submission CSV to score.")],
    answers: Annotated[Path, typer.Option("--answers", help="Answer key: CSV with id and 0/1 label columns.")],
    format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Score a submission against an answer key with the competition metric (lower is better)."""
    from ensemble.scoring import score_file

    parts, per_label = score_file(file, answers)
    if format == Format.json:
        typer.echo(json.dumps({**parts.as_dict(), "labels": per_label}, indent=2))
        return
    from ensemble.present import score_table

    console().print(score_table(parts, per_label, format.value))


@command("lb")
def lb_cmd(
    submission: Annotated[str, typer.Argument(help="Submission name (or its CSV path).")],
    public: Annotated[Optional[float], typer.Option("--public", help="Public leaderboard score.")] = None,
    private: Annotated[Optional[float], typer.Option("--private", help="Private leaderboard score.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Record leaderboard scores for a submission (stored in its JSON sidecar)."""
    from ensemble.submission import record_leaderboard
    from ensemble.workspace import Workspace

    sidecar = record_leaderboard(Workspace.resolve(workspace), Path(submission).stem, public, private)
    board = sidecar["leaderboard"]
    typer.echo(f"recorded {sidecar['name']}: public {board.get('public')}, private {board.get('private')}")


@command("board")
def board_cmd(
    format: Annotated[Format, typer.Option("--format", help="table (rich), json, csv or md.")] = Format.table,
    workspace: WorkspaceOpt = None,
) -> None:
    """Compare runs and submissions: CV score and its parts, recorded leaderboard scores, rank."""
    from ensemble.board import board_frame, cv_public_correlation
    from ensemble.present import board_output
    from ensemble.workspace import Workspace

    frame = board_frame(Workspace.resolve(workspace))
    output = board_output(frame, cv_public_correlation(frame), format.value)
    if isinstance(output, str):
        typer.echo(output, nl=not output.endswith("\n"))
    else:
        console().print(output)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
