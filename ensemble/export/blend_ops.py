"""Each stacking method's `predict` as ONNX ops on `P` `(batch, runs, labels)` float64, from `recipe.state`.

Mirrors `ensemble.stack.simple`, `hillclimb`, `flip` and `meta`; LightGBM goes through onnxmltools'
`convert_lightgbm` (its trees compare float32 features, so a feature within float32 rounding of a
split threshold could take the other branch; measured differences on the tests' data are ~1e-7).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ensemble.errors import ContractError
from ensemble.export.ops import FLOAT, DOUBLE, Graph, calibrate, label_column, stack_columns
from ensemble.probability import LOGIT_EPS


def _weighted_logits(g: Graph, Z: str, weights: np.ndarray) -> str:
    """Σ_r w[r, l]·Z[:, r, l] → `(batch, labels)`."""
    return g.op("ReduceSum", g.op("Mul", Z, g.const(weights[None])), g.axes(1), keepdims=0)


def _rank(g: Graph, P: str, sorted_ref: np.ndarray) -> str:
    """`RankBlender`: each value's mid-rank in its run's fitted ECDF, averaged over runs."""
    n = sorted_ref.shape[0]
    ref = g.const(sorted_ref[None])                       # (1, n, runs, labels)
    v = g.op("Unsqueeze", P, g.axes(1))                   # (batch, 1, runs, labels)
    lo = g.op("ReduceSum", g.op("Cast", g.op("Less", ref, v), to=DOUBLE), g.axes(1), keepdims=0)
    hi = g.op("ReduceSum", g.op("Cast", g.op("LessOrEqual", ref, v), to=DOUBLE), g.axes(1), keepdims=0)
    ranks = g.op("Div", g.op("Add", lo, hi), g.const(2.0 * n))
    return g.op("ReduceMean", ranks, g.axes(1), keepdims=0)


def _features(g: Graph, Z: str, j: int, all_labels: bool, n_features: int) -> str:
    """`meta._features`: every label's logits flattened run-major, or label j's."""
    if all_labels:
        return g.op("Reshape", Z, g.const([-1, n_features], np.int64))
    return label_column(g, Z, j)


def _constant_column(g: Graph, P: str, value: float) -> str:
    """A `(batch,)` column holding `value`."""
    first = g.op("ReduceMax", g.op("Reshape", P, g.const([0, -1], np.int64)), g.axes(1), keepdims=0)
    return g.op("Add", g.op("Mul", first, g.const(0.0)), g.const(value))


def _per_label(g: Graph, P: str, state: dict[str, Any], column) -> str:
    """One output column per label: the stored constant where that label's model saw one class only,
    else `column(j, model)`."""
    return stack_columns(g, [_constant_column(g, P, model["constant"]) if "constant" in model else column(j, model)
                             for j, model in enumerate(state["models"])])


def _logreg(g: Graph, P: str, state: dict[str, Any]) -> str:
    runs, labels = state["runs"], state["labels"]
    Z = g.logit(P, LOGIT_EPS)

    def column(j: int, model: dict[str, Any]) -> str:
        X = _features(g, Z, j, state["all_labels"], runs * labels)
        coef = np.asarray(model["coef"], float)
        d = g.op("ReduceSum", g.op("Mul", X, g.const(coef[None])), g.axes(1), keepdims=0)
        return g.sigmoid(g.op("Add", d, g.const(model["intercept"])))

    return _per_label(g, P, state, column)


def _lightgbm_graph(text: str, n_features: int, opset: int) -> Any:
    """onnxmltools' graph of one binary LightGBM model, from its model text (no pickle)."""
    import lightgbm as lgb
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = lgb.Booster(model_str=text)
    if booster.num_feature() != n_features:
        raise ContractError(f"LightGBM model has {booster.num_feature()} features; the blend gives {n_features}")
    return convert_lightgbm(booster, initial_types=[("input", FloatTensorType([None, n_features]))],
                            zipmap=False, target_opset=min(opset, 15))


