"""Do no harm: what ens chooses for the user falls back to doing nothing unless held-out rows show it helps."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.metrics.dacon import competition_score
from stacking import stack
from ensemble.stack.base import sigmoid
from ensemble.stack.calibration import choose_calibrator, fit_calibrators
from ensemble.stack.decide import Candidate, Evidence, candidates, decide
from stacking import compare
from ensemble.stack.prior import adapt_prior, bounded_prior, mixture_ks, untrusted_reason
from ensemble.stack.synthetic import make_runs

LABELS = ["fake", "real"]


def _calibrated(n: int, prior: float, rng, scale: float = 1.0):
    """Targets and exact posteriors (optionally with logits scaled: over/under-confident)."""
    y = (rng.random(n) < prior).astype(float)
    x = rng.standard_normal(n) + (2 * y - 1)
    return y, sigmoid(scale * (2 * x + np.log(prior / (1 - prior))))


def _cands() -> list[Candidate]:
    return candidates(["a", "b"], ["mean"], calibrate="none")


def test_candidates_list_every_run_raw_and_calibrated_before_the_methods():
    names = [c.name for c in candidates(["a", "b"], ["mean", "logreg"])]
    assert names == ["run:a", "run:b", "run:a+cal", "run:b+cal", "mean", "logreg"]
    assert [c.name for c in candidates(["a"], ["mean"], calibrate="none")] == ["run:a", "mean"]


def test_a_blend_whose_gain_interval_crosses_zero_is_not_chosen():
    rng = np.random.default_rng(0)
    y, p = _calibrated(400, 0.5, rng)
    # the "blend" is the best run plus a little noise: a better score here by chance, not credibly
    noisy = sigmoid(np.log(p / (1 - p)) + rng.normal(0, 0.05, p.shape))
    preds = [p[:, None], (0.5 + 0 * p)[:, None], noisy[:, None]]
    scores = [competition_score(y[:, None], q).score for q in preds]
    scores[2] = scores[0] - 1e-4  # nominally the best
    d = decide(_cands(), scores, Evidence(preds, y[:, None]))
    assert d.baseline == 0 and d.chosen == 0
    assert d.tests[2]["lo"] <= 0 and not d.tests[2]["passed"]
    assert "kept" in d.rule and "run:a" in d.rule


def test_a_blend_that_credibly_beats_the_best_run_is_chosen():
    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.5).astype(float)
    weak = [sigmoid(0.8 * (2 * y - 1) + rng.standard_normal(len(y))) for _ in range(2)]
    strong = sigmoid(2.0 * (2 * y - 1) + 0.5 * rng.standard_normal(len(y)))
    preds = [weak[0][:, None], weak[1][:, None], strong[:, None]]
    scores = [competition_score(y[:, None], q).score for q in preds]
    d = decide(_cands(), scores, Evidence(preds, y[:, None]))
    assert d.chosen == 2 and d.tests[2]["lo"] > 0
    assert d.rule.startswith("mean beats the best single run")


def test_a_challenger_credibly_worse_on_the_clean_rows_is_not_chosen():
    rng = np.random.default_rng(2)
    y = (rng.random(2000) < 0.5).astype(float)
    weak = sigmoid(0.8 * (2 * y - 1) + rng.standard_normal(len(y)))[:, None]
    strong = sigmoid(2.0 * (2 * y - 1) + 0.5 * rng.standard_normal(len(y)))[:, None]
    trusted = [weak, weak, strong]
    other = [strong, strong, weak]  # the challenger is far worse on the other rows
    scores = [competition_score(y[:, None], q).score for q in trusted]
    d = decide(_cands(), scores, Evidence(trusted, y[:, None]), Evidence(other, y[:, None]))
    assert d.tests[2]["lo"] > 0 and d.tests[2]["other_hi"] < 0
    assert d.chosen == d.baseline and "worse on the clean rows" in d.rule


def _clean_vs_testlike_runs(n: int = 4000):
    """Two runs: on the clean rows run 0 is far better than run 1 (so `mean` is worse than run 0 there);
    on the test-like rows they are equally good with independent errors (so `mean` credibly beats both)."""
    rng = np.random.default_rng(7)
    y, y_tl = ((rng.random((2, n)) < 0.5).astype(float))
    clean = np.stack([sigmoid(2.0 * (2 * y - 1) + 0.5 * rng.standard_normal(n)),
                      sigmoid(0.3 * (2 * y - 1) + rng.standard_normal(n))], axis=1)[:, :, None]
    tl = np.stack([sigmoid(1.0 * (2 * y_tl - 1) + rng.standard_normal(n)) for _ in range(2)], axis=1)[:, :, None]
    folds = np.arange(n) % 5
    return dict(P_oof=clean, y=y[:, None], folds=folds, P_tl=tl, y_tl=y_tl[:, None], folds_tl=folds)


@pytest.mark.parametrize("check, writes_mean", [
    (None, False),                                                      # never checked
    ({"auc": 0.66, "auc_interval": [0.62, 0.70]}, False),               # the check warns
    ({"auc": 0.63, "auc_interval": [0.60, 0.67]}, False),               # not shown: the interval reaches over
    ({"auc": 0.58, "auc_interval": [0.54, 0.62], "held_out": False}, False),  # judged on the clips it was fitted to
    ({"auc": 0.58, "auc_interval": [0.54, 0.62]}, True),                # shown faithful on held-out clips
])
def test_the_clean_rows_veto_only_while_the_test_like_set_is_not_shown_faithful(check, writes_mean):
    if check is not None:
        check = {"threshold": 0.65, "auc": check["auc"], "auc_interval": check["auc_interval"],
                 "extra": {"held_out": check.get("held_out", True)}}
    d = _clean_vs_testlike_runs()
    c = compare(d.pop("P_oof"), d.pop("y"), d.pop("folds"), **d, methods=["mean"], calibrate="none", n_boot=100,
                testlike_check=check)
    mean = [x.name for x in c.candidates].index("mean")
    assert c.decision.tests[mean]["lo"] > 0  # credibly better on the trusted (test-like) rows either way
    assert (c.chosen.name == "mean") == writes_mean
    assert ("clean rows were not asked" in c.decision.rule) == writes_mean
    assert ("worse on the clean rows" in c.decision.rule) != writes_mean


def test_compare_keeps_the_best_run_when_runs_are_interchangeable():
    d = make_runs(600, 50, n_runs=3, strength=[1.0, 1.0, 1.0], rho=0.95, seed=4)
    c = compare(d.P, d.y, d.folds, methods=["mean", "logit"], calibrate="none", n_boot=10)
    assert c.chosen.is_raw_run
    assert [r["chosen"] for r in c.rows].count(True) == 1


def test_calibrate_auto_keeps_none_for_calibrated_predictions_and_fixes_overconfident_ones():
    rng = np.random.default_rng(3)
    folds = np.arange(3000) % 5
    y, p = _calibrated(3000, 0.4, rng)
    name, note = choose_calibrator(p, y, folds)
    assert name == "none", note
    y, p = _calibrated(3000, 0.4, rng, scale=4.0)
    name, note = choose_calibrator(p, y, folds)
    assert name != "none" and note["gain"]["lo"] > 0
    cals, notes = fit_calibrators(p[:, None], y[:, None], folds, "auto")
    assert notes[0]["calibrator"] == name and "interval above zero" in notes[0]["rule"]


def test_calibrate_auto_without_folds_does_nothing():
    rng = np.random.default_rng(5)
    y, p = _calibrated(500, 0.4, rng, scale=4.0)
    name, note = choose_calibrator(p, y, np.zeros(500, dtype=int))
    assert name == "none" and "too few folds" in note["rule"]


def _shifted(prior_test: float, rng, n: int = 20000):
    y_oof, p_oof = _calibrated(n, 0.3, rng)
    y_test = (rng.random(n) < prior_test).astype(float)
    x = rng.standard_normal(n) + (2 * y_test - 1)
    return p_oof, y_oof, sigmoid(2 * x + np.log(0.3 / 0.7))


def test_em_prior_falls_back_under_covariate_shift():
    rng = np.random.default_rng(6)
    p_oof, y_oof, p_test = _shifted(0.3, rng)
    # noisier test audio: the same class mix, predictions squeezed towards the middle and shifted down;
    # EM and BBSE agree (0.18) yet the test predictions are no reweighting of the OOF ones
    c = np.log(0.3 / 0.7)
    squeezed = sigmoid(0.7 * (np.log(p_test / (1 - p_test)) - c) + c - 0.3)
    res = adapt_prior(squeezed[:, None], p_oof[:, None], y_oof[:, None], "em", labels=["fake"])
    assert abs(res.prior_em[0] - res.prior_bbse[0]) < 0.05
    assert "covariate shift" in res.fallback["fake"] and res.prior_used == res.prior_train
    np.testing.assert_array_equal(res.p_test[:, 0], squeezed)
    assert any(w.startswith("test prior not adapted for fake") for w in res.warnings)


def test_em_prior_falls_back_when_one_run_shows_covariate_shift_that_the_blend_hides():
    rng = np.random.default_rng(8)
    p_oof, y_oof, p_test = _shifted(0.45, rng)
    # run 2 sees the test audio differently (its test predictions squeezed and shifted), which a blend
    # dominated by run 1 does not show: the shift is not a label shift, whatever EM says
    c = np.log(0.3 / 0.7)
    squeezed = sigmoid(0.6 * (np.log(p_test / (1 - p_test)) - c) + c - 0.4)
    runs = (np.stack([p_oof, p_oof], axis=1)[:, :, None], np.stack([p_test, squeezed], axis=1)[:, :, None])
    alone = adapt_prior(p_test[:, None], p_oof[:, None], y_oof[:, None], "em", labels=["fake"])
    assert not alone.fallback and abs(alone.prior_used[0] - 0.45) < 0.03
    both = adapt_prior(p_test[:, None], p_oof[:, None], y_oof[:, None], "em", labels=["fake"], runs=runs)
    assert "run 2's test predictions" in both.fallback["fake"] and both.prior_used == both.prior_train
    same = adapt_prior(p_test[:, None], p_oof[:, None], y_oof[:, None], "em", labels=["fake"],
                       runs=(runs[0], np.stack([p_test, p_test], axis=1)[:, :, None]))
    assert not same.fallback  # runs that agree with a true label shift change nothing


def test_em_prior_adapts_a_true_label_shift_on_a_few_hundred_test_rows():
    # one run, 400 test rows: BBSE's own sampling noise (about 0.04 here) puts it 0.06 from EM by chance;
    # a fixed 0.05 tolerance called that a disagreement and gave up a 20 % better score
    d = make_runs(2000, 400, n_runs=1, prior=(0.3, 0.3), test_prior=(0.6, 0.5), strength=[1.0], seed=3)
    kw = dict(method="single", labels=LABELS, n_boot=5)
    em = stack(d.P, d.y, d.folds, d.P_test, test_prior="em", **kw)
    none = stack(d.P, d.y, d.folds, d.P_test, test_prior="none", **kw)
    assert not em.recipe.prior.fallback
    np.testing.assert_allclose(em.recipe.prior.prior_used, d.y_test.mean(axis=0), atol=0.03)
    assert competition_score(d.y_test, em.test).score < 0.9 * competition_score(d.y_test, none.test).score


def test_em_and_bbse_disagree_only_beyond_bbse_noise():
    """EM 0.60 and BBSE 0.52: a disagreement when BBSE is precise (standard error 0.01), not when its own
    sampling noise (0.04, as on a few hundred test rows) puts it that far from EM by chance."""
    mixture = (0.01, 0.05)  # the test predictions are a mixture: that test passes
    precise = untrusted_reason(0.60, 0.52, 0.3, mixture, bbse_error=0.01)
    assert precise is not None and "disagree" in precise
    assert untrusted_reason(0.60, 0.52, 0.3, mixture, bbse_error=0.04) is None


def test_a_run_is_asked_whether_any_label_shift_fits_it_not_the_blends_prior():
    rng = np.random.default_rng(17)
    c = np.log(0.3 / 0.7)

    def draw(n: int, prior: float, separation: float, noise: float):
        y = (rng.random(n) < prior).astype(float)
        return y, noise * rng.standard_normal(n) + separation * (2 * y - 1)

    y, weak = draw(3000, 0.3, 0.5, 1.0)
    y_test, weak_test = draw(800, 0.6, 0.5, 1.0)
    strong, strong_test = (0.5 * rng.standard_normal(len(t)) + 2 * (2 * t - 1) for t in (y, y_test))
    # a true label shift to 0.61; the weak blend's EM says 0.52 by chance (BBSE agrees), and the sharp
    # run 2, whose mixture is sensitive to q, is no mixture at 0.52 (KS 0.09 > 0.07) but is one at its
    # own best q
    runs = (np.stack([sigmoid(weak + c), sigmoid(strong)], 1)[:, :, None],
            np.stack([sigmoid(weak_test + c), sigmoid(strong_test)], 1)[:, :, None])
    res = adapt_prior(runs[1][:, 0], runs[0][:, 0], y[:, None], "em", labels=["fake"], runs=runs)
    assert not res.fallback and res.prior_used[0] > 0.45
    distance, noise = mixture_ks(runs[0][:, 1, 0], y, runs[1][:, 1, 0], res.prior_em[0], 3)
    assert distance > noise  # the old test, at the blend's q
    best, _ = mixture_ks(runs[0][:, 1, 0], y, runs[1][:, 1, 0], None, 3)
    assert best < noise and best <= min(mixture_ks(runs[0][:, 1, 0], y, runs[1][:, 1, 0], q, 3)[0]
                                        for q in np.linspace(0, 1, 101)) + 1e-3
    truth = y_test[:, None]
    assert competition_score(truth, res.p_test).score < competition_score(truth, runs[1][:, 0]).score


def test_em_prior_is_not_trusted_at_the_edges_or_without_bbse():
    assert "edge" in untrusted_reason(0.99, 0.985, 0.3, (0.0, 1.0))
    assert "edge" in untrusted_reason(0.01, 0.015, 0.3, (0.0, 1.0))
    assert "BBSE cannot" in untrusted_reason(0.4, float("nan"), 0.3, (0.0, 1.0))
    assert untrusted_reason(0.4, 0.41, 0.3, (0.01, 0.02)) is None


def test_em_prior_falls_back_when_em_and_bbse_disagree():
    rng = np.random.default_rng(7)
    p_oof, y_oof, p_test = _shifted(0.6, rng)
    # a classifier that is wrong at the threshold: BBSE's confusion rates no longer describe the test
    y_bad = y_oof.copy()
    y_bad[: len(y_bad) // 3] = 1 - y_bad[: len(y_bad) // 3]
    res = adapt_prior(p_test[:, None], p_oof[:, None], y_bad[:, None], "em", labels=["fake"])
    assert abs(res.prior_em[0] - res.prior_bbse[0]) > 0.05
    assert "disagree" in res.fallback["fake"] and res.prior_used == res.prior_train


def test_em_prior_is_applied_to_a_true_label_shift_and_bounded():
    rng = np.random.default_rng(8)
    p_oof, y_oof, p_test = _shifted(0.6, rng)
    res = adapt_prior(p_test[:, None], p_oof[:, None], y_oof[:, None], "em", labels=["fake"])
    assert not res.fallback and abs(res.prior_used[0] - 0.6) < 0.03
    assert bounded_prior(0.999, 0.3) == pytest.approx(sigmoid(np.log(0.3 / 0.7) + 2.0))
    assert bounded_prior(0.6, 0.3) == pytest.approx(0.6)


def test_stack_with_em_never_moves_predictions_it_cannot_trust():
    d = make_runs(2000, 2000, n_runs=3, seed=9)
    squeezed = sigmoid(0.4 * np.log(d.P_test / (1 - d.P_test)) + 1.0)
    kw = dict(method="logit", labels=LABELS, calibrate="none", n_boot=5)
    em = stack(d.P, d.y, d.folds, squeezed, test_prior="em", **kw)
    none = stack(d.P, d.y, d.folds, squeezed, test_prior="none", **kw)
    assert set(em.recipe.prior.fallback) == set(LABELS)
    np.testing.assert_array_equal(em.test, none.test)


def _conditions(n: int, share_noisy: float, rng):
    """Rows from a clean condition (calibrated posteriors) and a noisy one (logits ×4: over-confident)."""
    y = (rng.random(n) < 0.5).astype(float)
    noisy = rng.random(n) < share_noisy
    z = 2 * (rng.standard_normal(n) + (2 * y - 1))
    return y, sigmoid(np.where(noisy, 4 * z, z)), noisy


def test_density_ratio_weights_recover_the_target_calibrator():
    rng = np.random.default_rng(10)
    # test-like rows are 10 % noisy, the real test 90 %: weights = target share / source share
    y_tl, p_tl, noisy = _conditions(4000, 0.1, rng)
    w = np.where(noisy, 0.9 / 0.1, 0.1 / 0.9)
    y_test, p_test, _ = _conditions(4000, 0.9, rng)
    y_oof, p_oof, _ = _conditions(1000, 0.1, rng)
    folds_tl, folds = np.arange(4000) % 4, np.arange(1000) % 4
    kw = dict(method="single", calibrate="temperature", labels=["fake"], n_boot=5,
              P_tl=p_tl[:, None, None], y_tl=y_tl[:, None], folds_tl=folds_tl)
    plain = stack(p_oof[:, None, None], y_oof[:, None], folds, p_test[:, None, None], **kw)
    weighted = stack(p_oof[:, None, None], y_oof[:, None], folds, p_test[:, None, None], w_tl=w, **kw)
    t_plain = plain.recipe.calibrators[0].params["temperature"]
    t_weighted = weighted.recipe.calibrators[0].params["temperature"]
    assert t_plain < 1.6 < 3.0 < t_weighted  # the noisy condition needs a temperature near 4
    truth = y_test[:, None]
    assert competition_score(truth, weighted.test).score < competition_score(truth, plain.test).score - 0.01
    # the weighted nested score is the score of the weighted rows, not of the rows as they come
    assert weighted.nested_testlike.score != pytest.approx(plain.nested_testlike.score, abs=1e-3)


def test_a_candidate_identical_to_the_baseline_is_not_tested():
    rng = np.random.default_rng(11)
    y, p = _calibrated(300, 0.5, rng)
    preds = [p[:, None], (0.4 + 0.2 * p)[:, None], p[:, None].copy()]
    scores = [competition_score(y[:, None], q).score for q in preds]
    d = decide(_cands(), scores, Evidence(preds, y[:, None]))
    assert d.tests[2] == {"same_as_baseline": True, "passed": False}
    assert "closest: run:b" in d.rule


def _rows(n: int, scale: float, rng, prior: float = 0.5):
    """Targets and posteriors of one run whose logits are `scale` × the exact ones (1: calibrated)."""
    y = (rng.random(n) < prior).astype(float)
    return y, sigmoid(scale * 2 * (rng.standard_normal(n) + (2 * y - 1)))


def _auto_single(clean, testlike, test, rng):
    """`stack` of one run with `--calibrate auto`, fitted on test-like rows, and its test score."""
    (y, p), (y_tl, p_tl), (y_test, p_test) = clean, testlike, test
    kw = dict(method="single", labels=["fake"], n_boot=5, P_tl=p_tl[:, None, None], y_tl=y_tl[:, None],
              folds_tl=rng.permutation(np.arange(len(y_tl)) % 4))
    folds = rng.permutation(np.arange(len(y)) % 4)
    auto = stack(p[:, None, None], y[:, None], folds, p_test[:, None, None], calibrate="auto", **kw)
    none = stack(p[:, None, None], y[:, None], folds, p_test[:, None, None], calibrate="none", **kw)
    score = lambda r: competition_score(y_test[:, None], r.test)  # noqa: E731
    return auto.recipe.calibrators[0].to_dict(), score(auto), score(none)


def test_calibrate_auto_keeps_a_calibration_the_clean_rows_share_and_the_test_gains():
    rng = np.random.default_rng(11)
    # the run is over-confident everywhere (logits × 3): clean rows, test-like rows and the test alike
    cal, auto, none = _auto_single(_rows(2000, 3.0, rng), _rows(2000, 3.0, rng), _rows(2000, 3.0, rng), rng)
    assert cal["calibrator"] != "none" and cal["guard_gain"] > 0
    assert auto.score < none.score - 0.01 and auto.ece < none.ece


def test_calibrate_auto_refuses_a_calibration_only_the_test_like_rows_want():
    rng = np.random.default_rng(12)
    # over-confident on the simulated rows only (a quirk of the simulator): the test is like the clean rows,
    # where the run is calibrated; a calibrator fitted on the test-like rows would raise the test's ECE
    cal, auto, none = _auto_single(_rows(2000, 1.0, rng), _rows(2000, 3.0, rng), _rows(2000, 1.0, rng), rng)
    assert cal["calibrator"] == "none" and cal["gain"]["lo"] > 0 and cal["guard_gain"] < 0
    assert "not shared by the clean rows" in cal["rule"]
    assert auto.ece <= none.ece + 1e-12


def _challengers(y: np.ndarray, base: np.ndarray, others: list[np.ndarray]):
    cands = [Candidate("run:a", "single", "none", {"run": 0}, "a")]
    cands += [Candidate(f"blend{i}", "mean", "none") for i in range(len(others))]
    preds = [q[:, None] for q in [base] + others]
    return cands, [competition_score(y[:, None], q).score for q in preds], Evidence(preds, y[:, None])


def test_the_gain_interval_is_corrected_for_the_number_of_challengers():
    rng = np.random.default_rng(0)
    n = 1000
    y = (rng.random(n) < 0.5).astype(float)
    shared, own = rng.standard_normal(n), rng.standard_normal(n)
    base = sigmoid(2 * y - 1 + shared)
    weak = [sigmoid(0.3 * (2 * y - 1) + rng.standard_normal(n)) for _ in range(19)]
    better = sigmoid(1.05 * (2 * y - 1) + 0.8 * shared + 0.6 * own)  # a little better, within noise
    alone = decide(*_challengers(y, base, [better]))
    assert alone.chosen == 1 and alone.tests[1]["lo"] > 0  # one test at 95 %: it passes
    among = decide(*_challengers(y, base, [better] + weak))
    # the best of 20 gains is positive by chance more often: each is tested at 1 − 0.05 / 20
    assert among.chosen == 0 and among.tests[1]["alpha"] == pytest.approx(0.05 / 20)
    assert among.tests[1]["lo"] <= 0 < alone.tests[1]["lo"]


def test_of_the_challengers_that_pass_the_best_scored_is_written():
    rng = np.random.default_rng(3)
    n = 2000
    y = (rng.random(n) < 0.5).astype(float)
    base = sigmoid(0.8 * (2 * y - 1) + rng.standard_normal(n))
    good, best = (sigmoid(s * (2 * y - 1) + 0.5 * rng.standard_normal(n)) for s in (1.5, 2.5))
    for order, best_at in (([good, best], 2), ([best, good], 1)):
        cands, scores, rows = _challengers(y, base, order)
        d = decide(cands, scores, rows)
        assert d.tests[1]["passed"] and d.tests[2]["passed"]
        assert d.chosen == best_at and scores[d.chosen] == min(scores)


def test_calibrate_auto_refuses_a_calibration_whose_guard_gain_cannot_be_scored():
    """A guard gain that cannot be measured (the clean rows hold one class: AUC undefined) is no evidence
    that the calibrator helps there: `auto` falls back to none and says why."""
    from ensemble.stack.calibration import choose_calibrator

    rng = np.random.default_rng(13)
    y, p = _rows(2000, 3.0, rng)  # over-confident: a calibrator credibly helps the fit rows
    folds = rng.permutation(np.arange(len(y)) % 4)
    y_g, p_g = np.ones(300), sigmoid(rng.standard_normal(300))
    name, note = choose_calibrator(p, y, folds, guard=(p_g, y_g, rng.permutation(np.arange(300) % 4)))
    assert note["gain"]["lo"] > 0 and note["guard_gain"] is None
    assert name == "none" and "cannot be scored" in note["rule"]
