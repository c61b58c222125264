"""Classical families: per-clip features (`features.ClipFeatures`) and one fitted estimator per label.

`FeatureClassifier` is trained on feature rows of augmented examples (the same `ExampleSampler`
batches the neural families train on) and exports to ONE ONNX graph with the neural families'
convention: input `input_values (batch, samples)` at `sampling_rate`, output `probabilities
(batch, labels)`, a raw-waveform `Preprocessor` in the metadata. The feature front end is exported
from torch (opset 15, what the tree converters support) and each label's estimator is converted by
onnxmltools (LightGBM) or skl2onnx (scikit-learn), then spliced in, so `ens oof` runs it unchanged
and no pickle is ever written. Estimators register in `ESTIMATORS`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ensemble.artifacts.io import umask_mode
from ensemble.backbones.features import ClipFeatures, FeatureSpec, clip_features
from ensemble.backbones.ort import OUTPUT_NAME
from ensemble.backbones.preprocess import RAW, Preprocessor
from ensemble.errors import ConfigError
from ensemble.progress import Progress, emit
from ensemble.registry import Registry
from ensemble.task import MULTILABEL, Task

OPSET = 15  # the highest default-domain opset onnxmltools' LightGBM converter emits
FEATURES_NAME = "features"


@dataclass(frozen=True)
class Estimator:
    """How one estimator kind fits integer classes (a label's 0/1, or all classes), predicts their
    probabilities `(n, classes)` and becomes an ONNX graph.

    `to_onnx(fitted, n_features)` returns a model whose input is `features (batch, n_features)` float
    and whose output named `probabilities` is `(batch, classes)` (a label's: column 1 = the positive class)."""

    fit: Callable[[np.ndarray, np.ndarray, dict, int, int], Any]
    predict: Callable[[Any, np.ndarray], np.ndarray]
    to_onnx: Callable[[Any, int], Any]
    defaults: dict = field(default_factory=dict)
    # the largest |p_onnx − p_native| the exported graph may show: the ONNX tree ensemble compares float32
    # features with float32 split thresholds where LightGBM compares in float64, so a feature lying between
    # a threshold and its float32 rounding takes the other branch (one leaf value × the learning rate, about
    # 0.005 for the defaults); a run's predictions all come from the ONNX file, so the bar guards the export,
    # not the predictions
    parity_bar: float = 1e-4


def _fit_lgbm(x: np.ndarray, y: np.ndarray, params: dict, seed: int, threads: int) -> Any:
    import lightgbm as lgb

    model = lgb.LGBMClassifier(**params, random_state=seed, n_jobs=threads, deterministic=True,
                               force_col_wise=True, verbose=-1)
    return model.fit(x, y)


def _lgbm_onnx(fitted: Any, n_features: int) -> Any:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    return onnxmltools.convert_lightgbm(fitted, initial_types=[(FEATURES_NAME, FloatTensorType([None, n_features]))],
                                        zipmap=False, target_opset=OPSET)


def _fit_logreg(x: np.ndarray, y: np.ndarray, params: dict, seed: int, threads: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(**params, random_state=seed)).fit(x, y)


def _fit_svm(x: np.ndarray, y: np.ndarray, params: dict, seed: int, threads: int) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    # Platt scaling of the margins on 3-fold cross-validated decisions, then one SVC on every row
    # (ensemble=False): probabilities the metric can score, one kernel machine to export
    folds = StratifiedKFold(3, shuffle=True, random_state=seed)
    svm = CalibratedClassifierCV(SVC(**params, random_state=seed), method="sigmoid", cv=folds, ensemble=False)
    return make_pipeline(StandardScaler(), svm).fit(x, y)


def _sklearn_onnx(fitted: Any, n_features: int) -> Any:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    with warnings.catch_warnings():
        # skl2onnx's SVC converter reads SVC.probA_/probB_ (deprecated in scikit-learn 1.9) even when the
        # SVC has no probability model; ours is calibrated outside it, so those attributes are not used
        warnings.filterwarnings("ignore", message="Attribute `prob[AB]_` was deprecated", category=FutureWarning)
        return convert_sklearn(fitted, initial_types=[(FEATURES_NAME, FloatTensorType([None, n_features]))],
                               options={id(fitted.steps[-1][1]): {"zipmap": False}}, target_opset=OPSET)


def _proba(fitted: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(fitted.predict_proba(x), dtype=np.float64)


ESTIMATORS: Registry[Estimator] = Registry("classical estimator")
ESTIMATORS.add("lgbm", Estimator(_fit_lgbm, _proba, _lgbm_onnx,
                                 {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 15,
                                  "min_child_samples": 20, "subsample": 0.8, "subsample_freq": 1,
                                  "colsample_bytree": 0.5, "reg_lambda": 1.0}, parity_bar=2e-2))
ESTIMATORS.add("logreg", Estimator(_fit_logreg, _proba, _sklearn_onnx, {"C": 0.1, "max_iter": 2000}))
ESTIMATORS.add("svm", Estimator(_fit_svm, _proba, _sklearn_onnx, {"C": 1.0, "kernel": "rbf", "gamma": "scale"}))


@dataclass
class ClassicalConfig:
    """A classical family: its model_type, the feature front end and the estimator with its parameters."""

    model_type: str
    estimator: str
    spec: FeatureSpec = field(default_factory=FeatureSpec)
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, "estimator": self.estimator, "features": self.spec.to_dict(),
                "params": dict(self.params)}


class FeatureClassifier:
    """Per-clip features → one estimator per label; `fit`, `predict_proba_native`, `export_onnx`."""

    def __init__(self, config: ClassicalConfig, model_ref: str, labels: list[str]) -> None:
        if not labels or len(set(labels)) != len(labels):
            raise ConfigError(f"labels must be non-empty and unique; got {labels!r}")
        self.config = config
        self.model_ref = model_ref
        self.labels = list(labels)
        self.family = config.model_type
        self.estimator = ESTIMATORS.get(config.estimator)
        self.params = {**self.estimator.defaults, **config.params}
        self.frontend = ClipFeatures(config.spec).eval()
        self.preprocessor = Preprocessor(RAW, config.spec.sampling_rate, False)
        self.models: list[Any] = []
        self.columns: list[slice] = []  # per estimator, the columns of its class probabilities that are labels
        self.task = MULTILABEL  # MULTICLASS: one multiclass estimator over the labels (rows sum to 1)

    @property
    def sampling_rate(self) -> int:
        return self.config.spec.sampling_rate

    @property
    def feature_names(self) -> list[str]:
        return self.config.spec.names()

    def features(self, waves: np.ndarray) -> np.ndarray:
        """`(n, samples)` float32 waves → `(n, n_features)` float32 (torch, no grad)."""
        return clip_features(self.frontend, np.asarray(waves, dtype=np.float32))

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int, threads: int | None = None) -> "FeatureClassifier":
        """One estimator per label column of the multi-hot `y`; a label with one class is an error. A NaN
        target means "unknown": the row is left out of that label's fit (multiclass: out of the fit)."""
        # One thread by default: on a shared 2-core machine LightGBM's OpenMP pool spins (measured 10x
        # slower with 2 threads under load), and the data is small.
        threads = threads or 1
        y = np.asarray(y, dtype=np.float64)
        problems = self.task.class_targets(y, self.labels)
        self.models = [self.estimator.fit(x[known], target, self.params, seed, threads)
                       for known, target, _ in problems]
        self.columns = [columns for _, _, columns in problems]
        return self

    def predict_proba_native(self, x: np.ndarray) -> np.ndarray:
        """`(n, labels)` probabilities by the estimators themselves (the parity reference for ONNX)."""
        return np.concatenate([self.estimator.predict(m, x)[:, columns]
                               for m, columns in zip(self.models, self.columns)], axis=1)

    def describe(self) -> dict[str, Any]:
        return {"model_ref": self.model_ref, "model_type": self.family, "labels": self.labels,
                "sampling_rate": self.sampling_rate, "input_names": self.preprocessor.input_names,
                "input_kind": "waveform", "config": self.config.to_dict(), "estimator_params": self.params,
                "n_features": len(self.feature_names)}

    def to_onnx(self) -> Any:
        """The whole classifier as one ONNX model (front end + every label's estimator)."""
        if not self.models:
            raise ConfigError("the classifier is not fitted; call fit first")
        front = _export_frontend(self.frontend)
        heads = [self.estimator.to_onnx(m, len(self.feature_names)) for m in self.models]
        return _splice(front, heads, self.labels, self.columns)

    def export_onnx(self, path: Path, metadata: dict[str, str]) -> None:
        """Write the ONNX file atomically, with the neural families' metadata keys plus the features'."""
        import onnx

        model = self.to_onnx()
        props = {"labels": json.dumps(self.labels), "sampling_rate": str(self.sampling_rate),
                 "model_ref": self.model_ref, "model_type": self.family,
                 "input_names": json.dumps(self.preprocessor.input_names), "output_name": OUTPUT_NAME,
                 "preprocessor": self.preprocessor.to_json(), "features": json.dumps(self.config.spec.to_dict()),
                 "estimator": self.config.estimator, **{k: str(v) for k, v in metadata.items()}}
        for key, value in props.items():
            model.metadata_props.add(key=key, value=value)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, umask_mode(directory=False))
        try:
            onnx.save_model(model, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _export_frontend(frontend: ClipFeatures) -> Any:
    """The feature module as ONNX (TorchScript exporter: a parameter-free chain, exported in ~1 s)."""
    import onnx
    import torch

    buf = io.BytesIO()
    # 2 s where a speaker encoder needs 1.6-s windows to trace; 1 s otherwise (the time axis is dynamic)
    example = torch.zeros(2, frontend.spec.sampling_rate * (2 if frontend.spec.embedding else 1))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(frontend, (example,), buf, dynamo=False, input_names=["input_values"],
                          output_names=[FEATURES_NAME], opset_version=OPSET,
                          dynamic_axes={"input_values": {0: "batch", 1: "samples"}, FEATURES_NAME: {0: "batch"}})
    return onnx.load_from_string(buf.getvalue())


def _splice(front: Any, heads: list[Any], labels: list[str], columns: list[slice]) -> Any:
    """One graph: front end → `features` → each head's label `columns` (the positive class of a label's head;
    `slice(None)`: one multiclass head whose every column is a label) → `probabilities`."""
    import onnx
    from onnx import TensorProto, compose, helper, numpy_helper

    nodes, inits = list(front.graph.node), list(front.graph.initializer)
    outputs = []
    opsets = {o.domain: o.version for o in front.opset_import}
    for j, (head, taken) in enumerate(zip(heads, columns)):
        prefix = f"label{j}_"
        head = compose.add_prefix(head, prefix)
        for node in head.graph.node:
            node.input[:] = [FEATURES_NAME if i == prefix + FEATURES_NAME else i for i in node.input]
        nodes += head.graph.node
        inits += head.graph.initializer
        for o in head.opset_import:
            opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
        if taken == slice(None):
            outputs.append(f"{prefix}{OUTPUT_NAME}")
            continue
        column = f"{prefix}positive"
        starts, ends, axes = (numpy_helper.from_array(np.array([v], dtype=np.int64), f"{prefix}slice_{n}")
                              for n, v in (("starts", taken.start), ("ends", taken.stop), ("axes", 1)))
        inits += [starts, ends, axes]
        nodes.append(helper.make_node("Slice", [f"{prefix}{OUTPUT_NAME}", starts.name, ends.name, axes.name],
                                      [column], name=f"{prefix}slice"))
        outputs.append(column)
    if columns == [slice(None)]:
        nodes.append(helper.make_node("Identity", outputs, [OUTPUT_NAME], name="class_probabilities"))
    else:
        nodes.append(helper.make_node("Concat", outputs, [OUTPUT_NAME], axis=1, name="concat_labels"))
    output = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", len(labels)])
    graph = helper.make_graph(nodes, "ens-classical", list(front.graph.input), [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                              producer_name="ens")
    model.ir_version = max(front.ir_version, *(h.ir_version for h in heads))
    onnx.checker.check_model(model)
    return model


def check_classical_options(model_ref: str, max_seconds: float) -> None:
    """What a classical family needs before any audio is read: a speaker encoder's weights, and training
    and inference windows long enough for its 1.6-s windows."""
    from ensemble.backbones.families import is_classical, named_config

    if not is_classical(model_ref) or not named_config(model_ref).spec.embedding:
        return
    from ensemble.backbones.voice_embedding import MIN_SAMPLES, SAMPLING_RATE, weights_path

    weights_path()
    if max_seconds * SAMPLING_RATE < MIN_SAMPLES:
        raise ConfigError(f"--max-seconds {max_seconds:g}: {model_ref!r} embeds 1.6-s windows; "
                          f"use at least {MIN_SAMPLES / SAMPLING_RATE:.2f}")


def build_classical(model_ref: str, labels: list[str], lr: float | None = None) -> FeatureClassifier:
    """A fresh classifier for a named classical family; `lr` sets LightGBM's boosting rate if given."""
    from ensemble.backbones.families import named_config

    config = named_config(model_ref)
    if not isinstance(config, ClassicalConfig):
        raise ConfigError(f"{model_ref!r} is not a classical family")
    if lr is not None and config.estimator == "lgbm":
        config.params["learning_rate"] = float(lr)
    return FeatureClassifier(config, model_ref, labels)


@dataclass(frozen=True)
class PseudoLabels:
    """A second fit round on unlabeled clips (the competition's test audio) that the first round's
    estimators label with at least `confidence`; `features()` gives those clips' feature rows."""

    confidence: float
    features: Callable[[], np.ndarray]


def pseudo_targets(p: np.ndarray, confidence: float, task: Task = MULTILABEL) -> np.ndarray:
    """Targets from predictions `(n, labels)`: 1 / 0 where a label's probability is at least `confidence`
    / at most 1 − `confidence`, NaN (unknown) between; multiclass: the one-hot argmax of rows whose top
    class reaches `confidence`, NaN rows elsewhere (`Task.confident_targets`)."""
    return task.confident_targets(p, confidence)


def fit_on_examples(classifier: FeatureClassifier, batches: Iterable[tuple[np.ndarray, np.ndarray]], total: int,
                    seed: int, progress: Progress | None = None, pseudo: PseudoLabels | None = None) -> dict[str, Any]:
    """Features of every `(waves, targets)` batch, then one fit per label (then, with `pseudo`, a refit with
    the confidently pseudo-labelled unlabeled clips added); what the fit saw, for fold.json."""
    xs, ys, done = [], [], 0
    for waves, y in batches:
        xs.append(classifier.features(waves))
        ys.append(np.asarray(y, dtype=np.float32))
        done += len(waves)
        emit(progress, "features", done=done, total=total)
    x, y = np.concatenate(xs), np.concatenate(ys)
    emit(progress, "fit", examples=int(len(x)), features=int(x.shape[1]))
    classifier.fit(x, y, seed)
    info = {"examples": int(len(x)), "features": int(x.shape[1]),
            "positive_share": {label: float(y[:, j].mean()) for j, label in enumerate(classifier.labels)}}
    if pseudo is None:
        return info
    xu = pseudo.features()
    yu = pseudo_targets(classifier.predict_proba_native(xu), pseudo.confidence, classifier.task)
    emit(progress, "pseudo-label fit", examples=int(len(x)), unlabeled=int(len(xu)))
    classifier.fit(np.concatenate([x, xu]), np.concatenate([y, yu]), seed)
    info["pseudo_labels"] = {"confidence": pseudo.confidence, "clips": int(len(xu)),
                             "labelled": {label: int((~np.isnan(yu[:, j])).sum()) for j, label in enumerate(classifier.labels)},
                             "positive": {label: int((yu[:, j] == 1).sum()) for j, label in enumerate(classifier.labels)}}
    return info
