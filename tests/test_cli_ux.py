"""What a new user sees at 80 columns: tables that explain their columns, the written submission's recipe in
words, partial runs, a model typo that fails fast offline, and one-line errors for the small mistakes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import hand_sidecar
from ensemble.cli import app
from test_stack_cli import two_runs  # noqa: F401  (fixture: imported runs r0, r1 with OOF)

README = Path(__file__).parents[1] / "README.md"


@pytest.fixture(autouse=True)
def eighty_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERMINAL_WIDTH", "80")


def ens(*args, **env):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "80", **env})


def flat(text: str) -> str:
    """Output with its wrapping undone, to find sentences that span lines."""
    return " ".join(text.split())


def assert_fits(output: str) -> None:
    wide = [line for line in output.splitlines() if len(line) > 80 and not line.startswith("wrote /")]  # paths whole
    assert not wide, wide


def partial_run(workspace: Path, name: str, model: str, done: list[int], folds: int) -> None:
    """A fine-tune stopped part way, as `ens finetune … --fold` leaves it: options.json and finished folds."""
    folder = workspace / "models" / name
    folder.mkdir(parents=True)
    (folder / "options.json").write_text(json.dumps({"model": model, "folds": folds, "epochs": 2, "lr": None,
                                                     "augment": "none", "freeze": "none",
                                                     "extra": {}}))
    for k in done:
        (folder / f"fold{k}").mkdir()
        (folder / f"fold{k}" / "fold.json").write_text("{}")
    (folder / "fold2").mkdir(exist_ok=True)  # a fold still running: no fold.json yet


def test_written_submission_shows_its_recipe_in_words(two_runs, workspace):  # noqa: F811
    result = ens("stack", "r0", "r1", "--method", "hillclimb", "--name", "hc")
    assert result.exit_code == 0, result.output
    assert_fits(result.output)
    said = flat(result.output)
    recipe = json.loads((workspace / "submissions" / "hc.json").read_text())["recipe"]
    for label, row in zip(recipe["labels"], recipe["blender"]["weights"]):
        assert f"weights, {label}: r0 {row[0]:.2f}, r1 {row[1]:.2f}" in said
    for cal in recipe["calibrators"]:
        assert f"calibrator, {cal['label']}: {cal['calibrator']} ({cal['rule']})" in said
    assert "test prior: not adapted (--test-prior none)" in said
    assert "method hillclimb as asked (--method)" in said
    assert "next: submit hc.csv on the contest site, then `ens lb hc --public SCORE`" in said


def test_a_blend_with_all_weight_on_one_run_says_so():
    from ensemble.artifacts.records import RunEntry
    from ensemble.stack.explain import blender_lines

    recipe = hand_sidecar("hc", "hillclimb").recipe
    recipe.runs = [RunEntry("a"), RunEntry("b"), RunEntry("c")]
    recipe.blender = {"weights": [[1.0, 0.0, 0.0], [0.97, 0.03, 0.0]]}
    lines = blender_lines(recipe)
    assert lines[:2] == ["weights, fake: a 1.00, b 0.00, c 0.00", "weights, real: a 0.97, b 0.03, c 0.00"]
    assert lines[2].startswith("note: (nearly) all weight on a:") and "calibration" in lines[2]
    recipe.blender["weights"][1] = [0.6, 0.4, 0.0]
    assert not any(line.startswith("note:") for line in blender_lines(recipe))


def test_compare_explains_its_columns_and_says_what_to_run_next(two_runs, workspace):  # noqa: F811
    result = ens("stack", "r0", "r1", "--compare")
    assert result.exit_code == 0, result.output
    assert_fits(result.output)
    said = flat(result.output)
    header = next(line for line in result.output.splitlines() if line.lstrip().startswith("method"))
    for column in header.split():
        assert f"{column}:" in said or f"{column} =" in said or column in ("method", "auc", "brier", "ece", "gap"), column
    assert "gain: best single run's nested score − this one's (positive = better" in said
    assert "decision: best single run" in said and "--compare --write` writes" in said
    assert not (workspace / "submissions").exists()


def test_board_legend_names_the_ranking_column_and_lists_partial_runs(two_runs, workspace):  # noqa: F811
    partial_run(workspace, "tty", "tiny-hubert", [0], 3)
    result = ens("board")
    assert result.exit_code == 0, result.output
    assert_fits(result.output)
    said = flat(result.output)
    assert "# ranks by clean CV" in said  # imported runs without test-like predictions
    header = next(line for line in result.output.splitlines() if " name " in line).split()
    assert "cv" in header and "t-like" not in header  # no run has test-like predictions: no such column
    row = next(line for line in result.output.splitlines() if " tty " in line)
    assert "part" in row and "–" in row  # listed, unranked
    assert ("partial run tty: fold 0 of 3 finished; finish: ens finetune tiny-hubert --name tty --fold 1,2 "
            "--epochs 2 --augment none --freeze none") in said  # the options it must repeat
    rows = json.loads(ens("board", "--format", "json").output)["rows"]
    assert [(r["name"], r["kind"], r["rank"]) for r in rows if r["kind"] == "partial"] == [("tty", "partial", None)]
    # the run is named as partial, not as missing, where a command needs it
    stacked = ens("stack", "r0", "tty")
    assert stacked.exit_code == 1
    assert stacked.output.startswith("Error: run 'tty' is not finished (fold 0 of 3 finished); finish it: "
                                     "ens finetune tiny-hubert --name tty --fold 1,2 --epochs 2")


def test_board_ranking_column_when_some_rows_lack_test_like_scores(csv_competition, workspace):
    from ensemble.artifacts.competition import Competition
    from ensemble.artifacts.submission import submission_frame, write_submission
    from ensemble.artifacts.workspace import Workspace

    ws, comp = Workspace.resolve(), Competition.load(csv_competition)
    for name, testlike in (("with-tl", 0.2), ("clean-only", None)):
        metrics = {"cv": {"score": 0.3, "auc": 0.9, "brier": 0.1, "ece": 0.05}}
        if testlike is not None:
            metrics["cv_testlike"] = {"score": testlike, "auc": 0.8, "brier": 0.2, "ece": 0.1}
        write_submission(ws, submission_frame(np.full((12, 2), 0.5), comp), comp, hand_sidecar(name, "mean", metrics))
    out = ens("board").output
    assert_fits(out)
    said = flat(out)
    # one basis: the row without it is listed apart, under a rule, unranked (its clean CV is not comparable)
    assert "# ranks by test-like CV (the score the decision rule trusts)" in said
    assert "below the line, not ranked (no test-like CV): clean-only" in said
    lines = out.splitlines()
    ranked, apart = (next(i for i, line in enumerate(lines) if name in line) for name in ("with-tl", "clean-only"))
    assert lines[ranked].split()[0] == "1" and lines[apart].split()[0] == "–"
    assert any(set(line.strip()) == {"─"} for line in lines[ranked + 1:apart])
    rows = json.loads(ens("board", "--format", "json").output)["rows"]
    assert [(r["name"], r["rank"]) for r in rows] == [("with-tl", 1), ("clean-only", None)]


def test_long_names_break_between_parts_not_mid_word(csv_competition, workspace):
    from ensemble.artifacts.competition import Competition
    from ensemble.artifacts.submission import submission_frame, write_submission
    from ensemble.artifacts.workspace import Workspace

    ws, comp = Workspace.resolve(), Competition.load(csv_competition)
    name = "hillclimb-good+inv+noisy-extra+long"
    write_submission(ws, submission_frame(np.full((12, 2), 0.5), comp), comp, hand_sidecar(name, "hillclimb", {"cv": {"score": 0.3, "auc": 0.9, "brier": 0.1, "ece": 0.05},
                                  "cv_testlike": {"score": 0.2, "auc": 0.8, "brier": 0.2, "ece": 0.1}}))
    out = ens("board").output
    assert_fits(out)
    cells = [line.split()[1] if line.split()[0] == "1" else line.split()[0]
             for line in out.splitlines() if any(p in line for p in ("hillclimb", "good", "noisy", "long"))]
    assert "".join(cells) == name  # whole again when joined
    assert all(re.fullmatch(r"[a-z]+[-+]?|([a-z]+[-+])+[a-z]*", c) for c in cells), cells  # breaks after + or -


def test_lb_says_what_it_recorded_without_python_none(two_runs, workspace):  # noqa: F811
    assert ens("stack", "r0", "r1", "--name", "m").exit_code == 0
    result = ens("lb", "m", "--public", 0.031)
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == "recorded m: public 0.031"
    assert "None" not in result.output and "next: `ens board`" in result.output


def test_import_says_what_to_run_next(tmp_path, csv_competition):
    from conftest import write_predictions
    import pandas as pd

    ids = pd.read_csv(csv_competition / "sample_submission.csv")["id"].tolist()
    test = write_predictions(tmp_path / "t.csv", ids, np.full((len(ids), 2), 0.5))
    result = ens("import", "a", "--test", test, "--data", csv_competition)
    assert result.exit_code == 0, result.output
    # without OOF a comparison cannot run: the hint offers what can
    assert "next: `ens board` lists it; `ens stack a OTHER_RUN --method mean`" in flat(result.output)


@pytest.mark.parametrize("args, error", [
    (["stack", "r0", "r1", "--write"], "Error: --write only goes with --compare"),
    (["board", "--format", "xlsx"], "Error: --format must be one of table, json, csv, md; got 'xlsx'"),
    (["stack", "r0", "r1", "--test-prior", "1.5"], "Error: --test-prior must be em, none or a number in (0, 1)"),
])
def test_small_mistakes_are_one_line_naming_the_option(two_runs, workspace, args, error):  # noqa: F811
    result = ens(*args)
    assert result.exit_code == 1
    assert result.output.startswith(error) and len(result.output.strip().splitlines()) == 1, result.output
    assert "Value error" not in result.output and "test_prior" not in result.output
    assert not (workspace / "submissions").exists()


def test_compare_write_refuses_a_taken_name_before_comparing(two_runs, workspace, monkeypatch):  # noqa: F811
    import ensemble.commands.stack as stack

    assert ens("stack", "r0", "r1", "--name", "taken").exit_code == 0
    # the steps `run_stack` takes after the name check: neither may start for a taken name
    monkeypatch.setattr(stack, "_compare", lambda *a, **k: pytest.fail("compared before the name check"))
    monkeypatch.setattr(stack, "_stack", lambda *a, **k: pytest.fail("stacked before the name check"))
    for args in (["--compare", "--write"], ["--method", "mean"]):
        result = ens("stack", "r0", "r1", *args, "--name", "taken")
        assert result.exit_code == 1 and result.output.startswith("Error: submission 'taken' already exists")


def test_run_stack_refuses_a_taken_name_before_reading_the_runs(two_runs, workspace):  # noqa: F811
    """The command layer checks the name itself (the demo and the report call it, not the CLI): a taken
    name is refused before any run is read, so a missing run is not what it says."""
    from ensemble.artifacts.competition import open_competition
    from ensemble.artifacts.workspace import Workspace
    from ensemble.commands.stack import run_stack
    from ensemble.errors import ExistsError
    from ensemble.stack.request import StackRequest

    assert ens("stack", "r0", "r1", "--name", "taken").exit_code == 0
    ws = Workspace.resolve(workspace)
    with pytest.raises(ExistsError, match="submission 'taken' already exists"):
        run_stack(ws, open_competition(ws), StackRequest(runs=("r0", "gone"), method="mean", name="taken"))


def test_help_lists_commands_in_pipeline_order_and_cuts_nothing():
    top = ens("--help").output
    assert_fits(top)
    listed = re.findall(r"^  (\w+)  ", top, flags=re.M)
    order = ["finetune", "oof", "import", "testlike", "stack", "score", "lb", "board", "report", "demo"]
    assert [c for c in listed if c in order] == order
    commands = top.split("Commands, in pipeline order:")[1]
    assert "..." not in commands and "…" not in commands
    finetune = ens("finetune", "--help").output
    assert_fits(finetune)
    assert "--freeze <str>" in finetune and "--model-config KEY=VALUE" in finetune
    assert "<bool>" not in finetune and not re.search(r"--[\w-]+…", finetune)
    stack = flat(ens("stack", "--help").output)
    assert "hillclimb (greedy forward selection of runs" in stack
    assert "flip (first re-orients runs whose label columns look swapped or inverted" in stack


def test_a_model_typo_fails_in_seconds_when_offline(monkeypatch, tmp_path):
    """No named config, no folder, not cached, hub off: one line with the near names, no hub chatter."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    result = ens("finetune", "tiny-hubrt", HF_HUB_OFFLINE="1")
    assert result.exit_code == 1
    assert result.output.startswith("Error: model 'tiny-hubrt' is not a named config, a local folder or a cached "
                                    "hub model, and HF_HUB_OFFLINE is set (did you mean tiny-hubert")
    assert len(result.output.strip().splitlines()) == 1 and "https://" not in result.output
    missing = ens("finetune", str(tmp_path / "no-such-folder"))
    assert missing.exit_code == 1 and "no such model folder" in missing.output


