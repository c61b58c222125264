"""`build_classifier`: one multi-label audio classifier from a named config, a local folder or a hub id.

The `Classifier` bundles a torch module whose `forward(**inputs)` returns logits `(batch, labels)` (one
sigmoid per label; the caller computes BCE, since the library heads hard-code other losses), its
preprocessing (`preprocess`, the same for training and for torch and ONNX inference) and what the manifest
needs to explain it. `save`/`load` write a self-contained folder: `ens_classifier.json` (labels, family,
preprocessing), `config.json` and `model.safetensors`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.backbones.families import NAMED_CONFIGS, Family, get_family, named_config
from ensemble.backbones.preprocess import RAW, Preprocessor, from_extractor
from ensemble.errors import ConfigError, DataError
from ensemble.artifacts.io import read_json, umask_mode
from ensemble.artifacts.records import ClassifierManifest
from ensemble.task import MULTILABEL

CLASSIFIER_MANIFEST_FILE = "ens_classifier.json"


def _logits_module(model: Any, takes_mask: bool, pooling: str = "mean") -> Any:
    """Wrap a transformers classifier so `forward(input_values[, attention_mask])` returns logits.

    `mean` and `weighted` pooling are Hugging Face's own head (`weighted` through the config's
    `use_weighted_layer_sum`); `attention` and `stats` pool the frames in `backbones.pooling`.
    """
    from torch import nn

    if pooling not in ("mean", "weighted"):
        from ensemble.backbones.pooling import pooled_logits_module

        return pooled_logits_module(model, takes_mask, pooling)

    class LogitsOnly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_values: Any, attention_mask: Any = None) -> Any:
            if takes_mask:
                return self.model(input_values=input_values, attention_mask=attention_mask).logits
            return self.model(input_values=input_values).logits

    return LogitsOnly()


class Classifier:
    """A multi-label audio classifier: `.module`, `.preprocess`, `.labels`, `.sampling_rate`, `.family`."""

    def __init__(self, module: Any, model_ref: str, labels: list[str], model_type: str,
                 preprocessor: Preprocessor, config: dict[str, Any], pooling: str = "mean") -> None:
        self.module = module
        self.model_ref = model_ref
        self.labels = list(labels)
        self.family = model_type
        self.preprocessor = preprocessor
        self.pooling = pooling
        self.config = json.loads(json.dumps(config, default=str))  # JSON-clean, as the manifest stores it
        self.task = MULTILABEL  # MULTICLASS: one softmax over the labels (cross-entropy), not a sigmoid each

    def probabilities(self, logits: Any) -> Any:
        """The head's activation on torch logits `(batch, labels)`: the task's (sigmoid or softmax)."""
        import torch

        activations = {"sigmoid": torch.sigmoid, "softmax": lambda z: torch.softmax(z, dim=-1)}
        return activations[self.task.activation](logits)

    @property
    def family_info(self) -> Family:
        return get_family(self.family)

    @property
    def sampling_rate(self) -> int:
        return self.preprocessor.sampling_rate

    @property
    def input_names(self) -> list[str]:
        return self.preprocessor.input_names

    def preprocess(self, waves: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Mono waveforms at `sampling_rate` → padded numpy inputs for `module(**inputs)`."""
        return self.preprocessor(waves)

    def freeze_feature_encoder(self) -> None:
        from ensemble.backbones.families import freeze_feature_encoder

        freeze_feature_encoder(self._inner(), self.family)

    def freeze(self, spec: str) -> None:
        """Freeze weights by a `--freeze` scheme (`backbones.freezing`): none, feature-encoder, first:N,
        all-but-head."""
        from ensemble.backbones.freezing import apply_freeze

        apply_freeze(self._inner(), self.family, spec)

    def _inner(self) -> Any:
        return getattr(self.module, "model", self.module)

    def describe(self) -> dict[str, Any]:
        params = list(self.module.parameters())
        return {"model_ref": self.model_ref, "model_type": self.family, "labels": self.labels,
                "sampling_rate": self.sampling_rate, "input_names": self.input_names,
                "input_kind": self.family_info.input_kind, "config": self.config, "pooling": self.pooling,
                "n_params": int(sum(p.numel() for p in params)),
                "n_trainable": int(sum(p.numel() for p in params if p.requires_grad))}

    def save(self, directory: Path) -> None:
        """Write the classifier to `directory` atomically (a sibling temp folder, then renames)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        tmp.chmod(umask_mode(directory=True))
        state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(self.config, indent=1, sort_keys=True))
        manifest = ClassifierManifest(self.model_ref, self.labels, self.family, self.preprocessor.to_dict(),
                                      self.pooling)
        (tmp / CLASSIFIER_MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=1))
        _replace_dir(tmp, directory)

    @classmethod
    def load(cls, directory: Path) -> "Classifier":
        """Rebuild a classifier written by `save` (no hub access)."""
        directory = Path(directory)
        if not (directory / CLASSIFIER_MANIFEST_FILE).is_file():
            raise ConfigError(f"{directory} holds no {CLASSIFIER_MANIFEST_FILE}; "
                              "expected a folder written by Classifier.save")
        manifest = read_classifier_manifest(directory)
        config = json.loads((directory / "config.json").read_text())
        preprocessor = Preprocessor.from_dict(manifest.preprocessor)
        pooling = manifest.pooling or "mean"
        module = _module_from_config(manifest.model_type, config, preprocessor.takes_attention_mask, pooling)
        load_weights(module, directory / "model.safetensors")
        if hasattr(module, "model"):
            config = module.model.config.to_dict()
        return cls(module, manifest.model_ref, manifest.labels, manifest.model_type, preprocessor, config, pooling)


def load_weights(module: Any, path: Path, device: str | None = None, hint: str = "") -> None:
    """Weights of a safetensors file into `module`; a file that is no safetensors file, or whose tensors do
    not fit the module, is a DataError naming it (`hint`: what the user can do, e.g. delete a checkpoint)."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device=device or "cpu")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found{hint}") from None
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError for short files)
        raise DataError(f"{path}: not a readable safetensors file ({str(err).splitlines()[0][:120]}){hint}") from None
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise DataError(f"{path}: its tensors do not fit this model ({str(err).splitlines()[0][:160]}){hint}") from None


