"""The fine-tuning knobs reach the model: config overrides, freezing, schedules, clipping, pooling."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ensemble.backbones.model import Classifier, build_classifier, check_knobs
from ensemble.cli.config import parse_params
from ensemble.backbones.schedules import check_schedule, lr_factor
from ensemble.backbones.train import TrainConfig, _Trainer, predict_proba_torch
from ensemble.errors import ConfigError

torch.set_num_threads(2)
LABELS = ["fake", "real"]


def waves(*lengths: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in lengths]


# ---- --model-config ------------------------------------------------------------------------------------

def test_config_overrides_reach_the_built_model_and_its_saved_config(tmp_path: Path) -> None:
    overrides = parse_params(["attention_dropout=0.25", "classifier_proj_size=8", "apply_spec_augment=false",
                                 "conv_dim=[16,16,16]"])
    clf = build_classifier("tiny-wav2vec2", LABELS, overrides=check_knobs("tiny-wav2vec2", overrides, "none", "mean"))
    hf = clf.module.model
    assert hf.config.attention_dropout == 0.25 and hf.config.apply_spec_augment is False
    assert hf.projector.out_features == 8
    assert hf.wav2vec2.encoder.layers[0].attention.dropout == 0.25
    assert hf.wav2vec2.feature_extractor.conv_layers[0].conv.out_channels == 16  # derived sizes follow
    clf.save(tmp_path / "m")
    back = Classifier.load(tmp_path / "m")
    assert back.module.model.config.attention_dropout == 0.25 and back.module.model.projector.out_features == 8
    cnn = build_classifier("logmel-cnn", LABELS, overrides={"dropout": 0.4, "channels": [8, 16]})
    assert cnn.module.dropout.p == 0.4 and cnn.module.head.in_features == 16


def test_overrides_and_pooling_reach_a_pretrained_checkpoint_folder(tmp_path: Path) -> None:
    """The hub path (`from_pretrained`), on a local folder: overridden config, trained weights kept."""
    import transformers

    from ensemble.backbones.families import named_config

    config = named_config("tiny-wav2vec2")
    transformers.Wav2Vec2ForSequenceClassification(config).save_pretrained(tmp_path / "ckpt")
    transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, return_attention_mask=False,
                                          do_normalize=True).save_pretrained(tmp_path / "ckpt")
    saved = transformers.Wav2Vec2ForSequenceClassification.from_pretrained(tmp_path / "ckpt").state_dict()
    clf = build_classifier(str(tmp_path / "ckpt"), LABELS, overrides={"layerdrop": 0.3, "attention_dropout": 0.2},
                           pooling="attention")
    hf = clf.module.model
    assert hf.config.layerdrop == 0.3 and hf.wav2vec2.encoder.layers[1].attention.dropout == 0.2
    assert hf.config.num_labels == 2 and hf.config.id2label == {0: "fake", 1: "real"}
    key = "wav2vec2.encoder.layers.1.feed_forward.output_dense.weight"
    assert torch.equal(hf.state_dict()[key], saved[key])  # the checkpoint's weights, not a fresh init
    assert clf.pooling == "attention" and clf.describe()["pooling"] == "attention"


@pytest.mark.parametrize("items, message", [
    (["attention_dropot=0.1"], "Wav2Vec2Config has no such key; did you mean attention_dropout"),
    (["attention_dropout=high"], 'attention_dropout="high": expected float'),
    (["apply_spec_augment=1"], "apply_spec_augment=1: expected bool"),
    (["num_hidden_layers=2.5"], "num_hidden_layers=2.5: expected int"),
    (["conv_dim=[32,\"a\",32]"], "expected int"),
    (["num_labels=3"], "ens sets num_labels itself"),
    (["layerdrop"], "takes key=value"),
])
def test_bad_config_overrides_fail_in_one_line(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as caught:
        check_knobs("tiny-wav2vec2", parse_params(items, "--model-config"), "none", "mean")
    assert "\n" not in str(caught.value)


def test_classical_families_take_no_knobs() -> None:
    with pytest.raises(ConfigError, match="classical family"):
        check_knobs("features-lgbm", {"dropout": 0.1}, "none", "mean")
    with pytest.raises(ConfigError, match="only none applies"):
        check_knobs("features-lgbm", {}, "all-but-head", "mean")


# ---- --freeze --------------------------------------------------------------------------------------------

def _batch(clf: Classifier, n: int = 4) -> tuple[dict, torch.Tensor]:
    inputs = clf.preprocess(waves(*[8000] * n))
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]] * (n // 2))
    return {k: torch.from_numpy(v) for k, v in inputs.items()}, y


@pytest.mark.parametrize("name, spec, frozen, trained", [
    ("tiny-wav2vec2", "first:1", ["wav2vec2.feature_extractor.", "wav2vec2.feature_projection.",
                                  "wav2vec2.encoder.pos_conv_embed.", "wav2vec2.encoder.layers.0."],
     ["wav2vec2.encoder.layers.1.", "projector.", "classifier."]),
    ("tiny-ast", "first:1", ["audio_spectrogram_transformer.embeddings.", "audio_spectrogram_transformer.layers.0."],
     ["audio_spectrogram_transformer.layers.1.", "audio_spectrogram_transformer.layernorm.", "classifier."]),
    ("tiny-hubert", "all-but-head", ["hubert."], ["projector.", "classifier."]),
    ("logmel-cnn", "first:2", ["input_norm.", "blocks.0.", "blocks.1.", "blocks.4.", "blocks.5."],
     ["blocks.8.", "blocks.9.", "head."]),
])
def test_frozen_weights_get_no_gradient_and_do_not_move(name, spec, frozen, trained) -> None:
    clf = build_classifier(name, LABELS, seed=0)
    config = TrainConfig(lr=1e-2, epochs=1, batch_size=4, grad_accum=1, device="cpu", freeze=spec)
    trainer = _Trainer(clf, config, "cpu", "fp32", total=10)
    before = {n: p.detach().clone() for n, p in clf.module.named_parameters()}
    inputs, y = _batch(clf)
    clf.module.train()
    torch.nn.functional.binary_cross_entropy_with_logits(clf.module(**inputs), y).backward()
    params = dict(clf.module.named_parameters())
    inner = "" if name == "logmel-cnn" else "model."
    for prefix in frozen:
        names = [n for n in params if n.startswith(inner + prefix)]
        assert names and all(params[n].grad is None and not params[n].requires_grad for n in names), prefix
    for prefix in trained:
        names = [n for n in params if n.startswith(inner + prefix)]
        assert names and all(params[n].grad is not None for n in names), prefix
    trainer._step(1)
    for n, p in params.items():
        moved = not torch.equal(before[n], p.detach())
        assert moved == p.requires_grad, n
    n_trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    assert clf.describe()["n_trainable"] == n_trainable < clf.describe()["n_params"]


@pytest.mark.parametrize("model, spec, message", [
    ("tiny-wav2vec2", "first:3", "tiny|has 2 transformer layers"),
    ("tiny-wav2vec2", "first:0", "choose one of"),
    ("tiny-wav2vec2", "encoder", "choose one of none, feature-encoder, first:N, all-but-head"),
    ("logmel-cnn", "feature-encoder", "no trainable weights"),
    ("logmel-cnn", "first:4", "has 3 conv blocks"),
])
def test_freezing_a_family_cannot_do_is_refused(model: str, spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_knobs(model, {}, spec, "mean")


def test_first_n_counts_the_overridden_number_of_layers() -> None:
    check_knobs("tiny-wav2vec2", {"num_hidden_layers": 4}, "first:3", "mean")


# ---- --schedule, --warmup, --hold ----------------------------------------------------------------------

@pytest.mark.parametrize("schedule, hold, expected", [
    # steps 0, 9 (end of warm-up), 30, 55, 99 of 100, warm-up 10 %
    ("cosine", 0.0, [0.1, 1.0, 0.5 * (1 + math.cos(math.pi * 20 / 90)), 0.5, 0.5 * (1 + math.cos(math.pi * 89 / 90))]),
    ("linear", 0.0, [0.1, 1.0, 1 - 20 / 90, 0.5, 1 - 89 / 90]),
    ("constant", 0.0, [0.1, 1.0, 1.0, 1.0, 1.0]),
    ("tri-stage", 0.4, [0.1, 1.0, 1.0, 1 - 5 / 50, 1 - 49 / 50]),
])
def test_each_schedule_gives_its_rate_at_given_steps_in_the_optimizer(schedule, hold, expected) -> None:
    steps = [0, 9, 30, 55, 99]
    assert [lr_factor(s, 100, 0.1, schedule, hold) for s in steps] == pytest.approx(expected)
    clf = build_classifier("logmel-cnn", LABELS, seed=0)
    config = TrainConfig(lr=0.01, epochs=1, device="cpu", freeze="none", schedule=schedule, hold=hold)
    trainer = _Trainer(clf, config, "cpu", "fp32", total=100)
    seen = []
    trainer.optimizer.step()  # no gradients: changes nothing, keeps torch from warning about the order
    for step in range(100):
        if step in steps:
            seen.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.scheduler.step()
    assert seen == pytest.approx([0.01 * e for e in expected])


def test_the_default_schedule_is_the_one_ens_always_had() -> None:
    def before(step: int, total: int, warmup: float) -> float:  # train.py's formula before the knobs
        warm = max(1, int(round(warmup * total)))
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    for total in (1, 7, 40, 333):
        assert [lr_factor(s, total, 0.1) for s in range(total)] == [before(s, total, 0.1) for s in range(total)]


@pytest.mark.parametrize("args, message", [
    (("cosine", 0.1, 0.4), "tri-stage schedule only"),
    (("tri-stage", 0.7, 0.4), "must not pass 1"),
    (("warm", 0.1, 0.0), "unknown schedule 'warm'"),
    (("linear", 1.5, 0.0), "fraction of the steps"),
])
def test_bad_schedules_are_refused(args, message) -> None:
    with pytest.raises(ConfigError, match=message):
        check_schedule(*args)


# ---- --max-grad-norm -----------------------------------------------------------------------------------

@pytest.mark.parametrize("max_norm", [0.01, None])
def test_gradient_clipping_on_and_off(max_norm) -> None:
    clf = build_classifier("logmel-cnn", LABELS, seed=0)
    config = TrainConfig(lr=1e-3, epochs=1, batch_size=4, grad_accum=1, device="cpu", freeze="none",
                         max_grad_norm=max_norm)
    trainer = _Trainer(clf, config, "cpu", "fp32", total=10)
    norms = []
    trainer.optimizer.register_step_pre_hook(lambda opt, args, kwargs: norms.append(float(torch.norm(torch.stack(
        [p.grad.norm() for g in opt.param_groups for p in g["params"] if p.grad is not None])))))
    inputs, y = _batch(clf)
    clf.module.train()
    (torch.nn.functional.binary_cross_entropy_with_logits(clf.module(**inputs), y) * 100).backward()
    trainer._step(1)
    (norm,) = norms
    if max_norm is None:
        assert norm > 1.0
    else:
        assert norm == pytest.approx(max_norm, rel=1e-3)


# ---- --pooling -----------------------------------------------------------------------------------------

def test_pooling_a_family_without_frames_is_refused() -> None:
    for model in ("tiny-ast", "logmel-cnn"):
        with pytest.raises(ConfigError, match="no frame features to pool"):
            check_knobs(model, {}, "none", "stats")
    with pytest.raises(ConfigError, match="unknown pooling 'max'"):
        check_knobs("tiny-wav2vec2", {}, "none", "max")


@pytest.mark.parametrize("pooling", ["attention", "stats"])
def test_masked_pooling_ignores_the_padding(pooling: str) -> None:
    """A layer-norm family takes a mask: a clip scores the same alone and padded beside a longer one."""
    clf = build_classifier("tiny-wavlm", LABELS, seed=1, pooling=pooling)
    short, long = waves(6000, 14000)
    alone = predict_proba_torch(clf, [short], batch_size=1, device="cpu")
    padded = predict_proba_torch(clf, [short, long], batch_size=2, device="cpu")
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-5)


def _lively(clf: Classifier) -> Classifier:
    """Heads of unit-scale weights: a random-init head's probabilities barely leave 0.5, which would make
    any pooling (and any parity) look alike."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in clf.module.named_parameters():
            if name.startswith(("model.projector.", "model.classifier.", "pool.")) and p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
            if name == "model.layer_weights":  # learned weights that favour the first hidden states
                p.copy_(torch.linspace(2.0, -2.0, p.numel()))
    return clf


