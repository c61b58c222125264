"""The JSON records beside the data: a run's manifest (`run.json`), a submission's sidecar and its recipe.

One dataclass per record, each with one `to_dict`/`from_dict`: every writer builds the dataclass and
every reader gets one back, so a key is named in one place. The files are untrusted input: an unknown
key, a missing one, or a schema this ens does not read is a one-line `DataError` naming the file.
Files written before records carried a `schema` read as schema 1.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ensemble.errors import DataError
from ensemble.task import MULTILABEL, Task, task_named

SCHEMA = 1

Record = TypeVar("Record")


def _checked(cls: type[Record], raw: Any, source: Path | str, **nested: Any) -> Record:
    """`cls(**raw)` once `raw` holds a known schema, no unknown key and every required one."""
    if not isinstance(raw, dict):
        raise DataError(f"{source}: expected a JSON object; got {type(raw).__name__}")
    schema = raw.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise DataError(f"{source}: schema {schema!r}; this ens reads schema {SCHEMA} (upgrade ens, or remake it)")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise DataError(f"{source}: unknown key {unknown[0]!r}; a {cls.__name__} holds {', '.join(known)}")
    missing = [name for name, f in known.items() if name not in raw
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise DataError(f"{source}: missing key {missing[0]!r}")
    return cls(**{**raw, **nested})


def _set(fields: dict[str, Any]) -> dict[str, Any]:
    """A record's fields without the unset optional ones, so a file keeps exactly the keys it had."""
    return {k: v for k, v in fields.items() if v is not None}


@dataclass
class CalibratorState:
    """One label's fitted calibrator, exactly (`ensemble.stack.state.calibrator_state`): its `kind` and the
    parameters that kind has — temperature/platt `a`, `b`; beta `coef`; isotonic `x`, `y`, `mix`; none nothing."""

    kind: str = "none"
    a: float | None = None
    b: float | None = None
    coef: list[float] | None = None
    x: list[float] | None = None
    y: list[float] | None = None
    mix: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return _set(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, raw: Any, source: Path | str) -> CalibratorState:
        return _checked(cls, raw, source)


@dataclass
class BlendState:
    """`recipe.state`: the exact fitted stack for `ens export` — the blender's saved form (`Blender.state()`:
    `method`, `runs`, `labels`, the task when not multi-label, then what its method class saves; the class
    owns those keys and reads them back) and the per-label calibrators."""

    blender: dict[str, Any]
    calibrators: list[CalibratorState] = field(default_factory=list)
    version: int = 1

    @property
    def method(self) -> str:
        return self.blender["method"]

    @property
    def n_labels(self) -> int:
        return int(self.blender["labels"])

    @property
    def meta_columns(self) -> int:
        """How many per-clip meta-feature columns the blend reads beside the logits."""
        return int(self.blender.get("meta") or 0)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "blender": self.blender, "calibrators": [c.to_dict() for c in self.calibrators]}

    @classmethod
    def from_dict(cls, raw: Any, source: Path | str) -> BlendState | None:
        """The state, or None for a bare recipe's `{}` (a hand-made submission: nothing fitted)."""
        if raw == {}:
            return None
        state = _checked(cls, raw, source)
        if not isinstance(state.blender, dict) or not isinstance(state.blender.get("method"), str):
            raise DataError(f"{source}: 'blender' must be an object naming its 'method'")
        if not isinstance(state.calibrators, list):
            raise DataError(f"{source}: 'calibrators' must be a list")
        return dataclasses.replace(state, calibrators=[CalibratorState.from_dict(c, f"{source} (calibrator {j})")
                                                       for j, c in enumerate(state.calibrators)])