PICKLED_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt")


def check_pickled_weights(folder: Path) -> None:
    """A local model folder's pickled weights (`pytorch_model.bin`, …) parsed the way transformers will load
    them (`weights_only`, tensors memory-mapped, so only the pickle's small structure is read): a file naming
    a Python object that could run code is refused here, in one line, before any compute."""
    import pickle

    import torch

    for name in PICKLED_WEIGHTS:
        path = folder / name
        if not path.is_file() or (folder / "model.safetensors").is_file():
            continue
        try:
            try:
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:  # the legacy (non-zip) format cannot be memory-mapped: read it whole
                if "mmap" not in str(exc):
                    raise
                torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
            found = re.search(r"GLOBAL (\S+)", str(exc))
            reason = (f"it names the Python object {found.group(1)}, which could run code when loaded" if found
                      else f"not a checkpoint of tensors ({str(exc).splitlines()[0][:120]})")
            raise DataError(f"{path}: refused to load these weights: {reason}; use a model.safetensors file") from None


def _replace_dir(tmp: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    if old.exists():
        shutil.rmtree(old)


def _module_from_config(model_type: str, config: dict[str, Any], takes_mask: bool, pooling: str = "mean") -> Any:
    if model_type == "logmel-cnn":
        from ensemble.backbones.logmel import LogMelCNN, LogMelConfig

        return LogMelCNN(LogMelConfig.from_dict(config))
    from transformers import AutoModelForAudioClassification
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    hf_config = CONFIG_MAPPING[model_type].from_dict(config)
    return _logits_module(AutoModelForAudioClassification.from_config(hf_config), takes_mask, pooling)


def _label_maps(labels: list[str]) -> dict[str, Any]:
    return {"num_labels": len(labels), "problem_type": "multi_label_classification",
            "id2label": dict(enumerate(labels)), "label2id": {name: i for i, name in enumerate(labels)}}


def _named_extractor(model_type: str, config: Any, takes_mask: bool) -> Any:
    import transformers

    if model_type == "audio-spectrogram-transformer":
        return transformers.ASTFeatureExtractor(num_mel_bins=config.num_mel_bins, max_length=config.max_length)
    return transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                                 do_normalize=True, return_attention_mask=takes_mask)