@pytest.mark.slow
@pytest.mark.parametrize("name, pooling", [("tiny-wav2vec2", "attention"), ("tiny-wavlm", "stats"),
                                           ("tiny-wav2vec2", "weighted")])
def test_pooling_heads_reach_the_model_save_and_export_with_parity(name: str, pooling: str, tmp_path: Path) -> None:
    from ensemble.backbones.onnx_export import export_onnx, measure_parity

    clf = _lively(build_classifier(name, LABELS, seed=3, pooling=pooling))
    mean = _lively(build_classifier(name, LABELS, seed=3))
    probe = waves(21000, 9000, 15000, seed=4)
    p = predict_proba_torch(clf, probe, batch_size=3, device="cpu")
    assert p.std() > 0.01  # predictions that differ between clips
    assert np.abs(p - predict_proba_torch(mean, probe, batch_size=3, device="cpu")).max() > 1e-3
    if pooling == "weighted":
        assert clf.module.model.config.use_weighted_layer_sum and clf.module.model.layer_weights.requires_grad
    else:
        assert isinstance(clf.module.pool, torch.nn.Module)
    clf.save(tmp_path / "m")
    back = Classifier.load(tmp_path / "m")
    assert back.pooling == pooling
    np.testing.assert_array_equal(predict_proba_torch(back, probe, batch_size=3, device="cpu"), p)
    export_onnx(clf, tmp_path / "model.onnx", {"run_id": "r"})
    assert measure_parity(clf, tmp_path / "model.onnx", probe) <= 1e-4


