"""Hostile input, as a user who types the wrong thing (or a stranger who hands over a crafted file) would:
every case is one `Error: …` line naming the option or file at fault, exit code 1, no traceback, and —
where the case says so — nothing created in the workspace (validation comes before any file, folds file,
test-like set, run folder or study).

The cases follow issue 30's list: option and config values (`ens tune`, `ens finetune`, `ens export`,
`ens lb`), files that do not decode (ens.toml, a `--config` file, a sidecar, a study database, a
checkpoint's safetensors, a pickled model), and competition folders that would be misread (a duplicated
column, a label no train row sets, a symlink out of `unlabeled_data/`, a path that is not UTF-8).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import write_predictions
from ensemble.cli import app

runner = CliRunner()
LABELS = ["fake", "real"]


def ens(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error(result, pattern: str) -> str:
    """Exit 1, no traceback, one `Error: …` line (the last; progress may come before it) whose message
    matches `pattern` whole."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    assert re.fullmatch(pattern, errors[0][len("Error: "):]), errors[0]
    return errors[0]


def files_in(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture(scope="module")
def audio_comp(tmp_path_factory) -> Path:
    """A tiny competition with real audio (40 train clips, 7 test, 2 unlabeled)."""
    from ensemble.demo import DemoSpec, generate_competition

    return generate_competition(tmp_path_factory.mktemp("hostile") / "data",
                                DemoSpec(n_train=40, n_test=7, n_unlabeled=2, seed=3))


@pytest.fixture(scope="module")
def stacked(tmp_path_factory) -> Path:
    """A workspace with two imported runs and a stacked submission `s` (CSV competition, no audio)."""
    root = tmp_path_factory.mktemp("stacked")
    comp, ws = root / "comp", root / "ws"
    comp.mkdir()
    rng = np.random.default_rng(0)
    train_ids = [f"TRAIN_{i:03d}" for i in range(40)]
    test_ids = [f"TEST_{i:03d}" for i in range(12)]
    pd.DataFrame({"id": train_ids, "path": [f"./train/{i}.ogg" for i in train_ids],
                  "label": np.where(np.arange(40) % 2 == 0, "fake", "real")}).to_csv(comp / "train.csv", index=False)
    pd.DataFrame({"id": test_ids, "path": [f"./test/{i}.ogg" for i in test_ids]}).to_csv(comp / "test.csv", index=False)
    pd.DataFrame({"id": test_ids, "fake": 0.5, "real": 0.5}).to_csv(comp / "sample_submission.csv", index=False)
    for k in range(2):
        oof = write_predictions(root / f"oof{k}.csv", train_ids, rng.random((40, 2)))
        test = write_predictions(root / f"test{k}.csv", test_ids, rng.random((12, 2)))
        assert ens("import", f"r{k}", "--test", test, "--oof", oof, "--data", comp, "-w", ws).exit_code == 0
    assert ens("stack", "r0", "r1", "--calibrate", "none", "--name", "s", "-w", ws).exit_code == 0
    return ws


@pytest.fixture
def stacked_ws(stacked, workspace) -> Path:
    import shutil

    shutil.copytree(stacked, workspace, dirs_exist_ok=True)
    return workspace


# --- options: refused before anything is created ------------------------------------------------------

OPTION_CASES = [
    (["tune", "logmel-cnn", "--epochs", "0"], r"--epochs 0: accepted: a whole number ≥ 1"),
    (["tune", "logmel-cnn", "--max-seconds", "-1"], r"--max-seconds -1\.0: accepted: seconds in \(0, 3600\]"),
    (["tune", "logmel-cnn", "--lr", "nan"], r"--lr nan: accepted: a finite learning rate > 0"),
    (["tune", "logmel-cnn", "--batch-size", "0"], r"--batch-size 0: accepted: a whole number ≥ 1"),
    (["finetune", "logmel-cnn", "--max-seconds", "nan"], r"--max-seconds nan: accepted: seconds in \(0, 3600\]"),
    (["finetune", "logmel-cnn", "--batch-size", "0"], r"--batch-size 0: accepted: a whole number ≥ 1"),
    (["finetune", "logmel-cnn", "--grad-accum", "0"], r"--grad-accum 0: accepted: a whole number ≥ 1"),
    (["finetune", "logmel-cnn", "--class-weight", "heavy"], r"--class-weight 'heavy': accepted: none, balanced"),
    (["export", "s", "--quantize", "int4"], r"--quantize int4: accepted: none, int8"),
    (["lb", "s", "--public", "-5"], r"--public -5: accepted: a finite score in \[0, 100\] .*"),
    (["lb", "s", "--public", "1e300"], r"--public 1e\+300: accepted: a finite score in \[0, 100\] .*"),
    (["serve", "nowhere.onnx", "--workers", "0"], r"--workers must be ≥ 1; got 0"),
]


@pytest.mark.parametrize("args, message", OPTION_CASES, ids=[" ".join(a) for a, _ in OPTION_CASES])
def test_a_bad_option_is_one_line_and_creates_nothing(args, message, csv_competition, workspace):
    data = ["--data", csv_competition] if args[0] in ("tune", "finetune") else []
    one_error(ens(*args, *data), message)
    assert files_in(workspace) == []


@pytest.mark.parametrize("text, message", [
    ('epochs = "five"\n', r"--epochs 'five' is str; accepted: a whole number"),
    ("lr = true\n", r"--lr True is bool; accepted: a number"),
    ("batch_size = 8.5\n", r"--batch-size 8\.5 is float; accepted: a whole number"),
    ("seed = -1\n", r"--seed -1: accepted: a whole number in \[0, 2\*\*32\)"),
    ("trials = 0\n", r"--trials 0: accepted: a whole number ≥ 1 .*"),
    ("only_folds = [0.5]\n", r"--fold \[0\.5\]: accepted: a list of whole numbers"),
])
def test_a_config_value_of_the_wrong_type_is_one_line(text, message, tmp_path, csv_competition, workspace):
    config = tmp_path / "run.toml"
    config.write_text(text)
    command = "tune" if "trials" in text else "finetune"
    one_error(ens(command, "logmel-cnn", "--config", config, "--data", csv_competition), message)
    assert files_in(workspace) == []


def test_options_are_validated_by_the_library_too(csv_competition, workspace):
    from ensemble.artifacts.competition import Competition
    from ensemble.artifacts.workspace import Workspace
    from ensemble.commands.finetune import FinetuneOptions, finetune
    from ensemble.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--max-seconds nan"):
        finetune(Workspace(workspace), Competition.load(csv_competition), FinetuneOptions("logmel-cnn", max_seconds=float("nan")))
    assert files_in(workspace) == []


def test_finetune_and_tune_share_one_options_declaration():
    """The shared options are declared once (cli/config.py) and both commands take every one of them."""
    import typer.main

    from ensemble.cli.config import TRAINING_OPTIONS

    group = typer.main.get_command(app)
    for name in ("finetune", "tune"):
        flags = {opt for p in group.commands[name].params for opt in getattr(p, "opts", [])}
        assert {o.flag for o in TRAINING_OPTIONS} <= flags
        source = (Path(__file__).parents[1] / "ensemble" / "cli" / f"{name}.py").read_text()
        assert not any(f'typer.Option("{o.flag}"' in source for o in TRAINING_OPTIONS)


# --- files that do not decode ------------------------------------------------------------------------

def test_random_bytes_in_ens_toml(workspace):
    (workspace / "ens.toml").write_bytes(bytes(range(128, 256)) * 3)
    one_error(ens("board"), r"\S+/ens\.toml: not valid TOML \(byte 0 is not UTF-8 text\); fix or delete it .*")


@pytest.mark.parametrize("command", ["finetune", "tune"])
def test_random_bytes_in_a_config_file(command, tmp_path, csv_competition, workspace):
    config = tmp_path / "bad.toml"
    config.write_bytes(b"\x86" + os.urandom(200))
    one_error(ens(command, "logmel-cnn", "--config", config, "--data", csv_competition),
              r"\S+/bad\.toml: not valid TOML \(byte 0 is not UTF-8 text\)")
    assert files_in(workspace) == []


@pytest.mark.parametrize("command", [["lb", "s", "--public", "0.3"], ["board"], ["export", "s"]])
def test_random_bytes_in_a_sidecar(command, stacked_ws):
    (stacked_ws / "submissions" / "s.json").write_bytes(b"\xff" + os.urandom(300))
    one_error(ens(*command), r"\S+/submissions/s\.json: not valid JSON \(byte 0 is not UTF-8 text\)")


@pytest.mark.parametrize("runs", [None, "r0", [{}]])
@pytest.mark.parametrize("command", [["report"], ["export", "s"]])
def test_a_sidecar_whose_recipe_lists_no_runs(runs, command, stacked_ws):
    path = stacked_ws / "submissions" / "s.json"
    sidecar = json.loads(path.read_text())
    sidecar["recipe"]["runs"] = runs
    path.write_text(json.dumps(sidecar))
    one_error(ens(*command), r"\S+/s\.json \(recipe\): recipe\.runs must be a list of .*")


def test_a_corrupt_study_database(audio_comp, workspace):
    (workspace / "tune").mkdir()
    (workspace / "tune" / "logmel-cnn.db").write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    one_error(ens("tune", "logmel-cnn", "--data", audio_comp, "--trials", "1"),
              r"\S+/tune/logmel-cnn\.db: not a readable study database \(.*\); move it aside, or pass --force .*")
    assert not (workspace / "tune" / "logmel-cnn.toml").exists()


@pytest.mark.slow
def test_a_locked_study_database(audio_comp, workspace):
    """Another program holds the database in an exclusive transaction (sqlite waits 5 s, then says so)."""
    (workspace / "tune").mkdir()
    db = sqlite3.connect(workspace / "tune" / "logmel-cnn.db", isolation_level=None, check_same_thread=False)
    db.execute("CREATE TABLE other(a)")
    db.execute("BEGIN EXCLUSIVE")
    db.execute("INSERT INTO other VALUES (1)")
    try:
        one_error(ens("tune", "logmel-cnn", "--data", audio_comp, "--trials", "1"),
                  r"\S+/logmel-cnn\.db: the study database is locked by another program .*")
    finally:
        db.execute("ROLLBACK")
        db.close()


def _evil_pickle() -> bytes:
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/ens-hostile-pickle-ran",))

    return pickle.dumps(Payload(), protocol=2)


def test_a_hostile_pickle_in_a_local_model_folder(tmp_path, csv_competition, workspace):
    """A `pytorch_model.bin` (torch's zip format) whose pickle names os.system: refused in one line before
    anything is created, and the payload never runs."""
    import torch

    folder = tmp_path / "evil-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    plain = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, plain)
    crafted = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(plain.getvalue())) as zin, zipfile.ZipFile(crafted, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, _evil_pickle() if item.filename.endswith("data.pkl") else zin.read(item.filename))
    (folder / "pytorch_model.bin").write_bytes(crafted.getvalue())
    one_error(ens("finetune", folder, "--data", csv_competition),
              r"\S+/pytorch_model\.bin: refused to load these weights: it names the Python object posix\.system, "
              r"which could run code when loaded; use a model\.safetensors file")
    assert files_in(workspace) == []
    assert not Path("/tmp/ens-hostile-pickle-ran").exists()


