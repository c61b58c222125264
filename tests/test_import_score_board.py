"""Import, score, leaderboard and board through the CLI: wiring, messages, exit codes, no half output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import LABELS, hand_sidecar, write_predictions
from ensemble.cli import app

runner = CliRunner()


def ens(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def sample_ids(comp: Path) -> list[str]:
    return pd.read_csv(comp / "sample_submission.csv")["id"].tolist()


def train_ids(comp: Path) -> list[str]:
    return pd.read_csv(comp / "train.csv")["id"].tolist()


def good_test_csv(tmp_path: Path, comp: Path, seed: int = 1) -> Path:
    ids = sample_ids(comp)
    return write_predictions(tmp_path / f"test{seed}.csv", ids, np.random.default_rng(seed).random((len(ids), 2)))


def test_import_writes_a_valid_run_and_remembers_the_data(tmp_path, csv_competition, workspace):
    oof = write_predictions(tmp_path / "oof.csv", train_ids(csv_competition), np.random.default_rng(0).random((40, 2)))
    result = ens("import", "hubert", "--test", good_test_csv(tmp_path, csv_competition), "--oof", oof, "--data", csv_competition)
    assert result.exit_code == 0, result.output
    run = workspace / "models" / "hubert"
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["labels"] == LABELS and manifest["kind"] == "import"
    assert set(manifest["metrics"]["cv"]) == {"score", "auc", "brier", "ece"}
    test = pd.read_parquet(run / "test.parquet")
    assert sorted(test["id"]) == sorted(sample_ids(csv_competition)) and list(test.columns) == ["id", "fold", *LABELS]
    assert (workspace / "models" / "folds.parquet").is_file()
    # the workspace remembers --data: a second import needs no --data
    second = ens("import", "w2v", "--test", good_test_csv(tmp_path, csv_competition, 2))
    assert second.exit_code == 0, second.output
    assert "no OOF" in second.output


def test_import_refuses_to_overwrite_without_force(tmp_path, csv_competition):
    test = good_test_csv(tmp_path, csv_competition)
    assert ens("import", "a", "--test", test, "--data", csv_competition).exit_code == 0
    again = ens("import", "a", "--test", test)
    assert again.exit_code == 1 and "--force" in again.output
    assert ens("import", "a", "--test", test, "--force").exit_code == 0


def test_import_oof_with_fold_column_must_match_shared_folds(tmp_path, csv_competition):
    ids = train_ids(csv_competition)
    values = np.random.default_rng(0).random((40, 2))
    first = write_predictions(tmp_path / "o1.csv", ids, values, fold=np.arange(40) % 4)
    assert ens("import", "a", "--test", good_test_csv(tmp_path, csv_competition), "--oof", first, "--data", csv_competition).exit_code == 0
    other = write_predictions(tmp_path / "o2.csv", ids, values, fold=(np.arange(40) + 1) % 4)
    result = ens("import", "b", "--test", good_test_csv(tmp_path, csv_competition), "--oof", other)
    assert result.exit_code == 1
    assert "TRAIN_000" in result.output and "fold" in result.output


def _bad_inputs(tmp_path: Path, comp: Path) -> list[tuple[str, Path, str]]:
    ids = sample_ids(comp)
    good = pd.read_csv(good_test_csv(tmp_path, comp))

    def variant(name: str, frame: pd.DataFrame) -> Path:
        frame.to_csv(tmp_path / name, index=False)
        return tmp_path / name

    nan = good.copy(); nan.loc[3, "real"] = np.nan
    big = good.copy(); big.loc[2, "fake"] = 1.2
    dup = good.copy(); dup.loc[1, "id"] = dup.loc[0, "id"]
    extra = good.copy(); extra.loc[0, "id"] = "TEST_999"
    missing_row = good.iloc[1:]
    return [
        ("missing file", tmp_path / "nope.csv", "nope.csv: file not found"),
        ("missing column", variant("nocol.csv", good.drop(columns=["real"])), "missing column 'real'"),
        ("duplicate id", variant("dup.csv", dup), f"duplicate id {ids[0]!r}"),
        ("NaN", variant("nan.csv", nan), f"id {ids[3]!r} column 'real' is nan"),
        ("id set differs", variant("extra.csv", extra), "id 'TEST_999' is not in"),
        ("missing id", variant("missing.csv", missing_row), f"id {ids[0]!r} from"),
        ("probability 1.2", variant("big.csv", big), f"id {ids[2]!r} column 'fake' is 1.2"),
        ("unknown label column", variant("unk.csv", good.rename(columns={"real": "human"})), "missing column 'real'"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_bad_import_inputs_give_one_clear_line_and_no_output(case, tmp_path, csv_competition, workspace):
    what, path, message = _bad_inputs(tmp_path, csv_competition)[case]
    result = ens("import", "bad", "--test", path, "--data", csv_competition)
    assert result.exit_code == 1, what
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert message in lines[0], (what, lines[0])
    left = sorted(str(p.relative_to(workspace)) for p in workspace.rglob("*"))
    assert set(left) <= {"ens.toml"}, left  # at most the remembered --data: no run, no staging folder


@pytest.mark.parametrize("case", range(8))
def test_bad_submissions_are_refused_by_score(case, tmp_path, csv_competition):
    what, path, message = _bad_inputs(tmp_path, csv_competition)[case]
    answers = pd.DataFrame({"id": sample_ids(csv_competition), "fake": [0, 1] * 6, "real": [1, 1, 0] * 4})
    answers.to_csv(tmp_path / "answers.csv", index=False)
    result = ens("score", path, "--answers", tmp_path / "answers.csv")
    assert result.exit_code == 1 and result.output.startswith("Error: "), what
    assert len(result.output.strip().splitlines()) == 1


def test_score_json_matches_the_metric(tmp_path, csv_competition):
    from ensemble.metrics.dacon import competition_score

    ids = sample_ids(csv_competition)
    y = np.array([[0, 1], [1, 1], [1, 0], [0, 0]] * 3)
    answers = pd.DataFrame({"id": ids, "fake": y[:, 0], "real": y[:, 1]})
    answers.to_csv(tmp_path / "answers.csv", index=False)
    sub = pd.read_csv(good_test_csv(tmp_path, csv_competition)).sample(frac=1, random_state=0)  # order must not matter
    sub.to_csv(tmp_path / "shuffled.csv", index=False)
    result = ens("score", tmp_path / "shuffled.csv", "--answers", tmp_path / "answers.csv", "--format", "json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    aligned = sub.set_index("id").loc[ids, LABELS].to_numpy()
    assert got["score"] == pytest.approx(competition_score(y, aligned).score, abs=1e-12)
    assert set(got["labels"]) == set(LABELS)


def test_lb_and_board(tmp_path, csv_competition, workspace):
    from ensemble.artifacts.competition import Competition
    from ensemble.artifacts.submission import submission_frame, write_submission
    from ensemble.artifacts.workspace import Workspace

    ws, comp = Workspace.resolve(), Competition.load(csv_competition)
    for k, (cv, public) in enumerate([(0.30, 0.36), (0.25, 0.33), (0.20, 0.31)]):
        frame = submission_frame(np.full((12, 2), 0.1 * (k + 1)), comp)
        write_submission(ws, frame, comp, hand_sidecar(f"s{k}", "mean", {"cv": {"score": cv, "auc": 0.9, "brier": 0.1, "ece": 0.05}}))
        assert ens("lb", f"s{k}", "--public", public).exit_code == 0
    assert ens("lb", "s0", "--private", 0.4).exit_code == 0
    assert json.loads((workspace / "submissions" / "s0.json").read_text())["leaderboard"]["public"] == 0.36
    table = ens("board")
    assert table.exit_code == 0
    assert all(len(line) <= 80 for line in table.output.splitlines()), table.output
    for word in ("#", "name", "kind", "method", "cv", "auc", "brier", "ece", "pub", "priv", "delta", "Pearson"):
        assert word in table.output
    rows = json.loads(ens("board", "--format", "json").output)
    assert [r["name"] for r in rows["rows"]] == ["s2", "s1", "s0"]
    assert rows["rows"][0]["rank"] == 1 and rows["rows"][2]["delta"] == pytest.approx(0.10)
    assert rows["cv_public_correlation"]["pearson"] > 0.9
    md = ens("board", "--format", "md").output
    assert md.startswith("| rank | name |")
    assert ens("lb", "nope", "--public", 1).output.startswith("Error: submission 'nope' not found")


def test_submission_rows_must_be_in_sample_order(csv_competition, workspace):
    """The same ids in another order is not the sample submission: refused, naming the first row that differs."""
    from ensemble.artifacts.competition import Competition
    from ensemble.errors import DataError
    from ensemble.artifacts.submission import submission_frame, write_submission
    from ensemble.artifacts.workspace import Workspace

    comp = Competition.load(csv_competition)
    frame = submission_frame(np.full((12, 2), 0.5), comp)
    ids = frame["id"].tolist()
    swapped = frame.iloc[[1, 0, *range(2, 12)]].reset_index(drop=True)
    sample = csv_competition / "sample_submission.csv"
    with pytest.raises(DataError, match=f"^{workspace / 'submissions' / 's.csv'}: row 2 holds id {ids[1]!r}; "
                                        f"{sample} has {ids[0]!r} there$"):
        write_submission(Workspace.resolve(), swapped, comp, hand_sidecar("s"))
    assert not (workspace / "submissions").exists()


def test_board_ranks_by_the_test_like_score_where_there_is_one(csv_competition, workspace):
    """cv_testlike is the score to trust; a row without one is not ranked beside those that have it."""
    from ensemble.artifacts.competition import Competition
    from ensemble.artifacts.submission import submission_frame, write_submission
    from ensemble.artifacts.workspace import Workspace

    ws, comp = Workspace.resolve(), Competition.load(csv_competition)
    cases = {"a": (0.10, 0.40), "b": (0.30, 0.20), "c": (0.25, None)}  # name: (clean CV, test-like CV)
    for name, (cv, testlike) in cases.items():
        metrics = {"cv": {"score": cv, "auc": 0.9, "brier": 0.1, "ece": 0.05}}
        if testlike is not None:
            metrics["cv_testlike"] = {"score": testlike, "auc": 0.8, "brier": 0.2, "ece": 0.1}
        write_submission(ws, submission_frame(np.full((12, 2), 0.5), comp), comp, hand_sidecar(name, "mean", metrics))
    rows = json.loads(ens("board", "--format", "json").output)["rows"]
    # one basis, test-like: b 0.20, a 0.40; c has only clean CV, so it is listed after them, unranked
    assert [(r["name"], r["rank"]) for r in rows] == [("b", 1), ("a", 2), ("c", None)]
    assert [r["delta"] for r in rows[:2]] == pytest.approx([0.0, 0.20], abs=1e-12) and rows[2]["delta"] is None


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(leaderbord={}), "unknown key 'leaderbord'; a Sidecar holds name, created"),
    (lambda d: d.pop("metrics"), "missing key 'metrics'"),
    (lambda d: d["recipe"].pop("method"), r"\(recipe\): missing key 'method'"),
    (lambda d: d.update(schema=7), "schema 7; this ens reads schema 1"),
])
def test_a_sidecar_off_its_schema_is_one_error_line_naming_it(csv_competition, workspace, edit, message):
    from ensemble.artifacts.competition import Competition
    from ensemble.artifacts.submission import submission_frame, write_submission
    from ensemble.artifacts.workspace import Workspace

    ws, comp = Workspace.resolve(), Competition.load(csv_competition)
    write_submission(ws, submission_frame(np.full((12, 2), 0.5), comp), comp, hand_sidecar("s"))
    path = workspace / "submissions" / "s.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))
    for args in (["board"], ["lb", "s", "--public", "0.3"]):
        result = ens(*args)
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
        assert re.search(f"^Error: {re.escape(str(path))}.*{message}", result.output), result.output
