"""The median blend, added as one module: fitted, nested-scored, exported to ONNX, explained and listed in
`ens stack --help`, with no other file of the package touched (the registry finds it)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from ensemble.probability import logit, sigmoid
from ensemble.stack import BLENDERS, make_blender
from ensemble.stack.synthetic import make_runs
from ensemble.task import MULTICLASS, MULTILABEL
from stacking import compare, stack

DATA = make_runs(300, 80, n_runs=3, seed=5)


def test_median_of_odd_runs_is_the_median_probability_and_ignores_one_wild_run():
    P = np.array([[[0.2], [0.3], [0.99]], [[0.6], [0.1], [0.7]]])
    got = make_blender("median", MULTILABEL).fit(P, None).predict(P)
    np.testing.assert_allclose(got[:, 0], [0.3, 0.6], rtol=0, atol=1e-12)


def test_median_of_even_runs_averages_the_middle_two_logits():
    P = np.array([[[0.1], [0.2], [0.4], [0.9]]])
    got = make_blender("median", MULTILABEL).fit(P, None).predict(P)
    assert got[0, 0] == pytest.approx(sigmoid((logit(0.2) + logit(0.4)) / 2), abs=1e-12)


def test_multiclass_median_rows_sum_to_one():
    rng = np.random.default_rng(1)
    P = rng.dirichlet(np.ones(3), size=(20, 3))
    got = make_blender("median", MULTICLASS).fit(P, None).predict(P)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_median_is_nested_scored_and_explained():
    from ensemble.artifacts.records import Recipe
    from ensemble.stack.explain import blender_lines

    result = stack(DATA.P, DATA.y, DATA.folds, DATA.P_test, method="median", calibrate="none")
    assert result.nested is not None and np.isfinite(result.nested.score)
    assert result.recipe.state.method == "median"
    recipe = Recipe(**{**result.recipe.__dict__, "runs": [{"run": "a"}, {"run": "b"}, {"run": "c"}]})
    assert blender_lines(recipe) == ["the median of the runs' logits: a, b, c"]


def test_median_is_listed_in_help_but_is_no_compare_candidate():
    from ensemble.cli import app

    result = CliRunner().invoke(app, ["stack", "--help"], env={"COLUMNS": "400"})
    assert "median" in result.output and BLENDERS["median"].summary.split()[0] in result.output
    rows = compare(DATA.P[:120], DATA.y[:120], DATA.folds[:120], n_boot=0, methods=None, calibrate="none").rows
    assert "median" not in {r["method"] for r in rows}


@pytest.mark.parametrize("runs", [3, 4])
def test_median_onnx_ops_match_predict(runs):
    from ensemble.stack.onnx_ops import blend_ops
    from test_export import _run_ops

    rng = np.random.default_rng(runs)
    P = rng.random((40, runs, 2))
    P[0] = 0.0
    P[1] = 1.0
    P[2, :, 0] = 0.5  # ties
    blender = make_blender("median", MULTILABEL).fit(P, None)
    got = _run_ops(lambda g, x: blend_ops(g, x, blender.state(), 20, []), P)
    np.testing.assert_allclose(got, blender.predict(P), rtol=0, atol=1e-12)
