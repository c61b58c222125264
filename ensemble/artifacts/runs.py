"""Runs: `models/<run>/` with `oof.parquet`, `test.parquet`, `oof_testlike.parquet` and `run.json`.

The Parquet contracts (DESIGN.md) are checked on write and again on read:
- oof: `id`, `fold`, label columns; exactly one row per train id, fold as in the shared folds file.
- test: `id`, `fold`, label columns; one row per test id and fold.
- oof_testlike: like oof, for the shared test-like clips.
Probabilities are floats in [0, 1] without NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import json
import shlex

import numpy as np
import pandas as pd

from ensemble.errors import ConfigError, ContractError, DataError, ExistsError
from ensemble.artifacts.io import file_sha256, read_json, read_parquet, write_json, write_parquet
from ensemble.artifacts.records import RunManifest
from ensemble.artifacts.workspace import Workspace

OOF_FILE = "oof.parquet"
TEST_FILE = "test.parquet"
TESTLIKE_OOF_FILE = "oof_testlike.parquet"
PREDICTION_SPLITS = ("train", "test", "testlike")  # the splits of the three files above
RUN_MANIFEST_FILE = "run.json"
OPTIONS_FILE = "options.json"  # written by `ens finetune` when a run starts; a run without run.json is partial


@dataclass
class PartialRun:
    """A fine-tune that has started but not finished every fold: `models/<name>/` without run.json."""

    name: str
    model: str | None
    done: list[int]
    n_folds: int | None
    options: dict = field(default_factory=dict)  # options.json: what a finishing call must repeat

    @property
    def missing(self) -> list[int]:
        return [k for k in range(self.n_folds) if k not in self.done] if self.n_folds else []

    def progress(self) -> str:
        """`folds 0, 2 of 5 finished` (or `no fold finished`)."""
        total = f" of {self.n_folds}" if self.n_folds else ""
        if not self.done:
            return f"no fold{total} finished"
        return f"fold{'s' if len(self.done) > 1 else ''} {', '.join(map(str, self.done))}{total} finished"

    def finish_hint(self) -> str:
        """The command that finishes the run, repeating the options it started with (a resumed run must)."""
        model = self.model or "MODEL"
        named = "" if self.model and Path(self.model.rstrip("/")).name == self.name else f" --name {self.name}"
        folds = f" --fold {','.join(map(str, self.missing))}" if self.missing else ""
        flags = []
        for key, flag in FINETUNE_FLAGS.items():
            value = self.options.get(key)
            if isinstance(value, bool):
                flags.append(flag[0] if value else flag[1])
            elif isinstance(value, dict):
                flags += [f"{flag} {shlex.quote(key_value)}" for key_value in _key_values(value)]
            elif value is not None:
                flags.append(f"{flag} {value}")
        more = "" if self.options and not self.options.get("extra") else \
            f" (and the rest of models/{self.name}/{OPTIONS_FILE})"
        return f"ens finetune {model}{named}{folds}{''.join(' ' + f for f in flags)}{more}"


# options.json keys a finishing `ens finetune` must repeat (folds and test-like size come from the workspace)
FINETUNE_FLAGS = {"epochs": "--epochs", "lr": "--lr", "batch_size": "--batch-size", "grad_accum": "--grad-accum",
                  "max_seconds": "--max-seconds", "augment": "--augment", "seed": "--seed",
                  "freeze": "--freeze", "model_config": "--model-config", "schedule": "--schedule", "warmup": "--warmup",
                  "hold": "--hold", "weight_decay": "--weight-decay", "max_grad_norm": "--max-grad-norm",
                  "pooling": "--pooling"}


def _key_values(values: dict) -> list[str]:
    """`{"layerdrop": 0.05}` → `["layerdrop=0.05"]`, values as JSON (as `--model-config` parses them)."""
    return [f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in values.items()]


def partial_run(folder: Path) -> PartialRun | None:
    """The partial run in `folder` (fold folders or options.json, no run.json), else None."""
    if (folder / RUN_MANIFEST_FILE).is_file() or not folder.is_dir() or folder.name.startswith("."):
        return None
    folds = [p for p in folder.glob("fold*") if p.is_dir() and p.name[4:].isdigit()]
    options = folder / OPTIONS_FILE
    if not folds and not options.is_file():
        return None
    saved = read_json(options) if options.is_file() else {}
    saved = saved if isinstance(saved, dict) else {}
    done = sorted(int(p.name[4:]) for p in folds if (p / "fold.json").is_file())
    n = saved.get("folds")
    return PartialRun(folder.name, saved.get("model"), done, int(n) if isinstance(n, int) else None, saved)


def is_run(folder: Path) -> bool:
    """Whether `folder` holds a finished run (its run.json is written last)."""
    return (Path(folder) / RUN_MANIFEST_FILE).is_file()


def check_replaceable_run(run_dir: Path, force: bool) -> None:
    """An existing run is replaced only with `force`, and only when it is a run (or a partial run) ens made."""
    if not (run_dir.exists() or run_dir.is_symlink()):
        return
    if not force:
        raise ExistsError(f"run {run_dir} exists; pass --force to overwrite it")
    if run_dir.is_symlink() or not (is_run(run_dir) or partial_run(run_dir) is not None):
        raise ExistsError(f"{run_dir} was not written by ens (no {RUN_MANIFEST_FILE}); refusing to replace it")


def partial_runs(ws: Workspace) -> list[PartialRun]:
    """Every partial run in `models/`, by name."""
    if not ws.models_dir.is_dir():
        return []
    found = (partial_run(p) for p in sorted(ws.models_dir.iterdir()))
    return [p for p in found if p is not None]


def check_probabilities(df: pd.DataFrame, labels: list[str], source: Path | str) -> None:
    """Every label column present, numeric, in [0, 1], no NaN; the first bad cell is named."""
    for label in labels:
        if label not in df.columns:
            raise DataError(f"{source}: missing label column {label!r}")
        values = pd.to_numeric(df[label], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(values) | (values < 0) | (values > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            cell = df[label].iloc[i]
            cell = cell.item() if hasattr(cell, "item") else cell
            raise DataError(
                f"{source}: id {df['id'].iloc[i]!r} column {label!r} is {cell!r}; "
                "expected a probability in [0, 1]"
            )


def _check_frame(df: pd.DataFrame, labels: list[str], source: Path | str) -> None:
    for col in ("id", "fold"):
        if col not in df.columns:
            raise DataError(f"{source}: missing column {col!r}")
    extra = [c for c in df.columns if c not in ("id", "fold", *labels)]
    if extra:
        raise DataError(f"{source}: unknown column {extra[0]!r}; expected id, fold and {', '.join(labels)}")
    check_probabilities(df, labels, source)


def validate_oof(df: pd.DataFrame, labels: list[str], folds: pd.DataFrame, source: Path | str) -> None:
    """One row per id of `folds`, with the fold the folds file gives it."""
    _check_frame(df, labels, source)
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise DataError(f"{source}: duplicate id {dup.iloc[0]!r}")
    expected = folds.set_index("id")["fold"]
    if expected.index.is_unique:  # one hash of the folds' ids (pandas' `isin` converts arrow strings per call)
        unknown = pd.Series(expected.index.get_indexer(df["id"]) < 0, index=df.index)
    else:
        unknown = ~df["id"].isin(expected.index)
    if unknown.any():
        raise DataError(f"{source}: id {df['id'][unknown].iloc[0]!r} is not a train id")
    if len(df) != len(expected):
        missing = sorted(set(expected.index) - set(df["id"]))
        raise DataError(f"{source}: id {missing[0]!r} has no prediction ({len(missing)} train ids missing)")
    wrong = df["fold"].to_numpy() != expected.loc[df["id"]].to_numpy()
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise ContractError(
            f"{source}: id {df['id'].iloc[i]!r} has fold {df['fold'].iloc[i]} but the shared folds say "
            f"{expected.loc[df['id'].iloc[i]]}"
        )


def validate_test(df: pd.DataFrame, labels: list[str], test_ids: pd.Series, source: Path | str) -> None:
    """One row per (test id, fold); every fold predicts every test id."""
    _check_frame(df, labels, source)
    dup = df[df.duplicated(["id", "fold"])]
    if len(dup):
        raise DataError(f"{source}: duplicate row for id {dup['id'].iloc[0]!r} fold {dup['fold'].iloc[0]}")
    from ensemble.artifacts.competition import check_same_ids

    for fold, part in df.groupby("fold", sort=True):
        check_same_ids(part["id"], test_ids, f"{source} (fold {fold})", "the test ids")


@dataclass
class Run:
    """A run folder, read and validated lazily."""

    name: str
    dir: Path
    manifest: RunManifest

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.labels)

    @property
    def has_oof(self) -> bool:
        return (self.dir / OOF_FILE).is_file()

    @property
    def has_testlike_oof(self) -> bool:
        """Whether the run holds predictions for the test-like clips (not `Task.has_testlike`: whether the
        task can have a test-like set at all)."""
        return (self.dir / TESTLIKE_OOF_FILE).is_file()

    def oof(self) -> pd.DataFrame:
        return self._read(OOF_FILE)

    def test(self) -> pd.DataFrame:
        return self._read(TEST_FILE)

    def oof_testlike(self) -> pd.DataFrame:
        return self._read(TESTLIKE_OOF_FILE)

    def _read(self, filename: str) -> pd.DataFrame:
        return _read_predictions(self.dir / filename, self.labels, self.manifest.files.get(filename))

    def check_files(self) -> None:
        """Every prediction file run.json records is still there with its recorded SHA-256 (one line naming
        the first that is not)."""
        for filename, recorded in self.manifest.files.items():
            if not (self.dir / filename).is_file():
                raise ContractError(f"{self.dir / filename}: missing; {self.dir / RUN_MANIFEST_FILE} records it")
            check_recorded_hash(self.dir / filename, recorded)


def check_recorded_hash(path: Path, recorded: str | None) -> None:
    """A run file must still be the one run.json recorded: another run's file copied over it, or an edit,
    would otherwise be blended silently. One line naming the file and the run's manifest."""
    if recorded is None or not path.is_file():
        return
    if file_sha256(path) != recorded:
        raise ContractError(f"{path}: SHA-256 differs from the one {path.parent / RUN_MANIFEST_FILE} records "
                            f"({recorded[:12]}…): replaced or edited since (another run's copy? a killed `ens oof`?); "
                            f"run `ens oof {path.parent.name}` again, or re-run or re-import the run")