@pytest.mark.slow
def test_garbage_safetensors_on_resume(audio_comp, workspace):
    """A fold stopped after its first epoch, its checkpoint's model.safetensors overwritten: the resume
    is one line naming the file and how to restart the fold."""
    from ensemble.artifacts.competition import Competition
    from ensemble.artifacts.workspace import Workspace
    from ensemble.commands.finetune import FinetuneOptions, finetune

    class Stop(Exception):
        pass

    def stop(event: dict) -> None:
        if event.get("stage") == "epoch" and event["epoch"] == 0:
            raise Stop

    opts = dict(folds=2, epochs=2, batch_size=8, max_seconds=1.0, testlike_per_fold=4)
    with pytest.raises(Stop):
        finetune(Workspace(workspace), Competition.load(audio_comp), FinetuneOptions("logmel-cnn", **opts), progress=stop)
    weights = workspace / "models" / "logmel-cnn" / "fold0" / "checkpoint" / "last" / "model.safetensors"
    assert weights.is_file()
    weights.write_bytes(b"\x10" * 64)
    one_error(ens("finetune", "logmel-cnn", "--data", audio_comp, "--folds", 2, "--epochs", 2, "--batch-size", 8,
                  "--max-seconds", 1, "--testlike-per-fold", 4),
              r"\S+/last/model\.safetensors: not a readable safetensors file \(.*\); delete \S+/checkpoint to restart this fold")


