"""Honest stacking: blenders, calibration, test-prior adaptation and nested-CV scores.

Importing the package registers every method in `BLENDERS` (the CLI's `--method` choices): the first
methods in this order, then every other module of the package, so a new method is one module that
registers its class (`@register("name")`) and nothing else to edit.
"""

import importlib
import pkgutil

from ensemble.stack.base import BLENDERS, Blender, make_blender, register
from ensemble.stack import simple, hillclimb, flip, meta  # noqa: F401, I001  (registers the methods in this order)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
from ensemble.stack.calibration import CALIBRATORS, make_calibrator
from ensemble.stack.nested import StackPipeline, nested_cv_predict
from ensemble.stack.pipeline import FIT_ON, StackResult, compare, stack

__all__ = [
    "BLENDERS", "Blender", "CALIBRATORS", "FIT_ON", "StackPipeline", "StackResult", "compare",
    "make_blender", "make_calibrator", "nested_cv_predict", "register", "stack",
]