def _read_predictions(path: Path, labels: list[str], recorded: str | None = None) -> pd.DataFrame:
    df = read_parquet(path)  # an unreadable or ill-formed file is named as such first
    _check_frame(df, labels, path)
    check_recorded_hash(path, recorded)
    df["id"] = df["id"].astype(str)
    return df


def load_run(ws: Workspace, name: str) -> Run:
    """A run by name; an unknown name lists the runs there are."""
    folder = ws.run_dir(name)
    if not (folder / RUN_MANIFEST_FILE).is_file():
        partial = partial_run(folder)
        if partial is not None:
            raise DataError(f"run {name!r} is not finished ({partial.progress()}); finish it: {partial.finish_hint()}")
        known = ", ".join(ws.run_names())
        if not known:
            raise DataError(f"run {name!r} not found in {ws.models_dir} (no runs yet: train one with `ens finetune "
                            "MODEL --data DIR`, or bring predictions made elsewhere with `ens import NAME --test "
                            "FILE.csv --data DIR`)")
        raise DataError(f"run {name!r} not found in {ws.models_dir} (runs: {known})")
    return Run(name=name, dir=folder, manifest=read_manifest(folder / RUN_MANIFEST_FILE))


def read_manifest(path: Path) -> RunManifest:
    """A run.json, checked against the manifest's schema."""
    return RunManifest.from_dict(read_json(path), path)