@pytest.mark.parametrize("make, kind", [
    (lambda: json.loads("{"), "not valid JSON"),
    (lambda: __import__("tomllib").loads("= 1"), "not valid TOML"),
    (lambda: b"\xff".decode(), "a file is not UTF-8 text"),
    (lambda: sqlite3.connect(":memory:").execute("SELEC 1"), "an SQLite database cannot be read"),
    (lambda: __import__("safetensors.torch").torch.load(b"\x10" * 16), "not a readable safetensors file"),
    (lambda: pickle.loads(b"garbage"), "refused to unpickle a file"),
])
def test_decode_errors_reaching_the_cli_are_one_line(make, kind):
    """The CLI's one mapping: an error of a known decoding class that no library code named a file for."""
    from ensemble.cli.shared import one_line

    with pytest.raises(Exception) as raised:
        make()
    assert one_line(raised.value).startswith(kind)
    assert one_line(ZeroDivisionError("a bug")) is None  # a bug keeps its traceback


# --- competition folders that would be misread -------------------------------------------------------

def test_a_duplicated_label_column_is_blamed_on_the_sample_submission(csv_competition, workspace):
    path = csv_competition / "sample_submission.csv"
    sample = pd.read_csv(path)
    sample[["id", "fake", "real", "fake"]].to_csv(path, index=False)  # pandas writes the header fake twice
    one_error(ens("finetune", "logmel-cnn", "--data", csv_competition),
              r"\S+/sample_submission\.csv: column 'fake' appears twice in the header; every column name must be unique")
    assert files_in(workspace) == []


