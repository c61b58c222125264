"""Meta-learners on the runs' logits: logistic regression and a shallow, regularised LightGBM.

Per label, features are the runs' logits for that label, or (`all_labels=True`) every label's
logits, so a `fake` model can use what the `real` columns say, plus the per-clip meta-features when
given (voiced fraction, duration, level…: how far to trust the logits on this clip). No class
reweighting: it would spoil the probabilities the metric scores.
"""

from __future__ import annotations

import numpy as np

from typing import Any

from ensemble.errors import ContractError
from ensemble.probability import LOGIT_EPS
from ensemble.stack.base import Blender, logit, register, sigmoid
from ensemble.stack.explain import coefficient_lines
from ensemble.stack.onnx_ops import DOUBLE, FLOAT, feed, features, per_label
from ensemble.task import MULTILABEL, Task


def _features(P: np.ndarray, j: int, all_labels: bool, meta: np.ndarray | None = None) -> np.ndarray:
    Z = logit(P)
    X = Z.reshape(Z.shape[0], -1) if all_labels else Z[:, :, j]
    return X if meta is None else np.hstack([X, meta])


def _per_label(models: list, P: np.ndarray, predict, all_labels: bool, meta: np.ndarray | None = None) -> np.ndarray:
    """Each label's model on its features; a float stands for a label with one class in the fit data.
    Every label's features are the same with `all_labels`: made once."""
    out = np.empty((P.shape[0], P.shape[2]))
    shared = None
    for j, model in enumerate(models):
        if isinstance(model, float):
            out[:, j] = model
            continue
        if not all_labels:
            out[:, j] = predict(j, model, _features(P, j, False, meta))
            continue
        if shared is None:
            shared = _features(P, j, True, meta)
        out[:, j] = predict(j, model, shared)
    return out


