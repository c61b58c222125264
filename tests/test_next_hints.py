"""Every `next:` hint a command prints runs as printed: the name a hint gives is the file that was written."""

from __future__ import annotations

import re
import shlex

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from conftest import write_predictions
from ensemble.cli import app
from test_stack_cli import two_runs  # noqa: F401  (fixture: imported runs r0, r1 with OOF)


def ens(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "80"})


def hinted(output: str) -> list[list[str]]:
    """The `ens …` commands in an output's `next:` lines, placeholders filled with real values."""
    text = " ".join(output.split())
    commands = []
    for hint in re.findall(r"next: (.*?)(?=next:|$)", text):
        for cmd in re.findall(r"`(?:\S*/)?ens ([^`]+)`", hint):
            cmd = cmd.replace("SCORE", "0.25").replace("OTHER_RUN", "r0")
            commands.append(shlex.split(cmd))
    return commands


def test_every_printed_next_command_runs(two_runs, workspace, tmp_path, csv_competition):  # noqa: F811
    ids = pd.read_csv(csv_competition / "sample_submission.csv")["id"].tolist()
    test = write_predictions(tmp_path / "t.csv", ids, np.full((len(ids), 2), 0.5))
    todo = [["import", "c", "--test", str(test)], ["stack", "r0", "r1", "--compare"],
            ["stack", "r0", "r1", "--method", "mean", "--name", "asked"]]
    seen: set[tuple[str, ...]] = set()
    ran = []
    while todo:
        args = todo.pop(0)
        result = ens(*args)
        assert result.exit_code == 0, (args, result.output)
        ran.append(args)
        for cmd in hinted(result.output):
            if tuple(cmd) not in seen:
                seen.add(tuple(cmd))
                todo.append(cmd)
    flat = [" ".join(a) for a in ran]
    # the chain went through compare → write → lb on the name printed, and the asked-for name
    assert "stack r0 r1 --compare --write" in flat
    assert "lb auto-r0+r1 --public 0.25" in flat and "lb asked --public 0.25" in flat
    assert (workspace / "submissions" / "auto-r0+r1.csv").exists()
    assert (workspace / "submissions" / "asked.csv").exists()
    assert sorted(p.name for p in (workspace / "submissions").glob("*.csv")) == ["asked.csv", "auto-r0+r1.csv", "mean-c+r0.csv"]
