"""Honest stacking: blenders, calibration, test-prior adaptation and nested-CV scores.

Importing the package registers every method in `BLENDERS` (the CLI's `--method` choices).
"""

from ensemble.stack.base import BLENDERS, Blender, make_blender, register
from ensemble.stack import simple, hillclimb, flip, meta  # noqa: F401, I001  (registers the methods in this order)
from ensemble.stack.calibration import CALIBRATORS, make_calibrator
from ensemble.stack.nested import StackPipeline, nested_cv_predict
from ensemble.stack.pipeline import FIT_ON, StackResult, compare, stack

__all__ = [
    "BLENDERS", "Blender", "CALIBRATORS", "FIT_ON", "StackPipeline", "StackResult", "compare",
    "make_blender", "make_calibrator", "nested_cv_predict", "register", "stack",
]
