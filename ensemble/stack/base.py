"""Blender contract, input checks and the registry of stacking methods.

A blender follows scikit-learn's estimator rules: `__init__` only stores parameters, `fit(P, y)`
validates, learns state ending in `_` and returns `self`, `predict(P)` returns `(rows, labels)`
probabilities and raises `NotFittedError` before `fit`. Tensors are `(rows, runs, labels)`.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ensemble.errors import ConfigError, DataError, NotFittedError

from ensemble.probability import logit, sigmoid  # noqa: F401  (the stackers import them from here)
from ensemble.registry import Registry
from ensemble.task import MULTILABEL, Task


def check_tensor(P: Any, name: str = "P") -> np.ndarray:
    """Validate a `(rows, runs, labels)` probability tensor and return it as float64."""
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 3:
        raise DataError(f"{name} must have shape (rows, runs, labels); got {P.ndim} dimensions {P.shape}")
    if 0 in P.shape:
        raise DataError(f"{name} is empty: shape {P.shape}")
    if not np.isfinite(P).all():
        raise DataError(f"{name} holds NaN or infinite values; probabilities in [0, 1] are accepted")
    if P.min() < 0 or P.max() > 1:
        raise DataError(f"{name} holds values outside [0, 1] (min {P.min():.4g}, max {P.max():.4g})")
    return P


def check_targets(y: Any, P: np.ndarray, name: str = "y") -> np.ndarray:
    """Validate `(rows, labels)` 0/1 targets matching tensor `P`."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1 and P.shape[2] == 1:
        y = y[:, None]
    if y.shape != (P.shape[0], P.shape[2]):
        raise DataError(f"{name} must have shape (rows, labels) = {(P.shape[0], P.shape[2])}; got {y.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError(f"{name} must hold only 0/1 targets")
    return y


def check_folds(folds: Any, n_rows: int, name: str = "folds") -> np.ndarray:
    """Validate per-row integer fold ids."""
    folds = np.asarray(folds)
    if folds.shape != (n_rows,):
        raise DataError(f"{name} must have shape ({n_rows},); got {folds.shape}")
    if not np.issubdtype(folds.dtype, np.integer):
        raise DataError(f"{name} must hold integer fold ids; got dtype {folds.dtype}")
    return folds


def check_meta(meta: Any, n_rows: int, name: str = "meta") -> np.ndarray:
    """Validate `(rows, features)` finite meta-features for `n_rows` rows; float64."""
    meta = np.asarray(meta, dtype=np.float64)
    if meta.ndim != 2 or meta.shape[0] != n_rows or meta.shape[1] == 0:
        raise DataError(f"{name} must have shape (rows, features) with {n_rows} rows; got {meta.shape}")
    if not np.isfinite(meta).all():
        raise DataError(f"{name} holds NaN or infinite values")
    return meta


def check_meta_task(task: Task) -> None:
    """Meta-features feed label-by-label models (one per column): a task whose classes exclude each other
    takes none. The stacker asks before any compute, a blender's `fit` again."""
    if not task.label_by_label:
        raise ConfigError("meta-features are for fake/real (multi-label) stacks; a multiclass stack takes none")


class Blender:
    """Base class: combine `(rows, runs, labels)` probabilities into `(rows, labels)` probabilities.

    A method is one subclass, registered by name, that owns everything about it: fitting (`_fit`,
    `_predict`), its exact saved state (`to_state` / `from_state`), its ONNX ops (`onnx_ops`), its words
    (`describe`, `summary`) and the runs an export needs (`select_runs`). Nothing outside the class
    branches on a method's name. Blends happen in the task's link space (`_link` / `_unlink`: logits
    and the sigmoid, or log-probabilities and the softmax), so one code path serves both kinds of task.
    A method whose fit differs when the classes exclude each other (one model over all classes instead
    of one per label) defines `_fit_joint` / `_predict_joint` beside `_fit` / `_predict`, with the same
    arguments; the base calls them for an exclusive task, so the method itself never asks the task. Any
    other method that differs the same way (a saved model, a recipe) is reached through `_form` likewise.
    """

    name: str = "blender"
    summary: str = ""               # one phrase for `ens stack --help`
    words: str = ""                 # the blend in words, for a method with no weights to show
    needs_targets: bool = True
    uses_meta: bool = False  # True: `_fit(P, y, folds, meta)` and `_predict(P, meta)` take meta-features
    exclusive: bool = False         # also blends a task whose classes exclude each other (rows sum to 1)
    candidate: bool = True          # one of `--compare`'s (and so `--method auto`'s) blend candidates

    def __init__(self, task: Task = MULTILABEL) -> None:
        """`task`: what the blender blends (its link space, its joint forms). Every method's `__init__` takes
        it as a keyword beside its hyper-parameters, so `get_params` / scikit-learn's `clone` keep it."""
        self.task = task

    @classmethod
    def blends(cls, task: Task) -> bool:
        """Whether this method can blend `task`'s runs: every one blends independent labels; rows that sum
        to 1 only those marked `exclusive`."""
        return cls.exclusive or task.label_by_label

    def _link(self, P: np.ndarray) -> np.ndarray:
        """Probabilities → the task's blending space (logits, or log-probabilities)."""
        return self.task.link(P, self.task.blend_eps)

    def _unlink(self, Z: np.ndarray) -> np.ndarray:
        """Blended scores → probabilities (the sigmoid of each label, or the softmax of each row)."""
        return self.task.inverse_link(Z)

    def _weighted_link(self, P: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """`_unlink(Σ_r w[r, l] · _link(P)[:, r, l])` for `(runs, labels)` weights."""
        return self._unlink(np.einsum("nrl,rl->nl", self._link(P), weights))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters and their current values."""
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self"}

    def hyper_params(self) -> dict[str, Any]:
        """`get_params` less the task: what a recipe stores as the method's parameters (it names its task)."""
        return {k: v for k, v in self.get_params().items() if k != "task"}

    def set_params(self, **params: Any) -> "Blender":
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ConfigError(f"{self.name} has no parameter {key!r}; valid: {', '.join(valid) or 'none'}")
            setattr(self, key, value)
        return self

    def fit(self, P: np.ndarray, y: np.ndarray | None = None, folds: np.ndarray | None = None,
            meta: np.ndarray | None = None) -> "Blender":
        """Learn from OOF tensor `P` and targets `y`; `folds` lets a method stop early on inner folds;
        `meta` `(rows, features)`: per-clip meta-features, for the methods that take them (`uses_meta`)."""
        P = check_tensor(P)
        if y is None:
            if self.needs_targets:
                raise DataError(f"method {self.name!r} needs targets y to fit; got None")
        else:
            y = check_targets(y, P)
        if folds is not None:
            folds = check_folds(folds, P.shape[0])
        if not self.blends(self.task):
            usable = [n for n, c in BLENDERS.items() if c.blends(self.task)]
            raise ConfigError(f"method {self.name!r} works label by label and cannot blend multiclass runs; "
                              f"use one of: {', '.join(usable)}")
        if meta is not None and not self.uses_meta:
            raise ConfigError(f"method {self.name!r} takes no meta-features; "
                              f"these do: {', '.join(n for n, c in BLENDERS.items() if c.uses_meta)}")
        if meta is not None:
            check_meta_task(self.task)
        meta = None if meta is None else check_meta(meta, P.shape[0])
        self.n_runs_, self.n_labels_ = P.shape[1], P.shape[2]
        self.n_meta_ = 0 if meta is None else meta.shape[1]
        fit = self._form("_fit")
        fit(P, y, folds, meta) if self.uses_meta else fit(P, y, folds)
        return self

    def _joint(self, method: str) -> bool:
        """Whether to call the method's joint form `method`: the task's classes exclude each other and the
        method defines one."""
        return self.task.exclusive and hasattr(self, method)

    def _form(self, method: str) -> Any:
        """The bound method `method`, or its joint form `<method>_joint` where `_joint` says to call it
        (fitting, predicting, saving or describing: whatever differs when the classes exclude each other)."""
        return getattr(self, f"{method}_joint" if self._joint(f"{method}_joint") else method)

    def predict(self, P: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        """Blend `P` `(rows, runs, labels)` (and `meta`, when fitted with it) into `(rows, labels)` probabilities."""
        if not hasattr(self, "n_runs_"):
            raise NotFittedError(f"{self.name} blender is not fitted; call fit(P, y) first")
        P = check_tensor(P)
        if P.shape[1:] != (self.n_runs_, self.n_labels_):
            raise DataError(
                f"P has {P.shape[1]} runs and {P.shape[2]} labels; the blender was fitted on "
                f"{self.n_runs_} runs and {self.n_labels_} labels"
            )
        meta = None if meta is None else check_meta(meta, P.shape[0])
        n_meta = 0 if meta is None else meta.shape[1]
        if n_meta != self.n_meta_:
            raise DataError(f"meta has {n_meta} feature columns; the blender was fitted on {self.n_meta_}")
        predict = self._form("_predict")
        return np.clip(predict(P, meta) if self.uses_meta else predict(P), 0.0, 1.0)

    def recipe(self) -> dict[str, Any]:
        """Learned state worth storing in a submission's sidecar (JSON-serialisable)."""
        return {}

    def state(self) -> dict[str, Any]:
        """The saved form of this fitted blender: method, shape, the task when not multi-label, `to_state`."""
        head: dict[str, Any] = {"method": self.name, "runs": int(self.n_runs_), "labels": int(self.n_labels_)}
        if self.task is not MULTILABEL:
            head["task"] = self.task.name
        return {**head, **self.to_state()}

    def to_state(self) -> dict[str, Any]:
        """The method's exact fitted state (JSON, full precision), beside `method`, `runs`, `labels`."""
        return {}

    def _restore(self, state: dict[str, Any]) -> None:
        """Set the fitted attributes from `to_state`'s fields."""

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Blender":
        """A fitted blender rebuilt from `to_state`'s saved form (`ensemble.stack.state.blender_state`):
        it predicts what the saved one predicted. Hyper-parameters not in the state keep their defaults."""
        from ensemble.task import task_named

        blender = make_blender(state["method"], task_named(state.get("task", MULTILABEL.name)))
        blender.n_runs_, blender.n_labels_ = int(state["runs"]), int(state["labels"])
        blender.n_meta_ = int(state.get("meta", 0))
        blender._restore(state)
        return blender

    @classmethod
    def onnx_ops(cls, g: Any, P: str, state: dict[str, Any], opset: int, subgraphs: list) -> str:
        """This method's `predict` as ONNX ops on `P` `(batch, runs, labels)` float64, from its saved state;
        `g` is the graph writer (`ensemble.export.ops.Graph`), `subgraphs` collects copied-in models."""
        from ensemble.errors import ContractError

        raise ContractError(f"stacking method {cls.name!r} has no ONNX export")

    @classmethod
    def describe(cls, blender: dict[str, Any], names: list[str], labels: list[str], meta: list[str]) -> list[str]:
        """How the runs are combined, in words, from the sidecar's `recipe.blender` (`recipe()`)."""
        return [f"{cls.words}: {', '.join(names)}"] if cls.words else []

    @classmethod
    def select_runs(cls, state: dict[str, Any]) -> tuple[list[int], dict[str, Any]]:
        """The runs the saved blend reads (an export needs only those) and the state re-indexed to them."""
        return list(range(int(state["runs"]))), state

    def _fit(self, P: np.ndarray, y: np.ndarray | None, folds: np.ndarray | None) -> None:
        raise NotImplementedError

    def _predict(self, P: np.ndarray) -> np.ndarray:
        raise NotImplementedError


BLENDERS: Registry[type[Blender]] = Registry("stacking method")
register = BLENDERS.register


def make_blender(name: str, task: Task, /, **params: Any) -> Blender:
    """A new blender registered under `name`, for `task`; an unknown name or parameter lists the valid ones.
    `params` may hold `get_params`'s `task` too, when it is `task`."""
    check_params(name, [k for k in params if not (k == "task" and params[k] is task)])
    return BLENDERS.get(name)(**{**params, "task": task})


def check_params(name: str, keys: Any) -> None:
    """Every key a parameter of method `name` (checked before any data is read); else one line listing them."""
    valid = [k for k in inspect.signature(BLENDERS.get(name).__init__).parameters if k not in ("self", "task")]
    unknown = [k for k in keys if k not in valid]
    if unknown:
        raise ConfigError(f"method {name!r} has no parameter {unknown[0]!r}; valid: {', '.join(valid) or 'none'}")