def build_classifier(model_ref: str, labels: list[str], seed: int = 0, overrides: dict[str, Any] | None = None,
                     pooling: str = "mean") -> Classifier:
    """A classifier with a fresh `len(labels)`-way sigmoid head; weights seeded by `seed` where random.

    `overrides` (`--model-config`) change the backbone's config before the model is built;
    `pooling` (`backbones.pooling`) how its frames become one vector.
    """
    import torch

    if not labels or len(set(labels)) != len(labels):
        raise ConfigError(f"labels must be non-empty and unique; got {labels!r}")
    overrides = dict(overrides or {})
    torch.manual_seed(seed)
    if model_ref in NAMED_CONFIGS:
        return _build_named(model_ref, labels, overrides, pooling)
    if Path(model_ref).is_dir() and (Path(model_ref) / CLASSIFIER_MANIFEST_FILE).is_file():
        clf = Classifier.load(Path(model_ref))
        if clf.labels != list(labels):
            raise ConfigError(f"{model_ref} was trained for labels {clf.labels}; asked for {labels}")
        if overrides or pooling != clf.pooling:
            raise ConfigError(f"{model_ref} is a classifier trained by ens: its config and pooling "
                              f"({clf.pooling}) are fixed; --model-config and --pooling do not apply")
        return clf
    return _build_pretrained(model_ref, labels, overrides, pooling)


def load_config(model_ref: str) -> Any:
    """The config MODEL would be built from (named: a fresh one; folders and hub ids: their config)."""
    if model_ref in NAMED_CONFIGS:
        return named_config(model_ref)
    path = Path(model_ref)
    if path.is_dir() and (path / CLASSIFIER_MANIFEST_FILE).is_file():
        return _config_object(read_classifier_manifest(path).model_type, json.loads((path / "config.json").read_text()))
    from transformers import AutoConfig

    _quiet_hub()
    try:
        return AutoConfig.from_pretrained(model_ref)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model {model_ref!r}: its config could not be read: {str(exc).splitlines()[0]}") from None


def default_freeze(model_ref: str) -> str:
    """`--freeze`'s default: the feature encoder of a pretrained checkpoint; nothing for a named config
    (random weights) or a saved log-mel CNN (its front end has no weights)."""
    if model_ref in NAMED_CONFIGS:
        return "none"
    saved = Path(model_ref)
    if (saved / CLASSIFIER_MANIFEST_FILE).is_file() and read_classifier_manifest(saved).model_type == "logmel-cnn":
        return "none"
    return "feature-encoder"


def read_classifier_manifest(directory: Path) -> ClassifierManifest:
    """A saved classifier's `ens_classifier.json`, checked (a broken or hand-edited one is one line naming it)."""
    path = Path(directory) / CLASSIFIER_MANIFEST_FILE
    return ClassifierManifest.from_dict(read_json(path), path)


def _config_object(model_type: str, config: dict[str, Any]) -> Any:
    if model_type == "logmel-cnn":
        from ensemble.backbones.logmel import LogMelConfig

        return LogMelConfig.from_dict(config)
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return CONFIG_MAPPING[model_type].from_dict(config)


def check_knobs(model_ref: str, overrides: dict[str, Any], freeze: str, pooling: str) -> dict[str, Any]:
    """Check `--model-config`, `--freeze` and `--pooling` against MODEL's config before any compute;
    returns the overrides in the config's types."""
    from ensemble.backbones.freezing import check_freeze
    from ensemble.backbones.overrides import apply_overrides, check_overrides
    from ensemble.backbones.pooling import check_pooling

    config = load_config(model_ref)
    family = get_family(config.model_type)
    if overrides and family.trainer != "torch":
        raise ConfigError(f"--model-config: {config.model_type} is a classical family; it has no backbone config")
    checked = check_overrides(config, overrides)
    check_pooling(pooling, config.model_type)
    check_freeze(freeze, config.model_type, apply_overrides(config, _with_pooling(config, checked, pooling)))
    return checked


def _with_pooling(config: Any, overrides: dict[str, Any], pooling: str) -> dict[str, Any]:
    """`weighted` pooling is the config's `use_weighted_layer_sum` (SUPERB's learned layer weights).

    A weighted sum needs every layer's hidden state, and transformers records none for a layer that layer
    drop skips (the sum then fails mid-training), so layer drop goes off with it: refused when asked for."""
    if pooling != "weighted" and not overrides.get("use_weighted_layer_sum"):
        return overrides
    if overrides.get("layerdrop"):
        raise ConfigError(f"--pooling weighted (use_weighted_layer_sum) needs every layer's output, and layerdrop "
                          f"{overrides['layerdrop']} skips layers; leave layerdrop out or set it to 0")
    off = {"layerdrop": 0.0} if getattr(config, "layerdrop", 0.0) else {}
    return {**overrides, "use_weighted_layer_sum": True, **off}


