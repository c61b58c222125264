"""Fitted stacking state as plain JSON, full precision, for the submission's sidecar (`recipe.state`).

The sidecar's human-readable recipe rounds weights to 6 digits; rebuilding the blend exactly needs
the fitted values themselves: weights, logistic coefficients, LightGBM model text (trimmed to the
best iteration), each rank ECDF's sorted reference values, calibrator parameters. JSON and LightGBM
text only — artifacts are untrusted input, so nothing here is ever unpickled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

STATE_VERSION = 1


def calibrator_state(cal: Any) -> dict[str, Any]:
    """A fitted calibrator's exact parameters (`kind` is its name)."""
    kind = cal.name
    if kind in ("temperature", "platt"):
        return {"kind": kind, "a": float(cal.a_), "b": float(cal.b_)}
    if kind == "beta":
        return {"kind": kind, "coef": [float(v) for v in cal.coef_]}
    if kind == "isotonic":
        from ensemble.stack.calibration import ISO_MIX

        return {"kind": kind, "x": np.asarray(cal.iso_.X_thresholds_, float).tolist(),
                "y": np.asarray(cal.iso_.y_thresholds_, float).tolist(), "mix": ISO_MIX}
    return {"kind": "none"}


def _meta_models(blender: Any) -> list[dict[str, Any]]:
    out = []
    for j, model in enumerate(blender.models_):
        if isinstance(model, float):
            out.append({"constant": float(model)})
        elif isinstance(model, np.ndarray):  # multiclass fitted on one class: its shares
            out.append({"constant": model.astype(float).tolist()})
        elif blender.name == "logreg" and blender.task.exclusive:
            out.append({"coef": model.coef_.astype(float).tolist(), "intercept": model.intercept_.astype(float).tolist(),
                        "classes": model.classes_.astype(int).tolist()})
        elif blender.name == "logreg":
            out.append({"coef": model.coef_[0].astype(float).tolist(), "intercept": float(model.intercept_[0])})
        else:
            out.append({"lightgbm": model.model_to_string(num_iteration=blender.best_iterations_[j])})
    return out


def blender_state(blender: Any) -> dict[str, Any]:
    """A fitted blender's exact state; `method` is its registered name."""
    name = blender.name
    state: dict[str, Any] = {"method": name, "runs": int(blender.n_runs_), "labels": int(blender.n_labels_)}
    if blender.task.exclusive:
        state["task"] = blender.task.name
    if name in ("weighted", "hillclimb"):
        state["weights"] = np.asarray(blender.weights_, float).tolist()  # (runs, labels)
        state["space"] = getattr(blender, "space", "logit")
    elif name == "single":
        state["run"] = int(blender.run)
    elif name == "rank":
        state["sorted"] = np.asarray(blender.sorted_, float).tolist()  # (fit rows, runs, labels)
    elif name in ("logreg", "lgbm"):
        state["all_labels"] = bool(blender.all_labels)
        state["models"] = _meta_models(blender)
        state["meta"] = int(getattr(blender, "n_meta_", 0))  # meta-feature columns after the logits
        if state["meta"] and name == "logreg":
            state["meta_mean"] = np.asarray(blender.meta_mean_, float).tolist()
            state["meta_scale"] = np.asarray(blender.meta_scale_, float).tolist()
    elif name == "flip":
        state["columns"] = np.asarray(blender.perm_, int).tolist()
        state["inverted"] = np.asarray(blender.invert_, bool).tolist()
        state["calibrators"] = [[calibrator_state(c) for c in row] for row in blender.cals_]
        state["weights"] = np.asarray(blender.weights_, float).tolist()
    return state


def pipeline_state(blender: Any, calibrators: list[Any] | None) -> dict[str, Any]:
    """Blender and per-label calibrators of a fitted stack, as `recipe.state`."""
    cals = calibrators or []
    return {"version": STATE_VERSION, "blender": blender_state(blender),
            "calibrators": [calibrator_state(c) for c in cals]}
