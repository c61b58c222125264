"""Median blend: per label, the median of the runs' scores in the task's link space, mapped back.

A mean lets one wild run pull every clip; the median ignores it while more than half the runs agree
(with an even number of runs it averages the middle two). Multi-label: the median of the logits through
the sigmoid (for an odd number of runs, exactly the median probability); multiclass: the median of each
class's log-probability through the softmax. Nothing is learnt from targets, so it serves runs without
OOF too. Not one of `--compare`'s candidates: with few runs it is close to the mean of logits and adds
one more test to the decision's correction for many candidates; ask for it with `--method median`.
"""

from __future__ import annotations

import numpy as np

from ensemble.probability import LOGIT_EPS
from ensemble.stack.base import Blender, register


@register("median")
class MedianBlender(Blender):
    """Median of the runs' logits (log-probabilities when multiclass), mapped back to probabilities."""

    summary = "the median of the logits: robust to one wild run"
    words = "the median of the runs' logits"
    needs_targets = False
    exclusive = True
    candidate = False

    def _fit(self, P: np.ndarray, y: np.ndarray | None, folds: np.ndarray | None) -> None:
        pass

    def _predict(self, P: np.ndarray) -> np.ndarray:
        return self._unlink(np.median(self._link(P), axis=1))

    @classmethod
    def onnx_ops(cls, g, P: str, state: dict, opset: int, subgraphs: list) -> str:
        """The runs' logits sorted by TopK along the runs axis; the middle one (or the middle two averaged)."""
        from onnx import helper

        runs = int(state["runs"])
        Z = g.logit(P, LOGIT_EPS)
        ordered, order = g.name("topk"), g.name("topk_index")  # TopK has two outputs; the order is unused
        g.nodes.append(helper.make_node("TopK", [Z, g.const([runs], np.int64)], [ordered, order], name=ordered,
                                        axis=1, largest=1, sorted=1))
        middle = [runs // 2] if runs % 2 else [runs // 2 - 1, runs // 2]
        picked = g.op("Gather", ordered, g.const(middle, np.int64), axis=1)
        return g.sigmoid(g.op("ReduceMean", picked, g.axes(1), keepdims=0))
