"""The competition folder: train/test/sample CSVs, label columns, targets and data fingerprints."""

from __future__ import annotations

import csv
import errno
import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ensemble.errors import DataError
from ensemble.artifacts.io import file_sha256, read_csv
from ensemble.task import MULTICLASS, MULTILABEL, Task, task_named

AUDIO_SUFFIXES = {".ogg", ".wav", ".flac", ".mp3", ".opus", ".aiff", ".aif"}
SUM_TOL = 1e-4  # a multiclass row's probabilities sum to 1 within this (CSVs rounded to 6 places pass)


def check_rows_sum_to_one(df: pd.DataFrame, labels: list[str], source: Path | str) -> None:
    """A multiclass table's probability rows must each sum to 1 (within SUM_TOL); name the first that does not."""
    total = df[labels].to_numpy(dtype=np.float64).sum(axis=1)
    bad = np.abs(total - 1.0) > SUM_TOL
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: id {df['id'].iloc[i]!r} has probabilities summing to {total[i]:.6g}; "
                        f"a multiclass row must sum to 1 (within {SUM_TOL:g})")


def check_task_rows(df: pd.DataFrame, labels: list[str], task: Task, source: Path | str) -> None:
    """What `task` asks of a table of probabilities beyond each lying in [0, 1]: a multiclass row sums to 1."""
    if task.bad_rows(df[labels].to_numpy(dtype=np.float64), SUM_TOL).any():
        check_rows_sum_to_one(df, labels, source)


def check_task_targets(df: pd.DataFrame, y: np.ndarray, labels: list[str], task: Task, source: Path | str) -> None:
    """What `task` asks of 0/1 targets beyond their values: a multiclass row holds exactly one class."""
    if task.bad_targets(y).any():
        check_one_class(df, y, labels, source)


def require_columns(df: pd.DataFrame, columns: list[str], source: Path | str) -> None:
    """A missing column is a DataError naming the file and the column."""
    for col in columns:
        if col not in df.columns:
            raise DataError(f"{source}: missing column {col!r} (has: {', '.join(map(str, df.columns))})")


def check_ids(ids: pd.Series, source: Path | str) -> None:
    """Ids must be present and unique."""
    if ids.isna().any():
        raise DataError(f"{source}: empty id at row {int(np.flatnonzero(ids.isna())[0]) + 2}")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise DataError(f"{source}: duplicate id {dup.iloc[0]!r}")


def check_rows(df: pd.DataFrame, source: Path | str) -> None:
    """A CSV with a header and no rows is refused before anything is fitted on it."""
    if df.empty:
        raise DataError(f"{source}: no rows, only a header; expected one row per clip")


