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


class _FlatRecord:
    """A record of plain fields: written without its unset optional ones, read back checked."""

    def to_dict(self) -> dict[str, Any]:
        return _set(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls: type[Record], raw: Any, source: Path | str) -> Record:
        return _checked(cls, raw, source)


@dataclass
class CalibratorState(_FlatRecord):
    """One label's fitted calibrator, exactly (`ensemble.stack.state.calibrator_state`): its `kind` and the
    parameters that kind has — temperature/platt `a`, `b`; beta `coef`; isotonic `x`, `y`, `mix`; none nothing."""

    kind: str = "none"
    a: float | None = None
    b: float | None = None
    coef: list[float] | None = None
    x: list[float] | None = None
    y: list[float] | None = None
    mix: float | None = None


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
class ScoreRecord(_FlatRecord):
    """One cross-validated score and its parts, as `metrics.cv`, `cv_testlike`, `in_sample` and each
    `per_fold` entry hold it: competition — `score`, `auc`, `brier`, `ece`; multiclass — `score` (of `metric`),
    `logloss`, `accuracy`, `macro_f1`, `brier` (a stacked blend also its competition parts); a fold's entry
    its `fold` (a fold that could not be scored: only that). A part a score lacks is None and not written."""

    score: float | None = None
    auc: float | None = None
    brier: float | None = None
    ece: float | None = None
    metric: str | None = None
    logloss: float | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    fold: int | None = None


@dataclass
class GainRecord(_FlatRecord):
    """`metrics.gain`: the blend's gain over the best single run (positive: better) with its bootstrap
    interval [`lo`, `hi`] at level 1 − `alpha`, and which run, on which rows, against how many challengers."""

    gain: float
    lo: float
    hi: float
    n_boot: int | None = None
    alpha: float | None = None
    best_run: int | None = None
    best_run_score: float | None = None
    on: str | None = None
    challengers: int | None = None

    @property
    def level(self) -> float | None:
        """The interval's confidence level (None: not recorded)."""
        return None if self.alpha is None else 1 - self.alpha


_SCORE_KEYS = ("cv", "cv_testlike", "in_sample")


