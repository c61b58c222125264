"""The JSON records of the workspace's shared sets: the test-like set's `models/testlike.json` and a feature
set's `models/features/<name>/features.json`.

One dataclass per record with one `to_dict`/`from_dict`, as in `ensemble.artifacts.records`: writers build
the record, readers get it back and read attributes. The files are untrusted input: an unknown key or a
missing required one is a one-line `DataError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ensemble.artifacts.records import _checked, _FlatRecord


@dataclass
class TestlikeMeta(_FlatRecord):
    """`models/testlike.json`: how the test-like set was made — the recipe version and seed, how many real
    clips there were, whether the generator was fitted to them and why (not), its backgrounds and the fit's
    cost, the density-ratio weights' summary, the generator's parameters — and the latest domain checks of
    the set (`domain_check`, `DomainCheck.to_dict()`) and of the runs' predictions on it (`prediction_check`).
    A key not set is not written."""

    __test__ = False  # a record, not a pytest class, whatever its name

    recipe_version: int | None = None
    seed: int | None = None
    n_real: int | None = None
    fitted: bool | None = None
    reason: str | None = None
    n_backgrounds: int | None = None
    fit: dict[str, Any] | None = None
    domain_check: dict[str, Any] | None = None
    weights: dict[str, float] | None = None
    params: dict[str, Any] | None = None
    prediction_check: dict[str, Any] | None = None

    @property
    def domain_auc(self) -> float | None:
        """The set's domain-check AUC (None: not checked)."""
        return (self.domain_check or {}).get("auc")


@dataclass
class FeatureModel(_FlatRecord):
    """`features.json`'s `model`: the file that computed the features, its SHA-256 and the package it came from."""

    file: str | None = None
    sha256: str | None = None
    package: str | None = None


@dataclass
class FeatureManifest(_FlatRecord):
    """`models/features/<name>/features.json`: what made a feature set — its kind and name, its columns, the
    features' version and detector threshold, whether labels were used (the stacker takes only label-free
    sets), the model file, the data, folds and test-like fingerprints it was made for, rows per split, package
    versions, machine, when and how long."""

    kind: str | None = None
    name: str | None = None
    columns: list[str] | None = None
    features_version: int | None = None
    speech_prob: float | None = None
    labels_used: bool = True             # not said: taken as made with labels (the stacker refuses the set)
    model: FeatureModel | None = None
    data_fingerprint: str | None = None
    folds_fingerprint: str | None = None
    testlike_fingerprint: str | None = None
    rows: dict[str, int] | None = None
    versions: dict[str, Any] | None = None
    machine: dict[str, Any] | None = None
    created: str | None = None
    seconds: float | None = None

    @property
    def fingerprints(self) -> dict[str, str | None]:
        """The data, folds and test-like fingerprints the set was made for, by their manifest key."""
        return {"data_fingerprint": self.data_fingerprint, "folds_fingerprint": self.folds_fingerprint,
                "testlike_fingerprint": self.testlike_fingerprint}

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | ({} if self.model is None else {"model": self.model.to_dict()})

    @classmethod
    def from_dict(cls, raw: Any, source: Path | str) -> FeatureManifest:
        manifest = _checked(cls, raw, source)
        if manifest.model is not None:
            manifest.model = FeatureModel.from_dict(manifest.model, f"{source}.model")
        return manifest
