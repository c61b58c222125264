"""One contract suite over every registered blender (scikit-learn's `parametrize_with_checks` idea)."""

import numpy as np
import pytest

from ensemble.errors import ConfigError, DataError, EnsError, NotFittedError
from ensemble.stack import BLENDERS, make_blender
from ensemble.stack.synthetic import make_runs

DATA = make_runs(400, 150, n_runs=3, seed=3)


@pytest.fixture(params=sorted(BLENDERS))
def name(request):
    return request.param


def test_fit_returns_self_and_predicts_probabilities(name):
    blender = make_blender(name)
    assert blender.fit(DATA.P, DATA.y, folds=DATA.folds) is blender
    p = blender.predict(DATA.P_test)
    assert p.shape == (150, 2)
    assert np.isfinite(p).all() and p.min() >= 0 and p.max() <= 1


def test_deterministic(name):
    a = make_blender(name).fit(DATA.P, DATA.y, folds=DATA.folds).predict(DATA.P_test)
    b = make_blender(name).fit(DATA.P, DATA.y, folds=DATA.folds).predict(DATA.P_test)
    np.testing.assert_array_equal(a, b)


def test_not_fitted_error(name):
    with pytest.raises(NotFittedError, match="not fitted"):
        make_blender(name).predict(DATA.P_test)


def test_get_params_round_trip(name):
    params = make_blender(name).get_params()
    assert make_blender(name, **params).get_params() == params


def test_init_stores_params_only(name):
    blender = make_blender(name)
    assert not [k for k in vars(blender) if k.endswith("_")]


def test_predict_checks_shape(name):
    blender = make_blender(name).fit(DATA.P, DATA.y, folds=DATA.folds)
    with pytest.raises(DataError, match="runs"):
        blender.predict(DATA.P_test[:, :2])


def test_targets_needed_or_not(name):
    blender = make_blender(name)
    if blender.needs_targets:
        with pytest.raises(DataError, match="needs targets"):
            blender.fit(DATA.P, None)
    else:
        p = blender.fit(DATA.P_test, None).predict(DATA.P_test)
        assert p.shape == (150, 2)


@pytest.mark.parametrize(
    "P, message",
    [
        (np.zeros((4, 2)), "dimensions"),
        (np.full((4, 2, 2), np.nan), "NaN"),
        (np.full((4, 2, 2), 1.5), "outside"),
    ],
)
def test_bad_tensors(P, message):
    with pytest.raises(DataError, match=message):
        make_blender("mean").fit(P, None)


def test_unknown_method_lists_valid_ones():
    with pytest.raises(EnsError, match="choose one of: .*hillclimb"):
        make_blender("nope")


def test_unknown_param_lists_valid_ones():
    with pytest.raises(ConfigError, match="n_bags"):
        make_blender("hillclimb", bags=3)


def test_recipe_is_json_serialisable(name):
    import json

    blender = make_blender(name).fit(DATA.P, DATA.y, folds=DATA.folds)
    json.dumps({"params": blender.get_params(), "recipe": blender.recipe()})


def test_importing_the_stacker_stays_light():
    import subprocess
    import sys

    code = ("import sys, ensemble.stack; heavy = {'torch', 'lightgbm', 'transformers', 'onnxruntime'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