@dataclass
class CVScores:
    """`metrics` of a run's manifest (`cv`, `per_fold`, `cv_testlike`; no OOF: none) or of a submission's
    sidecar (`cv`, `cv_testlike`, `in_sample`, `optimism`, `gain`, multiclass `cv_report`, `rows_sha256`).

    A file keeps exactly the keys it had: a key written as null (a sidecar's `cv` with no OOF) stays null,
    one never written stays absent — `written` holds the keys given, and setting a field adds its key."""

    cv: ScoreRecord | None = None
    cv_testlike: ScoreRecord | None = None
    per_fold: list[ScoreRecord] | None = None
    in_sample: ScoreRecord | None = None
    optimism: float | None = None
    gain: GainRecord | None = None
    cv_report: dict[str, Any] | None = None  # multiclass: `class_report` of the nested OOF
    rows_sha256: str | None = None           # the trusted rows' hash, set when the submission is written
    written: set[str] = field(default_factory=set, compare=False, repr=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SCORE_KEYS and isinstance(value, dict):
            value = ScoreRecord.from_dict(value, f"metrics.{name}")
        elif name == "gain" and isinstance(value, dict):
            value = GainRecord.from_dict(value, "metrics.gain")
        elif name == "per_fold" and isinstance(value, list):
            value = [ScoreRecord.from_dict(r, f"metrics.per_fold[{j}]") if isinstance(r, dict) else r
                     for j, r in enumerate(value)]
        super().__setattr__(name, value)
        if name != "written" and "written" in self.__dict__:
            self.written.add(name)

    def __post_init__(self) -> None:
        self.written = set(self.written) | {k for k in self._keys() if getattr(self, k) is not None}  # a copy: `replace` shares it

    @classmethod
    def _keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "written"]

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value.to_dict() if hasattr(value, "to_dict") else value
        return {k: plain(getattr(self, k)) for k in self._keys() if k in self.written}

    @classmethod
    def from_dict(cls, raw: Any, source: Path | str) -> CVScores:
        if isinstance(raw, CVScores):
            return raw
        if not isinstance(raw, dict):
            raise DataError(f"{source}: 'metrics' must be an object; got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(cls._keys()))
        if unknown:
            raise DataError(f"{source}: unknown key {unknown[0]!r} in metrics; they hold {', '.join(cls._keys())}")
        nested = {k: ScoreRecord.from_dict(raw[k], f"{source}.{k}") for k in _SCORE_KEYS if raw.get(k) is not None}
        if raw.get("gain") is not None:
            nested["gain"] = GainRecord.from_dict(raw["gain"], f"{source}.gain")
        if raw.get("per_fold") is not None:
            if not isinstance(raw["per_fold"], list):
                raise DataError(f"{source}: 'per_fold' must be a list")
            nested["per_fold"] = [ScoreRecord.from_dict(r, f"{source}.per_fold[{j}]") for j, r in enumerate(raw["per_fold"])]
        scores = cls(**{**raw, **nested})
        scores.written |= set(raw)
        return scores


@dataclass
class PriorRecord:
    """`recipe.prior`: what `--test-prior` estimated and applied per label (`PriorResult.recipe()`): the mode,
    the train, EM, BBSE and used priors, the KS statistics, the labels kept at their train prior and why,
    and, when the labels were read jointly (or probed), that estimate."""

    mode: str = "none"
    prior_train: list[float] = field(default_factory=list)
    prior_em: list[float] = field(default_factory=list)
    prior_bbse: list[float] = field(default_factory=list)
    prior_used: list[float] = field(default_factory=list)
    ks: list[float] = field(default_factory=list)
    fallback: dict[str, str] = field(default_factory=dict)
    joint: dict[str, Any] | None = None

    @property
    def adapted(self) -> bool:
        return self.mode != "none"

    @property
    def probed(self) -> dict[str, Any]:
        """The leaderboard probes' record (`--test-prior lb`), else {}."""
        return (self.joint or {}).get("probed") or {}

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return out if self.joint else {k: v for k, v in out.items() if k != "joint"}

    @classmethod
    def from_dict(cls, raw: Any, source: Path | str) -> PriorRecord | None:
        """The record, or None where no prior was recorded (`null` or `{}`)."""
        if raw is None or raw == {}:
            return None
        return _checked(cls, raw, source)


@dataclass
class OnnxFile(_FlatRecord):
    """A fold's `onnx` entry: the graph's path inside the run folder, its SHA-256, and the parity measured at
    export (max |p_onnx − p_native| on clips of `parity_clip_seconds`, the bar it must meet, against what)."""

    path: str
    sha256: str | None = None
    parity_max_abs_diff: float | None = None
    parity_clip_seconds: float | None = None
    parity_bar: float | None = None
    parity_reference: str | None = None


@dataclass
class ClassifierManifest(_FlatRecord):
    """`ens_classifier.json` beside a saved classifier's weights and config (`Classifier.save`): the model it
    was made from, its labels, family, preprocessing (`Preprocessor.to_dict()`) and pooling (None: written
    before pooling was a choice — mean)."""

    model_ref: str
    labels: list[str]
    model_type: str
    preprocessor: dict[str, Any]
    pooling: str | None = None


_FOLD_TYPED = ("fold", "model", "onnx", "cv", "seconds")


@dataclass
class FoldRecord:
    """`fold<k>/fold.json`, and `run.json`'s `folds[k]`: one fold of a fine-tuned run — its number, the
    model it trained (`describe()`, whose keys depend on the family), its ONNX graph and parity, its held-out
    score (None: not scorable), its seconds (`train`, `total`), and what its trainer recorded beside them
    (`fields`: rows, best epoch and history or examples, augmentation, file hashes — written and shown, not
    interpreted)."""

    fold: int
    model: dict[str, Any] = field(default_factory=dict)
    onnx: OnnxFile | None = None
    cv: ScoreRecord | None = None
    seconds: dict[str, float] | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        onnx = {} if self.onnx is None else {"onnx": self.onnx.to_dict()}
        seconds = {} if self.seconds is None else {"seconds": self.seconds}
        return {"fold": self.fold, "model": self.model, **self.fields, **onnx, **seconds,
                "cv": None if self.cv is None else self.cv.to_dict()}

    @classmethod
    def from_dict(cls, raw: Any, source: Path | str) -> FoldRecord:
        if not isinstance(raw, dict):
            raise DataError(f"{source}: expected a JSON object; got {type(raw).__name__}")
        if not isinstance(raw.get("fold"), int) or isinstance(raw.get("fold"), bool):
            raise DataError(f"{source}: 'fold' must be the fold's number; got {raw.get('fold')!r}")
        model = raw.get("model", {})
        if not isinstance(model, dict):
            raise DataError(f"{source}: 'model' must be an object")
        onnx = None if raw.get("onnx") is None else OnnxFile.from_dict(raw["onnx"], f"{source}.onnx")
        if onnx is not None and not isinstance(onnx.path, str):
            raise DataError(f"{source}: 'onnx.path' must be the graph's path inside the run folder")
        cv = None if raw.get("cv") is None else ScoreRecord.from_dict(raw["cv"], f"{source}.cv")
        rest = {k: v for k, v in raw.items() if k not in _FOLD_TYPED}
        return cls(raw["fold"], model, onnx, cv, raw.get("seconds"), rest)


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
    metrics: CVScores = field(default_factory=CVScores)  # cv, cv_testlike, per_fold (no OOF: none)
    task: str | None = None              # None: written before runs recorded their task (multi-label)
    folds_fingerprint: str | None = None
    testlike_fingerprint: str | None = None
    testlike_domain: dict[str, Any] | None = None
    n_folds: int | None = None
    options: dict[str, Any] | None = None    # finetune's options
    folds: list[FoldRecord] | None = None  # finetune: each fold's record (fold.json)
    machine: dict[str, Any] | None = None
    seconds: dict[str, Any] | None = None
    onnxruntime: dict[str, Any] | None = None  # the last `ens oof`: provider, when, largest change
    derived_from: str | None = None
    transform: str | None = None
    schema: int = SCHEMA

    def __setattr__(self, name: str, value: Any) -> None:
        """`metrics` given as its on-disk dict (by a writer, or `from_dict`) is held as its record."""
        if name == "metrics" and not isinstance(value, CVScores):
            value = CVScores.from_dict(value, "run.json metrics")
        super().__setattr__(name, value)

    @property
    def cv(self) -> ScoreRecord | None:
        """The OOF score and its parts (None: no OOF)."""
        return self.metrics.cv

    @property
    def task_type(self) -> Task:
        return task_named(self.task or MULTILABEL.name)

    @property
    def model_ref(self) -> str | None:
        return self.source.get("model_ref")

    @property
    def max_seconds(self) -> float | None:
        """The clip length (seconds) the run's models were trained and exported for (`options.max_seconds`;
        None: not a fine-tuned run, or not a number)."""
        value = (self.options or {}).get("max_seconds")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def weights(self) -> tuple[int, int] | None:
        """(trained, total) weights of a neural run's model (`source.model`); None where not recorded."""
        model = self.source.get("model") or {}
        return (model["n_trainable"], model["n_params"]) if "n_trainable" in model and "n_params" in model else None

    def to_dict(self) -> dict[str, Any]:
        folds = None if self.folds is None else [f.to_dict() for f in self.folds]
        return dataclasses.asdict(dataclasses.replace(self, metrics=CVScores(), folds=None)) | {
            "metrics": self.metrics.to_dict(), "folds": folds}

    @classmethod
    def from_dict(cls, raw: Any, source: Path | str) -> RunManifest:
        if isinstance(raw, dict) and "metrics" in raw:
            raw = {**raw, "metrics": CVScores.from_dict(raw["metrics"], f"{source}.metrics")}
        if isinstance(raw, dict) and raw.get("folds") is not None:
            if not isinstance(raw["folds"], list):
                raise DataError(f"{source}: 'folds' must be a list of the folds' records")
            raw = {**raw, "folds": [FoldRecord.from_dict(f, f"{source}.folds[{j}]") for j, f in enumerate(raw["folds"])]}
        manifest = _checked(cls, raw, source)
        labels = manifest.labels
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise DataError(f"{source}: 'labels' must be a list of label column names; got {labels!r}")
        return manifest


@dataclass
class RunEntry(_FlatRecord):
    """`recipe.runs[k]`: a run the submission was stacked from, the SHA-256 of its run.json then (checked
    before a restack or an export) and its prediction files' hashes."""

    run: str
    manifest_sha256: str | None = None
    files: dict[str, str] | None = None


@dataclass
class LeaderboardRecord(_FlatRecord):
    """`sidecar.leaderboard`: the public and private scores recorded with `ens lb`, and when (unset: not written)."""

    public: float | None = None
    private: float | None = None
    recorded: str | None = None

    def scores(self) -> dict[str, float]:
        """The recorded scores by name (`public`, `private`), those set only."""
        return {k: v for k, v in (("public", self.public), ("private", self.private)) if v is not None}


@dataclass
class ProbeParams(_FlatRecord):
    """`recipe.params` of a leaderboard probe (`ens lb probe`): the constant row it submits, the digits the
    public score is shown with, the public share of the test, the metric and the test's size."""

    constants: list[float]
    digits: int
    public_share: float
    metric: str
    n_test: int


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
    runs: list[RunEntry] = field(default_factory=list)
    seed: int = 0
    metric: str | None = None
    task: str | None = None
    test_prior: str | float = "none"
    prior: PriorRecord | None = None     # what --test-prior estimated and applied (None: not recorded)
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
        if isinstance(self.prior, dict):
            self.prior = PriorRecord.from_dict(self.prior, "recipe.prior")
        if any(isinstance(e, dict) for e in self.runs):
            self.runs = [RunEntry.from_dict(e, f"recipe.runs[{j}]") if isinstance(e, dict) else e
                         for j, e in enumerate(self.runs)]
        if isinstance(self.calibrators, list) and any(isinstance(c, dict) for c in self.calibrators):
            self.calibrators = [CalibrationNote.from_dict(c, f"recipe.calibrators[{j}]") if isinstance(c, dict) else c
                                for j, c in enumerate(self.calibrators)]

    @property
    def task_type(self) -> Task:
        return task_named(self.task or MULTILABEL.name)

    @property
    def run_names(self) -> list[str]:
        return [entry.run for entry in self.runs]

    @property
    def chosen_run(self) -> int | None:
        """The run a `single` blend kept (its index in `runs`); None for every other blend."""
        run = self.blender.get("run") if self.method == "single" else None
        return int(run) if isinstance(run, (int, float)) and not isinstance(run, bool) else None

    @property
    def meta_columns(self) -> list[str]:
        """The per-clip meta-feature columns the blend reads beside the logits (none: [])."""
        return list((self.meta_features or {}).get("columns", []))

    @property
    def meta_set_names(self) -> list[str]:
        """The feature sets those columns come from."""
        return [s["name"] for s in (self.meta_features or {}).get("sets", [])]

    def to_dict(self) -> dict[str, Any]:
        plain = dataclasses.replace(self, state=None, decision=None, calibrators=[], prior=None, runs=[])
        return dataclasses.asdict(plain) | {
            "runs": [e.to_dict() for e in self.runs], "prior": None if self.prior is None else self.prior.to_dict(),
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
            if raw.get("prior") is not None:
                raw["prior"] = PriorRecord.from_dict(raw["prior"], f"{source}.prior")
            if "calibrators" in raw:
                notes = raw["calibrators"]
                if not isinstance(notes, list):
                    raise DataError(f"{source}: 'calibrators' must be a list")
                raw["calibrators"] = [CalibrationNote.from_dict(c, f"{source}.calibrators[{j}]")
                                      for j, c in enumerate(notes)]
        runs = raw.get("runs", []) if isinstance(raw, dict) else []  # a hand-edited list fails here, in one line
        if not isinstance(runs, list) or not all(isinstance(e, dict) and isinstance(e.get("run"), str) for e in runs):
            raise DataError(f"{source}: recipe.runs must be a list of {{'run': NAME, 'manifest_sha256': …}}; "
                            f"got {json.dumps(runs, default=str)[:120]}")
        if isinstance(raw, dict) and "runs" in raw:
            raw["runs"] = [RunEntry.from_dict(e, f"{source}.runs[{j}]") for j, e in enumerate(runs)]
        return _checked(cls, raw, source)


@dataclass
class Sidecar:
    """`submissions/<name>.json`: the recipe, nested-CV scores and recorded leaderboard scores."""

    name: str
    created: str
    versions: dict[str, str]
    recipe: Recipe
    metrics: CVScores                    # cv, cv_testlike, in_sample, optimism, gain (multiclass: cv_report)
    leaderboard: LeaderboardRecord = field(default_factory=LeaderboardRecord)
    warnings: list[str] = field(default_factory=list)
    prior_sensitivity: list[dict[str, Any]] = field(default_factory=list)
    seconds: float | None = None
    testlike_domain: dict[str, Any] | None = None
    comparison: list[dict[str, Any]] | None = None  # what the decision rule compared
    csv_sha256: str | None = None        # set when written
    recipe_sha256: str | None = None     # set when written: the recipe's canonical JSON (checked by export)
    schema: int = SCHEMA

    def __setattr__(self, name: str, value: Any) -> None:
        """`metrics` given as its on-disk dict (by a writer, or `from_dict`) is held as its record."""
        if name == "metrics" and not isinstance(value, CVScores):
            value = CVScores.from_dict(value, "sidecar metrics")
        super().__setattr__(name, value)

    @property
    def cv(self) -> ScoreRecord | None:
        return self.metrics.cv

    def to_dict(self) -> dict[str, Any]:
        plain = dataclasses.replace(self, recipe=None, metrics=CVScores(), leaderboard=LeaderboardRecord())
        return dataclasses.asdict(plain) | {"recipe": self.recipe.to_dict(), "metrics": self.metrics.to_dict(),
                                            "leaderboard": self.leaderboard.to_dict()}

    @classmethod
    def from_dict(cls, raw: Any, source: Path | str) -> Sidecar:
        recipe = Recipe.from_dict(raw.get("recipe") if isinstance(raw, dict) else None, f"{source} (recipe)")
        nested: dict[str, Any] = {"recipe": recipe}
        if isinstance(raw, dict) and "metrics" in raw:
            nested["metrics"] = CVScores.from_dict(raw["metrics"], f"{source}.metrics")
        if isinstance(raw, dict) and "leaderboard" in raw:  # null (hand-written): no score recorded
            nested["leaderboard"] = LeaderboardRecord.from_dict(raw["leaderboard"] or {}, f"{source}.leaderboard")
        return _checked(cls, raw, source, **nested)
