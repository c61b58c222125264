"""Pseudo-labelling (`ens finetune --pseudo-label`): targets from confident predictions, NaN targets left
out of a label's fit, each fold's second round labelled by its own first fit, and the option's checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ensemble.artifacts.competition import Competition
from ensemble.artifacts.runs import OPTIONS_FILE
from ensemble.artifacts.workspace import Workspace
from ensemble.backbones.classical import PseudoLabels, build_classical, fit_on_examples, pseudo_targets
from ensemble.cli import app
from ensemble.commands.finetune import FinetuneOptions, check_pseudo_label, finetune
from ensemble.demo import DemoSpec, generate_competition
from ensemble.errors import ConfigError
from ensemble.task import MULTICLASS

runner = CliRunner()
FAST = dict(folds=3, epochs=2, batch_size=8, max_seconds=1.0, testlike_per_fold=6)


def _waves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise clips whose level decides `fake` and a coin `real`."""
    rng = np.random.default_rng(seed)
    gain = rng.uniform(0.01, 0.3, (n, 1))
    waves = (rng.standard_normal((n, 16000)) * gain).astype(np.float32)
    y = np.stack([gain[:, 0] > 0.15, rng.random(n) < 0.5], axis=1).astype(np.float32)
    return waves, y


def test_pseudo_targets_keep_only_confident_labels():
    p = np.array([[0.95, 0.5], [0.05, 0.92], [0.6, 0.08]])
    y = pseudo_targets(p, 0.9)
    assert np.array_equal(np.isnan(y), [[False, True], [False, False], [True, False]])
    assert y[0, 0] == 1 and y[1, 0] == 0 and y[1, 1] == 1 and y[2, 1] == 0
    classes = pseudo_targets(np.array([[0.92, 0.05, 0.03], [0.5, 0.3, 0.2]]), 0.9, MULTICLASS)
    assert np.array_equal(classes[0], [1, 0, 0]) and np.isnan(classes[1]).all()


def test_nan_targets_are_left_out_of_that_label_only():
    waves, y = _waves(90, 0)
    clf = build_classical("features-lgbm", ["fake", "real"])
    x = clf.features(waves)
    unknown = y.copy()
    unknown[60:, 0] = np.nan  # rows 60+ are unknown for `fake`, known for `real`
    both = clf.fit(x, unknown, seed=0).predict_proba_native(x)
    fake_only = build_classical("features-lgbm", ["fake", "real"]).fit(x[:60], y[:60], seed=0)
    real_all = build_classical("features-lgbm", ["fake", "real"]).fit(x, y, seed=0)
    assert np.allclose(both[:, 0], fake_only.predict_proba_native(x)[:, 0])
    assert np.allclose(both[:, 1], real_all.predict_proba_native(x)[:, 1])
    one_class = y.copy()
    one_class[y[:, 0] == 0, 0] = np.nan
    with pytest.raises(ConfigError, match="label 'fake' has one class"):
        clf.fit(x, one_class, seed=0)


def test_the_second_round_is_labelled_by_this_fit_alone():
    waves, y = _waves(120, 1)
    unlabeled, _ = _waves(40, 2)
    clf = build_classical("features-lgbm", ["fake", "real"])
    x_unlabeled = clf.features(unlabeled)
    first = build_classical("features-lgbm", ["fake", "real"]).fit(clf.features(waves), y, seed=3)
    expected = pseudo_targets(first.predict_proba_native(x_unlabeled), 0.8)
    info = fit_on_examples(clf, [(waves[:60], y[:60]), (waves[60:], y[60:])], 120, seed=3,
                           pseudo=PseudoLabels(0.8, lambda: x_unlabeled))
    pseudo = info["pseudo_labels"]
    assert pseudo["clips"] == 40 and info["examples"] == 120
    assert pseudo["labelled"] == {"fake": int((~np.isnan(expected[:, 0])).sum()),
                                  "real": int((~np.isnan(expected[:, 1])).sum())}
    assert pseudo["positive"]["fake"] == int((expected[:, 0] == 1).sum()) > 0
    refit = build_classical("features-lgbm", ["fake", "real"]).fit(
        np.concatenate([clf.features(waves), x_unlabeled]), np.concatenate([y, expected]), seed=3)
    assert np.allclose(clf.predict_proba_native(x_unlabeled), refit.predict_proba_native(x_unlabeled))


@pytest.mark.slow
def test_finetune_pseudo_labels_each_fold_from_the_test_clips(tmp_path):
    data = generate_competition(tmp_path / "data", DemoSpec(n_train=48, n_test=9, n_unlabeled=3, seed=5))
    ws, comp = Workspace(tmp_path / "ws"), Competition.load(data)
    run = finetune(ws, comp, FinetuneOptions(model="features-lgbm", name="pl", pseudo_label=0.6, **FAST))
    plain = finetune(ws, comp, FinetuneOptions(model="features-lgbm", name="plain", **FAST))
    for k in range(3):
        fold = json.loads((run.dir / f"fold{k}" / "fold.json").read_text())
        assert fold["pseudo_labels"]["clips"] == len(comp.test_ids) and fold["pseudo_labels"]["confidence"] == 0.6
        assert "pseudo_labels" not in json.loads((plain.dir / f"fold{k}" / "fold.json").read_text())
    assert json.loads((run.dir / OPTIONS_FILE).read_text())["pseudo_label"] == 0.6
    assert "pseudo_label" not in json.loads((plain.dir / OPTIONS_FILE).read_text())  # older runs still resume
    assert not np.allclose(run.test()[comp.labels].to_numpy(), plain.test()[comp.labels].to_numpy())


def test_the_option_is_checked_before_any_compute(tmp_path):
    check_pseudo_label(FinetuneOptions(model="features-dvec-lgbm", pseudo_label=0.9))
    with pytest.raises(ConfigError, match="not a classical family"):
        check_pseudo_label(FinetuneOptions(model="logmel-cnn", pseudo_label=0.9))
    result = runner.invoke(app, ["finetune", "features-lgbm", "--pseudo-label", "0.4", "-w", str(tmp_path / "ws"),
                                 "--data", str(tmp_path / "missing")])
    assert result.exit_code != 0 and "--pseudo-label 0.4: a confidence in (0.5, 1)" in result.output
    assert not (tmp_path / "ws" / "models").exists()
