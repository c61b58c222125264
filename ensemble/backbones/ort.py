"""Run an exported classifier in ONNX Runtime, with nothing but the ONNX file.

Preprocessing is rebuilt from the file's metadata (`preprocessor_from_metadata`), so `ens oof` needs no
torch and no model weights beyond the ONNX file. Provider: "auto" picks CUDA when onnxruntime offers it,
else CPU; "cuda" without CUDA is a ConfigError.

CUDA path: inputs are bound from host memory and the output is bound to CPU with IO binding, so ORT
copies each input to the GPU once and runs without per-call allocation of the output on the host side.
It is kept deliberately simple (no device-resident inputs across calls) and is not exercised by the CPU
tests here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ensemble.backbones.preprocess import Preprocessor
from ensemble.errors import ConfigError, ContractError

PROVIDERS = ("auto", "cpu", "cuda")
OUTPUT_NAME = "probabilities"  # the one output of every exported classifier (export_onnx, the classical families)


def preprocessor_from_metadata(metadata: dict[str, str]) -> Callable[[list[np.ndarray]], dict[str, np.ndarray]]:
    """The exact preprocessing the model was trained and exported with, from ONNX metadata."""
    if "preprocessor" not in metadata:
        raise ContractError(f"ONNX metadata has no 'preprocessor' entry (keys: {sorted(metadata)}); "
                            "export it with ensemble.backbones.onnx_export.export_onnx")
    return Preprocessor.from_dict(json.loads(metadata["preprocessor"]))


def _providers(provider: str) -> list[str]:
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise ConfigError(f"provider {provider!r} is not one of {', '.join(PROVIDERS)}")
    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if provider == "cuda" and not has_cuda:
        raise ConfigError(f"provider 'cuda' requested but onnxruntime {ort.__version__} offers only "
                          f"{', '.join(available)}; install onnxruntime-gpu or use --provider cpu")
    if provider == "cpu" or not has_cuda:
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class OnnxClassifier:
    """`predict_proba(inputs) -> (batch, labels)` probabilities from an ONNX file written by export_onnx."""

    def __init__(self, path: Path, provider: str = "auto", threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"ONNX file {self.path} does not exist")
        providers = _providers(provider)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One intra-op pool sized to the machine; no inter-op parallelism (the graph is a chain).
        options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        self.provider = self.session.get_providers()[0]
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.labels: list[str] = json.loads(self.metadata.get("labels", "[]"))
        self.sampling_rate = int(self.metadata.get("sampling_rate", 0))
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name
        self._preprocess: Callable[[list[np.ndarray]], dict[str, np.ndarray]] | None = None

    def preprocess(self, waves: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The same preprocessing as the torch Classifier, rebuilt from metadata."""
        if self._preprocess is None:
            self._preprocess = preprocessor_from_metadata(self.metadata)
        return self._preprocess(waves)

    def predict_proba(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise ContractError(f"{self.path}: inputs {missing} missing; the model takes {self.input_names}")
        feed = {n: np.ascontiguousarray(inputs[n]) for n in self.input_names}
        if self.provider == "CUDAExecutionProvider":
            return self._run_cuda(feed)
        return np.asarray(self.session.run([self.output_name], feed)[0], dtype=np.float32)

    def _run_cuda(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        binding = self.session.io_binding()
        for name, value in feed.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output(self.output_name, "cpu")
        self.session.run_with_iobinding(binding)
        return np.asarray(binding.copy_outputs_to_cpu()[0], dtype=np.float32)

    def predict_waves(self, waves: list[np.ndarray], batch_size: int = 8) -> np.ndarray:
        """Probabilities for mono clips, batched by similar length, returned in input order."""
        order = np.argsort([len(w) for w in waves], kind="stable")
        out = np.zeros((len(waves), len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self.predict_proba(self.preprocess([waves[i] for i in idx]))
        return out

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "provider": self.provider, "labels": self.labels,
                "sampling_rate": self.sampling_rate, "input_names": self.input_names}
