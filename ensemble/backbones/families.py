"""What differs between the audio backbones ens fine-tunes, and named configs for random-init models.

`FAMILIES` is keyed by `config.model_type`. Per family it records the input kind (raw waveform or
spectrogram features from the feature extractor), whether the model takes an attention mask, and how
to freeze its feature encoder. The attention-mask rule follows the original checkpoints: models whose
conv feature encoder uses group norm (`feat_extract_norm == "group"`, e.g. wav2vec2-base, hubert-base)
were trained on zero-padded batches without a mask and must not get one; layer-norm ones should.

`NAMED_CONFIGS` builds randomly initialised models by name (tests, offline use, benchmarks); hubs are
not needed for them. This module imports nothing heavy at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ensemble.errors import ConfigError
from ensemble.registry import Registry

WAVEFORM = "waveform"
SPECTROGRAM = "spectrogram"

# The model types whose `...ForSequenceClassification` wraps a conv feature encoder on raw audio.
WAV2VEC2_LIKE = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "unispeech", "unispeech-sat", "sew", "sew-d")


@dataclass(frozen=True)
class Family:
    """How one architecture is fed and frozen.

    `mask_rule`: "always", "never", or "layer-norm" (only when `config.feat_extract_norm == "layer"`).
    `freeze`: what `freeze_feature_encoder` freezes, in words (for the manifest and the docs).
    `default_lr`: a sensible learning rate (pretrained transformers 3e-5; the CNN is trained from scratch;
    for a boosted classical family the boosting rate).
    `trainer`: "torch" (gradient descent on a torch module, `backbones.train`) or "features" (per-clip
    features and one fitted estimator per label, `backbones.classical`).
    """

    model_type: str
    input_kind: str
    mask_rule: str
    freeze: str
    default_lr: float = 3e-5
    trainer: str = "torch"

    def takes_attention_mask(self, config: Any) -> bool:
        """Whether a model with this config should be given an attention mask."""
        if self.mask_rule == "always":
            return True
        if self.mask_rule == "never":
            return False
        return getattr(config, "feat_extract_norm", "layer") == "layer"


FAMILIES: Registry[Family] = Registry("model_type")
for _family in [
    *[Family(t, WAVEFORM, "layer-norm", "conv feature encoder (`freeze_feature_encoder()`)") for t in WAV2VEC2_LIKE
      if t != "data2vec-audio"],
    # data2vec-audio's conv encoder always uses layer norm (its config has no feat_extract_norm).
    Family("data2vec-audio", WAVEFORM, "always",
                             "conv feature encoder (`freeze_feature_encoder()`)"),
    # AST has no conv encoder: its analogue is the patch embedding of the log-mel spectrogram.
    Family("audio-spectrogram-transformer", SPECTROGRAM, "never",
                                            "patch embedding (`embeddings.patch_embeddings`)"),
    # The log-mel front end has no parameters (fixed DFT and mel kernels): nothing to freeze.
    Family("logmel-cnn", WAVEFORM, "never", "nothing (the log-mel front end is fixed)", 1e-3),
    # Classical: fixed per-clip features (no parameters) and one estimator per label, fitted, not trained.
    Family("features-lgbm", WAVEFORM, "never", "nothing (fixed features)", 0.05, trainer="features"),
    Family("features-logreg", WAVEFORM, "never", "nothing (fixed features)", 0.0, trainer="features"),
    Family("features-svm", WAVEFORM, "never", "nothing (fixed features)", 0.0, trainer="features"),
    # The same features plus a pretrained speaker encoder's d-vector (fixed: fitted estimators only).
    Family("features-dvec-lgbm", WAVEFORM, "never", "nothing (fixed features and encoder)", 0.05,
           trainer="features"),
]:
    FAMILIES.add(_family.model_type, _family)


def get_family(model_type: str) -> Family:
    """The family for a `config.model_type`; unknown types raise ConfigError listing the supported ones."""
    return FAMILIES.get(model_type)


def freeze_feature_encoder(module: Any, model_type: str) -> None:
    """Freeze the family's feature encoder in place (see `Family.freeze`); other weights stay trainable."""
    if model_type in WAV2VEC2_LIKE:
        module.freeze_feature_encoder()
    elif model_type == "audio-spectrogram-transformer":
        for p in module.audio_spectrogram_transformer.embeddings.patch_embeddings.parameters():
            p.requires_grad = False
    elif model_type != "logmel-cnn" and get_family(model_type).trainer == "torch":
        raise ConfigError(f"model_type {model_type!r} has no feature-encoder freezing rule")


