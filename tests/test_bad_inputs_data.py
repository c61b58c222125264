"""Bad inputs on the data side: each case, its exact one-line error, exit code 1, and nothing left behind.

Written in scikit-learn's `test_stacking_classifier_error` style: a table of (id, builder, expected
message). A builder makes the bad competition folder or workspace in `tmp` with real audio (soundfile)
and real Parquet, and returns the CLI arguments. Every case asserts: exit code 1, stderr is one line
`Error: <message>` (the message matched in full), no traceback, no new file under models/ or
submissions/, and no ens.toml when the folder failed validation.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from ensemble.cli import app

runner = CliRunner()
SR = 16000
N_TRAIN, N_TEST = 12, 4
FINETUNE = ["finetune", "logmel-cnn", "--folds", "2", "--epochs", "2", "--batch-size", "8", "--max-seconds", "1",
            "--testlike-per-fold", "4"]


# --- builders of real competition folders and workspaces ---------------------------------------------

def write_clip(path: Path, seed: int, seconds: float = 1.0, sr: int = SR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = np.random.default_rng(seed).normal(0, 0.1, int(seconds * sr)).astype(np.float32)
    sf.write(path, wave, sr)


def make_comp(tmp: Path) -> Path:
    """A valid competition folder: 12 train clips (6 fake, 6 real), 4 test clips, 1 s of real audio each."""
    root = tmp / "comp"
    train_ids = [f"TRAIN_{i:03d}" for i in range(N_TRAIN)]
    test_ids = [f"TEST_{i:03d}" for i in range(N_TEST)]
    for i, rid in enumerate(train_ids):
        write_clip(root / "train" / f"{rid}.wav", i)
    for i, rid in enumerate(test_ids):
        write_clip(root / "test" / f"{rid}.wav", 100 + i)
    labels = np.where(np.arange(N_TRAIN) % 2 == 0, "fake", "real")
    pd.DataFrame({"id": train_ids, "path": [f"train/{i}.wav" for i in train_ids], "label": labels}).to_csv(
        root / "train.csv", index=False)
    pd.DataFrame({"id": test_ids, "path": [f"test/{i}.wav" for i in test_ids]}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": test_ids, "fake": 0.5, "real": 0.5}).to_csv(root / "sample_submission.csv", index=False)
    return root


def edit_csv(path: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    edit(pd.read_csv(path, dtype={"id": str})).to_csv(path, index=False)


def set_path(comp: Path, csv: str, row: int, value) -> None:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df["path"] = df["path"].astype(object)
        df.loc[row, "path"] = value
        return df

    edit_csv(comp / csv, edit)


def ens_ok(*args) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def import_run(tmp: Path, comp: Path, name: str, folds: np.ndarray | None = None, seed: int = 0) -> None:
    """`ens import` a run with OOF (so it records folds) from generated prediction CSVs."""
    rng = np.random.default_rng(seed)
    train = pd.read_csv(comp / "train.csv", dtype={"id": str})
    sample = pd.read_csv(comp / "sample_submission.csv", dtype={"id": str})
    oof = pd.DataFrame({"id": train["id"], "fake": rng.random(len(train)), "real": rng.random(len(train))})
    if folds is not None:
        oof.insert(1, "fold", folds)
    test = pd.DataFrame({"id": sample["id"], "fake": rng.random(len(sample)), "real": rng.random(len(sample))})
    oof.to_csv(tmp / f"{name}_oof.csv", index=False)
    test.to_csv(tmp / f"{name}_test.csv", index=False)
    ens_ok("import", name, "--test", tmp / f"{name}_test.csv", "--oof", tmp / f"{name}_oof.csv", "--data", comp)


def comp_with(edit: Callable[[Path, Path], None], command: tuple[str, ...] = tuple(FINETUNE)) -> Callable:
    """A builder: a valid folder, `edit(comp, tmp)` breaks it, then `command --data comp`."""
    def build(tmp: Path, ws: Path) -> list[str]:
        comp = make_comp(tmp)
        edit(comp, tmp)
        return [*command, "--data", str(comp)]

    return build


def with_run(edit: Callable[[Path, Path, Path], None], *command: str, folds: np.ndarray | None = None) -> Callable:
    """A builder: a valid folder with run 'r' imported, `edit(comp, tmp, ws)` breaks something, then `command`."""
    def build(tmp: Path, ws: Path) -> list[str]:
        comp = make_comp(tmp)
        import_run(tmp, comp, "r", folds)
        edit(comp, tmp, ws)
        return list(command or ("stack", "r", "--calibrate", "none"))

    return build


# --- the edits ----------------------------------------------------------------------------------------

def header_only(csv: str) -> Callable:
    return lambda comp, tmp: edit_csv(comp / csv, lambda df: df.iloc[:0])


def garbage(rel: str, data: bytes | None = None) -> Callable:
    def edit(comp: Path, tmp: Path) -> None:
        (comp / rel).write_bytes(os.urandom(3000) if data is None else data)

    return edit


def truncated_ogg(rel_csv: str, row: int, keep: float) -> Callable:
    """Replace a clip by an Ogg Vorbis file cut to `keep` of its bytes (the CSV points at the .ogg)."""
    def edit(comp: Path, tmp: Path) -> None:
        folder = rel_csv.replace(".csv", "")
        rid = pd.read_csv(comp / rel_csv, dtype={"id": str})["id"].iloc[row]
        good = tmp / "good.ogg"
        sf.write(good, np.random.default_rng(0).normal(0, 0.1, SR).astype(np.float32), SR, format="OGG",
                 subtype="VORBIS")
        data = good.read_bytes()
        (comp / folder / f"{rid}.ogg").write_bytes(data[:int(len(data) * keep)] if keep < 1 else data)
        set_path(comp, rel_csv, row, f"{folder}/{rid}.ogg")

    return edit


def zero_frames(comp: Path, tmp: Path) -> None:
    sf.write(comp / "train" / "TRAIN_004.wav", np.zeros(0, np.float32), SR)


def low_rate(comp: Path, tmp: Path) -> None:
    write_clip(comp / "train" / "TRAIN_005.wav", 5, seconds=1.0, sr=100)


def many_bad(comp: Path, tmp: Path) -> None:
    for i in range(7):
        (comp / "train" / f"TRAIN_{i:03d}.wav").write_bytes(b"")


def symlink_out(comp: Path, tmp: Path) -> None:
    write_clip(tmp / "elsewhere" / "secret.wav", 7)
    (comp / "train" / "TRAIN_001.wav").unlink()
    (comp / "train" / "TRAIN_001.wav").symlink_to(tmp / "elsewhere" / "secret.wav")


def directory_clip(comp: Path, tmp: Path) -> None:
    (comp / "test" / "TEST_002.wav").unlink()
    (comp / "test" / "TEST_002.wav").mkdir()


def corrupt_unlabeled(comp: Path, tmp: Path) -> None:
    write_clip(comp / "unlabeled_data" / "u0.wav", 1)
    (comp / "unlabeled_data" / "u1.ogg").write_bytes(b"OggS" + os.urandom(500))


def extra_test_id(comp: Path, tmp: Path) -> None:
    write_clip(comp / "test" / "TEST_X.wav", 9)
    edit_csv(comp / "test.csv", lambda df: pd.concat([df.iloc[1:], pd.DataFrame({"id": ["TEST_X"], "path": ["test/TEST_X.wav"]})]))


def rewrite_parquet(run_file: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable:
    def change(comp: Path, tmp: Path, ws: Path) -> None:
        path = ws / "models" / "r" / run_file
        edit(pd.read_parquet(path)).to_parquet(path, index=False)
        rerecord(path)  # past the hash check (test_hostile_integrity), to reach the content checks

    return change


def rerecord(path: Path) -> None:
    """Record a hand-edited run file's new SHA-256 in its run.json, as if the run had been written so."""
    from ensemble.artifacts.io import file_sha256

    manifest_path = path.parent / "run.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][path.name] = file_sha256(path)
    manifest_path.write_text(json.dumps(manifest))


