"""The competition metric against an independent implementation of the organisers' code, and edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.metrics import mean_squared_error, roc_auc_score

from ensemble.metrics.dacon import MetricError, competition_score, ece_per_column
from ensemble.metrics.scorer import SCORERS, get_scorer
from ensemble.errors import EnsError


def organisers_ece(y, p, n_bins=10):
    """The organisers' ECE, written as they wrote it."""
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    bin_totals = np.histogram(p, bins=np.linspace(0, 1, n_bins + 1), density=False)[0]
    bin_weights = (bin_totals / len(p))[bin_totals > 0]
    return np.sum(bin_weights * np.abs(prob_true - prob_pred))


def organisers_score(y, p):
    aucs = [roc_auc_score(y[:, j], p[:, j]) for j in range(y.shape[1])]
    briers = [mean_squared_error(y[:, j], p[:, j]) for j in range(y.shape[1])]
    eces = [organisers_ece(y[:, j], p[:, j]) for j in range(y.shape[1])]
    return 0.5 * (1 - np.mean(aucs)) + 0.25 * np.mean(briers) + 0.25 * np.mean(eces)


def test_hand_derived_golden_value():
    # AUC 3/4; Brier 0.675/4; ECE: edge values 0.1 and 0.8 fall in the lower bin for calibration_curve
    # and the upper one for the histogram; four non-empty bins each: 0.25 * (0.1 + 0.65 + 0.45 + 0.2)
    y = np.array([[0], [0], [1], [1]])
    p = np.array([[0.1], [0.45], [0.35], [0.8]])
    parts = competition_score(y, p)
    assert parts.auc == pytest.approx(0.75, abs=1e-15)
    assert parts.brier == pytest.approx(0.16875, abs=1e-15)
    assert parts.ece == pytest.approx(0.35, abs=1e-15)
    assert parts.score == pytest.approx(0.2546875, abs=1e-15)


@pytest.mark.parametrize("seed", range(20))
def test_equals_organisers_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 3000))
    y = rng.integers(0, 2, size=(n, 2))
    p = rng.random((n, 2)) ** rng.uniform(0.3, 3)
    assert abs(competition_score(y, p).score - organisers_score(y, p)) < 1e-12


@pytest.mark.parametrize(
    "p",
    [
        [0.0, 0.0, 1.0, 1.0, 0.5, 0.5],            # exact 0 and 1
        [0.0, 0.3, 0.6, 0.7, 0.95, 1.0],           # 0.3 is below its edge, 0.6 and 0.7 above theirs
        [0.01, 0.02, 0.03, 0.97, 0.98, 0.99],      # empty middle bins
        [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],            # one bin, all tied (AUC 0.5)
        [0.1, 0.15, 0.12, 0.18, 0.11, 0.13],       # one histogram bin vs two calibration bins: broadcasts
    ],
)
def test_edge_cases_equal_organisers(p):
    y = np.array([[0], [1], [0], [1], [1], [0]])
    p = np.array(p)[:, None]
    assert abs(competition_score(y, p).score - organisers_score(y, p)) < 1e-12


def test_mismatched_bin_counts_raise_like_the_organisers():
    # 0.1, 0.4 and 0.8 sit on edges: 3 calibration bins against 4 histogram bins
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    with pytest.raises(ValueError):
        organisers_ece(y, p)
    with pytest.raises(MetricError, match="bin edges"):
        ece_per_column(y, p, ["fake"])


def test_one_class_column_is_an_error_naming_it():
    y = np.array([[0, 1], [0, 0], [0, 1]])
    p = np.full((3, 2), 0.4)
    with pytest.raises(MetricError, match="'fake'|fake"):
        competition_score(y, p, ["fake", "real"])


def test_rejects_out_of_range_probabilities():
    with pytest.raises(MetricError, match=r"\[0, 1\]"):
        competition_score(np.array([0, 1]), np.array([0.2, 1.2]))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.2, 5.0))
def test_auc_unchanged_by_monotone_map(seed, power):
    rng = np.random.default_rng(seed)
    y = np.r_[0, 1, rng.integers(0, 2, 60)]
    p = rng.random(62)
    a = competition_score(y, p).auc
    b = competition_score(y, p**power).auc
    assert abs(a - b) < 1e-12


def test_scorers_know_their_direction():
    assert not get_scorer("competition").greater_is_better
    assert get_scorer("auc").greater_is_better
    assert get_scorer("competition").is_better(0.1, 0.2)
    assert get_scorer("auc").is_better(0.9, 0.8)
    y, p = np.array([0, 1, 1, 0]), np.array([0.1, 0.8, 0.6, 0.3])
    assert SCORERS["logloss"](y, p) == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.6, 0.7])))
    with pytest.raises(EnsError, match="competition"):
        get_scorer("nope")