def test_an_unreachable_hub_fails_at_once(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")  # a name that never resolves
    result = ens("finetune", "features-lgmb")
    assert result.exit_code == 1
    assert result.output.startswith("Error: model 'features-lgmb' is not a named config or a local folder, and the "
                                    "hub is unreachable (hub.invalid: ")


def test_readme_links_resolve():
    text = README.read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert local, "the README links its design document"
    assert [link for link in local if not (README.parent / link).exists()] == []


def test_the_finish_hint_repeats_every_option_the_resume_check_compares(tmp_path, monkeypatch):
    """Run as printed, the hint gives the options a resumed run must match (folds and test-like size come
    from the workspace inside `finetune`)."""
    import shlex
    from dataclasses import replace

    import ensemble.commands.finetune as ft
    from ensemble.artifacts.runs import PartialRun
    from ensemble.demo import DemoSpec, generate_competition

    competition = generate_competition(tmp_path / "comp", DemoSpec(n_train=12, n_test=3, n_unlabeled=0, seed=1))
    started = ft.FinetuneOptions(model="tiny-hubert", name="tty", folds=3, epochs=2, lr=0.01, batch_size=8,
                                 grad_accum=2, max_seconds=3.0, augment="none", seed=4, testlike_per_fold=50,
                                 freeze="first:1", model_config={"layerdrop": 0.05, "conv_dim": [32, 32, 32]},
                                 schedule="tri-stage", warmup=0.2, hold=0.4, weight_decay=0.0, max_grad_norm=0.0,
                                 pooling="stats")
    hint = PartialRun("tty", "tiny-hubert", [0], 3, started.identity()).finish_hint()
    seen = []
    monkeypatch.setattr(ft, "finetune", lambda ws, comp, opts, **kw: seen.append(opts))  # stop before training
    result = ens(*shlex.split(hint)[1:], "--data", competition)
    assert result.exit_code == 0, result.output
    (opts,) = seen
    assert opts.only_folds == [1, 2]
    assert replace(opts, folds=3, testlike_per_fold=50).identity() == started.identity()
