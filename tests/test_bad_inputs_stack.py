"""Bad inputs to the writers and the stacker, as a table (scikit-learn's `test_stacking_classifier_error`).

Every case builds one bad input outside the workspace (or breaks one artifact inside it), runs the real
CLI, and must give exit code 1, exactly one line `Error: …` matching the case's anchored pattern, no
traceback, and leave the workspace exactly as it was (no new, changed or removed file).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import write_predictions
from ensemble.cli import app

runner = CliRunner()


class Ctx(NamedTuple):
    ws: Path
    comp: Path
    out: Path  # outside the workspace: where bad input files go
    test_ids: list[str]
    train_ids: list[str]


class Case(NamedTuple):
    name: str
    make: Callable[[Ctx], list]  # builds the bad input, returns the CLI arguments
    message: str                 # regex for the whole line after "Error: "


def ens(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Competition, inputs and a workspace with runs r0, r1 (OOF + test), t0 (test only) and submission `s`."""
    root = tmp_path_factory.mktemp("bad")
    comp, out, ws = root / "comp", root / "inputs", root / "ws"
    comp.mkdir(), out.mkdir()
    rng = np.random.default_rng(0)
    train_ids = [f"TRAIN_{i:03d}" for i in range(40)]
    test_ids = [f"TEST_{i:03d}" for i in rng.permutation(12)]
    pd.DataFrame({"id": train_ids, "path": [f"./train/{i}.ogg" for i in train_ids],
                  "label": np.where(np.arange(40) % 2 == 0, "fake", "real")}).to_csv(comp / "train.csv", index=False)
    pd.DataFrame({"id": test_ids, "path": [f"./test/{i}.ogg" for i in test_ids]}).to_csv(comp / "test.csv", index=False)
    pd.DataFrame({"id": test_ids, "fake": 0.5, "real": 0.5}).to_csv(comp / "sample_submission.csv", index=False)
    for k in range(2):
        write_predictions(out / f"oof{k}.csv", train_ids, rng.random((40, 2)))
        write_predictions(out / f"test{k}.csv", test_ids, rng.random((12, 2)))
        assert ens("import", f"r{k}", "--test", out / f"test{k}.csv", "--oof", out / f"oof{k}.csv",
                   "--data", comp, "-w", ws).exit_code == 0
    assert ens("import", "t0", "--test", out / "test0.csv", "-w", ws).exit_code == 0
    assert ens("stack", "r0", "r1", "--calibrate", "none", "--name", "s", "-w", ws).exit_code == 0
    return root


@pytest.fixture
def ctx(template, tmp_path, workspace) -> Ctx:
    """A fresh copy of the template: the workspace (the autouse one) and a folder for bad inputs."""
    shutil.copytree(template / "ws", workspace, dirs_exist_ok=True)
    shutil.copytree(template / "inputs", tmp_path / "inputs")
    comp = template / "comp"
    test_ids = pd.read_csv(comp / "sample_submission.csv")["id"].tolist()
    return Ctx(workspace, comp, tmp_path / "inputs", test_ids, pd.read_csv(comp / "train.csv")["id"].tolist())


def good_test(c: Ctx) -> pd.DataFrame:
    return pd.read_csv(c.out / "test0.csv")


def csv(c: Ctx, name: str, frame: pd.DataFrame) -> Path:
    frame.to_csv(c.out / name, index=False)
    return c.out / name


def with_cell(frame: pd.DataFrame, row: int, col: str, value) -> pd.DataFrame:
    frame = frame.copy()
    frame[col] = frame[col].astype(object)
    frame.loc[row, col] = value
    return frame


def import_test(name: str, frame_of: Callable[[Ctx], pd.DataFrame]) -> Callable[[Ctx], list]:
    return lambda c: ["import", "bad", "--test", csv(c, name, frame_of(c))]


def import_oof(name: str, frame_of: Callable[[Ctx], pd.DataFrame]) -> Callable[[Ctx], list]:
    return lambda c: ["import", "bad", "--test", c.out / "test0.csv", "--oof", csv(c, name, frame_of(c))]


