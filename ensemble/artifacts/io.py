"""Atomic writes (temp file + fsync + rename) and small readers: no half-written output, ever.

The one home of ens's write discipline: a file is written aside in its own folder under a name that
carries the writer's pid, fsynced, renamed over its target, and the folder fsynced, so a crash or a full
disk leaves the old file or the new one, never a mix or nothing. A folder (a run, an export) is built
aside the same way and swapped in by `replace_dir`; what a killed writer left is put back or swept by
`recover_dir` on the next write of that name (only pids that are no longer alive are touched).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from ensemble.errors import DataError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = staged_file(path)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def staged_file(path: Path) -> Path:
    """A new empty temp file beside `path` (`.NAME.PID.XXXXXXXX.tmp`), readable as the umask allows."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, umask_mode(directory=False))  # mkstemp makes it 0600; teammates should read outputs
    return Path(tmp)


def fsync_file(path: Path) -> None:
    """Flush a file's bytes to the disk (before the rename that publishes it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to the disk."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# `atomic_path`'s temp names: "." + target name + "." + [pid "."] + mkstemp's 8 random characters + ".tmp"
TMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_PID_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}\.tmp$")
_ASIDE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>old|new)-(?P<pid>[0-9]+)(-[a-z0-9_]+)?$")


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def staged_dir(target: Path) -> Path:
    """A new empty folder beside `target` (`.NAME.new-PID-XXXXXXXX`) to build it in, as the umask allows."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-{os.getpid()}-", dir=target.parent))
    staging.chmod(umask_mode(directory=True))  # mkdtemp's 0700 would keep teammates out
    return staging


def aside_path(target: Path) -> Path:
    """Where `replace_dir` keeps the old `target` until the new one is in: `.NAME.old-PID`."""
    target = Path(target)
    return target.parent / f".{target.name}.old-{os.getpid()}"


def replace_dir(staged: Path, target: Path) -> None:
    """Swap the folder `staged` in as `target`: the old one is moved aside, the new renamed in, then the
    old removed. A failure puts the old one back; a kill leaves `.NAME.old-PID` for `recover_dir`."""
    staged, target = Path(staged), Path(target)
    aside = None
    if target.exists() or target.is_symlink():
        aside = aside_path(target)
        os.rename(target, aside)
    try:
        os.rename(staged, target)
    except BaseException:
        if aside is not None:
            os.rename(aside, target)
        raise
    fsync_dir(target.parent)
    if aside is not None:
        _remove(aside)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def recover_dir(target: Path, complete: Callable[[Path], bool] = lambda p: True) -> list[str]:
    """Undo what dead writers of `target` left beside it; returns one note per thing done.

    `.NAME.old-PID` (a replaced `target` not yet removed): removed when `target` is there and
    `complete(target)`, else put back in place of the partial one. `.NAME.new-PID-…` staging folders and
    `.NAME.PID.….tmp` files of dead pids are removed. Call it under `target`'s name lock.
    """
    target = Path(target)
    folder = target.parent
    if not folder.is_dir():
        return []
    notes = []
    for entry in sorted(folder.iterdir()):
        m = _ASIDE.match(entry.name) or _PID_TMP.match(entry.name)
        if m is None or m["name"] != target.name or pid_alive(int(m["pid"])):
            continue
        if m.groupdict().get("kind") == "old":
            if (target.exists() or target.is_symlink()) and complete(target):
                _remove(entry)
                notes.append(f"removed {entry}: the old {target.name} a killed writer (pid {m['pid']}) had replaced")
            else:
                if target.exists() or target.is_symlink():
                    _remove(target)
                os.rename(entry, target)
                notes.append(f"restored {target}: a writer (pid {m['pid']}) was killed while replacing it")
        else:
            _remove(entry)
            notes.append(f"removed {entry}: left by a killed writer (pid {m['pid']})")
    if notes:
        fsync_dir(folder)
    return notes


def sweep_tmp(folder: Path) -> list[Path]:
    """Remove the temp files killed writers left in `folder` (not below it); returns the paths removed.

    Only call it where no live writer can be using `folder`: under the folder's lock, or for a fold
    folder that this process is about to redo.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        tagged = _PID_TMP.match(path.name)
        if tagged and int(tagged["pid"]) != os.getpid() and pid_alive(int(tagged["pid"])):
            continue  # a live writer's (another name's writer in the same folder)
        if TMP_NAME.match(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _write(path: Path, writer: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    """Write a DataFrame to Parquet atomically, without the index."""
    return _write(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write a CSV atomically; floats in full precision so files are byte-stable and lossless."""
    return _write(path, lambda tmp: csv_to(df, tmp))


def csv_to(df: pd.DataFrame, path: Path) -> None:
    """The CSV bytes every ens CSV has (full-precision floats, "\\n" line ends), written to `path` as is."""
    df.to_csv(path, index=False, float_format="%.17g", lineterminator="\n")


def write_json(obj: Any, path: Path) -> Path:
    """Write JSON atomically, keys sorted, so identical content gives identical bytes."""
    text = json_text(obj)
    return _write(path, lambda tmp: tmp.write_text(text))


def json_text(obj: Any, compact: bool = False) -> str:
    """The JSON every ens record has: keys sorted (identical content, identical bytes); `compact` for hashing."""
    if compact:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")


def read_json(path: Path) -> dict:
    """Read a JSON file; a missing or broken file is a DataError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (byte {exc.start} is not UTF-8 text)") from None


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV with ids kept as strings; a missing or unreadable file is a DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return pd.read_csv(path, dtype={"id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None


def read_parquet(path: Path) -> pd.DataFrame:
    """Read a Parquet file; a missing or broken file is a DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a broken file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def frame_sha256(df: pd.DataFrame) -> str:
    """Hex SHA-256 of a DataFrame's content (values, columns, order), independent of file format."""
    digest = hashlib.sha256()
    digest.update(json.dumps(list(map(str, df.columns))).encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).values.tobytes())
    return digest.hexdigest()


def umask_mode(directory: bool) -> int:
    """The mode `open`/`mkdir` would give under the current umask (0666/0777 & ~umask).

    `tempfile.mkstemp`/`mkdtemp` create private (0600/0700) entries whatever the umask; files and run
    folders renamed into place from them get this mode instead, so a shared machine's team can read them.
    """
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask
