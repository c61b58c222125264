"""What a newcomer meets: every `next:` hint runs as printed, the quick start leaves `ens` runnable, the
distribution installs under a name of its own."""

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


def test_the_quick_start_puts_ens_on_the_path_before_it_uses_it():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = quick.split("```bash", 1)[1].split("```", 1)[0].splitlines()
    lines = [line.split("#")[0].strip() for line in block if line.strip()]
    first_ens = next(i for i, line in enumerate(lines) if line.startswith("ens "))
    assert ". .venv/bin/activate" in lines[:first_ens], lines  # `make` installs ens into .venv only


def test_hints_name_the_ens_that_ran_when_the_path_finds_another(tmp_path, monkeypatch):
    from ensemble.cli.shared import ens_prog

    script = tmp_path / ".venv" / "bin" / "ens"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", [".venv/bin/ens", "demo"])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert ens_prog() == ".venv/bin/ens"  # not activated: the hint is runnable as printed
    monkeypatch.setenv("PATH", str(script.parent))
    assert ens_prog() == "ens"  # activated
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "ens").write_text("#!/bin/sh\n")
    (other / "ens").chmod(0o755)
    monkeypatch.setenv("PATH", str(other))
    assert ens_prog() == ".venv/bin/ens"  # another `ens` (PyPI's is the Ethereum Name Service) first on PATH


def test_the_distribution_has_a_name_of_its_own_and_the_readme_installs_it():
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["name"] not in ("ens", "ensemble")  # PyPI's: the Ethereum Name Service, another package
    assert project["scripts"]["ens"] == "ensemble.cli:main"
    readme = (root / "README.md").read_text()
    installs = re.findall(r"pip install ([^\n#]+)", readme)
    assert installs and not [i for i in installs if re.search(r"(^|\s)['\"]?(ens|ensemble)(\[|['\"]?\s|['\"]?$)", i)]


def test_stack_in_an_empty_workspace_says_how_to_make_runs_and_writes_nothing(workspace, csv_competition):
    result = ens("stack", "a", "b", "--data", csv_competition)
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert said.startswith("Error: run 'a' not found") and "`ens finetune MODEL --data DIR`" in said
    assert "`ens import NAME --test FILE.csv --data DIR`" in said
    assert not list(workspace.iterdir())  # no ens.toml remembering a folder for a command that failed


def test_fold_parity_is_printed_with_the_bar_it_must_meet():
    from ensemble.artifacts.records import OnnxFile
    from ensemble.backbones.classical import ESTIMATORS
    from ensemble.commands.finetune import PARITY_BAR, parity_words

    lgbm = ESTIMATORS.get("lgbm").parity_bar
    assert parity_words(OnnxFile("m.onnx", parity_max_abs_diff=0.0055, parity_bar=lgbm)) == \
        "max |p_onnx − p_native| 5.5e-03 ≤ bar 2e-02"
    assert parity_words(OnnxFile("m.onnx", parity_max_abs_diff=3e-4)).endswith(f"ABOVE bar {PARITY_BAR:.0e}")  # neural bar
    assert ESTIMATORS.get("logreg").parity_bar == PARITY_BAR  # float rounding only: the neural bar


def test_what_the_readme_examples_write_at_the_repository_root_is_ignored_by_git():
    """The multiclass example runs from the root: its workspace folders must not show in `git status`."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).parents[1]
    if not (root / ".git").exists():
        import pytest

        pytest.skip("not a git checkout")
    paths = ["ens.toml", "models/run/run.json", "submissions/a.csv", "cache/x", "report/index.html",
             "exports/a.onnx", "tune/study.db", "demo/workspace"]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=root, capture_output=True, text=True).stdout.split()
    assert sorted(ignored) == sorted(paths)


def test_a_one_run_submission_is_not_titled_stacked():
    from conftest import hand_sidecar
    from ensemble.artifacts.records import CalibrationNote, RunEntry
    from ensemble.commands.report import _made_of

    sidecar = hand_sidecar("au", "single")
    sidecar.recipe.runs = [RunEntry("cnn"), RunEntry("lgbm")]
    sidecar.recipe.blender = {"run": 1}
    sidecar.recipe.calibrators = [CalibrationNote.from_dict({"calibrator": "none", "label": "fake", "params": {}}, "test")]
    assert _made_of(sidecar) == "run lgbm alone"
    sidecar.recipe.calibrators = [CalibrationNote.from_dict({"calibrator": "platt", "label": "fake", "params": {}}, "test")]
    assert _made_of(sidecar) == "run lgbm with a calibrator or test prior"
    assert _made_of(hand_sidecar("m", "logit")) == "stacked: logit"
