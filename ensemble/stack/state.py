"""Fitted stacking state as plain JSON, full precision, for the submission's sidecar (`recipe.state`).

The sidecar's human-readable recipe rounds weights to 6 digits; rebuilding the blend exactly needs
the fitted values themselves: weights, logistic coefficients, LightGBM model text (trimmed to the
best iteration), each rank ECDF's sorted reference values, calibrator parameters. JSON and LightGBM
text only — artifacts are untrusted input, so nothing here is ever unpickled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ensemble.errors import ContractError

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


def calibrator_from_state(state: dict[str, Any]) -> Any:
    """A fitted calibrator from `calibrator_state`'s form (the kinds a flip blend recalibrates runs with,
    and beta; isotonic is only ever exported, never rebuilt)."""
    from ensemble.stack.calibration import make_calibrator

    kind = state.get("kind", "none")
    cal = make_calibrator(kind)
    if kind in ("temperature", "platt"):
        cal.a_, cal.b_ = float(state["a"]), float(state["b"])
    elif kind == "beta":
        cal.coef_ = np.asarray(state["coef"], float)
    elif kind != "none":
        raise ContractError(f"a saved {kind} calibrator is not rebuilt from its state")
    return cal


def blender_state(blender: Any) -> dict[str, Any]:
    """A fitted blender's exact state; `method` is its registered name (the method's `to_state`)."""
    return blender.state()


def pipeline_state(blender: Any, calibrators: list[Any] | None) -> dict[str, Any]:
    """Blender and per-label calibrators of a fitted stack, as `recipe.state`."""
    cals = calibrators or []
    return {"version": STATE_VERSION, "blender": blender_state(blender),
            "calibrators": [calibrator_state(c) for c in cals]}
