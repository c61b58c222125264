"""ONNX export: parity with PyTorch on unseen lengths, ONNX Runtime on CPU, metadata and preprocessing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from ensemble.backbones.model import Classifier, build_classifier
from ensemble.backbones.onnx_export import export_onnx, measure_parity, read_metadata
from ensemble.backbones.ort import OnnxClassifier, preprocessor_from_metadata
from ensemble.backbones.train import predict_proba_torch
from ensemble.errors import ConfigError, ContractError

torch.set_num_threads(2)

LABELS = ["fake", "real"]
# Group norm (wav2vec2), layer norm + mask (wavlm), spectrogram (ast), our CNN.
EXPORTED = ["tiny-wav2vec2", "tiny-wavlm", "tiny-ast", "logmel-cnn"]


def waves(*lengths: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in lengths]


@pytest.fixture(scope="module", params=EXPORTED)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Classifier, Path]:
    clf = build_classifier(request.param, LABELS, seed=2)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(clf, path, {"run_id": "run-7", "fold": "1"})
    return clf, path


@pytest.mark.slow
def test_parity_on_lengths_and_batch_sizes_export_never_saw(exported: tuple[Classifier, Path]) -> None:
    clf, path = exported
    # Export used 16000 and 12000 samples in a batch of 2.
    assert measure_parity(clf, path, waves(5000, 23000, 9100, seed=1)) <= 1e-4
    assert measure_parity(clf, path, waves(7777, seed=2)) <= 1e-4


@pytest.mark.slow
def test_ort_cpu_predictions_equal_torch_in_input_order(exported: tuple[Classifier, Path]) -> None:
    clf, path = exported
    model = OnnxClassifier(path, provider="auto")
    assert model.provider == ("CUDAExecutionProvider" if "CUDAExecutionProvider"
                              in onnxruntime.get_available_providers() else "CPUExecutionProvider")
    clips = waves(9000, 4000, 12000, 4000, 7000, seed=3)
    p_onnx = model.predict_waves(clips, batch_size=2)
    p_torch = predict_proba_torch(clf, clips, batch_size=2)
    assert p_onnx.shape == (5, 2) and p_onnx.dtype == np.float32
    assert np.all((p_onnx >= 0) & (p_onnx <= 1))
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-4)


@pytest.mark.slow
def test_metadata_round_trip_and_preprocessing_from_metadata_alone(exported: tuple[Classifier, Path]) -> None:
    clf, path = exported
    meta = read_metadata(path)
    assert json.loads(meta["labels"]) == LABELS
    assert int(meta["sampling_rate"]) == clf.sampling_rate
    assert meta["run_id"] == "run-7" and meta["fold"] == "1"
    assert meta["model_ref"] == clf.model_ref and meta["model_type"] == clf.family
    assert json.loads(meta["input_names"]) == clf.input_names
    model = OnnxClassifier(path, provider="cpu")
    assert model.metadata == meta and model.labels == LABELS and model.input_names == clf.input_names
    clips = waves(3000, 8000, seed=4)
    expected = clf.preprocess(clips)
    got = preprocessor_from_metadata(meta)(clips)
    assert list(got) == list(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # no temp file left


@pytest.mark.slow
def test_export_replaces_an_existing_file_and_rejects_reserved_keys(tmp_path: Path) -> None:
    clf = build_classifier("logmel-cnn", LABELS, seed=0)
    path = tmp_path / "m.onnx"
    path.write_text("stale")
    export_onnx(clf, path, {"run_id": "a"})
    assert read_metadata(path)["run_id"] == "a"
    with pytest.raises(ConfigError, match="reserved"):
        export_onnx(clf, path, {"labels": "[]"})
    assert read_metadata(path)["run_id"] == "a"


def test_an_export_holds_no_trace_of_the_checkout_it_was_made_in(tmp_path: Path) -> None:
    """The exporter's per-node stack traces name this checkout's files and lines: dropped, so the same
    weights give the same bytes (and recorded hash) from any checkout."""
    import ensemble

    clf = build_classifier("logmel-cnn", LABELS, seed=0)
    export_onnx(clf, tmp_path / "m.onnx", {"run_id": "a"})
    assert str(Path(ensemble.__file__).parent).encode() not in (tmp_path / "m.onnx").read_bytes()


@pytest.mark.slow
def test_onnx_inference_needs_neither_torch_nor_model_weights(tmp_path: Path) -> None:
    path = tmp_path / "cnn.onnx"
    export_onnx(build_classifier("logmel-cnn", LABELS), path, {"run_id": "r"})
    code = (
        "import sys, numpy as np\n"
        "from ensemble.backbones.ort import OnnxClassifier\n"
        f"m = OnnxClassifier({str(path)!r}, provider='cpu')\n"
        "p = m.predict_waves([np.zeros(4000, np.float32) + 0.1], 1)\n"
        "assert p.shape == (1, 2), p.shape\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_cuda_provider_without_cuda_is_a_clear_error(tmp_path: Path) -> None:
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    path = tmp_path / "x.onnx"
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match="provider 'cuda' requested"):
        OnnxClassifier(path, provider="cuda")
    with pytest.raises(ConfigError, match="not one of auto, cpu, cuda"):
        OnnxClassifier(path, provider="tpu")
    with pytest.raises(ConfigError, match="does not exist"):
        OnnxClassifier(tmp_path / "missing.onnx")


def test_metadata_without_preprocessor_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match="preprocessor"):
        preprocessor_from_metadata({"labels": "[]"})