def read_table(path: Path) -> pd.DataFrame:
    """A competition CSV (`read_csv`) whose header names every column once: pandas would rename a second
    `fake` to `fake.1`, and the file at fault would then be blamed as another one missing a column."""
    frame = read_csv(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (UnicodeDecodeError, csv.Error):
        return frame  # read_csv read it: its header is plain enough for pandas' own naming
    seen: set[str] = set()
    for name in (h.strip() for h in header):
        if name in seen:
            raise DataError(f"{path}: column {name!r} appears twice in the header; every column name must be unique")
        seen.add(name)
    return frame


def check_paths(df: pd.DataFrame, root: Path, source: Path | str) -> None:
    """Every `path` is relative and resolves (symlinks followed) inside the competition folder `root`.

    A CSV is input from strangers: `../../etc/passwd`, `/home/x/a.ogg` or a symlink out of the folder
    would have ens read (and train on) files the user never meant to hand it. Each folder is resolved and
    listed once: a plain name that is no symlink, in a real folder inside `root`, stays inside; any other
    path is resolved whole (`os.path.realpath`) and checked.
    """
    inside = os.path.realpath(root)
    folders: dict[str, _Folder] = {}
    for rid, rel in zip(df["id"].tolist(), df["path"].tolist()):
        if not isinstance(rel, str) or not rel.strip():
            raise DataError(f"{source}: id {rid!r} has an empty path; expected a path relative to {root}")
        if os.path.isabs(rel):
            raise DataError(f"{source}: id {rid!r} has the absolute path {rel!r}; "
                            f"expected a path relative to the competition folder {root}")
        folder, _, name = rel.rpartition("/")
        seen = folders.get(folder)
        if seen is None:
            seen = folders[folder] = _Folder.of(inside, folder)
        if seen.holds_plainly(name):
            continue
        real = os.path.realpath(os.path.join(inside, rel))
        if os.path.commonpath([inside, real]) != inside:
            raise DataError(f"{source}: id {rid!r} has path {rel!r}, which resolves to {real}, outside the "
                            f"competition folder {root}; paths must stay inside it")


@dataclass(frozen=True)
class _Folder:
    """A clip folder as `check_paths` sees it: whether its real path lies inside the competition folder, and
    its entries that are symlinks (None: it could not be listed, so every name in it is resolved whole)."""

    inside: bool
    links: frozenset[str] | None

    @classmethod
    def of(cls, root_real: str, folder: str) -> "_Folder":
        real = os.path.realpath(os.path.join(root_real, folder))
        try:
            with os.scandir(real) as entries:
                links = frozenset(e.name for e in entries if e.is_symlink())
        except (FileNotFoundError, NotADirectoryError):  # holds nothing, so no symlink either
            links = frozenset()
        except OSError:  # not readable (entered, not listed): resolve each name
            links = None
        return cls(os.path.commonpath([root_real, real]) == root_real, links)

    def holds_plainly(self, name: str) -> bool:
        """`name` in this folder resolves to the folder's real path joined with it, inside the root."""
        return self.inside and self.links is not None and name not in ("", ".", "..") and name not in self.links


@dataclass
class Competition:
    """A competition folder as DESIGN.md describes it; `sample_submission.csv` defines the labels."""

    root: Path
    sample: pd.DataFrame = field(repr=False)
    explicit_task: Task | None = None  # `--task` (remembered in ens.toml); None: detected from the folder

    @classmethod
    def load(cls, root: Path | str, task: str | None = None) -> "Competition":
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: competition folder not found")
        path = root / "sample_submission.csv"
        sample = read_table(path)
        require_columns(sample, ["id"], path)
        check_rows(sample, path)
        check_ids(sample["id"], path)
        if len(sample.columns) < 2:
            raise DataError(f"{path}: no label columns besides 'id'")
        return cls(root=root, sample=sample, explicit_task=None if task is None else task_named(task))

    @property
    def labels(self) -> list[str]:
        """Label columns in submission order."""
        return [c for c in self.sample.columns if c != "id"]

    @property
    def task(self) -> Task:
        """MULTICLASS (one class per clip, softmax, rows sum to 1) or MULTILABEL (independent 0/1 columns)."""
        return self.task_decision[0]

    @cached_property
    def task_decision(self) -> tuple[Task, str]:
        """The task and why, decided from what train.csv's labels say (`--task` overrides).

        A `label` column naming one of three or more classes per clip is multiclass; one 0/1 column per
        label is multi-label. A `label` column over two classes stays multi-label: a fake/real set looks
        the same (one label per train clip) while its test clips may hold both voices, so a two-class
        multiclass task says `--task multiclass`. `sample_submission.csv` only names the columns and their
        order: its values (rounded uniform rows, zeros, one-hot rows) decide nothing.
        """
        if self.explicit_task is not None:
            return self.explicit_task, "set by --task or the workspace's ens.toml"
        n = len(self.labels)
        if "label" not in self.train.columns:
            return MULTILABEL, "train.csv has one 0/1 column per label"
        if n < 3:
            return MULTILABEL, (f"train.csv has one `label` column over {n} classes, read as independent columns: "
                                "a test clip may hold both; pass --task multiclass if each holds exactly one")
        return MULTICLASS, f"train.csv has one `label` column: one of {n} classes per clip"

    def task_note(self) -> str:
        """`task: multiclass (train.csv has …)`: the line commands that decide the task print."""
        task, why = self.task_decision
        return f"task: {task.name} ({why})"

    @property
    def test_ids(self) -> pd.Series:
        """Test ids in submission order."""
        return self.sample["id"]

    @staticmethod
    def _clip_table(path: Path) -> pd.DataFrame:
        """A CSV of clips (`train.csv`, `test.csv`): `id` and `path` columns, sane rows, unique ids."""
        df = read_table(path)
        require_columns(df, ["id", "path"], path)
        check_rows(df, path)
        check_ids(df["id"], path)
        return df

    @cached_property
    def train(self) -> pd.DataFrame:
        """`train.csv` validated: `id`, `path`, `label` or one 0/1 column per label, optional `group`."""
        path = self.root / "train.csv"
        df = self._clip_table(path)
        if "label" not in df.columns:
            require_columns(df, self.labels, path)
        check_paths(df, self.root, path)
        return df

    @cached_property
    def targets(self) -> np.ndarray:
        """Multi-hot targets `(train rows, labels)` as float64 0/1, aligned with `train`."""
        y = targets_from_frame(self.train, self.labels, self.root / "train.csv")
        check_task_targets(self.train, y, self.labels, self.task, self.root / "train.csv")
        check_every_label_seen(self.train, y, self.labels, self.root / "train.csv", self.root / "sample_submission.csv")
        return y

    @cached_property
    def test(self) -> pd.DataFrame:
        """`test.csv` validated; its ids must be exactly the sample submission's."""
        path = self.root / "test.csv"
        df = self._clip_table(path)
        check_same_ids(df["id"], self.test_ids, path, self.root / "sample_submission.csv")
        check_paths(df, self.root, path)
        return df

    def validate(self) -> "Competition":
        """Check every CSV now (columns, ids, labels, paths), not when a later step first reads it."""
        self.targets
        self.test
        return self

    @property
    def groups(self) -> np.ndarray | None:
        return self.train["group"].astype(str).to_numpy() if "group" in self.train.columns else None

    def audio_path(self, relative: str) -> Path:
        return (self.root / relative).resolve()

    def unlabeled_paths(self) -> list[Path]:
        folder = self.root / "unlabeled_data"
        if not folder.is_dir():
            return []
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        inside = os.path.realpath(self.root)  # as for train/test paths: a symlink out of the folder is refused
        for p in paths:
            real = os.path.realpath(p)
            if os.path.commonpath([inside, real]) != inside:
                raise DataError(f"{p}: resolves to {real}, outside the competition folder {self.root}; files in "
                                "unlabeled_data/ must stay inside it")
        return paths

    def fingerprint(self) -> dict[str, str]:
        """Hashes of the CSVs and of the audio list (names and sizes): runs on other data never blend."""
        return dict(self._fingerprint)

    @cached_property
    def _fingerprint(self) -> dict[str, str]:
        files = {name: self.root / name for name in ("train.csv", "test.csv", "sample_submission.csv")}
        prints = {name: file_sha256(p) for name, p in files.items() if p.is_file()}
        root = str(self.root)
        digest = hashlib.sha256()
        for frame in (self.train, self.test) if (self.root / "test.csv").is_file() else (self.train,):
            for rel in frame["path"].tolist():
                digest.update(f"{rel}:{_size(os.path.join(root, rel))}\n".encode())
        prints["audio"] = digest.hexdigest()
        return prints


def _size(path: str) -> int:
    """The size of the file at `path` (symlinks followed), −1 where there is none (as `Path.exists`)."""
    try:
        return os.stat(path).st_size
    except (FileNotFoundError, NotADirectoryError):
        return -1
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EBADF):
            return -1
        raise


