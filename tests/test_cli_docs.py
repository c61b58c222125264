"""Every command is documented and explains itself; light commands never import torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ensemble.cli import app

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
COMMANDS = sorted(c.name for c in app.registered_commands)


def test_commands_are_registered():
    assert {"import", "stack", "score", "lb", "board", "finetune", "oof", "demo", "report"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_and_a_readme_line(name):
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert len(result.output.strip()) > 100
    assert f"`ens {name}" in README, f"README has no line for `ens {name}`"


def test_the_readme_stands_alone_in_a_clone():
    """Every link and every `--data`/`--answers` path the README names lies inside the repository."""
    import re

    assert "../" not in README
    links = re.findall(r"\]\(([^)#]+)\)", README)
    paths = re.findall(r"--(?:data|answers) ([\w./-]+)", README)
    top = {entry.name for entry in ROOT.iterdir()}  # a path under one of these is the repository's; others
    local = [x for x in links if "://" not in x] + [x for x in paths if x.split("/")[0] in top]  # are the user's
    assert "examples/voices-src-sample" in paths
    missing = [x for x in local if not (ROOT / x).exists()]
    assert not missing, f"README names paths a clone does not have: {missing}"


def test_help_stack_and_board_do_not_import_torch():
    code = ("import sys, ensemble.cli, ensemble.commands.stack, ensemble.commands.board, ensemble.stack, ensemble.commands.import_;"
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


def test_finetune_config_file_errors_are_one_line(csv_competition, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('epochs = 2\nlearning_rate = 0.1\n')
    result = CliRunner().invoke(app, ["finetune", "tiny-wav2vec2", "--config", str(config), "--data", str(csv_competition)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "learning_rate" in result.output and "lr" in result.output
    config.write_text("epochs = [")
    result = CliRunner().invoke(app, ["finetune", "tiny-wav2vec2", "--config", str(config), "--data", str(csv_competition)])
    assert result.exit_code == 1 and "not valid TOML" in result.output


def test_finetune_config_values_yield_to_the_command_line(tmp_path, monkeypatch):
    """The real `finetune --config` wiring: file values fill what the command line left out, and a value
    typed on the command line wins even when it equals the default."""
    import ensemble.commands.finetune
    from ensemble.demo import DemoSpec, generate_competition

    competition = generate_competition(tmp_path / "comp",
                                       DemoSpec(n_train=12, n_test=3, n_unlabeled=0, seed=1))  # audio is checked

    seen = []
    monkeypatch.setattr(ensemble.commands.finetune, "finetune", lambda ws, comp, opts, **kw: seen.append(opts))  # stop before training
    config = tmp_path / "run.toml"
    config.write_text('epochs = 9\nlr = 0.01\nbatch-size = 4\nonly_folds = [1]\naugment = "none"\n')
    result = CliRunner().invoke(app, ["finetune", "tiny-wav2vec2", "--config", str(config), "--epochs", "3",
                                      "--batch-size", "16", "--data", str(competition)])
    assert result.exit_code == 0, result.output
    (opts,) = seen
    assert (opts.epochs, opts.lr, opts.batch_size, opts.only_folds, opts.augment) == (3, 0.01, 16, [1], "none")
    assert (opts.model, opts.max_seconds, opts.seed) == ("tiny-wav2vec2", 5.0, 0)  # untouched defaults
