"""Simple blends: mean of probabilities, mean of logits, mean of ranks, and fitted weights."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from ensemble.errors import ConfigError
from ensemble.metrics.dacon import competition_score
from ensemble.probability import LOGIT_EPS
from ensemble.stack.base import Blender, logit, register, sigmoid
from ensemble.stack.explain import weight_lines
from ensemble.stack.multiclass import fit_logloss_weights
from ensemble.stack.onnx_ops import weighted_sum
from ensemble.task import MULTILABEL, Task


class _FixedBlend(Blender):
    """A blend with nothing to learn: fitting only marks it fitted."""

    needs_targets = False

    def _fit(self, P, y, folds) -> None:
        pass


@register("mean")
class MeanBlender(_FixedBlend):
    """Mean of the runs' probabilities (multiclass rows still sum to 1)."""

    summary = "equal-weight average of the probabilities"
    words = "the plain mean of the runs' probabilities"
    exclusive = True

    def _predict(self, P: np.ndarray) -> np.ndarray:
        return P.mean(axis=1)

    @classmethod
    def onnx_ops(cls, g, P: str, state: dict, opset: int, subgraphs: list) -> str:
        return g.op("ReduceMean", P, g.axes(1), keepdims=0)


@register("logit")
class LogitBlender(_FixedBlend):
    """Mean of the runs' scores in the task's link space, mapped back: the mean of the logits
    (probabilities clipped to [1e-6, 1 − 1e-6]) through the sigmoid; multiclass: the mean of the
    log-probabilities through the softmax (a normalised geometric mean)."""

    summary = "equal-weight average of the logits"
    words = "the mean of the runs' logits"
    exclusive = True

    def _predict(self, P: np.ndarray) -> np.ndarray:
        return self._unlink(self._link(P).mean(axis=1))

    @classmethod
    def onnx_ops(cls, g, P: str, state: dict, opset: int, subgraphs: list) -> str:
        return g.sigmoid(g.op("ReduceMean", g.logit(P, LOGIT_EPS), g.axes(1), keepdims=0))


@register("rank")
class RankBlender(Blender):
    """Mean of normalised ranks, ties averaged.

    Each run's column is ranked against the data it was fitted on (its empirical CDF with mid-ranks):
    a value v maps to (#{fit < v} + #{fit == v} / 2) / n_fit, which on the fit rows themselves equals
    (average rank − 0.5) / n. Test rows are therefore placed on the OOF scale, not ranked among
    themselves, so OOF and test blends are comparable; fitted on the test tensor (`fit(P_test, None)`
    for runs without OOF) it ranks the test rows among themselves. The output lies in (0, 1) but is
    no calibrated probability: calibrate it afterwards.
    """

    summary = "equal-weight average of the ranks"
    words = "the mean of the runs' ranks"
    needs_targets = False

    def _fit(self, P, y, folds) -> None:
        self.sorted_ = np.sort(P, axis=0)

    def _predict(self, P: np.ndarray) -> np.ndarray:
        n = self.sorted_.shape[0]
        total = np.zeros((P.shape[0], P.shape[2]))
        for r in range(P.shape[1]):
            for j in range(P.shape[2]):
                ref = np.ascontiguousarray(self.sorted_[:, r, j])
                order = np.argsort(P[:, r, j])
                values = P[order, r, j]  # sorted needles: searchsorted walks memory in order
                lo = np.searchsorted(ref, values, side="left")
                hi = np.searchsorted(ref, values, side="right")
                total[order, j] += (lo + hi) / (2.0 * n)
        return total / P.shape[1]

    def to_state(self) -> dict:
        return {"sorted": np.asarray(self.sorted_, float).tolist()}  # (fit rows, runs, labels)

    def _restore(self, state: dict) -> None:
        self.sorted_ = np.asarray(state["sorted"], float)

    @classmethod
    def onnx_ops(cls, g, P: str, state: dict, opset: int, subgraphs: list) -> str:
        """Each value's mid-rank in its run's fitted ECDF, averaged over runs."""
        sorted_ref = np.asarray(state["sorted"], float)
        n = sorted_ref.shape[0]
        ref = g.const(sorted_ref[None])                       # (1, n, runs, labels)
        v = g.op("Unsqueeze", P, g.axes(1))                   # (batch, 1, runs, labels)
        double = 11  # onnx.TensorProto.DOUBLE
        lo = g.op("ReduceSum", g.op("Cast", g.op("Less", ref, v), to=double), g.axes(1), keepdims=0)
        hi = g.op("ReduceSum", g.op("Cast", g.op("LessOrEqual", ref, v), to=double), g.axes(1), keepdims=0)
        ranks = g.op("Div", g.op("Add", lo, hi), g.const(2.0 * n))
        return g.op("ReduceMean", ranks, g.axes(1), keepdims=0)


def _softmax(theta: np.ndarray) -> np.ndarray:
    e = np.exp(theta - theta.max())
    return e / e.sum()