def answers(c: Ctx, frame: pd.DataFrame) -> Path:
    return csv(c, "answers.csv", frame)


def good_answers(c: Ctx) -> pd.DataFrame:
    return pd.DataFrame({"id": c.test_ids, "fake": [0, 1] * 6, "real": [1, 1, 0] * 4})


def break_file(run: str, filename: str, content: bytes) -> Callable[[Ctx], list]:
    def make(c: Ctx) -> list:
        (c.ws / "models" / run / filename).write_bytes(content)
        return ["stack", "r0", "r1", "--name", "x"]
    return make


def edit_parquet(run: str, filename: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Ctx], list]:
    def make(c: Ctx) -> list:
        path = c.ws / "models" / run / filename
        edit(pd.read_parquet(path)).to_parquet(path, index=False)
        return ["stack", "r0", "r1", "--name", "x"]
    return make


def edit_manifest(run: str, edit: Callable[[dict], None]) -> Callable[[Ctx], list]:
    def make(c: Ctx) -> list:
        path = c.ws / "models" / run / "run.json"
        manifest = json.loads(path.read_text())
        edit(manifest)
        path.write_text(json.dumps(manifest))
        return ["stack", "r0", "r1", "--name", "x"]
    return make


ID0 = "'TEST_[0-9]{3}'"
SUBS = r"/\S+/submissions"
CASES = [
    # ens import: bad prediction CSVs
    Case("import: missing id column", import_test("noid.csv", lambda c: good_test(c).drop(columns="id")),
         r"\S+/noid\.csv: missing column 'id' \(has: fake, real\)"),
    Case("import: duplicate id", import_test("dup.csv", lambda c: with_cell(good_test(c), 1, "id", c.test_ids[0])),
         rf"\S+dup\.csv: duplicate id {ID0}"),
    Case("import: NaN", import_test("nan.csv", lambda c: with_cell(good_test(c), 3, "real", np.nan)),
         rf"\S+nan\.csv: id {ID0} column 'real' is nan; expected a probability in \[0, 1\]"),
    Case("import: probability 1.5", import_test("big.csv", lambda c: with_cell(good_test(c), 2, "fake", 1.5)),
         rf"\S+big\.csv: id {ID0} column 'fake' is 1\.5; expected a probability in \[0, 1\]"),
    Case("import: negative probability", import_test("neg.csv", lambda c: with_cell(good_test(c), 0, "real", -0.1)),
         rf"\S+neg\.csv: id {ID0} column 'real' is -0\.1; expected a probability in \[0, 1\]"),
    Case("import: text in a label column", import_test("text.csv", lambda c: with_cell(good_test(c), 0, "fake", "high")),
         rf"\S+text\.csv: id {ID0} column 'fake' is 'high'; expected a probability in \[0, 1\]"),
    Case("import: unknown column", import_test("extra.csv", lambda c: good_test(c).assign(speaker="x")),
         r"\S+extra\.csv: unknown column 'speaker'; expected id, fake, real"),
    Case("import: id not in the sample", import_test("other.csv", lambda c: with_cell(good_test(c), 0, "id", "TEST_999")),
         r"\S+other\.csv: id 'TEST_999' is not in \S+sample_submission\.csv.*"),
    Case("import: an id missing", import_test("short.csv", lambda c: good_test(c).iloc[1:]),
         rf"\S+/short\.csv: id {ID0} from \S+/sample_submission\.csv is missing \(1 missing ids\)"),
    Case("import: empty file", lambda c: ["import", "bad", "--test", (c.out / "empty.csv", (c.out / "empty.csv").write_text(""))[0]],
         r"\S+empty\.csv: not a readable CSV \(No columns to parse from file\)"),
    Case("import: OOF id not a train id",
         import_oof("oofx.csv", lambda c: with_cell(pd.read_csv(c.out / "oof0.csv"), 0, "id", "TRAIN_999")),
         r"\S+/oofx\.csv: id 'TRAIN_999' is not in \S+/comp/train\.csv \(1 unknown ids\)"),
    Case("import: OOF missing a train id", import_oof("oofshort.csv", lambda c: pd.read_csv(c.out / "oof0.csv").iloc[1:]),
         r"\S+/oofshort\.csv: id 'TRAIN_000' from \S+/comp/train\.csv is missing \(1 missing ids\)"),
    Case("import: run name with /", lambda c: ["import", "a/b", "--test", c.out / "test0.csv"],
         r"run name 'a/b' is not valid: use letters, digits, '-', '_', '\.', '\+'"),
    Case("import: existing run", lambda c: ["import", "r0", "--test", c.out / "test0.csv"],
         r"run /\S+/models/r0 exists; pass --force to overwrite it"),
    # ens stack: bad arguments
    Case("stack: unknown method", lambda c: ["stack", "r0", "r1", "--method", "trimmed"],
         r"unknown stacking method 'trimmed'; choose one of: auto, mean, logit, rank, weighted, single, hillclimb, flip, logreg, lgbm, median"),
    Case("stack: unknown run", lambda c: ["stack", "r0", "nope"],
         r"run 'nope' not found in /\S+/models \(runs: r0, r1, t0\)"),
    Case("stack: a run named twice", lambda c: ["stack", "r0", "r0"], r"run 'r0' is named twice"),
    Case("stack: --test-prior 1.5", lambda c: ["stack", "r0", "r1", "--test-prior", "1.5"],
         r"--test-prior must be em, none or a number in \(0, 1\), or lb \(the leaderboard probes' mix\); got '1\.5'"),
    Case("stack: --test-prior word", lambda c: ["stack", "r0", "r1", "--test-prior", "high"],
         r"--test-prior must be em, none or a number in \(0, 1\), or lb \(the leaderboard probes' mix\); got 'high'"),
    Case("stack: --test-prior without OOF", lambda c: ["stack", "t0", "--test-prior", "0.3"],
         r"--test-prior 0\.3 needs OOF predictions for every run; runs without: 't0' \(import them with --oof, or leave the option out\)"),
    Case("stack: --param without =", lambda c: ["stack", "r0", "r1", "--param", "n_bags"],
         r"--param takes key=value, got 'n_bags'"),
    Case("stack: unknown --param", lambda c: ["stack", "r0", "r1", "--method", "hillclimb", "--param", "bags=3"],
         r"method 'hillclimb' has no parameter 'bags'; valid: n_iter, n_bags, bag_fraction, space, max_rows, seed, metric"),
    Case("stack: --fit-on testlike without test-like OOF", lambda c: ["stack", "r0", "r1", "--fit-on", "testlike"],
         r"--fit-on testlike needs test-like OOF \(oof_testlike\.parquet, made by `ens finetune`\) for every run; runs without: 'r0', 'r1' \(use --fit-on auto or clean\)"),
    Case("stack: unknown --fit-on", lambda c: ["stack", "r0", "r1", "--fit-on", "train"], r"--fit-on must be one of auto, clean, testlike, both; got 'train'"),
    Case("stack: --calibrate without OOF", lambda c: ["stack", "t0", "--calibrate", "platt"],
         r"--calibrate platt needs OOF predictions for every run; runs without: 't0' \(import them with --oof, or leave the option out\)"),
    Case("stack: unknown --calibrate", lambda c: ["stack", "r0", "r1", "--calibrate", "sigmoid"],
         r"unknown calibrator 'sigmoid'; choose one of: none, temperature, .*"),
    Case("stack: submission name with /", lambda c: ["stack", "r0", "r1", "--name", "a/b"],
         r"submission name 'a/b' is not valid: use letters, digits, '-', '_', '\.', '\+'"),
    Case("stack: hidden submission name", lambda c: ["stack", "r0", "r1", "--name", ".s"],
         r"submission name '\.s' is not valid: use letters, digits, '-', '_', '\.', '\+'"),
    Case("stack: existing submission", lambda c: ["stack", "r0", "r1", "--name", "s"],
         rf"submission 's' already exists in {SUBS}; pass --force to replace it"),
    Case("stack: existing submission, refused before the runs are read", lambda c: ["stack", "r0", "gone", "--name", "s"],
         rf"submission 's' already exists in {SUBS}; pass --force to replace it"),
    Case("stack: runs on different folds", edit_manifest("r1", lambda m: m.update(folds_fingerprint="other")),
         r"run 'r1' was made on different folds than the workspace's folds \(models/folds.parquet\) \(fingerprint other… vs [0-9a-f]{12}…\); it cannot be blended with them"),
    # ens stack: broken artifacts
    Case("stack: corrupted oof.parquet", break_file("r1", "oof.parquet", b"PAR1 not really"),
         r"/\S+/models/r1/oof\.parquet: not a readable Parquet file \(.*Parquet magic bytes not found.*\)"),
    Case("stack: corrupted run.json", break_file("r1", "run.json", b'{"labels": ["fake", '),
         r"/\S+/models/r1/run\.json: not valid JSON \(Expecting value at line 1\)"),
    Case("stack: run.json without labels", edit_manifest("r1", lambda m: m.pop("labels")),
         r"/\S+/models/r1/run\.json: missing key 'labels'"),
    Case("stack: run.json labels not a list", edit_manifest("r1", lambda m: m.update(labels="fake")),
         r"/\S+/models/r1/run\.json: 'labels' must be a list of label column names; got 'fake'"),
    Case("stack: run.json with an unknown key", edit_manifest("r1", lambda m: m.update(lables=["fake"])),
         r"/\S+/models/r1/run\.json: unknown key 'lables'; a RunManifest holds name, kind, .*"),
    Case("stack: run.json of a later schema", edit_manifest("r1", lambda m: m.update(schema=2)),
         r"/\S+/models/r1/run\.json: schema 2; this ens reads schema 1 \(upgrade ens, or remake it\)"),
    Case("stack: oof.parquet probability 2", edit_parquet("r0", "oof.parquet", lambda f: with_cell(f, 5, "fake", 2.0)),
         r"/\S+/models/r0/oof\.parquet: id 'TRAIN_[0-9]{3}' column 'fake' is 2\.0; expected a probability in \[0, 1\]"),
    Case("stack: oof.parquet without fold", edit_parquet("r0", "oof.parquet", lambda f: f.drop(columns="fold")),
         r"/\S+/models/r0/oof\.parquet: missing column 'fold'"),
    # ens lb
    Case("lb: NaN", lambda c: ["lb", "s", "--public", "nan"], r"--public must be a finite number, got nan"),
    Case("lb: infinite", lambda c: ["lb", "s", "--private", "inf"], r"--private must be a finite number, got inf"),
    Case("lb: unknown submission", lambda c: ["lb", "nope", "--public", "0.3"],
         rf"submission 'nope' not found in {SUBS} \(submissions: s\)"),
    Case("lb: no score", lambda c: ["lb", "s"], r"give --public and/or --private"),
    # ens score
    Case("score: answers missing a column",
         lambda c: ["score", c.ws / "submissions" / "s.csv", "--answers", answers(c, good_answers(c).drop(columns="real"))],
         r"/\S+/submissions/s\.csv: column 'real' has no answers in \S+/answers\.csv \(its label columns: fake\)"),
    Case("score: answers missing an id",
         lambda c: ["score", c.ws / "submissions" / "s.csv", "--answers", answers(c, good_answers(c).iloc[1:])],
         rf"/\S+/submissions/s\.csv: id {ID0} is not in \S+/answers\.csv \(1 unknown ids\)"),
    Case("score: answers not 0/1",
         lambda c: ["score", c.ws / "submissions" / "s.csv", "--answers", answers(c, with_cell(good_answers(c), 0, "fake", 0.5))],
         rf"\S+/answers\.csv: id {ID0} column 'fake' is 0\.5; expected 0 or 1"),
]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[re.sub(r"\W+", "-", c.name).strip("-") for c in CASES])
def test_bad_input_gives_one_error_line_and_leaves_the_workspace_alone(case: Case, ctx: Ctx):
    args = case.make(ctx)
    before = snapshot(ctx.ws)
    result = ens(*args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert re.fullmatch(case.message, lines[0].removeprefix("Error: ")), lines[0]
    assert snapshot(ctx.ws) == before
