"""Every command is documented and explains itself; light commands never import torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ensemble.cli import app

README = (Path(__file__).parents[1] / "README.md").read_text()
COMMANDS = sorted(c.name for c in app.registered_commands)


def test_commands_are_registered():
    assert {"import", "stack", "score", "lb", "board", "finetune", "oof", "demo", "report"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_and_a_readme_line(name):
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert len(result.output.strip()) > 100
    assert f"`ens {name}" in README, f"README has no line for `ens {name}`"


def test_help_stack_and_board_do_not_import_torch():
    code = ("import sys, ensemble.cli, ensemble.blend, ensemble.board, ensemble.stack, ensemble.importer;"
            "heavy = [m for m in ('torch', 'transformers', 'onnxruntime') if m in sys.modules];"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_method_lists_the_registered_ones(csv_competition, tmp_path):
    import numpy as np

    from conftest import write_predictions
    import pandas as pd

    ids = pd.read_csv(csv_competition / "sample_submission.csv")["id"].tolist()
    test = write_predictions(tmp_path / "t.csv", ids, np.random.default_rng(0).random((len(ids), 2)))
    runner = CliRunner()
    assert runner.invoke(app, ["import", "a", "--test", str(test), "--data", str(csv_competition)]).exit_code == 0
    result = runner.invoke(app, ["stack", "a", "--method", "nope"])
    assert result.exit_code == 1
    from ensemble.stack import BLENDERS

    assert all(name in result.output for name in BLENDERS), result.output
