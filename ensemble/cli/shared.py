"""What every `ens` command shares: the app, its common options, output helpers and error handling.

Library errors (`EnsError`) become one line on stderr, `Error: …`, and exit code 1; set ENS_DEBUG=1 for
the traceback.
"""

from __future__ import annotations

import functools
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from typer.core import TyperGroup

from ensemble.errors import EnsError

PIPELINE = ["finetune", "tune", "oof", "import", "features", "testlike", "stack", "score", "lb", "board", "report", "export", "predict", "serve",
            "demo"]


class PipelineGroup(TyperGroup):
    """Commands listed in pipeline order, each with its whole first sentence (click cuts them at 45 characters)."""

    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: PIPELINE.index(n) if n in PIPELINE else len(PIPELINE))

    def format_commands(self, ctx, formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, " ".join((cmd.short_help or cmd.help or "").split("\n\n")[0].split())))
        with formatter.section("Commands, in pipeline order"):
            formatter.write_dl(rows)


app = typer.Typer(
    help="ens: fine-tune audio models k-fold, export ONNX, stack their predictions into an honest, calibrated submission.",
    epilog="A day with ens: finetune (or import) runs → stack --compare → submit the CSV on the contest site → "
           "lb NAME --public X → board → report.",
    cls=PipelineGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: option names never cut, no <bool> on flags, wraps at the terminal
)

WorkspaceOpt = Annotated[Optional[Path], typer.Option("--workspace", "-w", envvar="ENS_WORKSPACE",
                                                      help="Workspace folder (holds models/ and submissions/). Default: current directory.")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Competition folder; remembered in the workspace's ens.toml.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]
MetricOpt = Annotated[Optional[str], typer.Option("--metric", help="Metric every choice uses: dacon-fakevoice (alias competition; the default for fake/real), auc, macro-auc, logloss (the default for multiclass), brier, accuracy or macro-f1; remembered in ens.toml.")]
TaskOpt = Annotated[Optional[str], typer.Option("--task", help="multilabel or multiclass (default: from the competition folder; remembered in ens.toml).")]


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    md = "md"


def output_format(value: str) -> Format:
    """`--format` checked here, so a bad value is one `Error:` line naming the option and the choices."""
    try:
        return Format(value)
    except ValueError:
        fail(f"--format must be one of {', '.join(f.value for f in Format)}; got {value!r}")


def fail(message: str) -> None:
    """Print one error line and exit 1."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


# Errors a user's input can cause, by the module and name of a class in the error's MRO (so this table
# imports none of those libraries), with the words that say what kind of input broke. Library code turns
# what it can into an `EnsError` naming the file; this is the one net for what reaches the CLI unnamed.
DECODE_ERRORS = {
    ("json.decoder", "JSONDecodeError"): "not valid JSON",
    ("tomllib", "TOMLDecodeError"): "not valid TOML",
    ("builtins", "UnicodeDecodeError"): "a file is not UTF-8 text",
    ("sqlite3", "Error"): "an SQLite database cannot be read",
    ("sqlalchemy.exc", "DatabaseError"): "an SQLite database cannot be read",
    ("safetensors._safetensors_rust", "SafetensorError"): "not a readable safetensors file",
    ("_pickle", "UnpicklingError"): "refused to unpickle a file (only tensors and plain values load; "
                                    "a pickle naming other Python objects could run code)",
    ("pyarrow.lib", "ArrowInvalid"): "not a readable Parquet/Arrow file",
}


def one_line(exc: BaseException) -> str | None:
    """The one line for an error the user can fix (an `EnsError`, an OS error, a file that does not
    decode), or None for anything else: a bug, which keeps its traceback."""
    if isinstance(exc, (EnsError, OSError)):
        return str(exc)
    for cls in type(exc).__mro__:
        kind = DECODE_ERRORS.get((cls.__module__, cls.__qualname__))
        if kind is not None:
            detail = " ".join(str(exc).split())[:200]
            return f"{kind} ({detail})" if detail else kind
    return None


def handles_errors(func: Callable) -> Callable:
    """Turn library and decode errors into one `Error: …` line and exit code 1 (traceback with ENS_DEBUG=1)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            message = one_line(exc)
            if message is None or os.environ.get("ENS_DEBUG"):
                raise
            fail(message)

    return wrapper


def command(*args, **kwargs) -> Callable:
    """`app.command` with the one-line error handling every command shares."""
    def decorate(func: Callable) -> Callable:
        return app.command(*args, **kwargs)(handles_errors(func))

    return decorate


def workspace_and_competition(workspace: Path | None, data: Path | None, audio: tuple[str, ...] = (),
                              task: str | None = None, metric: str | None = None, then=None):
    """The workspace and its validated competition folder (with the audio of `audio` splits checked); a
    `--metric` given is remembered in the workspace's ens.toml. `then(ws, comp)`: the command's own checks,
    before anything is remembered."""
    from ensemble.artifacts.competition import open_competition
    from ensemble.artifacts.workspace import Workspace

    ws = Workspace.resolve(workspace)
    comp = open_competition(ws, data, audio, task, None if then is None else (lambda comp: then(ws, comp)))
    if metric is not None:
        ws.remember_metric(comp.task, metric)
    return ws, comp


def console():
    from rich.console import Console

    return Console(width=max(80, min(140, Console().width)))


def ens_prog() -> str:
    """How to type `ens` in a hint: `ens` where that finds this program, else the path it was started by
    (`.venv/bin/ens` after `make demo` without activating the venv; another `ens` first on PATH)."""
    import shutil
    import sys

    started = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if started is None or started.name != "ens" or not started.exists():
        return "ens"  # not started as the `ens` script (tests, `python -m`)
    found = shutil.which("ens")
    if found is not None and Path(found).resolve() == started.resolve():
        return "ens"
    return str(started)


def say(text: str) -> None:
    """One message on stdout, wrapped at the console's width with continuation lines indented."""
    from ensemble.cli.present import hang

    typer.echo(hang(text, console().width))
