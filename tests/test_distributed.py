"""--devices: one fold trained by two processes (DDP, gloo on CPU) gives one process's result within tolerance
for the same effective batch."""

from __future__ import annotations

import numpy as np
import pytest

from typer.testing import CliRunner

from ensemble.backbones.distributed import check_devices, fit_fold_parallel
from ensemble.backbones.model import build_classifier
from ensemble.backbones.train import TrainConfig, fit_fold, predict_proba_torch
from ensemble.cli import app
from ensemble.errors import ConfigError

LABELS = ["fake", "real"]
SR, ROWS, BATCH = 16000, 25, 8  # the last batch holds one row: one process of two gets none
# Two processes sum the same gradients in another order (and average them over processes): float noise,
# which six Adam steps at lr 1e-2 grow to 6e-5 on these probabilities; training on a wrong share of the
# batch (both processes on the same rows) moves them by 5e-2.
TOLERANCE = 1e-3


def waves(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Clips whose label is carried by their loudness (so training moves the weights a lot)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=(n, 2)).astype(np.float32)
    x = rng.standard_normal((n, SR // 2)).astype(np.float32) * (0.05 + 0.2 * y[:, :1])
    return x, y


def deterministic_classifier():
    """tiny-wav2vec2 (group norm: no statistics across the batch) with its train-time randomness off
    (dropout, layer drop, SpecAugment), so one and two processes must compute the same updates."""
    import torch

    clf = build_classifier("tiny-wav2vec2", LABELS, seed=0)
    config = clf.module.model.config
    config.mask_time_prob, config.mask_feature_prob, config.layerdrop = 0.0, 0.0, 0.0
    for m in clf.module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return clf


def train(devices: int, tmp_path) -> tuple[np.ndarray, list[float]]:
    x, y = waves(0, ROWS)
    held, _ = waves(1, 6)

    def batches(epoch: int):
        order = np.random.default_rng(epoch).permutation(ROWS)
        return [(x[order[i:i + BATCH]], y[order[i:i + BATCH]]) for i in range(0, ROWS, BATCH)]

    clf = deterministic_classifier()
    config = TrainConfig(lr=1e-2, epochs=2, batch_size=BATCH, grad_accum=1, freeze="none",
                         device="cpu", seed=0, warmup=0.0)
    validate = lambda c: -float(np.mean(c.module.training is False))  # noqa: E731 (the last epoch wins ties: no)
    checkpoint = tmp_path / f"ckpt{devices}"
    if devices == 1:
        result = fit_fold(clf, batches, validate, config, checkpoint)
    else:
        events: list[dict] = []
        result = fit_fold_parallel(clf, batches, validate, config, checkpoint, devices, progress=events.append)
        assert [e["epoch"] for e in events if e["stage"] == "epoch"] == [0, 1]
    losses = [h["train_loss"] for h in result.history]
    return predict_proba_torch(clf, list(held), batch_size=6, device="cpu"), losses


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    untrained = predict_proba_torch(deterministic_classifier(), list(waves(1, 6)[0]), batch_size=6, device="cpu")
    (one, one_loss), (two, two_loss) = train(1, tmp_path), train(2, tmp_path)
    assert np.abs(one - untrained).max() > 10 * TOLERANCE  # training really moved the predictions
    assert np.abs(one - two).max() <= TOLERANCE
    np.testing.assert_allclose(two_loss, one_loss, rtol=1e-4)  # the whole batch's loss, as one process reports it


@pytest.mark.parametrize("devices", [0, -1, 1.5, True])
def test_bad_device_counts_are_refused(devices):
    with pytest.raises(ConfigError, match="--devices"):
        check_devices(devices, "cpu")


@pytest.mark.parametrize("model, devices, message", [
    ("logmel-cnn", "0", "--devices 0 is invalid"),
    ("features-lgbm", "2", "'features-lgbm' is a classical family"),
])
def test_the_cli_refuses_bad_devices_before_reading_data(csv_competition, model, devices, message):
    result = CliRunner().invoke(app, ["finetune", model, "--devices", devices, "--data", str(csv_competition)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output and len(result.output.splitlines()) == 1
