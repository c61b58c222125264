"""Backbone table, named configs, preprocessing and save/load of the Classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ensemble.backbones.families import FAMILIES, NAMED_CONFIGS, get_family, named_config
from ensemble.backbones.model import Classifier, build_classifier
from ensemble.backbones.train import predict_proba_torch
from ensemble.errors import ConfigError, DataError

torch.set_num_threads(2)

LABELS = ["fake", "real"]
TINY = [n for n in NAMED_CONFIGS if n.startswith("tiny-")] + ["logmel-cnn"]
GROUP_NORM = ["tiny-wav2vec2", "tiny-hubert", "tiny-unispeech-sat", "tiny-sew"]
LAYER_NORM = ["tiny-wavlm", "tiny-data2vec-audio"]


def waves(*lengths: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in lengths]


@pytest.fixture(scope="module", params=TINY)
def tiny(request: pytest.FixtureRequest) -> Classifier:
    return build_classifier(request.param, LABELS, seed=0)


def test_tiny_builds_and_forward_gives_one_logit_per_label(tiny: Classifier) -> None:
    inputs = tiny.preprocess(waves(7000, 11000, 9000))
    assert list(inputs) == tiny.input_names
    with torch.no_grad():
        logits = tiny.module(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    assert logits.shape == (3, 2)
    assert torch.isfinite(logits).all()
    info = tiny.describe()
    assert 20_000 <= info["n_params"] <= 200_000
    assert info["model_type"] == tiny.family and tiny.family in FAMILIES
    assert tiny.labels == LABELS and tiny.sampling_rate == 16000


@pytest.mark.parametrize("name", GROUP_NORM)
def test_group_norm_encoders_get_no_attention_mask(name: str) -> None:
    clf = build_classifier(name, LABELS)
    assert named_config(name).feat_extract_norm == "group"
    assert clf.input_names == ["input_values"]
    assert "attention_mask" not in clf.preprocess(waves(5000, 8000))


@pytest.mark.parametrize("name", LAYER_NORM)
def test_layer_norm_encoders_get_a_mask_marking_real_samples(name: str) -> None:
    clf = build_classifier(name, LABELS)
    inputs = clf.preprocess(waves(5000, 8000))
    assert clf.input_names == ["input_values", "attention_mask"]
    np.testing.assert_array_equal(inputs["attention_mask"].sum(axis=1), [5000, 8000])
    assert inputs["attention_mask"].dtype == np.int64


def test_mask_rule_follows_the_config_not_the_name() -> None:
    config = named_config("tiny-wav2vec2")
    family = get_family(config.model_type)
    assert not family.takes_attention_mask(config)
    config.feat_extract_norm = "layer"
    assert family.takes_attention_mask(config)
    assert not get_family("audio-spectrogram-transformer").takes_attention_mask(named_config("tiny-ast"))


def test_masked_family_predictions_do_not_depend_on_batch_padding() -> None:
    clf = build_classifier("tiny-wavlm", LABELS)
    a, b = waves(6000, 15000)
    alone = predict_proba_torch(clf, [a], batch_size=1)
    padded = predict_proba_torch(clf, [a, b], batch_size=2)
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-5)


def test_unknown_model_type_and_name_list_what_is_supported(tmp_path) -> None:
    with pytest.raises(ConfigError, match="choose one of: .*wav2vec2"):
        get_family("whisper")
    with pytest.raises(ConfigError, match="named config"):
        build_classifier(str(tmp_path), LABELS)  # a folder without a model
    with pytest.raises(ConfigError, match="unique"):
        build_classifier("tiny-wav2vec2", ["a", "a"])


@pytest.mark.parametrize("name, frozen_prefix", [
    ("tiny-wav2vec2", "model.wav2vec2.feature_extractor."),
    ("tiny-wavlm", "model.wavlm.feature_extractor."),
    ("tiny-ast", "model.audio_spectrogram_transformer.embeddings.patch_embeddings."),
])
def test_freezing_freezes_only_the_feature_encoder(name: str, frozen_prefix: str) -> None:
    clf = build_classifier(name, LABELS)
    clf.freeze_feature_encoder()
    frozen = {n for n, p in clf.module.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(frozen_prefix) for n in frozen)
    encoder = {n for n, _ in clf.module.named_parameters() if n.startswith(frozen_prefix)}
    assert frozen == encoder
    assert clf.describe()["n_trainable"] == clf.describe()["n_params"] - sum(
        p.numel() for n, p in clf.module.named_parameters() if n in frozen)


def test_logmel_cnn_has_nothing_to_freeze() -> None:
    clf = build_classifier("logmel-cnn", LABELS)
    clf.freeze_feature_encoder()
    assert all(p.requires_grad for p in clf.module.parameters())


def test_waveform_preprocessing_normalises_each_clip_alone() -> None:
    clf = build_classifier("tiny-wav2vec2", LABELS)
    short, long = waves(3000, 9000)
    inputs = clf.preprocess([short * 5 + 1, long])
    x = inputs["input_values"]
    assert x.shape == (2, 9000) and x.dtype == np.float32
    assert abs(x[0, :3000].mean()) < 1e-4 and abs(x[0, :3000].std() - 1) < 1e-3
    assert np.all(x[0, 3000:] == 0)  # padding, untouched by the normalisation
    np.testing.assert_allclose(clf.preprocess([short])["input_values"][0], x[0, :3000], rtol=1e-5, atol=1e-5)


def test_ast_features_have_the_configured_fixed_shape() -> None:
    clf = build_classifier("tiny-ast", LABELS)
    x = clf.preprocess(waves(4000, 90000))["input_values"]
    assert x.shape == (2, 512, 32)


@pytest.mark.parametrize("bad", [[], [np.zeros((2, 100), np.float32)], [np.zeros(0, np.float32)]])
def test_preprocess_rejects_bad_waveforms(bad: list) -> None:
    with pytest.raises(DataError):
        build_classifier("logmel-cnn", LABELS).preprocess(bad)


def test_seed_fixes_the_initial_weights() -> None:
    def head(seed: int) -> torch.Tensor:
        return build_classifier("tiny-hubert", LABELS, seed=seed).module.model.classifier.weight.detach()

    assert torch.equal(head(3), head(3))
    assert not torch.equal(head(3), head(4))


@pytest.mark.parametrize("name", ["tiny-wav2vec2", "tiny-wavlm", "tiny-ast", "logmel-cnn"])
def test_save_load_round_trip_predicts_the_same(name: str, tmp_path) -> None:
    tmp_path = tmp_path / "ckpt"
    clf = build_classifier(name, LABELS, seed=1)
    clip = waves(6000, 9000)
    before = predict_proba_torch(clf, clip, batch_size=2)
    clf.save(tmp_path / "m")
    clf.save(tmp_path / "m")  # overwriting an existing folder works
    loaded = Classifier.load(tmp_path / "m")
    np.testing.assert_array_equal(predict_proba_torch(loaded, clip, batch_size=2), before)
    assert loaded.describe() == clf.describe()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp folders left
    again = build_classifier(str(tmp_path / "m"), LABELS)
    np.testing.assert_array_equal(predict_proba_torch(again, clip, batch_size=2), before)
    with pytest.raises(ConfigError, match="trained for labels"):
        build_classifier(str(tmp_path / "m"), ["a", "b"])
