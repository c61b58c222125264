"""Artifacts are checked against what was recorded when they were written (issue 30, item 2).

Run files against run.json before stacking, a submission's CSV and recipe against its sidecar before
export, an export's metadata and output shape before predicting; and the task is decided from what
train.csv's labels say, not guessed from the sample submission's values.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import write_predictions
from ensemble.task import MULTICLASS, MULTILABEL
from test_hostile_files import ens, one_error_line


def imported_runs(tmp_path: Path, comp: Path) -> None:
    test_ids = pd.read_csv(comp / "sample_submission.csv")["id"].tolist()
    train_ids = pd.read_csv(comp / "train.csv")["id"].tolist()
    for k in range(2):
        rng = np.random.default_rng(k)
        test = write_predictions(tmp_path / f"test{k}.csv", test_ids, rng.random((12, 2)))
        oof = write_predictions(tmp_path / f"oof{k}.csv", train_ids, rng.random((40, 2)))
        result = ens("import", f"r{k}", "--test", test, "--oof", oof, "--data", comp)
        assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------------- run files at stacking

@pytest.mark.parametrize("filename", ["oof.parquet", "test.parquet"])
def test_stack_refuses_a_run_file_replaced_by_another_runs(filename, tmp_path, csv_competition, workspace):
    """Another run's file has the same shape and passes every content check: only the hash tells."""
    imported_runs(tmp_path, csv_competition)
    target = workspace / "models" / "r0" / filename
    shutil.copyfile(workspace / "models" / "r1" / filename, target)
    one_error_line(ens("stack", "r0", "r1", "--method", "mean", "--name", "s"),
                   f"Error: {target}: SHA-256 differs from the one {target.parent / 'run.json'} records")
    assert not (workspace / "submissions" / "s.csv").exists()


# ------------------------------------------------------------------------------ sidecar and CSV at export

@pytest.fixture
def stacked(tmp_path, csv_competition, workspace) -> Path:
    imported_runs(tmp_path, csv_competition)
    result = ens("stack", "r0", "r1", "--method", "mean", "--calibrate", "none", "--name", "s")
    assert result.exit_code == 0, result.output
    return workspace / "submissions"


def test_sidecar_records_the_recipe_hash(stacked):
    from ensemble.artifacts.records import Sidecar
    from ensemble.artifacts.submission import recipe_sha256

    sidecar = Sidecar.from_dict(json.loads((stacked / "s.json").read_text()), "s.json")
    assert sidecar.recipe_sha256 == recipe_sha256(sidecar.recipe)  # read back, the same canonical bytes


def test_export_refuses_a_sidecar_edited_after_stacking(stacked):
    path = stacked / "s.json"
    raw = json.loads(path.read_text())
    raw["recipe"]["calibrate"] = "platt"  # what the graph would then claim, but the CSV never had
    path.write_text(json.dumps(raw))
    one_error_line(ens("export", "s"), f"Error: {path}: its recipe differs from the one stacked")
    assert not list(stacked.parent.glob("exports/*.onnx"))


def test_export_refuses_a_submission_csv_whose_hash_changed(stacked):
    path = stacked / "s.csv"
    frame = pd.read_csv(path, dtype={"id": str})
    frame.loc[0, "fake"] = 0.123
    frame.to_csv(path, index=False)
    one_error_line(ens("export", "s"), f"Error: {path}: SHA-256 differs from the csv_sha256")


# --------------------------------------------------------------------------------- exported file at predict

LABELS = ["fake", "real"]


def exported(path: Path, labels: list[str] = LABELS, output: str = "pooled", recipe_labels: list[str] | None = None,
             digest: bool = True, input_name: str = "waves") -> Path:
    """A hand-built graph with `ens export` metadata: `pooled` gives (clips, 2) probabilities, `identity`
    gives the waves back (clips, samples): a crafted file whose output is not one row of labels per clip."""
    import onnx
    from onnx import TensorProto, helper

    from ensemble.export.graph import METADATA_DIGEST, metadata_digest

    waves = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["clips", "samples"])
    if output == "pooled":
        nodes = [helper.make_node("ReduceMean", [input_name, "axes"], ["m"], keepdims=1),
                 helper.make_node("Concat", ["m", "m"], ["c"], axis=1),
                 helper.make_node("Sigmoid", ["c"], ["probabilities"])]
        out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["clips", 2])
    else:
        nodes = [helper.make_node("Identity", [input_name], ["probabilities"])]
        out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["clips", "samples"])
    axes = [helper.make_tensor("axes", TensorProto.INT64, [1], [1])] if output == "pooled" else []
    graph = helper.make_graph(nodes, "crafted", [waves], [out], initializer=axes)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    meta = {"ens_export_format": "1", "labels": json.dumps(labels), "sampling_rate": "16000",
            "recipe": json.dumps({"labels": recipe_labels if recipe_labels is not None else labels})}
    if digest:
        meta[METADATA_DIGEST] = metadata_digest(meta)
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save_model(model, str(path))
    return path


def relabelled(path: Path) -> Path:
    """The file with its `labels` metadata swapped after export (digest and recipe left as they were)."""
    import onnx

    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "labels":
            prop.value = json.dumps(LABELS[::-1])
    onnx.save_model(model, str(path))
    return path