def other_train_csv(comp: Path, tmp: Path, ws: Path) -> None:
    set_path(comp, "train.csv", 0, "./train/TRAIN_000.wav")  # same clip, other bytes: the data changed


def other_test_csv(comp: Path, tmp: Path, ws: Path) -> None:
    edit_csv(comp / "test.csv", lambda df: df.iloc[::-1])


def other_folds(comp: Path, tmp: Path, ws: Path) -> None:
    path = ws / "models" / "folds.parquet"
    folds = pd.read_parquet(path)
    folds["fold"] = (folds["fold"] + 1) % 4
    folds.to_parquet(path, index=False)


def run_from_other_workspace(comp: Path, tmp: Path, ws: Path) -> None:
    """Run 'b' made in a workspace whose folds differ, copied into this one beside the good run 'r'."""
    other = tmp / "other_ws"
    other.mkdir()
    cwd = os.getcwd()
    os.chdir(other)
    try:
        ens_ok("import", "b", "--test", tmp / "r_test.csv", "--oof", _oof_with_folds(tmp, (np.arange(N_TRAIN) + 1) % 4),
               "--data", comp, "-w", other)
    finally:
        os.chdir(cwd)
    shutil.copytree(other / "models" / "b", ws / "models" / "b")


def _oof_with_folds(tmp: Path, folds: np.ndarray) -> Path:
    oof = pd.read_csv(tmp / "r_oof.csv", dtype={"id": str}).drop(columns=["fold"], errors="ignore")
    oof.insert(1, "fold", folds)
    oof.to_csv(tmp / "b_oof.csv", index=False)
    return tmp / "b_oof.csv"


