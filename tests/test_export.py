"""`ens export` + `ens predict`: a written submission, exported to one ONNX graph, reproduces its CSV.

Real tiny models (two families, 2 folds each, their test predictions re-made by ONNX Runtime with
`ens oof` as a user would), real ONNX Runtime, real LightGBM through onnxmltools.
"""

from __future__ import annotations

from ensemble.task import MULTILABEL

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.demo import DemoSpec, generate_competition

pytestmark = pytest.mark.slow
runner = CliRunner()
LABELS = ["fake", "real"]
ROOT = Path(__file__).resolve().parents[1]


def ens(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A competition and a workspace with two finetuned runs (tiny-wav2vec2, logmel-cnn; 2 folds, 1 s windows)."""
    base = tmp_path_factory.mktemp("export")
    data = generate_competition(base / "data", DemoSpec(n_train=40, n_test=7, n_unlabeled=2, seed=5))
    ws = base / "ws"
    for model, name in (("tiny-wav2vec2", "w2v"), ("logmel-cnn", "cnn")):
        result = ens("finetune", model, "--data", data, "-w", ws, "--folds", 2, "--epochs", 1, "--batch-size", 8,
                     "--max-seconds", 1, "--testlike-per-fold", 6, "--name", name)
        assert result.exit_code == 0, result.output
        assert ens("oof", name, "--split", "test", "--provider", "cpu", "-w", ws).exit_code == 0
    return data, ws


def stack(ws, name, *args):
    result = ens("stack", "w2v", "cnn", "--name", name, "-w", ws, "--force", *args)
    assert result.exit_code == 0, result.output
    return pd.read_csv(ws / "submissions" / f"{name}.csv")


CASES = {
    "mean": ["--method", "mean", "--calibrate", "temperature"],
    "median": ["--method", "median", "--calibrate", "none"],
    "hillclimb": ["--method", "hillclimb", "--calibrate", "platt"],
    "logreg": ["--method", "logreg", "--calibrate", "isotonic"],
    "lgbm": ["--method", "lgbm", "--calibrate", "beta", "--fit-on", "clean"],
    "rank": ["--method", "rank", "--calibrate", "temperature", "--test-prior", "0.4"],
    "flip": ["--method", "flip", "--calibrate", "isotonic", "--fit-on", "clean"],
    "single": ["--method", "single", "--param", "run=1", "--calibrate", "platt"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_exported_graph_reproduces_the_submission(built, tmp_path, case):
    data, ws = built
    expected = stack(ws, case, *CASES[case])
    sidecar_path = ws / "submissions" / f"{case}.json"
    state = json.loads(sidecar_path.read_text())["recipe"]["state"]
    if case == "lgbm":  # the export must carry real trees, not a constant fallback
        assert all("lightgbm" in m and "split_feature=" in m["lightgbm"] for m in state["blender"]["models"])
    model = tmp_path / f"{case}.onnx"
    result = ens("export", case, "-w", ws, "--out", model)
    assert result.exit_code == 0, result.output
    out = tmp_path / "preds.csv"
    result = ens("predict", model, "--data", data, "--split", "test", "--out", out)
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out)
    assert got["id"].tolist() == expected["id"].tolist()
    np.testing.assert_allclose(got[LABELS].to_numpy(), expected[LABELS].to_numpy(), rtol=0, atol=1e-5)

    import onnx

    onnx_model = onnx.load(str(model))
    meta = {p.key: p.value for p in onnx_model.metadata_props}
    assert json.loads(meta["labels"]) == LABELS and int(meta["sampling_rate"]) == 16000
    assert json.loads(meta["sha256"])["sidecar"] == hashlib.sha256(sidecar_path.read_bytes()).hexdigest()
    assert json.loads(meta["recipe"])["method"] == case
    assert [i.name for i in onnx_model.graph.input] == ["waves"]
    ops = [n.op_type for n in onnx_model.graph.node]
    if case == "single":  # only the run the blend reads is in the graph (run 1: the CNN, no attention)
        assert list(json.loads(meta["windows"])) == ["cnn"] and "Softmax" not in ops
    else:
        assert ops.count("Softmax") >= 4 and "IsNaN" not in ops  # the exporter's NaN checks after Softmax are gone


def test_clips_of_any_length_match_the_numpy_windows(built, tmp_path):
    """Short, window-long and odd-length clips (some sharing a length, so batched together) against the
    numpy path: each fold's ONNX file through `predict_clips`, folds by mean logit, runs by mean."""
    import ensemble
    from ensemble.backbones.ort import OnnxClassifier
    from ensemble.backbones.predict import onnx_predictor, predict_clips
    from ensemble.stack.inputs import mean_of_logits

    data, ws = built
    stack(ws, "plain", "--method", "mean", "--calibrate", "none")
    assert ens("export", "plain", "-w", ws, "--out", tmp_path / "plain.onnx").exit_code == 0
    rng = np.random.default_rng(1)
    waves = [rng.normal(0, 0.1, n).astype(np.float32) for n in (4800, 16000, 27200, 27200, 27200, 42400, 16001)]
    got = ensemble.load(tmp_path / "plain.onnx").predict(waves, batch_size=2)
    per_run = []
    for run in ("w2v", "cnn"):
        manifest = json.loads((ws / "models" / run / "run.json").read_text())
        folds = []
        for info in manifest["folds"]:
            clf = OnnxClassifier(ws / "models" / run / info["onnx"]["path"], provider="cpu")
            folds.append(predict_clips(iter(waves), len(waves), 16000, 8000, onnx_predictor(clf, clf.preprocess), 3))
        per_run.append(mean_of_logits(np.stack(folds, axis=1), axis=1))
    np.testing.assert_allclose(got, np.mean(per_run, axis=0), rtol=0, atol=1e-5)


def test_predict_never_imports_torch(built, tmp_path):
    data, ws = built
    stack(ws, "notorch", "--method", "logit", "--calibrate", "none")
    assert ens("export", "notorch", "-w", ws, "--out", tmp_path / "m.onnx").exit_code == 0
    code = ("import sys\nfrom ensemble.cli import app\n"
            f"try:\n    app(['predict', {str(tmp_path / 'm.onnx')!r}, '--data', {str(data)!r}, '--out', "
            f"{str(tmp_path / 'p.csv')!r}])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("NO-TORCH"), done.stdout
    assert len(pd.read_csv(tmp_path / "p.csv")) == 7


def test_int8_export_is_decided_by_the_score_check(built, tmp_path):
    import onnx

    data, ws = built
    stack(ws, "q", "--method", "mean", "--calibrate", "none")
    out = tmp_path / "q8.onnx"
    refused = ens("export", "q", "-w", ws, "--data", data, "--out", out, "--quantize", "int8",
                  "--max-score-change", "-1", "--check-rows", 24)
    assert refused.exit_code == 1 and not out.exists()
    assert refused.output.strip().startswith("Error: int8 worsens the OOF score on 24 train clips"), refused.output
    kept = ens("export", "q", "-w", ws, "--data", data, "--out", out, "--quantize", "int8",
               "--max-score-change", "1", "--check-rows", 24)
    assert kept.exit_code == 0, kept.output
    assert "int8 score check on 24 OOF rows" in kept.output and "interleaved" in kept.output
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert "MatMulInteger" in ops
    check = json.loads({p.key: p.value for p in model.metadata_props}["quantization_check"])
    assert check["rows"] == 24 and check["int8_bytes"] < check["fp32_bytes"]
    assert check["change"] == pytest.approx(check["int8"] - check["fp32"])


def _one_error_line(result, needle: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and needle in lines[-1], result.output


def test_bad_inputs_give_one_line_naming_the_file(built, tmp_path):
    data, src = built
    ws = tmp_path / "ws_copy"
    shutil.copytree(src, ws)
    stack(ws, "bad", "--method", "mean", "--calibrate", "none")
    model = tmp_path / "bad.onnx"
    assert ens("export", "bad", "-w", ws, "--out", model).exit_code == 0
    _one_error_line(ens("export", "bad", "-w", ws, "--out", model), str(model))  # exists, no --force

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a graph")
    out = tmp_path / "p.csv"
    _one_error_line(ens("predict", junk, "--data", data, "--out", out), str(junk))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt garbage")
    _one_error_line(ens("predict", model, broken, "--out", out), str(broken))
    _one_error_line(ens("predict", model, tmp_path / "absent.wav", "--out", out), "absent.wav")
    _one_error_line(ens("predict", model, broken, "--data", data, "--out", out), "not both")
    assert not out.exists()

    sidecar = ws / "submissions" / "bad.json"
    meta = json.loads(sidecar.read_text())
    stale = json.loads(json.dumps(meta))
    del stale["recipe"]["state"]
    sidecar.write_text(json.dumps(stale))
    _one_error_line(ens("export", "bad", "-w", ws, "--out", tmp_path / "x.onnx"), "(recipe): missing key 'state'")

    run_json = ws / "models" / "cnn" / "run.json"
    manifest = json.loads(run_json.read_text())
    manifest["folds"][0]["onnx"]["path"] = "../../w2v/fold0/model.onnx"
    run_json.write_text(json.dumps(manifest))
    sidecar.write_text(json.dumps(meta))
    _one_error_line(ens("export", "bad", "-w", ws, "--out", tmp_path / "x.onnx"), "changed since")
    for entry in meta["recipe"]["runs"]:  # a sidecar that vouches for the edited run.json: the path still may not escape
        if entry["run"] == "cnn":
            entry["manifest_sha256"] = hashlib.sha256(run_json.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(meta))
    _one_error_line(ens("export", "bad", "-w", ws, "--out", tmp_path / "x.onnx"), "its recipe differs from the one stacked")
    from ensemble.artifacts.records import Recipe
    from ensemble.artifacts.submission import recipe_sha256

    meta["recipe_sha256"] = recipe_sha256(Recipe.from_dict(meta["recipe"], "edited"))  # vouches for its edit too
    sidecar.write_text(json.dumps(meta))
    _one_error_line(ens("export", "bad", "-w", ws, "--out", tmp_path / "x.onnx"), "leaves")
    assert not (tmp_path / "x.onnx").exists()


def _run_ops(build, x: np.ndarray) -> np.ndarray:
    """Build ops on one float64 input `x` with `build(graph, name) -> output name`; run it in ONNX Runtime."""
    import onnxruntime as ort
    from onnx import helper

    from ensemble.export.ops import DOUBLE, Graph

    g = Graph()
    out = build(g, "x")
    g.nodes.append(helper.make_node("Identity", [out], ["y"]))
    graph = helper.make_graph(g.nodes, "t", [helper.make_tensor_value_info("x", DOUBLE, list(x.shape))],
                              [helper.make_tensor_value_info("y", DOUBLE, None)], initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


@pytest.mark.parametrize("kind", ["temperature", "platt", "beta", "isotonic"])
def test_calibrator_ops_match_numpy_at_the_edges(kind):
    """Values at, between and beyond isotonic thresholds, exact 0 and 1, ties."""
    from ensemble.stack.onnx_ops import calibrator_ops as calibrate
    from ensemble.stack.state import calibrator_state
    from ensemble.stack.calibration import make_calibrator

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300).astype(float)
    p = np.clip(0.3 * y + 0.7 * rng.random(300), 0, 1)
    p[:4] = [0.0, 1.0, 0.5, 0.5]
    cal = make_calibrator(kind).fit(p, y)
    probe = np.concatenate([p, [0.0, 1.0, 1e-15, 1 - 1e-15, 0.25, 0.75], np.linspace(0, 1, 101)])
    if kind == "isotonic":  # exactly on the thresholds, and just beside them
        from scipy.special import expit

        t = np.asarray(cal.iso_.X_thresholds_)
        probe = np.concatenate([probe, expit(t), expit(t + 1e-9), expit(t - 1e-9)])
    got = _run_ops(lambda g, x: calibrate(g, x, calibrator_state(cal)), probe)
    np.testing.assert_allclose(got, cal.predict(probe), rtol=0, atol=1e-9)


def test_rank_ops_match_the_ecdf_with_ties():
    from ensemble.stack.onnx_ops import blend_ops as blend
    from ensemble.stack.state import blender_state
    from ensemble.stack.base import make_blender

    rng = np.random.default_rng(2)
    P = np.round(rng.random((50, 3, 2)), 1)  # many ties
    blender = make_blender("rank", MULTILABEL).fit(P)
    probe = np.concatenate([P[:10], np.round(rng.random((10, 3, 2)), 2), np.zeros((1, 3, 2)), np.ones((1, 3, 2))])
    got = _run_ops(lambda g, x: blend(g, x, blender_state(blender), 20, []), probe)
    np.testing.assert_allclose(got, blender.predict(probe), rtol=0, atol=1e-12)


def test_serve_answers_like_predict(built, tmp_path):
    import threading
    import urllib.error
    import urllib.request

    import ensemble
    from ensemble.commands.serve import make_server

    data, ws = built
    stack(ws, "served", "--method", "logit", "--calibrate", "none")
    assert ens("export", "served", "-w", ws, "--out", tmp_path / "s.onnx").exit_code == 0
    model = ensemble.load(tmp_path / "s.onnx")
    clip = sorted((data / "test").iterdir())[0]
    expected = model.predict(model.load_audio([clip]))[0]
    server = make_server(model, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        reply = json.load(urllib.request.urlopen(urllib.request.Request(f"{url}/predict", data=clip.read_bytes())))
        assert reply["labels"] == LABELS
        np.testing.assert_allclose(reply["probabilities"], expected, rtol=0, atol=1e-12)
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(urllib.request.Request(f"{url}/predict", data=b"not audio"))
        assert bad.value.code == 400 and "no readable audio" in json.load(bad.value)["error"]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("method", ["logreg", "lgbm", "weighted", "hillclimb", "flip", "single"])
def test_blend_ops_match_the_fitted_blender(method):
    """Each blender's ONNX ops against its numpy `predict`, a label with one class (constant) included."""
    from ensemble.stack.onnx_ops import blend_ops as blend
    from ensemble.stack.base import make_blender
    from ensemble.stack.state import blender_state

    rng = np.random.default_rng(4)
    y = np.stack([rng.integers(0, 2, 600), np.ones(600, int) if method in ("logreg", "lgbm") else
                  rng.integers(0, 2, 600)], axis=1).astype(float)
    P = np.clip(0.35 * y[:, None, :] + 0.65 * rng.random((600, 3, 2)), 0, 1)
    params = {"run": 1} if method == "single" else {}
    blender = make_blender(method, MULTILABEL, **params).fit(P, y, folds=np.arange(600) % 3)
    probe = np.concatenate([P[:50], rng.random((50, 3, 2)), np.zeros((1, 3, 2)), np.ones((1, 3, 2))])
    got = _run_ops(lambda g, x: blend(g, x, blender_state(blender), 20, []), probe) if method != "lgbm" else None
    if method == "lgbm":  # onnxmltools' trees come as a subgraph: run them through the merged model
        got = _run_lgbm(blender, probe)
    np.testing.assert_allclose(got, blender.predict(probe), rtol=0, atol=1e-6 if method == "lgbm" else 1e-12)


def test_lgbm_complementary_label_exports_its_negated_trees():
    """real = 1 − fake: the real model is the fake trees with negated leaves; its ONNX graph predicts it."""
    from ensemble.stack.base import make_blender

    rng = np.random.default_rng(5)
    fake = rng.integers(0, 2, 600).astype(float)
    y = np.stack([fake, 1.0 - fake], axis=1)
    P = np.clip(0.35 * y[:, None, :] + 0.65 * rng.random((600, 3, 2)), 0, 1)
    blender = make_blender("lgbm", MULTILABEL).fit(P, y, folds=np.arange(600) % 3)
    probe = np.concatenate([P[:50], rng.random((50, 3, 2))])
    got = _run_lgbm(blender, probe)
    np.testing.assert_allclose(got, blender.predict(probe), rtol=0, atol=1e-6)
    np.testing.assert_allclose(got[:, 1], 1.0 - got[:, 0], rtol=0, atol=1e-6)


def _run_lgbm(blender, probe: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    from onnx import helper

    from ensemble.stack.onnx_ops import blend_ops as blend
    from ensemble.export.graph import _finish
    from ensemble.export.ops import DOUBLE, Graph
    from ensemble.stack.state import blender_state

    assert any("lightgbm" in m for m in blender_state(blender)["models"])
    g, subs = Graph(), []
    out = blend(g, "x", blender_state(blender), 20, subs)
    model = _finish(g, subs, out, [helper.make_tensor_value_info("x", DOUBLE, ["batch", 3, 2])], 2, 20, 10, {})
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"x": probe})[0]


def test_fold_graphs_of_older_opsets_are_converted_to_one():
    """A classical family's fold graph (opset 15, the tree converters') beside a neural one (opset 20)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from ensemble.export.graph import RunGraphs, _opset

    def scale(opset: int) -> onnx.ModelProto:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 1])
        nodes = [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=1, axes=[1]) if opset < 13 else
                 helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)]
        init = [] if opset < 13 else [helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
        graph = helper.make_graph(nodes, "g", [x], [y], initializer=init)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)

    runs = [RunGraphs("old", [scale(11), scale(15)], 4, 2, False, False), RunGraphs("new", [scale(20)], 4, 2, False, False)]
    before = [ort.InferenceSession(m.SerializeToString()) for m in runs[0].folds]
    assert _opset(runs) == 20
    assert {o.version for run in runs for m in run.folds for o in m.opset_import} == {20}
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    for old, new in zip(before, runs[0].folds):
        np.testing.assert_array_equal(old.run(None, {"x": x})[0], ort.InferenceSession(new.SerializeToString()).run(None, {"x": x})[0])


def test_a_run_without_models_is_refused_only_where_the_blend_reads_it(built, tmp_path):
    data, src = built
    ws = tmp_path / "ws_imported"
    shutil.copytree(src, ws)
    frame = pd.read_parquet(ws / "models" / "cnn" / "test.parquet").groupby("id", sort=False)[LABELS].mean()
    frame.reset_index().to_csv(tmp_path / "preds.csv", index=False)
    assert ens("import", "outside", "--test", tmp_path / "preds.csv", "-w", ws).exit_code == 0
    both = ens("stack", "cnn", "outside", "--method", "mean", "--calibrate", "none", "--name", "both", "-w", ws)
    only_cnn = ens("stack", "cnn", "outside", "--method", "single", "--param", "run=0", "--calibrate", "none",
                   "--name", "only-cnn", "-w", ws)
    assert both.exit_code == 0 and only_cnn.exit_code == 0, both.output + only_cnn.output
    refused = ens("export", "both", "-w", ws, "--out", tmp_path / "both.onnx")
    assert refused.exit_code == 1 and "run 'outside' has no ONNX folds" in refused.output
    model = tmp_path / "only.onnx"
    assert ens("export", "only-cnn", "-w", ws, "--out", model).exit_code == 0
    out = tmp_path / "only.csv"
    assert ens("predict", model, "--data", data, "--out", out).exit_code == 0
    np.testing.assert_allclose(pd.read_csv(out)[LABELS], pd.read_csv(ws / "submissions" / "only-cnn.csv")[LABELS],
                               atol=1e-5)