def _sharp_but_shy_vs_calibrated(seed: int = 0):
    """Run 0 ranks almost perfectly but every probability sits near 0.5; run 1 ranks worse, calibrated."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 600).astype(float)
    sharp = 0.5 + 0.02 * (y - 0.5) + rng.normal(0, 0.004, 600)
    calibrated = 1 / (1 + np.exp(-(2.2 * (2 * y - 1) + rng.normal(0, 1.6, 600))))
    return np.stack([sharp, calibrated], axis=1)[:, :, None], y[:, None]


@pytest.mark.parametrize("name", ["competition", "auc", "logloss", "brier", "accuracy"])
def test_fast_and_weighted_forms_agree_with_the_exact_one(name):
    scorer = get_scorer(name)
    P, y = _sharp_but_shy_vs_calibrated()
    exact = np.array([scorer.sign * scorer(y, P[:, r, :]) for r in range(2)])
    np.testing.assert_allclose(scorer.column_losses(y[:, 0], P[:, :, 0]), exact, atol=1e-12)
    ones = np.ones((1, len(y)))
    np.testing.assert_allclose([scorer.replicate_losses(P[:, r, 0], y[:, 0], ones)[0] for r in range(2)], exact,
                               atol=1e-12)


def test_the_scorer_decides_the_best_run_hill_climbing_calibration_and_the_gain():
    from ensemble.stack.bootstrap import gain_interval
    from ensemble.stack.calibration import choose_calibrator
    from ensemble.stack.hillclimb import HillClimbBlender
    from ensemble.stack.nested import best_single_run

    P, y = _sharp_but_shy_vs_calibrated()
    auc, competition = get_scorer("auc"), get_scorer("competition")
    assert auc(y, P[:, 0, :]) > auc(y, P[:, 1, :]) and competition(y, P[:, 0, :]) > competition(y, P[:, 1, :])
    assert best_single_run(P, y)[0] == 1 and best_single_run(P, y, scorer=auc)[0] == 0
    default = HillClimbBlender(n_bags=1, bag_fraction=1.0).fit(P, y).weights_[:, 0]
    by_auc = HillClimbBlender(n_bags=1, bag_fraction=1.0, metric="auc").fit(P, y).weights_[:, 0]
    assert default.argmax() == 1 and by_auc.argmax() == 0
    folds = np.arange(len(y)) % 3  # a monotone calibrator cannot change an AUC: by AUC, none is kept
    assert choose_calibrator(P[:, 0, 0], y[:, 0], folds)[0] != "none"
    assert choose_calibrator(P[:, 0, 0], y[:, 0], folds, scorer=auc)[0] == "none"
    g = gain_interval(y, P[:, 0, :], P[:, 1, :], n_boot=40, scorer=auc)
    assert g["gain"] == pytest.approx(auc(y, P[:, 0, :]) - auc(y, P[:, 1, :])) and g["lo"] > 0


def test_each_form_brings_its_usual_numbers_and_the_scorer_a_run_records_in():
    """A multi-label run records the competition's parts whatever the metric; a multiclass run the chosen
    metric, named, beside the class report's numbers; a scored file's breakdown follows the same forms."""
    from ensemble.metrics.dacon import competition_score
    from ensemble.metrics.scorer import COMPETITION, class_report, get_scorer
    from ensemble.task import MULTICLASS

    rng = np.random.default_rng(1)
    y2, p2 = rng.integers(0, 2, (80, 2)).astype(float), rng.random((80, 2))
    auc = get_scorer("auc")
    assert auc.recorder() is COMPETITION and COMPETITION.recorder() is COMPETITION
    assert COMPETITION.scores(y2, p2, ["fake", "real"]) == competition_score(y2, p2, ["fake", "real"]).as_dict()
    assert auc.scores(y2, p2, ["fake", "real"]) == {"score": auc(y2, p2)}
    assert set(COMPETITION.detail(y2, p2, ["fake", "real"])[1]["real"]) == {"auc", "brier", "ece"}
    assert auc.detail(y2, p2, ["fake", "real"])[1]["fake"] == {"auc": pytest.approx(auc(y2[:, :1], p2[:, :1]))}

    y3, p3 = np.eye(3)[rng.integers(0, 3, 90)], rng.dirichlet(np.ones(3), 90)
    brier = get_scorer("brier", MULTICLASS)
    report = class_report(y3, p3, ["a", "b", "c"])
    assert brier.recorder() is brier
    assert brier.scores(y3, p3, ["a", "b", "c"]) == {"score": brier(y3, p3), "metric": "brier",
                                                     **{k: report[k] for k in ("logloss", "accuracy", "macro_f1", "brier")}}
    parts, per_label = brier.detail(y3, p3, ["a", "b", "c"])
    assert parts.score == brier(y3, p3) and per_label["*"] == report and set(per_label["a"]) == {"precision", "recall", "f1"}


def test_only_a_multiclass_form_has_a_class_report():
    from ensemble.task import MULTICLASS

    y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    p = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.6, 0.1, 0.3], [0.4, 0.4, 0.2]])
    report = get_scorer("logloss", MULTICLASS).class_report(y, p, ["a", "b", "c"])
    assert report["accuracy"] == 0.75 and report["logloss"] == pytest.approx(-np.mean(np.log([0.7, 0.5, 0.3, 0.4])))
    assert np.asarray(report["confusion"])[2].tolist() == [1, 0, 0]  # the true c read as an a
    assert get_scorer("logloss").class_report(y, p, ["a", "b", "c"]) is None
    assert get_scorer("competition").class_report(y[:, :2], p[:, :2], ["a", "b"]) is None