def targets_from_frame(df: pd.DataFrame, labels: list[str], source: Path | str) -> np.ndarray:
    """Targets from a `label` column (one label name per row) or from 0/1 label columns."""
    if "label" in df.columns:
        values = df["label"].astype(str)
        unknown = ~values.isin(labels)
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise DataError(
                f"{source}: id {df['id'].iloc[i]!r} has label {values.iloc[i]!r}; "
                f"expected one of {', '.join(labels)}"
            )
        return (values.to_numpy()[:, None] == np.array(labels)[None, :]).astype(np.float64)
    block = df[labels].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isin(block, (0.0, 1.0))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        cell = df[labels[j]].iloc[i]
        cell = cell.item() if hasattr(cell, "item") else cell  # 0.5, not np.float64(0.5)
        raise DataError(f"{source}: id {df['id'].iloc[i]!r} column {labels[j]!r} is {cell!r}; expected 0 or 1")
    return block


def check_every_label_seen(df: pd.DataFrame, y: np.ndarray, labels: list[str], source: Path | str,
                           sample: Path | str) -> None:
    """Every label column of the sample submission is set on at least one train row: a column no train label
    names cannot be learnt (and its CV score is undefined), so it is refused before any fold is built."""
    unseen = [label for label, count in zip(labels, y.sum(axis=0)) if count == 0]
    if unseen:
        how = "names it in its 'label' column" if "label" in df.columns else f"has {unseen[0]!r} = 1"
        raise DataError(f"{sample}: label column {unseen[0]!r} is never set in {source} (no row {how}); "
                        f"train labels seen: {', '.join(l for l in labels if l not in unseen) or 'none'}")


def check_one_class(df: pd.DataFrame, y: np.ndarray, labels: list[str], source: Path | str) -> None:
    """Multiclass targets: exactly one class per row (a multi-hot or empty row names its id)."""
    bad = y.sum(axis=1) != 1
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: id {df['id'].iloc[i]!r} has {int(y[i].sum())} classes set; a multiclass "
                        f"task has exactly one of {', '.join(labels)} per row")


def check_same_ids(ids: pd.Series, expected: pd.Series, source: Path | str, reference: Path | str) -> None:
    """The id sets must match exactly; name one id that is extra or missing."""
    have, want = set(ids.tolist()), set(expected.tolist())  # `tolist`: set() of an arrow column is 5× slower
    if have != want:
        extra = sorted(have - want)
        if extra:
            raise DataError(f"{source}: id {extra[0]!r} is not in {reference} ({len(extra)} unknown ids)")
        missing = sorted(want - have)
        raise DataError(f"{source}: id {missing[0]!r} from {reference} is missing ({len(missing)} missing ids)")


def open_competition(ws, data: Path | str | None = None, audio: tuple[str, ...] = (),
                     task: str | None = None, then: Callable[[Competition], None] | None = None) -> Competition:
    """The workspace's competition folder (`data` overrides it), validated: its CSVs, and the audio of
    the `audio` splits (train, test, unlabeled) for commands that read it. `data` and `task` are
    remembered in `ens.toml` only once the folder validated, and `then` (a command's own checks of its
    inputs against it) passed, so a bad folder is never remembered."""
    task = task if task is not None else ws.settings().get("task")
    comp = Competition.load(ws.data_dir(data, remember=False), task).validate()
    if then is not None:
        then(comp)
    if audio:
        from ensemble.artifacts.audio_check import check_competition_audio

        check_competition_audio(ws, comp, audio)
    if data is not None or (task is not None and ws.settings().get("task") != task):
        ws.remember(data=str(comp.root) if data is not None else None, task=task)
    return comp