def _fit_weights_logloss(Z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Simplex weights minimising log loss of sigmoid(Z @ w); Z `(rows, runs)` logits.

    Z is made contiguous once: a label's slice of a `(rows, runs, labels)` tensor is strided, and each of
    the optimiser's products on it would take numpy's loop instead of BLAS (3.6× slower per step)."""
    Z = np.ascontiguousarray(Z, dtype=np.float64)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = _softmax(theta)
        z = Z @ w
        # log(1 + e^z) − y·z, stable
        ll = np.logaddexp(0.0, z) - y * z
        g = Z.T @ (sigmoid(z) - y) / len(y)
        return float(ll.mean()), w * (g - w @ g)

    res = minimize(loss, np.zeros(Z.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 200})
    return _softmax(res.x)


def _fit_weights_score(Z: np.ndarray, y: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Simplex weights minimising the competition score (non-smooth: Powell from `start`)."""

    def loss(theta: np.ndarray) -> float:
        return competition_score(y[:, None], sigmoid(Z @ _softmax(theta))[:, None]).score

    res = minimize(loss, np.log(np.maximum(start, 1e-6)), method="Powell", options={"maxiter": 20, "xtol": 1e-3})
    return _softmax(res.x)


class WeightsBlender(Blender):
    """A blend by fitted `(runs, labels)` weights `weights_` in the space `space_` it was fitted for: the
    task's link space ('logit'), or the probabilities ('prob'). Its state, ONNX ops, words and the runs
    an export needs (those with a weight) are shared by the methods that fit weights."""

    exclusive = True

    def _predict(self, P: np.ndarray) -> np.ndarray:
        if self.space_ == "prob":
            return np.einsum("nrl,rl->nl", P, self.weights_)
        return self._weighted_link(P, self.weights_)

    def to_state(self) -> dict:
        return {"weights": np.asarray(self.weights_, float).tolist(), "space": self.space_}  # (runs, labels)

    def _restore(self, state: dict) -> None:
        self.weights_, self.space_ = np.asarray(state["weights"], float), state.get("space", "logit")

    @classmethod
    def onnx_ops(cls, g, P: str, state: dict, opset: int, subgraphs: list) -> str:
        if state.get("space", "logit") == "logit":
            return g.sigmoid(weighted_sum(g, g.logit(P, LOGIT_EPS), state["weights"]))
        return weighted_sum(g, P, state["weights"])

    @classmethod
    def describe(cls, blender: dict, names: list[str], labels: list[str], meta: list[str]) -> list[str]:
        return weight_lines(names, labels, blender["weights"], "weights") if "weights" in blender else []

    @classmethod
    def select_runs(cls, state: dict) -> tuple[list[int], dict]:
        """The runs with a weight (a zero weight adds exactly nothing)."""
        weights = np.asarray(state["weights"], float)
        keep = [r for r in range(int(state["runs"])) if np.any(weights[r] != 0)]
        return keep, {**state, "weights": weights[keep].tolist(), "runs": len(keep)}


@register("weighted")
class WeightedBlender(WeightsBlender):
    """Per-label non-negative weights summing to 1 on the runs' logits, fitted on OOF.

    `objective="logloss"` (smooth, fast, default) or `"competition"` (the competition score, refined by
    Powell from the log-loss weights on at most `max_rows` rows). Multiclass: one weight per run on the
    log-probabilities (softmax of the weighted sum), fitted by multiclass log loss.
    """

    summary = "weights fitted to the OOF"

    def __init__(self, objective: str = "logloss", max_rows: int = 20000, seed: int = 0,
                 task: Task = MULTILABEL) -> None:
        self.task = task
        self.objective = objective
        self.max_rows = max_rows
        self.seed = seed

    def _check_objective(self) -> None:
        if self.objective not in ("logloss", "competition"):
            raise ConfigError(f"weighted: objective must be 'logloss' or 'competition'; got {self.objective!r}")
        self.space_ = "logit"

    def _fit_joint(self, P, y, folds) -> None:
        """Multiclass: one weight per run, shared by the classes (log-probabilities, then the softmax)."""
        self._check_objective()
        if self.objective != "logloss":
            raise ConfigError("weighted: a multiclass task fits objective='logloss' only")
        self.weights_ = np.repeat(fit_logloss_weights(P, y)[:, None], P.shape[2], axis=1)

    def _fit(self, P, y, folds) -> None:
        self._check_objective()
        Z = logit(P)
        weights = []
        for j in range(P.shape[2]):
            w = _fit_weights_logloss(Z[:, :, j], y[:, j])
            if self.objective == "competition":
                rng = np.random.default_rng(self.seed)
                idx = np.sort(rng.permutation(len(y))[: self.max_rows])
                w = _fit_weights_score(Z[idx, :, j], y[idx, j], w)
            weights.append(w)
        self.weights_ = np.stack(weights, axis=1)  # (runs, labels)

    def recipe(self) -> dict:
        return {"weights": self.weights_.T.round(6).tolist()}


@register("single")
class SingleRunBlender(Blender):
    """One run's probabilities unchanged: the best single run as a candidate every blend must beat."""

    summary = "one run, --param run=INDEX"
    candidate = False  # `--compare` has each run as its own candidate
    needs_targets = False
    exclusive = True

    def __init__(self, run: int = 0, task: Task = MULTILABEL) -> None:
        self.task = task
        self.run = run

    def _fit(self, P, y, folds) -> None:
        if not isinstance(self.run, (int, np.integer)) or not 0 <= self.run < P.shape[1]:
            raise ConfigError(f"single: run must be an index in 0..{P.shape[1] - 1}; got {self.run!r}")

    def _predict(self, P: np.ndarray) -> np.ndarray:
        return P[:, self.run, :]

    def recipe(self) -> dict:
        return {"run": int(self.run)}

    def to_state(self) -> dict:
        return {"run": int(self.run)}

    def _restore(self, state: dict) -> None:
        self.run = int(state["run"])

    @classmethod
    def onnx_ops(cls, g, P: str, state: dict, opset: int, subgraphs: list) -> str:
        return g.op("Gather", P, g.const(state["run"], np.int64), axis=1)

    @classmethod
    def describe(cls, blender: dict, names: list[str], labels: list[str], meta: list[str]) -> list[str]:
        if "run" not in blender:
            return []
        k = int(blender["run"])
        return [f"uses run {names[k] if k < len(names) else k} alone"]

    @classmethod
    def select_runs(cls, state: dict) -> tuple[list[int], dict]:
        return [int(state["run"])], {**state, "run": 0, "runs": 1}
