"""ONNX ops the stacking methods share, written with the export's graph writer (`ensemble.export.ops.Graph`,
passed in as `g`: the stacker never imports the export layer) on float64 tensors.

Each method's own ops are its `Blender.onnx_ops`; `pipeline_ops` dispatches a saved state to them and
adds the calibrators. LightGBM goes through onnxmltools' `convert_lightgbm` (its trees compare float32
features, so a feature within float32 rounding of a split threshold could take the other branch;
measured differences on the tests' data are ~1e-7).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ensemble.artifacts.records import BlendState, CalibratorState
from ensemble.errors import ContractError
from ensemble.probability import CALIBRATION_EPS

DOUBLE, FLOAT, INT64 = 11, 1, 7  # onnx.TensorProto's DOUBLE, FLOAT, INT64


def weighted_sum(g: Any, Z: str, weights: np.ndarray) -> str:
    """Σ_r w[r, l]·Z[:, r, l] → `(batch, labels)`."""
    return g.op("ReduceSum", g.op("Mul", Z, g.const(np.asarray(weights, float)[None])), g.axes(1), keepdims=0)


def constant_column(g: Any, P: str, value: float) -> str:
    """A `(batch,)` column holding `value`."""
    first = g.op("ReduceMax", g.op("Reshape", P, g.const([0, -1], np.int64)), g.axes(1), keepdims=0)
    return g.op("Add", g.op("Mul", first, g.const(0.0)), g.const(value))


def per_label(g: Any, P: str, models: list[dict[str, Any]], column: Callable[[int, dict], str]) -> str:
    """One output column per label: the stored constant where that label's model saw one class only,
    else `column(j, model)`."""
    return g.columns([constant_column(g, P, model["constant"]) if "constant" in model else column(j, model)
                      for j, model in enumerate(models)])


def features(g: Any, Z: str, j: int, all_labels: bool, n_features: int) -> str:
    """`meta._features`: every label's logits flattened run-major, or label j's."""
    if all_labels:
        return g.op("Reshape", Z, g.const([-1, n_features], np.int64))
    return g.column(Z, j)


def feed(g: Any, target: str, source: str) -> None:
    """Feed `source` into a copied-in subgraph's input `target`."""
    from onnx import helper

    g.nodes.append(helper.make_node("Identity", [source], [target], name=f"feed_{target}"))


def _piecewise_linear(g: Any, z: str, x: np.ndarray, y: np.ndarray) -> str:
    """scipy `interp1d(x, y)` at `z` clipped to [x₀, x_last] (sklearn's isotonic predict), as a lookup."""
    if x.size == 1:
        return g.op("Add", g.op("Mul", z, g.const(0.0)), g.const(y[0]))
    dx = np.diff(x)
    slope = np.where(dx > 0, np.diff(y) / np.where(dx > 0, dx, 1.0), 0.0)
    zc = g.op("Clip", z, g.const(x[0]), g.const(x[-1]))
    below = g.op("Cast", g.op("Less", g.const(x[None, :]), g.op("Unsqueeze", zc, g.axes(1))), to=INT64)
    idx = g.op("Sub", g.op("ReduceSum", below, g.axes(1), keepdims=0), g.const(1, np.int64))
    idx = g.op("Min", g.op("Max", idx, g.const(0, np.int64)), g.const(x.size - 2, np.int64))
    lo_x, lo_y, k = (g.op("Gather", g.const(a), idx, axis=0) for a in (x[:-1], y[:-1], slope))
    return g.op("Add", g.op("Mul", k, g.op("Sub", zc, lo_x)), lo_y)


def calibrator_ops(g: Any, p: str, state: CalibratorState) -> str:
    """One label's calibrator on `p` `(batch,)` float64, as `ensemble.stack.calibration` predicts."""
    kind = state.kind
    if kind == "none":
        return p
    if kind in ("temperature", "platt"):
        x = g.logit(p, CALIBRATION_EPS) if kind == "temperature" else p
        return g.sigmoid(g.op("Add", g.op("Mul", g.const(state.a), x), g.const(state.b)))
    if kind == "beta":
        a, b, c = (float(v) for v in state.coef)
        pc = g.op("Clip", p, g.const(CALIBRATION_EPS), g.const(1 - CALIBRATION_EPS))
        f0 = g.op("Log", pc)
        f1 = g.op("Neg", g.op("Log", g.op("Sub", g.const(1.0), pc)))
        z = g.op("Add", g.op("Add", g.op("Mul", f0, g.const(a)), g.op("Mul", f1, g.const(b))), g.const(c))
        return g.sigmoid(z)
    if kind == "isotonic":
        z = g.logit(p, CALIBRATION_EPS)
        iso = _piecewise_linear(g, z, np.asarray(state.x, float), np.asarray(state.y, float))
        mix = float(state.mix)
        return g.op("Add", g.op("Mul", g.const(1 - mix), iso), g.op("Mul", g.const(mix), g.sigmoid(z)))
    raise ValueError(f"unknown calibrator kind {kind!r}")


def blend_ops(g: Any, P: str, state: dict[str, Any], opset: int, subgraphs: list) -> str:
    """The saved blender's `predict` (clipped to [0, 1], as `Blender.predict` clips) → `(batch, labels)`."""
    from ensemble.stack.base import BLENDERS

    method = state["method"]
    if method not in BLENDERS:
        raise ContractError(f"stacking method {method!r} has no ONNX export")
    return g.clip01(BLENDERS[method].onnx_ops(g, P, state, opset, subgraphs))


def calibrate_all(g: Any, S: str, calibrators: list[CalibratorState], n_labels: int) -> str:
    """`StackPipeline.predict`'s per-label calibrators, clipped to [0, 1]."""
    if not calibrators or all(c.kind == "none" for c in calibrators):
        return S
    return g.clip01(g.columns([calibrator_ops(g, g.column(S, j), calibrators[j]) for j in range(n_labels)]))


def pipeline_ops(state: BlendState, g: Any, P: str, opset: int, subgraphs: list) -> str:
    """A saved stack (`recipe.state`: blender then calibrators) as ONNX ops on `P` `(batch, runs, labels)`."""
    S = blend_ops(g, P, state.blender, opset, subgraphs)
    return calibrate_all(g, S, state.calibrators, state.n_labels)
