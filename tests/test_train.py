"""fit_fold: learning, best-checkpoint keeping, resume equivalence, schedule; predict_proba_torch."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ensemble.backbones.model import build_classifier
from ensemble.backbones.train import (
    TrainConfig,
    fit_fold,
    predict_proba_torch,
    resolve_device,
    resolve_precision,
)
from ensemble.backbones.schedules import lr_factor
from ensemble.errors import ConfigError

torch.set_num_threads(2)

LABELS = ["fake", "real"]


def toy(epoch: int, n_batches: int = 4, b: int = 8, n: int = 4000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A learnable signal: `real` clips are a 440 Hz tone, `fake` clips white noise; seeded by epoch."""
    rng = np.random.default_rng(1000 + epoch)
    t = np.arange(n) / 16000
    for _ in range(n_batches):
        y = rng.integers(0, 2, size=b)
        tone = np.sin(2 * np.pi * 440 * t)[None] * (0.5 + rng.random((b, 1)))
        noise = rng.standard_normal((b, n)) * 0.3
        w = np.where(y[:, None] == 1, tone + 0.05 * noise, noise).astype(np.float32)
        yield w, np.stack([1 - y, y], 1).astype(np.float32)


def batches(epoch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(toy(epoch))


VAL_W, VAL_Y = (np.concatenate(a) for a in zip(*toy(99, n_batches=2)))


def brier(clf) -> float:
    return float(np.mean((predict_proba_torch(clf, list(VAL_W), 16) - VAL_Y) ** 2))


def cnn_config(**kw) -> TrainConfig:
    return TrainConfig(**{"lr": 3e-3, "epochs": 3, "batch_size": 8, "grad_accum": 1, "device": "cpu", **kw})


@pytest.mark.slow
def test_loss_decreases_on_a_learnable_signal(tmp_path: Path) -> None:
    clf = build_classifier("logmel-cnn", LABELS, seed=0)
    before = brier(clf)
    events: list[dict] = []
    result = fit_fold(clf, batches, brier, cnn_config(), tmp_path, progress=events.append)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.7 * losses[0]
    assert result.best_score < 0.5 * before
    assert brier(clf) == pytest.approx(result.best_score)  # the classifier holds the best weights
    assert [e["epoch"] for e in events if e["stage"] == "epoch"] == [0, 1, 2]
    assert sum(e["stage"] == "step" for e in events) == 12
    assert result.samples_per_s > 0 and result.precision == "fp32" and result.device == "cpu"


@pytest.mark.slow
def test_transformer_learns_and_frozen_encoder_does_not_move(tmp_path: Path) -> None:
    clf = build_classifier("tiny-wav2vec2", LABELS, seed=0)
    start = {k: v.clone() for k, v in clf.module.state_dict().items()}
    before = brier(clf)
    result = fit_fold(clf, batches, brier, cnn_config(epochs=2), tmp_path)
    assert result.best_score < before
    end = clf.module.state_dict()
    encoder = [k for k in start if ".feature_extractor." in k]
    assert encoder and all(torch.equal(start[k], end[k]) for k in encoder)
    assert not torch.equal(start["model.classifier.weight"], end["model.classifier.weight"])


@pytest.mark.slow
def test_best_checkpoint_is_kept_by_lowest_validation_score(tmp_path: Path) -> None:
    scores = iter([0.5, 0.3, 0.4])
    clf = build_classifier("logmel-cnn", LABELS, seed=0)
    result = fit_fold(clf, batches, lambda _: next(scores), cnn_config(), tmp_path)
    assert (result.best_epoch, result.best_score) == (1, 0.3)
    best = load_file(str(tmp_path / "best" / "model.safetensors"))
    last = load_file(str(tmp_path / "last" / "model.safetensors"))
    now = clf.module.state_dict()
    assert all(torch.equal(best[k], now[k]) for k in best)
    assert not all(torch.equal(best[k], last[k]) for k in best)


class Interrupt(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("name", ["logmel-cnn", "tiny-wav2vec2"])
def test_resume_after_interruption_gives_the_same_weights(name: str, tmp_path: Path) -> None:
    config = cnn_config(epochs=3, grad_accum=3)  # 4 micro-batches: a short last step per epoch
    straight = build_classifier(name, LABELS, seed=0)
    ref = fit_fold(straight, batches, brier, config, tmp_path / "a")

    def stop_after_first_epoch(event: dict) -> None:
        if event["stage"] == "epoch" and event["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit_fold(build_classifier(name, LABELS, seed=0), batches, brier, config, tmp_path / "b",
                 progress=stop_after_first_epoch)
    events: list[dict] = []
    resumed = build_classifier(name, LABELS, seed=5)  # different init: weights must come from the checkpoint
    got = fit_fold(resumed, batches, brier, config, tmp_path / "b", progress=events.append)
    assert events[0] == {"stage": "resume", "epoch": 2}
    assert [e["epoch"] for e in events if e["stage"] == "epoch"] == [2]
    assert got.best_epoch == ref.best_epoch and got.best_score == ref.best_score
    assert [h["val_score"] for h in got.history] == [h["val_score"] for h in ref.history]
    a, b = straight.module.state_dict(), resumed.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(predict_proba_torch(straight, list(VAL_W), 8),
                                  predict_proba_torch(resumed, list(VAL_W), 8))


def test_default_accumulation_reaches_an_effective_batch_of_128() -> None:
    assert TrainConfig(batch_size=8).accumulation() == 16
    assert TrainConfig(batch_size=48).accumulation() == 3
    assert TrainConfig(batch_size=8, grad_accum=2).accumulation() == 2
    assert TrainConfig().as_dict()["grad_accum"] == 16


def test_schedule_warms_up_linearly_then_decays_to_zero() -> None:
    factors = [lr_factor(s, 100, 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[-1] < 0.001


def test_device_and_precision_choices() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ConfigError, match="not one of auto, cpu, cuda"):
        resolve_device("gpu")
    with pytest.raises(ConfigError, match="not one of auto, fp32, bf16, fp16"):
        resolve_precision("int8", "cpu")
    with pytest.raises(ConfigError, match="fp16"):
        resolve_precision("fp16", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device 'cuda' requested"):
            resolve_device("cuda")


def test_predict_proba_torch_restores_input_order() -> None:
    clf = build_classifier("logmel-cnn", LABELS, seed=0)
    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in (9000, 3000, 6000, 3000, 12000)]
    one_by_one = np.concatenate([predict_proba_torch(clf, [c], 1) for c in clips])
    np.testing.assert_array_equal(predict_proba_torch(clf, clips, 1), one_by_one)
    perm = [4, 2, 0, 3, 1]
    np.testing.assert_array_equal(predict_proba_torch(clf, [clips[i] for i in perm], 1), one_by_one[perm])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_training_on_cuda(tmp_path: Path) -> None:
    clf = build_classifier("tiny-wav2vec2", LABELS, seed=0)
    config = cnn_config(epochs=2, device="cuda", precision="auto")
    result = fit_fold(clf, batches, lambda c: brier(c), config, tmp_path)
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert result.device == "cuda" and result.precision == expected
    assert all(np.isfinite(h["train_loss"]) for h in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] + 0.05