# ---- named configs: randomly initialised models ---------------------------------------------------

_TINY_CONV = dict(conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8), conv_bias=False)
_TINY_TRANSFORMER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                         classifier_proj_size=16, mask_time_length=2, layerdrop=0.0)


def _hf(config_class: str, **kwargs: Any) -> Callable[[], Any]:
    def make() -> Any:
        import transformers

        return getattr(transformers, config_class)(**kwargs)

    return make


def _logmel() -> Any:
    from ensemble.backbones.logmel import LogMelConfig

    return LogMelConfig()


def _classical(estimator: str, embedding: str = "") -> Callable[[], Any]:
    def make() -> Any:
        from ensemble.backbones.classical import ClassicalConfig
        from ensemble.backbones.features import FeatureSpec

        name = f"features-{'dvec-' if embedding else ''}{estimator}"
        return ClassicalConfig(name, estimator, spec=FeatureSpec(embedding=embedding))

    return make


NAMED_CONFIGS: Registry[Callable[[], Any]] = Registry("named config")
for _name, _make in {
    # Group-norm encoders, like the base checkpoints (no attention mask).
    "tiny-wav2vec2": _hf("Wav2Vec2Config", feat_extract_norm="group", **_TINY_CONV, **_TINY_TRANSFORMER),
    "tiny-hubert": _hf("HubertConfig", feat_extract_norm="group", **_TINY_CONV, **_TINY_TRANSFORMER),
    "tiny-unispeech-sat": _hf("UniSpeechSatConfig", feat_extract_norm="group", **_TINY_CONV,
                              **_TINY_TRANSFORMER),
    "tiny-sew": _hf("SEWConfig", feat_extract_norm="group", squeeze_factor=2, **_TINY_CONV,
                    **{k: v for k, v in _TINY_TRANSFORMER.items() if k != "classifier_proj_size"},
                    classifier_proj_size=16),
    # Layer-norm encoders, like the large checkpoints (attention mask).
    "tiny-wavlm": _hf("WavLMConfig", feat_extract_norm="layer", num_buckets=16, max_bucket_distance=64,
                      **_TINY_CONV, **_TINY_TRANSFORMER),
    # Its positional embedding is a stack of `num_conv_pos_embeddings` conv layers: keep two.
    "tiny-data2vec-audio": _hf("Data2VecAudioConfig", **_TINY_CONV,
                               **{**_TINY_TRANSFORMER, "num_conv_pos_embeddings": 2}, conv_pos_kernel_size=15),
    # 5.12 s of 10-ms frames, 32 mel bins: 2 x 50 patches.
    "tiny-ast": _hf("ASTConfig", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=37, max_length=512, num_mel_bins=32),
    # The real base size (95M parameters), random init: for benchmarks.
    "base-wav2vec2": _hf("Wav2Vec2Config", feat_extract_norm="group"),
    "logmel-cnn": _logmel,
    # Per-clip features + LightGBM / logistic regression, one model per label (seconds per fold on a CPU).
    "features-lgbm": _classical("lgbm"),
    "features-logreg": _classical("logreg"),
    "features-svm": _classical("svm"),
    # The same + a pretrained speaker encoder's d-vector (weights from `pip install --no-deps resemblyzer`).
    "features-dvec-lgbm": _classical("lgbm", "dvector"),
}.items():
    NAMED_CONFIGS.add(_name, _make)


def named_config(name: str) -> Any:
    """A fresh config object for a named random-init model."""
    return NAMED_CONFIGS.get(name)()


def is_classical(model_ref: str) -> bool:
    """Whether `model_ref` names a classical family (features + fitted estimators, no gradient training)."""
    return model_ref in NAMED_CONFIGS and get_family(named_config(model_ref).model_type).trainer == "features"