def test_bad_knobs_fail_on_the_command_line_before_the_audio_is_read(csv_competition) -> None:
    """csv_competition has no audio: the knob's error must come first, in one line."""
    from typer.testing import CliRunner

    from ensemble.cli import app

    for args, message in [(["--model-config", "attention_dropot=0.1"], "did you mean attention_dropout"),
                          (["--freeze", "first:7"], "has 2 transformer layers"),
                          (["--pooling", "stats", "--schedule", "tri-stage", "--hold", "0.95"], "must not pass 1"),
                          (["--max-grad-norm", "big"], "takes a norm ≥ 0 or off")]:
        result = CliRunner().invoke(app, ["finetune", "tiny-wav2vec2", *args, "--data", str(csv_competition)])
        assert result.exit_code == 1 and result.output.startswith("Error: ") and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(app, ["tune", "tiny-ast", "--config", "/nonexistent.toml"])
    assert result.exit_code == 1 and "config file not found" in result.output


def test_the_default_freeze_fits_the_model(tmp_path: Path) -> None:
    from ensemble.backbones.model import default_freeze

    build_classifier("logmel-cnn", LABELS).save(tmp_path / "cnn")
    build_classifier("tiny-hubert", LABELS).save(tmp_path / "hubert")
    assert [default_freeze(m) for m in ("tiny-hubert", "logmel-cnn", str(tmp_path / "cnn"), str(tmp_path / "hubert"),
                                        "facebook/wav2vec2-base")] == ["none", "none", "none", "feature-encoder",
                                                                       "feature-encoder"]
    check_knobs(str(tmp_path / "cnn"), {}, default_freeze(str(tmp_path / "cnn")), "mean")  # a saved CNN fine-tunes on