@dataclass
class CalibrationNote:
    """`recipe.calibrators[j]`: the calibrator a label (or, multiclass, all classes) got, its parameters and
    what decided it (`auto`: the rule in words, cross-validated scores, the gain interval over none and, where
    the clean rows were asked, their gain — None when it could not be measured)."""

    label: str
    calibrator: str
    params: dict[str, Any] = field(default_factory=dict)
    rule: str | None = None
    cv_scores: dict[str, float] | None = None
    gain: dict[str, float] | None = None
    guard_gain: float | None = None
    guarded: bool = field(default=False, compare=False)  # the clean rows were asked: `guard_gain` is written

    def to_dict(self) -> dict[str, Any]:
        out = _set({k: v for k, v in dataclasses.asdict(self).items() if k not in ("guard_gain", "guarded")})
        return out | ({"guard_gain": self.guard_gain} if self.guarded else {})

    @classmethod
    def from_dict(cls, raw: Any, source: Path | str) -> CalibrationNote:
        if isinstance(raw, dict) and "guarded" in raw:
            raise DataError(f"{source}: unknown key 'guarded'")
        note = _checked(cls, raw, source)
        return dataclasses.replace(note, guarded="guard_gain" in raw)


@dataclass
class DecisionRecord:
    """`recipe.decision`: what the decision rule chose over which baseline, in words, and each candidate's test."""

    chosen: str
    baseline: str
    rule: str
    tests: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, source: Path | str) -> DecisionRecord:
        return _checked(cls, raw, source)


@dataclass
class RunManifest:
    """`models/<run>/run.json`: what made a run and how good it is (DESIGN.md, Contracts)."""

    name: str
    kind: str                            # finetune, import or derived
    created: str
    labels: list[str]
    data: dict[str, str]                 # fingerprints of the competition files the run was made on
    versions: dict[str, str]
    source: dict[str, Any]               # finetune: model_ref and model; import: the CSVs and their hashes
    files: dict[str, str]                # prediction file name → SHA-256
    metrics: dict[str, Any] = field(default_factory=dict)  # cv, cv_testlike, per_fold (no OOF: empty)
    task: str | None = None              # None: written before runs recorded their task (multi-label)
    folds_fingerprint: str | None = None
    testlike_fingerprint: str | None = None
    testlike_domain: dict[str, Any] | None = None
    n_folds: int | None = None
    options: dict[str, Any] | None = None    # finetune's options
    folds: list[dict[str, Any]] | None = None  # finetune: each fold's record (fold.json)
    machine: dict[str, Any] | None = None
    seconds: dict[str, Any] | None = None
    onnxruntime: dict[str, Any] | None = None  # the last `ens oof`: provider, when, largest change
    derived_from: str | None = None
    transform: str | None = None
    schema: int = SCHEMA

    @property
    def cv(self) -> dict[str, Any] | None:
        """The OOF score and its parts (None: no OOF)."""
        return self.metrics.get("cv")

    @property
    def task_type(self) -> Task:
        return task_named(self.task or MULTILABEL.name)

    @property
    def model_ref(self) -> str | None:
        return self.source.get("model_ref")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, source: Path | str) -> RunManifest:
        manifest = _checked(cls, raw, source)
        labels = manifest.labels
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise DataError(f"{source}: 'labels' must be a list of label column names; got {labels!r}")
        return manifest