def write_run_file(df: pd.DataFrame, run_dir: Path, filename: str) -> str:
    """Write one prediction file of a run atomically; returns its SHA-256 for the manifest."""
    out = df.sort_values(["fold", "id"] if filename == TEST_FILE else ["id"], kind="stable")
    write_parquet(out.reset_index(drop=True), run_dir / filename)
    return file_sha256(run_dir / filename)


def write_manifest(run_dir: Path, manifest: RunManifest) -> None:
    write_json(manifest.to_dict(), run_dir / RUN_MANIFEST_FILE)


DATA_KEYS = ("train.csv", "test.csv", "sample_submission.csv", "audio")


def check_compatible(runs: list[Run], data: dict[str, str] | None = None, folds: str | None = None,
                     labels: list[str] | None = None) -> None:
    """Runs blend only when each was made on the same labels, folds and data; the first mismatch is named.

    With `data` (the competition's fingerprints), `folds` (the workspace's folds fingerprint) and
    `labels`, every run is checked against the current competition, a lone run included; without
    them, against the first run. Only fingerprints both sides recorded are compared.
    """
    current = data is not None
    where = "the competition folder" if current else f"run {runs[0].name!r}"
    ref_labels = labels if labels is not None else runs[0].labels
    ref_data = data if current else runs[0].manifest.data
    ref_folds = folds if current else runs[0].manifest.folds_fingerprint
    for run in runs if current else runs[1:]:
        if run.labels != ref_labels:
            raise ContractError(f"run {run.name!r} has label columns {run.labels}; {where} has {ref_labels}: "
                                "runs with different label columns cannot be blended")
        made_on = run.manifest.data
        for key in DATA_KEYS:
            if key in made_on and key in ref_data and made_on[key] != ref_data[key]:
                raise ContractError(
                    f"run {run.name!r} was made on different data than {where}: {key} differs "
                    f"(sha256 {made_on[key][:12]}… vs {ref_data[key][:12]}…); re-run or re-import it on the current data")
        run_folds = run.manifest.folds_fingerprint
        if run_folds is not None and (ref_folds is not None or current) and run_folds != ref_folds:
            target = "the workspace's folds (models/folds.parquet)" if current else where
            ref = f"{ref_folds[:12]}…" if ref_folds else "none: the workspace has no folds file"
            raise ContractError(f"run {run.name!r} was made on different folds than {target} "
                                f"(fingerprint {run_folds[:12]}… vs {ref}); it cannot be blended with them")


def load_runs(ws: Workspace, run_names: list[str]) -> list[Run]:
    """The named runs, each named once."""
    if not run_names:
        raise ConfigError("name at least one run to stack (see `ens board` for the runs there are)")
    dup = sorted({n for n in run_names if run_names.count(n) > 1})
    if dup:
        raise ConfigError(f"run {dup[0]!r} is named twice")
    return [load_run(ws, name) for name in run_names]