def swapped_labels(comp: Path, tmp: Path, ws: Path) -> None:
    path = ws / "models" / "r" / "run.json"
    manifest = json.loads(path.read_text())
    manifest["labels"] = ["real", "fake"]
    path.write_text(json.dumps(manifest))


def finetune_kind_with_corrupt_test(comp: Path, tmp: Path, ws: Path) -> None:
    """`ens oof` checks the audio before loading any ONNX fold: a run.json saying finetune suffices."""
    path = ws / "models" / "r" / "run.json"
    manifest = json.loads(path.read_text())
    manifest.update(kind="finetune", options={"max_seconds": 1.0}, folds=[{"fold": 0, "onnx": {"path": "fold0/model.onnx"}}])
    path.write_text(json.dumps(manifest))
    (comp / "test" / "TEST_003.wav").write_bytes(b"RIFF" + os.urandom(200))


def named(command: list[str]) -> Callable:
    """A builder: a workspace that already knows its folder and has run 'r'; then `command`."""
    def build(tmp: Path, ws: Path) -> list[str]:
        comp = make_comp(tmp)
        import_run(tmp, comp, "r")
        (tmp / "t.csv").write_text((tmp / "r_test.csv").read_text())
        return [a.replace("{test}", str(tmp / "t.csv")) for a in command]

    return build


PAYLOAD_MARKER = "payload-ran"