def _build_named(name: str, labels: list[str], overrides: dict[str, Any], pooling: str) -> Classifier:
    from ensemble.backbones.overrides import apply_overrides
    from ensemble.backbones.pooling import check_pooling

    config = named_config(name)
    check_pooling(pooling, config.model_type)
    config = apply_overrides(config, _with_pooling(config, overrides, pooling))
    family = get_family(config.model_type)
    if config.model_type == "logmel-cnn":
        from ensemble.backbones.logmel import LogMelCNN

        config.num_labels, config.id2label = len(labels), dict(enumerate(labels))
        pre = Preprocessor(RAW, config.sampling_rate, False)
        return Classifier(LogMelCNN(config), name, labels, "logmel-cnn", pre, config.to_dict())
    from transformers import AutoModelForAudioClassification

    for key, value in _label_maps(labels).items():
        setattr(config, key, value)
    takes_mask = family.takes_attention_mask(config)
    model = AutoModelForAudioClassification.from_config(config)
    pre = from_extractor(_named_extractor(config.model_type, config, takes_mask), takes_mask)
    return Classifier(_logits_module(model, takes_mask, pooling), name, labels, config.model_type, pre,
                      config.to_dict(), pooling)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached (one short DNS + TCP try, no retries), or None when it can."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}: {exc.strerror or exc}"


def _in_cache(model_ref: str) -> bool:
    """Whether the hub model's config is in the local Hugging Face cache (usable offline)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(model_ref, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def check_model_ref(model_ref: str) -> str:
    """Where MODEL comes from: 'named', 'folder' or 'hub', checked in a second before any compute.

    Named configs and local folders are looked up first; a hub id that is not cached fails at once when
    `HF_HUB_OFFLINE` is set or the hub is unreachable, instead of after half a minute of retries.
    """
    import difflib

    if model_ref in NAMED_CONFIGS:
        return "named"
    path = Path(model_ref).expanduser()
    if path.is_dir():
        if (path / CLASSIFIER_MANIFEST_FILE).is_file() or (path / "config.json").is_file():
            check_pickled_weights(path)
            return "folder"
        raise ConfigError(f"{path}: this folder holds no config.json ({CLASSIFIER_MANIFEST_FILE}); it is not a model")
    close = difflib.get_close_matches(model_ref, list(NAMED_CONFIGS), n=2, cutoff=0.5)
    known = (f"did you mean {' or '.join(close)}? " if close else "") + f"named configs: {', '.join(NAMED_CONFIGS)}"
    if path.exists() or model_ref.startswith((".", "/", "~")) or model_ref.count("/") > 1:
        raise ConfigError(f"model {model_ref!r}: no such model folder ({known})")
    if _in_cache(model_ref):
        return "hub"
    if _truthy(os.environ.get("HF_HUB_OFFLINE")):
        raise ConfigError(f"model {model_ref!r} is not a named config, a local folder or a cached hub model, "
                          f"and HF_HUB_OFFLINE is set ({known})")
    reason = _hub_unreachable()
    if reason:
        raise ConfigError(f"model {model_ref!r} is not a named config or a local folder, and the hub is "
                          f"unreachable ({reason}); {known}")
    return "hub"


def _quiet_hub() -> None:
    """Keep the hub libraries' retry and download chatter off the terminal (errors still raise)."""
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as tf_logging

    hub_logging.set_verbosity_error()
    tf_logging.set_verbosity_error()


def _build_pretrained(model_ref: str, labels: list[str], overrides: dict[str, Any], pooling: str) -> Classifier:
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

    _quiet_hub()
    try:
        config = AutoConfig.from_pretrained(model_ref)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"model {model_ref!r} is not a named config ({', '.join(NAMED_CONFIGS)}), a local model folder "
            f"or a reachable hub id: {str(exc).splitlines()[0]}"
        ) from None
    from ensemble.backbones.overrides import apply_overrides
    from ensemble.backbones.pooling import check_pooling

    family = get_family(config.model_type)
    check_pooling(pooling, config.model_type)
    overrides = _with_pooling(config, overrides, pooling)
    takes_mask = family.takes_attention_mask(config)
    if overrides:  # a rebuilt config, so attributes derived from the overridden ones follow
        config = apply_overrides(config, overrides)
        for key, value in _label_maps(labels).items():
            setattr(config, key, value)
        takes_mask = family.takes_attention_mask(config)
        model = AutoModelForAudioClassification.from_pretrained(model_ref, config=config, ignore_mismatched_sizes=True)
    else:
        model = AutoModelForAudioClassification.from_pretrained(model_ref, ignore_mismatched_sizes=True,
                                                                **_label_maps(labels))
    extractor = AutoFeatureExtractor.from_pretrained(model_ref)
    pre = from_extractor(extractor, takes_mask)
    return Classifier(_logits_module(model, takes_mask, pooling), model_ref, labels, config.model_type, pre,
                      model.config.to_dict(), pooling)