@dataclass
class Recipe:
    """How a submission was stacked: enough to re-run it (`StackRequest.from_recipe`) or export it."""

    method: str
    params: dict[str, Any]
    labels: list[str]
    fit_on: str                          # resolved: clean, testlike, both (or test: no OOF)
    calibrate: str
    blender: dict[str, Any]
    calibrators: list[CalibrationNote]
    decisions: list[Any]
    state: BlendState | None             # the exact fitted blend and calibrators, for `ens export` (None: bare)
    runs: list[dict[str, Any]] = field(default_factory=list)  # run, manifest_sha256, files
    seed: int = 0
    metric: str | None = None
    task: str | None = None
    test_prior: str | float = "none"
    prior: dict[str, Any] | None = None
    meta_features: dict[str, Any] | None = None
    meta_offered: list[str] | None = None
    testlike_weighting: str | None = None
    decision: DecisionRecord | None = None  # the decision rule's choice, when it chose

    def __post_init__(self) -> None:
        """A recipe built from the on-disk forms (`state={}`, a decision or calibration dict) holds the records."""
        if isinstance(self.state, dict):
            self.state = BlendState.from_dict(self.state, "recipe.state")
        if isinstance(self.decision, dict):
            self.decision = DecisionRecord.from_dict(self.decision, "recipe.decision")
        if isinstance(self.calibrators, list) and any(isinstance(c, dict) for c in self.calibrators):
            self.calibrators = [CalibrationNote.from_dict(c, f"recipe.calibrators[{j}]") if isinstance(c, dict) else c
                                for j, c in enumerate(self.calibrators)]

    @property
    def task_type(self) -> Task:
        return task_named(self.task or MULTILABEL.name)

    @property
    def run_names(self) -> list[str]:
        return [entry["run"] for entry in self.runs]

    @property
    def meta_columns(self) -> list[str]:
        """The per-clip meta-feature columns the blend reads beside the logits (none: [])."""
        return list((self.meta_features or {}).get("columns", []))

    @property
    def meta_set_names(self) -> list[str]:
        """The feature sets those columns come from."""
        return [s["name"] for s in (self.meta_features or {}).get("sets", [])]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(dataclasses.replace(self, state=None, decision=None, calibrators=[])) | {
            "state": {} if self.state is None else self.state.to_dict(),
            "decision": None if self.decision is None else self.decision.to_dict(),
            "calibrators": [c.to_dict() for c in self.calibrators]}

    @classmethod
    def from_dict(cls, raw: Any, source: Path | str) -> Recipe:
        if isinstance(raw, dict):  # the nested records first, each error naming its place in the file
            raw = dict(raw)
            if "state" in raw:
                raw["state"] = BlendState.from_dict(raw["state"], f"{source}.state")
            if raw.get("decision") is not None:
                raw["decision"] = DecisionRecord.from_dict(raw["decision"], f"{source}.decision")
            if "calibrators" in raw:
                notes = raw["calibrators"]
                if not isinstance(notes, list):
                    raise DataError(f"{source}: 'calibrators' must be a list")
                raw["calibrators"] = [CalibrationNote.from_dict(c, f"{source}.calibrators[{j}]")
                                      for j, c in enumerate(notes)]
        recipe = _checked(cls, raw, source)
        runs = recipe.runs  # every reader indexes entry["run"]: a hand-edited list fails here, in one line
        if not isinstance(runs, list) or not all(isinstance(e, dict) and isinstance(e.get("run"), str) for e in runs):
            raise DataError(f"{source}: recipe.runs must be a list of {{'run': NAME, 'manifest_sha256': …}}; "
                            f"got {json.dumps(runs, default=str)[:120]}")
        return recipe


@dataclass
class Sidecar:
    """`submissions/<name>.json`: the recipe, nested-CV scores and recorded leaderboard scores."""

    name: str
    created: str
    versions: dict[str, str]
    recipe: Recipe
    metrics: dict[str, Any]              # cv, cv_testlike, in_sample, optimism, gain (multiclass: cv_report)
    leaderboard: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    prior_sensitivity: list[dict[str, Any]] = field(default_factory=list)
    seconds: float | None = None
    testlike_domain: dict[str, Any] | None = None
    comparison: list[dict[str, Any]] | None = None  # what the decision rule compared
    csv_sha256: str | None = None        # set when written
    recipe_sha256: str | None = None     # set when written: the recipe's canonical JSON (checked by export)
    schema: int = SCHEMA

    @property
    def cv(self) -> dict[str, Any] | None:
        return self.metrics.get("cv")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(dataclasses.replace(self, recipe=None)) | {"recipe": self.recipe.to_dict()}

    @classmethod
    def from_dict(cls, raw: Any, source: Path | str) -> Sidecar:
        recipe = Recipe.from_dict(raw.get("recipe") if isinstance(raw, dict) else None, f"{source} (recipe)")
        return _checked(cls, raw, source, recipe=recipe)
