"""One contract suite over every registered blender (scikit-learn's `parametrize_with_checks` idea)."""

import numpy as np
import pytest

from ensemble.task import MULTILABEL
from ensemble.errors import ConfigError, DataError, EnsError, NotFittedError
from ensemble.stack import BLENDERS, make_blender
from ensemble.stack.synthetic import make_runs

DATA = make_runs(400, 150, n_runs=3, seed=3)


@pytest.fixture(params=sorted(BLENDERS))
def name(request):
    return request.param


def test_fit_returns_self_and_predicts_probabilities(name):
    blender = make_blender(name, MULTILABEL)
    assert blender.fit(DATA.P, DATA.y, folds=DATA.folds) is blender
    p = blender.predict(DATA.P_test)
    assert p.shape == (150, 2)
    assert np.isfinite(p).all() and p.min() >= 0 and p.max() <= 1


def test_deterministic(name):
    a = make_blender(name, MULTILABEL).fit(DATA.P, DATA.y, folds=DATA.folds).predict(DATA.P_test)
    b = make_blender(name, MULTILABEL).fit(DATA.P, DATA.y, folds=DATA.folds).predict(DATA.P_test)
    np.testing.assert_array_equal(a, b)


def test_not_fitted_error(name):
    with pytest.raises(NotFittedError, match="not fitted"):
        make_blender(name, MULTILABEL).predict(DATA.P_test)


def test_get_params_round_trip(name):
    params = make_blender(name, MULTILABEL).get_params()
    assert make_blender(name, MULTILABEL, **params).get_params() == params


def test_the_task_is_a_constructor_parameter_that_clone_keeps(name):
    """scikit-learn's contract: the task is an `__init__` keyword, so `get_params` and `clone` carry it."""
    from sklearn.base import clone

    from ensemble.task import MULTICLASS

    blender = make_blender(name, MULTICLASS)
    assert blender.get_params()["task"] is MULTICLASS
    assert clone(blender).task is MULTICLASS
    assert "task" not in blender.hyper_params()
    with pytest.raises(ConfigError, match="no parameter 'task'"):
        make_blender(name, MULTILABEL, task=MULTICLASS)


def test_init_stores_params_only(name):
    blender = make_blender(name, MULTILABEL)
    assert not [k for k in vars(blender) if k.endswith("_")]


def test_predict_checks_shape(name):
    blender = make_blender(name, MULTILABEL).fit(DATA.P, DATA.y, folds=DATA.folds)
    with pytest.raises(DataError, match="runs"):
        blender.predict(DATA.P_test[:, :2])


def test_targets_needed_or_not(name):
    blender = make_blender(name, MULTILABEL)
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
        make_blender("mean", MULTILABEL).fit(P, None)


def test_unknown_method_lists_valid_ones():
    with pytest.raises(EnsError, match="choose one of: .*hillclimb"):
        make_blender("nope", MULTILABEL)


def test_unknown_param_lists_valid_ones():
    with pytest.raises(ConfigError, match="n_bags"):
        make_blender("hillclimb", MULTILABEL, bags=3)


def test_recipe_is_json_serialisable(name):
    import json

    blender = make_blender(name, MULTILABEL).fit(DATA.P, DATA.y, folds=DATA.folds)
    json.dumps({"params": blender.hyper_params(), "recipe": blender.recipe()})


def test_importing_the_stacker_stays_light():
    import subprocess
    import sys

    code = ("import sys, ensemble.stack; heavy = {'torch', 'lightgbm', 'transformers', 'onnxruntime'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_saved_state_rebuilds_the_same_blender(name):
    """`to_state` is exact: the blender rebuilt by `from_state` from the saved JSON predicts what the fitted
    one predicts, and its ONNX ops are its own (`onnx_ops` is the class's, dispatched by the registry)."""
    import json

    from ensemble.stack.base import Blender

    fitted = make_blender(name, MULTILABEL).fit(DATA.P, DATA.y, folds=DATA.folds)
    saved = json.loads(json.dumps(fitted.state()))
    assert saved["method"] == name and "task" not in saved
    rebuilt = Blender.from_state(saved)
    assert type(rebuilt) is BLENDERS[name] and rebuilt.task is MULTILABEL
    np.testing.assert_allclose(rebuilt.predict(DATA.P_test), fitted.predict(DATA.P_test), rtol=0, atol=1e-12)
    assert rebuilt.state() == saved


def test_a_multiclass_state_names_its_task_and_rebuilds_for_it():
    import json

    from ensemble.stack.base import Blender
    from ensemble.task import MULTICLASS

    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(3), size=(60, 2))
    y = np.eye(3)[rng.integers(0, 3, 60)]
    for method in ("logit", "weighted", "logreg"):
        fitted = make_blender(method, MULTICLASS).fit(P, y)
        saved = json.loads(json.dumps(fitted.state()))
        assert saved["task"] == "multiclass"
        rebuilt = Blender.from_state(saved)
        assert rebuilt.task is MULTICLASS
        np.testing.assert_allclose(rebuilt.predict(P), fitted.predict(P), rtol=0, atol=1e-12)