class _MetaLearner(Blender):
    """What the two meta-learners share: per-label models (a constant where a label had one class), saved
    as JSON beside `all_labels` and the meta-feature count; export refuses meta-features."""

    uses_meta = True
    exclusive = True

    def _model_state(self, j: int, model: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _model_from_state(self, saved: dict[str, Any]) -> Any:
        raise NotImplementedError

    def to_state(self) -> dict[str, Any]:
        models = []
        for j, model in enumerate(self.models_):
            if isinstance(model, float):
                models.append({"constant": float(model)})
            elif isinstance(model, np.ndarray):  # multiclass fitted on one class: its shares
                models.append({"constant": model.astype(float).tolist()})
            else:
                models.append(self._form("_model_state")(j, model))
        # meta: meta-feature columns after the logits
        return {"all_labels": bool(self.all_labels), "models": models, "meta": int(getattr(self, "n_meta_", 0))}

    def _restore(self, state: dict[str, Any]) -> None:
        self.all_labels = bool(state["all_labels"])
        self.models_ = [(float(m["constant"]) if np.ndim(m["constant"]) == 0 else np.asarray(m["constant"], float))
                        if "constant" in m else self._model_from_state(m) for m in state["models"]]


@register("logreg")
class LogRegBlender(_MetaLearner):
    """L2 logistic regression per label on the runs' logits (and meta-features, standardised on the fit
    rows); multiclass: one multinomial logistic regression on every run's log-probabilities."""

    summary = "a logistic regression on the runs' logits"

    def __init__(self, C: float = 1.0, all_labels: bool = True, max_iter: int = 200, task: Task = MULTILABEL) -> None:
        self.task = task
        self.C = C
        self.all_labels = all_labels
        self.max_iter = max_iter

    def _fit(self, P, y, folds, meta=None) -> None:
        from sklearn.linear_model import LogisticRegression

        if meta is not None:
            self.meta_mean_ = meta.mean(axis=0)
            self.meta_scale_ = np.where(meta.std(axis=0) > 0, meta.std(axis=0), 1.0)
            meta = self._scaled(meta)
        self.models_ = []
        for j in range(P.shape[2]):
            if y[:, j].min() == y[:, j].max():
                self.models_.append(float(y[0, j]))
                continue
            model = LogisticRegression(C=self.C, max_iter=self.max_iter)
            self.models_.append(model.fit(_features(P, j, self.all_labels, meta), y[:, j]))

    def _scaled(self, meta: np.ndarray | None) -> np.ndarray | None:
        return None if meta is None else (meta - self.meta_mean_) / self.meta_scale_

    def _fit_joint(self, P, y, folds, meta=None) -> None:
        """Multiclass: one multinomial regression on every run's log-probabilities (one class seen: its shares)."""
        from sklearn.linear_model import LogisticRegression

        t = y.argmax(axis=1)
        self.models_ = [y.mean(axis=0) if len(np.unique(t)) < 2 else
                        LogisticRegression(C=self.C, max_iter=self.max_iter).fit(_log_features(P), t)]

    def _predict_joint(self, P: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        model = self.models_[0]
        if isinstance(model, np.ndarray):  # one class in the fit data: its shares
            return np.broadcast_to(model, (P.shape[0], P.shape[2])).copy()
        return _class_columns(model.classes_, model.predict_proba(_log_features(P)), P.shape[2])

    def _predict(self, P: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        return _per_label(self.models_, P, lambda j, model, X: model.predict_proba(X)[:, 1], self.all_labels,
                          self._scaled(meta))

    def recipe(self) -> dict:
        return self._form("_recipe")()

    def _recipe(self) -> dict:
        return {
            "coef": [m if isinstance(m, float) else m.coef_[0].round(6).tolist() for m in self.models_],
            "intercept": [m if isinstance(m, float) else float(m.intercept_[0]) for m in self.models_],
        }

    def _recipe_joint(self) -> dict:
        m = self.models_[0]
        if isinstance(m, np.ndarray):
            return {"constant": m.round(6).tolist()}
        return {"coef": m.coef_.round(6).tolist(), "intercept": m.intercept_.round(6).tolist(),
                "classes": m.classes_.tolist()}

    def _model_state(self, j: int, model: Any) -> dict[str, Any]:
        return {"coef": model.coef_[0].astype(float).tolist(), "intercept": float(model.intercept_[0])}

    def _model_state_joint(self, j: int, model: Any) -> dict[str, Any]:
        return {"coef": model.coef_.astype(float).tolist(), "intercept": model.intercept_.astype(float).tolist(),
                "classes": model.classes_.astype(int).tolist()}

    def to_state(self) -> dict[str, Any]:
        state = super().to_state()
        if state["meta"]:
            state["meta_mean"] = np.asarray(self.meta_mean_, float).tolist()
            state["meta_scale"] = np.asarray(self.meta_scale_, float).tolist()
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        super()._restore(state)
        if state.get("meta"):
            self.meta_mean_, self.meta_scale_ = np.asarray(state["meta_mean"]), np.asarray(state["meta_scale"])

    def _model_from_state(self, saved: dict[str, Any]) -> Any:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=self.C, max_iter=self.max_iter)
        model.coef_ = np.atleast_2d(np.asarray(saved["coef"], float))
        model.intercept_ = np.atleast_1d(np.asarray(saved["intercept"], float))
        model.classes_ = np.asarray(saved.get("classes", [0, 1]))
        return model

    @classmethod
    def onnx_ops(cls, g, P: str, state: dict, opset: int, subgraphs: list) -> str:
        runs, labels = state["runs"], state["labels"]
        Z = g.logit(P, LOGIT_EPS)

        def column(j: int, model: dict[str, Any]) -> str:
            X = features(g, Z, j, state["all_labels"], runs * labels)
            coef = np.asarray(model["coef"], float)
            d = g.op("ReduceSum", g.op("Mul", X, g.const(coef[None])), g.axes(1), keepdims=0)
            return g.sigmoid(g.op("Add", d, g.const(model["intercept"])))

        return per_label(g, P, state["models"], column)

    @classmethod
    def describe(cls, blender: dict, names: list[str], labels: list[str], meta: list[str]) -> list[str]:
        return coefficient_lines(names, labels, blender["coef"], meta) if "coef" in blender else []


def _log_features(P: np.ndarray) -> np.ndarray:
    """Multiclass features: every run's log-probability of every class."""
    from ensemble.stack.multiclass import log_probs

    return log_probs(P).reshape(P.shape[0], -1)


def _class_columns(classes: np.ndarray, proba: np.ndarray, n_classes: int) -> np.ndarray:
    """A model's class probabilities placed in the task's columns; a class absent from the fit data gets 0."""
    out = np.zeros((proba.shape[0], n_classes))
    out[:, np.asarray(classes, dtype=np.int64)] = proba
    return out


def _validation_rows(y: np.ndarray, folds: np.ndarray | None, seed: int) -> np.ndarray:
    """Rows for early stopping: the last inner fold when folds are known, else a seeded 20 %."""
    if folds is not None and len(np.unique(folds)) >= 2:
        return folds == np.unique(folds)[-1]
    rng = np.random.default_rng(seed)
    return rng.random(len(y)) < 0.2


def _complement_of(y: np.ndarray, j: int, models: list) -> int | None:
    """An earlier label fitted as a booster whose targets are exactly 1 − label `j`'s (fake/real), else None."""
    for i in range(j):
        if not isinstance(models[i], (float, np.ndarray)) and np.array_equal(y[:, j], 1.0 - y[:, i]):
            return i
    return None


def _negated(booster: Any) -> Any:
    """`booster` with every leaf value negated: raw scores exactly −booster's, so probabilities 1 − its.

    Boosting the complementary labels on the same rows and features is this model: logloss gradients
    flip sign, hessians and split gains stay, so every split is the same and every leaf the negative (up
    to rounding in the starting score, ~1e-16). One fit instead of two for fake/real contests.
    """
    import lightgbm as lgb

    text = booster.model_to_string()
    mirror = lgb.Booster(model_str=text)
    leaves = [int(line.split("=")[1]) for line in text.splitlines() if line.startswith("num_leaves=")]
    for tree, n in enumerate(leaves):
        for leaf in range(n):
            mirror.set_leaf_output(tree, leaf, -mirror.get_leaf_output(tree, leaf))
    return mirror


@register("lgbm")
class LGBMBlender(_MetaLearner):
    """Shallow, regularised LightGBM per label; early stopping on an inner fold; deterministic.

    One thread by default: on a few thousand rows × 20 features LightGBM's threads cost more than
    they save, and on shared cores they spin (10–40× slower measured on 2 busy cores). A label whose
    targets are 1 − an earlier label's (fake/real) with the same features gets that label's trees
    negated instead of a second fit (`_negated`): half the boosting at contest size, predictions equal
    to ~1e-16. Multiclass: one `multiclass` booster on every run's log-probabilities.
    """

    summary = "LightGBM on the runs' logits"
    words = "LightGBM trees on the runs' logits (no per-run weights to show)"

    def __init__(
        self,
        num_leaves: int = 7,
        max_depth: int = 3,
        learning_rate: float = 0.15,
        n_estimators: int = 200,
        min_child_samples: int = 200,
        reg_lambda: float = 10.0,
        early_stopping_rounds: int = 20,
        all_labels: bool = True,
        num_threads: int = 1,
        seed: int = 0,
        task: Task = MULTILABEL,
    ) -> None:
        self.task = task
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.n_estimators = n_estimators
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.all_labels = all_labels
        self.num_threads = num_threads
        self.seed = seed

    def _params(self, n_train: int) -> dict:
        # a leaf needs min_child_samples rows: on small fit sets (a few hundred test-like clips) cap it
        # at a tenth of the rows so trees can still split
        min_leaf = max(5, min(self.min_child_samples, n_train // 10))
        return {
            "objective": "binary", "num_leaves": self.num_leaves, "max_depth": self.max_depth,
            "learning_rate": self.learning_rate, "min_data_in_leaf": min_leaf,
            "lambda_l2": self.reg_lambda, "max_bin": 63, "num_threads": self.num_threads,
            "seed": self.seed, "deterministic": True, "force_col_wise": True, "verbose": -1,
        }

    def _fit(self, P, y, folds, meta=None) -> None:
        import lightgbm as lgb

        valid = _validation_rows(y, folds, self.seed)
        self.models_, self.best_iterations_ = [], []
        self.mirror_of_: list[int | None] = [None] * P.shape[2]  # a label whose trees are another's negated
        sets = None  # with all labels' features, every label bins the same X: built once, relabelled
        for j in range(P.shape[2]):
            t = y[:, j]
            if t.min() == t.max() or t[valid].min() == t[valid].max():
                self.models_.append(float(t.mean()))
                self.best_iterations_.append(0)
                continue
            twin = _complement_of(y, j, self.models_) if self.all_labels else None
            if twin is not None:  # same features, labels 1 − t: the twin's trees with every leaf negated
                self.models_.append(_negated(self.models_[twin]))
                self.best_iterations_.append(self.best_iterations_[twin])
                self.mirror_of_[j] = twin
                continue
            if sets is None or not self.all_labels:
                X = _features(P, j, self.all_labels, meta)
                sets = (lgb.Dataset(X[~valid], t[~valid], free_raw_data=True),)
                sets += (lgb.Dataset(X[valid], t[valid], reference=sets[0]),)
            else:
                sets[0].set_label(t[~valid])
                sets[1].set_label(t[valid])
            train_set, valid_set = sets
            booster = lgb.train(
                self._params(int((~valid).sum())), train_set, num_boost_round=self.n_estimators, valid_sets=[valid_set],
                callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
            )
            self.models_.append(booster)
            self.best_iterations_.append(int(booster.best_iteration or self.n_estimators))

    def _fit_joint(self, P, y, folds, meta=None) -> None:
        """Multiclass: one multiclass booster on every run's log-probabilities (one class seen: its shares)."""
        import lightgbm as lgb

        valid = _validation_rows(y, folds, self.seed)
        X, t = _log_features(P), y.argmax(axis=1)
        if len(np.unique(t[~valid])) < 2:  # one class to learn from: its shares
            self.models_, self.best_iterations_ = [y.mean(axis=0)], [0]
            return
        params = {**self._params(int((~valid).sum())), "objective": "multiclass", "num_class": P.shape[2]}
        train_set = lgb.Dataset(X[~valid], t[~valid], free_raw_data=True)
        valid_set = lgb.Dataset(X[valid], t[valid], reference=train_set)
        booster = lgb.train(params, train_set, num_boost_round=self.n_estimators, valid_sets=[valid_set],
                            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)])
        self.models_, self.best_iterations_ = [booster], [int(booster.best_iteration or self.n_estimators)]

    def _predict_joint(self, P: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        if isinstance(self.models_[0], np.ndarray):
            return np.broadcast_to(self.models_[0], (P.shape[0], P.shape[2])).copy()
        return self.models_[0].predict(_log_features(P), num_iteration=self.best_iterations_[0],
                                       num_threads=self.num_threads)

    def _predict(self, P: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        """Raw scores through the logistic function, which is LightGBM's own `binary` output to the bit; a
        mirrored label (`_negated`) takes its twin's raw scores negated, which are its own exactly."""
        raw: dict[int, np.ndarray] = {}

        def predict(j, booster, X):
            twin = self.mirror_of_[j]
            if twin in raw:
                return sigmoid(-raw[twin])
            raw[j] = booster.predict(X, num_iteration=self.best_iterations_[j], raw_score=True,
                                     num_threads=self.num_threads)
            return sigmoid(raw[j])

        return _per_label(self.models_, P, predict, self.all_labels, meta)

    def recipe(self) -> dict:
        return {"best_iterations": self.best_iterations_}

    def _model_state(self, j: int, model: Any) -> dict[str, Any]:
        return {"lightgbm": model.model_to_string(num_iteration=self.best_iterations_[j])}

    def _restore(self, state: dict[str, Any]) -> None:
        super()._restore(state)
        self.best_iterations_ = [0 if "constant" in m else model.current_iteration()
                                 for m, model in zip(state["models"], self.models_)]
        self.mirror_of_ = [None] * len(self.models_)  # the state keeps each label's trees: each predicts its own

    def _model_from_state(self, saved: dict[str, Any]) -> Any:
        import lightgbm as lgb

        return lgb.Booster(model_str=saved["lightgbm"])

    @classmethod
    def onnx_ops(cls, g, P: str, state: dict, opset: int, subgraphs: list) -> str:
        import onnx.compose

        runs, labels = state["runs"], state["labels"]
        n_features = runs * labels if state["all_labels"] else runs
        Z = g.logit(P, LOGIT_EPS)

        def column(j: int, model: dict[str, Any]) -> str:
            sub = onnx.compose.add_prefix(_lightgbm_graph(model["lightgbm"], n_features, opset), g.name(f"lgbm{j}") + "_")
            subgraphs.append(sub)
            x = g.op("Cast", features(g, Z, j, state["all_labels"], n_features), to=FLOAT)
            feed(g, sub.graph.input[0].name, x)
            probs = [o.name for o in sub.graph.output if "prob" in o.name]
            if not probs:
                raise ContractError(f"onnxmltools gave outputs {[o.name for o in sub.graph.output]}; none is probabilities")
            return g.op("Gather", g.op("Cast", probs[0], to=DOUBLE), g.const(1, np.int64), axis=1)

        return per_label(g, P, state["models"], column)


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
