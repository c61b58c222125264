"""Hand-checked toy cases for the simple blends."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ensemble.task import MULTILABEL
from ensemble.stack import make_blender


def test_mean_by_hand():
    P = np.array([[[0.2], [0.4]], [[1.0], [0.0]]])
    np.testing.assert_allclose(make_blender("mean", MULTILABEL).fit(P, None).predict(P), [[0.3], [0.5]])


def test_logit_mean_of_logits():
    P = np.array([[[0.5], [0.5]], [[0.9], [0.1]], [[0.8], [0.8]]])
    np.testing.assert_allclose(make_blender("logit", MULTILABEL).fit(P, None).predict(P)[:, 0], [0.5, 0.5, 0.8])


def test_rank_ties_averaged_by_hand():
    # run 0: 0.1, 0.5, 0.5, 0.9 -> mid-ranks 1, 2.5, 2.5, 4 -> (r - 0.5) / 4
    # run 1: 0.3, 0.2, 0.1, 0.0 -> ranks 4, 3, 2, 1
    P = np.array([[[0.1], [0.3]], [[0.5], [0.2]], [[0.5], [0.1]], [[0.9], [0.0]]])
    got = make_blender("rank", MULTILABEL).fit(P, None).predict(P)[:, 0]
    r0 = (np.array([1, 2.5, 2.5, 4]) - 0.5) / 4
    r1 = (np.array([4, 3, 2, 1]) - 0.5) / 4
    np.testing.assert_allclose(got, (r0 + r1) / 2)


def test_rank_places_test_rows_on_the_fit_scale():
    P = np.array([[[0.1]], [[0.2]], [[0.3]], [[0.4]]])
    blender = make_blender("rank", MULTILABEL).fit(P, None)
    test = np.array([[[0.05]], [[0.2]], [[0.35]], [[0.9]]])
    # below all: 0; equal to the 2nd: (1 + 0.5) / 4; between 3rd and 4th: 3 / 4; above all: 1
    np.testing.assert_allclose(blender.predict(test)[:, 0], [0.0, 0.375, 0.75, 1.0])


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (12, 1, 2), elements=st.floats(0, 1)), st.integers(1, 4))
def test_mean_and_logit_of_identical_runs_equal_the_run(run, copies):
    P = np.repeat(run, copies, axis=1)
    np.testing.assert_allclose(make_blender("mean", MULTILABEL).fit(P, None).predict(P), run[:, 0], atol=1e-12)
    clipped = np.clip(run[:, 0], 1e-6, 1 - 1e-6)
    np.testing.assert_allclose(make_blender("logit", MULTILABEL).fit(P, None).predict(P), clipped, atol=1e-9)


def test_weighted_weights_on_simplex_and_prefer_the_good_run():
    rng = np.random.default_rng(0)
    y = (rng.random((2000, 1)) < 0.4).astype(float)
    good = 1 / (1 + np.exp(-(3 * (2 * y - 1) + rng.standard_normal(y.shape))))
    noise = rng.random(y.shape)
    P = np.stack([noise, good], axis=1)
    w = make_blender("weighted", MULTILABEL).fit(P, y).weights_
    assert np.all(w >= 0) and np.allclose(w.sum(axis=0), 1)
    assert w[1, 0] > 0.9
