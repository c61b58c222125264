"""Waveforms → model inputs: the one preprocessing path for training, PyTorch and ONNX Runtime inference.

A `Preprocessor` is plain data (a dict that fits in ONNX metadata), so `ens oof` can rebuild it from an
ONNX file alone, without model weights. Each clip goes through the feature extractor on its own (its
normalisation then never depends on what else is in the batch), and the batch is padded to a common
length along time with the extractor's padding value; the attention mask (1 = real sample) is only
produced for families that take one.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ensemble.errors import DataError

RAW = "raw"  # pad the waveform only; the model normalises (logmel-cnn)
HF = "hf"  # a transformers feature extractor, rebuilt from its class name and config dict


class Preprocessor:
    """Callable `list[(samples,) float] -> {"input_values": ..., ["attention_mask": ...]}` (numpy)."""

    def __init__(self, kind: str, sampling_rate: int, takes_attention_mask: bool,
                 extractor_class: str | None = None, extractor_config: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.sampling_rate = int(sampling_rate)
        self.takes_attention_mask = bool(takes_attention_mask)
        self.extractor_class = extractor_class
        self.extractor_config = extractor_config
        self._extractor: Any = None

    @property
    def input_names(self) -> list[str]:
        return ["input_values", "attention_mask"] if self.takes_attention_mask else ["input_values"]

    def _extract(self, wave: np.ndarray) -> tuple[np.ndarray, float]:
        """One clip's features, time first, and the padding value to use for it."""
        if self.kind == RAW:
            return wave, 0.0
        if self._extractor is None:
            import transformers

            cls = getattr(transformers, str(self.extractor_class))
            self._extractor = cls.from_dict(dict(self.extractor_config or {}))
        out = self._extractor(wave, sampling_rate=self.sampling_rate, return_tensors="np")
        return np.asarray(out["input_values"][0], dtype=np.float32), float(self._extractor.padding_value)

    def __call__(self, waves: list[np.ndarray]) -> dict[str, np.ndarray]:
        if len(waves) == 0:
            raise DataError("preprocess got an empty list of waveforms; pass at least one clip")
        feats, pad_value = [], 0.0
        for i, w in enumerate(waves):
            w = np.asarray(w, dtype=np.float32)
            if w.ndim != 1 or w.size == 0:
                raise DataError(f"waveform {i} has shape {w.shape}; expected a non-empty mono (samples,) array")
            f, pad_value = self._extract(w)
            feats.append(f)
        length = max(f.shape[0] for f in feats)
        values = np.full((len(feats), length, *feats[0].shape[1:]), pad_value, dtype=np.float32)
        mask = np.zeros((len(feats), length), dtype=np.int64)
        for i, f in enumerate(feats):
            values[i, : f.shape[0]] = f
            mask[i, : f.shape[0]] = 1
        inputs = {"input_values": values}
        if self.takes_attention_mask:
            inputs["attention_mask"] = mask
        return inputs

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "sampling_rate": self.sampling_rate,
                "takes_attention_mask": self.takes_attention_mask,
                "extractor_class": self.extractor_class, "extractor_config": self.extractor_config}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessor":
        return cls(d["kind"], d["sampling_rate"], d["takes_attention_mask"],
                   d.get("extractor_class"), d.get("extractor_config"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def from_extractor(extractor: Any, takes_attention_mask: bool) -> Preprocessor:
    """A Preprocessor from a live transformers feature extractor (hub or named config)."""
    config = extractor.to_dict()
    config.pop("processor_class", None)
    return Preprocessor(HF, extractor.sampling_rate, takes_attention_mask,
                        type(extractor).__name__, json.loads(json.dumps(config, default=_jsonable)))


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"feature-extractor config value {x!r} is not JSON serialisable")