def _lgbm(g: Graph, P: str, state: dict[str, Any], opset: int, subgraphs: list) -> str:
    import onnx.compose

    runs, labels = state["runs"], state["labels"]
    n_features = runs * labels if state["all_labels"] else runs
    Z = g.logit(P, LOGIT_EPS)

    def column(j: int, model: dict[str, Any]) -> str:
        sub = onnx.compose.add_prefix(_lightgbm_graph(model["lightgbm"], n_features, opset), g.name(f"lgbm{j}") + "_")
        subgraphs.append(sub)
        x = g.op("Cast", _features(g, Z, j, state["all_labels"], n_features), to=FLOAT)
        g.nodes.append(_identity(sub.graph.input[0].name, x))
        probs = [o.name for o in sub.graph.output if "prob" in o.name]
        if not probs:
            raise ContractError(f"onnxmltools gave outputs {[o.name for o in sub.graph.output]}; none is probabilities")
        return g.op("Gather", g.op("Cast", probs[0], to=DOUBLE), g.const(1, np.int64), axis=1)

    return _per_label(g, P, state, column)


def _identity(target: str, source: str) -> Any:
    from onnx import helper

    return helper.make_node("Identity", [source], [target], name=f"feed_{target}")


def _flip(g: Graph, P: str, state: dict[str, Any]) -> str:
    """`FlipBlender`: column permutation, inversion, per-run recalibration, weighted logits."""
    runs, labels = state["runs"], state["labels"]
    perm = np.asarray(state["columns"], np.int64)            # (runs, labels): input column per label
    flat = g.op("Reshape", P, g.const([0, -1], np.int64))
    index = np.arange(runs)[:, None] * labels + perm
    Q = g.op("Gather", flat, g.const(index, np.int64), axis=1)  # (batch, runs, labels)
    inv = np.asarray(state["inverted"], bool)
    Q = g.op("Where", g.const(inv[None], np.bool_), g.op("Sub", g.const(1.0), Q), Q)
    cols = []
    for r in range(runs):
        per_label = []
        for j in range(labels):
            q = g.op("Gather", g.op("Gather", Q, g.const(r, np.int64), axis=1), g.const(j, np.int64), axis=1)
            per_label.append(g.logit(calibrate(g, q, state["calibrators"][r][j]), LOGIT_EPS))
        cols.append(g.op("Unsqueeze", stack_columns(g, per_label), g.axes(1)))
    Z = g.op("Concat", *cols, axis=1)
    return g.sigmoid(_weighted_logits(g, Z, np.asarray(state["weights"], float)))


def blend(g: Graph, P: str, state: dict[str, Any], opset: int, subgraphs: list) -> str:
    """The blender's `predict` (clipped to [0, 1], as `Blender.predict` clips) → `(batch, labels)`."""
    method = state["method"]
    if method == "mean":
        out = g.op("ReduceMean", P, g.axes(1), keepdims=0)
    elif method == "logit":
        out = g.sigmoid(g.op("ReduceMean", g.logit(P, LOGIT_EPS), g.axes(1), keepdims=0))
    elif method == "single":
        out = g.op("Gather", P, g.const(state["run"], np.int64), axis=1)
    elif method in ("weighted", "hillclimb"):
        w = np.asarray(state["weights"], float)
        if state.get("space", "logit") == "logit":
            out = g.sigmoid(_weighted_logits(g, g.logit(P, LOGIT_EPS), w))
        else:
            out = _weighted_logits(g, P, w)
    elif method == "rank":
        out = _rank(g, P, np.asarray(state["sorted"], float))
    elif method == "logreg":
        out = _logreg(g, P, state)
    elif method == "lgbm":
        out = _lgbm(g, P, state, opset, subgraphs)
    elif method == "flip":
        out = _flip(g, P, state)
    else:
        raise ContractError(f"stacking method {method!r} has no ONNX export")
    return g.clip01(out)


def calibrate_all(g: Graph, S: str, calibrators: list[dict[str, Any]], n_labels: int) -> str:
    """`StackPipeline.predict`'s per-label calibrators, clipped to [0, 1]."""
    if not calibrators or all(c.get("kind") == "none" for c in calibrators):
        return S
    cols = [calibrate(g, label_column(g, S, j), calibrators[j]) for j in range(n_labels)]
    return g.clip01(stack_columns(g, cols))