class Payload:
    """Unpickling this runs code: what a crafted trainer.pt would do with `weights_only=False`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def crafted_trainer_state(tmp: Path, ws: Path) -> list[str]:
    """A fold interrupted after its first epoch, whose checkpoint/last/trainer.pt carries a payload."""
    import torch

    from ensemble.artifacts.competition import Competition
    from ensemble.commands.finetune import FinetuneOptions, finetune
    from ensemble.artifacts.workspace import Workspace

    comp = make_comp(tmp)

    class Stop(Exception):
        pass

    def stop(event: dict) -> None:
        if event.get("stage") == "epoch" and event["epoch"] == 0:
            raise Stop

    opts = FinetuneOptions(model="logmel-cnn", folds=2, epochs=2, batch_size=8, max_seconds=1.0, testlike_per_fold=4)
    with pytest.raises(Stop):
        finetune(Workspace(ws), Competition.load(comp), opts, progress=stop)
    (ws / "ens.toml").write_text(f"data = {json.dumps(str(comp))}\n")
    state = ws / "models" / "logmel-cnn" / "fold0" / "checkpoint" / "last" / "trainer.pt"
    assert state.is_file()
    torch.save({"optimizer": Payload(tmp / PAYLOAD_MARKER)}, state)
    return FINETUNE


# --- the table -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path, Path], list[str]]
    message: str  # a regex the whole message (after "Error: ") must match; P stands for a path prefix


P = r"\S*"
BAD_NAME = r"{what} name {name} is not valid: use letters, digits, '-', '_', '\.', '\+'"
CASES = [
    # the competition folder's CSVs (refused at load, before ens.toml is written)
    Case("train_csv_header_only", comp_with(header_only("train.csv")),
         rf"{P}/train\.csv: no rows, only a header; expected one row per clip"),
    Case("test_csv_header_only", comp_with(header_only("test.csv")),
         rf"{P}/test\.csv: no rows, only a header; expected one row per clip"),
    Case("sample_header_only", comp_with(header_only("sample_submission.csv")),
         rf"{P}/sample_submission\.csv: no rows, only a header; expected one row per clip"),
    Case("train_path_dot_dot", comp_with(lambda c, t: set_path(c, "train.csv", 2, "../../../../etc/passwd")),
         rf"{P}/train\.csv: id 'TRAIN_002' has path '\.\./\.\./\.\./\.\./etc/passwd', which resolves to {P}/etc/passwd, "
         rf"outside the competition folder {P}/comp; paths must stay inside it"),
    Case("train_path_absolute", comp_with(lambda c, t: set_path(c, "train.csv", 3, "/etc/passwd")),
         rf"{P}/train\.csv: id 'TRAIN_003' has the absolute path '/etc/passwd'; expected a path relative to the "
         rf"competition folder {P}/comp"),
    Case("train_path_symlink_outside", comp_with(symlink_out),
         rf"{P}/train\.csv: id 'TRAIN_001' has path 'train/TRAIN_001\.wav', which resolves to {P}/elsewhere/secret\.wav, "
         rf"outside the competition folder {P}/comp; paths must stay inside it"),
    Case("test_path_dot_dot", comp_with(lambda c, t: set_path(c, "test.csv", 0, "test/../../outside.wav")),
         rf"{P}/test\.csv: id 'TEST_000' has path 'test/\.\./\.\./outside\.wav', which resolves to {P}/outside\.wav, "
         rf"outside the competition folder {P}/comp; paths must stay inside it"),
    Case("train_path_empty", comp_with(lambda c, t: set_path(c, "train.csv", 1, np.nan)),
         rf"{P}/train\.csv: id 'TRAIN_001' has an empty path; expected a path relative to {P}/comp"),
    Case("test_id_not_in_sample", comp_with(extra_test_id),
         rf"{P}/test\.csv: id 'TEST_X' is not in {P}/sample_submission\.csv \(1 unknown ids\)"),
    Case("train_unknown_label", comp_with(lambda c, t: edit_csv(c / "train.csv", lambda d: d.assign(label=d["label"].where(d.index != 5, "bonafide")))),
         rf"{P}/train\.csv: id 'TRAIN_005' has label 'bonafide'; expected one of fake, real"),
    Case("train_duplicate_id", comp_with(lambda c, t: edit_csv(c / "train.csv", lambda d: d.assign(id=d["id"].where(d.index != 4, "TRAIN_003")))),
         rf"{P}/train\.csv: duplicate id 'TRAIN_003'"),
    Case("train_csv_missing", comp_with(lambda c, t: (c / "train.csv").unlink()), rf"{P}/train\.csv: file not found"),
    # audio: every file checked before the first fold, all problems in one line
    Case("train_audio_garbage", comp_with(garbage("train/TRAIN_003.wav")),
         r"1 audio file cannot be used: train/TRAIN_003\.wav \(train\.csv id 'TRAIN_003': cannot be decoded\)"),
    Case("test_audio_malformed_ogg", comp_with(truncated_ogg("test.csv", 1, 0.05)),
         r"1 audio file cannot be used: test/TEST_001\.ogg \(test\.csv id 'TEST_001': cannot be decoded\)"),
    Case("train_audio_truncated_ogg_no_samples", comp_with(truncated_ogg("train.csv", 2, 0.5)),
         r"1 audio file cannot be used: train/TRAIN_002\.ogg \(train\.csv id 'TRAIN_002': no audio samples\)"),
    Case("train_audio_empty_file", comp_with(garbage("train/TRAIN_006.wav", b"")),
         r"1 audio file cannot be used: train/TRAIN_006\.wav \(train\.csv id 'TRAIN_006': empty file\)"),
    Case("train_audio_zero_frames", comp_with(zero_frames),
         r"1 audio file cannot be used: train/TRAIN_004\.wav \(train\.csv id 'TRAIN_004': no audio samples\)"),
    Case("train_audio_rate_100hz", comp_with(low_rate),
         r"1 audio file cannot be used: train/TRAIN_005\.wav \(train\.csv id 'TRAIN_005': sample rate 100 Hz, "
         r"expected 1000–384000\)"),
    Case("test_audio_missing", comp_with(lambda c, t: (c / "test" / "TEST_003.wav").unlink()),
         r"1 audio file cannot be used: test/TEST_003\.wav \(test\.csv id 'TEST_003': not found\)"),
    Case("test_audio_is_a_folder", comp_with(directory_clip),
         r"1 audio file cannot be used: test/TEST_002\.wav \(test\.csv id 'TEST_002': not a regular file\)"),
    Case("unlabeled_audio_corrupt", comp_with(corrupt_unlabeled),
         r"1 audio file cannot be used: unlabeled_data/u1\.ogg \(unlabeled_data id 'u1': cannot be decoded\)"),
    Case("seven_bad_files_first_five_and_count", comp_with(many_bad),
         r"7 audio files cannot be used: " + ", ".join(
             rf"train/TRAIN_00{i}\.wav \(train\.csv id 'TRAIN_00{i}': empty file\)" for i in range(5)) + ", and 2 more"),
    Case("oof_corrupt_test_audio", with_run(finetune_kind_with_corrupt_test, "oof", "r"),
         r"1 audio file cannot be used: test/TEST_003\.wav \(test\.csv id 'TEST_003': cannot be decoded\)"),
    Case("resume_crafted_trainer_state", crafted_trainer_state,
         rf"{P}/models/logmel-cnn/fold0/checkpoint/last/trainer\.pt: refused to load the trainer state: it names the "
         rf"Python object exec, which could run code when loaded; delete {P}/fold0/checkpoint to restart this fold"),
    # runs made on other data or folds, stacked alone or with a good run
    Case("lone_run_other_train_csv", with_run(other_train_csv),
         r"run 'r' was made on different data than the competition folder: train\.csv differs "
         r"\(sha256 [0-9a-f]{12}… vs [0-9a-f]{12}…\); re-run or re-import it on the current data"),
    Case("lone_run_other_test_csv", with_run(other_test_csv),
         r"run 'r' was made on different data than the competition folder: test\.csv differs "
         r"\(sha256 [0-9a-f]{12}… vs [0-9a-f]{12}…\); re-run or re-import it on the current data"),
    Case("lone_run_other_folds", with_run(other_folds, folds=np.arange(N_TRAIN) % 4),
         r"run 'r' was made on different folds than the workspace's folds \(models/folds\.parquet\) "
         r"\(fingerprint [0-9a-f]{12}… vs [0-9a-f]{12}…\); it cannot be blended with them"),
    Case("run_from_other_workspace_folds", with_run(run_from_other_workspace, "stack", "r", "b", folds=np.arange(N_TRAIN) % 4),
         r"run 'b' was made on different folds than the workspace's folds \(models/folds\.parquet\) "
         r"\(fingerprint [0-9a-f]{12}… vs [0-9a-f]{12}…\); it cannot be blended with them"),
    Case("run_with_other_label_columns", with_run(swapped_labels),
         r"run 'r' has label columns \['real', 'fake'\]; the competition folder has \['fake', 'real'\]: runs with "
         r"different label columns cannot be blended"),
    # a run's Parquet files
    Case("oof_duplicated_row", with_run(rewrite_parquet("oof.parquet", lambda d: pd.concat([d, d.iloc[[3]]]))),
         rf"{P}/models/r/oof\.parquet: duplicate id 'TRAIN_003'"),
    Case("oof_missing_row", with_run(rewrite_parquet("oof.parquet", lambda d: d.iloc[1:])),
         rf"{P}/models/r/oof\.parquet: id 'TRAIN_000' has no prediction \(1 train ids missing\)"),
    Case("test_parquet_missing_id", with_run(rewrite_parquet("test.parquet", lambda d: d[d["id"] != "TEST_002"])),
         rf"{P}/models/r/test\.parquet \(fold -1\): id 'TEST_002' from the test ids is missing \(1 missing ids\)"),
    Case("test_parquet_unknown_id", with_run(rewrite_parquet("test.parquet", lambda d: d.assign(id=d["id"].replace("TEST_001", "TEST_999")))),
         rf"{P}/models/r/test\.parquet \(fold -1\): id 'TEST_999' is not in the test ids \(1 unknown ids\)"),
    # run and submission names become paths: refused before anything is computed or written
    *[Case(f"run_name_{label}", named(["import", name, "--test", "{test}"]), BAD_NAME.format(what="run", name=re.escape(repr(name))))
      for label, name in (("dot_dot", "../x"), ("slash", "a/b"), ("empty", ""), ("hidden", ".hidden"))],
    *[Case(f"submission_name_{label}", named(["stack", "r", "--name", name]),
           BAD_NAME.format(what="submission", name=re.escape(repr(name))))
      for label, name in (("dot_dot", "../x"), ("slash", "a/b"), ("empty", ""), ("hidden", ".hidden"))],
    *[Case(f"finetune_name_{label}", named([*FINETUNE, "--name", name]), BAD_NAME.format(what="run", name=re.escape(repr(name))))
      for label, name in (("dot_dot", "../x"), ("hidden", ".hidden"))],
]


def _files(ws: Path) -> set[Path]:
    return {p for folder in ("models", "submissions") for p in (ws / folder).rglob("*")} if ws.is_dir() else set()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_and_leaves_nothing(case: Case, tmp_path: Path, workspace: Path):
    args = case.build(tmp_path, workspace)
    had_config = (workspace / "ens.toml").exists()
    before = _files(workspace)
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert re.fullmatch(case.message, lines[0][len("Error: "):]), lines[0]
    assert "Traceback" not in result.output
    assert _files(workspace) == before, sorted(map(str, _files(workspace) - before))
    assert had_config or not (workspace / "ens.toml").exists()
    assert not (tmp_path / PAYLOAD_MARKER).exists()


# --- fixes that are not one CLI line -------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_and_run_folders_follow_the_umask(umask: int, tmp_path: Path, workspace: Path):
    """mkstemp/mkdtemp make 0600/0700 entries; outputs must be 0666/0777 & ~umask so teammates can read them."""
    comp = make_comp(tmp_path)
    old = os.umask(umask)
    try:
        import_run(tmp_path, comp, "r")
    finally:
        os.umask(old)
    run = workspace / "models" / "r"
    assert run.stat().st_mode & 0o777 == 0o777 & ~umask
    for name in ("run.json", "oof.parquet", "test.parquet"):
        assert (run / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert (workspace / "ens.toml").stat().st_mode & 0o777 == 0o666 & ~umask


def test_fold_test_predictions_are_averaged_as_logits(tmp_path: Path, workspace: Path):
    """Two folds predicting 0.9 and 0.5: the mean of logits is 0.75, the mean of probabilities 0.7."""
    from ensemble.artifacts.competition import Competition
    from ensemble.artifacts.runs import load_run
    from ensemble.stack.inputs import test_tensor
    from ensemble.artifacts.workspace import Workspace

    comp_dir = make_comp(tmp_path)
    import_run(tmp_path, comp_dir, "r")
    path = workspace / "models" / "r" / "test.parquet"
    one = pd.read_parquet(path)
    two = pd.concat([one.assign(fold=0, fake=0.9, real=0.2), one.assign(fold=1, fake=0.5, real=0.2)], ignore_index=True)
    two.to_parquet(path, index=False)
    rerecord(path)
    got = test_tensor([load_run(Workspace(workspace), "r")], Competition.load(comp_dir))
    np.testing.assert_allclose(got[:, 0, 0], 0.75, rtol=1e-12)  # sigmoid((logit 0.9 + logit 0.5) / 2) = 0.75
    np.testing.assert_allclose(got[:, 0, 1], 0.2, rtol=1e-12)


def test_runs_on_different_data_are_refused_pairwise(tmp_path: Path, workspace: Path):
    """check_compatible without a reference (the report's check): the second run's data differs from the first's."""
    from ensemble.errors import ContractError
    from ensemble.artifacts.runs import check_compatible, load_run
    from ensemble.artifacts.workspace import Workspace

    comp = make_comp(tmp_path)
    import_run(tmp_path, comp, "a")
    import_run(tmp_path, comp, "b", seed=1)
    path = workspace / "models" / "b" / "run.json"
    manifest = json.loads(path.read_text())
    manifest["data"]["train.csv"] = "0" * 64
    path.write_text(json.dumps(manifest))
    ws = Workspace(workspace)
    check_compatible([load_run(ws, "a")])
    with pytest.raises(ContractError, match=r"run 'b' was made on different data than run 'a': train\.csv differs"):
        check_compatible([load_run(ws, "a"), load_run(ws, "b")])


def test_audio_check_is_cached_by_size_and_mtime(tmp_path: Path, workspace: Path):
    from ensemble.artifacts.audio_check import CACHE_NAME, check_audio_files, competition_audio
    from ensemble.artifacts.competition import Competition

    comp = Competition.load(make_comp(tmp_path)).validate()
    files = competition_audio(comp)
    cache = workspace / "models" / CACHE_NAME
    assert check_audio_files(files, cache) == N_TRAIN + N_TEST
    assert check_audio_files(files, cache) == 0
    write_clip(tmp_path / "comp" / "train" / "TRAIN_000.wav", 42, seconds=1.5)  # other size: checked again
    assert check_audio_files(files, cache) == 1


def test_corrupt_ogg_says_cannot_be_decoded_and_keeps_stderr_clean(tmp_path: Path, capfd):
    from ensemble.audio.load import load_audio
    from ensemble.errors import DataError

    bad = tmp_path / "bad.ogg"
    bad.write_bytes(b"OggS" + os.urandom(4000))
    with pytest.raises(DataError) as err:
        load_audio(bad, SR)
    assert "cannot be decoded" in str(err.value) and "does not exist" not in str(err.value)
    with pytest.raises(DataError, match="not found"):
        load_audio(tmp_path / "missing.ogg", SR)
    assert capfd.readouterr().err == ""