def test_a_label_column_no_train_row_sets_is_refused_before_any_fold(audio_comp, tmp_path, workspace):
    import shutil

    comp = tmp_path / "comp"
    shutil.copytree(audio_comp, comp)
    sample = pd.read_csv(comp / "sample_submission.csv")
    sample["fake"], sample["real"], sample["robot"] = 0.4, 0.4, 0.2
    sample.to_csv(comp / "sample_submission.csv", index=False)
    one_error(ens("finetune", "logmel-cnn", "--data", comp, "--folds", 2),
              r"\S+/sample_submission\.csv: label column 'robot' is never set in \S+/train\.csv \(no row names it "
              r"in its 'label' column\); train labels seen: fake, real")
    assert files_in(workspace) == []


def test_unlabeled_symlinks_out_of_the_folder_are_refused(audio_comp, tmp_path, workspace):
    import shutil

    comp, outside = tmp_path / "comp", tmp_path / "elsewhere.ogg"
    shutil.copytree(audio_comp, comp)
    shutil.copy(next((comp / "test").iterdir()), outside)  # real audio, outside the folder
    (comp / "unlabeled_data" / "sneaky.ogg").symlink_to(outside)
    one_error(ens("finetune", "logmel-cnn", "--data", comp, "--folds", 2),
              r"\S+/unlabeled_data/sneaky\.ogg: resolves to \S+/elsewhere\.ogg, outside the competition folder \S+; "
              r"files in unlabeled_data/ must stay inside it")
    assert "models" not in files_in(workspace)


def test_a_competition_path_that_is_not_utf8_is_refused_not_written(csv_competition, tmp_path, workspace):
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/comp-\xff"))
    csv_competition.rename(odd)
    one_error(ens("finetune", "logmel-cnn", "--data", odd),
              r"'\S+/comp-\\udcff' holds a byte that is not UTF-8: ens\.toml cannot store it and libsndfile cannot "
              r"open files under it; rename the folder \(or link it under a UTF-8 name\)")
    assert files_in(workspace) == []
    from ensemble.artifacts.workspace import Workspace
    from ensemble.errors import ConfigError

    with pytest.raises(ConfigError, match="not UTF-8"):
        Workspace(workspace).remember(data=str(odd))
    assert not (workspace / "ens.toml").exists()
