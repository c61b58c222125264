"""A small ONNX graph writer and the stacking chain's steps as ONNX ops (all in float64).

Every step after the fold models runs in double precision, as the numpy stacker does, so the
exported graph reproduces a submission to ~1e-12 beyond the fold models' own float32 arithmetic.
Each function mirrors one numpy function of `ensemble.stack` / `ensemble.backbones.predict` and names it.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np

from ensemble.probability import CALIBRATION_EPS, logit

DOUBLE = 11  # onnx.TensorProto.DOUBLE
FLOAT = 1
INT64 = 7


class Graph:
    """Nodes and initializers under unique names; `op(...)` returns the output name."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._ids = itertools.count()

    def name(self, hint: str) -> str:
        return f"ens_{hint}_{next(self._ids)}"

    def const(self, value: Any, dtype: Any = np.float64, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, hint: str | None = None, domain: str = "", **attrs: Any) -> str:
        from onnx import helper

        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, domain=domain, **attrs))
        return out

    # helpers used by every step
    def logit(self, p: str, eps: float) -> str:
        """`ensemble.probability.logit`: log(p) − log(1 − p) of p clipped to [eps, 1 − eps]."""
        c = self.op("Clip", p, self.const(eps), self.const(1 - eps))
        return self.op("Sub", self.op("Log", c), self.op("Log", self.op("Sub", self.const(1.0), c)))

    def sigmoid(self, z: str) -> str:
        return self.op("Sigmoid", z)

    def clip01(self, p: str) -> str:
        return self.op("Clip", p, self.const(0.0), self.const(1.0))

    def axes(self, *values: int) -> str:
        return self.const(list(values), np.int64, "axes")


def calibrate(g: Graph, p: str, state: dict[str, Any]) -> str:
    """One label's calibrator on `p` `(batch,)` float64, as `ensemble.stack.calibration` predicts."""
    kind = state.get("kind", "none")
    if kind == "none":
        return p
    if kind == "temperature":
        x = g.logit(p, CALIBRATION_EPS)
    elif kind == "platt":
        x = p
    if kind in ("temperature", "platt"):
        return g.sigmoid(g.op("Add", g.op("Mul", g.const(state["a"]), x), g.const(state["b"])))
    if kind == "beta":
        a, b, c = (float(v) for v in state["coef"])
        pc = g.op("Clip", p, g.const(CALIBRATION_EPS), g.const(1 - CALIBRATION_EPS))
        f0 = g.op("Log", pc)
        f1 = g.op("Neg", g.op("Log", g.op("Sub", g.const(1.0), pc)))
        z = g.op("Add", g.op("Add", g.op("Mul", f0, g.const(a)), g.op("Mul", f1, g.const(b))), g.const(c))
        return g.sigmoid(z)
    if kind == "isotonic":
        z = g.logit(p, CALIBRATION_EPS)
        iso = _piecewise_linear(g, z, np.asarray(state["x"], float), np.asarray(state["y"], float))
        mix = float(state["mix"])
        return g.op("Add", g.op("Mul", g.const(1 - mix), iso), g.op("Mul", g.const(mix), g.sigmoid(z)))
    raise ValueError(f"unknown calibrator kind {kind!r}")


def _piecewise_linear(g: Graph, z: str, x: np.ndarray, y: np.ndarray) -> str:
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


def label_column(g: Graph, S: str, j: int) -> str:
    """`S[:, j]` of a `(batch, labels)` tensor."""
    return g.op("Gather", S, g.const(j, np.int64), axis=1)


def stack_columns(g: Graph, columns: Sequence[str]) -> str:
    """`(batch,)` columns → `(batch, labels)`."""
    return g.op("Concat", *[g.op("Unsqueeze", c, g.axes(1)) for c in columns], axis=1)


def prior_shift(g: Graph, S: str, prior: dict[str, Any] | None) -> str:
    """`ensemble.stack.prior.adapt_prior`'s applied shift: logit(p) + logit(q) − logit(π) where adapted."""
    if not prior or prior.get("mode", "none") == "none":
        return S
    train, used, mode = prior["prior_train"], prior["prior_used"], prior["mode"]
    cols = []
    for j, (pi, q) in enumerate(zip(train, used)):
        col = label_column(g, S, j)
        if q == pi and mode != "value":
            cols.append(col)
            continue
        z = g.op("Add", g.logit(col, CALIBRATION_EPS), g.const(logit(q)))
        cols.append(g.sigmoid(g.op("Sub", z, g.const(logit(pi)))))
    return g.clip01(stack_columns(g, cols))
