"""The stacker's entry points called on bare arrays, as the tests build them.

`ensemble.stack.pipeline.stack`/`compare` take a `StackInputs` and a `StackRequest`; these wrappers
build both from keyword arguments so a test names only what it varies.
"""

from __future__ import annotations

import numpy as np

from ensemble.metrics.bootstrap import DECISION_BOOT
from ensemble.stack.pipeline import Comparison, StackResult, compare as compare_inputs, stack as stack_inputs
from ensemble.stack.request import StackInputs, StackRequest
from ensemble.task import MULTILABEL


def arrays(P_oof, y, folds, P_test=None, *, labels=None, run_names=None, P_tl=None, y_tl=None, folds_tl=None,
           w_tl=None, meta=None, task=MULTILABEL, testlike_check=None) -> StackInputs:
    """A `StackInputs` from the tensors (default run and label names from their shapes)."""
    shape = np.shape(P_test if P_test is not None else P_oof)
    return StackInputs(
        runs=list(run_names) if run_names is not None else [f"run{r}" for r in range(shape[1])],
        labels=list(labels) if labels is not None else [str(j) for j in range(shape[2])],
        test=P_test if P_test is not None else np.empty((0, *shape[1:])),
        oof=P_oof, y=y, folds=folds, testlike=P_tl, y_testlike=y_tl, folds_testlike=folds_tl, w_testlike=w_tl,
        meta=meta, task=task, testlike_check=testlike_check)


def stack(P_oof, y, folds, P_test, *, progress=None, labels=None, P_tl=None, y_tl=None, folds_tl=None, w_tl=None,
          meta=None, task=MULTILABEL, **options) -> StackResult:
    inputs = arrays(P_oof, y, folds, P_test, labels=labels, P_tl=P_tl, y_tl=y_tl, folds_tl=folds_tl, w_tl=w_tl,
                    meta=meta, task=task)
    return stack_inputs(inputs, StackRequest(runs=tuple(inputs.runs), **options), progress)


def compare(P_oof, y, folds, *, methods=None, n_boot=DECISION_BOOT, progress=None, run_names=None, labels=None, P_tl=None,
            y_tl=None, folds_tl=None, w_tl=None, meta=None, task=MULTILABEL, testlike_check=None,
            **options) -> Comparison:
    inputs = arrays(P_oof, y, folds, labels=labels, run_names=run_names, P_tl=P_tl, y_tl=y_tl, folds_tl=folds_tl,
                    w_tl=w_tl, meta=meta, task=task, testlike_check=testlike_check)
    return compare_inputs(inputs, StackRequest(runs=tuple(inputs.runs), compare=True, **options), progress,
                          methods, n_boot)