def test_weighted_pooling_turns_layer_drop_off_and_refuses_it_when_asked(tmp_path: Path) -> None:
    """transformers keeps no hidden state for a layer that layer drop skips, so a weighted layer sum over a
    checkpoint with layer drop (wav2vec2-base's config has 0.1) failed mid-training: seen on a GPU."""
    import transformers

    from ensemble.backbones.families import named_config

    config = named_config("tiny-wav2vec2")
    config.layerdrop = 0.9
    transformers.Wav2Vec2ForSequenceClassification(config).save_pretrained(tmp_path / "ckpt")
    transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, return_attention_mask=False,
                                          do_normalize=True).save_pretrained(tmp_path / "ckpt")
    clf = build_classifier(str(tmp_path / "ckpt"), LABELS, pooling="weighted")
    assert clf.module.model.config.layerdrop == 0.0 and clf.module.model.config.use_weighted_layer_sum
    clf.module.train()
    torch.manual_seed(0)
    x = torch.randn(2, 16000)
    for _ in range(10):  # with layer drop 0.9 over 2 layers, some forward would skip a layer
        assert clf.module(x).shape == (2, 2)
    with pytest.raises(ConfigError, match="layerdrop 0.2 skips layers"):
        build_classifier("tiny-wav2vec2", LABELS, overrides={"layerdrop": 0.2}, pooling="weighted")
