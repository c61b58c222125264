"""A small ONNX graph writer and the stacking chain's steps as ONNX ops (all in float64).

Every step after the fold models runs in double precision, as the numpy stacker does, so the
exported graph reproduces a submission to ~1e-12 beyond the fold models' own float32 arithmetic.
Each function mirrors one numpy function of `ensemble.stack` / `ensemble.backbones.predict` and names it;
each stacking method writes its own ops (`Blender.onnx_ops`) with this writer.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np

from ensemble.artifacts.records import PriorRecord
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

    def column(self, S: str, j: int) -> str:
        """`S[:, j]` of a `(batch, labels)` tensor."""
        return self.op("Gather", S, self.const(j, np.int64), axis=1)

    def columns(self, columns: Sequence[str]) -> str:
        """`(batch,)` columns → `(batch, labels)`."""
        return self.op("Concat", *[self.op("Unsqueeze", c, self.axes(1)) for c in columns], axis=1)


def prior_shift(g: Graph, S: str, prior: PriorRecord | None) -> str:
    """`ensemble.stack.prior.adapt_prior`'s applied shift: logit(p) + logit(q) − logit(π) where adapted."""
    if prior is None or not prior.adapted:
        return S
    train, used, mode = prior.prior_train, prior.prior_used, prior.mode
    cols = []
    for j, (pi, q) in enumerate(zip(train, used)):
        col = g.column(S, j)
        if q == pi and mode != "value":
            cols.append(col)
            continue
        z = g.op("Add", g.logit(col, CALIBRATION_EPS), g.const(logit(q)))
        cols.append(g.sigmoid(g.op("Sub", z, g.const(logit(pi)))))
    return g.clip01(g.columns(cols))