@pytest.fixture
def clip(tmp_path) -> Path:
    import soundfile as sf

    path = tmp_path / "clip.wav"
    sf.write(path, np.sin(np.arange(16000) / 7.0).astype(np.float32) * 0.1, 16000, subtype="FLOAT")
    return path


def test_an_honest_graph_predicts(tmp_path, clip):
    result = ens("predict", exported(tmp_path / "m.onnx"), clip, "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(tmp_path / "p.csv").columns) == ["id", *LABELS]


def test_predict_refuses_label_metadata_edited_after_export(tmp_path, clip):
    model = relabelled(exported(tmp_path / "m.onnx"))
    one_error_line(ens("predict", model, clip, "--out", tmp_path / "p.csv"),
                   f"Error: {model}: its metadata differs from what `ens export` wrote")
    assert not (tmp_path / "p.csv").exists()


def test_predict_refuses_labels_that_disagree_with_the_recipe(tmp_path, clip):
    model = exported(tmp_path / "m.onnx", labels=LABELS[::-1], recipe_labels=LABELS, digest=False)
    one_error_line(ens("predict", model, clip, "--out", tmp_path / "p.csv"),
                   "export metadata labels ['real', 'fake'] differ from its recipe's ['fake', 'real']")


def test_a_crafted_graph_whose_output_is_not_one_row_per_clip_is_one_line(tmp_path, clip):
    """Used to end in a numpy broadcasting traceback."""
    model = exported(tmp_path / "m.onnx", output="identity")
    one_error_line(ens("predict", model, clip, "--out", tmp_path / "p.csv"),
                   "output 'probabilities' has shape (1, 16000); expected (1, 2)")
    assert not (tmp_path / "p.csv").exists()


def test_a_crafted_graph_without_the_waves_input_is_one_line(tmp_path, clip):
    model = exported(tmp_path / "m.onnx", input_name="audio")
    one_error_line(ens("predict", model, clip, "--out", tmp_path / "p.csv"), "an export takes 'waves'")


# ------------------------------------------------------------------------------------------- the task

CLASSES = ["human", "espeak", "festival"]


def three_class_folder(root: Path, sample: str) -> Path:
    """A three-class competition: train.csv with a `label` column; the sample file Kaggle-style."""
    root.mkdir()
    train = [f"TRAIN_{i:03d}" for i in range(30)]
    pd.DataFrame({"id": train, "path": [f"train/{i}.ogg" for i in train],
                  "label": [CLASSES[i % 3] for i in range(30)]}).to_csv(root / "train.csv", index=False)
    test = [f"TEST_{i:03d}" for i in range(6)]
    pd.DataFrame({"id": test, "path": [f"test/{i}.ogg" for i in test]}).to_csv(root / "test.csv", index=False)
    rows = {"rounded": [[0.333333] * 3] * 6, "zeros": [[0, 0, 0]] * 6,
            "onehot": [[1, 0, 0]] * 6}[sample]
    frame = pd.DataFrame(rows, columns=CLASSES)
    frame.insert(0, "id", test)
    frame.to_csv(root / "sample_submission.csv", index=False)
    return root


@pytest.mark.parametrize("sample", ["rounded", "zeros", "onehot"])
def test_the_task_comes_from_the_train_labels_not_the_sample_values(sample, tmp_path):
    from ensemble.artifacts.competition import Competition

    comp = Competition.load(three_class_folder(tmp_path / "c", sample))
    assert comp.task is MULTICLASS
    assert comp.task_note() == "task: multiclass (train.csv has one `label` column: one of 3 classes per clip)"


def test_a_fake_real_folder_stays_multilabel_and_says_why(csv_competition):
    from ensemble.artifacts.competition import Competition

    comp = Competition.load(csv_competition)
    assert comp.task is MULTILABEL and "pass --task multiclass" in comp.task_note()


def rounded_predictions(path: Path, ids: list[str]) -> Path:
    frame = pd.DataFrame({"id": ids, "human": 0.333333, "espeak": 0.333333, "festival": 0.333334})
    frame.loc[0, ["human", "espeak", "festival"]] = [0.2, 0.3, 0.49999]  # rounded to 5 places: sums to 0.99999
    frame.to_csv(path, index=False)
    return path


def test_import_prints_the_task_and_takes_rounded_multiclass_rows(tmp_path):
    comp = three_class_folder(tmp_path / "c", "rounded")
    test = rounded_predictions(tmp_path / "t.csv", [f"TEST_{i:03d}" for i in range(6)])
    result = ens("import", "x", "--test", test, "--data", comp)
    assert result.exit_code == 0, result.output
    assert "task: multiclass (train.csv has one `label` column: one of 3 classes per clip)" in result.output
    assert json.loads((Path("models") / "x" / "run.json").read_text())["task"] == "multiclass"


def test_import_task_override(tmp_path, workspace):
    comp = three_class_folder(tmp_path / "c", "rounded")
    test = rounded_predictions(tmp_path / "t.csv", [f"TEST_{i:03d}" for i in range(6)])
    result = ens("import", "x", "--test", test, "--data", comp, "--task", "multilabel")
    assert result.exit_code == 0, result.output
    assert "task: multilabel (set by --task or the workspace's ens.toml)" in result.output
    assert json.loads((workspace / "models" / "x" / "run.json").read_text())["task"] == "multilabel"
