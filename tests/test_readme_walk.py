"""The README's code blocks, walked: every `ens` line parses with options that exist, and the blocks that
need no GPU, hub or cluster run verbatim, in order, on a workspace made for them."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from conftest import write_predictions
from ensemble.cli import app

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def bash_blocks(text: str) -> list[list[str]]:
    """Each ```bash block's command lines: comments dropped, `\\` continuations joined, a trailing `&` cut."""
    blocks = []
    for body in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        body = re.sub(r"\\\n\s*", " ", body)
        lines = []
        for line in body.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(line.rstrip("&").strip())
        blocks.append(lines)
    return blocks


def ens_lines(text: str) -> list[str]:
    return [line for block in bash_blocks(text) for line in block if line.startswith("ens ")]


def test_every_ens_line_in_the_readme_parses_with_options_that_exist():
    lines = ens_lines(README)
    assert len(lines) > 30
    bad = {line: problem for line in lines if (problem := parse_problem(line))}
    assert not bad, bad


def parse_problem(line: str) -> str | None:
    """Why `line` does not parse as an `ens` command (unknown command, option or value); None if it does."""
    group = get_command(app)
    args = shlex.split(line)[1:]
    ctx = group.make_context("ens", list(args), resilient_parsing=True)
    cmd = group.get_command(ctx, args[0])
    if cmd is None:
        return f"no command {args[0]!r}"
    try:
        cmd.make_context(args[0], args[1:], parent=ctx)
    except Exception as exc:  # typer's own click raises its UsageError family here
        return getattr(exc, "format_message", lambda: str(exc))()
    return None


def test_the_parse_check_catches_what_it_is_for():
    assert parse_problem("ens stack a b --unlabeled x") == "No such option: --unlabeled"
    assert parse_problem("ens lb x --public-share 0.5") is None
    assert parse_problem("ens lb x --public abc").startswith("Invalid value for '--public'")


def _block(first: str) -> list[str]:
    return next(b for b in bash_blocks(README) if b and b[0].startswith(first))


def test_the_blending_and_round_trip_blocks_run_verbatim(tmp_path, workspace, csv_competition, monkeypatch):
    """`ens import` of CSVs made elsewhere, the comparison, the written names the later lines use."""
    comp = workspace / "competition"  # `--data ./competition`, as the README has it
    csv_competition.rename(comp)
    ids = pd.read_csv(comp / "sample_submission.csv")["id"].tolist()
    train = pd.read_csv(comp / "train.csv")
    y = (train["label"] == "fake").to_numpy()
    rng = np.random.default_rng(0)
    for k, name in enumerate(("hubert", "w2v2")):
        score = y + rng.normal(0, 0.8 + 0.4 * k, len(y))
        oof = np.stack([1 / (1 + np.exp(-score)), 1 / (1 + np.exp(score))], axis=1)
        write_predictions(workspace / f"{name}_oof.csv", train["id"].tolist(), oof)
        write_predictions(workspace / f"{name}_test.csv", ids, rng.random((len(ids), 2)))
    monkeypatch.chdir(workspace)
    lines = _block("ens import hubert") + _block("ens lb auto-hubert+w2v2")
    for line in lines:
        result = CliRunner().invoke(app, shlex.split(line)[1:], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (line, result.output)
    assert (workspace / "submissions" / "auto-hubert+w2v2.csv").is_file()  # the name the round trip uploads


@pytest.mark.slow
def test_the_multiclass_block_runs_verbatim_from_a_clone_root(tmp_path, monkeypatch):
    """Trains two small runs on the sample that ships here; the submission name the `ens score` line uses."""
    import shutil

    shutil.copytree(ROOT / "examples" / "voices-src-sample", tmp_path / "examples" / "voices-src-sample")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ENS_WORKSPACE")
    for line in _block("ens finetune features-lgbm --data examples/voices-src-sample"):
        result = CliRunner().invoke(app, shlex.split(line)[1:], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (line, result.output)
    assert (tmp_path / "report" / "index.html").is_file()
