"""Per-clip meta-features for the stacker (voiced fraction, duration, level…), aligned with its tensors.

What "no leak" means here: a meta-feature must be a property of the clip's audio, computed without any
label (the feature set's manifest says `labels_used: false`), and it reaches the meta-learner only
through the same nested folds as the runs' logits, so fold k's rows never fit what scores them. A column
that separates a label perfectly on the labelled rows is not audio but a copy of the label (a join gone
wrong, a file made from train.csv): it is refused, since no nested CV can catch a leak that sits in
the held-out rows themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ensemble.errors import ContractError, DataError
from ensemble.stack.base import check_meta

MIN_CLASS_ROWS = 10  # fewer rows of a class: perfect separation happens by chance


@dataclass
class MetaFeatures:
    """Meta-features for every row the stacker sees: `(rows, features)` for OOF, test-like and test rows."""

    names: list[str]                      # `set:column`
    oof: np.ndarray
    test: np.ndarray
    testlike: np.ndarray | None = None
    sources: list[dict] = field(default_factory=list)  # per feature set: name, kind, manifest hash, columns

    def check(self, n_oof: int, n_test: int, n_testlike: int | None) -> "MetaFeatures":
        """Shapes and values checked against the stacker's row counts; returns self."""
        self.oof = check_meta(self.oof, n_oof, "meta (OOF rows)")
        self.test = check_meta(self.test, n_test, "meta (test rows)")
        if n_testlike is not None:
            if self.testlike is None:
                raise DataError("meta-features lack the test-like rows the runs have")
            self.testlike = check_meta(self.testlike, n_testlike, "meta (test-like rows)")
        for part in (self.test, self.testlike):
            if part is not None and part.shape[1] != self.oof.shape[1]:
                raise DataError(f"meta-features have {self.oof.shape[1]} columns on OOF rows, "
                                f"{part.shape[1]} elsewhere")
        if len(self.names) != self.oof.shape[1]:
            raise DataError(f"meta-features name {len(self.names)} columns; they hold {self.oof.shape[1]}")
        return self

    def record(self) -> dict:
        """What the submission's sidecar says about the meta-features it used."""
        return {"columns": list(self.names), "sets": list(self.sources)}


def check_no_label_copy(meta: np.ndarray, y: np.ndarray, names: Sequence[str], labels: Sequence[str],
                        where: str) -> None:
    """Refuse a meta-feature column that separates a label perfectly on labelled rows (see module doc)."""
    for j, label in enumerate(labels):
        pos, neg = y[:, j] == 1, y[:, j] == 0
        if pos.sum() < MIN_CLASS_ROWS or neg.sum() < MIN_CLASS_ROWS:
            continue
        for c, name in enumerate(names):
            x = meta[:, c]
            if x[pos].min() > x[neg].max() or x[pos].max() < x[neg].min():
                raise ContractError(f"meta-feature {name!r} separates label {label!r} perfectly on the {where} "
                                    "rows: it carries the label, not a property of the audio; refused as a leak")
