"""Export a Classifier to ONNX and measure how closely ONNX Runtime matches PyTorch.

Exporter: `torch.onnx.export(..., dynamo=True)` (torch.export + onnxscript). With transformers 5 it
exports every family here with dynamic batch and time axes and matches PyTorch to ~1e-7; the legacy
TorchScript exporter traces shape arithmetic of the conv feature encoders as constants and misses the
1e-4 bar on other lengths (measured: 3e-4 on tiny-wav2vec2, 0.19 on logmel-cnn).

The graph's output is `probabilities (batch, labels)`: the sigmoid is inside the graph, so the file
alone answers the question the contracts ask (Parquet files hold probabilities) and parity is measured
on the quantity that is written. Inputs are `input_values` (+ `attention_mask` where the family takes
one). Metadata (`metadata_props`, all strings): labels (JSON), sampling_rate, run_id, model_ref,
model_type, input_names (JSON), output_name and `preprocessor` (JSON of `Preprocessor.to_dict()`),
plus whatever the caller adds.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.backbones.model import Classifier
from ensemble.backbones.ort import OUTPUT_NAME
from ensemble.errors import ConfigError
from ensemble.artifacts.io import umask_mode


def _probability_module(classifier: Classifier) -> Any:
    from torch import nn

    inner = classifier.module

    class Probabilities(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_values: Any, attention_mask: Any = None) -> Any:
            if attention_mask is None:
                return classifier.probabilities(inner(input_values))
            return classifier.probabilities(inner(input_values, attention_mask))

    return Probabilities().eval()


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence the exporter's chatter (library code does not print): its stdout and info/warning logs."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "onnx_ir", "torch.export",
                                                "torch._export", "torch.fx.experimental.symbolic_shapes")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def standard_metadata(classifier: Classifier) -> dict[str, str]:
    """What every exported file carries, whatever the caller adds."""
    return {"labels": json.dumps(classifier.labels), "sampling_rate": str(classifier.sampling_rate),
            "model_ref": classifier.model_ref, "model_type": classifier.family,
            "input_names": json.dumps(classifier.input_names), "output_name": OUTPUT_NAME,
            "preprocessor": classifier.preprocessor.to_json()}


def _example_inputs(classifier: Classifier) -> dict[str, np.ndarray]:
    # Two clips of different lengths, so the padded batch and mask are not degenerate.
    sr = classifier.sampling_rate
    rng = np.random.default_rng(0)
    return classifier.preprocess([rng.standard_normal(sr).astype(np.float32) * 0.1,
                                  rng.standard_normal(sr * 3 // 4).astype(np.float32) * 0.1])


SOURCE_TRACE = "pkg.torch.onnx.stack_trace"


def _drop_source_traces(model) -> None:
    """Remove the exporter's per-node Python stack traces: they hold this checkout's file paths and line
    numbers, so the same weights exported from two checkouts (or after an edit elsewhere in the file)
    would differ byte for byte and their recorded hashes with them."""
    for nodes in [model.graph.node, *(f.node for f in model.functions)]:
        for node in nodes:
            kept = [p for p in node.metadata_props if p.key != SOURCE_TRACE]
            del node.metadata_props[:]
            node.metadata_props.extend(kept)


def export_onnx(classifier: Classifier, path: Path, metadata: dict[str, str]) -> None:
    """Write `classifier` to `path` (atomically) with dynamic batch/time axes and metadata.

    `metadata` should hold at least `run_id`; it may override nothing in `standard_metadata`.
    """
    import onnx
    import torch
    from torch.export import Dim

    path = Path(path)
    clash = set(metadata) & set(standard_metadata(classifier))
    if clash:
        raise ConfigError(f"metadata keys {sorted(clash)} are reserved; they are filled from the classifier")
    inputs = _example_inputs(classifier)
    names = list(inputs)
    spectrogram = classifier.family_info.input_kind == "spectrogram"  # fixed-length features (AST)
    shapes = {n: ({0: Dim.DYNAMIC} if spectrogram else {0: Dim.DYNAMIC, 1: Dim.DYNAMIC}) for n in names}
    args = tuple(torch.from_numpy(inputs[n]) for n in names)
    was_training = classifier.module.training
    module = _probability_module(classifier).cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp_name, umask_mode(directory=False))
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(module, args, dynamo=True, input_names=names,
                                        output_names=[OUTPUT_NAME], dynamic_shapes=shapes, verbose=False)
        model = program.model_proto
        _drop_source_traces(model)
        props = {**standard_metadata(classifier), **{k: str(v) for k, v in metadata.items()}}
        del model.metadata_props[:]
        for key, value in props.items():
            model.metadata_props.add(key=key, value=value)
        onnx.save_model(model, tmp_name)
        os.replace(tmp_name, path)
    finally:
        classifier.module.train(was_training)
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def read_metadata(path: Path) -> dict[str, str]:
    """An ONNX file's metadata_props as a dict (reads the graph header only via onnx)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def measure_parity(classifier: Classifier, path: Path, waves: list[np.ndarray]) -> float:
    """max |p_onnx − p_torch| over `waves` (use lengths other than the export's; bar ≤ 1e-4)."""
    from ensemble.backbones.ort import OnnxClassifier
    from ensemble.backbones.train import predict_proba_torch

    onnx_model = OnnxClassifier(path, provider="cpu")
    p_onnx = onnx_model.predict_proba(onnx_model.preprocess(waves))
    p_torch = predict_proba_torch(classifier, waves, batch_size=len(waves), device="cpu")
    return float(np.max(np.abs(p_onnx - p_torch)))
